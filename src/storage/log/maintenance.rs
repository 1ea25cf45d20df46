//! Background and administrative work: interval flushing, time-based rolls, retention,
//! DeleteRecords, truncation, flush, clean close and removal.

use std::time::Duration;

use super::{durable_policy, PartitionLog};
use crate::storage::io::align_down;
use crate::storage::offsets::LogStartOffset;
use crate::storage::segment::{self, Segment};
use crate::storage::StorageError;

/// Read size for lookups that scan a little of a segment.
const LOOKUP_CHUNK_BYTES: usize = super::READ_BYTES_MIN;

/// Poll interval while waiting for an in-flight flush to finish.
const FLUSH_WAIT_POLL: Duration = Duration::from_millis(1);

impl PartitionLog {
    /// Periodic work: interval flushes, time-based rolls and retention. Decisions use `now_ms`.
    pub async fn tick(&self, now_ms: i64) -> Result<(), StorageError> {
        if self.closed.get() {
            return Ok(());
        }
        let (flush_due, deletable) = {
            let mut st = self.st.borrow_mut();
            let flush_due = !durable_policy(&self.config)
                && self
                    .config
                    .flush_ms
                    .is_some_and(|ms| now_ms - st.last_flush_ms >= ms as i64)
                && st.segments.iter().any(|s| !s.unflushed.is_empty());
            let active = st.segments.last().expect("a log always has a segment");
            if !active.is_empty()
                && self.config.segment_ms >= 0
                && now_ms - active.created_ms >= self.config.segment_ms
            {
                st.roll_requested = true;
            }
            (flush_due, self.retention_victims(&st, now_ms))
        };
        if flush_due {
            self.st.borrow_mut().last_flush_ms = now_ms;
            self.ensure_flusher();
        }
        if deletable > 0 {
            self.delete_oldest_segments(deletable).await?;
        }
        Ok(())
    }

