//! OffsetDelete, version 0: removes committed offsets of topics the group's members do not
//! subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    let wanted: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let gid = group_id.clone();
    let res = coordinator::with_group(shard, &group_id, move |s, _| async move {
        let (top, parts, recs) = s
            .coordinator
            .table
            .borrow_mut()
            .delete_offsets(&gid, &wanted);
        if top != ErrorCode::None {
            return (top, parts);
        }
        match persist::append(&s, recs, now_ms()).await {
            Ok(()) => (top, parts),
            Err(e) => (e, Vec::new()),
        }
    })
    .await;
    let mut r = OffsetDeleteResponse::default();
    let (top, parts) = res.unwrap_or_else(|e| (e, Vec::new()));
    r.error_code = top.code();
    for (t, p, code) in parts {
        let idx = match r.topics.iter().position(|rt| rt.name.0.as_str() == t) {
            Some(i) => i,
            None => {
                let mut rt = OffsetDeleteResponseTopic::default();
                rt.name = TopicName(StrBytes::from_string(t));
                r.topics.push(rt);
                r.topics.len() - 1
            }
        };
        let mut rp = OffsetDeleteResponsePartition::default();
        rp.partition_index = p;
        rp.error_code = code.code();
        r.topics[idx].partitions.push(rp);
    }
    r
}
