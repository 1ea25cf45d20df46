//! One file per Kafka API. Each states its supported version range at the top; the ranges
//! advertised by ApiVersions come from `protocol::api_versions::SUPPORTED`.

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_configs;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
