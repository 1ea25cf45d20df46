//! Kafka client plumbing on tokio: framing with the kafka-protocol codecs, the ApiVersions
//! handshake and version negotiation, topic metadata (leaders, multi-broker), CreateTopics and
//! ListOffsets, and Kafka's default (murmur2) key partitioner.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub const CLIENT_ID: &str = "tidewater-bench";
/// Kafka error codes this tool reacts to.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Version ranges this tool speaks. Upper bounds stop before topic-id-only versions
/// (Produce v13, Fetch v13) so requests can name topics.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
];

/// Negotiated versions: the highest version in the intersection of the broker's range and ours.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Versions {
    pub api_versions: i16,
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

impl Versions {
    /// The versions a dry run pretends to have negotiated.
    pub fn dry_run() -> Versions {
        Versions {
            api_versions: 3,
            produce: 9,
            fetch: 12,
            list_offsets: 7,
            metadata: 12,
            create_topics: 7,
        }
    }

    pub fn from_broker(api_versions: i16, broker: &[(i16, i16, i16)]) -> anyhow::Result<Versions> {
        let mut v = Versions {
            api_versions,
            ..Versions::default()
        };
        for &(key, lo, hi) in SUPPORTED {
            let picked = pick(broker, key, lo, hi);
            match key {
                ApiKey::Produce => v.produce = picked?,
                ApiKey::Fetch => v.fetch = picked?,
                ApiKey::ListOffsets => v.list_offsets = picked?,
                ApiKey::Metadata => v.metadata = picked?,
                // Only needed with --partitions; -1 marks "not available".
                ApiKey::CreateTopics => v.create_topics = picked.unwrap_or(-1),
                _ => {}
            }
        }
        Ok(v)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "api_versions": self.api_versions, "produce": self.produce, "fetch": self.fetch,
            "list_offsets": self.list_offsets, "metadata": self.metadata,
            "create_topics": self.create_topics,
        })
    }
}

/// Highest common version of `key`: broker ranges are (api_key, min, max).
pub fn pick(broker: &[(i16, i16, i16)], key: ApiKey, lo: i16, hi: i16) -> anyhow::Result<i16> {
    let &(_, bmin, bmax) = broker
        .iter()
        .find(|(k, _, _)| *k == key as i16)
        .ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
    let v = hi.min(bmax);
    if v < lo.max(bmin) {
        bail!("no common version of {key:?}: broker {bmin}..={bmax}, tool {lo}..={hi}");
    }
    Ok(v)
}

/// Appends one size-prefixed request (header + body) to `out`.
pub fn frame(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &impl Encodable,
    out: &mut BytesMut,
) -> anyhow::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    header.encode(out, key.request_header_version(version))?;
    body.encode(out, version)?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Strips the response header (checking the correlation id) and decodes the body.
pub fn decode_response<R: Decodable>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    mut body: Bytes,
) -> anyhow::Result<R> {
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))?;
    if header.correlation_id != correlation {
        bail!(
            "{key:?} response has correlation id {}, expected {correlation}",
            header.correlation_id
        );
    }
    R::decode(&mut body, version).with_context(|| format!("decoding {key:?} v{version} response"))
}

