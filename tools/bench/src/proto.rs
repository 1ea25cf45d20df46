//! Just enough of a Kafka client: framing, version negotiation, topic setup, produce and fetch
//! requests, and a fast RecordBatch v2 encoder/decoder for benchmark payloads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The versions this tool speaks, intersected with the broker's at connect time.
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub list_offsets: i16,
    pub create_topics: i16,
}

fn pick(resp: &ApiVersionsResponse, key: ApiKey, lo: i16, hi: i16) -> anyhow::Result<i16> {
    let k = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
    let v = hi.min(k.max_version);
    if v < lo.max(k.min_version) {
        bail!(
            "no common version of {key:?}: broker {}..{}, tool {lo}..{hi}",
            k.min_version,
            k.max_version
        );
    }
    Ok(v)
}

pub struct Conn {
    pub stream: TcpStream,
    correlation: i32,
    pub versions: Versions,
}

pub fn frame(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &impl Encodable,
    out: &mut BytesMut,
) -> anyhow::Result<()> {
    let start = out.len();
    out.put_i32(0);
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = correlation;
    h.client_id = Some(StrBytes::from_static_str("tidewater-bench"));
    h.encode(out, key.request_header_version(version))?;
    body.encode(out, version)?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

impl Conn {
    pub fn connect(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut c = Conn {
            stream,
            correlation: 0,
            versions: Versions {
                produce: 3,
                fetch: 4,
                metadata: 1,
                list_offsets: 1,
                create_topics: 2,
            },
        };
        let resp: ApiVersionsResponse =
            c.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if resp.error_code != 0 {
            bail!("ApiVersions failed with error {}", resp.error_code);
        }
        c.versions = Versions {
            produce: pick(&resp, ApiKey::Produce, 3, 8)?,
            fetch: pick(&resp, ApiKey::Fetch, 4, 11)?,
            metadata: pick(&resp, ApiKey::Metadata, 1, 8)?,
            list_offsets: pick(&resp, ApiKey::ListOffsets, 1, 5)?,
            create_topics: pick(&resp, ApiKey::CreateTopics, 2, 4)?,
        };
        Ok(c)
    }

    pub fn next_correlation(&mut self) -> i32 {
        self.correlation += 1;
        self.correlation
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let corr = self.next_correlation();
        let mut out = BytesMut::new();
        frame(key, version, corr, req, &mut out)?;
        self.stream.write_all(&out)?;
        let mut body = read_frame(&mut self.stream)?;
        let got = body.get_i32();
        if got != corr {
            bail!("correlation id {got}, expected {corr}");
        }
        if key.response_header_version(version) >= 1 {
            skip_tagged(&mut body)?;
        }
        Resp::decode(&mut body, version)
    }

    /// Partition count of `topic`, creating it with `partitions` if it does not exist.
    pub fn ensure_topic(&mut self, topic: &str, partitions: Option<i32>) -> anyhow::Result<i32> {
        for attempt in 0..50 {
            let mut req = MetadataRequest::default();
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
            req.topics = Some(vec![t]);
            req.allow_auto_topic_creation = false;
            let v = self.versions.metadata;
            let resp: MetadataResponse = self.call(ApiKey::Metadata, v, &req)?;
            let md = resp
                .topics
                .first()
                .ok_or_else(|| anyhow!("no metadata for {topic}"))?;
            if md.error_code == 0 && !md.partitions.is_empty() {
                return Ok(md.partitions.len() as i32);
            }
            if attempt == 0 {
                let Some(n) = partitions else {
                    bail!(
                        "topic {topic} does not exist (error {}); pass --partitions to create it",
                        md.error_code
                    );
                };
                let mut ct = create_topics_request::CreatableTopic::default();
                ct.name = TopicName(StrBytes::from_string(topic.to_string()));
                ct.num_partitions = n;
                ct.replication_factor = -1;
                let mut req = CreateTopicsRequest::default();
                req.topics = vec![ct];
                req.timeout_ms = 30_000;
                let v = self.versions.create_topics;
                let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, v, &req)?;
                let code = resp.topics.first().map(|t| t.error_code).unwrap_or(-1);
                if code != 0 && code != 36 {
                    bail!("creating {topic} failed with error {code}");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("topic {topic} did not appear")
    }

    /// Log end (latest) or start (earliest) offset of each partition.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: i32,
        latest: bool,
    ) -> anyhow::Result<Vec<i64>> {
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        for p in 0..partitions {
            let mut lp = list_offsets_request::ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.timestamp = if latest { -1 } else { -2 };
            t.partitions.push(lp);
        }
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        let v = self.versions.list_offsets;
        let resp: ListOffsetsResponse = self.call(ApiKey::ListOffsets, v, &req)?;
        let mut out = vec![0; partitions as usize];
        for p in &resp.topics[0].partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets error {} on partition {}",
                    p.error_code,
                    p.partition_index
                );
            }
            out[p.partition_index as usize] = p.offset;
        }
        Ok(out)
    }
}

pub fn skip_tagged(b: &mut Bytes) -> anyhow::Result<()> {
    let n = read_uvarint(b)?;
    for _ in 0..n {
        read_uvarint(b)?;
        let len = read_uvarint(b)? as usize;
        if b.remaining() < len {
            bail!("short tagged field");
        }
        b.advance(len);
    }
    Ok(())
}

fn read_uvarint(b: &mut Bytes) -> anyhow::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            bail!("short varint");
        }
        let byte = b.get_u8();
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

pub fn read_frame(s: &mut impl Read) -> anyhow::Result<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if n < 4 {
        bail!("bad response size {n}");
    }
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// A message to encode: key (optional) and value.
pub struct Msg<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub timestamp_ms: i64,
}

