//! Committed offsets: commit validation (generation and member checks), storing after the
//! append is durable, fetching, OffsetDelete and retention expiry.

use super::group::{
    offset_record, tombstones, Group, GroupState, GroupTable, OffsetEntry, PendingRecord,
};
use super::records;
use crate::protocol::ErrorCode;

/// One partition to commit.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl CommitEntry {
    /// What the group stores for this commit at `now`.
    fn entry(&self, now: i64) -> OffsetEntry {
        OffsetEntry {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone().unwrap_or_default(),
            commit_timestamp_ms: now,
        }
    }
}

/// (topic, partition, offset, leader epoch, metadata) as OffsetFetch returns it; offset -1
/// when nothing is committed.
pub type FetchedOffset = (String, i32, i64, i32, String);

/// Who commits: OffsetCommit's member fields.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// Generation (classic) or member epoch (KIP-848); < 0 for a standalone commit.
    pub generation: i32,
    pub api_version: i16,
}

impl GroupTable {
    /// Checks whether the committer may commit (Kafka's rules); `generation < 0` with no
    /// members is a simple (standalone) commit.
    pub fn check_commit(
        &mut self,
        partition: i32,
        group_id: &str,
        who: Committer,
        now: i64,
    ) -> Result<(), ErrorCode> {
        let Committer {
            member_id,
            instance_id,
            generation,
            api_version,
        } = who;
        if group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        if let Some(checked) = self.check_consumer_member(group_id, member_id, generation) {
            // KIP-848 members commit with OffsetCommit v9+ and their member epoch.
            let member_commit = !(generation < 0 && member_id.is_empty());
            if member_commit && api_version < 9 && checked.is_ok() {
                return Err(ErrorCode::UnsupportedVersion);
            }
            return checked;
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            if generation < 0 {
                self.groups
                    .insert(group_id.to_string(), Group::new(group_id, partition, now));
                return Ok(());
            }
            return Err(ErrorCode::IllegalGeneration);
        };
        if g.is(GroupState::Dead) {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation < 0 && g.is(GroupState::Empty) {
            return Ok(());
        }
        g.check_fenced(member_id, instance_id)?;
        if g.is(GroupState::CompletingRebalance) {
            return Err(ErrorCode::RebalanceInProgress);
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Err(ErrorCode::UnknownMemberId);
        };
        if generation != g.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        m.last_heartbeat_ms = now;
        Ok(())
    }

    /// The records for a validated commit, and per entry whether it is acceptable.
    pub fn commit_records(
        &self,
        partition: i32,
        group_id: &str,
        entries: &[CommitEntry],
        now: i64,
    ) -> (Vec<PendingRecord>, Vec<ErrorCode>) {
        let mut recs = Vec::new();
        let mut codes = Vec::new();
        for e in entries {
            let entry = e.entry(now);
            if entry.metadata.len() > self.limits.offset_metadata_max_bytes {
                codes.push(ErrorCode::OffsetMetadataTooLarge);
                continue;
            }
            codes.push(ErrorCode::None);
            recs.push(offset_record(
                partition,
                group_id,
                &e.topic,
                e.partition,
                &entry,
            ));
        }
        (recs, codes)
    }

    /// Applies a durable commit.
    pub fn apply_commit(
        &mut self,
        partition: i32,
        group_id: &str,
        entries: &[CommitEntry],
        codes: &[ErrorCode],
        now: i64,
    ) {
        let g = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, partition, now));
        for (e, c) in entries.iter().zip(codes) {
            if *c == ErrorCode::None {
                g.offsets
                    .insert((e.topic.clone(), e.partition), e.entry(now));
            }
        }
    }

    /// Committed offsets of `group_id` for the given partitions (None: every committed one).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<FetchedOffset> {
        let g = self.groups.get(group_id);
        match wanted {
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), o)| {
                            (t.clone(), *p, o.offset, o.leader_epoch, o.metadata.clone())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Some(ws) => ws
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
                .map(
                    |(t, p)| match g.and_then(|g| g.offsets.get(&(t.clone(), p))) {
                        Some(o) => (t.clone(), p, o.offset, o.leader_epoch, o.metadata.clone()),
                        None => (t.clone(), p, -1, -1, String::new()),
                    },
                )
                .collect(),
        }
    }

    /// OffsetDelete: removes offsets of topics no member subscribes to. Returns the group-level
    /// error, per-partition errors and the tombstones to write.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        wanted: &[(String, Vec<i32>)],
    ) -> (ErrorCode, Vec<(String, i32, ErrorCode)>, Vec<PendingRecord>) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return (ErrorCode::GroupIdNotFound, Vec::new(), Vec::new());
        };
        let consumer = g.protocol_type.as_deref() == Some("consumer");
        if !g.is(GroupState::Empty) && !consumer {
            return (ErrorCode::NonEmptyGroup, Vec::new(), Vec::new());
        }
        let subscribed: Vec<String> = if g.is(GroupState::Empty) {
            Vec::new()
        } else if let Some(cg) = &g.consumer {
            // KIP-848 members: subscribed names, and regexes matched against the topics asked.
            wanted
                .iter()
                .map(|(t, _)| t)
                .filter(|t| cg.members.values().any(|m| m.subscribes_to(t)))
                .cloned()
                .collect()
        } else {
            let protocol = g.protocol.clone().unwrap_or_default();
            g.members
                .values()
                .flat_map(|m| records::subscribed_topics(m.metadata_for(&protocol)))
                .collect()
        };
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for (t, ps) in wanted {
            for p in ps {
                if subscribed.contains(t) {
                    out.push((t.clone(), *p, ErrorCode::GroupSubscribedToTopic));
                } else {
                    if g.offsets.remove(&(t.clone(), *p)).is_some() {
                        keys.push((t.clone(), *p));
                    }
                    out.push((t.clone(), *p, ErrorCode::None));
                }
            }
        }
        let recs = tombstones(g, keys, false);
        (ErrorCode::None, out, recs)
    }

    /// Expires offsets of empty groups after `offsets.retention.minutes` (counted from the
    /// later of the commit and the group becoming empty), and drops empty groups with no
    /// offsets left. Returns the tombstones to write.
    pub fn expire_offsets(&mut self, now: i64) -> Vec<PendingRecord> {
        let retention = self.limits.offsets_retention_ms;
        let mut recs = Vec::new();
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            if !g.is(GroupState::Empty) {
                continue;
            }
            let since = g.state_timestamp_ms;
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(_, o)| o.commit_timestamp_ms.max(since) + retention <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                g.offsets.remove(k);
            }
            let drop_group = g.offsets.is_empty() && since + retention <= now;
            if !expired.is_empty() || drop_group {
                recs.extend(tombstones(g, expired, drop_group));
            }
            if drop_group {
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            self.groups.remove(&id);
        }
        recs
    }
}