/// Reads one size-prefixed response frame (without its size).
pub async fn read_frame(r: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<Bytes> {
    let n = r.read_i32().await.context("reading response size")?;
    if !(4..=1 << 30).contains(&n) {
        bail!("bad response size {n}");
    }
    let mut buf = BytesMut::zeroed(n as usize);
    r.read_exact(&mut buf).await.context("reading response")?;
    Ok(buf.freeze())
}

/// One connection after the handshake. `call` is for request/response use; producers split it
/// into halves to pipeline.
pub struct Conn {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub correlation: i32,
    pub versions: Versions,
    pub addr: String,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut c = Conn {
            reader: BufReader::with_capacity(256 << 10, r),
            writer: w,
            correlation: 0,
            versions: Versions::default(),
            addr: addr.to_string(),
            buf: BytesMut::with_capacity(4096),
        };
        c.versions = c.handshake().await?;
        Ok(c)
    }

    /// ApiVersions v3; if the broker answers UNSUPPORTED_VERSION (with a v0 body, as the
    /// protocol specifies), again at v0.
    async fn handshake(&mut self) -> anyhow::Result<Versions> {
        for version in [3i16, 0] {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let corr = self.send(ApiKey::ApiVersions, version, &req).await?;
            let body = read_frame(&mut self.reader).await?;
            // Response header v0 is the correlation id alone; the error code comes first in
            // every version of the body, so it can be read before choosing a decoder.
            if body.len() >= 6 && i16::from_be_bytes([body[4], body[5]]) == UNSUPPORTED_VERSION {
                if version == 0 {
                    bail!("broker rejects ApiVersions v0");
                }
                continue;
            }
            let resp: ApiVersionsResponse =
                decode_response(ApiKey::ApiVersions, version, corr, body)?;
            if resp.error_code != 0 {
                bail!(
                    "ApiVersions v{version} failed with error {}",
                    resp.error_code
                );
            }
            let ranges: Vec<(i16, i16, i16)> = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect();
            return Versions::from_broker(version, &ranges)
                .with_context(|| format!("negotiating versions with {}", self.addr));
        }
        bail!("ApiVersions handshake failed")
    }

    pub fn next_correlation(&mut self) -> i32 {
        self.correlation = self.correlation.wrapping_add(1);
        self.correlation
    }

    async fn send(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &impl Encodable,
    ) -> anyhow::Result<i32> {
        let corr = self.next_correlation();
        self.buf.clear();
        frame(key, version, corr, req, &mut self.buf)?;
        self.writer.write_all(&self.buf).await?;
        Ok(corr)
    }

    pub async fn call<R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &impl Encodable,
    ) -> anyhow::Result<R> {
        let corr = self.send(key, version, req).await?;
        let body = read_frame(&mut self.reader).await?;
        decode_response(key, version, corr, body)
    }

    /// Metadata for `topic`; with `auto_create` the broker may create it if missing (Kafka's
    /// `auto.create.topics.enable`; the broker picks the partition count).
    pub async fn metadata(
        &mut self,
        topic: &str,
        auto_create: bool,
    ) -> anyhow::Result<MetadataResponse> {
        let v = self.versions.metadata;
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
        let req = MetadataRequest::default()
            .with_topics(Some(vec![t]))
            .with_allow_auto_topic_creation(auto_create);
        self.call(ApiKey::Metadata, v, &req).await
    }

    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication: i16,
    ) -> anyhow::Result<()> {
        let v = self.versions.create_topics;
        if v < 0 {
            bail!("broker does not support CreateTopics; create {topic} by hand");
        }
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.num_partitions = partitions;
        // -1 (broker default) needs CreateTopics v4+.
        t.replication_factor = if replication < 0 && v < 4 {
            1
        } else {
            replication
        };
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(30_000);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, v, &req).await?;
        let code = resp.topics.first().map(|t| t.error_code).unwrap_or(-1);
        if code != 0 && code != TOPIC_ALREADY_EXISTS {
            bail!("creating {topic} failed with error {code}");
        }
        Ok(())
    }

    /// Offsets of `partitions`: `timestamp` -1 = latest (log end), -2 = earliest.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<HashMap<i32, i64>> {
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        for &p in partitions {
            let mut lp = list_offsets_request::ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.timestamp = timestamp;
            t.partitions.push(lp);
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![t]);
        let v = self.versions.list_offsets;
        let resp: ListOffsetsResponse = self.call(ApiKey::ListOffsets, v, &req).await?;
        let mut out = HashMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    bail!(
                        "ListOffsets error {} on partition {}",
                        p.error_code,
                        p.partition_index
                    );
                }
                out.insert(p.partition_index, p.offset);
            }
        }
        Ok(out)
    }
}

/// Where each partition of the topic lives.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    /// `leaders[p]` = "host:port" of partition p's leader.
    pub leaders: Vec<String>,
}

impl TopicLayout {
    pub fn single(addr: &str, partitions: i32) -> TopicLayout {
        TopicLayout {
            leaders: vec![addr.to_string(); partitions.max(1) as usize],
        }
    }

