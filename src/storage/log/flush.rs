//! The write path after staging: group-commit rounds, page writes, fdatasync, sealing.

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};

use super::{
    durable_policy, PartitionLog, Round, PREALLOCATE_STEP_BYTES, WRITES_IN_FLIGHT_MAX,
    WRITE_CHUNK_BYTES,
};
use crate::storage::batch::BATCH_HEADER_LEN;
use crate::storage::io::{align_down, SegmentFile};
use crate::storage::segment::{self, StagedBatch};
use crate::storage::StorageError;

impl PartitionLog {
    pub(super) fn ensure_flusher(&self) {
        if self.flushing.get() {
            return;
        }
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        self.flushing.set(true);
        glommio::spawn_local(async move {
            me.flush_loop().await;
            me.flushing.set(false);
        })
        .detach();
    }

    /// Group commit, pipelined: round k+1's page writes go to disk while round k's fdatasync
    /// is in flight; a round's appends resolve (and the high watermark moves) once its sync is
    /// done. Appends that arrive meanwhile join the next round, so under load one fsync covers
    /// many requests, and an idle partition adds no delay.
    pub(super) async fn flush_loop(&self) {
        let mut pending: Option<(Round, LocalBoxFuture<'static, std::io::Result<()>>)> = None;
        loop {
            let (next, done) = match pending.take() {
                Some((round, sync)) => {
                    let (next, synced) = futures::future::join(self.write_round(), sync).await;
                    (next, Some((round, synced)))
                }
                None => (self.write_round().await, None),
            };
            // Everything staged is taken (or written): a good moment to zero ahead.
            self.maybe_zero_ahead();
            if let Some((round, synced)) = done {
                match synced {
                    Ok(()) => self.complete_round(round).await,
                    Err(e) => self.fail(format!("fdatasync failed: {e}")),
                }
            }
            match next {
                // Written durably already (a single-write round): nothing to sync, so it
                // completes now instead of waiting for the next round's writes.
                Some(round) if !self.failed.get() && round.files.is_empty() => {
                    self.complete_round(round).await;
                }
                Some(round) if !self.failed.get() => {
                    let files = round.files.clone();
                    let sync = async move {
                        for f in files {
                            f.sync().await?;
                        }
                        Ok(())
                    }
                    .boxed_local();
                    pending = Some((round, sync));
                }
                // Appends that arrived while the last round completed start a new round.
                _ if pending.is_none() && !self.has_unflushed() => break,
                _ => {}
            }
        }
    }

    pub(super) fn has_unflushed(&self) -> bool {
        !self.failed.get()
            && self
                .st
                .borrow()
                .segments
                .iter()
                .any(|s| !s.unflushed.is_empty() || (s.sealed && !s.finalized))
    }

    /// Takes everything unflushed and writes it (no sync). `None` when there is nothing to do
    /// or a write failed (the log is then failed).
    pub(super) async fn write_round(&self) -> Option<Round> {
        struct Job {
            base: i64,
            start: u64,
            tail: Vec<u8>,
            parts: Vec<StagedBatch>,
            taken: u64,
            file: Option<Rc<dyn SegmentFile>>,
            finalize: bool,
        }
        let (jobs, target) = {
            let mut st = self.st.borrow_mut();
            let mut budget = self.config.flush_round_bytes_max.max(1);
            // The end offset of the last batch taken.
            let mut last_end = None;
            let mut jobs = Vec::new();
            for seg in st.segments.iter_mut() {
                if seg.unflushed.is_empty() && (seg.finalized || !seg.sealed) {
                    continue;
                }
                if budget == 0 {
                    // Later segments wait: a round covers a contiguous prefix of the log.
                    break;
                }
                // Whole batches up to the budget, and at least one.
                let mut count = 0;
                let mut taken = 0u64;
                for b in &seg.unflushed {
                    if count > 0 && taken + b.bytes.len() as u64 > budget {
                        break;
                    }
                    taken += b.bytes.len() as u64;
                    count += 1;
                }
                budget = budget.saturating_sub(taken);
                let rest = seg.unflushed.split_off(count);
                let parts = std::mem::replace(&mut seg.unflushed, rest);
                last_end = parts.last().map(|b| b.end_offset).or(last_end);
                if !seg.unflushed.is_empty() {
                    budget = 0;
                }
                jobs.push(Job {
                    base: seg.base_offset,
                    start: align_down(seg.flushed_size),
                    tail: seg.tail_page.clone(),
                    parts,
                    taken,
                    file: seg.file.clone(),
                    finalize: seg.sealed,
                });
            }
            // Everything staged is in this round, or the round ends after its last batch.
            let left_behind = st.segments.iter().any(|s| !s.unflushed.is_empty());
            let target = match (left_behind, last_end) {
                (true, Some(end)) => end,
                _ => st.log_end,
            };
            debug_assert!(
                target <= st.log_end,
                "a round never covers unassigned offsets"
            );
            st.unflushed_messages = 0;
            (jobs, target)
        };
        if jobs.is_empty() {
            return None;
        }

        let mut round = Round {
            target,
            files: Vec::new(),
            finalize: Vec::new(),
        };
        // A round that is a single write (one segment, at most one chunk: a lightly loaded
        // log) writes it durably instead of writing and then syncing: one disk operation less
        // on the path of every acknowledgement.
        let single_write = matches!(&jobs[..],
            [j] if j.tail.len() as u64 + j.taken <= WRITE_CHUNK_BYTES as u64);
        for job in jobs {
            let prefixes: Vec<[u8; 8]> = job.parts.iter().map(|b| b.offset_prefix()).collect();
            let slices = job_slices(&job.tail, &job.parts, &prefixes);
            let file = match self
                .write_job(&slices, job.start, job.base, job.file.clone(), single_write)
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    self.fail(format!("write to segment {} failed: {e}", job.base));
                    return None;
                }
            };
            if !single_write {
                round.files.push(file);
            }
            let mut st = self.st.borrow_mut();
            // Retention only deletes finalized segments, so the segment is still there.
            let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == job.base) else {
                debug_assert!(false, "segment {} vanished during its flush", job.base);
                continue;
            };
            let new_flushed = seg.flushed_size + job.taken;
            let page = align_down(new_flushed);
            let keep = (new_flushed - page) as usize;
            // The new partial page is the last `keep` bytes written.
            let mut tail = Vec::with_capacity(keep);
            let mut need = keep;
            for p in slices.iter().rev() {
                if need == 0 {
                    break;
                }
                let take = need.min(p.len());
                tail.splice(0..0, p[p.len() - take..].iter().copied());
                need -= take;
            }
            seg.tail_page = tail;
            seg.flushed_size = new_flushed;
            if job.finalize && seg.unflushed.is_empty() && seg.flushed_size == seg.size {
                round.finalize.push(job.base);
            }
        }
        {
            let mut st = self.st.borrow_mut();
            st.written_end = st.written_end.max(target).min(st.log_end);
        }
        Some(round)
    }

    /// A round is durable: seal finished segments, move the high watermark, resolve appends.
    pub(super) async fn complete_round(&self, round: Round) {
        for base in round.finalize {
            if let Err(e) = self.finalize_segment(base).await {
                self.fail(format!("sealing segment {base} failed: {e}"));
                return;
            }
        }
        let target = round.target;
        {
            let mut st = self.st.borrow_mut();
            if target > st.high_watermark && durable_policy(&self.config) {
                st.high_watermark = target.min(st.log_end);
            }
            Self::check_invariants(&st);
        }
        let ready: Vec<_> = {
            let mut w = self.durable_waiters.borrow_mut();
            let (done, keep): (Vec<_>, Vec<_>) = w.drain(..).partition(|(end, _)| *end <= target);
            *w = keep;
            done
        };
        for (_, tx) in ready {
            let _ = tx.send(Ok(()));
        }
        self.wake_readers();
    }

    pub(super) async fn write_job(
        &self,
        slices: &[&[u8]],
        start: u64,
        base: i64,
        file: Option<Rc<dyn SegmentFile>>,
        durable: bool,
    ) -> Result<Rc<dyn SegmentFile>, StorageError> {
        let file = match file {
            Some(f) => f,
            None => {
                let f = self.open_new_segment_file(base).await?;
                if let Some(seg) = self
                    .st
                    .borrow_mut()
                    .segments
                    .iter_mut()
                    .find(|s| s.base_offset == base)
                {
                    seg.file = Some(f.clone());
                }
                f
            }
        };
        // Extending an O_DIRECT file on every write makes each fdatasync commit a new size:
        // reserve ahead in large steps (recovery stops at the zeros after the last batch).
        let written: u64 = slices.iter().map(|b| b.len() as u64).sum();
        let write_end = crate::storage::io::align_up(start + written);
        let allocated = self
            .st
            .borrow()
            .segments
            .iter()
            .find(|s| s.base_offset == base)
            .map(|s| s.allocated)
            .unwrap_or(0);
        if write_end > allocated {
            let target = (write_end + PREALLOCATE_STEP_BYTES)
                .min(self.config.segment_bytes_max.max(write_end) + crate::storage::io::ALIGN);
            file.allocate(target).await?;
            if let Some(seg) = self
                .st
                .borrow_mut()
                .segments
                .iter_mut()
                .find(|s| s.base_offset == base)
            {
                seg.allocated = target;
            }
        }
        // A zero piece in flight where these pages go would race them.
        self.wait_for_zero_piece(Some(base), start, write_end).await;
        // Cut the slices into aligned chunks of at most WRITE_CHUNK_BYTES.
        let mut chunks: Vec<(u64, Vec<&[u8]>)> = Vec::new();
        let mut cur: Vec<&[u8]> = Vec::new();
        let mut cur_len = 0usize;
        let mut pos = start;
        for s in slices {
            let mut s: &[u8] = s;
            while !s.is_empty() {
                let room = WRITE_CHUNK_BYTES - cur_len;
                let take = room.min(s.len());
                cur.push(&s[..take]);
                cur_len += take;
                s = &s[take..];
                if cur_len == WRITE_CHUNK_BYTES {
                    chunks.push((pos, std::mem::take(&mut cur)));
                    pos += cur_len as u64;
                    cur_len = 0;
                }
            }
        }
        if cur_len > 0 {
            chunks.push((pos, cur));
        }
        if durable {
            debug_assert!(chunks.len() <= 1, "a durable write is a single chunk");
            for (p, c) in &chunks {
                file.write_pages_durable(*p, c).await?;
            }
            return Ok(file);
        }
        // A sliding window: the next chunk is copied and submitted as soon as any write in
        // flight completes, so the disk queue never drains between groups of writes.
        let mut writes = futures::stream::iter(chunks.iter().map(|(p, c)| file.write_pages(*p, c)))
            .buffer_unordered(WRITES_IN_FLIGHT_MAX);
        while let Some(r) = writes.next().await {
            r?;
        }
        drop(writes);
        Ok(file)
    }

    /// A sealed segment is fully written: trim its page padding and save its indexes.
    pub(super) async fn finalize_segment(&self, base: i64) -> Result<(), StorageError> {
        let (file, size, index, times) = {
            let mut st = self.st.borrow_mut();
            let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == base) else {
                return Ok(());
            };
            if seg.max_timestamp > seg.time_index.last().map(|t| t.0).unwrap_or(-1) {
                let rel = (seg.max_timestamp_offset - seg.base_offset).max(0) as u32;
                let rel = rel.max(seg.time_index.last().map(|t| t.1).unwrap_or(0));
                seg.time_index.push((seg.max_timestamp, rel));
            }
            (
                seg.file.clone(),
                seg.size,
                seg.index_bytes(),
                seg.time_index_bytes(),
            )
        };
        if let Some(f) = file {
            // A zero piece still in flight past the data would land after the trim.
            self.wait_for_zero_piece(Some(base), 0, u64::MAX).await;
            f.truncate(size).await?;
            f.sync().await?;
        }
        self.env
            .io
            .write_small(&self.dir.join(segment::file_name(base, "index")), &index)
            .await?;
        self.env
            .io
            .write_small(
                &self.dir.join(segment::file_name(base, "timeindex")),
                &times,
            )
            .await?;
        if let Some(seg) = self
            .st
            .borrow_mut()
            .segments
            .iter_mut()
            .find(|s| s.base_offset == base)
        {
            seg.finalized = true;
        }
        // Moves the recovery point past this segment: a crash no longer rescans it.
        self.write_meta(false).await
    }

    pub(super) fn fail(&self, why: String) {
        tracing::error!(dir = %self.dir.display(), "{why}; the partition stops accepting writes");
        self.failed.set(true);
        for (_, tx) in self.durable_waiters.borrow_mut().drain(..) {
            let _ = tx.send(Err(why.clone()));
        }
    }
}

/// What a job writes, in order: the kept partial page, then each batch as its assigned base
/// offset (`prefixes`, one per batch) followed by the rest of the producer's bytes.
fn job_slices<'a>(
    tail: &'a [u8],
    parts: &'a [StagedBatch],
    prefixes: &'a [[u8; 8]],
) -> Vec<&'a [u8]> {
    debug_assert_eq!(parts.len(), prefixes.len(), "one prefix per batch");
    let mut slices: Vec<&[u8]> = Vec::with_capacity(2 * parts.len() + 1);
    if !tail.is_empty() {
        slices.push(tail);
    }
    for (b, prefix) in parts.iter().zip(prefixes) {
        debug_assert!(
            b.bytes.len() >= BATCH_HEADER_LEN,
            "validate_batches admits whole batches only"
        );
        slices.push(prefix);
        slices.push(&b.bytes[8..]);
    }
    slices
}
