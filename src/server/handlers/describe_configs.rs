//! DescribeConfigs, versions 1..=4: topic configs (defaults plus the topic's overrides) and the
//! broker's properties.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::config::PROPERTIES;
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Topic-level configs with their effective broker-level defaults.
fn topic_defaults(shard: &Shard) -> Vec<(&'static str, String)> {
    let c = &shard.config;
    vec![
        ("cleanup.policy", "delete".into()),
        ("compression.type", "producer".into()),
        (
            "flush.messages",
            c.log
                .flush_messages
                .map(|v| v.to_string())
                .unwrap_or_else(|| i64::MAX.to_string()),
        ),
        (
            "flush.ms",
            c.log
                .flush_ms
                .map(|v| v.to_string())
                .unwrap_or_else(|| i64::MAX.to_string()),
        ),
        (
            "index.interval.bytes",
            c.log.index_interval_bytes.to_string(),
        ),
        ("max.message.bytes", c.message_max_bytes.to_string()),
        ("message.timestamp.type", "CreateTime".into()),
        ("min.insync.replicas", "1".into()),
        ("retention.bytes", c.log.retention_bytes.to_string()),
        ("retention.ms", c.log.retention_ms.to_string()),
        ("segment.bytes", c.log.segment_bytes_max.to_string()),
        ("segment.ms", c.log.segment_ms.to_string()),
        ("unclean.leader.election.enable", "false".into()),
    ]
}

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default();
    r.name = StrBytes::from_string(name.to_string());
    r.value = Some(StrBytes::from_string(value));
    r.read_only = read_only;
    r.config_source = source;
    r
}

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let cat = shard.catalog();
    let mut resp = DescribeConfigsResponse::default();
    for res in &req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        match res.resource_type {
            RESOURCE_TOPIC => match cat.topics.get(res.resource_name.as_str()) {
                None => {
                    out.error_code = ErrorCode::UnknownTopicOrPartition.code();
                    out.error_message = Some(StrBytes::from_static_str("Unknown topic"));
                }
                Some(t) => {
                    for (name, default) in topic_defaults(shard) {
                        if !wanted(name) {
                            continue;
                        }
                        match t.configs.get(name) {
                            Some(v) => {
                                out.configs
                                    .push(entry(name, v.clone(), SOURCE_TOPIC_CONFIG, false))
                            }
                            None => out
                                .configs
                                .push(entry(name, default, SOURCE_DEFAULT, false)),
                        }
                    }
                }
            },
            RESOURCE_BROKER => {
                let id_ok = res.resource_name.is_empty()
                    || res.resource_name.as_str() == shard.config.node_id.to_string();
                if !id_ok {
                    out.error_code = ErrorCode::InvalidRequest.code();
                    out.error_message = Some(StrBytes::from_static_str("Unknown broker id"));
                } else {
                    for (name, default, _) in PROPERTIES {
                        if wanted(name) {
                            out.configs.push(entry(
                                name,
                                default.to_string(),
                                SOURCE_STATIC_BROKER,
                                true,
                            ));
                        }
                    }
                }
            }
            _ => {
                out.error_code = ErrorCode::InvalidRequest.code();
                out.error_message = Some(StrBytes::from_static_str("Unsupported resource type"));
            }
        }
        resp.results.push(out);
    }
    resp
}
