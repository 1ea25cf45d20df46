//! Request decoding and routing to the per-API handlers, and response framing.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
};
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

/// A request body decoded for one of the APIs we serve.
#[derive(Debug)]
pub enum RequestBody {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    ListOffsets(ListOffsetsRequest),
    InitProducerId(InitProducerIdRequest),
    CreatePartitions(CreatePartitionsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
}

/// What a request frame decodes to. Not boxed: it is built and consumed once per request.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum DecodedRequest {
    /// KIP-511: an ApiVersions request of a version we do not serve gets a v0 answer with
    /// UNSUPPORTED_VERSION.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
    Request {
        ctx: RequestCtx,
        body: RequestBody,
    },
}

/// Decodes one request frame (without its size prefix) exactly as `dispatch` does: ids, version
/// check against the advertised table, header, body. `Err` means Kafka closes the connection.
/// Pure (no shard), so the fuzz targets and tests can call it.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, String> {
    let Some((key, version, correlation_id)) = peek_request_ids(&frame) else {
        return Err("short request header".into());
    };
    let Ok(api_key) = ApiKey::try_from(key) else {
        return Err(format!("unknown api key {key}"));
    };
    let in_range = supported_range(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            return Ok(DecodedRequest::UnsupportedApiVersions { correlation_id });
        }
        return Err(format!("unsupported version {version} of {api_key:?}"));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|e| format!("undecodable request header: {e}"))?;
    let ctx = RequestCtx {
        api_key,
        api_version: version,
        correlation_id,
        client_id: header.client_id.as_ref().map(|s| s.to_string()),
    };
    let b = &mut body;
    let body = match api_key {
        ApiKey::ApiVersions => RequestBody::ApiVersions(decode(b, version)?),
        ApiKey::Metadata => RequestBody::Metadata(decode(b, version)?),
        ApiKey::CreateTopics => RequestBody::CreateTopics(decode(b, version)?),
        ApiKey::DeleteTopics => RequestBody::DeleteTopics(decode(b, version)?),
        ApiKey::ListOffsets => RequestBody::ListOffsets(decode(b, version)?),
        ApiKey::InitProducerId => RequestBody::InitProducerId(decode(b, version)?),
        ApiKey::CreatePartitions => RequestBody::CreatePartitions(decode(b, version)?),
        ApiKey::DeleteRecords => RequestBody::DeleteRecords(decode(b, version)?),
        ApiKey::DescribeConfigs => RequestBody::DescribeConfigs(decode(b, version)?),
        ApiKey::Produce => RequestBody::Produce(decode(b, version)?),
        ApiKey::Fetch => RequestBody::Fetch(decode(b, version)?),
        ApiKey::FindCoordinator => RequestBody::FindCoordinator(decode(b, version)?),
        ApiKey::JoinGroup => RequestBody::JoinGroup(decode(b, version)?),
        ApiKey::SyncGroup => RequestBody::SyncGroup(decode(b, version)?),
        ApiKey::Heartbeat => RequestBody::Heartbeat(decode(b, version)?),
        ApiKey::LeaveGroup => RequestBody::LeaveGroup(decode(b, version)?),
        ApiKey::OffsetCommit => RequestBody::OffsetCommit(decode(b, version)?),
        ApiKey::OffsetFetch => RequestBody::OffsetFetch(decode(b, version)?),
        ApiKey::ListGroups => RequestBody::ListGroups(decode(b, version)?),
        ApiKey::DescribeGroups => RequestBody::DescribeGroups(decode(b, version)?),
        ApiKey::DeleteGroups => RequestBody::DeleteGroups(decode(b, version)?),
        ApiKey::OffsetDelete => RequestBody::OffsetDelete(decode(b, version)?),
        ApiKey::ConsumerGroupHeartbeat => RequestBody::ConsumerGroupHeartbeat(decode(b, version)?),
        ApiKey::ConsumerGroupDescribe => RequestBody::ConsumerGroupDescribe(decode(b, version)?),
        other => return Err(format!("{other:?} is advertised but has no handler")),
    };
    Ok(DecodedRequest::Request { ctx, body })
}

