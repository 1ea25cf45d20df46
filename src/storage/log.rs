//! The partition log: segmented, appended with O_DIRECT page writes and group-committed
//! fdatasync, recovered by scanning and CRC-checking on open. See ARCHITECTURE.md ("Storage").
//!
//! Offsets: `log_start <= high_watermark <= log_end`. Under the default flush policy the high
//! watermark is the durable end: readers never see bytes a crash could lose.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::batch::{self, BatchHeader};
use super::io::{DmaIo, StorageIo};
use super::mem_io::{MemFs, MemIo};
use super::offsets::{assert_ordered, HighWatermark, LogEndOffset, LogStartOffset};
use super::segment::{Segment, StagedBatch};
use super::{LogConfig, StorageError};

/// Largest write handed to the disk at once; bigger flushes are split.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Page writes in flight per flush.
const WRITES_IN_FLIGHT_MAX: usize = 8;
/// Segments grow their on-disk reservation in steps of this size.
const PREALLOCATE_STEP_BYTES: u64 = 64 << 20;
/// A batch longer than this found during recovery is garbage (frames are far smaller).
pub const RECOVERY_BATCH_BYTES_MAX: usize = 256 << 20;
/// Appends at least this large are staged without copying (see `append`). A smaller request
/// shares its receive buffer (64 KiB reads) with others, so copying it bounds what the cache
/// keeps alive to about twice what it counts.
const STAGE_WITHOUT_COPY_BYTES_MIN: usize = 64 << 10;
/// A cached batch that is still the producer's bytes keeps its receive buffer alive: the
/// request's frame plus at most the start of the next one read with it. Measured with 64 KiB
/// batches in 1 MiB requests, such a cache held 1.6x its bytes in RSS; charging twice keeps the
/// budget an upper bound.
const PRODUCER_BYTES_CHARGE_FACTOR: usize = 2;
/// Smallest disk read when serving a fetch from disk.
const READ_BYTES_MIN: usize = 64 << 10;
const META_FILE: &str = "partition.meta";

mod flush;
mod maintenance;
mod read;
mod recovery;
mod recycle;
mod zero;

/// Shard-wide storage context: the I/O backend and the read-cache budget, shared by every log
/// the shard owns.
#[derive(Clone)]
pub struct StorageEnv {
    pub io: Rc<dyn StorageIo>,
    cache: Rc<CacheBudget>,
}

struct CacheBudget {
    used_bytes: Cell<usize>,
    max_bytes: usize,
}

impl StorageEnv {
    /// The real disk through glommio DMA files. Primes the executor (glommio #605/#670).
    pub async fn dma(data_dir: &Path, cache_bytes_max: usize) -> Result<StorageEnv, StorageError> {
        DmaIo::prime(data_dir).await?;
        Ok(StorageEnv::with_io(Rc::new(DmaIo), cache_bytes_max))
    }

    /// The in-memory fault-injecting backend.
    pub fn memory(fs: Rc<MemFs>, cache_bytes_max: usize) -> StorageEnv {
        StorageEnv::with_io(Rc::new(MemIo::new(fs)), cache_bytes_max)
    }

    pub fn with_io(io: Rc<dyn StorageIo>, cache_bytes_max: usize) -> StorageEnv {
        StorageEnv {
            io,
            cache: Rc::new(CacheBudget {
                used_bytes: Cell::new(0),
                max_bytes: cache_bytes_max,
            }),
        }
    }

    pub fn cache_used_bytes(&self) -> usize {
        self.cache.used_bytes.get()
    }
}

/// What an append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// A staged append: offsets are assigned; `durable()` resolves once the bytes are synced
/// according to the flush policy.
pub struct Appended {
    pub result: AppendResult,
    durable: LocalBoxFuture<'static, Result<(), StorageError>>,
}

impl Appended {
    pub async fn durable(self) -> Result<AppendResult, StorageError> {
        self.durable.await?;
        Ok(self.result)
    }
}

/// Whole batches read from the log.
#[derive(Debug, Default, Clone)]
pub struct ReadChunks {
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
}

/// A batch in the read cache.
struct Cached {
    base: i64,
    last: i64,
    bytes: Bytes,
    /// What it counts against the shard's cache budget: its length, or
    /// `PRODUCER_BYTES_CHARGE_FACTOR` times that while `bytes` are the producer's own (a slice
    /// of the request's receive buffer, which it keeps alive whole).
    charged: usize,
}