    pub fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }
}

/// Connects to the first reachable address of a comma-separated bootstrap list.
pub async fn connect_any(bootstrap: &str) -> anyhow::Result<Conn> {
    let mut last = None;
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match Conn::connect(addr).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                eprintln!("bootstrap {addr}: {e:#}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("empty --bootstrap")))
}

/// Finds the topic's partitions and their leaders through `bootstrap` (a comma-separated
/// list; the first reachable broker answers), creating the topic (through the controller when
/// the broker names one) if it is missing and `create` is given.
pub async fn discover(
    bootstrap: &str,
    topic: &str,
    create: Option<i32>,
    replication: i16,
) -> anyhow::Result<(TopicLayout, Versions)> {
    let mut conn = connect_any(bootstrap).await?;
    let versions = conn.versions.clone();
    let mut created = false;
    for _ in 0..100 {
        let md = conn.metadata(topic, false).await?;
        let brokers: HashMap<i32, String> = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let t = md
            .topics
            .first()
            .ok_or_else(|| anyhow!("no metadata for {topic}"))?;
        if t.error_code == 0 && !t.partitions.is_empty() {
            let n = t
                .partitions
                .iter()
                .map(|p| p.partition_index)
                .max()
                .unwrap_or(0)
                + 1;
            let mut leaders = vec![String::new(); n as usize];
            let mut ready = true;
            for p in &t.partitions {
                match brokers.get(&p.leader_id.0) {
                    Some(addr) if p.error_code == 0 => {
                        leaders[p.partition_index as usize] = addr.clone()
                    }
                    _ => ready = false,
                }
            }
            if ready && leaders.iter().all(|l| !l.is_empty()) {
                if let Some(want) = create {
                    if want != n {
                        eprintln!("note: topic {topic} exists with {n} partitions (not {want})");
                    }
                }
                return Ok((TopicLayout { leaders }, versions));
            }
        } else if t.error_code != UNKNOWN_TOPIC_OR_PARTITION && t.error_code != 5 {
            // 5 = LEADER_NOT_AVAILABLE (topic being created).
            bail!("metadata for {topic}: error {}", t.error_code);
        } else if !created {
            let Some(n) = create else {
                bail!("topic {topic} does not exist; pass --partitions N to create it");
            };
            let controller = brokers.get(&md.controller_id.0).cloned();
            if conn.versions.create_topics < 0 {
                // A broker without CreateTopics (librdkafka's mock cluster, for one) may still
                // create topics on a Metadata request that allows it.
                eprintln!(
                    "note: the broker has no CreateTopics; asking it to auto-create {topic} \
                     (it picks the partition count)"
                );
                conn.metadata(topic, true).await?;
                created = true;
                continue;
            }
            match controller {
                Some(addr) if addr != conn.addr => {
                    Conn::connect(&addr)
                        .await?
                        .create_topic(topic, n, replication)
                        .await?
                }
                _ => conn.create_topic(topic, n, replication).await?,
            }
            created = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("topic {topic} has no leaders after 10 s")
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's default partition for a keyed record.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Splits a fetched records blob into complete batches (a fetch may end in a partial one).
pub fn complete_batches(mut blob: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if blob.len() < 12 {
            return None;
        }
        let len = i32::from_be_bytes([blob[8], blob[9], blob[10], blob[11]]);
        let total = 12 + len.max(0) as usize;
        if len <= 0 || total > blob.len() {
            return None;
        }
        let b = blob.split_to(total);
        Some(b)
    })
}

/// Walks the records of one uncompressed RecordBatch v2 in place, calling `f(offset, value)`
/// per data record: no allocation per record, so a consumer keeps up with the broker. `None`
/// when the batch is compressed (decode it fully instead) or malformed; control batches yield
/// no records.
pub fn for_each_value(batch: &[u8], mut f: impl FnMut(i64, Option<&[u8]>)) -> Option<()> {
    const RECORDS_AT: usize = 61;
    if batch.len() < RECORDS_AT || batch[16] != 2 {
        return None;
    }
    if is_compressed(batch) {
        return None;
    }
    if i16::from_be_bytes([batch[21], batch[22]]) & 0x20 != 0 {
        return Some(());
    }
    let base = i64::from_be_bytes(batch[..8].try_into().ok()?);
    let count = i32::from_be_bytes(batch[57..61].try_into().ok()?);
    let mut at = RECORDS_AT;
    for _ in 0..count.max(0) {
        let len = usize::try_from(varint(batch, &mut at)?).ok()?;
        let end = at.checked_add(len).filter(|e| *e <= batch.len())?;
        let rec = &batch[..end];
        at += 1; // record attributes
        varint(rec, &mut at)?; // timestamp delta
        let offset_delta = varint(rec, &mut at)?;
        let key_len = varint(rec, &mut at)?;
        if key_len > 0 {
            at = at.checked_add(key_len as usize).filter(|a| *a <= end)?;
        }
        let value_len = varint(rec, &mut at)?;
        let value = if value_len < 0 {
            None
        } else {
            let v_end = at.checked_add(value_len as usize).filter(|e| *e <= end)?;
            Some(&rec[at..v_end])
        };
        f(base + offset_delta, value);
        at = end; // headers are skipped with the rest of the record
    }
    Some(())
}

/// Whether a RecordBatch v2 has a compression codec set (attributes bits 0-2).
pub fn is_compressed(batch: &[u8]) -> bool {
    batch.len() > 22 && i16::from_be_bytes([batch[21], batch[22]]) & 0x7 != 0
}

/// A zigzag varint (Kafka's varint/varlong) at `*at`, advancing past it.
fn varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    /// The in-place walk sees what the full decoder sees, for records with and without keys,
    /// null values and headers; compressed batches are left to the decoder.
    #[test]
    fn record_walk_matches_the_decoder() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
            TimestampType,
        };
        let records: Vec<Record> = (0..20)
            .map(|i| Record {
                transactional: false,
                delete_horizon: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 100 + i,
                sequence: i as i32 - 1, // offset - sequence constant: one batch
                timestamp: 1_700_000_000_000 + i,
                key: (i % 3 == 0).then(|| Bytes::from(vec![b'k'; i as usize])),
                value: (i % 5 != 4).then(|| Bytes::from(vec![i as u8; 300 * i as usize])),
                headers: if i % 2 == 0 {
                    [(
                        kafka_protocol::protocol::StrBytes::from_static_str("h"),
                        Some(Bytes::from_static(b"v")),
                    )]
                    .into_iter()
                    .collect()
                } else {
                    Default::default()
                },
            })
            .collect();
        for compression in [Compression::None, Compression::Lz4] {
            let mut out = bytes::BytesMut::new();
            let opts = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut out, &records, &opts).expect("encodes");
            let batch = out.freeze();
            let mut walked = Vec::new();
            let r = for_each_value(&batch, |o, v| walked.push((o, v.map(|v| v.to_vec()))));
            if compression != Compression::None {
                assert!(r.is_none(), "compressed batches go to the decoder");
                continue;
            }
            assert!(r.is_some());
            let decoded: Vec<_> = RecordBatchDecoder::decode(&mut batch.clone())
                .expect("decodes")
                .records
                .into_iter()
                .map(|r| (r.offset, r.value.map(|v| v.to_vec())))
                .collect();
            assert_eq!(walked, decoded);
            assert_eq!(walked.len(), 20, "one batch holds every record");
            let len = i32::from_be_bytes(batch[8..12].try_into().expect("4")) as usize;
            assert_eq!(12 + len, batch.len(), "one batch");
            assert!(
                for_each_value(&batch[..batch.len() - 1], |_, _| {}).is_none(),
                "truncated"
            );
        }
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Kafka's UtilsTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
        for k in 0..100 {
            let p = key_partition(format!("{k}").as_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }

    #[test]
    fn versions_pick_the_highest_common_version() {
        let broker = [
            (ApiKey::Produce as i16, 0, 11),
            (ApiKey::Fetch as i16, 0, 6),
            (ApiKey::ListOffsets as i16, 0, 9),
            (ApiKey::Metadata as i16, 0, 12),
        ];
        let v = Versions::from_broker(3, &broker).expect("negotiates");
        assert_eq!(
            (v.produce, v.fetch, v.list_offsets, v.metadata),
            (9, 6, 7, 12)
        );
        assert_eq!(v.create_topics, -1, "CreateTopics is optional");
        let old = [(ApiKey::Produce as i16, 0, 2)];
        assert!(pick(&old, ApiKey::Produce, 3, 9).is_err());
        assert!(pick(&old, ApiKey::Fetch, 4, 12).is_err());
    }

    #[test]
    fn frames_decode_back_with_the_codec() {
        let req = MetadataRequest::default().with_allow_auto_topic_creation(false);
        let mut out = BytesMut::new();
        frame(ApiKey::Metadata, 9, 42, &req, &mut out).expect("frames");
        let mut b = out.freeze();
        let size = b.get_i32() as usize;
        assert_eq!(size, b.len());
        let h = RequestHeader::decode(&mut b, ApiKey::Metadata.request_header_version(9))
            .expect("header");
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (3, 9, 42)
        );
        let back = MetadataRequest::decode(&mut b, 9).expect("body");
        assert_eq!(back, req);
    }

    #[test]
    fn partial_batches_are_left_out() {
        let mut blob = BytesMut::new();
        for len in [50i32, 60] {
            blob.extend_from_slice(&0i64.to_be_bytes());
            blob.extend_from_slice(&len.to_be_bytes());
            blob.extend_from_slice(&vec![0u8; len as usize]);
        }
        blob.extend_from_slice(&0i64.to_be_bytes());
        blob.extend_from_slice(&100i32.to_be_bytes());
        blob.extend_from_slice(&[0u8; 30]);
        let sizes: Vec<usize> = complete_batches(blob.freeze()).map(|b| b.len()).collect();
        assert_eq!(sizes, vec![62, 72]);
    }
}

