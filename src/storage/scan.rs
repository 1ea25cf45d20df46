//! Scanning a segment file batch by batch: length, magic, CRC32C and offset continuity checked,
//! stopping at the first invalid byte (recovery, index rebuilds, lookups by offset or time).

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::batch::{check_batch, peek_header, BatchHeader, BATCH_HEADER_LEN};
use super::io::{align_down, SegmentFile, READS_IN_FLIGHT_MAX, READ_PIECE_BYTES};
use super::StorageError;

/// How a scan reads its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanReads {
    /// One read of at least this many bytes whenever the scan needs more: a lookup that stops
    /// after a few batches reads little.
    Lookup(usize),
    /// The whole range as 1 MiB reads with `READS_IN_FLIGHT_MAX` in flight, issued ahead of the
    /// checks, so the disk always has the queue its read ceiling is measured with (checking a
    /// chunk between whole-chunk reads left the disk idle and its queue draining at every
    /// chunk). For scans that read to the end: recovery, producer-state rebuilds.
    Sequential,
}

/// Result of scanning a segment file.
pub struct ScanOutcome {
    /// End of the last valid batch.
    pub valid_bytes: u64,
    /// Offset after the last valid batch.
    pub next_offset: i64,
    /// Why scanning stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

type Pieces<'a> = Pin<Box<dyn Stream<Item = io::Result<(usize, Bytes)>> + 'a>>;

/// The scan's view of the file: `buf` holds the bytes from `buf_start` on.
struct Window<'a> {
    file: &'a dyn SegmentFile,
    end: u64,
    buf: Bytes,
    buf_start: u64,
    /// `Sequential`: reads in flight, each yielding (bytes asked, bytes read) in file order, and
    /// what is left of the last one taken.
    pieces: Option<Pieces<'a>>,
    rest: Bytes,
    lookup_bytes: usize,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn SegmentFile, from_pos: u64, end: u64, reads: ScanReads) -> Window<'a> {
        let (pieces, lookup_bytes) = match reads {
            ScanReads::Lookup(bytes) => (None, bytes),
            ScanReads::Sequential => {
                // Pieces on 1 MiB boundaries of the file (the first may start mid-piece).
                let first = align_down(from_pos);
                let piece = READ_PIECE_BYTES as u64;
                let count = end.saturating_sub(first).div_ceil(piece);
                let reads = futures::stream::iter((0..count).map(move |i| {
                    let at = (first + i * piece).max(from_pos);
                    let want = ((first + (i + 1) * piece).min(end) - at) as usize;
                    async move { file.read(at, want).await.map(|b| (want, b)) }
                }))
                .buffered(READS_IN_FLIGHT_MAX);
                let pieces: Pieces<'a> = Box::pin(reads);
                (Some(pieces), 0)
            }
        };
        Window {
            file,
            end,
            buf: Bytes::new(),
            buf_start: from_pos,
            pieces,
            rest: Bytes::new(),
            lookup_bytes,
        }
    }

    /// Makes `buf` hold at least `need` bytes at `pos` (the scan only moves forward) if the
    /// file has them before `end`; fewer means the file ends first.
    async fn fill(&mut self, pos: u64, need: usize) -> io::Result<()> {
        debug_assert!(pos >= self.buf_start, "scans move forward");
        let at = (pos - self.buf_start) as usize;
        if at + need <= self.buf.len() {
            return Ok(());
        }
        if self.pieces.is_none() {
            let want = need.max(self.lookup_bytes).min((self.end - pos) as usize);
            if want < need {
                // Past `end`: nothing to read.
                self.buf = self.buf.slice(at.min(self.buf.len())..);
                self.buf_start = pos;
                return Ok(());
            }
            self.buf = self.file.read(pos, want).await?;
            self.buf_start = pos;
            return Ok(());
        }
        let have = self.buf.slice(at.min(self.buf.len())..);
        self.buf_start = pos;
        // Only a batch straddling pieces is copied, and only its own bytes.
        let mut joined: Option<BytesMut> = None;
        loop {
            let next = if !self.rest.is_empty() {
                std::mem::take(&mut self.rest)
            } else {
                match self.next_piece().await? {
                    Some(p) => p,
                    None => {
                        self.buf = joined.map(BytesMut::freeze).unwrap_or(have);
                        return Ok(());
                    }
                }
            };
            if joined.is_none() && have.is_empty() && next.len() >= need {
                self.buf = next;
                return Ok(());
            }
            let j = joined.get_or_insert_with(|| {
                let mut j = BytesMut::with_capacity(need);
                j.extend_from_slice(&have);
                j
            });
            let take = (need - j.len()).min(next.len());
            j.extend_from_slice(&next[..take]);
            self.rest = next.slice(take..);
            if j.len() >= need {
                self.buf = joined.take().map(BytesMut::freeze).unwrap_or_default();
                return Ok(());
            }
        }
    }

    /// The next piece in file order; `None` at the end (a short piece is the file's end).
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let Some(pieces) = self.pieces.as_mut() else {
            return Ok(None);
        };
        match pieces.next().await {
            Some(Ok((want, bytes))) => {
                if bytes.len() < want {
                    self.pieces = None;
                }
                Ok(Some(bytes))
            }
            Some(Err(e)) => Err(e),
            None => {
                self.pieces = None;
                Ok(None)
            }
        }
    }

    /// The bytes at `pos` held now.
    fn at(&self, pos: u64) -> usize {
        (pos - self.buf_start) as usize
    }
}

