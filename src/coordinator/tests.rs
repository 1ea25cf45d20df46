//! State-machine tests with explicit `now`.

use bytes::Bytes;
use futures::channel::oneshot;

use super::group::{GroupState, GroupTable, JoinOutcome, Limits, Reply, SyncOutcome};
use super::membership::JoinRequest;
use super::offsets::CommitEntry;
use super::offsets::Committer;
use super::sync::{SyncRequest, SyncStep};
use crate::protocol::ErrorCode;

pub(super) fn who<'a>(
    member_id: &'a str,
    instance_id: Option<&'static str>,
    generation: i32,
    api_version: i16,
) -> Committer<'a> {
    Committer {
        member_id,
        instance_id,
        generation,
        api_version,
    }
}

const G: &str = "g";

fn limits() -> Limits {
    Limits {
        initial_rebalance_delay_ms: 100,
        ..Limits::default()
    }
}

fn join_req(member: &str, instance: Option<&str>, meta: &'static [u8]) -> JoinRequest {
    JoinRequest {
        group_id: G.into(),
        member_id: member.into(),
        instance_id: instance.map(String::from),
        client_id: "c".into(),
        client_host: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(meta)),
            ("roundrobin".into(), Bytes::from_static(meta)),
        ],
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn now_reply<T>(r: Reply<T>) -> T {
    match r {
        Reply::Now(t) => t,
        Reply::Later(_) => panic!("expected an immediate reply"),
    }
}

fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(_) => panic!("expected a parked reply"),
    }
}

fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
    rx.try_recv()
        .expect("not cancelled")
        .expect("reply should be ready")
}

/// Dynamic member: MEMBER_ID_REQUIRED round trip, then a parked join.
fn join_dynamic(t: &mut GroupTable, now: i64) -> (String, oneshot::Receiver<JoinOutcome>) {
    let first = now_reply(t.join(0, join_req("", None, b"m"), now));
    assert_eq!(first.error, ErrorCode::MemberIdRequired);
    let id = first.member_id.clone();
    (id.clone(), later(t.join(0, join_req(&id, None, b"m"), now)))
}

fn sync(
    t: &mut GroupTable,
    member: &str,
    generation: i32,
    assign: Vec<(String, Bytes)>,
    now: i64,
) -> SyncStep {
    t.sync(
        SyncRequest {
            group_id: G.into(),
            member_id: member.into(),
            instance_id: None,
            generation,
            protocol_type: None,
            protocol_name: None,
            assignments: assign,
        },
        now,
    )
}

fn finish_persist(step: SyncStep) -> SyncOutcome {
    match step {
        SyncStep::Persist {
            mut own,
            deliveries,
            ..
        } => {
            for (tx, o) in deliveries {
                let _ = tx.send(o);
            }
            ready(&mut own)
        }
        _ => panic!("leader sync should persist"),
    }
}

/// Two members through join and sync; returns (leader, follower, generation).
fn stable_group(t: &mut GroupTable) -> (String, String, i32) {
    let (a, mut ra) = join_dynamic(t, 0);
    let (b, mut rb) = join_dynamic(t, 10);
    assert!(
        ra.try_recv().expect("alive").is_none(),
        "initial delay holds the join"
    );
    t.tick(50);
    assert!(ra.try_recv().expect("alive").is_none());
    t.tick(200);
    let ja = ready(&mut ra);
    let jb = ready(&mut rb);
    assert_eq!(ja.error, ErrorCode::None);
    assert_eq!(ja.generation, 1);
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty());
    let mut follower = match sync(t, &b, 1, vec![], 210) {
        SyncStep::Reply(r) => later(r),
        _ => panic!("follower waits"),
    };
    let leader = finish_persist(sync(
        t,
        &a,
        1,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
        220,
    ));
    assert_eq!(leader.assignment, Bytes::from_static(b"A"));
    assert_eq!(ready(&mut follower).assignment, Bytes::from_static(b"B"));
    assert_eq!(t.groups[G].state, GroupState::Stable);
    (a, b, 1)
}

