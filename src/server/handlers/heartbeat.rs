//! Heartbeat, versions 0..=4.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::coordinator;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let instance_id = req.group_instance_id.map(|s| s.to_string());
    let generation = req.generation_id;
    let gid = group_id.clone();
    let code = coordinator::with_group(shard, &group_id, move |s, _| async move {
        s.coordinator.table.borrow_mut().heartbeat(
            &gid,
            &member_id,
            instance_id.as_deref(),
            generation,
            now_ms(),
        )
    })
    .await
    .unwrap_or_else(|e| e);
    let mut r = HeartbeatResponse::default();
    r.error_code = code.code();
    r
}
