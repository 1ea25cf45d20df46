"""The crash loop with a consumer group: 3 members commit synchronously after each batch while
kill -9s hit the broker (the group coordinator with it). Acknowledged commits must survive every
crash (lost-commit) and a commit must never pass a record no member read (commit-skip), on top
of the usual produce/consume anomalies."""
import json
import os

import pytest

from broker import BIN
import campaign


@pytest.mark.timeout(240)
def test_group_crash_loop(tmp_path):
    if not os.path.exists(BIN):
        pytest.skip(f"no broker binary at {BIN} (set TIDEWATER_BIN)")
    args = campaign.parser().parse_args([
        "--seed", os.environ.get("FAULTS_SEED", "5"), "--duration", "40", "--kills", "5", "--pauses", "0",
        "--producers", "2", "--consumers", "1", "--group-members", "3", "--rate", "150", "--partitions", "6",
        "--workdir", str(tmp_path / "campaign"),
        "--broker-arg=--set", "--broker-arg=group.initial.rebalance.delay.ms=0",
    ])
    res, summary = campaign.run(args)
    print(res.summary(10))
    assert not summary["start_failures"], summary["start_failures"]
    assert res.stats["acked"] > 1000, json.dumps(res.stats)
    committed = res.stats["group_committed"]
    assert len(committed) == 6, f"the group committed every partition: {committed}"
    assert committed == res.stats["high_watermarks"], "the group consumed and committed to the end"
    assert res.ok, res.summary(10)
