//! ApiVersions, versions 0..=3. Unknown versions get a v0 answer with UNSUPPORTED_VERSION and
//! the full list (KIP-511), handled in `dispatch`.

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::api_versions::SUPPORTED;
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect()
}

pub async fn handle(
    _shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    // No supported/finalized features: Kafka leaves those tagged fields out when empty, and the
    // codec does the same, which keeps librdkafka 2.0.2 (kcat) parsing v3 replies.
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_list();
    r
}

pub fn unsupported_version_response() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ErrorCode::UnsupportedVersion.code();
    r.api_keys = api_list();
    r
}