/// One group-commit round: what it covers and which files it wrote.
struct Round {
    target: i64,
    files: Vec<Rc<dyn super::io::SegmentFile>>,
    finalize: Vec<i64>,
}

/// An append waiting until the log is durable up to its end offset.
type DurableWaiter = (i64, oneshot::Sender<Result<(), String>>);

struct State {
    /// Never empty; the last one takes appends.
    segments: Vec<Segment>,
    log_start: i64,
    high_watermark: i64,
    log_end: i64,
    /// Offsets below this are written to their segment files (synced or not): readable from disk.
    written_end: i64,
    /// Recent batches (base, last, bytes) for tailing readers, contiguous up to `log_end`. The
    /// bytes are the producer's until a reader first takes the batch: then they are replaced by
    /// a copy carrying the assigned base offset (`read_cache`).
    cache: VecDeque<Cached>,
    /// What this log's cache entries charge against the shard's budget.
    cache_bytes: usize,
    unflushed_messages: u64,
    last_flush_ms: i64,
    roll_requested: bool,
    /// Retention-deleted `.log` files waiting for reuse (`log/recycle.rs`), at most
    /// `LogConfig::recycled_segments_max`.
    recycled: Vec<PathBuf>,
}

pub struct PartitionLog {
    weak: Weak<PartitionLog>,
    env: StorageEnv,
    dir: PathBuf,
    config: LogConfig,
    st: RefCell<State>,
    durable_waiters: RefCell<Vec<DurableWaiter>>,
    data_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    flushing: Cell<bool>,
    /// A write or fsync failed: the log refuses appends (retrying an fsync is unsafe).
    failed: Cell<bool>,
    closed: Cell<bool>,
    /// The zeroer task is running (`log/zero.rs`).
    zeroing: Cell<bool>,
    /// A zero write failed: zeroing stays off for this log.
    zero_failed: Cell<bool>,
    /// `truncate_to` is cutting the active segment: no new zero pieces meanwhile.
    zero_hold: Cell<bool>,
    zero_piece: RefCell<Option<zero::ZeroPiece>>,
    /// New segments that reused a recycled file.
    segments_reused: Cell<u64>,
    /// Retired segment files being renamed into the recycle pool.
    recycling: Cell<usize>,
}

fn durable_policy(c: &LogConfig) -> bool {
    c.flush_messages.is_none() && c.flush_ms.is_none()
}

impl PartitionLog {
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> LogStartOffset {
        LogStartOffset(self.st.borrow().log_start)
    }
    pub fn log_end_offset(&self) -> LogEndOffset {
        LogEndOffset(self.st.borrow().log_end)
    }
    pub fn high_watermark(&self) -> HighWatermark {
        HighWatermark(self.st.borrow().high_watermark)
    }

