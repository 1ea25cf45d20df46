"""KIP-848 consumer groups (group.protocol=consumer) through confluent-kafka 2.16 (librdkafka
2.16): ConsumerGroupHeartbeat with server-side uniform and range assignors, incremental
rebalances, session-timeout fencing, offsets with member epochs, and bad heartbeats."""
import socket
import struct
import time
import uuid

import pytest

from helpers import consumer, create_topic, uvarint
from test_groups import Member, produce_values, three_members_scenario, wait_for

pytestmark = [pytest.mark.timeout(150)]

KIP848_CONFIG = "\n".join([
    '"offsets.topic.num.partitions" = 8',
    '"group.consumer.heartbeat.interval.ms" = 500',
    '"group.consumer.session.timeout.ms" = 6000',
])


@pytest.fixture
def kbroker(broker_factory):
    return broker_factory(cores=2, config=KIP848_CONFIG)


def member(tmp_path, b, topic, group, name, **kw):
    return Member(str(tmp_path), b, topic, group, name, protocol="consumer", **kw)


def test_kip848_three_members_split_six_partitions_rebalance_on_leave_and_on_kill(kbroker, topic, tmp_path):
    """The classic scenario with KIP-848 members: leaving is a heartbeat with epoch -1, and the
    killed member is fenced after group.consumer.session.timeout.ms (6 s here)."""
    three_members_scenario(kbroker.bootstrap, topic, tmp_path, "g848-" + uuid.uuid4().hex[:8], protocol="consumer",
                           broker_log=kbroker.log)


def test_kip848_incremental_rebalance_revokes_only_moved_partitions(kbroker, topic, tmp_path):
    b = kbroker.bootstrap
    create_topic(b, topic, 6)
    group = "g848-" + uuid.uuid4().hex[:8]
    a = member(tmp_path, b, topic, group, "ia")
    n = None
    try:
        wait_for(lambda: a.assignment() == set(range(6)), 40, "the first member owns all 6")
        n = member(tmp_path, b, topic, group, "in")
        wait_for(lambda: len(a.assignment()) == 3 and len(n.assignment()) == 3, 40, "an incremental 3/3 split")
        assert not (a.assignment() & n.assignment())
        revoked = set().union(*[set(e["parts"]) for e in a.events() if e["e"] == "revoke"])
        assert revoked == set(range(6)) - a.assignment(), "only the moved partitions were revoked"
        sent = produce_values(b, topic, "s", 300)
        wait_for(lambda: sent <= a.values() | n.values(), 40, "both read their partitions")
        n.stop()
        wait_for(lambda: a.assignment() == set(range(6)), 20, "the leaver's partitions come back")
        a.stop()
    finally:
        for m in (a, n):
            if m is not None and m.proc.poll() is None:
                m.kill9()


def test_kip848_static_member_rejoins_with_its_partitions(kbroker, topic, tmp_path):
    """A static member (group.instance.id) that closes leaves with epoch -2 and keeps its
    partitions; its next incarnation gets them back and the other member sees no rebalance."""
    b = kbroker.bootstrap
    create_topic(b, topic, 4)
    group = "g848-" + uuid.uuid4().hex[:8]
    a = member(tmp_path, b, topic, group, "sa", instance_id="inst-a")
    o = member(tmp_path, b, topic, group, "so", instance_id="inst-o")
    a2 = None
    try:
        wait_for(lambda: len(a.assignment()) == 2 and len(o.assignment()) == 2, 40, "2 partitions each")
        before = a.assignment()
        other_events = len(o.events())
        a.stop()
        a2 = member(tmp_path, b, topic, group, "sa2", instance_id="inst-a")
        wait_for(lambda: len(a2.assignment()) == 2, 20, "the restarted static member's partitions")
        assert a2.assignment() == before, "same instance id, same partitions"
        time.sleep(1)
        later = o.events()[other_events:]
        assert not [e for e in later if e["e"] in ("assign", "revoke", "lost")], f"rebalance seen: {later}"
        sent = produce_values(b, topic, "st", 100)
        wait_for(lambda: sent <= a2.values() | o.values(), 30, "both keep consuming")
        a2.stop()
        o.stop()
    finally:
        for m in (a, o, a2):
            if m is not None and m.proc.poll() is None:
                m.kill9()


def test_kip848_range_assignor_gives_contiguous_ranges(kbroker, topic, tmp_path):
    b = kbroker.bootstrap
    create_topic(b, topic, 4)
    group = "g848-" + uuid.uuid4().hex[:8]
    ms = [member(tmp_path, b, topic, group, f"r{i}", assignor="range") for i in range(2)]
    try:
        wait_for(lambda: sorted(len(m.assignment()) for m in ms) == [2, 2], 40, "2 partitions each")
        assert sorted(tuple(sorted(m.assignment())) for m in ms) == [(0, 1), (2, 3)]
        for m in ms:
            m.stop()
    finally:
        for m in ms:
            if m.proc.poll() is None:
                m.kill9()


