//! DescribeGroups, versions 0..=5. An unknown group is described as Dead (as Kafka does).

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, GroupState};
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let v = ctx.api_version;
    let mut r = DescribeGroupsResponse::default();
    for gid in req.groups {
        let id = gid.0.to_string();
        let res = coordinator::with_group(shard, &id, {
            let id = id.clone();
            move |s, _| async move {
                let table = s.coordinator.table.borrow();
                let mut d = DescribedGroup::default();
                match table.groups.get(&id) {
                    None => d.group_state = StrBytes::from_static_str(GroupState::Dead.name()),
                    Some(g) if g.consumer.is_some() => {
                        // As Kafka: KIP-848 groups are described by ConsumerGroupDescribe.
                        d.error_code = crate::protocol::ErrorCode::GroupIdNotFound.code();
                        if v >= 6 {
                            d.error_message = Some(StrBytes::from_string(format!(
                                "Group {id} is not a classic group."
                            )));
                        }
                    }
                    Some(g) => {
                        d.group_state = StrBytes::from_static_str(g.state.name());
                        d.protocol_type =
                            StrBytes::from_string(g.protocol_type.clone().unwrap_or_default());
                        let protocol = g.protocol.clone().unwrap_or_default();
                        d.protocol_data = StrBytes::from_string(protocol.clone());
                        for m in g.members.values() {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = StrBytes::from_string(m.id.clone());
                            if v >= 4 {
                                dm.group_instance_id =
                                    m.instance_id.clone().map(StrBytes::from_string);
                            }
                            dm.client_id = StrBytes::from_string(m.client_id.clone());
                            dm.client_host = StrBytes::from_string(m.client_host.clone());
                            dm.member_metadata = m.metadata_for(&protocol);
                            if g.is(GroupState::Stable) {
                                dm.member_assignment = m.assignment.clone();
                            }
                            d.members.push(dm);
                        }
                    }
                }
                d
            }
        })
        .await;
        let mut d = res.unwrap_or_else(|e| {
            let mut d = DescribedGroup::default();
            d.error_code = e.code();
            d
        });
        d.group_id = GroupId(gid.0);
        r.groups.push(d);
    }
    r
}