    /// The log was closed (shutdown or topic deletion); waiters stop waiting.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn segment_count(&self) -> usize {
        self.st.borrow().segments.len()
    }

    /// Segment files waiting in the recycle pool.
    pub fn recycled_segment_files(&self) -> usize {
        self.st.borrow().recycled.len()
    }

    /// How many new segments reused a recycled file (since open).
    pub fn segments_reused(&self) -> u64 {
        self.segments_reused.get()
    }

    fn check_invariants(st: &State) {
        assert_ordered(
            LogStartOffset(st.log_start),
            HighWatermark(st.high_watermark),
            LogEndOffset(st.log_end),
        );
    }

    /// Stages `batches` (already checked by `batch::validate_batches`, headers in `headers`)
    /// and assigns offsets. Synchronous up to the returned durability future.
    pub fn append(
        &self,
        batches: Bytes,
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<Appended, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        if self.failed.get() {
            return Err(StorageError::Io(std::io::Error::other(
                "log failed after an I/O error",
            )));
        }
        debug_assert!(
            !headers.is_empty(),
            "validate_batches rejects empty payloads"
        );
        if let Some(h) = headers
            .iter()
            .find(|h| h.size_bytes > self.config.max_message_bytes)
        {
            return Err(StorageError::MessageTooLarge(h.size_bytes));
        }
        let mut st = self.st.borrow_mut();
        let total: usize = headers.iter().map(|h| h.size_bytes).sum();
        let base = st.log_end;
        let roll = {
            let active = st.segments.last().expect("a log always has a segment");
            !active.is_empty()
                && (active.size + total as u64 > self.config.segment_bytes_max
                    || st.roll_requested
                    || active.size + total as u64 > u32::MAX as u64)
        };
        if roll {
            st.segments
                .last_mut()
                .expect("a log always has a segment")
                .sealed = true;
            st.segments.push(Segment::new(base, now_ms));
            st.roll_requested = false;
        }
        // A large append is staged and cached as the producer sent it, without a copy: the
        // assigned base offset goes over each batch's first 8 bytes on the way into the disk
        // buffer (flush) and when a reader first takes the batch from the cache (read). A small
        // one is copied now (cheap), with its offsets: its bytes are a slice of a receive buffer
        // shared with other requests, which the cache would otherwise keep alive.
        let mut copy =
            (total < STAGE_WITHOUT_COPY_BYTES_MIN).then(|| BytesMut::with_capacity(total));
        let mut offset = base;
        let mut records = 0u64;
        let mut charged_total = 0usize;
        for h in headers {
            let sent = batches.slice(h.position..h.position + h.size_bytes);
            let (bytes, charged) = match copy.as_mut() {
                Some(buf) => {
                    // `split` hands out what was just copied and keeps the rest of the capacity:
                    // one allocation for the whole append.
                    buf.extend_from_slice(&sent);
                    batch::set_base_offset(buf, 0, offset);
                    (buf.split().freeze(), h.size_bytes)
                }
                None => (sent, PRODUCER_BYTES_CHARGE_FACTOR * h.size_bytes),
            };
            let mut assigned = *h;
            assigned.base_offset = offset;
            let end_offset = assigned.last_offset() + 1;
            let seg = st.segments.last_mut().expect("a log always has a segment");
            let position = seg.size;
            seg.note_batch(&assigned, position, self.config.index_interval_bytes);
            seg.size += h.size_bytes as u64;
            seg.unflushed.push(StagedBatch {
                bytes: bytes.clone(),
                base_offset: offset,
                end_offset,
            });
            st.cache.push_back(Cached {
                base: offset,
                last: assigned.last_offset(),
                bytes,
                charged,
            });
            st.cache_bytes += charged;
            charged_total += charged;
            offset = end_offset;
            records += h.records_count.max(0) as u64;
        }
        let next = offset;
        st.log_end = next;
        st.unflushed_messages += records;
        self.env
            .cache
            .used_bytes
            .set(self.env.cache.used_bytes.get() + charged_total);
        self.evict_cache(&mut st);
        let result = AppendResult {
            base_offset: base,
            last_offset: next - 1,
            log_append_time_ms: -1,
            log_start_offset: st.log_start,
        };
        let durable: LocalBoxFuture<'static, Result<(), StorageError>> =
            if durable_policy(&self.config) {
                let (tx, rx) = oneshot::channel();
                self.durable_waiters.borrow_mut().push((next, tx));
                drop(st);
                self.ensure_flusher();
                async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(StorageError::Io(std::io::Error::other(e))),
                        Err(_) => Err(StorageError::Closed),
                    }
                }
                .boxed_local()
            } else {
                // Interval flushing trades durability for fewer syncs: visible and acknowledged now.
                st.high_watermark = st.log_end;
                Self::check_invariants(&st);
                let due = self
                    .config
                    .flush_messages
                    .is_some_and(|n| st.unflushed_messages >= n);
                drop(st);
                self.wake_readers();
                if due {
                    self.ensure_flusher();
                }
                async { Ok(()) }.boxed_local()
            };
        Ok(Appended { result, durable })
    }

    fn evict_cache(&self, st: &mut State) {
        let budget = &self.env.cache;
        // Batches not yet written stay: under interval flushing they are visible before they
        // are on disk, and the cache is then their only readable copy.
        while budget.used_bytes.get() > budget.max_bytes
            && st.cache.len() > 1
            && st.cache.front().is_some_and(|e| e.last < st.written_end)
        {
            if let Some(e) = st.cache.pop_front() {
                st.cache_bytes -= e.charged;
                budget.used_bytes.set(budget.used_bytes.get() - e.charged);
            }
        }
    }

    fn drop_cache_where(&self, st: &mut State, drop: impl Fn(i64, i64) -> bool) {
        let budget = &self.env.cache;
        st.cache.retain(|e| {
            let d = drop(e.base, e.last);
            if d {
                budget.used_bytes.set(budget.used_bytes.get() - e.charged);
            }
            !d
        });
        st.cache_bytes = st.cache.iter().map(|e| e.charged).sum();
    }

    fn wake_readers(&self) {
        for w in self.data_waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }
}
