//! KIP-848 consumer groups (`group.protocol=consumer`): ConsumerGroupHeartbeat with server-side
//! assignment. State per group: a group epoch (bumped when members or subscriptions change), a
//! target assignment computed by an assignor for that epoch, and per member its epoch and the
//! partitions it may own now. Members converge on the target one heartbeat at a time: a member
//! first gives up partitions it must revoke (keeping its epoch), then moves to the target epoch
//! and receives new partitions only once their previous owner released them. Synchronous;
//! decisions take `now`.
//!
//! Membership is held in memory only: after a coordinator restart members get
//! UNKNOWN_MEMBER_ID and rejoin with epoch 0 (their committed offsets are durable).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use uuid::Uuid;

use super::assignor::{self, Assignment, AssignorMember};
use super::group::{Group, GroupState, GroupTable};
use crate::protocol::ErrorCode;

/// Member epoch of a member leaving for good.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (it keeps its partitions until its
/// session times out or it rejoins with the same instance id).
pub const LEAVE_STATIC_EPOCH: i32 = -2;
/// Bytes of subscribed topic names plus regex accepted per member (bounded memory).
pub const SUBSCRIPTION_BYTES_MAX: usize = 1 << 20;

/// Topic name -> (topic id, partition count) of the topics a group may subscribe to.
pub type TopicsView = BTreeMap<String, (Uuid, i32)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Owns exactly what it may own at its epoch.
    Stable,
    /// Must revoke `pending_revocation` before moving to the target epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions still owned by other members.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    /// `subscribed_regex` compiled (anchored), once per subscription change.
    subscribed_re: Option<regex::Regex>,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// Partitions the member may own now (what the last response told it).
    pub assigned: Assignment,
    /// Partitions it must give up before it gets more.
    pub pending_revocation: Assignment,
    pub last_heartbeat_ms: i64,
    /// Deadline for revoking `pending_revocation` (rebalance timeout); 0 when none pending.
    pub revoke_deadline_ms: i64,
}

/// KIP-848 state of a group (`Group::consumer`).
#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Member id -> target assignment.
    pub target: HashMap<String, Assignment>,
    pub members: IndexMap<String, ConsumerMember>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// (id, partitions) of every subscribed topic when the target was last computed; a change
    /// (topic created, deleted or grown) bumps the group epoch.
    pub subscribed_metadata: BTreeMap<String, (Uuid, i32)>,
    /// The assignor that computed the current target.
    pub assignor: String,
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct CgRequest {
    pub version: i16,
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_names: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// Partitions the member owns (None: unchanged since its last heartbeat).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgResponse {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<Assignment>,
}

impl CgResponse {
    pub fn error(error: ErrorCode, message: impl Into<String>) -> CgResponse {
        CgResponse {
            error,
            message: Some(message.into()),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

fn contains(a: &Assignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

fn add(a: &mut Assignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

fn is_subset(small: &Assignment, big: &Assignment) -> bool {
    small
        .iter()
        .all(|(t, ps)| ps.iter().all(|p| contains(big, t, *p)))
}

/// Whether the member still owns any of `revoking` (unknown ownership counts as owning).
fn owns_any(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    match owned {
        None => true,
        Some(o) => revoking
            .iter()
            .any(|(t, ps)| ps.iter().any(|p| contains(o, t, *p))),
    }
}

/// Kafka matches a subscription regex against the whole topic name.
fn full_match(re: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{re})$")).ok()
}

fn normalize(a: Assignment) -> Assignment {
    a.into_iter().filter(|(_, ps)| !ps.is_empty()).collect()
}

impl ConsumerMember {
    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.member_epoch {
            self.previous_epoch = self.member_epoch;
            self.member_epoch = epoch;
        }
    }

    /// Whether the subscription (names or regex) covers `topic`.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed_names.iter().any(|n| n == topic)
            || self
                .subscribed_re
                .as_ref()
                .is_some_and(|re| re.is_match(topic))
    }

    /// Topics this member subscribes to that exist (names and regex).
    fn subscribed(&self, topics: &TopicsView) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .subscribed_names
            .iter()
            .filter(|n| topics.contains_key(*n))
            .cloned()
            .collect();
        if let Some(re) = &self.subscribed_re {
            out.extend(topics.keys().filter(|n| re.is_match(n)).cloned());
        }
        out
    }
}

impl ConsumerGroup {
    fn bump(&mut self) {
        self.group_epoch += 1;
    }

