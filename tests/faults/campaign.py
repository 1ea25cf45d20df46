#!/usr/bin/env python3
"""Fault campaign: a workload (workload.py) against a real broker while a seeded nemesis
kill -9s it (restarting at once on the same data dir and port) and SIGSTOPs it for longer than
the clients' timeouts; then heal, read everything back from offset 0 with a fresh consumer, and
check the history (checker.py).

  campaign.py --seed 1 --kills 6 --pauses 1 --duration 45 [--workdir DIR] [--json OUT]
  campaign.py --seed 7 --duration 600 --producers 4 --rate 450 --kills 60   (the long run)

Exit 0 iff the checker finds no anomaly (and the broker never failed to start).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from broker import Broker, create_topic  # noqa: E402
import checker  # noqa: E402


def plan_faults(seed, duration, kills, pauses, pause_s):
    """A seeded schedule: (time offset, kind) with `kills` kill -9s and `pauses` pauses spread
    over `duration` seconds at random intervals."""
    rng = random.Random(seed)
    kinds = ["kill"] * kills + ["pause"] * pauses
    rng.shuffle(kinds)
    n = len(kinds)
    if n == 0:
        return []
    slot = duration / n
    plan = []
    busy_until = 1.0
    for i, kind in enumerate(kinds):
        at = max(busy_until + 1.0, i * slot + rng.uniform(0.2, 0.9) * slot)
        plan.append((round(at, 2), kind))
        busy_until = at + (pause_s if kind == "pause" else 0.5)
    return plan


def restart(broker, failures, t0, tries=3):
    """Starts the broker; a start that hangs or fails is recorded (with thread stacks) and the
    broker is killed and started again, so the workload and the final read can go on."""
    for _ in range(tries):
        try:
            broker.start()
            return True
        except RuntimeError as e:
            failures.append({"at": round(time.time() - t0, 2), "error": str(e)[-6000:]})
            print(f"[{time.time() - t0:6.1f}s] START FAILED (recorded), retrying", flush=True)
            broker.kill9()
    return False


def run(args):
    workdir = args.workdir or tempfile.mkdtemp(prefix="tidewater-campaign-")
    os.makedirs(workdir, exist_ok=True)
    hist = os.path.join(workdir, "history")
    os.makedirs(hist, exist_ok=True)
    broker = Broker(cores=args.cores, extra=args.broker_arg, workdir=os.path.join(workdir, "broker"))
    broker.start()
    topic = "faults-" + uuid.uuid4().hex[:8]
    create_topic(broker.bootstrap, topic, args.partitions)
    stop_p = os.path.join(workdir, "stop-producers")
    stop_c = os.path.join(workdir, "stop-consumers")
    py = sys.executable
    wl = os.path.join(HERE, "workload.py")
    common = ["--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", str(args.partitions),
              "--message-timeout-ms", str(args.message_timeout_ms), "--socket-timeout-ms", str(args.socket_timeout_ms)]
    workers = []
    logf = open(os.path.join(workdir, "workers.log"), "ab")
    for i in range(args.producers):
        workers.append(("producer", subprocess.Popen(
            [py, wl, "producer", "--id", str(i), "--out", os.path.join(hist, f"producer-{i}.jsonl"),
             "--stop", stop_p, "--rate", str(args.rate), "--flush-timeout", str(args.flush_timeout)] + common,
            stdout=logf, stderr=logf)))
    for i in range(args.consumers):
        workers.append(("consumer", subprocess.Popen(
            [py, wl, "consumer", "--id", str(i), "--out", os.path.join(hist, f"consumer-{i}.jsonl"),
             "--stop", stop_c] + common, stdout=logf, stderr=logf)))
    group = "faults-group-" + uuid.uuid4().hex[:6]
    for i in range(args.group_members):
        workers.append(("group", subprocess.Popen(
            [py, wl, "group", "--id", str(i), "--group", group, "--out", os.path.join(hist, f"group-{i}.jsonl"),
             "--stop", stop_c] + common, stdout=logf, stderr=logf)))

    plan = plan_faults(args.seed, args.duration, args.kills, args.pauses, args.pause_s)
    faults = []
    t0 = time.time()
    start_failures = []
    rss_max = 0
    for at, kind in plan:
        while time.time() - t0 < at:
            time.sleep(0.05)
            rss_max = max(rss_max, broker.rss_kib())
        if kind == "kill":
            broker.kill9()
            restart(broker, start_failures, t0)
        else:
            broker.pause()
            time.sleep(args.pause_s)
            broker.resume()
        faults.append({"at": round(time.time() - t0, 2), "kind": kind})
        print(f"[{time.time() - t0:6.1f}s] {kind}", flush=True)
    while time.time() - t0 < args.duration:
        time.sleep(0.1)
        rss_max = max(rss_max, broker.rss_kib())
    # heal: the broker runs; producers stop and flush, consumers catch up a little, final read
    if not broker.alive():
        restart(broker, start_failures, t0)
    open(stop_p, "w").close()
    for role, w in workers:
        if role == "producer":
            try:
                w.wait(timeout=args.flush_timeout + 30)
            except subprocess.TimeoutExpired:
                w.kill()
    time.sleep(2)
    if args.group_members:
        # let the group catch up to the end before it stops (its commits are checked)
        wait_group_caught_up(broker, topic, group, args, deadline=time.time() + 90)
    open(stop_c, "w").close()
    for role, w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
    final = subprocess.run([py, wl, "final", "--out", os.path.join(hist, "final.jsonl"), "--timeout", "90"] + common,
                           capture_output=True, text=True)
    if args.group_members:
        subprocess.run([py, wl, "committed", "--group", group, "--out", os.path.join(hist, "committed.jsonl")] + common,
                       capture_output=True, text=True, timeout=60)
    res = checker.check_paths([hist])
    broker_alive = broker.alive()
    rss_max = max(rss_max, broker.rss_kib())
    clean_rc = broker.stop()
    summary = {
        "seed": args.seed,
        "workdir": workdir,
        "topic": topic,
        "faults": faults,
        "broker_starts": broker.starts,
        "start_failures": start_failures,
        "broker_alive_at_end": broker_alive,
        "clean_stop_rc": clean_rc,
        "broker_rss_max_kib": rss_max,
        "final_read": final.stdout.strip()[-500:] or final.stderr.strip()[-500:],
        "elapsed_s": round(time.time() - t0, 1),
        "checker": res.to_json(examples=10),
    }
    with open(os.path.join(workdir, "result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    print(res.summary(args.examples))
    print(json.dumps({k: summary[k] for k in ("seed", "workdir", "broker_starts", "start_failures",
                                               "clean_stop_rc", "broker_rss_max_kib", "final_read", "elapsed_s")}))
    return res, summary


def wait_group_caught_up(broker, topic, group, args, deadline):
    """Waits until the group's committed offsets reach every partition's high watermark."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "log_level": 3})
    try:
        while time.time() < deadline:
            try:
                tps = [TopicPartition(topic, p) for p in range(args.partitions)]
                committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
                high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                        for p in range(args.partitions)}
            except Exception:  # the broker may be restarting: ask again
                time.sleep(0.5)
                continue
            if all(high[p] == 0 or committed.get(p, -1) >= high[p] for p in high):
                return True
            time.sleep(0.5)
        return False
    finally:
        c.close()


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=45)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--pauses", type=int, default=1)
    ap.add_argument("--pause-s", type=float, default=8)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=150, help="messages/s per producer")
    ap.add_argument("--group-members", type=int, default=0,
                    help="consumer-group members (one group; commits are checked)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--message-timeout-ms", type=int, default=5000)
    ap.add_argument("--socket-timeout-ms", type=int, default=2000)
    ap.add_argument("--flush-timeout", type=float, default=20)
    ap.add_argument("--broker-arg", action="append", default=[], help="extra broker argument (repeatable)")
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    ap.add_argument("--examples", type=int, default=5)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    res, summary = run(args)
    return 0 if res.ok and not summary["start_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
