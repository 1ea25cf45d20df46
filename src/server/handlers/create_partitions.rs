//! CreatePartitions, versions 0..=3. New partitions are placed on the least-loaded shards.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::dispatch::RequestCtx;
use crate::server::topics;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let asks = req
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.count))
        .collect();
    let mut resp = CreatePartitionsResponse::default();
    for (name, outcome) in topics::create_partitions(shard, asks, req.validate_only).await {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = kafka_protocol::messages::TopicName(StrBytes::from_string(name));
        if let Err((code, msg)) = outcome {
            r.error_code = code.code();
            r.error_message = Some(StrBytes::from_string(msg));
        }
        resp.results.push(r);
    }
    resp
}