    /// Whether another member owns (or is still revoking) `t`-`p`.
    fn owned_by_other(&self, member_id: &str, t: &Uuid, p: i32) -> bool {
        self.members.values().any(|m| {
            m.id != member_id
                && (contains(&m.assigned, t, p) || contains(&m.pending_revocation, t, p))
        })
    }

    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(m) = self.members.shift_remove(member_id) else {
            return false;
        };
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                self.static_members.remove(i);
            }
        }
        self.target.remove(member_id);
        self.bump();
        true
    }

    /// Recomputes the subscribed-topic metadata; bumps the group epoch if it changed.
    fn refresh_metadata(&mut self, topics: &TopicsView) {
        let mut names = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.subscribed(topics));
        }
        let now: BTreeMap<String, (Uuid, i32)> = names
            .into_iter()
            .filter_map(|n| topics.get(&n).map(|v| (n, *v)))
            .collect();
        if now != self.subscribed_metadata {
            self.subscribed_metadata = now;
            self.bump();
        }
    }

    /// The assignor the members prefer (most votes, ties to the configured order), or the
    /// first configured one.
    fn pick_assignor(&self, configured: &[String]) -> String {
        let mut best: Option<(&String, usize)> = None;
        for a in configured {
            let votes = self
                .members
                .values()
                .filter(|m| m.server_assignor.as_ref() == Some(a))
                .count();
            if votes > 0 && best.is_none_or(|(_, b)| votes > b) {
                best = Some((a, votes));
            }
        }
        best.map(|(a, _)| a.clone())
            .or_else(|| configured.first().cloned())
            .unwrap_or_else(|| assignor::UNIFORM.to_string())
    }

    /// Computes the target assignment for the current group epoch if it is stale.
    fn update_target(&mut self, topics: &TopicsView, assignors: &[String]) {
        if self.assignment_epoch == self.group_epoch && !self.target.is_empty() {
            return;
        }
        let by_id: BTreeMap<Uuid, i32> = self.subscribed_metadata.values().copied().collect();
        let name = self.pick_assignor(assignors);
        let input: Vec<AssignorMember> = self
            .members
            .values()
            .map(|m| AssignorMember {
                id: &m.id,
                topics: m
                    .subscribed(topics)
                    .iter()
                    .filter_map(|n| topics.get(n).map(|(id, _)| *id))
                    .collect(),
                previous: self.target.get(&m.id),
            })
            .collect();
        let target = assignor::assign(&name, &input, &by_id);
        self.assignor = name;
        self.target = target.into_iter().map(|(k, v)| (k, normalize(v))).collect();
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves `member_id` one step towards its target assignment (Kafka's
    /// CurrentAssignmentBuilder): revoke first, then take the target epoch and the partitions
    /// their previous owners released.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        match m.state {
            MemberState::UnrevokedPartitions if owns_any(owned, &m.pending_revocation) => return,
            MemberState::Stable if m.member_epoch == self.assignment_epoch => return,
            _ => {}
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        for (t, ps) in &m.assigned {
            for p in ps {
                if contains(&target, t, *p) {
                    add(&mut kept, *t, *p);
                } else {
                    add(&mut revoke, *t, *p);
                }
            }
        }
        let mut gained = Assignment::new();
        let mut unreleased = false;
        for (t, ps) in &target {
            for p in ps {
                if contains(&m.assigned, t, *p) {
                    continue;
                }
                if self.owned_by_other(member_id, t, *p) {
                    unreleased = true;
                } else {
                    add(&mut gained, *t, *p);
                }
            }
        }
        let target_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = kept;
            m.pending_revocation = revoke;
            m.revoke_deadline_ms = now + m.rebalance_timeout_ms.max(0) as i64;
            return;
        }
        for (t, ps) in gained {
            for p in ps {
                add(&mut kept, t, p);
            }
        }
        m.assigned = kept;
        m.pending_revocation.clear();
        m.revoke_deadline_ms = 0;
        m.set_epoch(target_epoch);
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Kafka's consumer group states (ListGroups, ConsumerGroupDescribe).
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.group_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }
}