    /// How many of the oldest segments retention removes now (never the active one, never one
    /// still being written).
    fn retention_victims(&self, st: &super::State, now_ms: i64) -> usize {
        let closed = st
            .segments
            .iter()
            .take_while(|s| s.finalized)
            .count()
            .min(st.segments.len() - 1);
        // A segment goes only once all of it is below the high watermark, so the log start
        // never passes it (a round can finalize a segment before it moves the watermark).
        let closed = st.segments[..closed]
            .iter()
            .take_while(|s| s.next_offset <= st.high_watermark)
            .count();
        let mut n = 0;
        if self.config.retention_ms >= 0 {
            while n < closed && st.segments[n].max_timestamp < now_ms - self.config.retention_ms {
                n += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut total: u64 = st.segments[n..].iter().map(|s| s.size).sum();
            while n < closed && total - st.segments[n].size >= self.config.retention_bytes as u64 {
                total -= st.segments[n].size;
                n += 1;
            }
        }
        n
    }

    async fn delete_oldest_segments(&self, n: usize) -> Result<(), StorageError> {
        let removed: Vec<Segment> = {
            let mut st = self.st.borrow_mut();
            let removed: Vec<Segment> = st.segments.drain(..n).collect();
            let next_base = st.segments[0].base_offset;
            st.log_start = st.log_start.max(next_base);
            let start = st.log_start;
            self.drop_cache_where(&mut st, |_, last| last < start);
            Self::check_invariants(&st);
            removed
        };
        for seg in removed {
            tracing::info!(dir = %self.dir.display(), segment = seg.base_offset, "retention deleted segment");
            self.retire_segment(seg).await?;
        }
        self.write_meta(false).await
    }

    /// Unlinks a segment's files (off the shard's thread: a large unlink is slow).
    pub(super) async fn remove_segment_files(&self, seg: &Segment) -> Result<(), StorageError> {
        self.env.io.remove_file(&seg.log_path(&self.dir)).await?;
        self.remove_index_files(seg).await
    }

    /// Unlinks a segment's `.index` and `.timeindex`.
    pub(super) async fn remove_index_files(&self, seg: &Segment) -> Result<(), StorageError> {
        self.env.io.remove_file(&seg.index_path(&self.dir)).await?;
        self.env
            .io
            .remove_file(&seg.time_index_path(&self.dir))
            .await?;
        Ok(())
    }

    /// DeleteRecords: moves the log start offset forward to `offset` (<= high watermark) and
    /// deletes the segments wholly below it.
    pub async fn delete_records_before(&self, offset: i64) -> Result<LogStartOffset, StorageError> {
        let n = {
            let mut st = self.st.borrow_mut();
            if offset < st.log_start || offset > st.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.high_watermark,
                });
            }
            st.log_start = offset;
            Self::check_invariants(&st);
            let closed = st
                .segments
                .iter()
                .take_while(|s| s.finalized)
                .count()
                .min(st.segments.len() - 1);
            st.segments[..closed]
                .iter()
                .take_while(|s| s.next_offset <= offset)
                .count()
        };
        if n > 0 {
            self.delete_oldest_segments(n).await?;
        } else {
            self.drop_cache_where(&mut self.st.borrow_mut(), |_, last| last < offset);
            self.write_meta(false).await?;
        }
        Ok(self.log_start_offset())
    }

    /// Waits for any in-flight flush, then writes everything staged.
    pub async fn flush(&self) -> Result<(), StorageError> {
        while self.flushing.get() {
            glommio::timer::sleep(FLUSH_WAIT_POLL).await;
        }
        self.flushing.set(true);
        self.flush_loop().await;
        self.flushing.set(false);
        if self.failed.get() {
            return Err(StorageError::Io(std::io::Error::other(
                "log failed after an I/O error",
            )));
        }
        Ok(())
    }

    /// Removes every record at or after `offset` (for replication): the batch containing
    /// `offset` goes whole, so the new log end is that batch's base offset (<= `offset`).
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.flush().await?;
        // No zero write may land past the cut while (or after) the file is trimmed.
        self.zero_hold.set(true);
        self.wait_for_zero_piece(None, 0, u64::MAX).await;
        let r = self.truncate_to_held(offset).await;
        self.zero_hold.set(false);
        r
    }

    async fn truncate_to_held(&self, offset: i64) -> Result<(), StorageError> {
        let mut dropped = Vec::new();
        let (file, seg_base, pos_hint, flushed) = {
            let mut st = self.st.borrow_mut();
            if offset >= st.log_end {
                return Ok(());
            }
            if offset < st.log_start {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.log_end,
                });
            }
            // Drop whole segments above the cut (keep at least one).
            while st.segments.len() > 1
                && st.segments.last().is_some_and(|s| s.base_offset >= offset)
            {
                dropped.push(st.segments.pop().expect("checked len"));
            }
            let seg = st.segments.last_mut().expect("a log always has a segment");
            // Its saved indexes go stale: a crash from here on must scan it.
            seg.sealed = false;
            seg.finalized = false;
            (
                seg.file.clone(),
                seg.base_offset,
                seg.position_for(offset),
                seg.flushed_size,
            )
        };
        for seg in &dropped {
            self.remove_segment_files(seg).await?;
        }
        self.write_meta(false).await?;
        // Find the first batch holding `offset` or later: the cut position and the new end.
        let (mut cut, mut new_end) = (pos_hint, seg_base);
        // Max timestamp of the kept batches scanned here (those before are covered by the
        // time index, as in Kafka: approximate below the last index entry).
        let mut kept_max_ts: (i64, i64) = (-1, -1);
        if let Some(f) = &file {
            let mut found = None;
            let outcome = segment::scan(
                &**f,
                pos_hint,
                flushed,
                -1,
                super::RECOVERY_BATCH_BYTES_MAX,
                segment::ScanReads::Lookup(LOOKUP_CHUNK_BYTES),
                &mut |h, _| {
                    if h.last_offset() >= offset {
                        found = Some((h.position as u64, h.base_offset));
                        false
                    } else {
                        if h.max_timestamp > kept_max_ts.0 {
                            kept_max_ts = (h.max_timestamp, h.last_offset());
                        }
                        true
                    }
                },
            )
            .await?;
            (cut, new_end) = match found {
                Some(at) => at,
                None if outcome.valid_bytes > pos_hint => {
                    (outcome.valid_bytes, outcome.next_offset)
                }
                None => (pos_hint, offset.max(seg_base)),
            };
            f.truncate(cut).await?;
            f.sync().await?;
        }
        let tail = match &file {
            Some(f) => f
                .read(align_down(cut), (cut - align_down(cut)) as usize)
                .await?
                .to_vec(),
            None => Vec::new(),
        };
        {
            let mut st = self.st.borrow_mut();
            let seg = st.segments.last_mut().expect("a log always has a segment");
            debug_assert_eq!(
                seg.base_offset, seg_base,
                "no segment changes while truncating"
            );
            let rel = (new_end - seg.base_offset) as u32;
            seg.index.retain(|e| e.0 < rel && (e.1 as u64) < cut);
            seg.time_index.retain(|e| e.1 < rel);
            let indexed = seg
                .time_index
                .last()
                .map(|t| (t.0, seg.base_offset + t.1 as i64))
                .unwrap_or((-1, -1));
            (seg.max_timestamp, seg.max_timestamp_offset) = indexed.max(kept_max_ts);
            seg.size = cut;
            seg.flushed_size = cut;
            seg.allocated = cut;
            seg.zeroed_end = cut;
            seg.tail_page = tail;
            seg.next_offset = new_end;
            st.log_end = new_end;
            st.written_end = st.written_end.min(new_end);
            st.high_watermark = st.high_watermark.min(new_end);
            // The cut batch may have straddled the log start.
            st.log_start = st.log_start.min(new_end);
            let end = st.log_end;
            self.drop_cache_where(&mut st, |_, last| last >= end);
            Self::check_invariants(&st);
        }
        self.write_meta(false).await
    }

    /// Flushes, saves the active segment's indexes and marks a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.replace(true) {
            return Ok(());
        }
        let r = self.flush().await;
        self.wake_readers();
        r?;
        let base = self
            .st
            .borrow()
            .segments
            .last()
            .map(|s| s.base_offset)
            .unwrap_or(0);
        self.finalize_segment(base).await?;
        {
            let mut st = self.st.borrow_mut();
            if let Some(last) = st.segments.last_mut() {
                last.finalized = false;
            }
            self.drop_cache_where(&mut st, |_, _| true);
        }
        self.write_meta(true).await
    }

    /// Closes the log and removes its directory (DeleteTopics).
    pub async fn remove(&self) -> Result<(), StorageError> {
        self.close().await?;
        self.env.io.remove_dir_all(&self.dir).await?;
        Ok(())
    }
}
