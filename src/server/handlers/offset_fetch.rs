//! OffsetFetch, versions 1..=9 (v8: several groups per request; v9: KIP-848 members fetch
//! with their member id and epoch, checked like commits). Partitions without a
//! committed offset answer -1. `require_stable` needs no waiting: there are no transactional
//! offset commits yet.

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator;
use crate::coordinator::offsets::FetchedOffset;
use crate::protocol::ErrorCode;
use crate::server::dispatch::RequestCtx;
use crate::shard::Shard;

type Wanted = Option<Vec<(String, Vec<i32>)>>;
/// (partition, offset, leader epoch, metadata) rows of one topic.
type TopicRows = (String, Vec<(i32, i64, i32, String)>);

/// (member id, member epoch) of a v9 fetch from a consumer group member.
type Member = Option<(String, i32)>;

async fn fetch(
    shard: &Rc<Shard>,
    group_id: &str,
    wanted: Wanted,
    member: Member,
) -> Result<Vec<FetchedOffset>, ErrorCode> {
    let gid = group_id.to_string();
    coordinator::with_group(shard, group_id, move |s, _| async move {
        let table = s.coordinator.table.borrow();
        if let Some((member_id, epoch)) = &member {
            if let Some(Err(e)) = table.check_consumer_member(&gid, member_id, *epoch) {
                return Err(e);
            }
        }
        Ok(table.fetch_offsets(&gid, wanted.as_deref()))
    })
    .await
    .and_then(|r| r)
}

/// Groups fetched rows by topic, in first-seen order.
fn by_topic(rows: Vec<FetchedOffset>) -> Vec<TopicRows> {
    let mut out: Vec<TopicRows> = Vec::new();
    for (t, p, o, e, m) in rows {
        match out.iter_mut().find(|(n, _)| *n == t) {
            Some((_, v)) => v.push((p, o, e, m)),
            None => out.push((t, vec![(p, o, e, m)])),
        }
    }
    out
}

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestCtx,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = ctx.api_version;
    let mut r = OffsetFetchResponse::default();
    if v >= 8 {
        for g in req.groups {
            let wanted: Wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let member: Member = if v >= 9 {
                let id = g.member_id.as_ref().map(|s| s.to_string());
                match (id, g.member_epoch) {
                    (None, e) if e < 0 => None,
                    (id, e) => Some((id.unwrap_or_default(), e)),
                }
            } else {
                None
            };
            let mut rg = OffsetFetchResponseGroup::default();
            match fetch(shard, &g.group_id.0, wanted, member).await {
                Ok(rows) => {
                    for (t, ps) in by_topic(rows) {
                        let mut rt = OffsetFetchResponseTopics::default();
                        rt.name = TopicName(StrBytes::from_string(t));
                        for (p, o, e, m) in ps {
                            let mut rp = OffsetFetchResponsePartitions::default();
                            rp.partition_index = p;
                            rp.committed_offset = o;
                            rp.committed_leader_epoch = e;
                            rp.metadata = Some(StrBytes::from_string(m));
                            rt.partitions.push(rp);
                        }
                        rg.topics.push(rt);
                    }
                }
                Err(e) => rg.error_code = e.code(),
            }
            rg.group_id = GroupId(g.group_id.0);
            r.groups.push(rg);
        }
        return r;
    }
    let wanted: Wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let asked = wanted.clone();
    match fetch(shard, &req.group_id.0, wanted, None).await {
        Ok(rows) => {
            for (t, ps) in by_topic(rows) {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(StrBytes::from_string(t));
                for (p, o, e, m) in ps {
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.committed_offset = o;
                    if v >= 5 {
                        rp.committed_leader_epoch = e;
                    }
                    rp.metadata = Some(StrBytes::from_string(m));
                    rt.partitions.push(rp);
                }
                r.topics.push(rt);
            }
        }
        Err(e) => {
            if v >= 2 {
                r.error_code = e.code();
            }
            // v1 has no top-level error: report it on every partition asked for.
            for (t, ps) in asked.unwrap_or_default() {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(StrBytes::from_string(t));
                for p in ps {
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = p;
                    rp.committed_offset = -1;
                    rp.metadata = Some(StrBytes::default());
                    rp.error_code = e.code();
                    rt.partitions.push(rp);
                }
                r.topics.push(rt);
            }
        }
    }
    r
}
