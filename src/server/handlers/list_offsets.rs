//! ListOffsets, versions 1..=7: earliest (-2), latest (-1), max timestamp (-3), by timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::fan_out;
use crate::shard::Shard;
use futures::FutureExt;

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;

/// (error, timestamp, offset) for one partition, computed on its shard.
type Answer = (ErrorCode, i64, i64);

async fn lookup(shard: &Shard, topic: &str, partition: i32, timestamp: i64) -> Answer {
    let Some(p) = shard.partition(topic, partition) else {
        return (ErrorCode::UnknownTopicOrPartition, -1, -1);
    };
    let log = &p.log;
    match timestamp {
        EARLIEST_TIMESTAMP => (ErrorCode::None, -1, log.log_start_offset().get()),
        LATEST_TIMESTAMP => (ErrorCode::None, -1, log.high_watermark().get()),
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some((ts, off)) => (ErrorCode::None, ts, off),
            None => (ErrorCode::None, -1, -1),
        },
        ts => match log.offset_for_timestamp(ts).await {
            Ok(Some((off, found_ts))) if off < log.high_watermark().get() => {
                (ErrorCode::None, found_ts, off)
            }
            Ok(_) => (ErrorCode::None, -1, -1),
            Err(e) => {
                tracing::error!(topic, partition, "offset_for_timestamp failed: {e}");
                (ErrorCode::KafkaStorageError, -1, -1)
            }
        },
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((t.name.to_string(), p.partition_index, p.timestamp));
        }
    }
    let answers = fan_out(
        shard,
        items,
        (ErrorCode::UnknownTopicOrPartition, -1, -1),
        |s, topic, partition, ts| {
            async move { lookup(&s, &topic, partition, ts).await }.boxed_local()
        },
    )
    .await;
    let mut resp = ListOffsetsResponse::default();
    let mut i = 0;
    for t in &req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = TopicName(StrBytes::from_string(t.name.to_string()));
        for p in &t.partitions {
            let (code, ts, off) = answers[i];
            i += 1;
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code.code();
            pr.timestamp = ts;
            pr.offset = off;
            if ctx.api_version >= 4 {
                pr.leader_epoch = 0;
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
