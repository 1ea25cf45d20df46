//! SyncGroup, versions 0..=5. The leader's assignment is appended to `__consumer_offsets`
//! (group metadata record) before anyone receives it.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::group::{Reply, SyncOutcome};
use crate::coordinator::sync::{SyncRequest, SyncStep};
use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let params = SyncRequest {
        group_id: group_id.clone(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let lost = || SyncOutcome::error(ErrorCode::CoordinatorNotAvailable);
    let out = coordinator::with_group(shard, &group_id, move |s, _| async move {
        let now = now_ms();
        let step = s.coordinator.table.borrow_mut().sync(params, now);
        match step {
            SyncStep::Reply(Reply::Now(o)) => o,
            SyncStep::Reply(Reply::Later(rx)) => rx.await.unwrap_or_else(|_| lost()),
            SyncStep::Persist {
                own,
                record,
                deliveries,
            } => {
                let stored = persist::append(&s, vec![record], now).await;
                for (tx, o) in deliveries {
                    let o = match stored {
                        Ok(()) => o,
                        Err(e) => SyncOutcome::error(e),
                    };
                    let _ = tx.send(o);
                }
                own.await.unwrap_or_else(|_| lost())
            }
        }
    })
    .await
    .unwrap_or_else(SyncOutcome::error);
    let mut r = SyncGroupResponse::default();
    r.error_code = out.error.code();
    if v >= 5 {
        r.protocol_type = out.protocol_type.map(StrBytes::from_string);
        r.protocol_name = out.protocol_name.map(StrBytes::from_string);
    }
    r.assignment = out.assignment;
    r
}
