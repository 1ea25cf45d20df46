//! Protocol-level tests against the real broker binary: version negotiation, produce/fetch
//! across shards, idempotence, long polling and hostile input.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{batch, decode, Broker, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

fn create_topic(c: &mut Client, name: &str, partitions: i32) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(name.into()));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    let resp: CreateTopicsResponse =
        decode(c.call(ApiKey::CreateTopics, 5, &req).expect("create"), 5);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

fn produce(
    c: &mut Client,
    topic: &str,
    parts: Vec<(i32, Bytes)>,
    acks: i16,
) -> Vec<(i32, i16, i64)> {
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    for (p, b) in parts {
        let mut pd = PartitionProduceData::default();
        pd.index = p;
        pd.records = Some(b);
        t.partition_data.push(pd);
    }
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 10_000;
    req.topic_data = vec![t];
    let resp: ProduceResponse = decode(c.call(ApiKey::Produce, 9, &req).expect("produce"), 9);
    resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| (p.index, p.error_code, p.base_offset))
        .collect()
}

fn fetch_req(
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.into()));
    for (p, off) in partitions {
        let mut fp = FetchPartition::default();
        fp.partition = *p;
        fp.fetch_offset = *off;
        fp.partition_max_bytes = 1 << 20;
        t.partitions.push(fp);
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = 50 << 20;
    req.topics = vec![t];
    req
}

fn fetch(
    c: &mut Client,
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
) -> FetchResponse {
    let req = fetch_req(topic, partitions, max_wait_ms, 1);
    decode(c.call(ApiKey::Fetch, 11, &req).expect("fetch"), 11)
}

fn values(records: &Option<Bytes>) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some(b) = records {
        let mut b = b.clone();
        while !b.is_empty() {
            let set = RecordBatchDecoder::decode(&mut b).expect("batch decodes");
            for r in set.records {
                out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
            }
        }
    }
    out
}

#[test]
fn api_versions_every_version_and_kip511_fallback() {
    let broker = Broker::start(1);
    let mut c = broker.client();
    for v in 0..=3 {
        let r = c.api_versions(v).expect("api versions");
        assert_eq!(r.error_code, 0);
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .expect("produce listed");
        assert_eq!((produce.min_version, produce.max_version), (3, 9));
    }
    // An ApiVersions version we do not know: v0 answer with UNSUPPORTED_VERSION and the list.
    let mut h = RequestHeader::default();
    h.request_api_key = ApiKey::ApiVersions as i16;
    h.request_api_version = 99;
    h.correlation_id = 7;
    let mut frame = bytes::BytesMut::new();
    kafka_protocol::protocol::Encodable::encode(&h, &mut frame, 1).expect("header");
    c.send_raw(&frame).expect("send");
    let mut b = c.recv_frame().expect("answer");
    assert_eq!(bytes::Buf::get_i32(&mut b), 7);
    let r: ApiVersionsResponse = decode(b, 0);
    assert_eq!(r.error_code, 35);
    assert!(!r.api_keys.is_empty());
}

#[test]
fn produce_and_fetch_every_partition_across_shards() {
    let broker = Broker::start(2);
    let mut c = broker.client();
    create_topic(&mut c, "eight", 8);
    for round in 0..3 {
        let parts: Vec<(i32, Bytes)> = (0..8)
            .map(|p| {
                (
                    p,
                    batch(
                        &[
                            format!("r{round}-p{p}-a").as_bytes(),
                            format!("r{round}-p{p}-b").as_bytes(),
                        ],
                        None,
                    ),
                )
            })
            .collect();
        for (p, err, base) in produce(&mut c, "eight", parts, -1) {
            assert_eq!(err, 0, "partition {p}");
            assert_eq!(base, round * 2, "partition {p}");
        }
    }
    // Several connections: with SO_REUSEPORT they land on both shards.
    for _ in 0..4 {
        let mut c2 = broker.client();
        let all: Vec<(i32, i64)> = (0..8).map(|p| (p, 0)).collect();
        let resp = fetch(&mut c2, "eight", &all, 0);
        for p in &resp.responses[0].partitions {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.high_watermark, 6);
            let vals = values(&p.records);
            assert_eq!(vals.len(), 6);
            assert_eq!(
                vals[5],
                (5, format!("r2-p{}-b", p.partition_index).into_bytes())
            );
        }
    }
}

