//! ConsumerGroupHeartbeat, versions 0..=1 (KIP-848 consumer groups with server-side
//! assignment; v1: client-generated member ids and SubscribedTopicRegex). The work happens on
//! the group's coordinator shard (`coordinator::consumer`).

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::assignor;
use crate::coordinator::consumer::{CgRequest, CgResponse, TopicsView};
use crate::coordinator::{self};
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

/// Every non-internal topic by name, with its id and partition count.
fn topics_view(shard: &Shard) -> TopicsView {
    shard
        .catalog()
        .topics
        .iter()
        .filter(|(_, t)| !t.internal)
        .map(|(name, t)| (name.clone(), (t.id, t.partitions.len() as i32)))
        .collect()
}

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let owned = req.topic_partitions.map(|tps| {
        let mut a = assignor::Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    });
    let params = CgRequest {
        version: ctx.api_version,
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_regex: if ctx.api_version >= 1 {
            req.subscribed_topic_regex.map(|s| s.to_string())
        } else {
            None
        },
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: String::new(),
    };
    let group_id = params.group_id.clone();
    let out = if group_id.is_empty() {
        CgResponse::error(
            crate::protocol::ErrorCode::InvalidRequest,
            "GroupId can't be empty.",
        )
    } else {
        coordinator::with_group(shard, &group_id, move |s, partition| async move {
            let topics = topics_view(&s);
            s.coordinator.table.borrow_mut().consumer_heartbeat(
                partition,
                params,
                &topics,
                now_ms(),
            )
        })
        .await
        .unwrap_or_else(|e| CgResponse::error(e, "coordinator unavailable"))
    };
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = out.error.code();
    r.error_message = out.message.map(StrBytes::from_string);
    r.member_id = out.member_id.map(StrBytes::from_string);
    r.member_epoch = out.member_epoch;
    r.heartbeat_interval_ms = out.heartbeat_interval_ms;
    r.assignment = out.assignment.map(|a| {
        let mut asg = Assignment::default();
        asg.topic_partitions = a
            .into_iter()
            .map(|(id, ps)| {
                let mut tp = TopicPartitions::default();
                tp.topic_id = id;
                tp.partitions = ps.into_iter().collect();
                tp
            })
            .collect();
        asg
    });
    r
}
