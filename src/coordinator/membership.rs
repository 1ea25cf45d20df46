//! The classic group protocol's membership phase, as Kafka's GroupCoordinator: JoinGroup
//! (KIP-394 member ids, static membership), Heartbeat, LeaveGroup, session expiry and
//! completion of the join phase. Synchronous; decisions take `now`.

use bytes::Bytes;
use futures::channel::oneshot;

use super::group::{
    Group, GroupState, GroupTable, JoinOutcome, JoinedMember, Member, Reply, SyncOutcome,
};
use crate::protocol::ErrorCode;

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: unknown members first get MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: the leader of a static rejoin may skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// The current generation's join answer for `member_id` (the leader gets the member list).
fn current_outcome(g: &Group, member_id: &str, with_members: bool) -> JoinOutcome {
    let protocol = g.protocol.clone().unwrap_or_default();
    JoinOutcome {
        error: ErrorCode::None,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members: if with_members {
            g.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        },
        skip_assignment: false,
    }
}

impl Group {
    /// Moves to PreparingRebalance (failing parked syncs), then completes the join phase if it
    /// already can.
    pub fn prepare_rebalance(&mut self, initial_delay_ms: i64, now: i64) {
        if self.is(GroupState::CompletingRebalance) {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(SyncOutcome::error(ErrorCode::RebalanceInProgress));
                }
            }
        }
        let initial = self.is(GroupState::Empty);
        self.set_state(GroupState::PreparingRebalance, now);
        let rebalance_timeout = self.max_rebalance_timeout_ms();
        if initial {
            self.join_deadline_ms = now + initial_delay_ms.min(rebalance_timeout);
            self.initial_join_limit_ms = now + rebalance_timeout;
        } else {
            self.join_deadline_ms = now + rebalance_timeout;
            self.initial_join_limit_ms = 0;
        }
        self.try_complete_join(now);
    }

    /// Completes the join phase once every member rejoined (not during an initial delay) or
    /// the deadline passed. Returns true if the group changed and must be stored.
    pub fn try_complete_join(&mut self, now: i64) -> bool {
        if !self.is(GroupState::PreparingRebalance) {
            return false;
        }
        let all_joined = self.pending_members.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some());
        if (self.initial_join_limit_ms == 0 && all_joined) || now >= self.join_deadline_ms {
            return self.complete_join(now);
        }
        false
    }

    fn complete_join(&mut self, now: i64) -> bool {
        // Dynamic members that did not rejoin in time are removed (static ones stay).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.initial_join_limit_ms = 0;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            return true;
        }
        self.protocol = self.select_protocol();
        let leader_ok = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l));
        if !leader_ok {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now);
        let leader_view = current_outcome(self, "", true);
        for m in self.members.values_mut() {
            m.last_heartbeat_ms = now;
            if let Some(tx) = m.join_waiter.take() {
                let mut o = leader_view.clone();
                o.member_id = m.id.clone();
                if o.leader != m.id {
                    o.members.clear();
                }
                let _ = tx.send(o);
            }
        }
        false
    }

    /// Removes a member, failing its parked requests; the caller decides about rebalancing.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(mut m) = self.members.shift_remove(member_id) else {
            return self.pending_members.remove(member_id).is_some();
        };
        m.fail_waiters(ErrorCode::UnknownMemberId);
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                self.static_members.remove(i);
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        true
    }

    /// After members left or expired: rebalance (or finish the one in progress).
    /// Returns true if the group must be stored.
    pub fn on_members_removed(&mut self, initial_delay_ms: i64, now: i64) -> bool {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(initial_delay_ms, now);
                self.is(GroupState::Empty)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => false,
        }
    }
}

