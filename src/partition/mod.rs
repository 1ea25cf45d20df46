//! A partition as its owning shard sees it: the log plus idempotent-producer state. Only the
//! owning shard touches it (it is `Rc`, not `Send`).

pub mod producer_state;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::storage::PartitionLog;
pub use producer_state::{ProducerStates, SequenceCheck};

/// Snapshot of producer state, written at clean shutdown and periodically when nothing is
/// staged, so opening a partition scans only the log after it.
const SNAPSHOT_FILE: &str = "producer.snapshot";

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    /// The snapshot covers every batch below this offset.
    next_offset: i64,
    producers: ProducerStates,
}

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub topic_id: uuid::Uuid,
    pub dir: PathBuf,
    pub log: Rc<PartitionLog>,
    pub producers: RefCell<ProducerStates>,
}

impl Partition {
    /// Loads producer state: the snapshot if it is usable, then the batch headers after it
    /// (the log is the source of truth; it survives `kill -9` as far as it was durable).
    pub async fn open(
        topic: Arc<str>,
        index: i32,
        topic_id: uuid::Uuid,
        dir: PathBuf,
        log: Rc<PartitionLog>,
    ) -> Result<Partition, crate::storage::StorageError> {
        let start = log.log_start_offset().get();
        let end = log.log_end_offset().get();
        let snapshot = std::fs::read(dir.join(SNAPSHOT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
            // A snapshot past the recovered end covers batches a crash lost: ignore it.
            .filter(|s| s.next_offset <= end);
        let (mut producers, from) = match snapshot {
            Some(s) => (s.producers, s.next_offset.max(start)),
            None => (ProducerStates::default(), start),
        };
        log.scan_headers(from, &mut |h| {
            if h.base_offset >= from {
                producers.replay(h)
            }
        })
        .await?;
        Ok(Partition {
            topic,
            index,
            topic_id,
            dir,
            log,
            producers: RefCell::new(producers),
        })
    }

    /// Writes the producer-state snapshot if nothing is staged (log end == high watermark).
    /// Small and rare, so blocking file I/O is acceptable.
    pub fn write_snapshot(&self) -> std::io::Result<bool> {
        let end = self.log.log_end_offset().get();
        if self.log.high_watermark().get() != end || !self.dir.exists() {
            return Ok(false);
        }
        let snap = Snapshot {
            next_offset: end,
            producers: self.producers.borrow().clone(),
        };
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(
            &mut f,
            &serde_json::to_vec(&snap).map_err(std::io::Error::other)?,
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        Ok(true)
    }

    /// Clean close: flush the log, then snapshot producer state.
    pub async fn close(&self) -> Result<(), crate::storage::StorageError> {
        self.log.close().await?;
        if let Err(e) = self.write_snapshot() {
            tracing::warn!(topic = %self.topic, partition = self.index, "producer snapshot failed: {e}");
        }
        Ok(())
    }
}
