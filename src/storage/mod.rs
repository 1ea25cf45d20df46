//! Per-partition segmented log. See ARCHITECTURE.md ("Storage") for the on-disk format.
//!
//! A `PartitionLog` is owned by exactly one shard and is not `Send`. Appends assign offsets
//! synchronously (before the first `.await`), so a caller that checks producer state and then
//! appends without awaiting in between sees a consistent log.

pub mod batch;
pub mod compression;
pub mod io;
pub mod log;
pub mod mem_io;
pub mod offsets;
mod scan;
pub mod segment;

pub use log::{AppendResult, Appended, PartitionLog, ReadChunks, StorageEnv};
pub use offsets::{HighWatermark, LogEndOffset, LogStartOffset};

/// Kafka error codes the storage layer maps to.
pub mod error_code {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_RECORD: i16 = 87;
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("batch of {0} bytes is larger than allowed")]
    MessageTooLarge(usize),
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            StorageError::CorruptMessage(_) => error_code::CORRUPT_MESSAGE,
            StorageError::InvalidRecord(_) => error_code::INVALID_RECORD,
            StorageError::MessageTooLarge(_) => error_code::MESSAGE_TOO_LARGE,
            StorageError::OffsetOutOfRange { .. } => error_code::OFFSET_OUT_OF_RANGE,
            StorageError::Io(_) | StorageError::Closed => error_code::KAFKA_STORAGE_ERROR,
        }
    }
}

/// Per-log settings, named after Kafka's topic configs (units last).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes_max: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `retention.ms` (-1: keep forever)
    pub retention_ms: i64,
    /// `retention.bytes` (-1: unlimited)
    pub retention_bytes: i64,
    /// `flush.messages`: None = flush before every ack (durable-before-ack, the default).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: None = flush before every ack.
    pub flush_ms: Option<u64>,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: usize,
    /// Bytes one group-commit round takes (at least one batch); the rest waits for the next
    /// round. Bounded rounds keep the disk writing round k+1 while round k syncs, and
    /// acknowledge appends slice by slice instead of after one long write of the whole queue.
    pub flush_round_bytes_max: u64,
    /// Bytes of the active segment kept written with zeros ahead of the data, off the ack
    /// path, so appends overwrite written blocks instead of converting preallocated
    /// (unwritten) extents, which makes every fdatasync commit the filesystem journal.
    /// 0 turns it off.
    pub zero_ahead_bytes: u64,
    /// `.log` files of segments that retention deleted, kept (renamed) to be reused by later
    /// segments instead of unlinked: appends then overwrite blocks the filesystem has already
    /// written, which is the disk's fast path (no new extents for fdatasync to commit). Each
    /// costs up to `segment.bytes` of disk beyond retention. 0 turns it off.
    pub recycled_segments_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            flush_round_bytes_max: 64 << 20,
            zero_ahead_bytes: 8 << 20,
            recycled_segments_max: 1,
        }
    }
}
