//! Group state held by the coordinator shard: members, generation, selected protocol and
//! committed offsets. Everything here is synchronous and takes `now` explicitly; the shard-side
//! driver (`coordinator::mod`) appends records and delivers replies.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures::channel::oneshot;
use indexmap::IndexMap;

use super::consumer::ConsumerGroup;
use super::records::{self, GroupValue, MemberValue, RecordKey};
use crate::protocol::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's state names (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Limits and timings from the broker config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members per group.
    pub max_size: usize,
    pub offsets_retention_ms: i64,
    pub offset_metadata_max_bytes: usize,
    /// Bytes of protocol metadata one classic member may register (all protocols together).
    pub member_metadata_max_bytes: usize,
    /// KIP-848 groups: `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: i32,
    /// KIP-848 groups: `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// KIP-848 groups: `group.consumer.assignors`, the first is the default.
    pub consumer_assignors: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: 10_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offset_metadata_max_bytes: 4096,
            member_metadata_max_bytes: 1 << 20,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_assignors: vec![
                super::assignor::UNIFORM.to_string(),
                super::assignor::RANGE.to_string(),
            ],
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinOutcome {
    pub fn error(error: ErrorCode, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ErrorCode) -> SyncOutcome {
        SyncOutcome {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A reply available now, or once the group reaches the next step.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    pub sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    pub last_heartbeat_ms: i64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Kept alive while a join or sync is parked (Kafka's `shouldKeepAlive`).
    pub fn is_waiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    pub fn fail_waiters(&mut self, error: ErrorCode) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(JoinOutcome::error(error, &self.id));
        }
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(SyncOutcome::error(error));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

pub struct Group {
    pub id: String,
    /// The `__consumer_offsets` partition holding this group.
    pub partition: i32,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, until they join (deadline).
    pub pending_members: HashMap<String, i64>,
    /// PreparingRebalance: when the join phase completes at the latest.
    pub join_deadline_ms: i64,
    /// Initial (delayed) rebalance of an empty group: the limit to which joins may extend the
    /// delay; 0 when the rebalance is not an initial one.
    pub initial_join_limit_ms: i64,
    pub offsets: BTreeMap<(String, i32), OffsetEntry>,
    /// KIP-848 state when this is a consumer group (`group.protocol=consumer`); None: classic.
    pub consumer: Option<ConsumerGroup>,
}

impl Group {
    pub fn new(id: &str, partition: i32, now: i64) -> Group {
        Group {
            id: id.to_string(),
            partition,
            state: GroupState::Empty,
            state_timestamp_ms: now,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: 0,
            initial_join_limit_ms: 0,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    /// The state name clients see (consumer groups have their own states).
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(cg) => cg.state_name(),
            None => self.state.name(),
        }
    }

    /// ListGroups v5 group type.
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    pub fn is(&self, s: GroupState) -> bool {
        self.state == s
    }

    pub fn set_state(&mut self, s: GroupState, now: i64) {
        self.state = s;
        self.state_timestamp_ms = now;
    }

    /// Protocols every member supports, in the first member's order.
    pub fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// Kafka's vote: each member votes for its most preferred candidate; most votes wins.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (c, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c)
    }

    /// Whether a member with this protocol type and protocols can join.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    pub fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// FENCED_INSTANCE_ID when `instance_id` belongs to another member id.
    pub fn check_fenced(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(owner) if owner != member_id => Err(ErrorCode::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// The group metadata record value (Kafka's GroupMetadataValue).
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The group metadata record of the current state.
    pub fn metadata_record(&self) -> PendingRecord {
        PendingRecord {
            partition: self.partition,
            key: records::encode_key(&RecordKey::Group {
                group: self.id.clone(),
            }),
            value: Some(records::encode_group_value(&self.to_value())),
        }
    }

    /// Restores members and generation from a loaded GroupMetadataValue.
    pub fn restore(&mut self, v: GroupValue, now: i64) {
        self.protocol_type = Some(v.protocol_type).filter(|p| !p.is_empty());
        self.generation = v.generation;
        self.protocol = v.protocol.clone();
        self.leader = v.leader;
        self.members.clear();
        self.static_members.clear();
        for m in v.members {
            if let Some(i) = &m.instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            let protocols = match &v.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat_ms: now,
                },
            );
        }
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state = state;
        self.state_timestamp_ms = if v.state_timestamp > 0 {
            v.state_timestamp
        } else {
            now
        };
    }
}

/// A record to append to a `__consumer_offsets` partition (value None: tombstone).
#[derive(Debug, Clone)]
pub struct PendingRecord {
    pub partition: i32,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Every group this shard coordinates.
#[derive(Default)]
pub struct GroupTable {
    pub groups: HashMap<String, Group>,
    pub limits: Limits,
    /// Group metadata records produced by state changes, appended by the driver.
    pub outbox: Vec<PendingRecord>,
}

impl GroupTable {
    pub fn new(limits: Limits) -> GroupTable {
        GroupTable {
            groups: HashMap::new(),
            limits,
            outbox: Vec::new(),
        }
    }

    /// Queues the group's metadata record.
    pub fn store_group(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            let rec = g.metadata_record();
            self.outbox.push(rec);
        }
    }

    /// Applies one record read back from the log (loading).
    pub fn replay(&mut self, partition: i32, key: RecordKey, value: Option<Bytes>, now: i64) {
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition: p,
            } => match value.map(records::decode_offset_value) {
                Some(Ok(v)) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now));
                    g.offsets.insert(
                        (topic, p),
                        OffsetEntry {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp_ms: v.commit_timestamp,
                        },
                    );
                }
                Some(Err(e)) => tracing::warn!(group, "skipping offset record: {e}"),
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, p));
                    }
                }
            },
            RecordKey::Group { group } => match value.map(records::decode_group_value) {
                Some(Ok(v)) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now));
                    g.restore(v, now);
                }
                Some(Err(e)) => tracing::warn!(group, "skipping group record: {e}"),
                None => {
                    self.groups.remove(&group);
                }
            },
        }
    }

    /// DeleteGroups: only groups without members. Returns the tombstones to write.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<PendingRecord>, ErrorCode> {
        let Some(g) = self.groups.get(group_id) else {
            return Err(ErrorCode::GroupIdNotFound);
        };
        if !g.is(GroupState::Empty) && !g.is(GroupState::Dead) {
            return Err(ErrorCode::NonEmptyGroup);
        }
        let mut g = self
            .groups
            .remove(group_id)
            .ok_or(ErrorCode::GroupIdNotFound)?;
        g.set_state(GroupState::Dead, 0);
        Ok(tombstones(&g, g.offsets.keys().cloned().collect(), true))
    }
}

