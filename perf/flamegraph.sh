#!/usr/bin/env bash
# CPU flamegraph of a running process (the broker): `perf record -e cpu-clock -g` for SECONDS,
# folded and drawn with inferno (installed with `cargo install inferno` if missing). If inferno
# cannot be had, a small built-in Python folder/renderer draws the SVG instead. cpu-clock is a
# software event, so this works where hardware counters are absent (VMs).
# Also writes OUT.folded (folded stacks) and prints the hottest symbols.
# Usage: perf/flamegraph.sh PID [SECONDS=10] [OUT.svg=flamegraph.svg]
# Env:   FREQ sampling rate (default 999 Hz); FLAMEGRAPH_FALLBACK=1 forces the Python renderer;
#        NO_INSTALL=1 never runs cargo install / apt-get.
set -euo pipefail
pid="${1:?usage: $0 PID [SECONDS] [OUT.svg]}"; secs="${2:-10}"; out="${3:-flamegraph.svg}"
freq="${FREQ:-999}"
kill -0 "$pid" 2>/dev/null || { echo "no process $pid" >&2; exit 1; }
if ! command -v perf >/dev/null; then
  [ "${NO_INSTALL:-0}" = 1 ] && { echo "perf missing" >&2; exit 1; }
  echo "installing perf" >&2
  (apt-get update -qq && (apt-get install -y -qq linux-perf || apt-get install -y -qq "linux-tools-$(uname -r)")) >&2
fi
data="$(mktemp /tmp/tidewater-perf.XXXXXX.data)"
trap 'rm -f "$data"' EXIT
echo "recording pid $pid for ${secs}s (cpu-clock, ${freq} Hz, call graphs)" >&2
# --call-graph fp relies on frame pointers; dwarf works without them but is much heavier.
perf record -e cpu-clock -F "$freq" -g -p "$pid" -o "$data" -- sleep "$secs" >/dev/null 2>&1 \
  || { echo "perf record failed (perf_event_paranoid? try: sysctl kernel.perf_event_paranoid=-1)" >&2; exit 1; }

inferno=0
if [ "${FLAMEGRAPH_FALLBACK:-0}" != 1 ]; then
  if ! command -v inferno-flamegraph >/dev/null && [ "${NO_INSTALL:-0}" != 1 ] && command -v cargo >/dev/null; then
    echo "installing inferno (cargo install inferno; takes a few minutes once)" >&2
    cargo install --quiet inferno >&2 || echo "cargo install inferno failed; using the built-in renderer" >&2
  fi
  command -v inferno-flamegraph >/dev/null && inferno=1
fi
if [ "$inferno" = 1 ]; then
  perf script -i "$data" 2>/dev/null | inferno-collapse-perf > "$out.folded"
  inferno-flamegraph --title "pid $pid, ${secs}s cpu-clock" < "$out.folded" > "$out"
else
  perf script -i "$data" 2>/dev/null | python3 -c '
import sys, collections, html
# Fold: perf script prints a header line per sample, then one frame per line (leaf first).
stacks = collections.Counter(); comm = None; frames = []
def flush():
    if comm is not None:
        stacks[";".join([comm] + frames[::-1])] += 1
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        flush(); comm = None; frames = []; continue
    if not line.startswith((" ", "\t")):
        flush(); comm = line.split()[0]; frames = []; continue
    parts = line.strip().split(None, 1)
    sym = parts[1] if len(parts) > 1 else parts[0]
    sym = sym.rsplit(" (", 1)[0]
    sym = sym.split("+0x")[0]
    frames.append(sym.replace(";", ":"))
flush()
out = sys.argv[1]
with open(out + ".folded", "w") as f:
    for s, n in stacks.most_common():
        f.write(f"{s} {n}\n")
# Render: each frame a rectangle, width proportional to samples.
root = {"n": 0, "c": {}}
for s, n in stacks.items():
    node = root; node["n"] += n
    for fr in s.split(";"):
        node = node["c"].setdefault(fr, {"n": 0, "c": {}}); node["n"] += n
W, H = 1200, 16
total = max(root["n"], 1)
rects = []; depth_max = [0]
def walk(node, x, depth):
    for name, ch in sorted(node["c"].items()):
        w = ch["n"] / total * W
        if w >= 0.3:
            rects.append((x, depth, w, name, ch["n"])); depth_max[0] = max(depth_max[0], depth)
            walk(ch, x, depth + 1)
        x += w
walk(root, 0.0, 0)
height = (depth_max[0] + 2) * H + 30
svg = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">",
       f"<text x=\"5\" y=\"16\">flamegraph: {total} samples (built-in renderer; hover for names)</text>"]
for x, d, w, name, n in rects:
    y = height - (d + 1) * H
    hue = 20 + (hash(name) % 40)
    label = html.escape(name); chars = int(w / 7)
    svg.append(f"<g><title>{label} ({n} samples, {100.0 * n / total:.2f}%)</title>"
               f"<rect x=\"{x:.2f}\" y=\"{y}\" width=\"{max(w - 0.5, 0.1):.2f}\" height=\"{H - 1}\" fill=\"hsl({hue},90%,60%)\"/>"
               + (f"<text x=\"{x + 2:.2f}\" y=\"{y + 11}\">{html.escape(name[:chars])}</text>" if chars >= 3 else "") + "</g>")
svg.append("</svg>")
open(out, "w").write("\n".join(svg))
' "$out"
fi
echo "hottest symbols (self time):" >&2
perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15 | cut -c1-110 >&2 || true
echo "wrote $out ($(wc -l < "$out.folded") distinct stacks in $out.folded)" >&2
