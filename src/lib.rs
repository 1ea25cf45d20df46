//! Tidewater: a Kafka-API-compatible broker, one pinned glommio executor per core.
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod partition;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod storage;