/// Reads `file` from `from_pos` to `end`, checking every batch (length, magic, CRC, offsets
/// continuing from `expected_offset`, any if negative), and calls `f` with each valid header
/// (position relative to the file) and the batch's bytes until it returns false. Stops at the
/// first invalid byte.
pub async fn scan(
    file: &dyn SegmentFile,
    from_pos: u64,
    end: u64,
    mut expected_offset: i64,
    max_batch_bytes: usize,
    reads: ScanReads,
    f: &mut dyn FnMut(&BatchHeader, &Bytes) -> bool,
) -> Result<ScanOutcome, StorageError> {
    let mut pos = from_pos;
    let mut window = Window::new(file, from_pos, end, reads);
    let stop = |pos: u64, next_offset: i64, why: Option<String>| ScanOutcome {
        valid_bytes: pos,
        next_offset,
        stopped: why,
    };
    loop {
        if pos >= end {
            return Ok(stop(pos, expected_offset, None));
        }
        // A header, then the whole batch, in the window.
        window.fill(pos, BATCH_HEADER_LEN).await?;
        let need = match peek_header(&window.buf, window.at(pos)) {
            Some(h) if h.size_bytes > max_batch_bytes => {
                let why = format!("impossible batch length {} at position {pos}", h.size_bytes);
                return Ok(stop(pos, expected_offset, Some(why)));
            }
            Some(h) => h.size_bytes.max(BATCH_HEADER_LEN),
            None => {
                let why = format!("truncated batch at position {pos}");
                return Ok(stop(pos, expected_offset, Some(why)));
            }
        };
        window.fill(pos, need).await?;
        let in_buf = window.at(pos);
        if in_buf + need > window.buf.len() {
            let why = format!("truncated batch at position {pos}");
            return Ok(stop(pos, expected_offset, Some(why)));
        }
        match check_batch(&window.buf, in_buf, max_batch_bytes.max(BATCH_HEADER_LEN)) {
            Ok(h)
                if h.base_offset == expected_offset
                    || (expected_offset < 0 && h.base_offset >= 0) =>
            {
                let mut h = h;
                h.position = pos as usize;
                let more = f(&h, &window.buf.slice(in_buf..in_buf + h.size_bytes));
                expected_offset = h.last_offset() + 1;
                pos += h.size_bytes as u64;
                if !more {
                    return Ok(stop(pos, expected_offset, None));
                }
            }
            Ok(h) => {
                let why = format!(
                    "batch at position {pos} has offset {} but {expected_offset} was expected",
                    h.base_offset
                );
                return Ok(stop(pos, expected_offset, Some(why)));
            }
            Err(e) => {
                let why = format!("invalid batch at position {pos}: {e}");
                return Ok(stop(pos, expected_offset, Some(why)));
            }
        }
    }
}
