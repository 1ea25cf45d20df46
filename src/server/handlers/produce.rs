//! Produce, versions 3..=9; acks 0, 1 and -1.
//!
//! Ordering: a connection dispatches its requests one after another, and this handler sends
//! each partition's records to the owning shard before returning, where they are staged (offsets
//! assigned) synchronously on arrival. So pipelined requests from one producer are appended in
//! the order they were sent, which idempotent sequences require. Only the wait for durability
//! runs concurrently.

use std::collections::HashSet;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::partition::SequenceCheck;
use crate::protocol::ErrorCode;
use crate::server::dispatch::{encode_response, Dispatched, RequestCtx};
use crate::server::group_by_shard;
use crate::server::topics::{self, now_ms};
use crate::shard::{Shard, ShardMsg};
use crate::storage::batch::validate_batches;
use crate::storage::StorageError;

/// Outcome of one partition: (error, base offset, log append time, log start offset).
#[derive(Debug, Clone, Copy)]
pub struct PartitionOutcome {
    pub error: ErrorCode,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl PartitionOutcome {
    fn err(error: ErrorCode) -> Self {
        PartitionOutcome {
            error,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// Longest wait for a retried duplicate's original to become durable.
const DUPLICATE_DURABLE_WAIT_MS: u64 = 30_000;

/// Runs on the owning shard, synchronously: validate, check sequences, stage the append.
/// Returns a future that resolves once the append is durable.
pub fn stage(
    shard: &Shard,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    now: i64,
) -> LocalBoxFuture<'static, PartitionOutcome> {
    let ready = |o: PartitionOutcome| async move { o }.boxed_local();
    let Some(p) = shard.partition(topic, partition) else {
        return ready(PartitionOutcome::err(ErrorCode::UnknownTopicOrPartition));
    };
    let Some(records) = records else {
        return ready(PartitionOutcome::err(ErrorCode::InvalidRecord));
    };
    let headers = match validate_batches(&records, p.log.config().max_message_bytes) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(topic, partition, "rejected produce: {e}");
            return ready(PartitionOutcome::err(match e {
                StorageError::CorruptMessage(_) => ErrorCode::CorruptMessage,
                StorageError::MessageTooLarge(_) => ErrorCode::MessageTooLarge,
                _ => ErrorCode::InvalidRecord,
            }));
        }
    };
    // Idempotence: decide for every batch before writing any.
    let mut duplicate = None;
    {
        let producers = p.producers.borrow();
        for h in &headers {
            match producers.check(h) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(b) if headers.len() == 1 => duplicate = Some(b),
                SequenceCheck::Duplicate(_) => {
                    return ready(PartitionOutcome::err(ErrorCode::DuplicateSequenceNumber))
                }
                SequenceCheck::Reject(code) => return ready(PartitionOutcome::err(code)),
            }
        }
    }
    if let Some(b) = duplicate {
        // Answer with the original offsets, but only once they are durable.
        let log = p.log.clone();
        return async move {
            // Waiters wake on every high-watermark advance, so wait until it passes ours.
            let durable = glommio::timer::timeout(
                std::time::Duration::from_millis(DUPLICATE_DURABLE_WAIT_MS),
                async {
                    while log.high_watermark().get() <= b.last_offset && !log.is_closed() {
                        log.wait_for_data(b.last_offset).await;
                    }
                    Ok(())
                },
            )
            .await
            .is_ok();
            if durable && log.high_watermark().get() > b.last_offset {
                PartitionOutcome {
                    error: ErrorCode::None,
                    base_offset: b.base_offset,
                    log_append_time_ms: -1,
                    log_start_offset: log.log_start_offset().get(),
                }
            } else {
                PartitionOutcome::err(ErrorCode::RequestTimedOut)
            }
        }
        .boxed_local();
    }
    let appended = match p.log.append(records, &headers, now) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(topic, partition, "append failed: {e}");
            return ready(PartitionOutcome::err(ErrorCode::KafkaStorageError));
        }
    };
    {
        let mut producers = p.producers.borrow_mut();
        let mut base = appended.result.base_offset;
        for h in &headers {
            producers.record(h, base);
            base += h.last_offset_delta as i64 + 1;
        }
    }
    async move {
        match appended.durable().await {
            Ok(r) => PartitionOutcome {
                error: ErrorCode::None,
                base_offset: r.base_offset,
                log_append_time_ms: r.log_append_time_ms,
                log_start_offset: r.log_start_offset,
            },
            Err(e) => {
                tracing::error!("flush failed: {e}");
                PartitionOutcome::err(ErrorCode::KafkaStorageError)
            }
        }
    }
    .boxed_local()
}

