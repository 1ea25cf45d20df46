//! OffsetCommit, versions 2..=9 (v9: KIP-848 members commit with their member epoch). A commit is acknowledged once its records are durable in
//! `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::coordinator::compaction::CommitInFlight;
use crate::coordinator::offsets::{CommitEntry, Committer};
use crate::coordinator::{self, persist};
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::server::topics::now_ms;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let cat = shard.catalog();
    // Per entry: Ok(index into `valid`) or an error found here.
    let mut slots: Vec<Result<usize, ErrorCode>> = Vec::new();
    let mut valid: Vec<CommitEntry> = Vec::new();
    for t in &req.topics {
        let meta = cat.topics.get(t.name.0.as_str());
        for p in &t.partitions {
            let known = meta.is_some_and(|m| {
                p.partition_index >= 0 && (p.partition_index as usize) < m.partitions.len()
            });
            if !known {
                slots.push(Err(ErrorCode::UnknownTopicOrPartition));
                continue;
            }
            slots.push(Ok(valid.len()));
            valid.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|s| s.to_string()),
            });
        }
    }
    let member_id = req.member_id.to_string();
    let instance_id = if v >= 7 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let generation = req.generation_id_or_member_epoch;
    let n = valid.len();
    let gid = group_id.clone();
    let codes = coordinator::with_group(shard, &group_id, move |s, partition| async move {
        let now = now_ms();
        let who = Committer {
            member_id: &member_id,
            instance_id: instance_id.as_deref(),
            generation,
            api_version: v,
        };
        let checked = s
            .coordinator
            .table
            .borrow_mut()
            .check_commit(partition, &gid, who, now);
        if let Err(e) = checked {
            return vec![e; valid.len()];
        }
        let (recs, mut codes) = s
            .coordinator
            .table
            .borrow()
            .commit_records(partition, &gid, &valid, now);
        // Staged synchronously (in order), acknowledged once durable; compaction of this
        // partition waits until it is applied.
        let _in_flight = CommitInFlight::new(&s, partition);
        match persist::append(&s, recs, now).await {
            Ok(()) => s
                .coordinator
                .table
                .borrow_mut()
                .apply_commit(partition, &gid, &valid, &codes, now),
            Err(e) => codes.iter_mut().for_each(|c| {
                if *c == ErrorCode::None {
                    *c = e
                }
            }),
        }
        codes
    })
    .await
    .unwrap_or_else(|e| vec![e; n]);
    let mut r = OffsetCommitResponse::default();
    let mut i = 0;
    for t in req.topics {
        let mut rt = OffsetCommitResponseTopic::default();
        rt.name = t.name;
        for p in t.partitions {
            let code = match slots.get(i) {
                Some(Ok(j)) => codes
                    .get(*j)
                    .copied()
                    .unwrap_or(ErrorCode::UnknownServerError),
                Some(Err(e)) => *e,
                None => ErrorCode::UnknownServerError,
            };
            i += 1;
            let mut rp = OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = code.code();
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    r
}
