//! Opening a log: segments below the recovery point (sealed, trimmed, synced, indexed) are
//! trusted when their index files load; the rest are scanned batch by batch (length, magic,
//! CRC32C, contiguous offsets) and truncated at the first invalid byte, and their indexes are
//! rebuilt. The partition metadata file records the log start offset, the recovery point and
//! the clean-shutdown marker.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use zerocopy::byteorder::big_endian::{I64, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{PartitionLog, State, StorageEnv, META_FILE, RECOVERY_BATCH_BYTES_MAX};
use crate::storage::io::align_down;
use crate::storage::segment::{self, Segment};
use crate::storage::{LogConfig, StorageError};

const META_MAGIC: [u8; 4] = *b"TWPM";
const META_VERSION: u16 = 1;

/// `partition.meta`, one fixed-size record, replaced atomically (temp file, fsync, rename).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
struct RawMeta {
    magic: [u8; 4],
    version: U16,
    /// 1 when written by `close`: the active segment's indexes and `log_end_offset` are trusted.
    clean_shutdown: u8,
    reserved: u8,
    log_start_offset: I64,
    /// Log end at a clean shutdown (otherwise informational).
    log_end_offset: I64,
    /// Every segment whose base offset is below this is sealed, trimmed, synced and indexed.
    recovery_point: I64,
    /// CRC32C of the bytes before it.
    crc: U32,
}

const META_CRC_AT: usize = std::mem::size_of::<RawMeta>() - 4;

/// Decoded metadata; the default (missing or damaged file) trusts nothing and scans everything.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PartitionMeta {
    pub log_start_offset: i64,
    pub clean_shutdown: bool,
    pub log_end_offset: i64,
    pub recovery_point: i64,
}

impl PartitionMeta {
    fn decode(b: &[u8]) -> Option<PartitionMeta> {
        let raw = RawMeta::read_from_bytes(b).ok()?;
        if raw.magic != META_MAGIC
            || raw.version.get() != META_VERSION
            || crc32c::crc32c(&b[..META_CRC_AT]) != raw.crc.get()
        {
            return None;
        }
        Some(PartitionMeta {
            log_start_offset: raw.log_start_offset.get(),
            clean_shutdown: raw.clean_shutdown == 1,
            log_end_offset: raw.log_end_offset.get(),
            recovery_point: raw.recovery_point.get(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut raw = RawMeta {
            magic: META_MAGIC,
            version: META_VERSION.into(),
            clean_shutdown: self.clean_shutdown as u8,
            reserved: 0,
            log_start_offset: self.log_start_offset.into(),
            log_end_offset: self.log_end_offset.into(),
            recovery_point: self.recovery_point.into(),
            crc: 0.into(),
        };
        raw.crc = crc32c::crc32c(&raw.as_bytes()[..META_CRC_AT]).into();
        raw.as_bytes().to_vec()
    }
}

impl PartitionLog {
    pub async fn open(
        env: &StorageEnv,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        let io = env.io.clone();
        io.create_dir_all(dir)?;
        let meta = match io.read_small(&dir.join(META_FILE))? {
            Some(b) => PartitionMeta::decode(&b).unwrap_or_else(|| {
                tracing::warn!(dir = %dir.display(), "damaged partition metadata: scanning every segment");
                PartitionMeta::default()
            }),
            None => PartitionMeta::default(),
        };
        // One listing: segments, and the recycle pool (which nothing below touches).
        let names = io.list_dir(dir)?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter_map(|n| n.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let mut seg = Segment::new(*base, now_ms);
            let path = seg.log_path(dir);
            let file = io.open(&path).await?;
            let file_size = file.size().await?;
            seg.file = Some(file.clone());
            let mut trusted = false;
            let below_recovery_point = if last {
                meta.clean_shutdown
            } else {
                *base < meta.recovery_point
            };
            if below_recovery_point {
                // Sealed segments and a cleanly closed active one were trimmed and indexed.
                seg.size = file_size;
                let index = io.read_small(&seg.index_path(dir))?.unwrap_or_default();
                let times = io
                    .read_small(&seg.time_index_path(dir))?
                    .unwrap_or_default();
                let next = if last {
                    meta.log_end_offset
                } else {
                    bases[i + 1]
                };
                if seg.load_indexes(&index, &times)
                    && next >= *base
                    && tail_matches(&*file, &seg, file_size, next).await?
                {
                    seg.next_offset = next;
                    if let Some((ts, rel)) = seg.time_index.last() {
                        seg.max_timestamp = *ts;
                        seg.max_timestamp_offset = *base + *rel as i64;
                    }
                    trusted = true;
                } else {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment = base,
                        "segment does not match its indexes and metadata: scanning it"
                    );
                }
            }
            if !trusted {
                let interval = config.index_interval_bytes;
                seg.index.clear();
                seg.time_index.clear();
                seg.size = 0;
                let mut rebuilt = Segment::new(*base, now_ms);
                let outcome = segment::scan(
                    &*file,
                    0,
                    file_size,
                    *base,
                    RECOVERY_BATCH_BYTES_MAX,
                    segment::ScanReads::Sequential,
                    &mut |h, _| {
                        rebuilt.note_batch(h, h.position as u64, interval);
                        true
                    },
                )
                .await?;
                if let Some(why) = &outcome.stopped {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment = base,
                        "recovery truncated {} bytes: {why}",
                        file_size - outcome.valid_bytes
                    );
                }
                if outcome.valid_bytes < file_size {
                    file.truncate(outcome.valid_bytes).await?;
                    file.sync().await?;
                }
                seg.index = rebuilt.index;
                seg.time_index = rebuilt.time_index;
                seg.max_timestamp = rebuilt.max_timestamp;
                seg.max_timestamp_offset = rebuilt.max_timestamp_offset;
                seg.size = outcome.valid_bytes;
                seg.next_offset = outcome.next_offset;
                if !last {
                    // A closed segment keeps its rebuilt indexes for next time.
                    io.write_small(&seg.index_path(dir), &seg.index_bytes())
                        .await?;
                    io.write_small(&seg.time_index_path(dir), &seg.time_index_bytes())
                        .await?;
                }
                // A closed segment that is damaged, or ends short of the next one's base (its
                // tail never reached the disk), makes everything after it unreachable: a round
                // acknowledges nothing in later segments before this one is finalized.
                let short = !last && outcome.next_offset != bases[i + 1];
                if short && outcome.stopped.is_none() {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment = base,
                        "segment ends at offset {} but the next starts at {}: dropping later segments",
                        outcome.next_offset,
                        bases[i + 1]
                    );
                }
                if (outcome.stopped.is_some() || short) && !last {
                    // Everything after damage in a closed segment is unreachable: drop later segments.
                    for later in &bases[i + 1..] {
                        for ext in ["log", "index", "timeindex"] {
                            io.remove_file(&dir.join(segment::file_name(*later, ext)))
                                .await?;
                        }
                    }
                    seg.flushed_size = seg.size;
                    segments.push(seg);
                    break;
                }
            }
            seg.flushed_size = seg.size;
            let page = align_down(seg.size);
            seg.tail_page = file.read(page, (seg.size - page) as usize).await?.to_vec();
            seg.sealed = !last;
            seg.finalized = !last;
            segments.push(seg);
        }
        if let Some(last) = segments.last_mut() {
            last.sealed = false;
            last.finalized = false;
        }
        if segments.is_empty() {
            let mut seg = Segment::new(meta.log_start_offset.max(0), now_ms);
            seg.file = Some(io.open(&seg.log_path(dir)).await?);
            segments.push(seg);
        }
        let recycled =
            super::recycle::load_pool(&*io, dir, &names, config.recycled_segments_max).await?;
        let log_end = segments.last().map(|s| s.next_offset).unwrap_or(0);
        let log_start = meta
            .log_start_offset
            .max(segments[0].base_offset)
            .min(log_end);
        let log = Rc::new_cyclic(|weak| PartitionLog {
            weak: weak.clone(),
            env: env.clone(),
            dir: dir.to_path_buf(),
            config,
            st: RefCell::new(State {
                segments,
                log_start,
                high_watermark: log_end,
                log_end,
                written_end: log_end,
                cache: VecDeque::new(),
                cache_bytes: 0,
                unflushed_messages: 0,
                last_flush_ms: now_ms,
                roll_requested: false,
                recycled,
            }),
            durable_waiters: RefCell::new(Vec::new()),
            data_waiters: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            failed: Cell::new(false),
            zeroing: Cell::new(false),
            zero_failed: Cell::new(false),
            zero_hold: Cell::new(false),
            zero_piece: RefCell::new(None),
            segments_reused: Cell::new(0),
            recycling: Cell::new(0),
            closed: Cell::new(false),
        });
        // From now on a crash must be recovered by scanning.
        log.write_meta(false).await?;
        Ok(log)
    }

