#!/usr/bin/env bash
# Runs every fuzz target for a while (on demand, not in CI).
#   scripts/faults-fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
# Needs cargo-fuzz (cargo install cargo-fuzz); the stable toolchain works with RUSTC_BOOTSTRAP=1.
# New interesting inputs go to fuzz/corpus/<target>/ (keep it small: cargo fuzz cmin);
# crashes/OOMs/timeouts to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS="${1:-300}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(frame request batch recovery)
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "=== $t for ${SECS}s"
  # -fork keeps going after a crash/OOM so one known bug does not stop the run
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -timeout=10 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -artifact_prefix="artifacts/$t/" 2>&1 | tee "artifacts/$t.log" | grep -E "^#|INFO: fuzzed|crash|oom|timeout|DONE" | tail -20
done
