//! SyncGroup: the leader's assignment is stored, then handed to every member; followers park
//! until it arrives.

use std::collections::HashMap;

use bytes::Bytes;
use futures::channel::oneshot;

use super::group::{GroupState, GroupTable, PendingRecord, Reply, SyncOutcome};
use crate::protocol::ErrorCode;

pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// What the driver does with a SyncGroup.
pub enum SyncStep {
    Reply(Reply<SyncOutcome>),
    /// The leader's sync completed the rebalance: append `record`, and once it is durable
    /// send each delivery (the leader's own reply comes through `own`).
    Persist {
        own: oneshot::Receiver<SyncOutcome>,
        record: PendingRecord,
        deliveries: Vec<(oneshot::Sender<SyncOutcome>, SyncOutcome)>,
    },
}

impl GroupTable {
    pub fn sync(&mut self, req: SyncRequest, now: i64) -> SyncStep {
        let now_err = |e: ErrorCode| SyncStep::Reply(Reply::Now(SyncOutcome::error(e)));
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return now_err(ErrorCode::UnknownMemberId);
        };
        if g.is(GroupState::Dead) {
            return now_err(ErrorCode::CoordinatorNotAvailable);
        }
        if let Err(e) = g.check_fenced(&req.member_id, req.instance_id.as_deref()) {
            return now_err(e);
        }
        if !g.members.contains_key(&req.member_id) {
            return now_err(ErrorCode::UnknownMemberId);
        }
        if req.generation != g.generation {
            return now_err(ErrorCode::IllegalGeneration);
        }
        let type_ok = req.protocol_type.is_none() || req.protocol_type == g.protocol_type;
        let name_ok = req.protocol_name.is_none() || req.protocol_name == g.protocol;
        if !type_ok || !name_ok {
            return now_err(ErrorCode::InconsistentGroupProtocol);
        }
        let protocol_type = g.protocol_type.clone();
        let protocol_name = g.protocol.clone();
        let outcome = |assignment: Bytes| SyncOutcome {
            error: ErrorCode::None,
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
            assignment,
        };
        match g.state {
            GroupState::Empty | GroupState::Dead => now_err(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => now_err(ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = g
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                SyncStep::Reply(Reply::Now(outcome(assignment)))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let is_leader = g.is_leader(&req.member_id);
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncOutcome::error(ErrorCode::RebalanceInProgress));
                    }
                }
                if !is_leader {
                    return SyncStep::Reply(Reply::Later(rx));
                }
                let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                let mut deliveries = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                    if let Some(tx) = m.sync_waiter.take() {
                        deliveries.push((tx, outcome(m.assignment.clone())));
                    }
                }
                g.set_state(GroupState::Stable, now);
                let record = g.metadata_record();
                SyncStep::Persist {
                    own: rx,
                    record,
                    deliveries,
                }
            }
        }
    }

    /// Members waiting in SyncGroup that arrive after the leader's sync get their assignment
    /// from the Stable branch; nothing else to do here.
    pub fn assignment_of(&self, group_id: &str, member_id: &str) -> Option<Bytes> {
        self.groups
            .get(group_id)?
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
    }
}
