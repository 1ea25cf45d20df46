//! Broker configuration. Settings come, in increasing priority, from embedded defaults, a TOML
//! file (`--config`), environment variables (`TIDEWATER_` + the property name upper-cased with
//! dots as underscores, e.g. `TIDEWATER_LOG_RETENTION_MS`) and command-line flags. Property
//! names are Kafka's where Kafka has one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use crate::storage::LogConfig;

/// Every property the broker understands, with its default and meaning.
pub const PROPERTIES: &[(&str, &str, &str)] = &[
    ("log.dirs", "./data", "Data directory (one directory)."),
    (
        "listeners",
        "127.0.0.1:9092",
        "HOST:PORT the Kafka listener binds on every shard (SO_REUSEPORT).",
    ),
    (
        "advertised.listeners",
        "",
        "HOST:PORT given to clients in Metadata; defaults to `listeners`.",
    ),
    ("node.id", "0", "This broker's id."),
    (
        "tidewater.cores",
        "0",
        "Shards (one pinned executor per core); 0 = every available core.",
    ),
    (
        "num.partitions",
        "1",
        "Partitions of auto-created topics and of CreateTopics with -1.",
    ),
    (
        "default.replication.factor",
        "1",
        "Replication factor of auto-created topics (single node: 1).",
    ),
    (
        "auto.create.topics.enable",
        "true",
        "Create unknown topics on Metadata and Produce.",
    ),
    (
        "message.max.bytes",
        "1048588",
        "Largest record batch accepted.",
    ),
    (
        "socket.request.max.bytes",
        "104857600",
        "Largest request frame; larger frames close the connection.",
    ),
    (
        "queued.max.requests",
        "500",
        "Requests in flight per connection before reading pauses.",
    ),
    (
        "max.connections",
        "10000",
        "Connections per broker; further accepts are closed at once.",
    ),
    (
        "max.connections.per.ip",
        "2147483647",
        "Connections from one IP address; further accepts from it are closed at once.",
    ),
    (
        "max.connection.creation.rate",
        "2147483647",
        "New connections accepted per second by the broker; beyond it accepts wait (KIP-612).",
    ),
    (
        "max.connections.per.ip.overrides",
        "",
        "Per-IP exceptions to max.connections.per.ip: `ip:count,ip:count`.",
    ),
    (
        "log.segment.bytes",
        "1073741824",
        "Segment size before rolling.",
    ),
    ("log.roll.ms", "604800000", "Segment age before rolling."),
    (
        "log.retention.ms",
        "604800000",
        "Delete closed segments older than this (-1: forever).",
    ),
    (
        "log.retention.bytes",
        "-1",
        "Delete oldest closed segments beyond this size (-1: unlimited).",
    ),
    (
        "log.index.interval.bytes",
        "4096",
        "Bytes between sparse index entries.",
    ),
    (
        "log.flush.interval.messages",
        "",
        "Flush every N messages instead of before every ack (empty: durable before ack).",
    ),
    (
        "log.flush.interval.ms",
        "",
        "Flush every N ms instead of before every ack (empty: durable before ack).",
    ),
    (
        "tidewater.log.flush.round.bytes",
        "67108864",
        "Bytes one group-commit round writes before its fdatasync; the rest goes in the next.",
    ),
    (
        "tidewater.log.zero.ahead.bytes",
        "8388608",
        "Bytes of the active segment written with zeros ahead of the data while the log is not busy, so fdatasync need not commit extent conversions (0: off).",
    ),
    (
        "tidewater.log.recycled.segments.max",
        "1",
        "Segment files deleted by retention kept per partition for reuse by new segments, whose appends then overwrite written blocks (each costs up to log.segment.bytes of disk; 0: off).",
    ),
    (
        "log.retention.check.interval.ms",
        "300000",
        "How often retention runs.",
    ),
    (
        "tidewater.shard.request.memory.bytes",
        "268435456",
        "Request bytes in flight per shard; reading pauses beyond it.",
    ),
    (
        "tidewater.shard.cache.bytes",
        "268435456",
        "Recent-batch read cache per shard.",
    ),
    (
        "tidewater.cross.shard.queue.depth",
        "1024",
        "Messages queued from one shard to another.",
    ),
    (
        "offsets.topic.num.partitions",
        "50",
        "Partitions of __consumer_offsets.",
    ),
    (
        "group.initial.rebalance.delay.ms",
        "3000",
        "Delay of the first rebalance of an empty group, waiting for more members to join.",
    ),
    (
        "group.min.session.timeout.ms",
        "6000",
        "Smallest session timeout a group member may ask for.",
    ),
    (
        "group.max.session.timeout.ms",
        "1800000",
        "Largest session timeout a group member may ask for.",
    ),
    (
        "group.max.size",
        "10000",
        "Members per consumer group (Kafka's default is unbounded).",
    ),
    (
        "offsets.retention.minutes",
        "10080",
        "Committed offsets of an empty group expire after this long.",
    ),
    (
        "offsets.retention.check.interval.ms",
        "600000",
        "How often offset expiry runs.",
    ),
    (
        "offset.metadata.max.bytes",
        "4096",
        "Largest metadata string of a committed offset.",
    ),
    (
        "offsets.topic.segment.bytes",
        "104857600",
        "Segment size of __consumer_offsets (set when the topic is created).",
    ),
    (
        "tidewater.offsets.compaction.min.records",
        "10000",
        "Compact a __consumer_offsets partition (snapshot of its live keys, then move its log \
         start) once it holds more records than this and more than twice its live keys.",
    ),
    (
        "tidewater.offsets.compaction.check.interval.ms",
        "30000",
        "How often each coordinator shard checks whether to compact.",
    ),
    (
        "group.member.metadata.max.bytes",
        "1048576",
        "Largest protocol metadata (all protocols) one classic group member may send in JoinGroup; \
         larger joins get INVALID_REQUEST.",
    ),
    (
        "group.consumer.session.timeout.ms",
        "45000",
        "KIP-848 consumer groups: a member silent for this long is fenced.",
    ),
    (
        "group.consumer.heartbeat.interval.ms",
        "5000",
        "KIP-848 consumer groups: heartbeat interval given to members.",
    ),
    (
        "group.consumer.assignors",
        "uniform,range",
        "KIP-848 server-side assignors members may pick; the first is the default.",
    ),
    (
        "tidewater.io.ring.depth",
        "4096",
        "Entries of each shard's io_uring rings. Also sizes the kernel's cancel hash table \
         (256 buckets from 4096 up): with thousands of connections each holding a pending poll, \
         glommio's 128 gives 8 buckets and every cancel walks hundreds of polls.",
    ),
    (
        "tidewater.spin.before.park.us",
        "0",
        "Microseconds an idle shard spins before sleeping: lower cross-shard latency, more CPU.",
    ),
];

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub node_id: i32,
    pub cores: usize,
    pub num_partitions: i32,
    pub auto_create_topics_enable: bool,
    pub message_max_bytes: usize,
    pub socket_request_max_bytes: usize,
    pub queued_max_requests: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
    /// `max.connection.creation.rate`: accepts per second, broker-wide.
    pub max_connection_creation_rate: u32,
    /// `max.connections.per.ip.overrides`, parsed.
    pub max_connections_per_ip_overrides: Vec<(std::net::IpAddr, u32)>,
    pub log: LogConfig,
    pub retention_check_interval_ms: u64,
    pub shard_request_memory_bytes: usize,
    pub shard_cache_bytes: usize,
    pub cross_shard_queue_depth: usize,
    pub offsets_topic_num_partitions: i32,
    pub spin_before_park_us: u64,
    pub io_ring_depth: usize,
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: usize,
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub offset_metadata_max_bytes: usize,
    pub group_member_metadata_max_bytes: usize,
    pub offsets_topic_segment_bytes: u64,
    pub offsets_compaction_min_records: i64,
    pub offsets_compaction_check_interval_ms: u64,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub group_consumer_assignors: Vec<String>,
}

