#!/usr/bin/env bash
# The storage engine against the disk, in one run: fio's ceilings (fio-baseline.sh), then the
# criterion storage benchmarks on the same filesystem, then the ratios the storage targets use:
#   durable append (group commit, 64 appends in flight) / fio sequential O_DIRECT write over
#   written blocks: a log in steady state under retention reuses retired segment files, so it
#   overwrites written blocks as fio does (`_recycled` rows); a new log appends into fresh
#   blocks, compared with fio into fresh preallocated ones
#   recovery scan / fio sequential read; one-at-a-time append-to-durable p99 / fio fdatasync p99
# Usage: perf/storage-vs-fio.sh [DIR] [OUT.json]   (DIR on the disk to test, default: target/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
dir="${1:-$root/target}"; out="${2:-$root/target/storage-vs-fio.json}"
mkdir -p "$dir"
fio_json="$(mktemp)"; bench_log="$(mktemp)"
trap 'rm -f "$fio_json" "$bench_log"' EXIT
"$here/fio-baseline.sh" "$dir" > "$fio_json"
(cd "$root" && TIDEWATER_BENCH_DIR="$dir" CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
  cargo bench --bench storage -- 'append/durable|recovery' 2>&1 | tee "$bench_log" >&2)
python3 - "$fio_json" "$bench_log" "$root/target/criterion" "$out" <<'PY'
import json, os, re, sys
fio = json.load(open(sys.argv[1])); log = open(sys.argv[2]).read(); crit = sys.argv[3]
def mean_s(group, name):
    p = os.path.join(crit, group, name, "new", "estimates.json")
    return json.load(open(p))["mean"]["point_estimate"] / 1e9
rows = {}
for size in (1024, 65536, 1048576):
    for mode in ("durable_group_commit_64_in_flight", "durable_group_commit_64_in_flight_recycled",
                 "durable_one_at_a_time"):
        rows[f"{mode}/{size}"] = size / mean_s("append", f"{mode}/{size}")
rows["recovery_scan"] = (256 << 20) / mean_s("recovery", "scan_256MiB_after_crash")
m = re.search(r"p50 (\d+) µs, p99 (\d+) µs, p99.9 (\d+) µs", log)
lat = dict(zip(("p50", "p99", "p99_9"), map(float, m.groups()))) if m else {}
w = fio["seq_write_1mib_bytes_per_sec"]; r = fio["seq_read_1mib_iodepth8_bytes_per_sec"]
best = max(v for k, v in rows.items() if k.startswith("durable_group"))
best_recycled = max(v for k, v in rows.items() if k.startswith("durable_group_commit_64_in_flight_recycled"))
best_new = max(v for k, v in rows.items() if k.startswith("durable_group_commit_64_in_flight/"))
report = {
    "fio": fio, "bytes_per_sec": rows, "append_one_at_a_time_latency_us": lat,
    "ratios": {
        "durable_append_best_vs_fio_write": round(best / w, 3),
        # Like for like: both overwrite written blocks (steady state under retention).
        "durable_append_recycled_vs_fio_write": round(best_recycled / w, 3),
        # A new log appends into fresh blocks: fio's ceiling in that regime.
        "durable_append_new_log_vs_fio_write_fresh_preallocated": round(best_new / fio["seq_write_1mib_fresh_preallocated_bytes_per_sec"], 3),
        "durable_append_new_log_vs_fio_write": round(best_new / w, 3),
        "durable_append_best_vs_fio_write_fdatasync_each": round(best / fio["seq_write_1mib_fdatasync_each_bytes_per_sec"], 3),
        "recovery_scan_vs_fio_read": round(rows["recovery_scan"] / r, 3),
        "append_p99_vs_fio_fdatasync_p99": round(lat.get("p99", 0) / fio["fdatasync_4k_latency_us"]["p99"], 2),
    },
}
json.dump(report, open(sys.argv[4], "w"), indent=1)
for k, v in rows.items():
    print(f"{k:52s} {v / 1e9:6.3f} GB/s")
print(f"{'fio write / write+fdatasync / read':52s} {w / 1e9:6.3f} / {fio['seq_write_1mib_fdatasync_each_bytes_per_sec'] / 1e9:.3f} / {r / 1e9:.3f} GB/s")
print(f"{'fio write into fresh preallocated blocks':52s} {fio['seq_write_1mib_fresh_preallocated_bytes_per_sec'] / 1e9:6.3f} GB/s")
print(f"{'append one at a time p50/p99/p99.9 (µs)':52s} {lat}  fio fdatasync {fio['fdatasync_4k_latency_us']}")
print(json.dumps(report["ratios"], indent=1))
PY