/// Decodes the request (`decode_request`) and starts the handler.
/// Work that must happen in request order (produce staging) happens before this returns.
pub async fn dispatch(shard: &Rc<Shard>, frame: Bytes) -> Dispatched {
    let (ctx, body) = match decode_request(frame) {
        Err(why) => return Dispatched::Close(why),
        Ok(DecodedRequest::UnsupportedApiVersions { correlation_id }) => {
            let ctx = RequestCtx {
                api_key: ApiKey::ApiVersions,
                api_version: 0,
                correlation_id,
                client_id: None,
            };
            let resp = handlers::api_versions::unsupported_version_response();
            return Dispatched::Respond(async move { encode_response(&ctx, &resp) }.boxed_local());
        }
        Ok(DecodedRequest::Request { ctx, body }) => (ctx, body),
    };
    let shard = shard.clone();
    macro_rules! route {
        ($module:ident, $req:expr) => {{
            let req = $req;
            Dispatched::Respond(
                async move {
                    let resp = handlers::$module::handle(&shard, &ctx, req).await;
                    encode_response(&ctx, &resp)
                }
                .boxed_local(),
            )
        }};
    }
    match body {
        RequestBody::ApiVersions(r) => route!(api_versions, r),
        RequestBody::Metadata(r) => route!(metadata, r),
        RequestBody::CreateTopics(r) => route!(create_topics, r),
        RequestBody::DeleteTopics(r) => route!(delete_topics, r),
        RequestBody::ListOffsets(r) => route!(list_offsets, r),
        RequestBody::InitProducerId(r) => route!(init_producer_id, r),
        RequestBody::CreatePartitions(r) => route!(create_partitions, r),
        RequestBody::DeleteRecords(r) => route!(delete_records, r),
        RequestBody::DescribeConfigs(r) => route!(describe_configs, r),
        RequestBody::FindCoordinator(r) => route!(find_coordinator, r),
        RequestBody::JoinGroup(r) => route!(join_group, r),
        RequestBody::SyncGroup(r) => route!(sync_group, r),
        RequestBody::Heartbeat(r) => route!(heartbeat, r),
        RequestBody::LeaveGroup(r) => route!(leave_group, r),
        RequestBody::OffsetCommit(r) => route!(offset_commit, r),
        RequestBody::OffsetFetch(r) => route!(offset_fetch, r),
        RequestBody::ListGroups(r) => route!(list_groups, r),
        RequestBody::DescribeGroups(r) => route!(describe_groups, r),
        RequestBody::DeleteGroups(r) => route!(delete_groups, r),
        RequestBody::OffsetDelete(r) => route!(offset_delete, r),
        RequestBody::ConsumerGroupHeartbeat(r) => route!(consumer_group_heartbeat, r),
        RequestBody::ConsumerGroupDescribe(r) => route!(consumer_group_describe, r),
        RequestBody::Produce(r) => handlers::produce::dispatch(&shard, ctx, r).await,
        RequestBody::Fetch(r) => {
            Dispatched::Respond(handlers::fetch::handle(shard, ctx, r).boxed_local())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;

    /// Every (api, version) ApiVersions advertises reaches a decoder: a missing match arm
    /// would close every connection that uses it.
    #[test]
    fn every_advertised_api_has_a_decoder() {
        for (key, lo, hi) in crate::protocol::api_versions::SUPPORTED {
            for v in *lo..=*hi {
                let mut h = RequestHeader::default();
                h.request_api_key = *key as i16;
                h.request_api_version = v;
                h.correlation_id = 1;
                h.client_id = Some(StrBytes::from_static_str("t"));
                let mut buf = BytesMut::new();
                h.encode(&mut buf, key.request_header_version(v))
                    .expect("header encodes");
                // An empty body fails to decode (or decodes); either way not "no handler".
                if let Err(why) = decode_request(buf.freeze()) {
                    assert!(!why.contains("no handler"), "{key:?} v{v}: {why}");
                }
            }
        }
    }
}
