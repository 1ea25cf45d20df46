//! CreateTopics, versions 2..=7. Placement and persistence happen on the controller shard.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::{self, NewTopic};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results: Vec<CreatableTopicResult> = Vec::new();
    let mut new = Vec::new();
    for t in &req.topics {
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        if !t.assignments.is_empty() && t.num_partitions != -1 {
            let mut r = CreatableTopicResult::default();
            r.name = t.name.clone();
            r.error_code = ErrorCode::InvalidRequest.code();
            r.error_message = Some(StrBytes::from_static_str(
                "Both partition count and assignments given",
            ));
            results.push(r);
            continue;
        }
        let partitions = if t.assignments.is_empty() {
            t.num_partitions
        } else {
            t.assignments.len() as i32
        };
        new.push(NewTopic {
            name: t.name.to_string(),
            partitions,
            replication_factor: t.replication_factor,
            configs,
        });
    }
    let outcomes = topics::create_topics(shard, new, req.validate_only).await;
    for (name, outcome) in outcomes {
        let mut r = CreatableTopicResult::default();
        r.name = kafka_protocol::messages::TopicName(StrBytes::from_string(name));
        match outcome {
            Ok(meta) => {
                if ctx.api_version >= 5 {
                    r.num_partitions = meta.partitions.len() as i32;
                    r.replication_factor = 1;
                    r.configs = Some(Vec::new());
                }
                if ctx.api_version >= 7 && !req.validate_only {
                    r.topic_id = meta.id;
                }
            }
            Err((code, msg)) => {
                r.error_code = code.code();
                r.error_message = Some(StrBytes::from_string(msg));
            }
        }
        results.push(r);
    }
    let mut resp = CreateTopicsResponse::default();
    resp.topics = results;
    resp
}
