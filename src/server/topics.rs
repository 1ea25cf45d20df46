//! Topic lifecycle. Catalogue changes run on shard 0 (the controller), are persisted, then the
//! new snapshot is applied on every shard, which opens the partitions it now owns and removes
//! those that are gone. Shard 0 answers once every shard has applied it.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::controller::catalog::{validate_topic_name, PRODUCER_ID_BLOCK};
use crate::controller::{Catalog, PartitionMeta, TopicMeta};
use crate::partition::Partition;
use crate::protocol::ErrorCode;
use crate::shard::Shard;
use crate::storage::{LogConfig, PartitionLog};

/// The controller's shard.
pub const CONTROLLER_SHARD: usize = 0;
/// How often each shard runs log maintenance (interval flush, rolls, retention).
const MAINTENANCE_INTERVAL_MS: u64 = 1000;

/// Topic-level configs we accept in CreateTopics (Kafka's names).
pub const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
    "message.timestamp.difference.max.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "segment.index.bytes",
    "segment.jitter.ms",
    "preallocate",
];

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    /// -1 or 1 on a single node.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

pub type TopicOutcome = Result<TopicMeta, (ErrorCode, String)>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The log settings of a topic: broker defaults overridden by the topic's configs.
pub fn log_config(shard: &Shard, topic: &TopicMeta) -> Result<LogConfig, String> {
    let mut c = shard.config.log.clone();
    for (k, v) in &topic.configs {
        let num = || v.trim().parse::<i64>().map_err(|e| format!("{k}={v}: {e}"));
        match k.as_str() {
            "retention.ms" => c.retention_ms = num()?,
            "retention.bytes" => c.retention_bytes = num()?,
            "segment.bytes" => c.segment_bytes_max = num()?.max(1) as u64,
            "segment.ms" => c.segment_ms = num()?,
            "index.interval.bytes" => {
                c.index_interval_bytes = num()?.clamp(0, u32::MAX as i64) as u32
            }
            "max.message.bytes" => c.max_message_bytes = num()?.max(0) as usize,
            "flush.messages" => c.flush_messages = Some(num()?.max(1) as u64),
            "flush.ms" => c.flush_ms = Some(num()?.max(0) as u64),
            _ => {}
        }
    }
    // A compact-only topic (as __consumer_offsets) keeps its data regardless of age or size:
    // retention would delete live keys. (Compaction itself: coordinator::compaction.)
    let policy = topic.configs.get("cleanup.policy").map(|s| s.as_str());
    if policy.is_some_and(|p| p.contains("compact") && !p.contains("delete")) {
        c.retention_ms = -1;
        c.retention_bytes = -1;
    }
    Ok(c)
}

fn partition_dir(shard: &Shard, topic: &str, partition: i32) -> std::path::PathBuf {
    shard.config.data_dir.join(format!("{topic}-{partition}"))
}

