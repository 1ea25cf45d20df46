//! DeleteTopics, versions 1..=6 (by name; v6 topic ids are resolved to names).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let cat = shard.catalog();
    let mut names: Vec<String> = req.topic_names.iter().map(|n| n.to_string()).collect();
    let mut unknown_ids = Vec::new();
    for t in &req.topics {
        match &t.name {
            Some(n) => names.push(n.to_string()),
            None => match cat.topics.values().find(|m| m.id == t.topic_id) {
                Some(m) => names.push(m.name.clone()),
                None => unknown_ids.push(t.topic_id),
            },
        }
    }
    let mut resp = DeleteTopicsResponse::default();
    for (name, code) in topics::delete_topics(shard, names).await {
        let mut r = DeletableTopicResult::default();
        if ctx.api_version >= 6 {
            r.topic_id = cat.topics.get(&name).map(|m| m.id).unwrap_or_default();
        }
        r.name = Some(TopicName(StrBytes::from_string(name)));
        r.error_code = code.code();
        resp.responses.push(r);
    }
    for id in unknown_ids {
        let mut r = DeletableTopicResult::default();
        r.topic_id = id;
        r.error_code = ErrorCode::UnknownTopicOrPartition.code();
        resp.responses.push(r);
    }
    resp
}
