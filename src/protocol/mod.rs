//! Kafka wire protocol: framing, header handling, the versions we advertise, and the
//! hand-framed Fetch response (the `kafka-protocol` encoder would copy record bytes).

pub mod api_versions;
pub mod errors;
pub mod fetch_response;
pub mod frame;
pub mod sendmsg;

pub use errors::ErrorCode;
