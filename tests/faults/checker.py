#!/usr/bin/env python3
"""History checker for Kafka-style logs (after Jepsen's Kafka checker).

A history is JSON lines, one event per line, in the order each worker saw them (a worker's events
must keep their relative order; workers may be interleaved or concatenated):

  {"t": "ack",     "w": "p0", "v": "p0-12", "p": 3, "o": 41}   produce acknowledged at partition/offset
  {"t": "fail",    "w": "p0", "v": "p0-13", "err": "..."}       produce failed (indeterminate in Kafka)
  {"t": "unknown", "w": "p0", "v": "p0-14"}                     no outcome by the end
  {"t": "assign",  "w": "c0", "s": 1, "p": 3, "o": 0}           consumer session starts/seeks partition at o
  {"t": "poll",    "w": "c0", "s": 1, "p": 3, "o": 41, "v": "p0-12"}   a record read
  {"t": "final",   "w": "final", "s": 0}                        marks the worker/session as the final read
  {"t": "hw",      "p": 3, "o": 120}                            high watermark seen by the final read
  {"t": "gpoll",   "w": "g0", "p": 3, "o": 41, "v": "p0-12"}    a record read by a consumer-group member
  {"t": "commit",  "w": "g0", "p": 3, "o": 42}                  the group's offset commit, acknowledged
  {"t": "committed", "p": 3, "o": 42}                           the group's committed offset at the end

Anomalies (per partition):
  lost-write          acknowledged, never read, while a later offset of its partition was read
  unseen              acknowledged, but absent from the final read (a session marked "final");
                      without a final read: never read at all (and no later offset read either)
  duplicate           one value at two (partition, offset) positions (reads and acks together)
  inconsistent-offset one (partition, offset) holding two values (reads and acks together)
  nonmonotonic-poll   a consumer session reading an offset <= one it read before, without a seek
  poll-skip           a consumer session jumping over offsets that exist (read by anyone or acked)
  lost-commit         the group's final committed offset is below one it acknowledged earlier
  commit-skip         the group committed past an acknowledged record that no member read
Group members read at least once (a rebalance re-reads from the committed offset), so `gpoll`
events count for the offset/value checks but not for session order.

CLI: checker.py HISTORY [HISTORY ...] [--json OUT] [--examples N]; exit 1 on any anomaly.
"""
import argparse
import bisect
import json
import os
import sys
from collections import defaultdict

EXPLAIN = {
    "lost-write": "acknowledged write never read although later offsets of its partition were read",
    "unseen": "acknowledged write missing from the final read (or never read, without one)",
    "duplicate": "one value stored at more than one (partition, offset)",
    "inconsistent-offset": "one (partition, offset) observed with more than one value",
    "nonmonotonic-poll": "a consumer session read an offset not above the previous one without seeking",
    "poll-skip": "a consumer session skipped over offsets that exist",
    "lost-commit": "the group's committed offset went below one the broker had acknowledged",
    "commit-skip": "the group committed past an acknowledged record none of its members read",
}
ANOMALY_TYPES = list(EXPLAIN)


