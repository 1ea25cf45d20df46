#!/usr/bin/env bash
# The long fault campaign, on demand (not in CI): ~10 minutes of idempotent produce at ~2,240
# msg/s (target: 1,000,000 acknowledged) while kill -9 / SIGSTOP faults hit the broker, then a
# full read-back and the history check; then the long hostile-client campaign.
#   scripts/faults-long.sh [SEED] [DURATION_S]
# Env: TIDEWATER_BIN (default target/release/tidewater), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-7}"
DURATION="${2:-600}"
PY="${PYTHON:-.venv/bin/python}"
export TIDEWATER_BIN="${TIDEWATER_BIN:-$PWD/target/release/tidewater}"
OUT="${FAULTS_OUT:-/tmp/tidewater-faults-long-$SEED}"
mkdir -p "$OUT"
KILLS=$((DURATION / 10))
PAUSES=$((DURATION / 60))
echo "=== crash loop: seed $SEED, ${DURATION}s, $KILLS kills, $PAUSES pauses -> $OUT/campaign"
"$PY" tests/faults/campaign.py --seed "$SEED" --duration "$DURATION" --kills "$KILLS" --pauses "$PAUSES" \
  --producers 4 --consumers 2 --rate 560 --partitions 8 --flush-timeout 60 \
  --workdir "$OUT/campaign" --json "$OUT/campaign.json" --examples 10
echo "=== power loss: every pattern, seeds 1..5"
for s in 1 2 3 4 5; do "$PY" tests/faults/power_loss.py --seed "$s"; done
echo "=== hostile clients (long)"
"$PY" tests/faults/hostile.py --long --cold --settle-s 5 --workdir "$OUT/hostile" --json "$OUT/hostile.json"
