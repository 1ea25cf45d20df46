//! Compaction of `__consumer_offsets` by snapshot. Kafka compacts the topic with its log
//! cleaner; here the coordinator already holds the live value of every key in memory, so when a
//! partition's log holds many more records than live keys it appends the live state as fresh
//! records and then moves the log start offset to the first of them (whole segments below it
//! are deleted as they close). Replaying from the new start yields the same groups and offsets:
//! the snapshot restates every live key, and what was deleted before it is simply absent.
//!
//! Safety: the snapshot is staged synchronously, so every record below its first offset is
//! either reflected in memory or belongs to an OffsetCommit still waiting for durability.
//! Compaction runs only when no commit is in flight on the partition
//! (`Coordinator::commits_in_flight`), and moves the log start only after the snapshot is
//! durable. A crash in between leaves history plus snapshot, which replays to the same state.

use std::rc::Rc;

use super::group::{GroupTable, PendingRecord};
use super::records::{self, OffsetValue, RecordKey};
use super::{persist, OFFSETS_TOPIC};
use crate::shard::Shard;

/// Marks an OffsetCommit of `partition` in flight (appended, not yet applied) for its lifetime.
pub struct CommitInFlight {
    shard: Rc<Shard>,
    partition: i32,
}

impl CommitInFlight {
    pub fn new(shard: &Rc<Shard>, partition: i32) -> CommitInFlight {
        *shard
            .coordinator
            .commits_in_flight
            .borrow_mut()
            .entry(partition)
            .or_default() += 1;
        CommitInFlight {
            shard: shard.clone(),
            partition,
        }
    }
}

impl Drop for CommitInFlight {
    fn drop(&mut self) {
        let mut m = self.shard.coordinator.commits_in_flight.borrow_mut();
        if let Some(n) = m.get_mut(&self.partition) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.partition);
            }
        }
    }
}

impl GroupTable {
    /// Records restating the live state of every group on `partition`: committed offsets (with
    /// their original commit timestamps, so expiry is unchanged) and the metadata of classic
    /// groups that have had a generation.
    pub fn snapshot_records(&self, partition: i32) -> Vec<PendingRecord> {
        let mut out = Vec::new();
        let mut ids: Vec<&String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.partition == partition)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        for id in ids {
            let g = &self.groups[id];
            if g.consumer.is_none() && (g.generation > 0 || !g.members.is_empty()) {
                out.push(PendingRecord {
                    partition,
                    key: records::encode_key(&RecordKey::Group { group: id.clone() }),
                    value: Some(records::encode_group_value(&g.to_value())),
                });
            }
            for ((topic, p), o) in &g.offsets {
                out.push(PendingRecord {
                    partition,
                    key: records::encode_key(&RecordKey::Offset {
                        group: id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                    }),
                    value: Some(records::encode_offset_value(&OffsetValue {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp: o.commit_timestamp_ms,
                        expire_timestamp: -1,
                    })),
                });
            }
        }
        out
    }
}

/// Compacts `partition` if its log holds more than `min_records` records and more than twice
/// its live keys. Returns (old log start, new log start) when it compacted.
pub async fn maybe_compact(
    shard: &Rc<Shard>,
    partition: i32,
    min_records: i64,
    now: i64,
) -> Result<Option<(i64, i64)>, String> {
    let Some(p) = shard.partition(OFFSETS_TOPIC, partition) else {
        return Ok(None);
    };
    if shard
        .coordinator
        .commits_in_flight
        .borrow()
        .contains_key(&partition)
    {
        return Ok(None);
    }
    let before = p.log.log_start_offset().get();
    let in_log = p.log.log_end_offset().get() - before;
    let recs = shard.coordinator.table.borrow().snapshot_records(partition);
    if in_log <= min_records.max(0) || in_log <= 2 * recs.len() as i64 {
        return Ok(None);
    }
    // Staged synchronously from here: the snapshot's first offset is today's log end.
    let start = p.log.log_end_offset().get();
    persist::append(shard, recs, now)
        .await
        .map_err(|e| format!("appending the snapshot: {e:?}"))?;
    // Everything below `start` is restated at or after it. (With nothing to restate nothing was
    // awaited: stay within the high watermark.)
    let start = start.min(p.log.high_watermark().get());
    let after = p
        .log
        .delete_records_before(start)
        .await
        .map_err(|e| format!("moving the log start to {start}: {e}"))?
        .get();
    Ok(Some((before, after)))
}
