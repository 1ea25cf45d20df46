"""Consumer groups through real clients: confluent-kafka (librdkafka 2.16), kafka-python,
aiokafka, kafkajs. Multi-member tests run each confluent-kafka member as its own process
(group_member.py) so one can be killed with -9."""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from helpers import consumer, create_topic, produce, wait_until

pytestmark = [pytest.mark.timeout(150)]
HERE = os.path.dirname(os.path.abspath(__file__))


def test_confluent_subscribe_commit_and_resume(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(90)],
            acks="all")
    group = "g-" + uuid.uuid4().hex[:8]
    c = consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.offset.store": True})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < 50 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) >= 50
    c.commit(asynchronous=False)
    c.close()
    c = consumer(broker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.offset.store": True})
    c.subscribe([topic])
    deadline = time.time() + 60
    while len({m.value() for m in got}) < 90 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    values = [m.value() for m in got]
    assert sorted(set(values)) == sorted(f"v{i}".encode() for i in range(90))
    assert len(values) == 90, "committed offsets not honoured: messages read twice"


def test_kafka_python_group_consumer(broker, topic):
    from kafka import KafkaConsumer

    create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [{"value": f"v{i}".encode()} for i in range(40)], acks="all")
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="g-" + uuid.uuid4().hex[:8],
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        got = [m.value for _, m in zip(range(40), c)]
    finally:
        c.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(40))


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_kafkajs_consumer(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(30)],
            acks="all")
    r = subprocess.run(["node", os.path.join(HERE, "kafkajs_consume.js"), broker.bootstrap, topic, "30"],
                       capture_output=True, timeout=90, cwd=HERE)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    got = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert sorted(m["value"] for m in got) == sorted(f"v{i}" for i in range(30))


# ---------------------------------------------------------------------------------------------
# multi-member groups (group_member.py processes)

GROUP_CONFIG = "\n".join([
    '"group.initial.rebalance.delay.ms" = 500',
    '"offsets.topic.num.partitions" = 8',
])


class Member:
    def __init__(self, tmp, bootstrap, topic, group, name, **opts):
        self.out = os.path.join(tmp, f"{name}.jsonl")
        self.stopfile = os.path.join(tmp, f"{name}.stop")
        args = [sys.executable, os.path.join(HERE, "group_member.py"), "--bootstrap", bootstrap, "--topic", topic,
                "--group", group, "--out", self.out, "--stop", self.stopfile]
        for k, v in opts.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        self.proc = subprocess.Popen(args)

    def events(self):
        try:
            with open(self.out) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        # One read, then whole lines only: the member may be half-way through writing the last
        # one (iterating the file instead re-reads past that partial line once the writer adds
        # the rest, and yields its tail as a line of its own).
        return [json.loads(line) for line in text.split("\n")[:-1]]

    def assignment(self):
        """Partitions owned now, from the assign/revoke/lost callbacks (eager or incremental)."""
        owned = set()
        for e in self.events():
            if e["e"] == "assign":
                owned |= set(e["parts"])
            elif e["e"] in ("revoke", "lost"):
                owned -= set(e["parts"])
        return owned

    def values(self):
        return {e["v"] for e in self.events() if e["e"] == "msg"}

    def stop(self, timeout=30):
        open(self.stopfile, "w").close()
        self.proc.wait(timeout=timeout)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


def wait_for(cond, timeout, what):
    if not wait_until(cond, timeout, interval_s=0.2):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def produce_values(bootstrap, topic, prefix, n):
    values = [f"{prefix}-{i}" for i in range(n)]
    produce(bootstrap, topic, [{"key": f"k{i}".encode(), "value": v.encode()} for i, v in enumerate(values)],
            acks="all")
    return set(values)


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(cores=2, config=GROUP_CONFIG)


SESSION_EXPIRY_LOGS = ("session timeout: member removed", "consumer group member fenced")


