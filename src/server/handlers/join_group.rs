//! JoinGroup, versions 0..=9 (classic protocol; MEMBER_ID_REQUIRED from v4, static members
//! from v5, skip_assignment from v9).

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::group::{JoinOutcome, Reply};
use crate::coordinator::membership::JoinRequest;
use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let params = JoinRequest {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: String::new(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    let out = coordinator::with_group(shard, &group_id, move |s, partition| async move {
        let now = now_ms();
        let reply = s
            .coordinator
            .table
            .borrow_mut()
            .join(partition, params, now);
        persist::flush_outbox(&s, now);
        match reply {
            Reply::Now(o) => o,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinOutcome::error(ErrorCode::CoordinatorNotAvailable, "")),
        }
    })
    .await
    .unwrap_or_else(|e| JoinOutcome::error(e, &member_id));
    let mut r = JoinGroupResponse::default();
    r.error_code = out.error.code();
    r.generation_id = out.generation;
    if v >= 7 {
        r.protocol_type = out.protocol_type.map(StrBytes::from_string);
        r.protocol_name = out.protocol_name.map(StrBytes::from_string);
    } else {
        r.protocol_name = Some(StrBytes::from_string(out.protocol_name.unwrap_or_default()));
    }
    r.leader = StrBytes::from_string(out.leader);
    r.member_id = StrBytes::from_string(out.member_id);
    if v >= 9 {
        r.skip_assignment = out.skip_assignment;
    }
    r.members = out
        .members
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = StrBytes::from_string(m.member_id);
            if v >= 5 {
                jm.group_instance_id = m.instance_id.map(StrBytes::from_string);
            }
            jm.metadata = m.metadata;
            jm
        })
        .collect();
    r
}
