//! A partition as its owning shard sees it: the log plus idempotent-producer state. Only the
//! owning shard touches it (it is `Rc`, not `Send`).

pub mod producer_state;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::storage::PartitionLog;
pub use producer_state::{ProducerStates, SequenceCheck};

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub topic_id: uuid::Uuid,
    pub log: Rc<PartitionLog>,
    pub producers: RefCell<ProducerStates>,
}

impl Partition {
    /// Rebuilds producer state from the log's batch headers (the log is the source of truth;
    /// it survives `kill -9` because only durable batches are recovered).
    pub async fn open(
        topic: Arc<str>,
        index: i32,
        topic_id: uuid::Uuid,
        log: Rc<PartitionLog>,
    ) -> Result<Partition, crate::storage::StorageError> {
        let mut producers = ProducerStates::default();
        let start = log.log_start_offset().get();
        log.scan_headers(start, &mut |h| producers.replay(h))
            .await?;
        Ok(Partition {
            topic,
            index,
            topic_id,
            log,
            producers: RefCell::new(producers),
        })
    }
}
