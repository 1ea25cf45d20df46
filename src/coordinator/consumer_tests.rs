//! KIP-848 consumer group state machine, with explicit `now`.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::assignor::Assignment;
use super::consumer::{CgRequest, CgResponse, TopicsView, LEAVE_EPOCH, LEAVE_STATIC_EPOCH};
use super::group::{GroupState, GroupTable, Limits};
use super::tests::who;
use crate::protocol::ErrorCode;

const G: &str = "cg";

fn tid() -> Uuid {
    Uuid::from_bytes([7; 16])
}

fn topics(partitions: i32) -> TopicsView {
    TopicsView::from([
        ("t".to_string(), (tid(), partitions)),
        ("other".to_string(), (Uuid::from_bytes([9; 16]), 2)),
    ])
}

fn table() -> GroupTable {
    GroupTable::new(Limits {
        consumer_session_timeout_ms: 10_000,
        ..Limits::default()
    })
}

fn parts(a: &Option<Assignment>) -> BTreeSet<i32> {
    a.as_ref()
        .and_then(|a| a.get(&tid()).cloned())
        .unwrap_or_default()
}

fn owned(ps: &[i32]) -> Option<Assignment> {
    let mut a = Assignment::new();
    if !ps.is_empty() {
        a.insert(tid(), ps.iter().copied().collect());
    }
    Some(a)
}

fn join(member: &str) -> CgRequest {
    CgRequest {
        version: 1,
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_names: Some(vec!["t".into()]),
        owned: owned(&[]),
        ..CgRequest::default()
    }
}

fn beat(member: &str, epoch: i32, own: &[i32]) -> CgRequest {
    CgRequest {
        version: 1,
        group_id: G.into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned(own),
        ..CgRequest::default()
    }
}

fn hb(t: &mut GroupTable, req: CgRequest, now: i64) -> CgResponse {
    t.consumer_heartbeat(0, req, &topics(6), now)
}

fn ok(r: &CgResponse) {
    assert_eq!(r.error, ErrorCode::None, "{r:?}");
}

#[test]
fn second_member_gets_partitions_only_after_the_first_revokes_them() {
    let mut t = table();
    let a = hb(&mut t, join("a"), 0);
    ok(&a);
    assert_eq!(parts(&a.assignment), (0..6).collect());
    let ea = a.member_epoch;
    assert!(ea > 0);

    let b = hb(&mut t, join("b"), 10);
    ok(&b);
    assert!(b.member_epoch > ea, "the group epoch moved");
    assert!(parts(&b.assignment).is_empty(), "a still owns everything");

    // a learns it must revoke three partitions and stays at its epoch meanwhile.
    let a2 = hb(&mut t, beat("a", ea, &[0, 1, 2, 3, 4, 5]), 20);
    ok(&a2);
    assert_eq!(
        a2.member_epoch, ea,
        "epoch kept until the revocation is acknowledged"
    );
    let keep = parts(&a2.assignment);
    assert_eq!(keep.len(), 3);

    // b still waits: a has not acknowledged.
    let b2 = hb(&mut t, beat("b", b.member_epoch, &[]), 30);
    ok(&b2);
    assert!(b2.assignment.is_none() || parts(&b2.assignment).is_empty());

    // a acknowledges (owns only what it keeps) and moves to the new epoch.
    let own_a: Vec<i32> = keep.iter().copied().collect();
    let a3 = hb(&mut t, beat("a", ea, &own_a), 40);
    ok(&a3);
    assert_eq!(a3.member_epoch, b.member_epoch);

    // now b receives the released partitions.
    let b3 = hb(&mut t, beat("b", b.member_epoch, &[]), 50);
    ok(&b3);
    let got_b = parts(&b3.assignment);
    assert_eq!(got_b.len(), 3);
    assert!(got_b.is_disjoint(&keep));
    assert_eq!(t.groups[G].state, GroupState::Stable);
    assert_eq!(t.groups[G].state_name(), "Stable");
}

