//! The single-node controller: the topic catalogue (names, ids, partition counts, placement on
//! shards, configs) and the producer-id allocator. Its state is owned by shard 0 and persisted in
//! `<data_dir>/__cluster/catalog.json`; every shard holds an immutable `Arc<Catalog>` snapshot,
//! replaced by shard 0 after each change (readers never lock).
//! The multi-node controller (Raft quorum) will replace the persistence here.

pub mod catalog;

pub use catalog::{Catalog, PartitionMeta, TopicMeta};