    /// Saves the log start and the recovery point (first segment not yet sealed and synced).
    /// The content is taken now; writes queued by earlier calls land first (`StorageIo`).
    pub(super) async fn write_meta(&self, clean_shutdown: bool) -> Result<(), StorageError> {
        let meta = {
            let st = self.st.borrow();
            PartitionMeta {
                log_start_offset: st.log_start,
                clean_shutdown,
                log_end_offset: st.log_end,
                recovery_point: if clean_shutdown {
                    st.log_end
                } else {
                    recovery_point(&st)
                },
            }
        };
        self.env
            .io
            .write_small(&self.dir.join(META_FILE), &meta.encode())
            .await?;
        Ok(())
    }
}

/// Base offset of the first segment that is not finalized (the active one at the latest).
fn recovery_point(st: &State) -> i64 {
    st.segments
        .iter()
        .find(|s| !s.finalized)
        .map(|s| s.base_offset)
        .unwrap_or(st.log_end)
}

/// Checks a segment we are about to trust without a full scan: the batches from its last index
/// entry must be valid, end exactly at the file's end and at offset `next`. A file cut or
/// damaged after a clean shutdown (or indexes from another life) fails this and is scanned.
async fn tail_matches(
    file: &dyn crate::storage::io::SegmentFile,
    seg: &Segment,
    file_size: u64,
    next: i64,
) -> Result<bool, StorageError> {
    let (from_pos, from_offset) = seg
        .index
        .last()
        .map(|(rel, pos)| (*pos as u64, seg.base_offset + *rel as i64))
        .unwrap_or((0, seg.base_offset));
    if from_pos > file_size {
        return Ok(false);
    }
    let tail = segment::scan(
        file,
        from_pos,
        file_size,
        from_offset,
        RECOVERY_BATCH_BYTES_MAX,
        segment::ScanReads::Sequential,
        &mut |_, _| true,
    )
    .await?;
    Ok(tail.stopped.is_none() && tail.valid_bytes == file_size && tail.next_offset == next)
}