/// Encodes one RecordBatch v2. Uncompressed batches are written directly (no per-record
/// allocation); compressed ones go through the kafka-protocol encoder.
pub fn encode_batch(
    msgs: &[Msg],
    compression: Compression,
    out: &mut BytesMut,
) -> anyhow::Result<()> {
    if compression != Compression::None {
        let records: Vec<Record> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep one batch.
                sequence: i as i32,
                timestamp: m.timestamp_ms,
                key: m.key.map(Bytes::copy_from_slice),
                value: Some(Bytes::copy_from_slice(m.value)),
                headers: IndexMap::new(),
            })
            .collect();
        RecordBatchEncoder::encode(
            out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )?;
        return Ok(());
    }
    let start = out.len();
    let base_ts = msgs.first().map(|m| m.timestamp_ms).unwrap_or(0);
    let max_ts = msgs.iter().map(|m| m.timestamp_ms).max().unwrap_or(base_ts);
    out.put_i64(0);
    out.put_i32(0); // batch length, patched below
    out.put_i32(-1);
    out.put_i8(2);
    out.put_u32(0); // crc, patched below
    out.put_i16(0);
    out.put_i32(msgs.len() as i32 - 1);
    out.put_i64(base_ts);
    out.put_i64(max_ts);
    out.put_i64(-1);
    out.put_i16(-1);
    out.put_i32(-1);
    out.put_i32(msgs.len() as i32);
    for (i, m) in msgs.iter().enumerate() {
        let ts_delta = m.timestamp_ms - base_ts;
        let key_len = m.key.map(|k| k.len() as i64).unwrap_or(-1);
        let body = 1
            + varint_len(ts_delta)
            + varint_len(i as i64)
            + varint_len(key_len)
            + key_len.max(0) as usize
            + varint_len(m.value.len() as i64)
            + m.value.len()
            + 1;
        put_varint(out, body as i64);
        out.put_u8(0);
        put_varint(out, ts_delta);
        put_varint(out, i as i64);
        put_varint(out, key_len);
        if let Some(k) = m.key {
            out.put_slice(k);
        }
        put_varint(out, m.value.len() as i64);
        out.put_slice(m.value);
        put_varint(out, 0);
    }
    let len = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + 21..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// Walks the record batches in a fetched records blob: calls `f(offset, value)` for each
/// record of uncompressed batches at or after `from`; returns (records, value bytes, next offset).
pub fn for_each_record(blob: &[u8], from: i64, f: &mut dyn FnMut(i64, &[u8])) -> (u64, u64, i64) {
    let (mut records, mut bytes, mut next) = (0u64, 0u64, from);
    let mut pos = 0usize;
    while pos + 61 <= blob.len() {
        let base = i64::from_be_bytes(blob[pos..pos + 8].try_into().unwrap_or_default());
        let len = i32::from_be_bytes(blob[pos + 8..pos + 12].try_into().unwrap_or_default());
        let end = pos + 12 + len.max(0) as usize;
        if len < 49 || end > blob.len() {
            break; // a partial batch at the end of a fetch
        }
        let attrs = i16::from_be_bytes([blob[pos + 21], blob[pos + 22]]);
        let last_delta =
            i32::from_be_bytes(blob[pos + 23..pos + 27].try_into().unwrap_or_default());
        let count = i32::from_be_bytes(blob[pos + 57..pos + 61].try_into().unwrap_or_default());
        if attrs & 0x07 == 0 {
            let mut at = pos + 61;
            for _ in 0..count {
                let Some(rlen) = get_varint(blob, &mut at) else {
                    break;
                };
                let rstart = at;
                at += 1;
                let _ = get_varint(blob, &mut at);
                let od = get_varint(blob, &mut at).unwrap_or(0);
                let klen = get_varint(blob, &mut at).unwrap_or(-1);
                at += klen.max(0) as usize;
                let vlen = get_varint(blob, &mut at).unwrap_or(-1).max(0) as usize;
                let offset = base + od;
                if offset >= from && at + vlen <= end {
                    f(offset, &blob[at..at + vlen]);
                    records += 1;
                    bytes += vlen as u64;
                }
                at = rstart + rlen.max(0) as usize;
            }
        } else if base + last_delta as i64 >= from {
            // Compressed: count without decoding.
            records += count.max(0) as u64;
            bytes += (end - pos) as u64;
        }
        next = next.max(base + last_delta as i64 + 1);
        pos = end;
    }
    (records, bytes, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_batches_decode_with_the_codec_and_our_walker() {
        let vals: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i]).collect();
        let msgs: Vec<Msg> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| Msg {
                key: if i % 2 == 0 { Some(b"key") } else { None },
                value: v,
                timestamp_ms: 1000 + i as i64,
            })
            .collect();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Snappy,
            Compression::Zstd,
        ] {
            let mut out = BytesMut::new();
            encode_batch(&msgs, c, &mut out).expect("encode");
            let mut b = out.clone().freeze();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b).expect("decodes");
            assert_eq!(set.records.len(), 5, "{c:?}: one batch with every record");
            assert_eq!(set.records[3].value.as_deref(), Some(&vals[3][..]));
            assert_eq!(set.records[2].timestamp, 1002);
            if c == Compression::None {
                let mut seen = Vec::new();
                let (n, _, next) = for_each_record(&out, 2, &mut |o, v| seen.push((o, v.to_vec())));
                assert_eq!((n, next), (3, 5));
                assert_eq!(seen[0], (2, vals[2].clone()));
            }
        }
    }
}