impl GroupTable {
    pub fn join(&mut self, partition: i32, req: JoinRequest, now: i64) -> Reply<JoinOutcome> {
        let err = |e: ErrorCode, id: &str| Reply::Now(JoinOutcome::error(e, id));
        if req.group_id.is_empty() {
            return err(ErrorCode::InvalidGroupId, &req.member_id);
        }
        if req.session_timeout_ms < self.limits.min_session_timeout_ms
            || req.session_timeout_ms > self.limits.max_session_timeout_ms
        {
            return err(ErrorCode::InvalidSessionTimeout, &req.member_id);
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return err(ErrorCode::UnknownMemberId, &req.member_id);
            }
            self.groups.insert(
                req.group_id.clone(),
                Group::new(&req.group_id, partition, now),
            );
        }
        let limits = self.limits.clone();
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return err(ErrorCode::CoordinatorNotAvailable, &req.member_id);
        };
        if g.is(GroupState::Dead) {
            return err(ErrorCode::CoordinatorNotAvailable, &req.member_id);
        }
        if let Some(cg) = &g.consumer {
            if !cg.members.is_empty() {
                // A consumer (KIP-848) group with members: classic members cannot join it.
                return err(ErrorCode::InconsistentGroupProtocol, &req.member_id);
            }
            g.consumer = None;
            g.protocol_type = None;
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > limits.member_metadata_max_bytes {
            tracing::warn!(
                group = %req.group_id,
                bytes = metadata_bytes,
                "JoinGroup protocol metadata over group.member.metadata.max.bytes"
            );
            return err(ErrorCode::InvalidRequest, &req.member_id);
        }
        if !g.supports(&req.protocol_type, &req.protocols) {
            return err(ErrorCode::InconsistentGroupProtocol, &req.member_id);
        }
        let group_id = req.group_id.clone();
        let reply = if req.member_id.is_empty() {
            join_new(g, req, &limits, now)
        } else {
            join_existing(g, req, &limits, now)
        };
        // Record a group whose join phase completed to Empty, or a replaced static member.
        if let Some(g) = self.groups.get(&group_id) {
            if g.is(GroupState::Empty) && g.members.is_empty() && g.generation > 0 {
                self.store_group(&group_id);
            }
        }
        reply
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> ErrorCode {
        let Some(g) = self.groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if g.is(GroupState::Dead) {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if let Err(e) = g.check_fenced(member_id, instance_id) {
            return e;
        }
        if g.pending_members.contains_key(member_id) {
            return ErrorCode::None;
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if generation != g.generation {
            return ErrorCode::IllegalGeneration;
        }
        m.last_heartbeat_ms = now;
        match g.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
        }
    }

    /// LeaveGroup for (member id, instance id) pairs; one error per member.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> Vec<ErrorCode> {
        let delay = self.limits.initial_rebalance_delay_ms;
        let Some(g) = self.groups.get_mut(group_id) else {
            return vec![ErrorCode::UnknownMemberId; members.len()];
        };
        let mut out = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let id = match (member_id.is_empty(), instance_id) {
                (true, Some(i)) => match g.static_members.get(i) {
                    Some(id) => id.clone(),
                    None => {
                        out.push(ErrorCode::UnknownMemberId);
                        continue;
                    }
                },
                _ => {
                    if let Err(e) = g.check_fenced(member_id, instance_id.as_deref()) {
                        out.push(e);
                        continue;
                    }
                    member_id.clone()
                }
            };
            if g.remove_member(&id) {
                removed = true;
                out.push(ErrorCode::None);
            } else {
                out.push(ErrorCode::UnknownMemberId);
            }
        }
        if removed && g.on_members_removed(delay, now) {
            self.store_group(group_id);
        }
        out
    }

    /// Session and join-phase timers: expires pending and silent members, completes join
    /// phases whose deadline passed.
    pub fn tick(&mut self, now: i64) {
        let delay = self.limits.initial_rebalance_delay_ms;
        let mut to_store = Vec::new();
        for g in self.groups.values_mut() {
            let before = g.pending_members.len();
            g.pending_members.retain(|_, deadline| *deadline > now);
            let mut removed = before != g.pending_members.len();
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    !m.is_waiting() && m.last_heartbeat_ms + m.session_timeout_ms as i64 <= now
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %g.id, member = %id, "session timeout: member removed");
                removed |= g.remove_member(&id);
            }
            let changed = if removed {
                g.on_members_removed(delay, now)
            } else {
                g.try_complete_join(now)
            };
            if changed {
                to_store.push(g.id.clone());
            }
        }
        for id in to_store {
            self.store_group(&id);
        }
    }
}

fn add_member(
    g: &mut Group,
    member_id: String,
    req: JoinRequest,
    limits: &super::group::Limits,
    now: i64,
) -> Reply<JoinOutcome> {
    if g.members.len() >= limits.max_size {
        return Reply::Now(JoinOutcome::error(
            ErrorCode::GroupMaxSizeReached,
            &member_id,
        ));
    }
    if g.members.is_empty() {
        g.protocol_type = Some(req.protocol_type.clone());
    }
    let (tx, rx) = oneshot::channel();
    if let Some(i) = &req.instance_id {
        g.static_members.insert(i.clone(), member_id.clone());
    }
    if g.leader.is_none() {
        g.leader = Some(member_id.clone());
    }
    g.members.insert(
        member_id.clone(),
        Member {
            id: member_id,
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            last_heartbeat_ms: now,
        },
    );
    rejoin_or_rebalance(g, limits, now);
    Reply::Later(rx)
}