/// `group.consumer.assignors`: a comma-separated list of known assignor names.
fn parse_assignors(raw: &str) -> anyhow::Result<Vec<String>> {
    let known = [
        crate::coordinator::assignor::UNIFORM,
        crate::coordinator::assignor::RANGE,
    ];
    let names: Vec<String> = raw
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        bail!("group.consumer.assignors must name at least one assignor");
    }
    for n in &names {
        if !known.contains(&n.as_str()) {
            bail!("group.consumer.assignors: unknown assignor {n:?} (known: {known:?})");
        }
    }
    Ok(names)
}

/// Flattens a TOML document into dotted property names: both `"log.dirs" = ".."` and
/// `[log] dirs = ".."` give `log.dirs`.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

impl Config {
    /// Builds the configuration from file, environment and explicit overrides (flags).
    pub fn load(
        file: Option<&Path>,
        overrides: &BTreeMap<String, String>,
    ) -> anyhow::Result<Config> {
        let mut props: BTreeMap<String, String> = PROPERTIES
            .iter()
            .map(|(k, v, _)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let doc: toml::Value = text
                .parse()
                .with_context(|| format!("parsing {}", path.display()))?;
            let mut from_file = BTreeMap::new();
            flatten("", &doc, &mut from_file);
            for (k, v) in from_file {
                if !props.contains_key(&k) {
                    bail!("unknown property `{k}` in {}", path.display());
                }
                props.insert(k, v);
            }
        }
        let names: Vec<String> = props.keys().cloned().collect();
        for k in names {
            let env_name = format!("TIDEWATER_{}", k.to_uppercase().replace('.', "_"));
            if let Ok(v) = std::env::var(&env_name) {
                props.insert(k, v);
            }
        }
        for (k, v) in overrides {
            props.insert(k.clone(), v.clone());
        }
        Config::from_properties(&props)
    }

