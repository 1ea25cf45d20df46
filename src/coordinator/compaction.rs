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

use super::group::{offset_record, Group, GroupTable, PendingRecord};
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

/// Whether a snapshot restates `g`'s metadata: classic groups that have had a generation.
fn restates_metadata(g: &Group) -> bool {
    g.consumer.is_none() && (g.generation > 0 || !g.members.is_empty())
}

impl GroupTable {
    fn groups_on(&self, partition: i32) -> impl Iterator<Item = &Group> {
        self.groups
            .values()
            .filter(move |g| g.partition == partition)
    }

    /// How many records a snapshot of `partition` holds (without encoding them).
    pub fn live_records(&self, partition: i32) -> usize {
        self.groups_on(partition)
            .map(|g| usize::from(restates_metadata(g)) + g.offsets.len())
            .sum()
    }

    /// Records restating the live state of every group on `partition`: committed offsets (with
    /// their original commit timestamps, so expiry is unchanged) and the metadata of classic
    /// groups that have had a generation.
    pub fn snapshot_records(&self, partition: i32) -> Vec<PendingRecord> {
        let mut groups: Vec<&Group> = self.groups_on(partition).collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Vec::new();
        for g in groups {
            if restates_metadata(g) {
                out.push(g.metadata_record());
            }
            for ((topic, p), o) in &g.offsets {
                out.push(offset_record(partition, &g.id, topic, *p, o));
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
    let live = shard.coordinator.table.borrow().live_records(partition) as i64;
    if in_log <= min_records.max(0) || in_log <= 2 * live {
        return Ok(None);
    }
    let recs = shard.coordinator.table.borrow().snapshot_records(partition);
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
