//! Protocol hot paths: request decoding, Fetch response framing around stored batches, CRC32C
//! and batch validation.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidewater::protocol::fetch_response::{self, FetchResponseData, PartitionData, TopicData};
use tidewater::storage::batch::validate_batches;

fn batch(records: usize, value_bytes: usize) -> Bytes {
    let value = Bytes::from(vec![b'x'; value_bytes]);
    let recs: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn produce_request(partitions: i32, b: &Bytes) -> Bytes {
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("bench"));
    for p in 0..partitions {
        let mut pd = PartitionProduceData::default();
        pd.index = p;
        pd.records = Some(b.clone());
        t.partition_data.push(pd);
    }
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![t];
    let mut out = BytesMut::new();
    req.encode(&mut out, 9).expect("encode");
    out.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let b = batch(100, 1000);
    let req = produce_request(16, &b);
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("produce_v9_16x100KB", |bench| {
        bench.iter(|| {
            let mut r = req.clone();
            black_box(ProduceRequest::decode(&mut r, 9).expect("decode"))
        })
    });
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_static_str("bench"));
    for p in 0..16 {
        let mut fp = FetchPartition::default();
        fp.partition = p;
        fp.fetch_offset = 1000;
        fp.partition_max_bytes = 1 << 20;
        t.partitions.push(fp);
    }
    let mut f = FetchRequest::default();
    f.replica_id = BrokerId(-1);
    f.topics = vec![t];
    let mut fb = BytesMut::new();
    f.encode(&mut fb, 11).expect("encode");
    let fb = fb.freeze();
    g.throughput(Throughput::Elements(1));
    g.bench_function("fetch_v11_16_partitions", |bench| {
        bench.iter(|| {
            let mut r = fb.clone();
            black_box(FetchRequest::decode(&mut r, 11).expect("decode"))
        })
    });
    g.finish();
}

fn bench_fetch_framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("fetch_framing");
    for chunks in [1usize, 16, 64] {
        let stored: Vec<Bytes> = (0..chunks).map(|_| batch(16, 4096)).collect();
        let total: usize = stored.iter().map(|b| b.len()).sum();
        let data = FetchResponseData {
            responses: vec![TopicData {
                topic: "bench".into(),
                partitions: (0..4)
                    .map(|p| PartitionData {
                        partition_index: p,
                        high_watermark: 1000,
                        last_stable_offset: 1000,
                        preferred_read_replica: -1,
                        records: stored.clone(),
                        ..Default::default()
                    })
                    .collect(),
            }],
            ..Default::default()
        };
        g.throughput(Throughput::Bytes(4 * total as u64));
        g.bench_with_input(
            BenchmarkId::new("zero_copy_4_partitions", chunks),
            &data,
            |bench, d| bench.iter(|| black_box(fetch_response::encode(d, 11, &[0, 0, 0, 1]))),
        );
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [1024usize, 65536, 1 << 20] {
        let data = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |bench, d| {
            bench.iter(|| black_box(crc32c::crc32c(d)))
        });
    }
    let b = batch(100, 1000);
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_batch_100KB", |bench| {
        bench.iter(|| black_box(validate_batches(&b, 1 << 20).expect("valid")))
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_fetch_framing, bench_crc);
criterion_main!(benches);
