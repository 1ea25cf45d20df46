//! DeleteGroups, versions 0..=2: only groups without members (NON_EMPTY_GROUP otherwise);
//! their offsets and metadata are tombstoned in `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for gid in req.groups_names {
        let id = gid.0.to_string();
        let code = coordinator::with_group(shard, &id, {
            let id = id.clone();
            move |s, _| async move {
                let tombstones = s.coordinator.table.borrow_mut().delete_group(&id);
                match tombstones {
                    Err(e) => e,
                    Ok(recs) => match persist::append(&s, recs, now_ms()).await {
                        Ok(()) => ErrorCode::None,
                        Err(e) => e,
                    },
                }
            }
        })
        .await
        .unwrap_or_else(|e| e);
        let mut d = DeletableGroupResult::default();
        d.group_id = GroupId(gid.0);
        d.error_code = code.code();
        r.results.push(d);
    }
    r
}
