//! Kafka's `__consumer_offsets` record schemas (keys and values), so Kafka's tools could read
//! what we store: OffsetCommitKey (key version 0/1), GroupMetadataKey (key version 2),
//! OffsetCommitValue v0..=3 (we write v3) and GroupMetadataValue v0..=3 (we write v3).
//! A record with a null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key versions as Kafka writes them.
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only in value v1; -1 otherwise.
    pub expire_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct RecordError(&'static str);

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize) -> Result<(), RecordError> {
    if b.remaining() < n {
        Err(RecordError("truncated"))
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut Bytes) -> Result<i16, RecordError> {
    need(b, 2)?;
    Ok(b.get_i16())
}
fn get_i32(b: &mut Bytes) -> Result<i32, RecordError> {
    need(b, 4)?;
    Ok(b.get_i32())
}
fn get_i64(b: &mut Bytes) -> Result<i64, RecordError> {
    need(b, 8)?;
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut Bytes) -> Result<Option<String>, RecordError> {
    let len = get_i16(b)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize)?;
    let raw = b.split_to(len as usize);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| RecordError("string is not UTF-8"))
}

fn get_str(b: &mut Bytes) -> Result<String, RecordError> {
    get_nullable_str(b)?.ok_or(RecordError("null string"))
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_i32(b)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize)?;
    Ok(b.split_to(len as usize))
}

pub fn encode_key(k: &RecordKey) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    match k {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            b.put_i16(OFFSET_KEY_VERSION);
            put_str(&mut b, group);
            put_str(&mut b, topic);
            b.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            b.put_i16(GROUP_KEY_VERSION);
            put_str(&mut b, group);
        }
    }
    b.freeze()
}

/// Decodes a key; `Ok(None)` for key versions we do not know (Kafka's transaction or
/// KIP-848 records), which loading skips.
pub fn decode_key(mut b: Bytes) -> Result<Option<RecordKey>, RecordError> {
    match get_i16(&mut b)? {
        0 | 1 => Ok(Some(RecordKey::Offset {
            group: get_str(&mut b)?,
            topic: get_str(&mut b)?,
            partition: get_i32(&mut b)?,
        })),
        2 => Ok(Some(RecordKey::Group {
            group: get_str(&mut b)?,
        })),
        _ => Ok(None),
    }
}

pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + v.metadata.len());
    b.put_i16(OFFSET_VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn decode_offset_value(mut b: Bytes) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut b)?;
    if !(0..=3).contains(&version) {
        return Err(RecordError("unknown offset value version"));
    }
    let offset = get_i64(&mut b)?;
    let leader_epoch = if version >= 3 { get_i32(&mut b)? } else { -1 };
    let metadata = get_str(&mut b)?;
    let commit_timestamp = get_i64(&mut b)?;
    let expire_timestamp = if version == 1 { get_i64(&mut b)? } else { -1 };
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    b.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Members in one group value are bounded by what the record can hold; this caps a corrupt count.
const MEMBERS_DECODE_MAX: i32 = 1_000_000;

pub fn decode_group_value(mut b: Bytes) -> Result<GroupValue, RecordError> {
    let version = get_i16(&mut b)?;
    if !(0..=3).contains(&version) {
        return Err(RecordError("unknown group value version"));
    }
    let protocol_type = get_str(&mut b)?;
    let generation = get_i32(&mut b)?;
    let protocol = get_nullable_str(&mut b)?;
    let leader = get_nullable_str(&mut b)?;
    let state_timestamp = if version >= 2 { get_i64(&mut b)? } else { -1 };
    let n = get_i32(&mut b)?;
    if !(0..=MEMBERS_DECODE_MAX).contains(&n) {
        return Err(RecordError("bad member count"));
    }
    let mut members = Vec::new();
    for _ in 0..n {
        let member_id = get_str(&mut b)?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut b)?
        } else {
            None
        };
        let client_id = get_str(&mut b)?;
        let client_host = get_str(&mut b)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut b)? } else { -1 };
        let session_timeout_ms = get_i32(&mut b)?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut b)?,
            assignment: get_bytes(&mut b)?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// The topics a consumer-protocol subscription names (ConsumerProtocolSubscription: version,
/// topics, ...). Unparseable metadata names none.
pub fn subscribed_topics(mut b: Bytes) -> Vec<String> {
    let parse = |b: &mut Bytes| -> Result<Vec<String>, RecordError> {
        let _version = get_i16(b)?;
        let n = get_i32(b)?;
        let mut out = Vec::new();
        for _ in 0..n.clamp(0, MEMBERS_DECODE_MAX) {
            out.push(get_str(b)?);
        }
        Ok(out)
    };
    parse(&mut b).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(decode_key(encode_key(&k)).expect("decode"), Some(k));
        let k = RecordKey::Group { group: "g2".into() };
        assert_eq!(decode_key(encode_key(&k)).expect("decode"), Some(k));
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1000,
            expire_timestamp: -1,
        };
        assert_eq!(decode_offset_value(encode_offset_value(&v)).expect("v"), v);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 99,
            members: vec![MemberValue {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(encode_group_value(&g)).expect("g"), g);
        assert!(decode_group_value(Bytes::from_static(&[0, 3, 0])).is_err());
        assert_eq!(decode_key(Bytes::from_static(&[0, 9])).expect("k"), None);
    }

    #[test]
    fn offset_value_v1_has_expire_timestamp() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(10);
        put_str(&mut b, "");
        b.put_i64(5);
        b.put_i64(6);
        let v = decode_offset_value(b.freeze()).expect("v1");
        assert_eq!(
            (v.offset, v.commit_timestamp, v.expire_timestamp),
            (10, 5, 6)
        );
    }
}
