//! Zeroing ahead of the write position, off the ack path.
//!
//! Segments are preallocated, and on ext4 (and XFS) preallocated blocks are *unwritten*
//! extents: the first write to one converts it, and the next fdatasync must then commit that
//! conversion through the filesystem journal. That makes a durable append cost a journal commit
//! (fio on this disk, 32 KiB write + fdatasync: fresh preallocated file p50/p99 60/167 µs,
//! overwriting written blocks 23/89 µs). So while the log is not busy, a zeroer writes zeros a
//! little ahead of the data (`LogConfig::zero_ahead_bytes`, capped by what the segment already
//! holds, so quiet partitions write few zeros) and syncs them itself; appends then
//! overwrite written blocks and their fdatasync is only a cache flush.
//!
//! It never slows a busy log: it starts only right after a flush round took everything staged,
//! stops before a piece when appends are waiting, and refills only once the data has used half
//! of the zeroed region. Under sustained load the data overtakes it and lands on unwritten
//! blocks as before. Correctness does not depend on it: zeros past the data end a recovery scan
//! exactly as unwritten blocks do.
//!
//! A zero write never overlaps data: a piece starts at or past the page after the staged end,
//! and a flush round whose pages would reach into the piece in flight waits for it first, as
//! do sealing (which trims the file) and `truncate_to`.

use std::rc::Rc;

use futures::channel::oneshot;
use futures::FutureExt;

use super::PartitionLog;
use crate::storage::io::{align_up, SegmentFile, ALIGN};

/// Zeros written per piece; small, so a piece in the disk queue delays an append little.
pub(super) const ZERO_PIECE_BYTES: u64 = 256 << 10;

/// How far past the data to keep zeros: `zero_ahead_bytes`, but no more than the segment already
/// holds (at least one piece), so a quiet partition writes few zeros (at most about as many as
/// its data) and a busy one reaches the full distance within its first megabytes.
///
/// Always whole pages: zero writes are O_DIRECT, and an unaligned distance once made every piece
/// after the first start mid-page, so the kernel refused them (EINVAL) and zeroing switched off.
fn zero_ahead_bytes(configured: u64, segment_bytes: u64) -> u64 {
    align_up(configured.min(segment_bytes.max(ZERO_PIECE_BYTES)))
}

/// A zero write in flight: segment, file range, and a signal when it has completed.
pub(super) struct ZeroPiece {
    base: i64,
    start: u64,
    end: u64,
    done: futures::future::Shared<oneshot::Receiver<()>>,
}

impl PartitionLog {
    /// Called by the flusher once a round has taken what was staged: starts the zeroer when
    /// the active segment has used half of its zeroed region.
    pub(super) fn maybe_zero_ahead(&self) {
        if self.config.zero_ahead_bytes == 0
            || self.zeroing.get()
            || self.zero_failed.get()
            || self.zero_hold.get()
            || self.closed.get()
        {
            return;
        }
        {
            let st = self.st.borrow();
            let seg = st.segments.last().expect("a log always has a segment");
            let ahead = zero_ahead_bytes(self.config.zero_ahead_bytes, seg.size);
            if seg.sealed || seg.file.is_none() || seg.zeroed_end >= align_up(seg.size) + ahead / 2
            {
                return;
            }
        }
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        self.zeroing.set(true);
        glommio::spawn_local(async move {
            me.zero_loop().await;
            me.zeroing.set(false);
        })
        .detach();
    }

    /// Writes zero pieces up to the zero-ahead distance past the staged end, then syncs them.
    async fn zero_loop(&self) {
        let mut written: Option<Rc<dyn SegmentFile>> = None;
        loop {
            if self.closed.get()
                || self.failed.get()
                || self.zero_hold.get()
                || self.has_unflushed()
            {
                break;
            }
            let pick = {
                let st = self.st.borrow();
                let seg = st.segments.last().expect("a log always has a segment");
                let limit = align_up(self.config.segment_bytes_max);
                let from = seg.zeroed_end.max(align_up(seg.size));
                let ahead = zero_ahead_bytes(self.config.zero_ahead_bytes, seg.size);
                let to = (align_up(seg.size) + ahead).min(limit);
                match &seg.file {
                    Some(f) if !seg.sealed && from < to => Some((
                        f.clone(),
                        seg.base_offset,
                        from,
                        to.min(from + ZERO_PIECE_BYTES),
                    )),
                    _ => None,
                }
            };
            let Some((file, base, start, end)) = pick else {
                break;
            };
            debug_assert!(
                start % ALIGN == 0 && end % ALIGN == 0,
                "zero pieces are whole pages ({start}..{end}): O_DIRECT refuses anything else"
            );
            let (tx, rx) = oneshot::channel();
            *self.zero_piece.borrow_mut() = Some(ZeroPiece {
                base,
                start,
                end,
                done: rx.shared(),
            });
            let r = file.write_zeroes(start, (end - start) as usize).await;
            if r.is_ok() {
                // Before the signal: `truncate_to` resets this after waiting for the piece.
                let mut st = self.st.borrow_mut();
                if let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                    seg.zeroed_end = seg.zeroed_end.max(end);
                    seg.allocated = seg.allocated.max(end);
                }
            }
            self.zero_piece.borrow_mut().take();
            let _ = tx.send(());
            if let Err(e) = r {
                // Only an optimisation is lost; the data path meets any real disk fault itself.
                tracing::warn!(dir = %self.dir.display(), "zeroing ahead failed, turned off for this log: {e}");
                self.zero_failed.set(true);
                break;
            }
            written = Some(file);
        }
        // Commits the extent conversions now, so no append's fdatasync has to.
        if let Some(f) = written {
            if let Err(e) = f.sync().await {
                tracing::warn!(dir = %self.dir.display(), "syncing zeroed blocks failed, zeroing turned off for this log: {e}");
                self.zero_failed.set(true);
            }
        }
    }

    /// Waits for the zero piece in flight on segment `base` (`None`: any) if it touches
    /// `[start, end)`.
    pub(super) async fn wait_for_zero_piece(&self, base: Option<i64>, start: u64, end: u64) {
        let done = match &*self.zero_piece.borrow() {
            Some(p) if base.is_none_or(|b| b == p.base) && p.start < end && start < p.end => {
                p.done.clone()
            }
            _ => return,
        };
        let _ = done.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ahead_grows_with_the_segment_up_to_the_setting() {
        let mib = 1 << 20;
        assert_eq!(
            zero_ahead_bytes(8 * mib, 0),
            ZERO_PIECE_BYTES,
            "one piece to start"
        );
        assert_eq!(
            zero_ahead_bytes(8 * mib, 3 * mib),
            3 * mib,
            "as much as the data"
        );
        assert_eq!(
            zero_ahead_bytes(8 * mib, 100 * mib),
            8 * mib,
            "never past the setting"
        );
        assert_eq!(zero_ahead_bytes(0, 100 * mib), 0, "off stays off");
        for size in [1, 4095, 595_557, 3 * mib + 1] {
            let ahead = zero_ahead_bytes(8 * mib, size);
            assert_eq!(ahead % ALIGN, 0, "whole pages for a {size}-byte segment");
            assert!(ahead >= size.min(8 * mib), "at least as much as the data");
        }
        assert_eq!(
            zero_ahead_bytes(5000, 100 * mib),
            8192,
            "a setting off the page rounds up"
        );
    }
}
