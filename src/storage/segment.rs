//! One segment: a `.log` file of record batches plus its sparse `.index` (relative offset ->
//! file position) and `.timeindex` (max timestamp -> relative offset), kept in memory and
//! written to disk when the segment is sealed and at clean shutdown.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use zerocopy::byteorder::big_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::batch::BatchHeader;
use super::io::SegmentFile;

pub use super::scan::{scan, ScanOutcome, ScanReads};

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct IndexEntry {
    pub relative_offset: U32,
    pub position: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct TimeIndexEntry {
    pub timestamp: I64,
    pub relative_offset: U32,
}

pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// A batch appended but not yet written: the producer's bytes, untouched, and the base offset
/// assigned to it. The offset is written over the batch's first 8 bytes on the way into the
/// disk buffer (`offset_prefix`), so staging copies nothing; the CRC does not cover them.
#[derive(Debug, Clone)]
pub struct StagedBatch {
    pub bytes: Bytes,
    pub base_offset: i64,
    /// The offset after this batch.
    pub end_offset: i64,
}

impl StagedBatch {
    /// The 8 bytes that replace the batch's own base offset on disk.
    pub fn offset_prefix(&self) -> [u8; 8] {
        self.base_offset.to_be_bytes()
    }
}

pub struct Segment {
    pub base_offset: i64,
    /// Opened lazily by the flusher, so rolling a segment inside a synchronous append needs no I/O.
    pub file: Option<Rc<dyn SegmentFile>>,
    /// Logical bytes, including those not yet written.
    pub size: u64,
    /// Bytes durable on disk.
    pub flushed_size: u64,
    /// Bytes reserved on disk (preallocated); writes below it do not change the file size.
    pub allocated: u64,
    /// File blocks below this hold data or zeros the zeroer wrote (see `log/zero.rs`): a data
    /// write below it lands on written blocks and commits no extent conversion at fdatasync.
    pub zeroed_end: u64,
    /// The bytes of the last, partial page on disk: rewritten (with what follows) at the next flush.
    pub tail_page: Vec<u8>,
    /// Batches not yet written, in order, as the producer sent them (see `StagedBatch`).
    pub unflushed: Vec<StagedBatch>,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    pub index: Vec<(u32, u32)>,
    pub time_index: Vec<(i64, u32)>,
    bytes_since_index: u64,
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
    pub created_ms: i64,
    /// No more appends (rolled).
    pub sealed: bool,
    /// Sealed, fully written, trimmed to its logical size and its indexes saved.
    pub finalized: bool,
}

impl Segment {
    pub fn new(base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file: None,
            size: 0,
            flushed_size: 0,
            allocated: 0,
            zeroed_end: 0,
            tail_page: Vec::new(),
            unflushed: Vec::new(),
            next_offset: base_offset,
            index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
            max_timestamp: -1,
            max_timestamp_offset: -1,
            created_ms: now_ms,
            sealed: false,
            finalized: false,
        }
    }

    pub fn log_path(&self, dir: &Path) -> PathBuf {
        dir.join(file_name(self.base_offset, "log"))
    }
    pub fn index_path(&self, dir: &Path) -> PathBuf {
        dir.join(file_name(self.base_offset, "index"))
    }
    pub fn time_index_path(&self, dir: &Path) -> PathBuf {
        dir.join(file_name(self.base_offset, "timeindex"))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Accounts for a batch stored at `position` (header has its assigned base offset).
    pub fn note_batch(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u32) {
        debug_assert!(
            h.base_offset >= self.next_offset,
            "batches are appended in offset order"
        );
        let rel = (h.base_offset - self.base_offset) as u32;
        if self.index.is_empty() || self.bytes_since_index >= index_interval_bytes as u64 {
            self.index.push((rel, position as u32));
            if h.max_timestamp > self.time_index.last().map(|t| t.0).unwrap_or(-1) {
                self.time_index.push((h.max_timestamp, rel));
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size_bytes as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_offset = h.last_offset();
        }
        self.next_offset = h.last_offset() + 1;
    }

    /// File position to start scanning from for `offset`.
    pub fn position_for(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let i = self.index.partition_point(|e| e.0 <= rel);
        if i == 0 {
            0
        } else {
            self.index[i - 1].1 as u64
        }
    }

    /// File position to start scanning from for the first batch with max timestamp >= `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.time_index.partition_point(|e| e.0 < ts);
        if i == 0 {
            0
        } else {
            self.position_for(self.base_offset + self.time_index[i - 1].1 as i64)
        }
    }

    pub fn index_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.index.len() * 8);
        for (rel, pos) in &self.index {
            out.extend_from_slice(
                IndexEntry {
                    relative_offset: (*rel).into(),
                    position: (*pos).into(),
                }
                .as_bytes(),
            );
        }
        out
    }

    pub fn time_index_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.time_index.len() * 12);
        for (ts, rel) in &self.time_index {
            out.extend_from_slice(
                TimeIndexEntry {
                    timestamp: (*ts).into(),
                    relative_offset: (*rel).into(),
                }
                .as_bytes(),
            );
        }
        out
    }

    /// Loads saved index files; `false` if they are missing or inconsistent (then rebuild).
    pub fn load_indexes(&mut self, index: &[u8], time_index: &[u8]) -> bool {
        let Ok(entries) = <[IndexEntry]>::ref_from_bytes(index) else {
            return false;
        };
        let Ok(times) = <[TimeIndexEntry]>::ref_from_bytes(time_index) else {
            return false;
        };
        let idx: Vec<(u32, u32)> = entries
            .iter()
            .map(|e| (e.relative_offset.get(), e.position.get()))
            .collect();
        let tix: Vec<(i64, u32)> = times
            .iter()
            .map(|e| (e.timestamp.get(), e.relative_offset.get()))
            .collect();
        let monotonic = idx.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && tix.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && idx.last().is_none_or(|e| (e.1 as u64) < self.size.max(1))
            && (idx.is_empty() == (self.size == 0));
        if !monotonic {
            return false;
        }
        self.index = idx;
        self.time_index = tix;
        true
    }
}
