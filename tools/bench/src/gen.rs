//! Message generation and produce-request encoding. Buffers are reused from one request to
//! the next: one arena holds the keys and values of a request (one copy per message, no
//! per-message allocation), the record vector and the batch buffer are recycled, and the
//! RecordBatch v2 encoding (CRC, varints, compression) is kafka-protocol's.

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::proto::{frame, key_partition};

/// Bytes at the start of every value: the message's (scheduled) send time, ns since the Unix
/// epoch, big-endian. End-to-end latency is read back from it.
pub const STAMP: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Keys {
    None,
    Random,
    Space(u64),
}

impl Keys {
    pub fn parse(s: &str) -> anyhow::Result<Keys> {
        Ok(match s {
            "none" => Keys::None,
            "random" => Keys::Random,
            n => match n.parse::<u64>() {
                Ok(0) | Err(_) => bail!("--keys takes none, random or a key-space size N > 0"),
                Ok(n) => Keys::Space(n),
            },
        })
    }
}

/// `100` or `100-1000` (uniform).
pub fn parse_sizes(spec: &str) -> anyhow::Result<(usize, usize)> {
    let (a, b) = match spec.split_once('-') {
        Some((a, b)) => (a.trim().parse()?, b.trim().parse()?),
        None => {
            let n = spec.trim().parse().context("--message-size")?;
            (n, n)
        }
    };
    if a > b || b == 0 {
        bail!("bad --message-size {spec}");
    }
    Ok((a, b))
}

pub fn parse_compression(s: &str) -> anyhow::Result<Compression> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => bail!("--compression takes none, gzip, snappy, lz4 or zstd"),
    })
}

pub fn parse_acks(s: &str) -> anyhow::Result<i16> {
    Ok(match s {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        _ => bail!("--acks takes 0, 1 or all"),
    })
}

#[derive(Clone, Copy)]
struct Span {
    key: (u32, u32),
    has_key: bool,
    value: (u32, u32),
    /// Index of the message within its `generate` call.
    seq: u32,
}

/// What one encoded request carries for one partition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartCount {
    pub partition: i32,
    pub messages: u32,
    pub bytes: u64,
}

pub struct Generator {
    min_size: usize,
    max_size: usize,
    keys: Keys,
    compression: Compression,
    /// Partitions this producer writes to without keys (sticky, round robin per batch).
    own: Vec<i32>,
    partitions: i32,
    per_batch: usize,
    payload: Vec<u8>,
    rng: SmallRng,
    arena: BytesMut,
    frozen: Bytes,
    by_part: Vec<Vec<Span>>,
    touched: Vec<i32>,
    records: Vec<Record>,
    batch: BytesMut,
    cursor: usize,
    in_sticky: usize,
    topic: TopicName,
    key_buf: String,
}

pub struct GenConfig {
    pub min_size: usize,
    pub max_size: usize,
    pub keys: Keys,
    pub compression: Compression,
    pub batch_bytes: usize,
    pub partitions: i32,
    pub own: Vec<i32>,
    pub topic: String,
    pub seed: u64,
}

impl Generator {
    pub fn new(c: GenConfig) -> Generator {
        let mut rng = SmallRng::seed_from_u64(c.seed);
        // Random (incompressible) bytes, as a worst case for compression; the timestamp
        // overwrites the first 8 of each value.
        let payload: Vec<u8> = (0..c.max_size.max(STAMP)).map(|_| rng.gen()).collect();
        let avg = ((c.min_size + c.max_size) / 2).max(1);
        Generator {
            min_size: c.min_size,
            max_size: c.max_size,
            keys: c.keys,
            compression: c.compression,
            own: if c.own.is_empty() { vec![0] } else { c.own },
            partitions: c.partitions.max(1),
            per_batch: (c.batch_bytes / avg).max(1),
            payload,
            rng,
            arena: BytesMut::new(),
            frozen: Bytes::new(),
            by_part: vec![Vec::new(); c.partitions.max(1) as usize],
            touched: Vec::new(),
            records: Vec::new(),
            batch: BytesMut::new(),
            cursor: 0,
            in_sticky: 0,
            topic: TopicName(StrBytes::from_string(c.topic)),
            key_buf: String::new(),
        }
    }

    /// Messages per partition batch (from --batch-bytes and the mean message size).
    pub fn per_batch(&self) -> usize {
        self.per_batch
    }

    /// Partitions that `generate` may write to.
    pub fn targets(&self) -> usize {
        match self.keys {
            Keys::None => self.own.len(),
            _ => self.partitions as usize,
        }
    }

