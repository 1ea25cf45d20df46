//! Reads: by offset (cache, then index + bounded disk scan), by timestamp, and long-poll waits.

use bytes::Bytes;
use futures::channel::oneshot;

use super::{PartitionLog, ReadChunks, READ_BYTES_MIN, RECOVERY_BATCH_BYTES_MAX};
use crate::storage::batch::{self, BatchHeader, BATCH_HEADER_LEN};
use crate::storage::compression;
use crate::storage::segment;
use crate::storage::StorageError;

/// (base offset, next offset, start position, flushed bytes, file) of a segment to read.
type SegmentRead = (
    i64,
    i64,
    u64,
    u64,
    Option<std::rc::Rc<dyn crate::storage::io::SegmentFile>>,
);

impl PartitionLog {
    /// Whole batches from the one containing `offset`, up to `max_bytes` (the first batch is
    /// returned whole even if larger), never past the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadChunks, StorageError> {
        let (start, hw, end) = {
            let st = self.st.borrow();
            (st.log_start, st.high_watermark, st.log_end)
        };
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        if offset >= hw {
            return Ok(ReadChunks::default());
        }
        if let Some(hit) = self.read_cache(offset, max_bytes, hw) {
            return Ok(hit);
        }
        // From disk: every batch below the high watermark is flushed.
        let segs: Vec<SegmentRead> = {
            let st = self.st.borrow();
            let first = st
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            st.segments[first..]
                .iter()
                .map(|s| {
                    (
                        s.base_offset,
                        s.next_offset,
                        s.position_for(offset),
                        s.flushed_size,
                        s.file.clone(),
                    )
                })
                .collect()
        };
        for (_, next_offset, pos, flushed, file) in segs {
            if next_offset <= offset {
                continue;
            }
            let Some(file) = file else { continue };
            let out = read_segment(&*file, pos, flushed, offset, hw, max_bytes).await?;
            if !out.chunks.is_empty() {
                return Ok(out);
            }
        }
        Ok(ReadChunks::default())
    }

    fn read_cache(&self, offset: i64, max_bytes: usize, hw: i64) -> Option<ReadChunks> {
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        let front = st.cache.front()?;
        if front.base > offset {
            return None;
        }
        let budget = &self.env.cache;
        let i = st.cache.partition_point(|e| e.last < offset);
        let mut out = ReadChunks::default();
        for e in st.cache.range_mut(i..) {
            if e.base >= hw || (!out.chunks.is_empty() && out.bytes + e.bytes.len() > max_bytes) {
                break;
            }
            if !batch::has_base_offset(&e.bytes, e.base) {
                // The producer's bytes, staged without a copy: the first reader pays for the
                // one copy that carries the assigned offset, and later readers share it. The
                // receive buffer is released, so the entry now charges its own length.
                e.bytes = batch::with_base_offset(&e.bytes, e.base);
                let released = e.charged - e.bytes.len();
                e.charged = e.bytes.len();
                st.cache_bytes -= released;
                budget.used_bytes.set(budget.used_bytes.get() - released);
            }
            debug_assert!(
                batch::has_base_offset(&e.bytes, e.base),
                "cached batches leave with their assigned offset"
            );
            out.bytes += e.bytes.len();
            out.chunks.push(e.bytes.clone());
        }
        Some(out)
    }

    /// Resolves once the high watermark is above `offset` (or the log closes).
    pub async fn wait_for_data(&self, offset: i64) {
        if self.st.borrow().high_watermark > offset || self.closed.get() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.data_waiters.borrow_mut();
            // Waiters whose fetch already timed out are dropped here (bounded by fetches in flight).
            w.retain(|s| !s.is_canceled());
            w.push(tx);
        }
        let _ = rx.await;
    }

    /// First offset whose timestamp is >= `timestamp_ms`, with that timestamp. Record-exact,
    /// compressed batches included.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let (segs, start, hw) = {
            let st = self.st.borrow();
            let segs: Vec<_> = st
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= timestamp_ms)
                .map(|s| {
                    (
                        s.position_for_timestamp(timestamp_ms),
                        s.flushed_size,
                        s.file.clone(),
                    )
                })
                .collect();
            (segs, st.log_start, st.high_watermark)
        };
        for (pos, flushed, file) in segs {
            let Some(file) = file else { continue };
            let mut found: Option<(i64, i64)> = None;
            segment::scan(
                &*file,
                pos,
                flushed,
                -1,
                RECOVERY_BATCH_BYTES_MAX,
                segment::ScanReads::Lookup(READ_BYTES_MIN),
                &mut |h, bytes| {
                    if h.base_offset >= hw {
                        return false;
                    }
                    if h.last_offset() < start || h.max_timestamp < timestamp_ms {
                        return true;
                    }
                    found = first_record_at_or_after(h, bytes, timestamp_ms)
                        .map(|(o, t)| (o.max(start), t));
                    found.is_none()
                },
            )
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Largest timestamp in the log and the offset of the record carrying it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let st = self.st.borrow();
        st.segments
            .iter()
            .filter(|s| {
                s.max_timestamp >= 0
                    && s.max_timestamp_offset >= st.log_start
                    && s.max_timestamp_offset < st.high_watermark
            })
            .max_by_key(|s| s.max_timestamp)
            .map(|s| (s.max_timestamp, s.max_timestamp_offset))
    }

    /// Calls `f` for each stored batch header from the batch containing `from_offset` on.
    pub async fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        let segs: Vec<_> = {
            let st = self.st.borrow();
            st.segments
                .iter()
                .filter(|s| s.next_offset > from_offset)
                .map(|s| (s.position_for(from_offset), s.flushed_size, s.file.clone()))
                .collect()
        };
        for (pos, flushed, file) in segs {
            let Some(file) = file else { continue };
            segment::scan(
                &*file,
                pos,
                flushed,
                -1,
                RECOVERY_BATCH_BYTES_MAX,
                segment::ScanReads::Sequential,
                &mut |h, _| {
                    if h.last_offset() >= from_offset {
                        f(h);
                    }
                    true
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// Reads whole batches from one segment, starting at `pos`, skipping those before `offset`.
async fn read_segment(
    file: &dyn crate::storage::io::SegmentFile,
    mut pos: u64,
    end: u64,
    offset: i64,
    hw: i64,
    max_bytes: usize,
) -> Result<ReadChunks, StorageError> {
    let mut out = ReadChunks::default();
    let mut buf = Bytes::new();
    let mut buf_pos = pos;
    while pos < end {
        let at = (pos - buf_pos) as usize;
        let header = batch::peek_header(&buf, at);
        let need = header
            .map(|h| h.size_bytes.max(BATCH_HEADER_LEN))
            .unwrap_or(BATCH_HEADER_LEN);
        if need > RECOVERY_BATCH_BYTES_MAX {
            return Err(StorageError::CorruptMessage(format!(
                "batch length {need} at position {pos}"
            )));
        }
        if at + need > buf.len() {
            let want = need
                .max(max_bytes.saturating_sub(out.bytes))
                .max(READ_BYTES_MIN)
                .min((end - pos) as usize);
            if want < need {
                break; // the rest is not flushed yet
            }
            buf = file.read(pos, want).await?;
            buf_pos = pos;
            if buf.len() < need {
                break;
            }
            continue;
        }
        let h = header.expect("checked above");
        if h.base_offset >= hw {
            break;
        }
        if h.last_offset() >= offset {
            if !out.chunks.is_empty() && out.bytes + h.size_bytes > max_bytes {
                break;
            }
            out.bytes += h.size_bytes;
            out.chunks.push(buf.slice(at..at + h.size_bytes));
            if out.bytes >= max_bytes {
                break;
            }
        }
        pos += h.size_bytes as u64;
    }
    Ok(out)
}

fn read_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
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

/// Bound on one compressed batch's records when ListOffsets looks inside it; a batch that
/// inflates past this is answered at batch granularity instead.
const TIMESTAMP_SCAN_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// The first record in `bytes` (one batch) with timestamp >= `ts`: (offset, timestamp).
/// Compressed batches are inflated (bounded) so the answer is record-exact, as Kafka's is.
fn first_record_at_or_after(h: &BatchHeader, bytes: &[u8], ts: i64) -> Option<(i64, i64)> {
    let batch_level = Some((h.base_offset, h.max_timestamp));
    if h.attributes & batch::ATTR_TIMESTAMP_LOG_APPEND != 0 {
        return batch_level;
    }
    let inflated;
    let records: &[u8] = if h.compression() == compression::CODEC_NONE {
        bytes.get(BATCH_HEADER_LEN..)?
    } else {
        match compression::decompress(
            h.compression(),
            bytes.get(BATCH_HEADER_LEN..)?,
            TIMESTAMP_SCAN_DECOMPRESSED_BYTES_MAX,
        ) {
            Ok(v) => {
                inflated = v;
                &inflated
            }
            Err(_) => return batch_level,
        }
    };
    let mut at = 0usize;
    for _ in 0..h.records_count {
        let Some(len) = read_varint(records, &mut at) else {
            return batch_level;
        };
        let record_start = at;
        at += 1; // attributes
        let (Some(ts_delta), Some(offset_delta)) =
            (read_varint(records, &mut at), read_varint(records, &mut at))
        else {
            return batch_level;
        };
        if h.base_timestamp + ts_delta >= ts {
            return Some((h.base_offset + offset_delta, h.base_timestamp + ts_delta));
        }
        let Some(next) = usize::try_from(len)
            .ok()
            .and_then(|l| record_start.checked_add(l))
        else {
            return batch_level;
        };
        at = next;
    }
    batch_level
}