def read_events(paths):
    """Yields events from files (or directories of *.jsonl files). A torn last line (a worker
    killed mid-write) is skipped."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(
                os.path.join(path, f) for f in os.listdir(path) if f.endswith(".jsonl")
            )
        else:
            files.append(path)
    for f in files:
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


class Result:
    def __init__(self):
        self.anomalies = {k: [] for k in ANOMALY_TYPES}
        self.stats = {}

    @property
    def ok(self):
        return not any(self.anomalies.values())

    def counts(self):
        return {k: len(v) for k, v in self.anomalies.items()}

    def summary(self, examples=5):
        lines = []
        s = self.stats
        lines.append(
            "history: {acked} acked, {failed} failed, {unknown} unknown; {polls} polled records "
            "({distinct_read} distinct values read); {sessions} consumer sessions".format(**s)
        )
        if self.ok:
            lines.append("OK: no anomalies")
            return "\n".join(lines)
        for kind in ANOMALY_TYPES:
            items = self.anomalies[kind]
            if not items:
                continue
            lines.append(f"{kind}: {len(items)} -- {EXPLAIN[kind]}")
            for a in items[:examples]:
                lines.append("    " + a["why"])
            if len(items) > examples:
                lines.append(f"    ... and {len(items) - examples} more")
        return "\n".join(lines)

    def to_json(self, examples=50):
        return {
            "ok": self.ok,
            "stats": self.stats,
            "counts": self.counts(),
            "examples": {k: v[:examples] for k, v in self.anomalies.items()},
        }


def check(events):
    acks = {}  # value -> (p, o)
    ack_at = defaultdict(set)  # (p, o) -> values acked there
    failed = set()
    unknown = set()
    reads = defaultdict(set)  # (p, o) -> values read there
    read_positions = defaultdict(set)  # value -> {(p, o)} read
    max_read = {}  # p -> highest offset read
    sessions = defaultdict(list)  # (w, s, p) -> [("assign", o) | ("poll", o, v)]
    hw = {}
    final_sessions = set()
    final_values = set()
    polls = 0
    group_values = set()  # values read by group members
    commits = {}  # p -> highest acknowledged commit
    committed = {}  # p -> the group's committed offset at the end
    res = Result()

    for e in events:
        t = e.get("t")
        if t == "ack":
            v, pos = e["v"], (e["p"], e["o"])
            if v in acks and acks[v] != pos:
                res.anomalies["duplicate"].append(
                    {"value": v, "positions": [acks[v], pos],
                     "why": f"value {v} acknowledged twice, at p{acks[v][0]}@{acks[v][1]} and p{pos[0]}@{pos[1]}"}
                )
            acks[v] = pos
            ack_at[pos].add(v)
        elif t == "fail":
            failed.add(e["v"])
        elif t == "unknown":
            unknown.add(e["v"])
        elif t == "assign":
            sessions[(e["w"], e.get("s", 0), e["p"])].append(("assign", e["o"]))
        elif t == "poll":
            polls += 1
            p, o, v = e["p"], e["o"], e["v"]
            reads[(p, o)].add(v)
            read_positions[v].add((p, o))
            if o > max_read.get(p, -1):
                max_read[p] = o
            sessions[(e["w"], e.get("s", 0), p)].append(("poll", o, v))
            if (e["w"], e.get("s", 0)) in final_sessions:
                final_values.add(v)
        elif t == "gpoll":
            polls += 1
            p, o, v = e["p"], e["o"], e["v"]
            reads[(p, o)].add(v)
            read_positions[v].add((p, o))
            group_values.add(v)
        elif t == "commit":
            commits[e["p"]] = max(commits.get(e["p"], -1), e["o"])
        elif t == "committed":
            committed[e["p"]] = e["o"]
        elif t == "final":
            final_sessions.add((e["w"], e.get("s", 0)))
        elif t == "hw":
            hw[e["p"]] = max(hw.get(e["p"], 0), e["o"])

    # inconsistent offsets: one position, several values (reads and acks together)
    for pos in sorted(set(reads) | set(ack_at)):
        vals = reads.get(pos, set()) | ack_at.get(pos, set())
        if len(vals) > 1:
            detail = []
            for v in sorted(vals):
                how = []
                if v in reads.get(pos, ()):
                    how.append("read")
                if v in ack_at.get(pos, ()):
                    how.append("acked")
                detail.append(f"{v} ({'+'.join(how)})")
            res.anomalies["inconsistent-offset"].append(
                {"partition": pos[0], "offset": pos[1], "values": sorted(vals),
                 "why": f"p{pos[0]}@{pos[1]} holds {len(vals)} values: " + ", ".join(detail)}
            )

    # duplicates: one value, several positions
    all_values = set(read_positions) | set(acks)
    for v in sorted(all_values):
        positions = set(read_positions.get(v, set()))
        if v in acks:
            positions.add(acks[v])
        if len(positions) > 1:
            ps = sorted(positions)
            res.anomalies["duplicate"].append(
                {"value": v, "positions": ps,
                 "why": f"value {v} at {len(ps)} positions: " + ", ".join(f"p{p}@{o}" for p, o in ps)}
            )

    # lost / unseen
    for v, (p, o) in sorted(acks.items(), key=lambda kv: kv[1]):
        if v in read_positions:
            if final_sessions and v not in final_values:
                res.anomalies["unseen"].append(
                    {"value": v, "partition": p, "offset": o,
                     "why": f"{v} acked at p{p}@{o} and read during the test, but gone from the final read"
                            + (f" (final high watermark {hw[p]})" if p in hw else "")}
                )
            continue
        if max_read.get(p, -1) > o:
            res.anomalies["lost-write"].append(
                {"value": v, "partition": p, "offset": o,
                 "why": f"{v} acked at p{p}@{o}, never read; offsets up to {max_read[p]} were read"
                        + (f" (final high watermark {hw[p]})" if p in hw else "")}
            )
        else:
            res.anomalies["unseen"].append(
                {"value": v, "partition": p, "offset": o,
                 "why": f"{v} acked at p{p}@{o}, never read"
                        + (f" (final high watermark {hw[p]})" if p in hw else "")}
            )

    # per-session order: nonmonotonic polls and skips over offsets that exist
    known = defaultdict(set)
    for (p, o) in reads:
        known[p].add(o)
    for (p, o) in ack_at:
        known[p].add(o)
    known_sorted = {p: sorted(s) for p, s in known.items()}
    for (w, s, p), evs in sessions.items():
        prev = None  # last offset read, or start - 1 after an assign
        ks = known_sorted.get(p, [])
        for ev in evs:
            if ev[0] == "assign":
                prev = ev[1] - 1
                continue
            o = ev[1]
            if prev is not None and o <= prev:
                res.anomalies["nonmonotonic-poll"].append(
                    {"worker": w, "session": s, "partition": p, "offset": o, "previous": prev,
                     "why": f"{w} session {s} read p{p}@{o} after p{p}@{prev}"}
                )
            elif prev is not None and o > prev + 1:
                i = bisect.bisect_right(ks, prev)
                if i < len(ks) and ks[i] < o:
                    j = bisect.bisect_left(ks, o)
                    missed = j - i
                    res.anomalies["poll-skip"].append(
                        {"worker": w, "session": s, "partition": p, "from": prev, "to": o,
                         "why": f"{w} session {s} jumped p{p}@{prev} -> @{o} over {missed} existing offset(s), first {ks[i]}"}
                    )
            prev = o  # after a backward jump, later polls are judged from the new position

    # consumer group: acknowledged commits survive, and a commit implies the records below it
    # were read by some member
    for p, o in sorted(commits.items()):
        if committed.get(p, -1) < o:
            res.anomalies["lost-commit"].append(
                {"partition": p, "acknowledged": o, "final": committed.get(p),
                 "why": f"p{p}: commit of offset {o} was acknowledged, the group's offset is now {committed.get(p)}"}
            )
    if committed:
        for v, (p, o) in sorted(acks.items(), key=lambda kv: kv[1]):
            if o < committed.get(p, -1) and v not in group_values:
                res.anomalies["commit-skip"].append(
                    {"value": v, "partition": p, "offset": o,
                     "why": f"{v} acked at p{p}@{o}, below the group's committed {committed[p]}, read by no member"}
                )

    res.stats = {
        "acked": len(acks),
        "failed": len(failed),
        "unknown": len(unknown),
        "polls": polls,
        "distinct_read": len(read_positions),
        "sessions": len({(w, s) for (w, s, _p) in sessions}),
        "partitions": sorted({p for p, _o in reads} | {p for p, _o in ack_at}),
        "high_watermarks": {str(p): o for p, o in sorted(hw.items())},
        "failed_or_unknown_but_read": len((failed | unknown) & set(read_positions)),
        "group_read": len(group_values),
        "group_committed": {str(p): o for p, o in sorted(committed.items())},
    }
    return res


def check_paths(paths):
    return check(read_events(paths))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("history", nargs="+", help="JSONL history files or directories of them")
    ap.add_argument("--json", help="write the result as JSON here")
    ap.add_argument("--examples", type=int, default=5, help="examples printed per anomaly kind")
    args = ap.parse_args(argv)
    res = check_paths(args.history)
    print(res.summary(args.examples))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res.to_json(), f, indent=1)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
