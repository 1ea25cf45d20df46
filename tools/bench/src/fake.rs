//! A minimal fake Kafka cluster for tests: several listeners sharing one metadata view, enough
//! ApiVersions/Metadata/Produce/ListOffsets/Fetch to exercise leader routing and the fetch
//! offset-out-of-range path without a real broker.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub struct State {
    /// (broker, partition, record batches bytes) of every produced partition batch.
    pub produced: Vec<(i32, i32, usize)>,
    pub list_offsets_calls: usize,
    pub fetches: Vec<(i32, i32, i64)>,
}

pub struct Cluster {
    pub addrs: Vec<String>,
    pub state: Arc<Mutex<State>>,
}

/// `brokers` listeners; partition p of topic `topic` is led by broker p % brokers.
pub async fn start(brokers: usize, topic: &str, partitions: i32) -> Cluster {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..brokers {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(l.local_addr().expect("addr").to_string());
        listeners.push(l);
    }
    let state = Arc::new(Mutex::new(State::default()));
    for (id, l) in listeners.into_iter().enumerate() {
        let (addrs, state, topic) = (addrs.clone(), state.clone(), topic.to_string());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (addrs, state, topic) = (addrs.clone(), state.clone(), topic.clone());
                tokio::spawn(serve(s, id as i32, addrs, state, topic, partitions));
            }
        });
    }
    Cluster { addrs, state }
}

fn batch_at(base: i64, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            sequence: i as i32 - 1, // offset - sequence constant: one batch
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(vec![7u8; 10])),
            headers: IndexMap::new(),
        })
        .collect();
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    b.freeze()
}

async fn serve(
    mut s: TcpStream,
    me: i32,
    addrs: Vec<String>,
    state: Arc<Mutex<State>>,
    topic: String,
    partitions: i32,
) {
    loop {
        let Ok(n) = s.read_i32().await else { return };
        let mut buf = vec![0u8; n as usize];
        if s.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut b = Bytes::from(buf);
        let key = i16::from_be_bytes([b[0], b[1]]);
        let version = i16::from_be_bytes([b[2], b[3]]);
        let api = ApiKey::try_from(key).expect("known api");
        let h = RequestHeader::decode(&mut b, api.request_header_version(version)).expect("hdr");
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(h.correlation_id)
            .encode(&mut body, api.response_header_version(version))
            .expect("resp header");
        match api {
            ApiKey::ApiVersions => {
                let mut r = ApiVersionsResponse::default();
                for (k, max) in [
                    (ApiKey::Produce, 9),
                    (ApiKey::Fetch, 12),
                    (ApiKey::ListOffsets, 7),
                    (ApiKey::Metadata, 12),
                    (ApiKey::ApiVersions, 3),
                ] {
                    let mut v = api_versions_response::ApiVersion::default();
                    v.api_key = k as i16;
                    v.max_version = max;
                    r.api_keys.push(v);
                }
                r.encode(&mut body, version).expect("enc");
            }
            ApiKey::Metadata => {
                let mut r = MetadataResponse::default();
                for (i, a) in addrs.iter().enumerate() {
                    let (host, port) = a.rsplit_once(':').expect("host:port");
                    let mut br = metadata_response::MetadataResponseBroker::default();
                    br.node_id = BrokerId(i as i32);
                    br.host = StrBytes::from_string(host.to_string());
                    br.port = port.parse().expect("port");
                    r.brokers.push(br);
                }
                let mut t = metadata_response::MetadataResponseTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(topic.clone())));
                for p in 0..partitions {
                    let mut mp = metadata_response::MetadataResponsePartition::default();
                    mp.partition_index = p;
                    mp.leader_id = BrokerId(p % addrs.len() as i32);
                    t.partitions.push(mp);
                }
                r.topics.push(t);
                r.encode(&mut body, version).expect("enc");
            }
            ApiKey::Produce => {
                let req = ProduceRequest::decode(&mut b, version).expect("produce");
                let mut r = ProduceResponse::default();
                for t in &req.topic_data {
                    let mut tr = produce_response::TopicProduceResponse::default();
                    tr.name = t.name.clone();
                    for p in &t.partition_data {
                        let len = p.records.as_ref().map(|r| r.len()).unwrap_or(0);
                        state
                            .lock()
                            .expect("state")
                            .produced
                            .push((me, p.index, len));
                        let mut pr = produce_response::PartitionProduceResponse::default();
                        pr.index = p.index;
                        // Partitions led elsewhere are refused, as a real broker would.
                        if p.index % addrs.len() as i32 != me {
                            pr.error_code = 6; // NOT_LEADER_OR_FOLLOWER
                        }
                        tr.partition_responses.push(pr);
                    }
                    r.responses.push(tr);
                }
                if req.acks == 0 {
                    continue;
                }
                r.encode(&mut body, version).expect("enc");
            }
            ApiKey::ListOffsets => {
                let req = ListOffsetsRequest::decode(&mut b, version).expect("list offsets");
                let calls = {
                    let mut st = state.lock().expect("state");
                    st.list_offsets_calls += 1;
                    st.list_offsets_calls
                };
                let mut r = ListOffsetsResponse::default();
                for t in &req.topics {
                    let mut tr = list_offsets_response::ListOffsetsTopicResponse::default();
                    tr.name = t.name.clone();
                    for p in &t.partitions {
                        let mut pr = list_offsets_response::ListOffsetsPartitionResponse::default();
                        pr.partition_index = p.partition_index;
                        // First answer 0; later ones (after out-of-range) 100.
                        pr.offset = if calls <= addrs.len() { 0 } else { 100 };
                        tr.partitions.push(pr);
                    }
                    r.topics.push(tr);
                }
                r.encode(&mut body, version).expect("enc");
            }
            ApiKey::Fetch => {
                let req = FetchRequest::decode(&mut b, version).expect("fetch");
                let mut r = FetchResponse::default();
                for t in &req.topics {
                    let mut tr = fetch_response::FetchableTopicResponse::default();
                    tr.topic = t.topic.clone();
                    for p in &t.partitions {
                        state.lock().expect("state").fetches.push((
                            me,
                            p.partition,
                            p.fetch_offset,
                        ));
                        let mut pr = fetch_response::PartitionData::default();
                        pr.partition_index = p.partition;
                        match p.fetch_offset {
                            0 => pr.error_code = 1, // OFFSET_OUT_OF_RANGE
                            100 => {
                                // Three records and a partial batch after them.
                                let mut blob = BytesMut::from(&batch_at(100, 3)[..]);
                                let next = batch_at(103, 2);
                                blob.put_slice(&next[..next.len() - 5]);
                                pr.records = Some(blob.freeze());
                            }
                            _ => pr.records = Some(Bytes::new()),
                        }
                        tr.partitions.push(pr);
                    }
                    r.responses.push(tr);
                }
                r.encode(&mut body, version).expect("enc");
            }
            other => panic!("fake broker: unexpected {other:?}"),
        }
        let mut out = BytesMut::new();
        out.put_i32(body.len() as i32);
        out.put_slice(&body);
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}
