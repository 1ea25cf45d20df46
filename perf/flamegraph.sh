#!/usr/bin/env bash
# perf record of a running broker to an SVG flamegraph (cpu-clock: hardware counters are often
# missing on VMs). Usage: perf/flamegraph.sh PID SECONDS OUT.svg
set -euo pipefail
pid="$1"; secs="${2:-10}"; out="${3:-flamegraph.svg}"
command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null
command -v inferno-flamegraph >/dev/null || cargo install inferno >/dev/null
perf record -e cpu-clock -F 999 -g -p "$pid" -o /tmp/tidewater-perf.data -- sleep "$secs" >/dev/null 2>&1
perf script -i /tmp/tidewater-perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > "$out"
perf report -i /tmp/tidewater-perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15
echo "wrote $out"