#[test]
fn epochs_are_fenced_and_a_lost_response_is_tolerated() {
    let mut t = table();
    let a = hb(&mut t, join("a"), 0);
    let e = a.member_epoch;
    assert_eq!(
        hb(&mut t, beat("a", e + 1, &[]), 1).error,
        ErrorCode::FencedMemberEpoch
    );
    assert_eq!(
        hb(&mut t, beat("nobody", e, &[]), 1).error,
        ErrorCode::UnknownMemberId
    );
    // b joins: a revokes three partitions, acknowledges, and moves to the new epoch.
    let b = hb(&mut t, join("b"), 2);
    let a2 = hb(&mut t, beat("a", e, &[0, 1, 2, 3, 4, 5]), 3);
    let keep: Vec<i32> = parts(&a2.assignment).into_iter().collect();
    let a3 = hb(&mut t, beat("a", e, &keep), 4);
    assert_eq!(a3.member_epoch, b.member_epoch);
    // a's response was lost: it heartbeats with the previous epoch and owns a subset: fine.
    let again = hb(&mut t, beat("a", e, &keep), 5);
    ok(&again);
    assert_eq!(again.member_epoch, b.member_epoch);
    // the previous epoch while owning partitions it may not own: fenced.
    assert_eq!(
        hb(&mut t, beat("a", e, &[0, 1, 2, 3, 4, 5]), 6).error,
        ErrorCode::FencedMemberEpoch
    );
}

#[test]
fn a_silent_member_is_fenced_after_the_session_timeout() {
    let mut t = table();
    let a = hb(&mut t, join("a"), 0);
    let b = hb(&mut t, join("b"), 0);
    let a2 = hb(&mut t, beat("a", a.member_epoch, &[0, 1, 2, 3, 4, 5]), 100);
    let keep: Vec<i32> = parts(&a2.assignment).into_iter().collect();
    hb(&mut t, beat("a", a.member_epoch, &keep), 200);
    let b2 = hb(&mut t, beat("b", b.member_epoch, &[]), 300);
    assert_eq!(parts(&b2.assignment).len(), 3);
    // b goes silent; a keeps heartbeating.
    for now in (1_000..=12_000).step_by(1_000) {
        let e = t.groups[G].consumer.as_ref().unwrap().members["a"].member_epoch;
        let own: Vec<i32> = t.groups[G].consumer.as_ref().unwrap().members["a"].assigned[&tid()]
            .iter()
            .copied()
            .collect();
        ok(&hb(&mut t, beat("a", e, &own), now));
        t.tick_consumer_groups(now);
    }
    let cg = t.groups[G].consumer.as_ref().unwrap();
    assert!(!cg.members.contains_key("b"), "b fenced");
    assert_eq!(
        cg.members["a"].assigned[&tid()].len(),
        6,
        "a took b's partitions"
    );
}

#[test]
fn static_member_rejoins_with_its_partitions_and_no_rebalance() {
    let mut t = table();
    let mut ja = join("a1");
    ja.instance_id = Some("inst".into());
    let a = hb(&mut t, ja, 0);
    let group_epoch = t.groups[G].consumer.as_ref().unwrap().group_epoch;
    // temporary leave
    let mut leave = beat("a1", a.member_epoch, &[0, 1, 2, 3, 4, 5]);
    leave.member_epoch = LEAVE_STATIC_EPOCH;
    leave.instance_id = Some("inst".into());
    assert_eq!(hb(&mut t, leave, 10).member_epoch, LEAVE_STATIC_EPOCH);
    // a1 left temporarily, so a new incarnation with the same instance id takes over.
    let mut jb = join("a2");
    jb.instance_id = Some("inst".into());
    let a2 = hb(&mut t, jb, 20);
    ok(&a2);
    assert_eq!(a2.member_epoch, a.member_epoch);
    assert_eq!(parts(&a2.assignment), (0..6).collect());
    assert_eq!(
        t.groups[G].consumer.as_ref().unwrap().group_epoch,
        group_epoch,
        "no rebalance"
    );
    // while a2 is active, a third incarnation is refused.
    let mut jc = join("a3");
    jc.instance_id = Some("inst".into());
    assert_eq!(hb(&mut t, jc, 30).error, ErrorCode::UnreleasedInstanceId);
}

#[test]
fn leaving_frees_partitions_and_commits_check_epochs() {
    let mut t = table();
    let a = hb(&mut t, join("a"), 0);
    let e = a.member_epoch;
    assert_eq!(t.check_consumer_member(G, "a", e), Some(Ok(())));
    assert_eq!(
        t.check_consumer_member(G, "a", e - 1),
        Some(Err(ErrorCode::StaleMemberEpoch))
    );
    assert_eq!(
        t.check_consumer_member(G, "a", e + 1),
        Some(Err(ErrorCode::FencedMemberEpoch))
    );
    assert_eq!(
        t.check_consumer_member(G, "x", e),
        Some(Err(ErrorCode::UnknownMemberId))
    );
    // an OffsetCommit older than v9 from a KIP-848 member
    assert_eq!(
        t.check_commit(0, G, who("a", None, e, 8), 0),
        Err(ErrorCode::UnsupportedVersion)
    );
    assert_eq!(t.check_commit(0, G, who("a", None, e, 9), 0), Ok(()));
    let mut leave = beat("a", e, &[]);
    leave.member_epoch = LEAVE_EPOCH;
    assert_eq!(hb(&mut t, leave, 1).member_epoch, LEAVE_EPOCH);
    assert_eq!(t.groups[G].state, GroupState::Empty);
    assert_eq!(t.groups[G].state_name(), "Empty");
    // an empty consumer group takes admin commits
    assert_eq!(t.check_commit(0, G, who("", None, -1, 9), 0), Ok(()));
    assert_eq!(t.check_consumer_member("classic-or-missing", "a", 1), None);
}

