//! Fetch response framing, versions 4..=11 (non-flexible). Stored batch bytes are not copied:
//! the response is a list of `Bytes` where every records field is the stored chunks themselves,
//! preceded by small encoded pieces. Sent with one vectored write.

use bytes::{BufMut, Bytes, BytesMut};

pub const FETCH_VERSION_MIN: i16 = 4;
pub const FETCH_VERSION_MAX: i16 = 11;

#[derive(Debug, Clone, Default)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct PartitionData {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// None encodes a null array (no transactional data).
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
    pub preferred_read_replica: i32,
    /// Whole stored batches, sent as they are.
    pub records: Vec<Bytes>,
}

impl PartitionData {
    pub fn records_len(&self) -> usize {
        self.records.iter().map(|b| b.len()).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct TopicData {
    pub topic: String,
    pub partitions: Vec<PartitionData>,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResponseData {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub responses: Vec<TopicData>,
}

/// Encodes the response body (after the response header) as a list of chunks. `head` is the
/// already-encoded response header; it is prepended to the first chunk to save an iovec.
pub fn encode(resp: &FetchResponseData, version: i16, head: &[u8]) -> Vec<Bytes> {
    debug_assert!(
        (FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version),
        "handler only accepts fetch versions it can frame"
    );
    let mut out = Vec::new();
    let mut cur = BytesMut::with_capacity(256);
    cur.put_slice(head);
    cur.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        cur.put_i16(resp.error_code);
        cur.put_i32(resp.session_id);
    }
    cur.put_i32(resp.responses.len() as i32);
    for t in &resp.responses {
        cur.put_i16(t.topic.len() as i16);
        cur.put_slice(t.topic.as_bytes());
        cur.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            cur.put_i32(p.partition_index);
            cur.put_i16(p.error_code);
            cur.put_i64(p.high_watermark);
            cur.put_i64(p.last_stable_offset);
            if version >= 5 {
                cur.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                None => cur.put_i32(-1),
                Some(list) => {
                    cur.put_i32(list.len() as i32);
                    for a in list {
                        cur.put_i64(a.producer_id);
                        cur.put_i64(a.first_offset);
                    }
                }
            }
            if version >= 11 {
                cur.put_i32(p.preferred_read_replica);
            }
            let len = p.records_len();
            cur.put_i32(len as i32);
            if len > 0 {
                out.push(cur.split().freeze());
                out.extend(p.records.iter().filter(|b| !b.is_empty()).cloned());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn hand_framed_response_decodes_with_the_codec() {
        let batch_a = Bytes::from_static(b"AAAAAAAAAA");
        let batch_b = Bytes::from_static(b"BBBB");
        let resp = FetchResponseData {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            responses: vec![TopicData {
                topic: "t".into(),
                partitions: vec![
                    PartitionData {
                        partition_index: 0,
                        high_watermark: 7,
                        last_stable_offset: 7,
                        records: vec![batch_a.clone(), batch_b.clone()],
                        preferred_read_replica: -1,
                        ..Default::default()
                    },
                    PartitionData {
                        partition_index: 1,
                        error_code: 1,
                        high_watermark: -1,
                        ..Default::default()
                    },
                ],
            }],
        };
        for v in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let parts = encode(&resp, v, &[]);
            let mut all = BytesMut::new();
            for p in &parts {
                all.extend_from_slice(p);
            }
            let mut buf = all.freeze();
            let d = FetchResponse::decode(&mut buf, v).expect("decodes");
            assert_eq!(buf.remaining(), 0, "v{v}: trailing bytes");
            let p0 = &d.responses[0].partitions[0];
            assert_eq!(p0.high_watermark, 7);
            assert_eq!(p0.records.as_deref(), Some(&b"AAAAAAAAAABBBB"[..]));
            assert_eq!(d.responses[0].partitions[1].error_code, 1);
            // Records are not copied: the stored chunks are among the parts.
            assert!(parts.iter().any(|p| p.as_ptr() == batch_a.as_ptr()));
        }
    }
}