    /// Creates `n` messages; message i carries `stamp_ns(i)` in its first 8 bytes. Returns
    /// the partitions that received messages (valid until the next call).
    pub fn generate(&mut self, n: usize, stamp_ns: impl Fn(usize) -> u64) -> &[i32] {
        for p in self.touched.drain(..) {
            self.by_part[p as usize].clear();
        }
        // Release the previous request's view so the arena's allocation is unique again and
        // `reserve` reuses it instead of allocating.
        self.frozen = Bytes::new();
        self.arena.clear();
        for i in 0..n {
            let size = if self.max_size > self.min_size {
                self.rng.gen_range(self.min_size..=self.max_size)
            } else {
                self.min_size
            };
            let (has_key, key, partition) = match self.keys {
                Keys::None => {
                    if self.in_sticky == self.per_batch {
                        self.in_sticky = 0;
                        self.cursor = (self.cursor + 1) % self.own.len();
                    }
                    self.in_sticky += 1;
                    (false, (0, 0), self.own[self.cursor])
                }
                Keys::Random | Keys::Space(_) => {
                    let k: u64 = match self.keys {
                        Keys::Space(space) => self.rng.gen_range(0..space),
                        _ => self.rng.gen(),
                    };
                    use std::fmt::Write;
                    self.key_buf.clear();
                    let _ = write!(self.key_buf, "{k}");
                    let start = self.arena.len() as u32;
                    self.arena.put_slice(self.key_buf.as_bytes());
                    let p = key_partition(self.key_buf.as_bytes(), self.partitions);
                    (true, (start, self.key_buf.len() as u32), p)
                }
            };
            let start = self.arena.len();
            let stamp = stamp_ns(i).to_be_bytes();
            if size >= STAMP {
                self.arena.put_slice(&stamp);
                self.arena.put_slice(&self.payload[STAMP..size]);
            } else {
                self.arena.put_slice(&stamp[..size]);
            }
            let spans = &mut self.by_part[partition as usize];
            if spans.is_empty() {
                self.touched.push(partition);
            }
            spans.push(Span {
                key,
                has_key,
                value: (start as u32, size as u32),
                seq: i as u32,
            });
        }
        self.frozen = self.arena.split().freeze();
        &self.touched
    }

    /// Encodes a Produce request with a batch for each generated partition that `include`
    /// accepts, appending the framed request to `out`; the included messages' indices (as
    /// passed to `stamp_ns`) are appended to `seqs` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_request(
        &mut self,
        include: impl Fn(i32) -> bool,
        mut seqs: Option<&mut Vec<u32>>,
        version: i16,
        correlation: i32,
        acks: i16,
        timeout_ms: i32,
        timestamp_ms: i64,
        out: &mut BytesMut,
    ) -> anyhow::Result<Vec<PartCount>> {
        let mut counts = Vec::new();
        let mut ranges = Vec::new();
        self.batch.clear();
        let mut topic = TopicProduceData::default();
        topic.name = self.topic.clone();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: self.compression,
        };
        for &p in &self.touched {
            if !include(p) {
                continue;
            }
            self.records.clear();
            let mut bytes = 0u64;
            for (i, s) in self.by_part[p as usize].iter().enumerate() {
                let (vs, vl) = (s.value.0 as usize, s.value.1 as usize);
                bytes += vl as u64;
                if let Some(seqs) = seqs.as_mut() {
                    seqs.push(s.seq);
                }
                self.records.push(Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    // offset - sequence constant keeps one batch; base sequence -1 (none).
                    sequence: i as i32 - 1,
                    timestamp: timestamp_ms,
                    key: s.has_key.then(|| {
                        self.frozen
                            .slice(s.key.0 as usize..(s.key.0 + s.key.1) as usize)
                    }),
                    value: Some(self.frozen.slice(vs..vs + vl)),
                    headers: IndexMap::new(),
                });
            }
            let start = self.batch.len();
            RecordBatchEncoder::encode(&mut self.batch, &self.records, &opts)?;
            ranges.push(start..self.batch.len());
            counts.push(PartCount {
                partition: p,
                messages: self.records.len() as u32,
                bytes,
            });
        }
        self.records.clear();
        if counts.is_empty() {
            return Ok(counts);
        }
        // All batches went into one buffer (one allocation, reused once the request is
        // dropped); each partition gets a slice of it.
        let all = self.batch.split().freeze();
        for (c, r) in counts.iter().zip(ranges) {
            let mut pd = PartitionProduceData::default();
            pd.index = c.partition;
            pd.records = Some(all.slice(r));
            topic.partition_data.push(pd);
        }
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![topic]);
        frame(ApiKey::Produce, version, correlation, &req, out)?;
        Ok(counts)
    }
}

/// Open-loop schedule: message i of a producer is due at `i * 1e9 / rate` ns after the start.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    step_ns: f64,
}

impl Schedule {
    pub fn new(rate_per_sec: f64) -> Schedule {
        Schedule {
            step_ns: 1e9 / rate_per_sec,
        }
    }

    /// Offset (ns from start) at which message `i` is due.
    pub fn at_ns(&self, i: u64) -> u64 {
        (i as f64 * self.step_ns) as u64
    }

    /// How many messages are due by `elapsed_ns` after the start (messages 0..n).
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        (elapsed_ns as f64 / self.step_ns).floor() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::records::RecordBatchDecoder;

