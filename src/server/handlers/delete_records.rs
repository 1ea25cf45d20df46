//! DeleteRecords, versions 0..=2: moves a partition's log start offset forward
//! (offset -1 means the high watermark).

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::fan_out;
use crate::shard::Shard;
use crate::storage::StorageError;
use futures::FutureExt;

async fn delete_before(
    shard: &Shard,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (ErrorCode, i64) {
    let Some(p) = shard.partition(topic, partition) else {
        return (ErrorCode::UnknownTopicOrPartition, -1);
    };
    let hw = p.log.high_watermark().get();
    let target = if offset == -1 { hw } else { offset };
    if target < 0 || target > hw {
        return (ErrorCode::OffsetOutOfRange, -1);
    }
    if target <= p.log.log_start_offset().get() {
        return (ErrorCode::None, p.log.log_start_offset().get());
    }
    match p.log.delete_records_before(target).await {
        Ok(start) => (ErrorCode::None, start.get()),
        Err(StorageError::OffsetOutOfRange { .. }) => (ErrorCode::OffsetOutOfRange, -1),
        Err(e) => {
            tracing::error!(topic, partition, "delete records failed: {e}");
            (ErrorCode::KafkaStorageError, -1)
        }
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((t.name.to_string(), p.partition_index, p.offset));
        }
    }
    let answers = fan_out(
        shard,
        items,
        (ErrorCode::UnknownTopicOrPartition, -1i64),
        |s, topic, partition, offset| {
            async move { delete_before(&s, &topic, partition, offset).await }.boxed_local()
        },
    )
    .await;
    let mut resp = DeleteRecordsResponse::default();
    let mut i = 0;
    for t in &req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let (code, low) = answers[i];
            i += 1;
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code.code();
            pr.low_watermark = low;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
