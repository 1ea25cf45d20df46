//! FindCoordinator, versions 0..=4 (v4 batches `coordinator_keys`). Groups (key type 0) are
//! coordinated by this broker; transactions (key type 1) are not implemented yet.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator;
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let v = ctx.api_version;
    let keys: Vec<StrBytes> = if v >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let error = match req.key_type {
            0 if key.is_empty() => ErrorCode::InvalidRequest,
            0 => match coordinator::locate(shard, &key).await {
                Ok(_) => ErrorCode::None,
                Err(e) => e,
            },
            1 => ErrorCode::CoordinatorNotAvailable,
            _ => ErrorCode::InvalidRequest,
        };
        let mut c = Coordinator::default();
        c.key = key;
        c.error_code = error.code();
        if error == ErrorCode::None {
            c.node_id = BrokerId(shard.config.node_id);
            c.host = StrBytes::from_string(shard.config.advertised_host.clone());
            c.port = shard.config.advertised_port;
        } else {
            c.node_id = BrokerId(-1);
            c.port = -1;
            c.error_message = Some(StrBytes::from_string(format!("{error:?}")));
        }
        out.push(c);
    }
    let mut r = FindCoordinatorResponse::default();
    if v >= 4 {
        r.coordinators = out;
    } else if let Some(c) = out.pop() {
        r.error_code = c.error_code;
        r.node_id = c.node_id;
        r.host = c.host;
        r.port = c.port;
        if v >= 1 {
            r.error_message = c.error_message;
        }
    }
    r
}