def three_members_scenario(b, topic, tmp_path, group, per_member=({}, {}, {}), broker_log=None, **opts):
    """3 members over 6 partitions get 2 each; a clean leave (the first) rebalances at once; a
    member killed with -9 (the second) loses its partitions only after its session timeout (6 s);
    with synchronous commits after processing the group consumes every message. `opts` go to
    every member, `per_member[i]` to member i."""
    create_topic(b, topic, 6)
    ms = [Member(str(tmp_path), b, topic, group, f"m{i}", **{**opts, **per_member[i]}) for i in range(3)]
    try:
        wait_for(lambda: sorted(len(m.assignment()) for m in ms) == [2, 2, 2], 40, "2 partitions per member")
        assert set().union(*(m.assignment() for m in ms)) == set(range(6))
        sent = produce_values(b, topic, "a", 600)
        wait_for(lambda: sent <= set().union(*(m.values() for m in ms)), 40, "the group to read everything")
        for m in ms:
            assert m.values() & sent, "every member consumed its share"

        # a clean leave rebalances at once (well before the 6 s session timeout)
        t0 = time.time()
        ms[0].stop()
        wait_for(lambda: sorted(len(m.assignment()) for m in ms[1:]) == [3, 3], 20, "3 partitions each")
        # the leave itself rebalanced: no member was expired by its session timeout (the time bound
        # alone would be ambiguous on a loaded 2-core machine)
        if broker_log is not None:
            expired = [ln for ln in broker_log().splitlines() if any(x in ln for x in SESSION_EXPIRY_LOGS)]
            assert not expired, f"a member expired instead of leaving: {expired}"
        assert time.time() - t0 < 15, "leaving must trigger the rebalance, not the session timeout"
        sent |= produce_values(b, topic, "b", 300)

        # kill -9: no leave; the coordinator expires the member after its session timeout
        ms[1].kill9()
        t1 = time.time()
        wait_for(lambda: ms[2].assignment() == set(range(6)), 40, "the survivor to own all 6")
        assert time.time() - t1 > 3, "reassigned before the session timeout could expire"
        if broker_log is not None:
            assert any(x in broker_log() for x in SESSION_EXPIRY_LOGS), "the killed member expired"
        sent |= produce_values(b, topic, "c", 300)
        try:
            wait_for(lambda: sent <= set().union(*(m.values() for m in ms)), 40,
                     "every message consumed across the rebalances (commit after processing)")
        except AssertionError:
            missing = sorted(sent - set().union(*(m.values() for m in ms)))
            state = [(m.assignment(), [e for e in m.events() if e["e"] != "msg"][-6:]) for m in ms]
            raise AssertionError(f"{len(missing)} missing, e.g. {missing[:5]}; members: {state}")
    finally:
        for m in ms:
            if m.proc.poll() is None:
                m.kill9()


def test_three_members_split_six_partitions_rebalance_on_leave_and_on_kill(gbroker, topic, tmp_path):
    three_members_scenario(gbroker.bootstrap, topic, tmp_path, "g-" + uuid.uuid4().hex[:8], broker_log=gbroker.log)


def test_three_clients_in_one_group_split_and_rebalance(gbroker, topic, tmp_path):
    """The same scenario with one member of each client library: aiokafka leaves cleanly,
    kafka-python is killed with -9, confluent-kafka survives (their common assignor: roundrobin)."""
    three_members_scenario(gbroker.bootstrap, topic, tmp_path, "gmix-" + uuid.uuid4().hex[:8],
                           per_member=({"client": "aiokafka"}, {"client": "kafka-python"}, {}),
                           broker_log=gbroker.log, strategy="roundrobin")


def test_two_groups_each_receive_every_message(gbroker, topic, tmp_path):
    b = gbroker.bootstrap
    create_topic(b, topic, 4)
    sent = produce_values(b, topic, "x", 200)
    ga = [Member(str(tmp_path), b, topic, "ga-" + topic, f"a{i}") for i in range(2)]
    gb = [Member(str(tmp_path), b, topic, "gb-" + topic, "b0")]
    try:
        wait_for(lambda: sent <= set().union(*(m.values() for m in ga)), 40, "group a reads everything")
        wait_for(lambda: sent <= gb[0].values(), 40, "group b reads everything")
        # inside group a each message went to one member (point to point)
        assert not (ga[0].values() & ga[1].values()) or any(e["e"] == "revoke" for m in ga for e in m.events())
    finally:
        for m in ga + gb:
            m.kill9()