#[test]
fn join_sync_heartbeat_and_leave() {
    let mut t = GroupTable::new(limits());
    let (a, b, gen) = stable_group(&mut t);
    assert_eq!(t.heartbeat(G, &a, None, gen, 300), ErrorCode::None);
    assert_eq!(
        t.heartbeat(G, &a, None, gen + 5, 300),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        t.heartbeat(G, "nobody", None, gen, 300),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        t.heartbeat("other", &a, None, gen, 300),
        ErrorCode::UnknownMemberId
    );
    // A clean leave rebalances at once: the remaining member is told to rejoin.
    assert_eq!(t.leave(G, &[(b.clone(), None)], 400), vec![ErrorCode::None]);
    assert_eq!(t.groups[G].state, GroupState::PreparingRebalance);
    assert_eq!(
        t.heartbeat(G, &a, None, gen, 410),
        ErrorCode::RebalanceInProgress
    );
    let mut ra = later(t.join(0, join_req(&a, None, b"m"), 420));
    let j = ready(&mut ra);
    assert_eq!(
        (j.error, j.generation, j.members.len()),
        (ErrorCode::None, 2, 1)
    );
    // The last member leaving empties the group.
    assert_eq!(t.leave(G, &[(a.clone(), None)], 500), vec![ErrorCode::None]);
    assert_eq!(t.groups[G].state, GroupState::Empty);
    assert!(!t.outbox.is_empty(), "the empty group is stored");
}

#[test]
fn session_expiry_rebalances() {
    let mut t = GroupTable::new(limits());
    let (a, b, gen) = stable_group(&mut t);
    // Only `a` heartbeats; `b` expires 10 s after its last sign of life.
    for now in (1000..=10_000).step_by(1000) {
        assert_eq!(t.heartbeat(G, &a, None, gen, now), ErrorCode::None);
        t.tick(now);
    }
    assert!(t.groups[G].members.contains_key(&b));
    t.tick(10_300);
    assert!(!t.groups[G].members.contains_key(&b), "b expired");
    assert_eq!(t.groups[G].state, GroupState::PreparingRebalance);
    let mut ra = later(t.join(0, join_req(&a, None, b"m"), 10_400));
    assert_eq!(ready(&mut ra).generation, gen + 1);
}

#[test]
fn static_member_rejoins_without_rebalance() {
    let mut t = GroupTable::new(limits());
    let mut r1 = later(t.join(0, join_req("", Some("i1"), b"m"), 0));
    let mut r2 = later(t.join(0, join_req("", Some("i2"), b"m"), 0));
    t.tick(500);
    let j1 = ready(&mut r1);
    let j2 = ready(&mut r2);
    let leader = finish_persist(sync(
        &mut t,
        &j1.member_id,
        1,
        vec![
            (j1.member_id.clone(), Bytes::from_static(b"P1")),
            (j2.member_id.clone(), Bytes::from_static(b"P2")),
        ],
        600,
    ));
    let SyncStep::Reply(Reply::Now(s2)) = sync(&mut t, &j2.member_id, 1, vec![], 600) else {
        panic!("stable group answers at once");
    };
    assert_eq!(
        (leader.assignment.as_ref(), s2.assignment.as_ref()),
        (&b"P1"[..], &b"P2"[..])
    );
    // i2 restarts (new process, empty member id) with the same metadata.
    let again = now_reply(t.join(0, join_req("", Some("i2"), b"m"), 700));
    assert_eq!(again.error, ErrorCode::None);
    assert_eq!(again.generation, 1, "no rebalance");
    assert_ne!(again.member_id, j2.member_id);
    assert_eq!(t.groups[G].state, GroupState::Stable);
    let SyncStep::Reply(Reply::Now(s)) = sync(&mut t, &again.member_id, 1, vec![], 710) else {
        panic!("stable");
    };
    assert_eq!(
        s.assignment,
        Bytes::from_static(b"P2"),
        "same partitions back"
    );
    // The old incarnation is fenced.
    assert_eq!(
        t.heartbeat(G, &j2.member_id, Some("i2"), 1, 720),
        ErrorCode::FencedInstanceId
    );
    // Changed metadata does trigger a rebalance.
    let r = t.join(0, join_req("", Some("i2"), b"changed"), 800);
    assert!(matches!(r, Reply::Later(_)));
    assert_eq!(t.groups[G].state, GroupState::PreparingRebalance);
}