#[test]
fn bad_heartbeats_get_kafka_errors() {
    let mut t = table();
    let mut r = join("");
    assert_eq!(hb(&mut t, r.clone(), 0).error, ErrorCode::InvalidRequest);
    r.version = 0;
    let v0 = hb(&mut t, r, 0);
    ok(&v0);
    assert!(
        v0.member_id.is_some_and(|m| !m.is_empty()),
        "v0: the coordinator names the member"
    );
    let mut r = join("m");
    r.server_assignor = Some("sticky".into());
    assert_eq!(hb(&mut t, r, 0).error, ErrorCode::UnsupportedAssignor);
    let mut r = join("m");
    r.subscribed_names = None;
    r.subscribed_regex = Some("t(".into());
    assert_eq!(hb(&mut t, r, 0).error, ErrorCode::InvalidRegularExpression);
    let mut r = join("m");
    r.owned = owned(&[1]);
    assert_eq!(hb(&mut t, r, 0).error, ErrorCode::InvalidRequest);
    let mut r = join("m");
    r.subscribed_names = Some(vec!["x".repeat(1 << 20), "y".into()]);
    assert_eq!(hb(&mut t, r, 0).error, ErrorCode::InvalidRequest);
    let mut r = beat("m", -3, &[]);
    r.owned = None;
    assert_eq!(hb(&mut t, r, 0).error, ErrorCode::InvalidRequest);
}

#[test]
fn regex_subscription_and_topic_growth() {
    let mut t = table();
    let mut r = join("a");
    r.subscribed_names = None;
    r.subscribed_regex = Some("t|oth.*".into());
    let a = hb(&mut t, r, 0);
    ok(&a);
    let a = a.assignment.expect("assignment");
    assert_eq!(
        a.values().map(BTreeSet::len).sum::<usize>(),
        8,
        "t (6) and other (2)"
    );
    // t grows to 8 partitions: the group epoch moves and a gets the new ones.
    let e = t.groups[G].consumer.as_ref().unwrap().members["a"].member_epoch;
    let mut b = beat("a", e, &[]);
    b.owned = Some(a);
    let r = t.consumer_heartbeat(0, b, &topics(8), 10);
    ok(&r);
    assert!(r.member_epoch > e);
    assert_eq!(parts(&r.assignment).len(), 8);
}

#[test]
fn classic_and_consumer_groups_do_not_mix() {
    let mut t = table();
    ok(&hb(&mut t, join("a"), 0));
    let j = super::membership::JoinRequest {
        group_id: G.into(),
        member_id: String::new(),
        instance_id: None,
        client_id: "c".into(),
        client_host: String::new(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::from_static(b"m"))],
        require_known_member_id: true,
        supports_skip_assignment: false,
    };
    match t.join(0, j, 0) {
        super::group::Reply::Now(o) => assert_eq!(o.error, ErrorCode::InconsistentGroupProtocol),
        super::group::Reply::Later(_) => {
            panic!("joined a consumer group with the classic protocol")
        }
    }
    assert_eq!(t.groups[G].group_type(), "consumer");
}

#[test]
fn offset_delete_refuses_topics_a_consumer_group_subscribes_to() {
    let mut t = table();
    let mut r = join("a");
    r.subscribed_regex = Some("oth.*".into());
    ok(&hb(&mut t, r, 0));
    let wanted = vec![
        ("t".to_string(), vec![0]),
        ("other".to_string(), vec![1]),
        ("free".to_string(), vec![0]),
    ];
    let (code, per, _) = t.delete_offsets(G, &wanted);
    assert_eq!(code, ErrorCode::None);
    let codes: Vec<ErrorCode> = per.iter().map(|(_, _, c)| *c).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::GroupSubscribedToTopic,
            ErrorCode::GroupSubscribedToTopic,
            ErrorCode::None
        ]
    );
}