pub async fn dispatch(shard: &Rc<Shard>, ctx: RequestCtx, req: ProduceRequest) -> Dispatched {
    let acks = req.acks;
    let mut items = Vec::new();
    for t in &req.topic_data {
        for p in &t.partition_data {
            items.push((t.name.to_string(), p.index, p.records.clone()));
        }
    }
    let total = items.len();
    let mut outcomes: Vec<Option<PartitionOutcome>> = vec![None; total];
    let mut waits: Vec<LocalBoxFuture<'static, Vec<(usize, PartitionOutcome)>>> = Vec::new();
    if !(-1..=1).contains(&acks) {
        outcomes
            .iter_mut()
            .for_each(|o| *o = Some(PartitionOutcome::err(ErrorCode::InvalidRequiredAcks)));
    } else {
        let cat = shard.catalog();
        let missing: Vec<String> = req
            .topic_data
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| !cat.topics.contains_key(n))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            topics::auto_create(shard, &missing).await;
        }
        let (groups, unknown) = group_by_shard(shard, items);
        for (pos, ..) in unknown {
            outcomes[pos] = Some(PartitionOutcome::err(ErrorCode::UnknownTopicOrPartition));
        }
        let now = now_ms();
        let origin = shard.id;
        for (target, work) in groups {
            let (tx, rx) = futures::channel::oneshot::channel();
            let msg: ShardMsg = Box::new(move |s: &Rc<Shard>| {
                // Synchronous part: stage every partition in request order.
                let staged: Vec<(usize, LocalBoxFuture<'static, PartitionOutcome>)> = work
                    .into_iter()
                    .map(|(pos, topic, partition, records)| {
                        (pos, stage(s, &topic, partition, records, now))
                    })
                    .collect();
                let s = s.clone();
                async move {
                    let mut out = Vec::with_capacity(staged.len());
                    for (pos, fut) in staged {
                        out.push((pos, fut.await));
                    }
                    // Back through the mesh: no waker may be woken from this thread.
                    s.reply_to(origin, tx, out).await;
                }
                .boxed_local()
            });
            shard.send_to(target, msg).await;
            waits.push(async move { rx.await.unwrap_or_default() }.boxed_local());
        }
    }
    Dispatched::Respond(
        async move {
            for res in futures::future::join_all(waits).await {
                for (pos, o) in res {
                    outcomes[pos] = Some(o);
                }
            }
            if acks == 0 {
                return None;
            }
            let mut resp = ProduceResponse::default();
            let mut i = 0;
            for t in &req.topic_data {
                let mut tr = TopicProduceResponse::default();
                tr.name = t.name.clone();
                for p in &t.partition_data {
                    let o =
                        outcomes[i].unwrap_or(PartitionOutcome::err(ErrorCode::RequestTimedOut));
                    i += 1;
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.error_code = o.error.code();
                    pr.base_offset = o.base_offset;
                    pr.log_append_time_ms = o.log_append_time_ms;
                    pr.log_start_offset = o.log_start_offset;
                    tr.partition_responses.push(pr);
                }
                resp.responses.push(tr);
            }
            encode_response(&ctx, &resp)
        }
        .boxed_local(),
    )
}
