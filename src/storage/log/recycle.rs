//! Segment recycling: retention renames a deleted segment's `.log` into a small per-partition
//! pool instead of unlinking it, and the next new segment takes a file from the pool.
//!
//! Why: on this kind of disk (and on ext4/XFS generally) writing blocks for the first time
//! costs more than overwriting written ones: fresh or preallocated blocks are new extents that
//! every fdatasync has to commit (fio here: new blocks run at 64–74% of overwrite speed). A log
//! with retention in steady state deletes as much as it appends, so reusing the deleted files
//! lets appends overwrite written blocks, as fio's sequential write baseline does.
//!
//! Why it is safe: a recycled file holds stale batches past the new data. Nothing serves them
//! (reads stop at the flushed size), and recovery rejects them: a scan requires each batch to
//! continue the offsets exactly, and the stale batches carry offsets below the log start (only
//! retention and DeleteRecords feed the pool, never `truncate_to`, whose removed offsets can be
//! written again). Sealing trims a segment to its data, so a closed segment never holds stale
//! bytes. A file still open elsewhere (a read in flight) is unlinked instead, so no reader sees
//! new data under old positions. Renames are durable (directory fsync) before any data goes
//! into the file, so a crash never finds acknowledged data under a pool name.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::PartitionLog;
use crate::storage::io::{align_down, SegmentFile, StorageIo};
use crate::storage::segment::{self, Segment};
use crate::storage::StorageError;

const POOL_EXT: &str = "recycle";

/// The pool name of a file that held segment `base`.
fn pool_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(segment::file_name(base, POOL_EXT))
}

/// Pool files among `names` (the directory's listing at open): the first `max` are kept
/// (oldest names first), the rest removed.
pub(super) async fn load_pool(
    io: &dyn StorageIo,
    dir: &Path,
    names: &[String],
    max: usize,
) -> Result<Vec<PathBuf>, StorageError> {
    let suffix = format!(".{POOL_EXT}");
    let mut found: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.ends_with(&suffix))
        .map(|n| dir.join(n))
        .collect();
    found.sort();
    for extra in found.split_off(max.min(found.len())) {
        io.remove_file(&extra).await?;
    }
    Ok(found)
}

impl PartitionLog {
    /// Removes a segment retention (or DeleteRecords) dropped: its `.log` goes to the pool
    /// when there is room and nothing else holds it open; otherwise it is unlinked.
    pub(super) async fn retire_segment(&self, seg: Segment) -> Result<(), StorageError> {
        // Files on their way into the pool count against its bound: retirements can overlap
        // (retention in `tick` and DeleteRecords).
        let room = self.st.borrow().recycled.len() + self.recycling.get()
            < self.config.recycled_segments_max;
        // The log held the only handle and no longer lists the segment: no reader can get it.
        let unshared = seg.file.as_ref().is_some_and(|f| Rc::strong_count(f) == 1);
        if !(room && unshared && seg.finalized) {
            return self.remove_segment_files(&seg).await;
        }
        let to = pool_path(&self.dir, seg.base_offset);
        self.recycling.set(self.recycling.get() + 1);
        let renamed = self.env.io.rename(&seg.log_path(&self.dir), &to).await;
        self.recycling.set(self.recycling.get() - 1);
        if let Err(e) = renamed {
            // Only an optimisation is lost.
            tracing::warn!(dir = %self.dir.display(), segment = seg.base_offset, "keeping a segment file for reuse failed: {e}");
            return self.remove_segment_files(&seg).await;
        }
        self.remove_index_files(&seg).await?;
        self.st.borrow_mut().recycled.push(to);
        Ok(())
    }

    /// Opens the file of new segment `base`: a recycled one when the pool has one (renamed
    /// into place, durably, before any write), else a new empty one.
    pub(super) async fn open_new_segment_file(
        &self,
        base: i64,
    ) -> Result<Rc<dyn SegmentFile>, StorageError> {
        let path = self.dir.join(segment::file_name(base, "log"));
        let recycled = self.st.borrow_mut().recycled.pop();
        if let Some(from) = recycled {
            match self.env.io.rename(&from, &path).await {
                Ok(()) => {
                    let f = self.env.io.open(&path).await?;
                    let size = f.size().await?;
                    let mut st = self.st.borrow_mut();
                    if let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                        debug_assert_eq!(
                            seg.flushed_size, 0,
                            "a new segment's file is opened before its first write"
                        );
                        // Its blocks are written: no preallocation or zeroing needed below this.
                        seg.allocated = align_down(size);
                        seg.zeroed_end = align_down(size);
                    }
                    self.segments_reused.set(self.segments_reused.get() + 1);
                    tracing::info!(dir = %self.dir.display(), segment = base, "new segment reuses a recycled file");
                    return Ok(f);
                }
                // Only an optimisation is lost.
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), "reusing {} failed: {e}", from.display())
                }
            }
        }
        Ok(self.env.io.open(&path).await?)
    }
}
