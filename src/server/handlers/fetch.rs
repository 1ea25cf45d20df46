//! Fetch, versions 4..=11, with long polling. The response is hand-framed around the stored batch
//! `Bytes` (see `protocol::fetch_response`) and written with one vectored send.
//! Fetch sessions (KIP-227): we never create one (session id 0), so every fetch is a full fetch,
//! which is a valid answer to any session request.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::FetchRequest;

use crate::protocol::fetch_response::{self, FetchResponseData, PartitionData, TopicData};
use crate::protocol::ErrorCode;
use crate::server::dispatch::{response_header, RequestCtx, Response};
use crate::server::{fan_out, group_by_shard};
use crate::shard::Shard;
use crate::storage::StorageError;

/// One partition's read, done on its shard.
#[derive(Debug, Clone)]
struct PartitionRead {
    error: ErrorCode,
    high_watermark: i64,
    log_start_offset: i64,
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl PartitionRead {
    fn err(error: ErrorCode) -> Self {
        PartitionRead {
            error,
            high_watermark: -1,
            log_start_offset: -1,
            chunks: Vec::new(),
            bytes: 0,
        }
    }
}

/// (fetch offset, partition max bytes)
type Want = (i64, usize);

async fn read_partition(
    shard: &Shard,
    topic: &str,
    partition: i32,
    (offset, max_bytes): Want,
) -> PartitionRead {
    let Some(p) = shard.partition(topic, partition) else {
        return PartitionRead::err(ErrorCode::UnknownTopicOrPartition);
    };
    let hw = p.log.high_watermark().get();
    let start = p.log.log_start_offset().get();
    let mut r = PartitionRead {
        error: ErrorCode::None,
        high_watermark: hw,
        log_start_offset: start,
        chunks: Vec::new(),
        bytes: 0,
    };
    if offset == hw {
        return r;
    }
    match p.log.read(offset, max_bytes).await {
        Ok(c) => {
            r.bytes = c.bytes;
            r.chunks = c.chunks;
        }
        Err(StorageError::OffsetOutOfRange { .. }) => r.error = ErrorCode::OffsetOutOfRange,
        Err(e) => {
            tracing::error!(topic, partition, "read failed: {e}");
            r.error = ErrorCode::KafkaStorageError;
        }
    }
    r
}

/// Reads every wanted partition, hopping to each owning shard once.
async fn read_all(shard: &Rc<Shard>, items: &[(String, i32, Want)]) -> Vec<PartitionRead> {
    fan_out(
        shard,
        items.to_vec(),
        PartitionRead::err(ErrorCode::UnknownTopicOrPartition),
        |s, topic, partition, want| {
            async move { read_partition(&s, &topic, partition, want).await }.boxed_local()
        },
    )
    .await
}

/// Waits until any wanted partition has data past its fetch offset, or `deadline`.
async fn wait_any(shard: &Rc<Shard>, items: &[(String, i32, Want)], deadline: Instant) {
    let (groups, _) = group_by_shard(shard, items.to_vec());
    let waits = groups.into_iter().map(|(target, work)| {
        shard
            .invoke_on(target, move |s: Rc<Shard>| async move {
                let mut futs = Vec::new();
                for (_, topic, partition, (offset, _)) in work {
                    if let Some(p) = s.partition(&topic, partition) {
                        let log = p.log.clone();
                        futs.push(async move { log.wait_for_data(offset).await }.boxed_local());
                    }
                }
                if futs.is_empty() {
                    return;
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let any = futures::future::select_all(futs);
                let _ = glommio::timer::timeout(remaining, async {
                    futures::future::select(any, s.until_shutdown().boxed_local()).await;
                    Ok(())
                })
                .await;
            })
            .boxed_local()
    });
    let all: Vec<_> = waits.collect();
    if all.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _ = glommio::timer::timeout(remaining, async {
            shard.until_shutdown().await;
            Ok(())
        })
        .await;
        return;
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    // A parked fetch ends at shutdown so the connection can drain promptly.
    let _ = glommio::timer::timeout(remaining, async {
        futures::future::select(
            futures::future::select_all(all),
            shard.until_shutdown().boxed_local(),
        )
        .await;
        Ok(())
    })
    .await;
}

pub async fn handle(shard: Rc<Shard>, ctx: RequestCtx, req: FetchRequest) -> Option<Response> {
    let mut items: Vec<(String, i32, Want)> = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push((
                t.topic.to_string(),
                p.partition,
                (p.fetch_offset, p.partition_max_bytes.max(0) as usize),
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut reads = read_all(&shard, &items).await;
    loop {
        let total: usize = reads.iter().map(|r| r.bytes).sum();
        let any_error = reads.iter().any(|r| r.error != ErrorCode::None);
        if total >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || shard.shared.is_shutting_down()
        {
            break;
        }
        wait_any(&shard, &items, deadline).await;
        reads = read_all(&shard, &items).await;
    }
    // Response-wide byte limit: keep whole batches in request order; the first batch of the
    // first non-empty partition always goes, so a consumer can make progress.
    let mut budget = req.max_bytes.max(0) as usize;
    let mut first = true;
    for r in reads.iter_mut() {
        let mut kept = 0;
        let mut kept_bytes = 0;
        for c in &r.chunks {
            if !first && kept_bytes + c.len() > budget {
                break;
            }
            first = false;
            kept += 1;
            kept_bytes += c.len();
        }
        r.chunks.truncate(kept);
        r.bytes = kept_bytes;
        budget = budget.saturating_sub(kept_bytes);
    }
    let mut data = FetchResponseData::default();
    let mut i = 0;
    for t in &req.topics {
        let mut td = TopicData {
            topic: t.topic.to_string(),
            partitions: Vec::new(),
        };
        for p in &t.partitions {
            let r = std::mem::replace(&mut reads[i], PartitionRead::err(ErrorCode::None));
            i += 1;
            td.partitions.push(PartitionData {
                partition_index: p.partition,
                error_code: r.error.code(),
                high_watermark: r.high_watermark,
                last_stable_offset: r.high_watermark,
                log_start_offset: r.log_start_offset,
                aborted_transactions: None,
                preferred_read_replica: -1,
                records: r.chunks,
            });
        }
        data.responses.push(td);
    }
    let head = response_header(&ctx);
    let mut parts = fetch_response::encode(&data, ctx.api_version, &head);
    let size: usize = parts.iter().map(|p| p.len()).sum();
    let mut prefix = BytesMut::with_capacity(4);
    prefix.put_i32(size as i32);
    parts.insert(0, prefix.freeze());
    // Not counted against the shard's request budget: a consumer that stops reading would hold
    // it and starve others. A connection whose writes block stops reading requests instead, and
    // its handlers in flight are bounded by `queued.max.requests`.
    Some(Response {
        parts,
        memory: None,
    })
}
