//! TEMPORARY in-memory stand-in with the final `PartitionLog` API; the real segmented
//! O_DIRECT log replaces this file. Everything is "durable" at once.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::batch::{self, BatchHeader};
use super::offsets::{assert_ordered, HighWatermark, LogEndOffset, LogStartOffset};
use super::{LogConfig, StorageError};

/// Shard-wide storage context: the I/O backend and the read cache, shared by every log the
/// shard owns.
#[derive(Clone, Default)]
pub struct StorageEnv {}

impl StorageEnv {
    /// Real disk through glommio DMA files. `cache_bytes_max` bounds the shard's batch cache.
    pub async fn dma(
        _data_dir: &Path,
        _cache_bytes_max: usize,
    ) -> Result<StorageEnv, StorageError> {
        Ok(StorageEnv {})
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

struct Stored {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    bytes: Bytes,
}

pub struct PartitionLog {
    #[allow(dead_code)]
    dir: PathBuf,
    config: LogConfig,
    batches: RefCell<Vec<Stored>>,
    start: Cell<i64>,
    end: Cell<i64>,
    waiters: RefCell<Vec<futures::channel::oneshot::Sender<()>>>,
}

impl PartitionLog {
    pub async fn open(
        _env: &StorageEnv,
        dir: &Path,
        config: LogConfig,
        _now_ms: i64,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        Ok(Rc::new(PartitionLog {
            dir: dir.to_path_buf(),
            config,
            batches: RefCell::new(Vec::new()),
            start: Cell::new(0),
            end: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        }))
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn log_start_offset(&self) -> LogStartOffset {
        LogStartOffset(self.start.get())
    }
    pub fn log_end_offset(&self) -> LogEndOffset {
        LogEndOffset(self.end.get())
    }
    pub fn high_watermark(&self) -> HighWatermark {
        HighWatermark(self.end.get())
    }

    /// Stages `batches` (already checked by `batch::validate_batches`, headers in `headers`)
    /// and assigns offsets. Synchronous up to the returned durability future.
    pub fn append(
        &self,
        batches: Bytes,
        headers: &[BatchHeader],
        _now_ms: i64,
    ) -> Result<Appended, StorageError> {
        let mut buf = BytesMut::from(&batches[..]);
        let base = self.end.get();
        let mut next = base;
        for h in headers {
            batch::set_base_offset(&mut buf, h.position, next);
            next += h.last_offset_delta as i64 + 1;
        }
        let buf = buf.freeze();
        let mut stored = self.batches.borrow_mut();
        for h in headers {
            let bo =
                i64::from_be_bytes(buf[h.position..h.position + 8].try_into().expect("8 bytes"));
            stored.push(Stored {
                base_offset: bo,
                last_offset: bo + h.last_offset_delta as i64,
                max_timestamp: h.max_timestamp,
                bytes: buf.slice(h.position..h.position + h.size_bytes),
            });
        }
        self.end.set(next);
        assert_ordered(
            self.log_start_offset(),
            self.high_watermark(),
            self.log_end_offset(),
        );
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
        Ok(Appended {
            result: AppendResult {
                base_offset: base,
                last_offset: next - 1,
                log_append_time_ms: -1,
                log_start_offset: self.start.get(),
            },
            durable: async { Ok(()) }.boxed_local(),
        })
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (the first batch is
    /// returned whole even if larger), never past the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadChunks, StorageError> {
        let (start, end) = (self.start.get(), self.end.get());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        let stored = self.batches.borrow();
        let i = stored.partition_point(|b| b.last_offset < offset);
        let mut out = ReadChunks::default();
        for b in &stored[i..] {
            if !out.chunks.is_empty() && out.bytes + b.bytes.len() > max_bytes {
                break;
            }
            out.bytes += b.bytes.len();
            out.chunks.push(b.bytes.clone());
        }
        Ok(out)
    }

    /// Resolves once the high watermark is above `offset`.
    pub async fn wait_for_data(&self, offset: i64) {
        if self.high_watermark().0 > offset {
            return;
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        self.waiters.borrow_mut().push(tx);
        let _ = rx.await;
    }

    /// First offset whose timestamp is >= `timestamp_ms`, with that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let stored = self.batches.borrow();
        Ok(stored
            .iter()
            .find(|b| b.base_offset >= self.start.get() && b.max_timestamp >= timestamp_ms)
            .map(|b| (b.base_offset.max(self.start.get()), b.max_timestamp)))
    }

    /// Largest timestamp in the log and the offset of the batch carrying it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let stored = self.batches.borrow();
        stored
            .iter()
            .filter(|b| b.last_offset >= self.start.get())
            .max_by_key(|b| b.max_timestamp)
            .map(|b| (b.max_timestamp, b.last_offset))
    }

    /// Calls `f` for each batch header from the batch containing `from_offset` to the end.
    pub async fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        for b in self
            .batches
            .borrow()
            .iter()
            .filter(|b| b.last_offset >= from_offset)
        {
            if let Some(h) = batch::peek_header(&b.bytes, 0) {
                f(&h);
            }
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start offset forward.
    pub async fn delete_records_before(&self, offset: i64) -> Result<LogStartOffset, StorageError> {
        let (start, end) = (self.start.get(), self.end.get());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        self.start.set(offset);
        self.batches
            .borrow_mut()
            .retain(|b| b.last_offset >= offset);
        Ok(self.log_start_offset())
    }

    /// Periodic work: interval flushes, time-based rolls and retention.
    pub async fn tick(&self, _now_ms: i64) -> Result<(), StorageError> {
        Ok(())
    }

    /// Syncs everything staged.
    pub async fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Flushes and marks a clean shutdown.
    pub async fn close(&self) -> Result<(), StorageError> {
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
        Ok(())
    }

    /// Closes the log and removes its directory (DeleteTopics).
    pub async fn remove(&self) -> Result<(), StorageError> {
        self.close().await
    }
}
