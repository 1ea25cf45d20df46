//! Idempotent producer state per partition: for each producer id, its epoch and the last
//! `BATCHES_CACHED_MAX` batches (sequence range and offsets), as Kafka keeps them.

use std::collections::{HashMap, VecDeque};

use crate::protocol::ErrorCode;
use crate::storage::batch::BatchHeader;

/// Kafka keeps the last 5 batches per producer (max.in.flight.requests.per.connection <= 5).
pub const BATCHES_CACHED_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<CachedBatch>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already written: answer success with the original offsets.
    Duplicate(CachedBatch),
    Reject(ErrorCode),
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Decides what to do with a batch before it is appended.
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state was removed with old segments): accept.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        if h.producer_epoch > entry.epoch {
            // A bumped epoch starts its sequences again at 0.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        let last_seq = h.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate(*b);
        }
        match entry.batches.back() {
            Some(last) if h.base_sequence != next_seq(last.last_seq) => {
                // Kafka reports an older, uncached sequence as a duplicate too; a gap as out of order.
                let oldest = entry.batches.front().map(|b| b.first_seq).unwrap_or(0);
                if h.base_sequence < oldest && h.base_sequence >= 0 && last.last_seq >= oldest {
                    SequenceCheck::Reject(ErrorCode::DuplicateSequenceNumber)
                } else {
                    SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
                }
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch written at `base_offset` (header base offset is ignored).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_CACHED_MAX {
            entry.batches.pop_front();
        }
        entry.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        });
    }

    /// Rebuild from a stored batch header (its base offset is the assigned one).
    pub fn replay(&mut self, h: &BatchHeader) {
        if h.is_control() {
            return;
        }
        let entry_epoch = self.producers.get(&h.producer_id).map(|e| e.epoch);
        if entry_epoch.is_some_and(|e| h.producer_epoch < e) {
            return;
        }
        self.record(h, h.base_offset);
    }

    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        BatchHeader {
            position: 0,
            size_bytes: 0,
            base_offset: 0,
            partition_leader_epoch: 0,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        let a = hdr(7, 0, 0, 3);
        assert_eq!(s.check(&a), SequenceCheck::Append);
        s.record(&a, 100);
        // Retry of the same batch: original offsets.
        match s.check(&a) {
            SequenceCheck::Duplicate(b) => assert_eq!((b.base_offset, b.last_offset), (100, 102)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        let gap = hdr(7, 0, 5, 1);
        assert_eq!(
            s.check(&gap),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        let next = hdr(7, 0, 3, 2);
        assert_eq!(s.check(&next), SequenceCheck::Append);
        s.record(&next, 103);
        let bumped = hdr(7, 1, 0, 1);
        assert_eq!(s.check(&bumped), SequenceCheck::Append);
        s.record(&bumped, 105);
        assert_eq!(
            s.check(&hdr(7, 0, 5, 1)),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            s.check(&hdr(8, 0, 42, 1)),
            SequenceCheck::Append,
            "unknown producers are accepted"
        );
    }
}
