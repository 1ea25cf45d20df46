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
use serde::{Deserialize, Serialize};

use super::batch::{self, BatchHeader};
use super::io::{align_down, DmaIo, StorageIo};
use super::mem_io::{MemFs, MemIo};
use super::offsets::{assert_ordered, HighWatermark, LogEndOffset, LogStartOffset};
use super::segment::{self, Segment};
use super::{LogConfig, StorageError};

/// Largest write handed to the disk at once; bigger flushes are split.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Page writes in flight per flush.
const WRITES_IN_FLIGHT_MAX: usize = 4;
/// Segments grow their on-disk reservation in steps of this size.
const PREALLOCATE_STEP_BYTES: u64 = 64 << 20;
/// A batch longer than this found during recovery is garbage (frames are far smaller).
pub const RECOVERY_BATCH_BYTES_MAX: usize = 256 << 20;
/// Smallest disk read when serving a fetch from disk.
const READ_BYTES_MIN: usize = 64 << 10;
const META_FILE: &str = "partition.meta";

mod maintenance;
mod read;

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
        StorageEnv::with_io(Rc::new(MemIo(fs)), cache_bytes_max)
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

#[derive(Serialize, Deserialize, Default)]
struct PartitionMeta {
    log_start_offset: i64,
    /// Set by `close`, cleared at open: when set, saved indexes and `log_end_offset` are trusted.
    clean_shutdown: bool,
    log_end_offset: i64,
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
    /// Recent batches (base, last, bytes) for tailing readers, contiguous up to `log_end`.
    cache: VecDeque<(i64, i64, Bytes)>,
    cache_bytes: usize,
    unflushed_messages: u64,
    last_flush_ms: i64,
    roll_requested: bool,
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
}

