//! InitProducerId, versions 0..=4, for idempotent producers (transactions come later).

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _ctx: &RequestCtx,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        // Transactions are not implemented yet: refuse clearly rather than pretend.
        r.error_code = ErrorCode::CoordinatorNotAvailable.code();
        return r;
    }
    if req.producer_id.0 >= 0 {
        // KIP-360: an idempotent producer bumping its epoch keeps its id.
        if req.producer_epoch < i16::MAX - 1 {
            r.producer_id = req.producer_id;
            r.producer_epoch = req.producer_epoch + 1;
            return r;
        }
    }
    match topics::allocate_producer_id(shard).await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!("producer id allocation failed: {e}");
            r.error_code = ErrorCode::UnknownServerError.code();
        }
    }
    r
}