#[test]
fn idempotent_retries_are_deduplicated_and_gaps_rejected() {
    let broker = Broker::start(2);
    let mut c = broker.client();
    create_topic(&mut c, "idem", 1);
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let r: InitProducerIdResponse =
        decode(c.call(ApiKey::InitProducerId, 4, &req).expect("init"), 4);
    assert_eq!(r.error_code, 0);
    let pid = r.producer_id.0;
    let b0 = batch(&[b"a", b"b"], Some((pid, 0, 0)));
    assert_eq!(
        produce(&mut c, "idem", vec![(0, b0.clone())], -1),
        vec![(0, 0, 0)]
    );
    // The retry returns the original offset and writes nothing.
    assert_eq!(produce(&mut c, "idem", vec![(0, b0)], -1), vec![(0, 0, 0)]);
    let b1 = batch(&[b"c"], Some((pid, 0, 2)));
    assert_eq!(produce(&mut c, "idem", vec![(0, b1)], -1), vec![(0, 0, 2)]);
    let gap = batch(&[b"x"], Some((pid, 0, 9)));
    assert_eq!(
        produce(&mut c, "idem", vec![(0, gap)], -1)[0].1,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // A newer epoch restarts sequences at 0; the old epoch is then fenced.
    let bumped = batch(&[b"d"], Some((pid, 1, 0)));
    assert_eq!(
        produce(&mut c, "idem", vec![(0, bumped)], -1),
        vec![(0, 0, 3)]
    );
    let stale = batch(&[b"x"], Some((pid, 0, 3)));
    assert_eq!(
        produce(&mut c, "idem", vec![(0, stale)], -1)[0].1,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    let resp = fetch(&mut c, "idem", &[(0, 0)], 0);
    let vals = values(&resp.responses[0].partitions[0].records);
    assert_eq!(
        vals.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    // A new producer id never repeats.
    let r2: InitProducerIdResponse =
        decode(c.call(ApiKey::InitProducerId, 4, &req).expect("init"), 4);
    assert!(r2.producer_id.0 > pid);
}

#[test]
fn corrupt_batch_fails_only_its_partition() {
    let broker = Broker::start(2);
    let mut c = broker.client();
    create_topic(&mut c, "crc", 2);
    let good = batch(&[b"fine"], None);
    let mut bad = batch(&[b"broken"], None).to_vec();
    let n = bad.len();
    bad[n - 2] ^= 0xff;
    let res = produce(&mut c, "crc", vec![(0, Bytes::from(bad)), (1, good)], 1);
    assert_eq!(res[0].1, 2, "CORRUPT_MESSAGE");
    assert_eq!(res[1].1, 0);
    let unknown = produce(&mut c, "crc", vec![(7, batch(&[b"x"], None))], 1);
    assert_eq!(unknown[0].1, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn fetch_long_poll_wakes_on_append() {
    let broker = Broker::start(2);
    let mut c = broker.client();
    create_topic(&mut c, "poll", 4);
    let addr = broker.addr;
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut w = Client::connect(addr).expect("connect");
        produce(&mut w, "poll", vec![(3, batch(&[b"late"], None))], -1)
    });
    let started = Instant::now();
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let resp = fetch(&mut c, "poll", &all, 10_000);
    let waited = started.elapsed();
    assert_eq!(writer.join().expect("writer")[0].1, 0);
    let p3 = &resp.responses[0].partitions[3];
    assert_eq!(values(&p3.records), vec![(0, b"late".to_vec())]);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(8),
        "woke after {waited:?}"
    );
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let broker = Broker::start(2);
    let mut good = broker.client();
    create_topic(&mut good, "calm", 1);
    let cases: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),
        (200_000_000i32).to_be_bytes().to_vec(),
        [
            &12i32.to_be_bytes()[..],
            &[0xff, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        ]
        .concat(),
        [
            &14i32.to_be_bytes()[..],
            &[0, 3, 0, 50, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat(),
        [
            &20i32.to_be_bytes()[..],
            &[0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
        ]
        .concat(),
    ];
    for (i, raw) in cases.iter().enumerate() {
        let mut bad = broker.client();
        use std::io::Write;
        bad.stream.write_all(raw).expect("write");
        assert!(bad.is_closed(), "case {i}: connection should be closed");
        let r = produce(
            &mut good,
            "calm",
            vec![(0, batch(&[b"still here"], None))],
            -1,
        );
        assert_eq!(r[0].1, 0, "case {i}: a well-behaved client is unaffected");
    }
    // A truncated frame followed by a close does not disturb anyone either.
    {
        let mut t = broker.client();
        use std::io::Write;
        t.stream.write_all(&100i32.to_be_bytes()).expect("write");
        t.stream.write_all(&[0, 18]).expect("write");
    }
    assert_eq!(good.api_versions(3).expect("still serving").error_code, 0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = Broker::start(2);
    let mut c = broker.client();
    create_topic(&mut c, "pipe", 2);
    for i in 0..50 {
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_static_str("pipe"));
        let mut pd = PartitionProduceData::default();
        pd.index = i % 2;
        pd.records = Some(batch(&[format!("m{i}").as_bytes()], None));
        t.partition_data.push(pd);
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 5000;
        req.topic_data = vec![t];
        c.send(ApiKey::Produce, 9, &req).expect("send");
    }
    // Correlation ids come back in request order (create_topic used id 1).
    let mut c2 = c;
    for i in 0..50 {
        let mut b = c2.recv_frame().expect("response");
        let corr = bytes::Buf::get_i32(&mut b);
        assert_eq!(corr, i + 2);
        let _tagged = bytes::Buf::get_u8(&mut b);
        let r: ProduceResponse = decode(b, 9);
        assert_eq!(
            r.responses[0].partition_responses[0].base_offset,
            (i / 2) as i64
        );
    }
}

#[test]
fn sigterm_with_idle_clients_stops_promptly() {
    let mut broker = Broker::start(2);
    let mut idle: Vec<Client> = (0..5).map(|_| broker.client()).collect();
    for c in idle.iter_mut() {
        assert_eq!(c.api_versions(3).expect("api versions").error_code, 0);
    }
    let started = Instant::now();
    broker.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    for c in idle.iter_mut() {
        assert!(c.is_closed());
    }
}