    fn generator(keys: Keys, compression: Compression, own: Vec<i32>) -> Generator {
        Generator::new(GenConfig {
            min_size: 100,
            max_size: 200,
            keys,
            compression,
            batch_bytes: 1500,
            partitions: 4,
            own,
            topic: "t".into(),
            seed: 7,
        })
    }

    fn decode(out: BytesMut, version: i16) -> ProduceRequest {
        let mut b = out.freeze();
        let n = b.get_i32() as usize;
        assert_eq!(n, b.len());
        let h = RequestHeader::decode(&mut b, ApiKey::Produce.request_header_version(version))
            .expect("header");
        assert_eq!(h.request_api_key, ApiKey::Produce as i16);
        assert_eq!(h.request_api_version, version);
        ProduceRequest::decode(&mut b, version).expect("decodes")
    }

    #[test]
    fn produce_requests_decode_back_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for version in [3i16, 9] {
                let mut g = generator(Keys::Space(10), c, vec![]);
                let touched = g.generate(50, |i| 1_000_000 + i as u64).to_vec();
                assert!(!touched.is_empty());
                let mut out = BytesMut::new();
                let counts = g
                    .encode_request(|_| true, None, version, 5, -1, 1000, 1234, &mut out)
                    .expect("encodes");
                assert_eq!(counts.iter().map(|c| c.messages).sum::<u32>(), 50);
                let req = decode(out, version);
                assert_eq!(req.acks, -1);
                let t = &req.topic_data[0];
                assert_eq!(t.name.0.as_str(), "t");
                let mut seen = 0;
                for pd in &t.partition_data {
                    let mut records = pd.records.clone().expect("records");
                    let set = RecordBatchDecoder::decode(&mut records).expect("batch");
                    assert!(!records.has_remaining(), "{c:?}: one batch per partition");
                    assert_eq!(set.compression, c);
                    for r in &set.records {
                        let key = r.key.as_ref().expect("keyed");
                        assert_eq!(key_partition(key, 4), pd.index, "murmur2 placement");
                        let v = r.value.as_ref().expect("value");
                        assert!((100..=200).contains(&v.len()));
                        let stamp = u64::from_be_bytes(v[..8].try_into().expect("8"));
                        assert!((1_000_000..1_000_050).contains(&stamp));
                        assert_eq!(r.timestamp, 1234);
                        assert_eq!(r.producer_id, -1);
                    }
                    seen += set.records.len();
                    let count = counts
                        .iter()
                        .find(|c| c.partition == pd.index)
                        .expect("count");
                    assert_eq!(count.messages as usize, set.records.len());
                }
                assert_eq!(seen, 50);
            }
        }
    }

    #[test]
    fn unkeyed_messages_stick_to_a_partition_per_batch() {
        let mut g = generator(Keys::None, Compression::None, vec![1, 3]);
        // 1500 / 150 = 10 messages per batch.
        assert_eq!(g.per_batch(), 10);
        let touched = g.generate(25, |_| 0).to_vec();
        assert_eq!(touched, vec![1, 3]);
        let mut out = BytesMut::new();
        let mut seqs = Vec::new();
        let counts = g
            .encode_request(|p| p == 3, Some(&mut seqs), 7, 1, 1, 1000, 0, &mut out)
            .expect("encodes");
        assert_eq!(seqs, (10..20).collect::<Vec<u32>>());
        assert_eq!(
            counts,
            vec![PartCount {
                partition: 3,
                messages: 10,
                bytes: counts[0].bytes
            }]
        );
        let req = decode(out, 7);
        assert_eq!(req.topic_data[0].partition_data.len(), 1);
        // The next call carries on where this one stopped (5 more on partition 1).
        assert_eq!(g.generate(5, |_| 0), &[1]);
    }

    #[test]
    fn schedule_spreads_messages_evenly() {
        let s = Schedule::new(1000.0); // 1 ms apart
        assert_eq!(s.at_ns(0), 0);
        assert_eq!(s.at_ns(3), 3_000_000);
        assert_eq!(s.due(0), 1);
        assert_eq!(s.due(999_999), 1);
        assert_eq!(s.due(1_000_000), 2);
        assert_eq!(s.due(1_000_000_000), 1001);
        let s = Schedule::new(3.0);
        assert_eq!(s.at_ns(1), 333_333_333);
    }

    #[test]
    fn option_parsers() {
        assert_eq!(parse_sizes("100").expect("fixed"), (100, 100));
        assert_eq!(parse_sizes("100-1000").expect("range"), (100, 1000));
        assert!(parse_sizes("1000-100").is_err());
        assert!(parse_sizes("x").is_err());
        assert_eq!(Keys::parse("none").expect("none"), Keys::None);
        assert_eq!(Keys::parse("random").expect("random"), Keys::Random);
        assert_eq!(Keys::parse("64").expect("n"), Keys::Space(64));
        assert!(Keys::parse("0").is_err());
        assert_eq!(parse_acks("all").expect("all"), -1);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_compression("zstd").expect("zstd"), Compression::Zstd);
    }
}