def test_kip848_commits_resume_listing_and_broker_restart(kbroker, topic, tmp_path):
    """Offsets committed with member epochs (OffsetCommit v9) are where the next member starts;
    the group is listed with type consumer; a member survives a broker restart by rejoining
    (UNKNOWN_MEMBER_ID, then epoch 0) and keeps consuming."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient
    b = kbroker.bootstrap
    create_topic(b, topic, 2)
    first = produce_values(b, topic, "p", 100)
    group = "g848-" + uuid.uuid4().hex[:8]
    m = member(tmp_path, b, topic, group, "c1")
    m2 = None
    try:
        wait_for(lambda: first <= m.values(), 40, "the member reads everything")
        admin = AdminClient({"bootstrap.servers": b})  # kept alive while the request runs
        listed = admin.list_consumer_groups().result(timeout=20)
        mine = [g for g in listed.valid if g.group_id == group]
        assert mine and str(mine[0].type).endswith("CONSUMER"), [(g.group_id, str(g.type)) for g in listed.valid]
        # ConsumerGroupDescribe: the member, its epoch's assignment and the assignor
        desc = admin.describe_consumer_groups([group])[group].result(timeout=20)
        assert str(desc.type).endswith("CONSUMER") and str(desc.state).endswith("STABLE"), desc
        assert desc.partition_assignor == "uniform"
        assert len(desc.members) == 1
        got = {(tp.topic, tp.partition) for tp in desc.members[0].assignment.topic_partitions}
        assert got == {(topic, 0), (topic, 1)}
        m.stop()
        c = consumer(b, **{"group.id": group})
        try:
            committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=20)
        finally:
            c.close()
        assert sum(tp.offset for tp in committed) == 100, committed

        second = produce_values(b, topic, "q", 50)
        m2 = member(tmp_path, b, topic, group, "c2")
        wait_for(lambda: second <= m2.values(), 40, "the next member reads what came after")
        assert not (m2.values() & first), "resumed at the committed offsets"
        kbroker.restart()
        third = produce_values(b, topic, "r", 50)
        wait_for(lambda: third <= m2.values(), 60, "the member rejoins after a broker restart and keeps reading")
        m2.stop()
    finally:
        for x in (m, m2):
            if x is not None and x.proc.poll() is None:
                x.kill9()


# ---------------------------------------------------------------------------------------------
# bad input, raw frames

def cstr(s):
    if s is None:
        return b"\x00"
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def read_uvarint(buf, pos):
    shift = n = 0
    while True:
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return n, pos
        shift += 7


def call(port, api, ver, body, flexible=True):
    kstr = struct.pack(">h", 3) + b"bad"
    header = struct.pack(">hhi", api, ver, 11) + kstr + (b"\x00" if flexible else b"")
    req = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        r = s.recv(size, socket.MSG_WAITALL)
    assert struct.unpack(">i", r[:4])[0] == 11
    return r[5:] if flexible else r[4:]


def cg_heartbeat(port, group, member_id, epoch, topics=None, assignor=None, owned=None):
    body = cstr(group) + cstr(member_id) + struct.pack(">i", epoch) + cstr(None) + cstr(None)
    body += struct.pack(">i", 30000 if epoch == 0 else -1)
    if topics is None:
        body += b"\x00"
    else:
        body += uvarint(len(topics) + 1) + b"".join(cstr(t) for t in topics)
    body += cstr(None) + cstr(assignor)
    body += b"\x00" if owned is None else uvarint(1)  # owned: null, or an empty array
    body += b"\x00"
    r = call(port, 68, 1, body)
    err = struct.unpack(">h", r[4:6])[0]
    pos = 6
    n, pos = read_uvarint(r, pos)
    pos += max(n - 1, 0)
    n, pos = read_uvarint(r, pos)
    mid = r[pos:pos + n - 1].decode() if n else None
    pos += max(n - 1, 0)
    member_epoch = struct.unpack(">i", r[pos:pos + 4])[0]
    return err, mid, member_epoch


def test_kip848_bad_heartbeats_and_oversized_metadata_get_kafka_errors(kbroker, topic, tmp_path):
    b = kbroker.bootstrap
    port = kbroker.port
    create_topic(b, topic, 2)
    group = "g848-" + uuid.uuid4().hex[:8]
    real = member(tmp_path, b, topic, group, "real")
    try:
        wait_for(lambda: len(real.assignment()) == 2, 40, "the real member's assignment")
        # unknown member
        assert cg_heartbeat(port, group, "ghost-" + uuid.uuid4().hex, 3)[0] == 25
        # v1 without a member id
        assert cg_heartbeat(port, group, "", 0, topics=[topic], owned=[])[0] == 42
        # an assignor the broker does not have
        assert cg_heartbeat(port, group, uuid.uuid4().hex, 0, topics=[topic], assignor="sticky", owned=[])[0] == 112
        # join for real, then heartbeat with an epoch from the future: FENCED_MEMBER_EPOCH
        mid = uuid.uuid4().hex
        err, got_mid, epoch = cg_heartbeat(port, group, mid, 0, topics=[topic], owned=[])
        assert (err, got_mid) == (0, mid) and epoch > 0
        assert cg_heartbeat(port, group, mid, epoch + 5)[0] == 110
        # leave (epoch -1), then the id is unknown
        assert cg_heartbeat(port, group, mid, -1)[0] == 0
        assert cg_heartbeat(port, group, mid, epoch)[0] == 25
        # a classic JoinGroup into this consumer group: INCONSISTENT_GROUP_PROTOCOL
        def join_v0(grp, metadata):
            def kstr(s):
                return struct.pack(">h", len(s)) + s.encode()
            body = kstr(grp) + struct.pack(">i", 10000) + kstr("") + kstr("consumer")
            body += struct.pack(">i", 1) + kstr("range") + struct.pack(">i", len(metadata)) + metadata
            return struct.unpack(">h", call(port, 11, 0, body, flexible=False)[:2])[0]
        assert join_v0(group, b"\x00" * 16) == 23
        # classic member protocol metadata over group.member.metadata.max.bytes (1 MiB)
        assert join_v0("classic-" + group, b"\x00" * (2 << 20)) == 42
        # the real member is unaffected
        sent = produce_values(b, topic, "ok", 50)
        wait_for(lambda: sent <= real.values(), 30, "the real member keeps consuming")
        assert len(real.assignment()) == 2
        real.stop()
    finally:
        if real.proc.poll() is None:
            real.kill9()
