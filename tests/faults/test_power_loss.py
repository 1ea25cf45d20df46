"""Simulated power loss on real segment files (see power_loss.py): after kill -9, damage the
segment/index tails with seeded patterns; the broker must start, serve every batch before the
damage unchanged, invent nothing, and log what it cut."""
import os

import pytest

from broker import BIN
import power_loss

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason=f"no broker binary at {BIN}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pattern", power_loss.UNCLEAN)
def test_power_loss_after_kill9(pattern, tmp_path):
    r = power_loss.trial(pattern, seed=int(os.environ.get("FAULTS_SEED", "1")), workdir=str(tmp_path / "b"))
    assert r["started"], r
    assert r["missing_count"] == 0, r
    assert not r["wrong_values"] and not r["invented_offsets"], r
    assert r["read_complete"], r
    if r["expect_cut_logged"]:
        assert r["logged_cut"], r


@pytest.mark.timeout(120)
def test_truncated_active_segment_after_clean_stop(tmp_path):
    r = power_loss.trial("truncate-mid-last-batch", seed=1, stop="sigterm", workdir=str(tmp_path / "b"))
    assert r["started"], r
    assert r["read_complete"] and r["high_watermark"] == r["first_offset_allowed_lost"], r