def test_committed_offsets_survive_restart_and_kill9(gbroker, topic):
    from confluent_kafka import TopicPartition
    b = gbroker.bootstrap
    create_topic(b, topic, 2)
    produce_values(b, topic, "r", 100)
    group = "g-" + uuid.uuid4().hex[:8]
    want = [TopicPartition(topic, 0, 17), TopicPartition(topic, 1, 23)]
    c = consumer(b, **{"group.id": group})
    c.commit(offsets=want, asynchronous=False)
    c.close()

    def committed():
        c = consumer(b, **{"group.id": group})
        try:
            return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                                                  timeout=20)}
        finally:
            c.close()

    assert committed() == {0: 17, 1: 23}
    gbroker.restart()
    assert committed() == {0: 17, 1: 23}, "after a clean restart"
    c = consumer(b, **{"group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
    c.close()
    gbroker.crash_restart()
    assert committed() == {0: 40, 1: 23}, "an acknowledged commit survives kill -9"
    # a subscribing consumer resumes exactly at the committed offsets
    c = consumer(b, **{"group.id": group, "enable.auto.offset.store": True})
    c.subscribe([topic])
    first = {}
    deadline = time.time() + 40
    while len(first) < 2 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            first.setdefault(m.partition(), m.offset())
    c.close()
    assert first == {0: 40, 1: 23}


def test_kafka_python_and_aiokafka_groups_commit_and_resume(gbroker, topic):
    from kafka import KafkaConsumer, TopicPartition as KTP
    b = gbroker.bootstrap
    create_topic(b, topic, 4)
    sent = produce_values(b, topic, "k", 80)
    group = "g-" + uuid.uuid4().hex[:8]
    c1 = KafkaConsumer(topic, bootstrap_servers=b, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, consumer_timeout_ms=8000, session_timeout_ms=10000)
    got = set()
    for m in c1:
        got.add(m.value.decode())
        if len(got) == 40:
            break
    c1.commit()
    positions = {tp.partition: c1.committed(tp) for tp in [KTP(topic, p) for p in range(4)]}
    c1.close()
    assert sum(v or 0 for v in positions.values()) == 40

    import asyncio
    from aiokafka import AIOKafkaConsumer

    async def rest():
        c = AIOKafkaConsumer(topic, bootstrap_servers=b, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        seen = set()
        try:
            deadline = time.time() + 40
            while len(seen) < 40 and time.time() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    seen |= {m.value.decode() for m in msgs}
            await c.commit()
        finally:
            await c.stop()
        return seen

    seen = asyncio.run(rest())
    assert not (seen & got), "aiokafka resumed at kafka-python's commits, reading nothing twice"
    assert seen | got == sent


def test_static_member_restart_keeps_partitions_without_rebalance(gbroker, topic, tmp_path):
    b = gbroker.bootstrap
    create_topic(b, topic, 4)
    group = "g-" + uuid.uuid4().hex[:8]
    a = Member(str(tmp_path), b, topic, group, "sa", instance_id="inst-a", session_ms=10000)
    o = Member(str(tmp_path), b, topic, group, "so", instance_id="inst-o", session_ms=10000)
    try:
        wait_for(lambda: len(a.assignment()) == 2 and len(o.assignment()) == 2, 40, "2 partitions each")
        before = a.assignment()
        other_events = len(o.events())
        a.kill9()  # static members do not leave on close either; kill -9 is the harsher case
        a2 = Member(str(tmp_path), b, topic, group, "sa2", instance_id="inst-a", session_ms=10000)
        wait_for(lambda: len(a2.assignment()) == 2, 20, "the restarted static member's partitions")
        assert a2.assignment() == before, "same instance id, same partitions"
        time.sleep(1)
        later = o.events()[other_events:]
        assert not [e for e in later if e["e"] in ("assign", "revoke", "lost")], f"rebalance seen: {later}"
        a2.stop()
    finally:
        for m in (a, o):
            if m.proc.poll() is None:
                m.kill9()


def test_cooperative_sticky_keeps_consuming_unmoved_partitions(gbroker, topic, tmp_path):
    b = gbroker.bootstrap
    create_topic(b, topic, 6)
    group = "g-" + uuid.uuid4().hex[:8]
    a = Member(str(tmp_path), b, topic, group, "ca", strategy="cooperative-sticky")
    try:
        wait_for(lambda: a.assignment() == set(range(6)), 40, "the first member owns all 6")
        n = Member(str(tmp_path), b, topic, group, "cn", strategy="cooperative-sticky")
        wait_for(lambda: len(a.assignment()) == 3 and len(n.assignment()) == 3, 40, "an incremental 3/3 split")
        revoked = set().union(*[set(e["parts"]) for e in a.events() if e["e"] == "revoke"])
        assert revoked == set(range(6)) - a.assignment(), "only the moved partitions were revoked"
        sent = produce_values(b, topic, "s", 300)
        wait_for(lambda: sent <= a.values() | n.values(), 40, "both read their partitions")
        n.stop()
        a.stop()
    finally:
        for m in (a,):
            if m.proc.poll() is None:
                m.kill9()


def test_many_groups_on_both_shards(gbroker, topic):
    """8 groups: their coordinators land on both shards, and the clients' connections on either
    (SO_REUSEPORT), so both local and cross-shard coordinator hops are exercised."""
    import threading
    b = gbroker.bootstrap
    create_topic(b, topic, 2)
    sent = produce_values(b, topic, "m", 60)
    results = {}

    def run(i):
        c = consumer(b, **{"group.id": f"multi-{i}-{topic}", "auto.offset.reset": "earliest",
                           "enable.auto.offset.store": True})
        c.subscribe([topic])
        seen = set()
        deadline = time.time() + 60
        while len(seen) < len(sent) and time.time() < deadline:
            m = c.poll(0.3)
            if m is not None and not m.error():
                seen.add(m.value().decode())
        c.commit(asynchronous=False)
        c.close()
        results[i] = seen

    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(results[i] == sent for i in range(8)), {i: len(v) for i, v in results.items()}


def test_bad_group_requests_get_kafka_errors(gbroker, topic, tmp_path):
    """Heartbeats from an unknown member and with a wrong generation get UNKNOWN_MEMBER_ID (25)
    and ILLEGAL_GENERATION (22); the coordinator keeps serving the real member."""
    import socket
    import struct
    b = gbroker.bootstrap
    create_topic(b, topic, 2)
    group = "g-" + uuid.uuid4().hex[:8]
    m = Member(str(tmp_path), b, topic, group, "real")
    try:
        wait_for(lambda: len(m.assignment()) == 2, 40, "the real member's assignment")

        def kstr(s):
            return struct.pack(">h", len(s)) + s.encode()

        def call(api, ver, body):
            with socket.create_connection(("127.0.0.1", gbroker.port), timeout=10) as s:
                req = struct.pack(">hhi", api, ver, 7) + kstr("bad") + body
                s.sendall(struct.pack(">i", len(req)) + req)
                size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
                return s.recv(size, socket.MSG_WAITALL)

        # FindCoordinator v0 -> the coordinator is this broker
        r = call(10, 0, kstr(group))
        assert struct.unpack(">h", r[4:6])[0] == 0
        # DescribeGroups v0 -> the real member id and the group state
        r = call(15, 0, struct.pack(">i", 1) + kstr(group))
        pos = 4 + 4 + 2  # corr, array len, error
        glen = struct.unpack(">h", r[pos:pos + 2])[0]
        pos += 2 + glen
        slen = struct.unpack(">h", r[pos:pos + 2])[0]
        state = r[pos + 2:pos + 2 + slen].decode()
        pos += 2 + slen
        for _ in range(2):  # protocol type, protocol
            n = struct.unpack(">h", r[pos:pos + 2])[0]
            pos += 2 + n
        assert struct.unpack(">i", r[pos:pos + 4])[0] == 1, "one member"
        pos += 4
        mlen = struct.unpack(">h", r[pos:pos + 2])[0]
        member_id = r[pos + 2:pos + 2 + mlen].decode()
        assert state == "Stable" and member_id

        def heartbeat(gen, mid):
            r = call(12, 0, kstr(group) + struct.pack(">i", gen) + kstr(mid))
            return struct.unpack(">h", r[4:6])[0]

        assert heartbeat(1, "no-such-member") == 25
        assert heartbeat(1000, member_id) == 22
        # SyncGroup v0 from an unknown member
        r = call(14, 0, kstr(group) + struct.pack(">i", 1) + kstr("ghost") + struct.pack(">i", 0))
        assert struct.unpack(">h", r[4:6])[0] == 25
        # the real member is unaffected: it still owns its partitions and consumes
        sent = produce_values(b, topic, "ok", 50)
        wait_for(lambda: sent <= m.values(), 30, "the real member keeps consuming")
        assert len(m.assignment()) == 2
    finally:
        m.kill9()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_balanced_consumer_commits_and_resumes(gbroker, topic):
    """Debian's kcat (librdkafka 2.0.2) as a balanced consumer (-G): reads everything, commits,
    and a second run of the same group reads only what came after."""
    b = gbroker.bootstrap
    create_topic(b, topic, 3)
    first = produce_values(b, topic, "kc", 30)
    group = "kcat-" + uuid.uuid4().hex[:6]

    def kcat_group():
        r = subprocess.run(["kcat", "-b", b, "-G", group, topic, "-X", "auto.offset.reset=earliest", "-e", "-q"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode().split()

    assert sorted(kcat_group()) == sorted(first)
    later = produce_values(b, topic, "kd", 5)
    assert sorted(kcat_group()) == sorted(later), "the second run resumes at the committed offsets"


def test_offsets_topic_is_compacted_and_commits_survive_kill9(broker_factory, topic):
    """Many commits of few keys: the coordinator snapshots the live offsets and moves the log
    start of its __consumer_offsets partition, so old segments go and a reload reads little;
    the latest commits survive a clean restart and kill -9."""
    import glob
    from confluent_kafka import TopicPartition
    b = broker_factory(cores=2, config="\n".join([
        '"offsets.topic.num.partitions" = 1',
        '"offsets.topic.segment.bytes" = 65536',
        '"tidewater.offsets.compaction.min.records" = 300',
        '"tidewater.offsets.compaction.check.interval.ms" = 200',
    ]))
    create_topic(b.bootstrap, topic, 3)
    group = "gc-" + uuid.uuid4().hex[:8]
    c = consumer(b.bootstrap, **{"group.id": group})
    try:
        for i in range(1, 601):
            c.commit(offsets=[TopicPartition(topic, p, i * 10 + p) for p in range(3)], asynchronous=False)
    finally:
        c.close()
    want = {p: 6000 + p for p in range(3)}

    def log_start():
        probe = consumer(b.bootstrap, **{"group.id": "probe-" + uuid.uuid4().hex[:6]})
        try:
            return probe.get_watermark_offsets(TopicPartition("__consumer_offsets", 0), timeout=10)
        finally:
            probe.close()

    def compacted():
        low, high = log_start()
        # compaction runs once more than 300 records sit in the log (min.records)
        return low > 1000 and high - low <= 300

    wait_for(compacted, 30, "the __consumer_offsets log start to move past the history")
    assert "compacted __consumer_offsets" in b.log()
    segments = glob.glob(os.path.join(b.data, "__consumer_offsets-0", "*.log"))
    assert len(segments) <= 3, f"old segments deleted: {segments}"

    def committed():
        c = consumer(b.bootstrap, **{"group.id": group})
        try:
            return {tp.partition: tp.offset for tp in
                    c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)}
        finally:
            c.close()

    assert committed() == want
    b.restart()
    assert committed() == want, "after a clean restart"
    b.crash_restart()
    assert committed() == want, "after kill -9"


def test_consumer_lag_is_computable_for_any_group(gbroker, topic):
    """Lag = log end offset - committed offset, as kafka-consumer-groups computes it: the
    group's committed offsets through the admin API (OffsetFetch), log ends through ListOffsets."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient
    b = gbroker.bootstrap
    create_topic(b, topic, 3)
    for p, n in enumerate([10, 20, 30]):
        produce(b, topic, [{"value": b"x", "partition": p}] * n, acks="all")
    group = "lag-" + uuid.uuid4().hex[:8]
    c = consumer(b, **{"group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 20)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": b})
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    committed = {tp.partition: tp.offset for tp in fut.result(timeout=20).topic_partitions if tp.topic == topic}
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
    c.close()
    assert ends == {0: 10, 1: 20, 2: 30}
    assert committed == {0: 4, 1: 20}
    assert {p: ends[p] - committed[p] for p in committed} == {0: 6, 1: 0}
    # a classic group: ConsumerGroupDescribe answers GROUP_ID_NOT_FOUND, the admin client falls
    # back to DescribeGroups
    desc = admin.describe_consumer_groups([group])[group].result(timeout=20)
    assert str(desc.type).endswith("CLASSIC") and str(desc.state).endswith("EMPTY"), desc


def test_group_without_commits_honours_auto_offset_reset(gbroker, topic):
    """A subscribing group with nothing committed starts where auto.offset.reset says: latest
    reads only what comes after the assignment, error (Kafka's "none") reports instead of
    guessing, earliest reads from the start. (Committed offsets win: the resume tests.)"""
    from confluent_kafka import KafkaError
    b = gbroker.bootstrap
    create_topic(b, topic, 1)
    old = produce_values(b, topic, "old", 20)

    def is_eof(m):
        return m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF

    def subscribed(reset, group, **extra):
        """Polls until assigned; returns the consumer and anything polled meanwhile (messages,
        errors, and partition EOF events where `extra` enables them)."""
        assigned = []
        c = consumer(b, **{"group.id": group, "auto.offset.reset": reset, "enable.auto.offset.store": True,
                           **extra})
        c.subscribe([topic], on_assign=lambda _c, ps: assigned.extend(ps))
        deadline = time.time() + 30
        while not assigned and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None:
                return c, [m]
        return c, []

    def read_values(c, got, n):
        """Polls values into `got` until it holds `n` (30 s at most)."""
        deadline = time.time() + 30
        while len(got) < n and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append(m.value().decode())
        return got

    c, early = subscribed("latest", "lat-" + topic, **{"enable.partition.eof": True})
    # Only once the fetcher reports the partition's end has "latest" been resolved; messages
    # produced before that could land before the position (a fixed sleep was too short on a
    # loaded host).
    deadline = time.time() + 30
    while not any(is_eof(m) for m in early) and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None:
            early.append(m)
    assert any(is_eof(m) for m in early), f"the consumer never reached the partition's end: {early}"
    new = produce_values(b, topic, "new", 10)
    got = read_values(c, [m.value().decode() for m in early if not m.error()], 10)
    c.close()
    assert set(got) == new, "latest: only messages after the assignment"

    c, early = subscribed("error", "none-" + topic)
    err = next((m.error() for m in early if m.error()), None)
    read = [m for m in early if not m.error()]
    deadline = time.time() + 20
    while err is None and not read and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() and not is_eof(m):
            err = m.error()
        elif m is not None and not m.error():
            read.append(m)
    c.close()
    assert not read and err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, (err, read)

    c, early = subscribed("earliest", "ear-" + topic)
    got = read_values(c, [m.value().decode() for m in early if not m.error()], 30)
    c.close()
    assert set(got) == old | new
