//! Request decoding and routing to the per-API handlers, and response framing.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::handlers;
use crate::protocol::api_versions::supported_range;
use crate::protocol::frame::peek_request_ids;
use crate::shard::Shard;

/// An encoded response. `memory` holds the response's share of the shard's request-memory
/// budget until the connection has written it (large fetch responses).
pub struct Response {
    pub parts: Vec<Bytes>,
    pub memory: Option<glommio::sync::StaticPermit>,
}

impl From<Vec<Bytes>> for Response {
    fn from(parts: Vec<Bytes>) -> Self {
        Response {
            parts,
            memory: None,
        }
    }
}

/// What the connection does with a request.
pub enum Dispatched {
    /// The response (None: no response, as for acks=0) once the future resolves.
    Respond(LocalBoxFuture<'static, Option<Response>>),
    /// Kafka closes the connection for undecodable or unsupported requests.
    Close(String),
}

/// Per-request context handed to handlers.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// Encodes `[size][response header][body]`.
pub fn encode_response<R: Encodable>(ctx: &RequestCtx, resp: &R) -> Option<Response> {
    let header_version = ctx.api_key.response_header_version(ctx.api_version);
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    out.put_i32(ctx.correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields
    }
    if let Err(e) = resp.encode(&mut out, ctx.api_version) {
        // A broken invariant in a handler (a field set that the version cannot carry).
        tracing::error!(api = ?ctx.api_key, version = ctx.api_version, "response encoding failed: {e}");
        return None;
    }
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Some(vec![out.freeze()].into())
}

/// The encoded response header (without the size prefix) for hand-framed responses.
pub fn response_header(ctx: &RequestCtx) -> BytesMut {
    let mut out = BytesMut::with_capacity(16);
    out.put_i32(ctx.correlation_id);
    if ctx.api_key.response_header_version(ctx.api_version) >= 1 {
        out.put_u8(0);
    }
    out
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    T::decode(body, version).map_err(|e| format!("undecodable body: {e}"))
}

/// Decodes the header, checks the version against what we serve, and starts the handler.
/// Work that must happen in request order (produce staging) happens before this returns.
pub async fn dispatch(shard: &Rc<Shard>, frame: Bytes) -> Dispatched {
    let Some((key, version, correlation_id)) = peek_request_ids(&frame) else {
        return Dispatched::Close("short request header".into());
    };
    let Ok(api_key) = ApiKey::try_from(key) else {
        return Dispatched::Close(format!("unknown api key {key}"));
    };
    let in_range = supported_range(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with v0 and UNSUPPORTED_VERSION.
            let ctx = RequestCtx {
                api_key,
                api_version: 0,
                correlation_id,
                client_id: None,
            };
            let resp = handlers::api_versions::unsupported_version_response();
            return Dispatched::Respond(async move { encode_response(&ctx, &resp) }.boxed_local());
        }
        return Dispatched::Close(format!("unsupported version {version} of {api_key:?}"));
    }
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, api_key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => return Dispatched::Close(format!("undecodable request header: {e}")),
    };
    let ctx = RequestCtx {
        api_key,
        api_version: version,
        correlation_id,
        client_id: header.client_id.as_ref().map(|s| s.to_string()),
    };
    let shard = shard.clone();
    macro_rules! route {
        ($module:ident) => {
            match decode(&mut body, version) {
                Ok(req) => Dispatched::Respond(
                    async move {
                        let resp = handlers::$module::handle(&shard, &ctx, req).await;
                        encode_response(&ctx, &resp)
                    }
                    .boxed_local(),
                ),
                Err(why) => Dispatched::Close(why),
            }
        };
    }
    match api_key {
        ApiKey::ApiVersions => route!(api_versions),
        ApiKey::Metadata => route!(metadata),
        ApiKey::CreateTopics => route!(create_topics),
        ApiKey::DeleteTopics => route!(delete_topics),
        ApiKey::ListOffsets => route!(list_offsets),
        ApiKey::InitProducerId => route!(init_producer_id),
        ApiKey::CreatePartitions => route!(create_partitions),
        ApiKey::DeleteRecords => route!(delete_records),
        ApiKey::DescribeConfigs => route!(describe_configs),
        ApiKey::Produce => match decode(&mut body, version) {
            Ok(req) => handlers::produce::dispatch(&shard, ctx, req).await,
            Err(why) => Dispatched::Close(why),
        },
        ApiKey::Fetch => match decode(&mut body, version) {
            Ok(req) => Dispatched::Respond(handlers::fetch::handle(shard, ctx, req).boxed_local()),
            Err(why) => Dispatched::Close(why),
        },
        other => Dispatched::Close(format!("{other:?} is advertised but has no handler")),
    }
}