/// The record of one committed offset of `group` in `__consumer_offsets` partition
/// `partition` (the entry's commit timestamp is kept, so a restated offset expires as before).
pub fn offset_record(
    partition: i32,
    group: &str,
    topic: &str,
    topic_partition: i32,
    o: &OffsetEntry,
) -> PendingRecord {
    PendingRecord {
        partition,
        key: records::encode_key(&RecordKey::Offset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition: topic_partition,
        }),
        value: Some(records::encode_offset_value(&records::OffsetValue {
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            commit_timestamp: o.commit_timestamp_ms,
            expire_timestamp: -1,
        })),
    }
}

/// Tombstones for some of a group's offsets and, if `group_too`, its metadata.
pub fn tombstones(g: &Group, keys: Vec<(String, i32)>, group_too: bool) -> Vec<PendingRecord> {
    let mut out: Vec<PendingRecord> = keys
        .into_iter()
        .map(|(topic, partition)| PendingRecord {
            partition: g.partition,
            key: records::encode_key(&RecordKey::Offset {
                group: g.id.clone(),
                topic,
                partition,
            }),
            value: None,
        })
        .collect();
    if group_too {
        out.push(PendingRecord {
            partition: g.partition,
            key: records::encode_key(&RecordKey::Group {
                group: g.id.clone(),
            }),
            value: None,
        });
    }
    out
}
