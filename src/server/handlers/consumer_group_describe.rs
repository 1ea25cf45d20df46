//! ConsumerGroupDescribe, versions 0..=1: members, epochs, subscriptions, current and target
//! assignments of KIP-848 groups. A classic or unknown group answers GROUP_ID_NOT_FOUND, on
//! which admin clients fall back to DescribeGroups (as with Kafka).

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{self, assignor};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

/// ConsumerGroupDescribe v1 member type of a consumer-protocol member (KIP-1099).
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn assignment(a: &assignor::Assignment, names: &dyn Fn(&uuid::Uuid) -> String) -> Assignment {
    let mut out = Assignment::default();
    out.topic_partitions = a
        .iter()
        .map(|(id, ps)| {
            let mut tp = TopicPartitions::default();
            tp.topic_id = *id;
            tp.topic_name = TopicName(StrBytes::from_string(names(id)));
            tp.partitions = ps.iter().copied().collect();
            tp
        })
        .collect();
    out
}

fn describe(s: &Shard, id: &str, v: i16) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    let table = s.coordinator.table.borrow();
    let Some(cg) = table.groups.get(id).and_then(|g| g.consumer.as_ref()) else {
        d.error_code = ErrorCode::GroupIdNotFound.code();
        d.error_message = Some(StrBytes::from_string(format!(
            "Group {id} is not a consumer group."
        )));
        return d;
    };
    let cat = s.catalog();
    let names = |tid: &uuid::Uuid| {
        cat.topics
            .iter()
            .find(|(_, t)| t.id == *tid)
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    };
    d.group_state = StrBytes::from_static_str(cg.state_name());
    d.group_epoch = cg.group_epoch;
    d.assignment_epoch = cg.assignment_epoch;
    d.assignor_name = StrBytes::from_string(cg.assignor.clone());
    d.authorized_operations = i32::MIN;
    for m in cg.members.values() {
        let mut dm = Member::default();
        dm.member_id = StrBytes::from_string(m.id.clone());
        dm.instance_id = m.instance_id.clone().map(StrBytes::from_string);
        dm.rack_id = m.rack_id.clone().map(StrBytes::from_string);
        dm.member_epoch = m.member_epoch;
        dm.client_id = StrBytes::from_string(m.client_id.clone());
        dm.client_host = StrBytes::from_string(m.client_host.clone());
        dm.subscribed_topic_names = m
            .subscribed_names
            .iter()
            .map(|n| TopicName(StrBytes::from_string(n.clone())))
            .collect();
        dm.subscribed_topic_regex = m.subscribed_regex.clone().map(StrBytes::from_string);
        dm.assignment = assignment(&m.assigned, &names);
        let target = cg.target.get(&m.id).cloned().unwrap_or_default();
        dm.target_assignment = assignment(&target, &names);
        if v >= 1 {
            dm.member_type = MEMBER_TYPE_CONSUMER;
        }
        d.members.push(dm);
    }
    d
}

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let v = ctx.api_version;
    let mut r = ConsumerGroupDescribeResponse::default();
    for gid in req.group_ids {
        let id = gid.0.to_string();
        let res = coordinator::with_group(shard, &id, {
            let id = id.clone();
            move |s, _| async move { describe(&s, &id, v) }
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