    pub fn from_properties(p: &BTreeMap<String, String>) -> anyhow::Result<Config> {
        fn get<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> anyhow::Result<T>
        where
            T::Err: std::fmt::Display,
        {
            let raw = p.get(k).ok_or_else(|| anyhow!("missing property {k}"))?;
            raw.trim()
                .parse::<T>()
                .map_err(|e| anyhow!("property {k} = {raw:?}: {e}"))
        }
        fn opt_u64(p: &BTreeMap<String, String>, k: &str) -> anyhow::Result<Option<u64>> {
            match p.get(k).map(|s| s.trim()) {
                None | Some("") => Ok(None),
                Some(v) => Ok(Some(
                    v.parse()
                        .map_err(|e| anyhow!("property {k} = {v:?}: {e}"))?,
                )),
            }
        }
        let listen: SocketAddr = get::<String>(p, "listeners")?
            .trim_start_matches("PLAINTEXT://")
            .parse()
            .map_err(|e| anyhow!("listeners: {e}"))?;
        let advertised = get::<String>(p, "advertised.listeners")?;
        let advertised = advertised.trim_start_matches("PLAINTEXT://");
        let (advertised_host, advertised_port) = if advertised.is_empty() {
            (listen.ip().to_string(), listen.port() as i32)
        } else {
            let (h, port) = advertised
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("advertised.listeners must be HOST:PORT"))?;
            (
                h.to_string(),
                port.parse()
                    .map_err(|e| anyhow!("advertised.listeners port: {e}"))?,
            )
        };
        let mut cores: usize = get(p, "tidewater.cores")?;
        if cores == 0 {
            cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
        }
        let message_max_bytes: usize = get(p, "message.max.bytes")?;
        let log = LogConfig {
            segment_bytes_max: get(p, "log.segment.bytes")?,
            segment_ms: get(p, "log.roll.ms")?,
            index_interval_bytes: get(p, "log.index.interval.bytes")?,
            retention_ms: get(p, "log.retention.ms")?,
            retention_bytes: get(p, "log.retention.bytes")?,
            flush_messages: opt_u64(p, "log.flush.interval.messages")?,
            flush_ms: opt_u64(p, "log.flush.interval.ms")?,
            max_message_bytes: message_max_bytes,
            flush_round_bytes_max: get::<u64>(p, "tidewater.log.flush.round.bytes")?.max(1),
            zero_ahead_bytes: get(p, "tidewater.log.zero.ahead.bytes")?,
            recycled_segments_max: get(p, "tidewater.log.recycled.segments.max")?,
        };
        Ok(Config {
            data_dir: PathBuf::from(get::<String>(p, "log.dirs")?),
            listen,
            advertised_host,
            advertised_port,
            node_id: get(p, "node.id")?,
            cores,
            num_partitions: get(p, "num.partitions")?,
            auto_create_topics_enable: get(p, "auto.create.topics.enable")?,
            message_max_bytes,
            socket_request_max_bytes: get(p, "socket.request.max.bytes")?,
            queued_max_requests: get::<usize>(p, "queued.max.requests")?.max(1),
            max_connections: get(p, "max.connections")?,
            max_connections_per_ip: get(p, "max.connections.per.ip")?,
            max_connection_creation_rate: get::<u32>(p, "max.connection.creation.rate")?.max(1),
            max_connections_per_ip_overrides: parse_ip_overrides(
                p.get("max.connections.per.ip.overrides")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?,
            log,
            retention_check_interval_ms: get(p, "log.retention.check.interval.ms")?,
            shard_request_memory_bytes: get(p, "tidewater.shard.request.memory.bytes")?,
            shard_cache_bytes: get(p, "tidewater.shard.cache.bytes")?,
            cross_shard_queue_depth: get::<usize>(p, "tidewater.cross.shard.queue.depth")?.max(1),
            offsets_topic_num_partitions: get(p, "offsets.topic.num.partitions")?,
            spin_before_park_us: get(p, "tidewater.spin.before.park.us")?,
            io_ring_depth: get(p, "tidewater.io.ring.depth")?,
            group_initial_rebalance_delay_ms: get(p, "group.initial.rebalance.delay.ms")?,
            group_min_session_timeout_ms: get(p, "group.min.session.timeout.ms")?,
            group_max_session_timeout_ms: get(p, "group.max.session.timeout.ms")?,
            group_max_size: get(p, "group.max.size")?,
            offsets_retention_minutes: get(p, "offsets.retention.minutes")?,
            offsets_retention_check_interval_ms: get(p, "offsets.retention.check.interval.ms")?,
            offset_metadata_max_bytes: get(p, "offset.metadata.max.bytes")?,
            group_member_metadata_max_bytes: get(p, "group.member.metadata.max.bytes")?,
            offsets_topic_segment_bytes: get(p, "offsets.topic.segment.bytes")?,
            offsets_compaction_min_records: get(p, "tidewater.offsets.compaction.min.records")?,
            offsets_compaction_check_interval_ms: get(
                p,
                "tidewater.offsets.compaction.check.interval.ms",
            )?,
            group_consumer_session_timeout_ms: get(p, "group.consumer.session.timeout.ms")?,
            group_consumer_heartbeat_interval_ms: get(p, "group.consumer.heartbeat.interval.ms")?,
            group_consumer_assignors: parse_assignors(&get::<String>(
                p,
                "group.consumer.assignors",
            )?)?,
        })
    }