/// A member (re)joined: start a rebalance, or extend/complete the one in progress.
fn rejoin_or_rebalance(g: &mut Group, limits: &super::group::Limits, now: i64) {
    match g.state {
        GroupState::PreparingRebalance => {
            if g.initial_join_limit_ms > 0 {
                let extended =
                    (now + limits.initial_rebalance_delay_ms).min(g.initial_join_limit_ms);
                g.join_deadline_ms = g.join_deadline_ms.max(extended);
            }
            g.try_complete_join(now);
        }
        _ => g.prepare_rebalance(limits.initial_rebalance_delay_ms, now),
    }
}

fn join_new(
    g: &mut Group,
    req: JoinRequest,
    limits: &super::group::Limits,
    now: i64,
) -> Reply<JoinOutcome> {
    if let Some(instance) = req.instance_id.clone() {
        let new_id = new_member_id(&instance);
        if let Some(old_id) = g.static_members.get(&instance).cloned() {
            return replace_static_member(g, old_id, new_id, req, limits, now);
        }
        return add_member(g, new_id, req, limits, now);
    }
    let prefix = if req.client_id.is_empty() {
        "member".to_string()
    } else {
        req.client_id.clone()
    };
    let new_id = new_member_id(&prefix);
    if req.require_known_member_id {
        g.pending_members
            .insert(new_id.clone(), now + req.session_timeout_ms as i64);
        return Reply::Now(JoinOutcome::error(ErrorCode::MemberIdRequired, &new_id));
    }
    add_member(g, new_id, req, limits, now)
}

/// A static member rejoined with an empty member id: it takes over the old member id's place.
/// In a stable group with unchanged protocols it gets the current generation back without a
/// rebalance.
fn replace_static_member(
    g: &mut Group,
    old_id: String,
    new_id: String,
    req: JoinRequest,
    limits: &super::group::Limits,
    now: i64,
) -> Reply<JoinOutcome> {
    let Some(mut old) = g.members.shift_remove(&old_id) else {
        g.static_members.remove(&old_id);
        return add_member(g, new_id, req, limits, now);
    };
    old.fail_waiters(ErrorCode::FencedInstanceId);
    let unchanged = old.protocols == req.protocols
        || g.protocol
            .as_deref()
            .is_some_and(|p| old.metadata_for(p) == metadata_for(&req.protocols, p));
    let was_leader = g.is_leader(&old_id);
    if was_leader {
        g.leader = Some(new_id.clone());
    }
    if let Some(i) = &req.instance_id {
        g.static_members.insert(i.clone(), new_id.clone());
    }
    let (tx, rx) = oneshot::channel();
    let stable = g.is(GroupState::Stable) && unchanged;
    g.members.insert(
        new_id.clone(),
        Member {
            id: new_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: old.assignment,
            join_waiter: if stable { None } else { Some(tx) },
            sync_waiter: None,
            last_heartbeat_ms: now,
        },
    );
    if stable {
        let mut o = current_outcome(g, &new_id, was_leader && req.supports_skip_assignment);
        o.skip_assignment = was_leader && req.supports_skip_assignment;
        return Reply::Now(o);
    }
    rejoin_or_rebalance(g, limits, now);
    Reply::Later(rx)
}

fn metadata_for(protocols: &[(String, Bytes)], name: &str) -> Bytes {
    protocols
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m.clone())
        .unwrap_or_default()
}

fn join_existing(
    g: &mut Group,
    req: JoinRequest,
    limits: &super::group::Limits,
    now: i64,
) -> Reply<JoinOutcome> {
    let member_id = req.member_id.clone();
    if let Err(e) = g.check_fenced(&member_id, req.instance_id.as_deref()) {
        return Reply::Now(JoinOutcome::error(e, &member_id));
    }
    if g.pending_members.remove(&member_id).is_some() {
        return add_member(g, member_id, req, limits, now);
    }
    if g.is(GroupState::Empty) || !g.members.contains_key(&member_id) {
        return Reply::Now(JoinOutcome::error(ErrorCode::UnknownMemberId, &member_id));
    }
    let is_leader = g.is_leader(&member_id);
    let state = g.state;
    let Some(m) = g.members.get_mut(&member_id) else {
        return Reply::Now(JoinOutcome::error(ErrorCode::UnknownMemberId, &member_id));
    };
    let unchanged = m.protocols == req.protocols;
    m.last_heartbeat_ms = now;
    match state {
        GroupState::CompletingRebalance | GroupState::Stable
            if unchanged && !(state == GroupState::Stable && is_leader) =>
        {
            // The member missed the join answer of the current generation: repeat it.
            Reply::Now(current_outcome(g, &member_id, is_leader))
        }
        _ => {
            let (tx, rx) = oneshot::channel();
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinOutcome::error(
                    ErrorCode::RebalanceInProgress,
                    &member_id,
                ));
            }
            rejoin_or_rebalance(g, limits, now);
            Reply::Later(rx)
        }
    }
}
