//! ListGroups, versions 0..=5: every shard lists the groups it coordinates, classic and
//! consumer (KIP-848) ones, filtered by state and (v5) type.

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let v = ctx.api_version;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut r = ListGroupsResponse::default();
    let mut waits = Vec::new();
    for target in 0..shard.nr_shards {
        let states = states.clone();
        let types = types.clone();
        waits.push(shard.invoke_on(target, move |s: Rc<Shard>| async move {
            let table = s.coordinator.table.borrow();
            table
                .groups
                .values()
                .filter(|g| states.is_empty() || states.contains(&g.state_name().to_lowercase()))
                .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type()))
                .map(|g| {
                    (
                        g.id.clone(),
                        g.protocol_type.clone().unwrap_or_default(),
                        g.state_name(),
                        g.group_type(),
                    )
                })
                .collect::<Vec<_>>()
        }));
    }
    for listed in futures::future::join_all(waits).await.into_iter().flatten() {
        for (id, protocol_type, state, group_type) in listed {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(StrBytes::from_string(id));
            g.protocol_type = StrBytes::from_string(protocol_type);
            if v >= 4 {
                g.group_state = StrBytes::from_static_str(state);
            }
            if v >= 5 {
                g.group_type = StrBytes::from_static_str(group_type);
            }
            r.groups.push(g);
        }
    }
    r
}
