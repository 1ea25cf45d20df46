//! Writing group records to `__consumer_offsets` and loading them back: records are appended
//! through the partition log on the coordinator shard (which owns the partition), and a shard
//! rebuilds its groups by reading its partitions from the start.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::group::PendingRecord;
use super::records;
use super::OFFSETS_TOPIC;
use crate::protocol::ErrorCode;
use crate::shard::Shard;
use crate::storage::batch::validate_batches;

/// Records per batch appended to `__consumer_offsets` (keeps batches under max.message.bytes).
const RECORDS_PER_BATCH_MAX: usize = 256;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

fn encode_batch(recs: &[PendingRecord], now: i64) -> Result<Bytes, String> {
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(r.key.clone()),
            value: r.value.clone(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Stages `recs` (all for partitions this shard owns) synchronously, in order; the returned
/// future resolves once they are durable.
pub fn append(
    shard: &Shard,
    recs: Vec<PendingRecord>,
    now: i64,
) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
    let mut waits = Vec::new();
    let mut by_partition: IndexMap<i32, Vec<PendingRecord>> = IndexMap::new();
    for r in recs {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for (partition, recs) in by_partition {
        let Some(p) = shard.partition(OFFSETS_TOPIC, partition) else {
            return async { Err(ErrorCode::NotCoordinator) }.boxed_local();
        };
        for chunk in recs.chunks(RECORDS_PER_BATCH_MAX) {
            let staged = encode_batch(chunk, now)
                .map_err(|e| format!("encoding: {e}"))
                .and_then(|bytes| {
                    let headers = validate_batches(&bytes, p.log.config().max_message_bytes)
                        .map_err(|e| e.to_string())?;
                    p.log
                        .append(bytes, &headers, now)
                        .map_err(|e| e.to_string())
                });
            match staged {
                Ok(a) => waits.push(a.durable()),
                Err(e) => {
                    tracing::error!(partition, "__consumer_offsets append failed: {e}");
                    return async { Err(ErrorCode::CoordinatorNotAvailable) }.boxed_local();
                }
            }
        }
    }
    async move {
        for w in waits {
            if let Err(e) = w.await {
                tracing::error!("__consumer_offsets flush failed: {e}");
                return Err(ErrorCode::CoordinatorNotAvailable);
            }
        }
        Ok(())
    }
    .boxed_local()
}

/// Appends whatever state changes queued in the group table (group metadata records),
/// without waiting for durability.
pub fn flush_outbox(shard: &Rc<Shard>, now: i64) {
    let recs = std::mem::take(&mut shard.coordinator.table.borrow_mut().outbox);
    if recs.is_empty() {
        return;
    }
    let wait = append(shard, recs, now);
    glommio::spawn_local(async move {
        let _ = wait.await;
    })
    .detach();
}

/// Reads partition `partition` of `__consumer_offsets` from its start into the group table.
pub async fn load_partition(shard: &Rc<Shard>, partition: i32, now: i64) -> Result<usize, String> {
    let Some(p) = shard.partition(OFFSETS_TOPIC, partition) else {
        return Err(format!("partition {partition} is not on this shard"));
    };
    let mut offset = p.log.log_start_offset().get();
    let end = p.log.high_watermark().get();
    let mut applied = 0usize;
    while offset < end {
        let chunks = p
            .log
            .read(offset, LOAD_READ_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if chunks.chunks.is_empty() {
            break;
        }
        let mut next = offset;
        for chunk in chunks.chunks {
            let mut buf = chunk;
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
            let mut table = shard.coordinator.table.borrow_mut();
            for set in sets {
                for r in set.records {
                    next = next.max(r.offset + 1);
                    if r.control {
                        continue;
                    }
                    let Some(key) = r.key else { continue };
                    match records::decode_key(key) {
                        Ok(Some(k)) => {
                            table.replay(partition, k, r.value, now);
                            applied += 1;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(partition, "skipping record: {e}"),
                    }
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(applied)
}
