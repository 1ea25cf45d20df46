//! Consumer-group coordinator (Kafka's classic group protocol), shard-per-core. See
//! "Consumer groups" in ARCHITECTURE.md.
//!
//! A group lives on the shard that owns its `__consumer_offsets` partition
//! (`abs(java hashCode(group)) % partitions`, as Kafka). Its state is mutated only there
//! (`Shard::coordinator`, `RefCell`, no locks); requests arriving elsewhere hop over with
//! `invoke_on`. Offsets and group metadata are appended to that partition in Kafka's record
//! formats and read back when the shard opens it.

pub mod assignor;
pub mod compaction;
pub mod consumer;
pub mod group;
pub mod membership;
pub mod offsets;
pub mod persist;
pub mod records;
pub mod sync;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::config::Config;
use crate::protocol::ErrorCode;
use crate::server::topics::{self, now_ms, NewTopic};
use crate::shard::Shard;
pub use group::{GroupState, GroupTable, Limits};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often each shard runs group timers (session expiry, join deadlines).
const GROUP_TICK_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// Per-shard coordinator state.
pub struct Coordinator {
    pub table: RefCell<GroupTable>,
    loads: RefCell<HashMap<i32, Load>>,
    /// OffsetCommits appended but not yet applied, per partition (compaction waits for 0).
    pub commits_in_flight: RefCell<HashMap<i32, usize>>,
}

impl Coordinator {
    pub fn new(config: &Config) -> Coordinator {
        Coordinator {
            table: RefCell::new(GroupTable::new(config.group_limits())),
            loads: RefCell::new(HashMap::new()),
            commits_in_flight: RefCell::new(HashMap::new()),
        }
    }
}

/// Java's `String.hashCode` (UTF-16 code units).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of a group (Kafka's `Utils.abs(hashCode) % n`).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    (java_string_hash(group_id) & 0x7fff_ffff) % partitions.max(1)
}

fn offsets_partitions(shard: &Shard) -> Option<i32> {
    shard
        .catalog()
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .filter(|n| *n > 0)
}

/// Creates `__consumer_offsets` through the controller if it does not exist yet.
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<i32, ErrorCode> {
    if let Some(n) = offsets_partitions(shard) {
        return Ok(n);
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        shard.config.offsets_topic_segment_bytes.to_string(),
    );
    let res = topics::create_topics(
        shard,
        vec![NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: shard.config.offsets_topic_num_partitions.max(1),
            replication_factor: -1,
            configs,
        }],
        false,
    )
    .await;
    for (_, r) in res {
        if let Err((code, why)) = r {
            if code != ErrorCode::TopicAlreadyExists {
                tracing::error!("creating {OFFSETS_TOPIC}: {why}");
            }
        }
    }
    offsets_partitions(shard).ok_or(ErrorCode::CoordinatorNotAvailable)
}

/// (coordinator shard, partition) of a group, creating the offsets topic on first use.
pub async fn locate(shard: &Rc<Shard>, group_id: &str) -> Result<(usize, i32), ErrorCode> {
    let n = ensure_offsets_topic(shard).await?;
    let p = partition_for(group_id, n);
    let target = shard
        .shard_for(OFFSETS_TOPIC, p)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((target, p))
}

/// Loads `partition` into this shard's group table unless it is loaded or loading.
/// COORDINATOR_LOAD_IN_PROGRESS while another task loads it.
async fn ensure_loaded(shard: &Rc<Shard>, partition: i32) -> Result<(), ErrorCode> {
    match shard.coordinator.loads.borrow().get(&partition) {
        Some(Load::Loaded) => return Ok(()),
        Some(Load::Loading) => return Err(ErrorCode::CoordinatorLoadInProgress),
        None => {}
    }
    if shard.partition(OFFSETS_TOPIC, partition).is_none() {
        return Err(ErrorCode::NotCoordinator);
    }
    shard
        .coordinator
        .loads
        .borrow_mut()
        .insert(partition, Load::Loading);
    let started = std::time::Instant::now();
    match persist::load_partition(shard, partition, now_ms()).await {
        Ok(n) => {
            if n > 0 {
                tracing::info!(
                    shard = shard.id,
                    partition,
                    records = n,
                    ms = started.elapsed().as_millis() as u64,
                    "loaded group state"
                );
            }
            shard
                .coordinator
                .loads
                .borrow_mut()
                .insert(partition, Load::Loaded);
            Ok(())
        }
        Err(e) => {
            tracing::error!(partition, "loading {OFFSETS_TOPIC}: {e}");
            shard.coordinator.loads.borrow_mut().remove(&partition);
            Err(ErrorCode::CoordinatorNotAvailable)
        }
    }
}