fn durable_policy(c: &LogConfig) -> bool {
    c.flush_messages.is_none() && c.flush_ms.is_none()
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
        let meta: PartitionMeta = io
            .read_small(&dir.join(META_FILE))?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut bases: Vec<i64> = io
            .list_dir(dir)?
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
            if meta.clean_shutdown || !last {
                // Closed segments and a cleanly closed active one were trimmed and indexed.
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
                if seg.load_indexes(&index, &times) && next >= *base {
                    seg.next_offset = next;
                    if let Some((ts, rel)) = seg.time_index.last() {
                        seg.max_timestamp = *ts;
                        seg.max_timestamp_offset = *base + *rel as i64;
                    }
                    trusted = true;
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
                    io.write_small(&seg.index_path(dir), &seg.index_bytes())?;
                    io.write_small(&seg.time_index_path(dir), &seg.time_index_bytes())?;
                }
                if outcome.stopped.is_some() && !last {
                    // Everything after damage in a closed segment is unreachable: drop later segments.
                    for later in &bases[i + 1..] {
                        for ext in ["log", "index", "timeindex"] {
                            io.remove_file(&dir.join(segment::file_name(*later, ext)))?;
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
                cache: VecDeque::new(),
                cache_bytes: 0,
                unflushed_messages: 0,
                last_flush_ms: now_ms,
                roll_requested: false,
            }),
            durable_waiters: RefCell::new(Vec::new()),
            data_waiters: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            failed: Cell::new(false),
            closed: Cell::new(false),
        });
        // From now on a crash must be recovered by scanning.
        log.write_meta(false)?;
        Ok(log)
    }

    fn write_meta(&self, clean_shutdown: bool) -> Result<(), StorageError> {
        let st = self.st.borrow();
        let meta = PartitionMeta {
            log_start_offset: st.log_start,
            clean_shutdown,
            log_end_offset: st.log_end,
        };
        let bytes =
            serde_json::to_vec(&meta).map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        self.env.io.write_small(&self.dir.join(META_FILE), &bytes)?;
        Ok(())
    }

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

    pub fn segment_count(&self) -> usize {
        self.st.borrow().segments.len()
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
        // The only copy before the disk buffer: rewrite base offsets in our own buffer.
        let mut buf = BytesMut::with_capacity(total);
        let mut next = base;
        for h in headers {
            let at = buf.len();
            buf.extend_from_slice(&batches[h.position..h.position + h.size_bytes]);
            batch::set_base_offset(&mut buf, at, next);
            next += h.last_offset_delta as i64 + 1;
        }
        let stored = buf.freeze();
        let mut at = 0usize;
        let mut offset = base;
        let mut records = 0u64;
        for h in headers {
            let bytes = stored.slice(at..at + h.size_bytes);
            let mut assigned = *h;
            assigned.base_offset = offset;
            assigned.position = at;
            let seg = st.segments.last_mut().expect("a log always has a segment");
            let position = seg.size;
            seg.note_batch(&assigned, position, self.config.index_interval_bytes);
            seg.size += h.size_bytes as u64;
            seg.unflushed.push(bytes.clone());
            st.cache.push_back((offset, assigned.last_offset(), bytes));
            st.cache_bytes += h.size_bytes;
            at += h.size_bytes;
            offset = assigned.last_offset() + 1;
            records += h.records_count.max(0) as u64;
        }
        debug_assert_eq!(offset, next, "offsets assigned contiguously");
        st.log_end = next;
        st.unflushed_messages += records;
        self.env
            .cache
            .used_bytes
            .set(self.env.cache.used_bytes.get() + total);
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
        while budget.used_bytes.get() > budget.max_bytes && st.cache.len() > 1 {
            if let Some((_, _, b)) = st.cache.pop_front() {
                st.cache_bytes -= b.len();
                budget.used_bytes.set(budget.used_bytes.get() - b.len());
            }
        }
    }

    fn drop_cache_where(&self, st: &mut State, drop: impl Fn(i64, i64) -> bool) {
        let budget = &self.env.cache;
        st.cache.retain(|(base, last, b)| {
            let d = drop(*base, *last);
            if d {
                budget.used_bytes.set(budget.used_bytes.get() - b.len());
            }
            !d
        });
        st.cache_bytes = st.cache.iter().map(|(_, _, b)| b.len()).sum();
    }

    fn wake_readers(&self) {
        for w in self.data_waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    fn ensure_flusher(&self) {
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
    async fn flush_loop(&self) {
        let mut pending: Option<(Round, LocalBoxFuture<'static, std::io::Result<()>>)> = None;
        loop {
            let (next, done) = match pending.take() {
                Some((round, sync)) => {
                    let (next, synced) = futures::future::join(self.write_round(), sync).await;
                    (next, Some((round, synced)))
                }
                None => (self.write_round().await, None),
            };
            if let Some((round, synced)) = done {
                match synced {
                    Ok(()) => self.complete_round(round).await,
                    Err(e) => self.fail(format!("fdatasync failed: {e}")),
                }
            }
            match next {
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

    fn has_unflushed(&self) -> bool {
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
    async fn write_round(&self) -> Option<Round> {
        struct Job {
            base: i64,
            start: u64,
            tail: Vec<u8>,
            parts: Vec<Bytes>,
            taken: u64,
            file: Option<Rc<dyn super::io::SegmentFile>>,
            finalize: bool,
        }
        let (jobs, target) = {
            let mut st = self.st.borrow_mut();
            let target = st.log_end;
            let mut jobs = Vec::new();
            for seg in st.segments.iter_mut() {
                if seg.unflushed.is_empty() && (seg.finalized || !seg.sealed) {
                    continue;
                }
                let parts = std::mem::take(&mut seg.unflushed);
                let taken: u64 = parts.iter().map(|b| b.len() as u64).sum();
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
        for job in jobs {
            let file = match self
                .write_job(&job.tail, &job.parts, job.start, job.base, job.file.clone())
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    self.fail(format!("write to segment {} failed: {e}", job.base));
                    return None;
                }
            };
            round.files.push(file);
            let mut st = self.st.borrow_mut();
            // Retention only deletes finalized segments, so the segment is still there.
            let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == job.base) else {
                debug_assert!(false, "segment {} vanished during its flush", job.base);
                continue;
            };
            let new_flushed = seg.flushed_size + job.taken;
            let page = align_down(new_flushed);
            let keep = (new_flushed - page) as usize;
            // The new partial page is the last `keep` bytes of tail + parts.
            let mut tail = Vec::with_capacity(keep);
            let mut need = keep;
            for p in job
                .parts
                .iter()
                .rev()
                .map(|b| &b[..])
                .chain(std::iter::once(&job.tail[..]))
            {
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
        Some(round)
    }

    /// A round is durable: seal finished segments, move the high watermark, resolve appends.
    async fn complete_round(&self, round: Round) {
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
            st.last_flush_ms = now_wallclock_ms();
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

    async fn write_job(
        &self,
        tail: &[u8],
        parts: &[Bytes],
        start: u64,
        base: i64,
        file: Option<Rc<dyn super::io::SegmentFile>>,
    ) -> Result<Rc<dyn super::io::SegmentFile>, StorageError> {
        let file = match file {
            Some(f) => f,
            None => {
                let f = self
                    .env
                    .io
                    .open(&self.dir.join(segment::file_name(base, "log")))
                    .await?;
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
        let written: u64 = tail.len() as u64 + parts.iter().map(|b| b.len() as u64).sum::<u64>();
        let write_end = super::io::align_up(start + written);
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
                .min(self.config.segment_bytes_max.max(write_end) + super::io::ALIGN);
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
        // Cut tail + parts into aligned chunks of at most WRITE_CHUNK_BYTES.
        let mut slices: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        if !tail.is_empty() {
            slices.push(tail);
        }
        slices.extend(parts.iter().map(|b| &b[..]));
        let mut chunks: Vec<(u64, Vec<&[u8]>)> = Vec::new();
        let mut cur: Vec<&[u8]> = Vec::new();
        let mut cur_len = 0usize;
        let mut pos = start;
        for s in slices {
            let mut s = s;
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
        for window in chunks.chunks(WRITES_IN_FLIGHT_MAX) {
            let writes = window.iter().map(|(p, c)| file.write_pages(*p, c));
            for r in futures::future::join_all(writes).await {
                r?;
            }
        }
        Ok(file)
    }

    /// A sealed segment is fully written: trim its page padding and save its indexes.
    async fn finalize_segment(&self, base: i64) -> Result<(), StorageError> {
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
            f.truncate(size).await?;
            f.sync().await?;
        }
        self.env
            .io
            .write_small(&self.dir.join(segment::file_name(base, "index")), &index)?;
        self.env.io.write_small(
            &self.dir.join(segment::file_name(base, "timeindex")),
            &times,
        )?;
        if let Some(seg) = self
            .st
            .borrow_mut()
            .segments
            .iter_mut()
            .find(|s| s.base_offset == base)
        {
            seg.finalized = true;
        }
        Ok(())
    }

    fn fail(&self, why: String) {
        tracing::error!(dir = %self.dir.display(), "{why}; the partition stops accepting writes");
        self.failed.set(true);
        for (_, tx) in self.durable_waiters.borrow_mut().drain(..) {
            let _ = tx.send(Err(why.clone()));
        }
    }
}

fn now_wallclock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
