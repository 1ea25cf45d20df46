//! Kafka RecordBatch v2 headers: parsing and validation of produced bytes.
//!
//! Layout (big endian), 61 bytes before the records:
//! base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic i8 | crc u32 |
//! attributes i16 | last_offset_delta i32 | base_timestamp i64 | max_timestamp i64 |
//! producer_id i64 | producer_epoch i16 | base_sequence i32 | records_count i32
//! The CRC32C covers everything from `attributes` to the end of the batch, so rewriting
//! `base_offset` (and `partition_leader_epoch`) keeps it valid.

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use bytes::{Bytes, BytesMut};

use super::StorageError;

/// Bytes before `batch_length` counts: base_offset + batch_length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the first byte covered by the CRC.
pub const CRC_START: usize = 21;
pub const MAGIC_V2: i8 = 2;

/// Attribute bits.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_LOG_APPEND: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

/// On-disk / on-wire header, read with zerocopy.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct RawBatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<RawBatchHeader>() == BATCH_HEADER_LEN);

/// Decoded header of one batch plus where it sits in the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Position of the batch in the buffer it came from.
    pub position: usize,
    /// Whole batch size in bytes (LOG_OVERHEAD + batch_length).
    pub size_bytes: usize,
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence number of the last record (sequences wrap at i32::MAX as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Reads the header at `buf[pos..]` without checking the CRC. `None` if fewer than
/// `BATCH_HEADER_LEN` bytes remain.
pub fn peek_header(buf: &[u8], pos: usize) -> Option<BatchHeader> {
    let raw = RawBatchHeader::read_from_prefix(buf.get(pos..)?).ok()?.0;
    let batch_length = raw.batch_length.get();
    Some(BatchHeader {
        position: pos,
        size_bytes: LOG_OVERHEAD + batch_length.max(0) as usize,
        base_offset: raw.base_offset.get(),
        partition_leader_epoch: raw.partition_leader_epoch.get(),
        crc: raw.crc.get(),
        attributes: raw.attributes.get(),
        last_offset_delta: raw.last_offset_delta.get(),
        base_timestamp: raw.base_timestamp.get(),
        max_timestamp: raw.max_timestamp.get(),
        producer_id: raw.producer_id.get(),
        producer_epoch: raw.producer_epoch.get(),
        base_sequence: raw.base_sequence.get(),
        records_count: raw.records_count.get(),
    })
}

/// Validates one batch at `buf[pos..]`: magic, length bounds and CRC32C.
pub fn check_batch(
    buf: &[u8],
    pos: usize,
    max_batch_bytes: usize,
) -> Result<BatchHeader, StorageError> {
    let remaining = buf.len().saturating_sub(pos);
    if remaining < BATCH_HEADER_LEN {
        return Err(StorageError::CorruptMessage(format!(
            "truncated batch header: {remaining} bytes"
        )));
    }
    let magic = buf[pos + 16] as i8;
    if magic != MAGIC_V2 {
        return Err(StorageError::CorruptMessage(format!(
            "unsupported magic {magic}"
        )));
    }
    let h =
        peek_header(buf, pos).ok_or_else(|| StorageError::CorruptMessage("short header".into()))?;
    let batch_length = (h.size_bytes - LOG_OVERHEAD) as i64;
    if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(StorageError::CorruptMessage(format!(
            "batch length {batch_length} too small"
        )));
    }
    if h.size_bytes > max_batch_bytes {
        return Err(StorageError::MessageTooLarge(h.size_bytes));
    }
    if h.size_bytes > remaining {
        return Err(StorageError::CorruptMessage(format!(
            "batch length {} exceeds the {} bytes available",
            h.size_bytes, remaining
        )));
    }
    if h.last_offset_delta < 0 || h.records_count < 0 {
        return Err(StorageError::InvalidRecord(format!(
            "negative last_offset_delta {} or records count {}",
            h.last_offset_delta, h.records_count
        )));
    }
    if h.records_count == 0 {
        return Err(StorageError::InvalidRecord("empty batch".into()));
    }
    // Fresh produce has no compaction gaps: the last delta is count - 1 (Kafka checks this too).
    if h.last_offset_delta != h.records_count - 1 {
        return Err(StorageError::InvalidRecord(format!(
            "last_offset_delta {} does not match records count {}",
            h.last_offset_delta, h.records_count
        )));
    }
    let crc = crc32c::crc32c(&buf[pos + CRC_START..pos + h.size_bytes]);
    if crc != h.crc {
        return Err(StorageError::CorruptMessage(format!(
            "crc mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    Ok(h)
}

/// Validates every batch in a produce payload. An empty payload or trailing garbage is an error.
pub fn validate_batches(
    buf: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, StorageError> {
    if buf.is_empty() {
        return Err(StorageError::InvalidRecord("no record batches".into()));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let h = check_batch(buf, pos, max_batch_bytes)?;
        pos += h.size_bytes;
        out.push(h);
    }
    Ok(out)
}

/// Rewrites the base offset of the batch at `buf[pos..]`; the CRC does not cover it.
pub fn set_base_offset(buf: &mut [u8], pos: usize, base_offset: i64) {
    buf[pos..pos + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Whether `batch` (whole, at least its 8-byte base offset field) already says `base_offset`.
pub fn has_base_offset(batch: &[u8], base_offset: i64) -> bool {
    batch.get(..8) == Some(&base_offset.to_be_bytes()[..])
}

/// A copy of `batch` carrying `base_offset` (the CRC does not cover the field).
pub fn with_base_offset(batch: &[u8], base_offset: i64) -> Bytes {
    let mut out = BytesMut::from(batch);
    set_base_offset(&mut out, 0, base_offset);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn batch(records: i32, ts: i64) -> Vec<u8> {
        let body = vec![0u8; 10];
        let mut b = vec![0u8; BATCH_HEADER_LEN];
        b.extend_from_slice(&body);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[27..35].copy_from_slice(&ts.to_be_bytes());
        b[35..43].copy_from_slice(&ts.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips_and_corruption_is_caught() {
        let mut b = batch(3, 1000);
        let hs = validate_batches(&b, 1 << 20).expect("valid");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].records_count, 3);
        set_base_offset(&mut b, 0, 42);
        assert_eq!(
            validate_batches(&b, 1 << 20).expect("still valid")[0].base_offset,
            42
        );
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        let mut m = batch(1, 0);
        m[16] = 1;
        assert!(matches!(
            validate_batches(&m, 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        assert!(matches!(
            validate_batches(&batch(1, 0), 20),
            Err(StorageError::MessageTooLarge(_))
        ));
    }
}