impl Group {
    /// Keeps the classic `state` meaningful for a consumer group (Empty / Stable), which
    /// deletion and offset expiry rely on.
    pub fn sync_consumer_state(&mut self, now: i64) {
        let Some(cg) = &self.consumer else { return };
        let want = if cg.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if self.state != want {
            self.set_state(want, now);
        }
    }
}

fn validate(req: &CgRequest, assignors: &[String]) -> Result<(), (ErrorCode, String)> {
    let bad = |m: &str| Err((ErrorCode::InvalidRequest, m.to_string()));
    if req.group_id.is_empty() {
        return bad("GroupId can't be empty.");
    }
    if req.member_id.is_empty() && (req.version >= 1 || req.member_epoch != 0) {
        return bad("MemberId can't be empty.");
    }
    if req.member_epoch < LEAVE_STATIC_EPOCH {
        return bad("MemberEpoch is invalid.");
    }
    if req.member_epoch == LEAVE_STATIC_EPOCH && req.instance_id.is_none() {
        return bad("InstanceId can't be null when leaving as a static member.");
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms < 0 {
            return bad("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
            return bad("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_names.is_none() && req.subscribed_regex.is_none() {
            return bad(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    }
    let sub_bytes = req
        .subscribed_names
        .iter()
        .flatten()
        .map(String::len)
        .sum::<usize>()
        + req.subscribed_regex.as_ref().map_or(0, String::len);
    if sub_bytes > SUBSCRIPTION_BYTES_MAX {
        return bad("Subscription is too large.");
    }
    if let Some(a) = &req.server_assignor {
        if !assignors.contains(a) {
            return Err((
                ErrorCode::UnsupportedAssignor,
                format!("ServerAssignor {a} is not supported. Supported assignors: {assignors:?}."),
            ));
        }
    }
    if let Some(r) = req.subscribed_regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(e) = regex::Regex::new(r) {
            return Err((
                ErrorCode::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{r}` is not a valid regular expression: {e}"),
            ));
        }
    }
    Ok(())
}

impl GroupTable {
    /// ConsumerGroupHeartbeat: join, leave, update the subscription, and advance the member
    /// towards its target assignment.
    pub fn consumer_heartbeat(
        &mut self,
        partition: i32,
        mut req: CgRequest,
        topics: &TopicsView,
        now: i64,
    ) -> CgResponse {
        let limits = self.limits.clone();
        if let Err((e, msg)) = validate(&req, &limits.consumer_assignors) {
            return CgResponse::error(e, msg);
        }
        if req.member_id.is_empty() {
            // v0: the coordinator names a joining member.
            req.member_id = Uuid::new_v4().to_string();
        }
        if !self.groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return CgResponse::error(ErrorCode::UnknownMemberId, "Unknown member.");
            }
            self.groups.insert(
                req.group_id.clone(),
                Group::new(&req.group_id, partition, now),
            );
        }
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return CgResponse::error(ErrorCode::CoordinatorNotAvailable, "group vanished");
        };
        if g.consumer.is_none() {
            if !g.members.is_empty() || g.is(GroupState::Dead) {
                return CgResponse::error(
                    ErrorCode::GroupIdNotFound,
                    format!("Group {} is not a consumer group.", req.group_id),
                );
            }
            g.consumer = Some(ConsumerGroup::default());
            g.protocol_type = Some("consumer".to_string());
            g.protocol = None;
            g.leader = None;
        }
        let resp = {
            let Some(cg) = g.consumer.as_mut() else {
                return CgResponse::error(
                    ErrorCode::CoordinatorNotAvailable,
                    "not a consumer group",
                );
            };
            heartbeat(cg, req, topics, &limits, now)
        };
        g.sync_consumer_state(now);
        resp
    }

    /// Session and revocation timers of consumer groups: fenced members are removed.
    pub fn tick_consumer_groups(&mut self, now: i64) {
        let session_ms = self.limits.consumer_session_timeout_ms as i64;
        for g in self.groups.values_mut() {
            let Some(cg) = g.consumer.as_mut() else {
                continue;
            };
            let expired: Vec<String> = cg
                .members
                .values()
                .filter(|m| {
                    m.last_heartbeat_ms + session_ms <= now
                        || (m.revoke_deadline_ms > 0 && m.revoke_deadline_ms <= now)
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %g.id, member = %id, "consumer group member fenced (session or revocation timeout)");
                cg.remove_member(&id);
            }
            g.sync_consumer_state(now);
        }
    }

    /// OffsetCommit/OffsetFetch checks for a member of a consumer group: known member, current
    /// epoch. `Ok(None)` when the group is not a consumer group (classic rules apply).
    pub fn check_consumer_member(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Option<Result<(), ErrorCode>> {
        let cg = self.groups.get(group_id)?.consumer.as_ref()?;
        if member_epoch < 0 && cg.members.is_empty() {
            return Some(Ok(()));
        }
        let Some(m) = cg.members.get(member_id) else {
            return Some(Err(ErrorCode::UnknownMemberId));
        };
        Some(if member_epoch > m.member_epoch {
            Err(ErrorCode::FencedMemberEpoch)
        } else if member_epoch < m.member_epoch {
            Err(ErrorCode::StaleMemberEpoch)
        } else {
            Ok(())
        })
    }
}

fn heartbeat(
    cg: &mut ConsumerGroup,
    req: CgRequest,
    topics: &TopicsView,
    limits: &super::group::Limits,
    now: i64,
) -> CgResponse {
    let ok = |member_id: &str, epoch: i32| CgResponse {
        error: ErrorCode::None,
        message: None,
        member_id: Some(member_id.to_string()),
        member_epoch: epoch,
        heartbeat_interval_ms: limits.consumer_heartbeat_interval_ms,
        assignment: None,
    };
    // Leaving.
    if req.member_epoch < 0 {
        if !cg.members.contains_key(&req.member_id) {
            return CgResponse::error(ErrorCode::UnknownMemberId, "Unknown member.");
        }
        if req.member_epoch == LEAVE_STATIC_EPOCH {
            // Keeps its partitions for a rejoin with the same instance id.
            if let Some(m) = cg.members.get_mut(&req.member_id) {
                m.set_epoch(LEAVE_STATIC_EPOCH);
                m.last_heartbeat_ms = now;
            }
        } else {
            cg.remove_member(&req.member_id);
        }
        return ok(&req.member_id, req.member_epoch);
    }
    let full_request = req.member_epoch == 0
        || (req.rebalance_timeout_ms != -1
            && req.subscribed_names.is_some()
            && req.owned.is_some());
    let (before_assigned, before_epoch);
    if req.member_epoch == 0 {
        if let Some(err) = join(cg, &req, limits, now) {
            return err;
        }
        before_assigned = None;
        before_epoch = 0;
    } else {
        let Some(m) = cg.members.get(&req.member_id) else {
            return CgResponse::error(ErrorCode::UnknownMemberId, "Unknown member.");
        };
        if m.member_epoch == LEAVE_STATIC_EPOCH {
            return CgResponse::error(ErrorCode::UnknownMemberId, "The member left the group.");
        }
        if req.member_epoch > m.member_epoch {
            return CgResponse::error(
                ErrorCode::FencedMemberEpoch,
                format!("epoch {} is ahead of {}", req.member_epoch, m.member_epoch),
            );
        }
        if req.member_epoch < m.member_epoch {
            // A lost response: the previous epoch is fine if the member owns no more than it
            // may own now.
            let lost_response = req.member_epoch == m.previous_epoch
                && req
                    .owned
                    .as_ref()
                    .is_some_and(|o| is_subset(o, &m.assigned));
            if !lost_response {
                return CgResponse::error(
                    ErrorCode::FencedMemberEpoch,
                    format!("epoch {} is behind {}", req.member_epoch, m.member_epoch),
                );
            }
        }
        before_assigned = Some(m.assigned.clone());
        before_epoch = m.member_epoch;
        update_member(cg, &req, now);
    }
    cg.refresh_metadata(topics);
    cg.update_target(topics, &limits.consumer_assignors);
    cg.reconcile(&req.member_id, req.owned.as_ref(), now);
    let Some(m) = cg.members.get(&req.member_id) else {
        return CgResponse::error(ErrorCode::UnknownMemberId, "Unknown member.");
    };
    let mut r = ok(&m.id, m.member_epoch);
    if full_request
        || before_assigned.as_ref() != Some(&m.assigned)
        || before_epoch != m.member_epoch
    {
        r.assignment = Some(m.assigned.clone());
    }
    r
}

/// Applies a heartbeat's changed fields; bumps the group epoch when the subscription changed.
fn update_member(cg: &mut ConsumerGroup, req: &CgRequest, now: i64) {
    let mut changed = false;
    if let Some(m) = cg.members.get_mut(&req.member_id) {
        m.last_heartbeat_ms = now;
        if req.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        if let Some(names) = &req.subscribed_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != m.subscribed_names {
                m.subscribed_names = names;
                changed = true;
            }
        }
        if let Some(re) = &req.subscribed_regex {
            let re = Some(re.clone()).filter(|r| !r.is_empty());
            if re != m.subscribed_regex {
                // `validate` checked it compiles.
                m.subscribed_re = re.as_deref().and_then(full_match);
                m.subscribed_regex = re;
                changed = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            if m.server_assignor.as_ref() != Some(a) {
                m.server_assignor = Some(a.clone());
                changed = true;
            }
        }
    }
    if changed {
        cg.bump();
    }
}

/// Epoch 0: a new member, a static member replacing its previous incarnation, or a member
/// rejoining after an error. Returns an error response if it cannot join.
fn join(
    cg: &mut ConsumerGroup,
    req: &CgRequest,
    limits: &super::group::Limits,
    now: i64,
) -> Option<CgResponse> {
    let mut inherited: Option<ConsumerMember> = None;
    if let Some(inst) = &req.instance_id {
        if let Some(old_id) = cg.static_members.get(inst).cloned() {
            let old_epoch = cg.members.get(&old_id).map(|m| m.member_epoch);
            if old_id != req.member_id && old_epoch.is_some_and(|e| e != LEAVE_STATIC_EPOCH) {
                return Some(CgResponse::error(
                    ErrorCode::UnreleasedInstanceId,
                    format!("Static member {inst} is still in use by another member."),
                ));
            }
            // The new incarnation takes over the old one's partitions and target: no rebalance.
            if let Some(old) = cg.members.shift_remove(&old_id) {
                if let Some(t) = cg.target.remove(&old_id) {
                    cg.target.insert(req.member_id.clone(), t);
                }
                inherited = Some(old);
            }
        }
    }
    if inherited.is_none() && cg.members.contains_key(&req.member_id) {
        // Rejoining after an error: start over with nothing owned.
        cg.remove_member(&req.member_id);
    }
    if inherited.is_none() && cg.members.len() >= limits.max_size {
        return Some(CgResponse::error(
            ErrorCode::GroupMaxSizeReached,
            format!(
                "The consumer group has reached its maximum capacity of {} members.",
                limits.max_size
            ),
        ));
    }
    let member = match inherited {
        Some(old) => {
            let epoch = if old.previous_epoch > 0 {
                old.previous_epoch
            } else {
                cg.assignment_epoch
            };
            ConsumerMember {
                id: req.member_id.clone(),
                member_epoch: epoch,
                previous_epoch: 0,
                last_heartbeat_ms: now,
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                ..old
            }
        }
        None => ConsumerMember {
            id: req.member_id.clone(),
            instance_id: req.instance_id.clone(),
            rack_id: req.rack_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            subscribed_re: None,
            server_assignor: None,
            member_epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_heartbeat_ms: now,
            revoke_deadline_ms: 0,
        },
    };
    let is_new = member.member_epoch == 0;
    if let Some(inst) = &req.instance_id {
        cg.static_members
            .insert(inst.clone(), req.member_id.clone());
    }
    cg.members.insert(req.member_id.clone(), member);
    if is_new {
        cg.bump();
    }
    update_member(cg, req, now);
    None
}