#[test]
fn bad_input_gets_error_codes() {
    let mut t = GroupTable::new(limits());
    let mut r = join_req("", None, b"m");
    r.session_timeout_ms = 1;
    assert_eq!(
        now_reply(t.join(0, r, 0)).error,
        ErrorCode::InvalidSessionTimeout
    );
    assert_eq!(
        now_reply(t.join(0, join_req("ghost", None, b"m"), 0)).error,
        ErrorCode::UnknownMemberId
    );
    let (a, b, gen) = stable_group(&mut t);
    let mut other = join_req("", None, b"m");
    other.protocols = vec![("nope".into(), Bytes::new())];
    assert_eq!(
        now_reply(t.join(0, other, 300)).error,
        ErrorCode::InconsistentGroupProtocol
    );
    assert!(matches!(
        sync(&mut t, &b, gen + 1, vec![], 300),
        SyncStep::Reply(Reply::Now(SyncOutcome {
            error: ErrorCode::IllegalGeneration,
            ..
        }))
    ));
    // Commits: wrong generation, unknown member, simple commit refused for a live group.
    assert_eq!(
        t.check_commit(0, G, who(&a, None, gen + 1, 8), 300),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        t.check_commit(0, G, who("x", None, gen, 8), 300),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        t.check_commit(0, G, who("", None, -1, 8), 300),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(t.check_commit(0, G, who(&a, None, gen, 8), 300), Ok(()));
    assert_eq!(
        t.check_commit(0, "standalone", who("", None, -1, 8), 300),
        Ok(())
    );
    assert_eq!(t.delete_group(G).err(), Some(ErrorCode::NonEmptyGroup));
    assert_eq!(
        t.delete_group("missing").err(),
        Some(ErrorCode::GroupIdNotFound)
    );
}

#[test]
fn offsets_commit_fetch_expire_and_reload() {
    let mut t = GroupTable::new(Limits {
        offsets_retention_ms: 1000,
        ..limits()
    });
    assert_eq!(t.check_commit(3, G, who("", None, -1, 8), 0), Ok(()));
    let entries = vec![CommitEntry {
        topic: "t".into(),
        partition: 1,
        offset: 42,
        leader_epoch: -1,
        metadata: Some("m".into()),
    }];
    let (recs, codes) = t.commit_records(3, G, &entries, 0);
    t.apply_commit(3, G, &entries, &codes, 0);
    let wanted = vec![("t".to_string(), vec![0, 1])];
    let got = t.fetch_offsets(G, Some(&wanted));
    assert_eq!(got[0].2, -1, "unknown offsets are -1");
    assert_eq!(got[1].2, 42);
    // Reload from the records alone.
    let mut fresh = GroupTable::new(limits());
    for r in recs {
        let key = super::records::decode_key(r.key)
            .expect("key")
            .expect("known");
        fresh.replay(3, key, r.value, 5);
    }
    assert_eq!(fresh.fetch_offsets(G, None), t.fetch_offsets(G, None));
    // Tombstones delete.
    let dead = t.delete_group(G).expect("empty group deletes");
    for r in dead {
        let key = super::records::decode_key(r.key)
            .expect("key")
            .expect("known");
        fresh.replay(3, key, r.value, 6);
    }
    assert!(fresh.fetch_offsets(G, None).is_empty());
    // Retention: offsets of an empty group expire.
    let mut t = GroupTable::new(Limits {
        offsets_retention_ms: 1000,
        ..limits()
    });
    t.check_commit(0, G, who("", None, -1, 8), 0)
        .expect("simple commit");
    t.apply_commit(0, G, &entries, &[ErrorCode::None], 0);
    assert!(t.expire_offsets(500).is_empty());
    assert_eq!(
        t.expire_offsets(1000).len(),
        2,
        "offset and group tombstones"
    );
    assert!(!t.groups.contains_key(G));
}

#[test]
fn group_metadata_round_trips_through_the_log_format() {
    let mut t = GroupTable::new(limits());
    let (a, b, gen) = stable_group(&mut t);
    t.store_group(G);
    let rec = t.outbox.pop().expect("record");
    let mut fresh = GroupTable::new(limits());
    let key = super::records::decode_key(rec.key)
        .expect("key")
        .expect("known");
    fresh.replay(0, key, rec.value, 1000);
    let g = &fresh.groups[G];
    assert_eq!((g.state, g.generation), (GroupState::Stable, gen));
    assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    assert_eq!(g.members[&b].assignment, Bytes::from_static(b"B"));
    assert_eq!(fresh.heartbeat(G, &b, None, gen, 1100), ErrorCode::None);
}

#[test]
fn partition_matches_kafka() {
    // Kafka: Utils.abs("my-group".hashCode) % 50.
    assert_eq!(super::java_string_hash("my-group"), -1_906_497_762);
    assert_eq!(super::partition_for("my-group", 50), 36);
    assert_eq!(super::partition_for("test-group", 50), 12);
    assert_eq!(super::partition_for("", 50), 0);
    for g in ["a", "group-1", "ümlaut", "x".repeat(100).as_str()] {
        let p = super::partition_for(g, 50);
        assert!((0..50).contains(&p));
    }
}

#[test]
fn a_compaction_snapshot_replays_to_the_same_state() {
    let mut t = GroupTable::new(limits());
    let (a, _b, gen) = stable_group(&mut t);
    let mut history = Vec::new();
    // Many commits of few keys, a deleted group and a group on another partition.
    for i in 0..50i64 {
        let entries = vec![CommitEntry {
            topic: "t".into(),
            partition: (i % 3) as i32,
            offset: i,
            leader_epoch: 1,
            metadata: Some(format!("m{i}")),
        }];
        let (recs, codes) = t.commit_records(0, G, &entries, 100 + i);
        t.apply_commit(0, G, &entries, &codes, 100 + i);
        history.extend(recs);
    }
    t.check_commit(0, "gone", who("", None, -1, 8), 0)
        .expect("simple commit");
    let entries = vec![CommitEntry {
        topic: "t".into(),
        partition: 0,
        offset: 7,
        leader_epoch: -1,
        metadata: None,
    }];
    let (recs, codes) = t.commit_records(0, "gone", &entries, 0);
    t.apply_commit(0, "gone", &entries, &codes, 0);
    history.extend(recs);
    history.extend(t.delete_group("gone").expect("empty"));
    t.check_commit(1, "elsewhere", who("", None, -1, 8), 0)
        .expect("simple commit");
    t.apply_commit(1, "elsewhere", &entries, &[ErrorCode::None], 0);

    let snap = t.snapshot_records(0);
    assert_eq!(snap.len(), 1 + 3, "one group record and three live offsets");
    assert!(snap.len() * 10 < history.len());
    let mut fresh = GroupTable::new(limits());
    for r in snap {
        assert_eq!(r.partition, 0);
        let key = super::records::decode_key(r.key)
            .expect("key")
            .expect("known");
        fresh.replay(0, key, r.value, 5000);
    }
    assert_eq!(fresh.fetch_offsets(G, None), t.fetch_offsets(G, None));
    let (g, f) = (&t.groups[G], &fresh.groups[G]);
    assert_eq!(
        f.offsets, g.offsets,
        "commit timestamps kept (expiry unchanged)"
    );
    assert_eq!((f.generation, f.leader.as_deref()), (gen, Some(a.as_str())));
    assert!(!fresh.groups.contains_key("gone"));
    assert!(
        !fresh.groups.contains_key("elsewhere"),
        "other partitions are not restated"
    );
}
