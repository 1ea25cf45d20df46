//! Metadata, versions 0..=12 (topics by name, or by id from v10). This broker leads every
//! partition (single node).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics;
use crate::shard::Shard;

pub const CLUSTER_ID: &str = "tidewater-cluster";

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestCtx, req: MetadataRequest) -> MetadataResponse {
    let v = ctx.api_version;
    let node = BrokerId(shard.config.node_id);
    // v0: an empty list means all topics; v1+: null means all, empty means none. v10+ may name
    // topics by id instead (KIP-516; KIP-848 consumers resolve their assignments so).
    let mut by_id: Vec<uuid::Uuid> = Vec::new();
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(ts) if ts.is_empty() && v == 0 => None,
        Some(ts) => Some(
            ts.into_iter()
                .filter_map(|t| match t.name {
                    Some(n) => Some(n.0.to_string()),
                    None => {
                        if !t.topic_id.is_nil() {
                            by_id.push(t.topic_id);
                        }
                        None
                    }
                })
                .collect(),
        ),
    };
    // Auto-create is allowed by default before v4 (no flag in the request).
    let allow_auto = v < 4 || req.allow_auto_topic_creation;
    if let (Some(names), true) = (&requested, allow_auto) {
        topics::auto_create(shard, names).await;
    }
    let cat = shard.catalog();
    let mut r = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = node;
    b.host = StrBytes::from_string(shard.config.advertised_host.clone());
    b.port = shard.config.advertised_port;
    r.brokers = vec![b];
    if v >= 2 {
        r.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    }
    if v >= 1 {
        r.controller_id = node;
    }
    let mut names: Vec<String> = match requested {
        None => cat.topics.keys().cloned().collect(),
        Some(n) => n,
    };
    for id in by_id {
        match cat.topics.iter().find(|(_, t)| t.id == id) {
            Some((name, _)) => names.push(name.clone()),
            None => {
                let mut t = MetadataResponseTopic::default();
                t.topic_id = id;
                t.error_code = ErrorCode::UnknownTopicId.code();
                r.topics.push(t);
            }
        }
    }
    for name in names {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(name.clone())));
        match cat.topics.get(&name) {
            None => {
                let invalid = crate::controller::catalog::validate_topic_name(&name).is_err();
                t.error_code = if invalid {
                    ErrorCode::InvalidTopicException
                } else {
                    ErrorCode::UnknownTopicOrPartition
                }
                .code();
            }
            Some(meta) => {
                if v >= 10 {
                    t.topic_id = meta.id;
                }
                t.is_internal = meta.internal;
                for (i, p) in meta.partitions.iter().enumerate() {
                    let mut mp = MetadataResponsePartition::default();
                    mp.partition_index = i as i32;
                    mp.leader_id = node;
                    if v >= 7 {
                        mp.leader_epoch = p.leader_epoch;
                    }
                    mp.replica_nodes = vec![node];
                    mp.isr_nodes = vec![node];
                    t.partitions.push(mp);
                }
            }
        }
        r.topics.push(t);
    }
    r
}