async fn open_partition(shard: &Rc<Shard>, topic: &TopicMeta, index: i32) -> anyhow::Result<()> {
    let cfg = log_config(shard, topic).map_err(|e| anyhow::anyhow!(e))?;
    let dir = partition_dir(shard, &topic.name, index);
    let log = PartitionLog::open(&shard.storage, &dir, cfg, now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", dir.display()))?;
    let p = Partition::open(
        Arc::from(topic.name.as_str()),
        index,
        topic.id,
        dir.clone(),
        log,
    )
    .await
    .map_err(|e| anyhow::anyhow!("producer state of {}: {e}", dir.display()))?;
    shard.insert_partition(Rc::new(p));
    Ok(())
}

/// At start: open every partition the catalogue places on this shard.
pub async fn open_owned_partitions(shard: &Rc<Shard>) -> anyhow::Result<()> {
    reconcile(shard).await
}

/// Makes this shard's open partitions match its catalogue snapshot.
async fn reconcile(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let cat = shard.catalog();
    // Removals first: a deleted-then-recreated topic reuses its directory names.
    for p in shard.all_partitions() {
        let keep = cat.topics.get(&*p.topic).is_some_and(|t| {
            t.id == p.topic_id
                && t.partitions
                    .get(p.index as usize)
                    .is_some_and(|m| m.shard == shard.id)
        });
        if !keep {
            shard.remove_partition(&p.topic, p.index);
            let still_exists = cat
                .topics
                .get(&*p.topic)
                .is_some_and(|t| t.id == p.topic_id);
            let r = if still_exists {
                p.log.close().await
            } else {
                p.log.remove().await
            };
            if let Err(e) = r {
                tracing::error!(topic = %p.topic, partition = p.index, "closing removed partition: {e}");
            }
        }
    }
    for t in cat.topics.values() {
        for (i, m) in t.partitions.iter().enumerate() {
            if m.shard == shard.id && shard.partition(&t.name, i as i32).is_none() {
                open_partition(shard, t, i as i32).await?;
            }
        }
    }
    Ok(())
}

/// Shard 0: persist `cat`, install it everywhere and wait until every shard has applied it.
async fn publish(shard: &Rc<Shard>, cat: Catalog) -> Result<(), String> {
    debug_assert_eq!(
        shard.id, CONTROLLER_SHARD,
        "only the controller shard publishes"
    );
    cat.store(&shard.config.data_dir)
        .map_err(|e| format!("persisting catalogue: {e}"))?;
    let snap = Arc::new(cat);
    let mut waits = Vec::new();
    for target in 0..shard.nr_shards {
        let snap = snap.clone();
        waits.push(shard.invoke_on(target, move |s: Rc<Shard>| async move {
            s.install_catalog(snap);
            reconcile(&s).await.map_err(|e| e.to_string())
        }));
    }
    for r in futures::future::join_all(waits).await {
        match r {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err("a shard stopped".into()),
        }
    }
    Ok(())
}

/// CreateTopics (and auto-creation): runs on the controller shard.
pub async fn create_topics(
    shard: &Rc<Shard>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<(String, TopicOutcome)> {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let res = shard
        .invoke_on(CONTROLLER_SHARD, move |s: Rc<Shard>| async move {
            let _guard = s.controller_lock.acquire_permit(1).await;
            let mut cat = (*s.catalog()).clone();
            let mut out = Vec::new();
            for t in topics {
                let outcome = validate_new_topic(&s, &cat, &t).map(|partitions| {
                    let placement = cat.place(partitions, s.nr_shards);
                    TopicMeta {
                        name: t.name.clone(),
                        id: uuid::Uuid::new_v4(),
                        partitions: placement
                            .into_iter()
                            .map(|shard| PartitionMeta {
                                shard,
                                leader_epoch: 0,
                            })
                            .collect(),
                        configs: t.configs.clone(),
                        internal: t.name.starts_with("__"),
                    }
                });
                if let (Ok(meta), false) = (&outcome, validate_only) {
                    cat.topics.insert(meta.name.clone(), meta.clone());
                }
                out.push((t.name, outcome));
            }
            if !validate_only && out.iter().any(|(_, o)| o.is_ok()) {
                cat.version += 1;
                if let Err(e) = publish(&s, cat).await {
                    tracing::error!("create topics: {e}");
                    for (_, o) in out.iter_mut() {
                        if o.is_ok() {
                            *o = Err((ErrorCode::UnknownServerError, e.clone()));
                        }
                    }
                }
            }
            out
        })
        .await;
    res.unwrap_or_else(|| {
        names
            .into_iter()
            .map(|n| {
                (
                    n,
                    Err((
                        ErrorCode::UnknownServerError,
                        "controller unavailable".into(),
                    )),
                )
            })
            .collect()
    })
}

fn validate_new_topic(
    shard: &Shard,
    cat: &Catalog,
    t: &NewTopic,
) -> Result<usize, (ErrorCode, String)> {
    validate_topic_name(&t.name).map_err(|e| (ErrorCode::InvalidTopicException, e))?;
    if cat.topics.contains_key(&t.name) {
        return Err((
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    let partitions = if t.partitions == -1 {
        shard.config.num_partitions
    } else {
        t.partitions
    };
    if partitions <= 0 || partitions > 100_000 {
        return Err((
            ErrorCode::InvalidPartitions,
            format!("Number of partitions must be in 1..=100000, got {partitions}"),
        ));
    }
    if t.replication_factor != -1 && t.replication_factor != 1 {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!(
                "Replication factor {} is larger than the 1 available broker.",
                t.replication_factor
            ),
        ));
    }
    for k in t.configs.keys() {
        if !TOPIC_CONFIGS.contains(&k.as_str()) {
            return Err((
                ErrorCode::InvalidConfig,
                format!("Unknown topic config name: {k}"),
            ));
        }
    }
    let probe = TopicMeta {
        name: t.name.clone(),
        id: uuid::Uuid::nil(),
        partitions: vec![],
        configs: t.configs.clone(),
        internal: false,
    };
    log_config(shard, &probe).map_err(|e| (ErrorCode::InvalidConfig, e))?;
    Ok(partitions as usize)
}

/// DeleteTopics: runs on the controller shard. Returns an error code per name.
pub async fn delete_topics(shard: &Rc<Shard>, names: Vec<String>) -> Vec<(String, ErrorCode)> {
    let fallback = names.clone();
    shard
        .invoke_on(CONTROLLER_SHARD, move |s: Rc<Shard>| async move {
            let _guard = s.controller_lock.acquire_permit(1).await;
            let mut cat = (*s.catalog()).clone();
            let mut out = Vec::new();
            for n in names {
                let code = if cat.topics.remove(&n).is_some() {
                    ErrorCode::None
                } else {
                    ErrorCode::UnknownTopicOrPartition
                };
                out.push((n, code));
            }
            if out.iter().any(|(_, c)| *c == ErrorCode::None) {
                cat.version += 1;
                if let Err(e) = publish(&s, cat).await {
                    tracing::error!("delete topics: {e}");
                    for (_, c) in out.iter_mut() {
                        *c = ErrorCode::UnknownServerError;
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_else(|| {
            fallback
                .into_iter()
                .map(|n| (n, ErrorCode::UnknownServerError))
                .collect()
        })
}

/// Auto-creates the missing topics among `names` when `auto.create.topics.enable` is on.
/// Returns true if anything was created.
pub async fn auto_create(shard: &Rc<Shard>, names: &[String]) -> bool {
    if !shard.config.auto_create_topics_enable {
        return false;
    }
    let cat = shard.catalog();
    let missing: Vec<NewTopic> = names
        .iter()
        // Internal topics (`__consumer_offsets`) are created by their owners, never on demand.
        .filter(|n| {
            !cat.topics.contains_key(*n)
                && validate_topic_name(n).is_ok()
                && n.as_str() != crate::coordinator::OFFSETS_TOPIC
        })
        .map(|n| NewTopic {
            name: n.clone(),
            partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
        })
        .collect();
    if missing.is_empty() {
        return false;
    }
    let res = create_topics(shard, missing, false).await;
    // Another connection may have created it meanwhile (TOPIC_ALREADY_EXISTS): fine.
    res.iter()
        .any(|(_, o)| o.is_ok() || matches!(o, Err((ErrorCode::TopicAlreadyExists, _))))
}

/// Hands out a producer id; runs on the controller shard, reserving ids in persisted blocks.
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, String> {
    shard
        .invoke_on(CONTROLLER_SHARD, |s: Rc<Shard>| async move {
            let _guard = s.controller_lock.acquire_permit(1).await;
            let id = s.next_producer_id.get();
            let cat = s.catalog();
            if id >= cat.producer_id_reserved_end {
                let mut next = (*cat).clone();
                next.producer_id_reserved_end = id + PRODUCER_ID_BLOCK;
                next.version += 1;
                next.store(&s.config.data_dir)
                    .map_err(|e| format!("persisting producer id block: {e}"))?;
                s.install_catalog(Arc::new(next));
            }
            s.next_producer_id.set(id + 1);
            Ok(id)
        })
        .await
        .unwrap_or_else(|| Err("controller unavailable".into()))
}

/// How often producer-state snapshots are refreshed (bounds the log scan after `kill -9`).
const PRODUCER_SNAPSHOT_INTERVAL_MS: i64 = 60_000;

/// Background log maintenance on this shard.
pub async fn maintenance_loop(shard: Rc<Shard>) {
    let mut last_snapshot_ms = now_ms();
    loop {
        glommio::timer::sleep(Duration::from_millis(MAINTENANCE_INTERVAL_MS)).await;
        let now = now_ms();
        let snapshot_due = now - last_snapshot_ms >= PRODUCER_SNAPSHOT_INTERVAL_MS;
        for p in shard.all_partitions() {
            if let Err(e) = p.log.tick(now).await {
                tracing::error!(topic = %p.topic, partition = p.index, "log maintenance failed: {e}");
            }
            if snapshot_due {
                if let Err(e) = p.write_snapshot() {
                    tracing::warn!(topic = %p.topic, partition = p.index, "producer snapshot failed: {e}");
                }
            }
        }
        if snapshot_due {
            last_snapshot_ms = now;
        }
    }
}

/// CreatePartitions: grows topics to `count` partitions; runs on the controller shard.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    requests: Vec<(String, i32)>,
    validate_only: bool,
) -> Vec<(String, Result<(), (ErrorCode, String)>)> {
    let names: Vec<String> = requests.iter().map(|(n, _)| n.clone()).collect();
    shard
        .invoke_on(CONTROLLER_SHARD, move |s: Rc<Shard>| async move {
            let _guard = s.controller_lock.acquire_permit(1).await;
            let mut cat = (*s.catalog()).clone();
            let mut out = Vec::new();
            let mut changed = false;
            for (name, count) in requests {
                let current = cat.topics.get(&name).map(|t| t.partitions.len() as i32);
                let outcome = match current {
                    None => Err((ErrorCode::UnknownTopicOrPartition, format!("Topic '{name}' does not exist."))),
                    Some(n) if count <= n => Err((
                        ErrorCode::InvalidPartitions,
                        format!("Topic currently has {n} partitions, which is higher than or equal to the requested {count}."),
                    )),
                    Some(_) if count > 100_000 => Err((ErrorCode::InvalidPartitions, "At most 100000 partitions".into())),
                    Some(n) => {
                        if !validate_only {
                            let placement = cat.place((count - n) as usize, s.nr_shards);
                            if let Some(t) = cat.topics.get_mut(&name) {
                                t.partitions.extend(placement.into_iter().map(|shard| PartitionMeta { shard, leader_epoch: 0 }));
                            }
                            changed = true;
                        }
                        Ok(())
                    }
                };
                out.push((name, outcome));
            }
            if changed {
                cat.version += 1;
                if let Err(e) = publish(&s, cat).await {
                    for (_, o) in out.iter_mut() {
                        if o.is_ok() {
                            *o = Err((ErrorCode::UnknownServerError, e.clone()));
                        }
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_else(|| names.into_iter().map(|n| (n, Err((ErrorCode::UnknownServerError, "controller unavailable".into())))).collect())
}