#[cfg(test)]
mod handshake_tests {
    use super::*;
    use bytes::BufMut;
    use tokio::net::TcpListener;

    /// A fake broker that only knows ApiVersions v0: it answers v3 with UNSUPPORTED_VERSION
    /// (in a v0 body, as Kafka does), then v0 with its ranges.
    async fn old_broker(listener: TcpListener) {
        let (mut s, _) = listener.accept().await.expect("accept");
        for _ in 0..2 {
            let n = s.read_i32().await.expect("size") as usize;
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await.expect("request");
            let mut b = Bytes::from(buf);
            let version = i16::from_be_bytes([b[2], b[3]]);
            let h =
                RequestHeader::decode(&mut b, ApiKey::ApiVersions.request_header_version(version))
                    .expect("header");
            let mut resp = ApiVersionsResponse::default();
            if version > 0 {
                resp.error_code = UNSUPPORTED_VERSION;
            }
            for (key, max) in [
                (ApiKey::Produce, 7),
                (ApiKey::Fetch, 11),
                (ApiKey::ListOffsets, 5),
                (ApiKey::Metadata, 8),
                (ApiKey::ApiVersions, 0),
            ] {
                let mut k = api_versions_response::ApiVersion::default();
                k.api_key = key as i16;
                k.max_version = max;
                resp.api_keys.push(k);
            }
            let mut body = BytesMut::new();
            body.put_i32(h.correlation_id);
            resp.encode(&mut body, 0).expect("encode");
            let mut out = BytesMut::new();
            out.put_i32(body.len() as i32);
            out.extend_from_slice(&body);
            s.write_all(&out).await.expect("write");
        }
    }

    #[tokio::test]
    async fn handshake_falls_back_to_api_versions_v0() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(old_broker(listener));
        let conn = Conn::connect(&addr).await.expect("connects");
        assert_eq!(conn.versions.api_versions, 0);
        assert_eq!(
            (
                conn.versions.produce,
                conn.versions.fetch,
                conn.versions.list_offsets,
                conn.versions.metadata
            ),
            (7, 11, 5, 8)
        );
        assert_eq!(conn.versions.create_topics, -1);
        server.await.expect("server");
    }
}
