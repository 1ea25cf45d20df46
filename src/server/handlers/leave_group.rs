//! LeaveGroup, versions 0..=5 (v3+ leaves a batch of members, by member or instance id).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let n = members.len();
    let gid = group_id.clone();
    let ms = members.clone();
    let res = coordinator::with_group(shard, &group_id, move |s, _| async move {
        let now = now_ms();
        let codes = s.coordinator.table.borrow_mut().leave(&gid, &ms, now);
        persist::flush_outbox(&s, now);
        codes
    })
    .await;
    let mut r = LeaveGroupResponse::default();
    let (top, codes) = match res {
        Ok(c) => (ErrorCode::None, c),
        Err(e) => (e, vec![e; n]),
    };
    if v >= 3 {
        r.error_code = top.code();
        r.members = members
            .into_iter()
            .zip(codes)
            .map(|((m, i), c)| {
                let mut mr = MemberResponse::default();
                mr.member_id = StrBytes::from_string(m);
                mr.group_instance_id = i.map(StrBytes::from_string);
                mr.error_code = c.code();
                mr
            })
            .collect();
    } else {
        r.error_code = codes.first().copied().unwrap_or(top).code();
    }
    r
}