/// Runs `f(coordinator shard, partition)` on the group's coordinator shard once the group's
/// partition is loaded there.
pub async fn with_group<R, F, Fut>(shard: &Rc<Shard>, group_id: &str, f: F) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<Shard>, i32) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
    R: Send + 'static,
{
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let (target, partition) = locate(shard, group_id).await?;
    shard
        .invoke_on(target, move |s: Rc<Shard>| async move {
            ensure_loaded(&s, partition).await?;
            Ok(f(s, partition).await)
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// Background work of a shard's coordinator: load the offsets partitions it owns, then run
/// group timers and offset expiry.
pub async fn run(shard: Rc<Shard>) {
    let owned: Vec<i32> = shard
        .all_partitions()
        .iter()
        .filter(|p| &*p.topic == OFFSETS_TOPIC)
        .map(|p| p.index)
        .collect();
    for p in owned {
        let _ = ensure_loaded(&shard, p).await;
    }
    let check_ms = shard.config.offsets_retention_check_interval_ms.max(1) as i64;
    let compact_ms = shard.config.offsets_compaction_check_interval_ms.max(1) as i64;
    let mut last_expiry = now_ms();
    let mut last_compaction = now_ms();
    loop {
        glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
        let now = now_ms();
        shard.coordinator.table.borrow_mut().tick(now);
        shard
            .coordinator
            .table
            .borrow_mut()
            .tick_consumer_groups(now);
        if now - last_expiry >= check_ms {
            last_expiry = now;
            let recs = shard.coordinator.table.borrow_mut().expire_offsets(now);
            if !recs.is_empty() {
                tracing::info!(shard = shard.id, records = recs.len(), "expired offsets");
                shard.coordinator.table.borrow_mut().outbox.extend(recs);
            }
        }
        persist::flush_outbox(&shard, now);
        if now - last_compaction >= compact_ms {
            last_compaction = now;
            compact_owned(&shard, now).await;
        }
    }
}

/// Compacts the loaded `__consumer_offsets` partitions of this shard that need it.
async fn compact_owned(shard: &Rc<Shard>, now: i64) {
    let loaded: Vec<i32> = shard
        .coordinator
        .loads
        .borrow()
        .iter()
        .filter(|(_, l)| **l == Load::Loaded)
        .map(|(p, _)| *p)
        .collect();
    let min_records = shard.config.offsets_compaction_min_records;
    for p in loaded {
        match compaction::maybe_compact(shard, p, min_records, now).await {
            Ok(Some((before, after))) => tracing::info!(
                shard = shard.id,
                partition = p,
                log_start_before = before,
                log_start_after = after,
                "compacted {OFFSETS_TOPIC}"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(partition = p, "compacting {OFFSETS_TOPIC}: {e}"),
        }
    }
}

/// One partition's lag for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end_offset: i64,
    /// log end offset - committed offset (0 when nothing is committed is not assumed: the
    /// whole partition, log end - log start, counts as lag then).
    pub lag: i64,
}

/// Consumer lag of `group_id`: for every partition with a committed offset, the partition's
/// log end offset (high watermark) minus the committed offset.
pub async fn group_lag(shard: &Rc<Shard>, group_id: &str) -> Result<Vec<PartitionLag>, ErrorCode> {
    let gid = group_id.to_string();
    let committed = with_group(shard, group_id, move |s, _| async move {
        s.coordinator.table.borrow().fetch_offsets(&gid, None)
    })
    .await?;
    let mut out = Vec::with_capacity(committed.len());
    for (topic, partition, offset, _, _) in committed {
        let Some(owner) = shard.shard_for(&topic, partition) else {
            continue;
        };
        let t = topic.clone();
        let ends = shard
            .invoke_on(owner, move |s: Rc<Shard>| async move {
                s.partition(&t, partition)
                    .map(|p| (p.log.log_start_offset().get(), p.log.high_watermark().get()))
            })
            .await
            .flatten();
        if let Some((start, end)) = ends {
            let from = if offset < 0 { start } else { offset };
            out.push(PartitionLag {
                topic,
                partition,
                committed: offset,
                log_end_offset: end,
                lag: (end - from).max(0),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod consumer_tests;
#[cfg(test)]
mod tests;