    /// The consumer-group coordinator's limits.
    pub fn group_limits(&self) -> crate::coordinator::Limits {
        crate::coordinator::Limits {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms.max(0),
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            max_size: self.group_max_size.max(1),
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            member_metadata_max_bytes: self.group_member_metadata_max_bytes,
            consumer_session_timeout_ms: self.group_consumer_session_timeout_ms.max(1),
            consumer_heartbeat_interval_ms: self.group_consumer_heartbeat_interval_ms.max(1),
            consumer_assignors: self.group_consumer_assignors.clone(),
        }
    }

    /// Defaults for tests.
    pub fn for_tests(data_dir: &Path, cores: usize) -> Config {
        let mut o = BTreeMap::new();
        o.insert("log.dirs".to_string(), data_dir.display().to_string());
        o.insert("tidewater.cores".to_string(), cores.to_string());
        o.insert("listeners".to_string(), "127.0.0.1:0".to_string());
        let props: BTreeMap<String, String> = PROPERTIES
            .iter()
            .map(|(k, v, _)| (k.to_string(), v.to_string()))
            .chain(o)
            .collect();
        Config::from_properties(&props).expect("default properties parse")
    }
}

/// Parses `ip:count,ip:count` (IPv6 addresses in brackets or bare: the count follows the last
/// colon).
fn parse_ip_overrides(raw: &str) -> anyhow::Result<Vec<(std::net::IpAddr, u32)>> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, count) = item
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("max.connections.per.ip.overrides: {item:?} is not ip:count"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = host
            .parse()
            .map_err(|e| anyhow!("max.connections.per.ip.overrides: {host:?}: {e}"))?;
        let count = count
            .parse()
            .map_err(|e| anyhow!("max.connections.per.ip.overrides: {count:?}: {e}"))?;
        out.push((ip, count));
    }
    Ok(out)
}

impl Config {
    /// The connection limit for one client address.
    pub fn max_connections_for(&self, ip: std::net::IpAddr) -> u32 {
        self.max_connections_per_ip_overrides
            .iter()
            .find(|(o, _)| *o == ip)
            .map(|(_, n)| *n)
            .unwrap_or(self.max_connections_per_ip)
    }

    /// Whether any per-IP limit is configured (otherwise accepting needs no bookkeeping).
    pub fn limits_connections_per_ip(&self) -> bool {
        self.max_connections_per_ip < i32::MAX as u32
            || !self.max_connections_per_ip_overrides.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_and_flags_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "auto.create.topics.enable = false\n\"num.partitions\" = 3\n[log]\nsegment.bytes = 1000\n")
            .expect("write");
        let mut o = BTreeMap::new();
        o.insert("listeners".into(), "127.0.0.1:19999".into());
        let c = Config::load(Some(&f), &o).expect("load");
        assert!(!c.auto_create_topics_enable);
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log.segment_bytes_max, 1000);
        assert_eq!(c.listen.port(), 19999);
        assert_eq!(c.advertised_port, 19999);
        std::fs::write(&f, "bogus.key = 1\n").expect("write");
        assert!(Config::load(Some(&f), &BTreeMap::new()).is_err());
    }
}
