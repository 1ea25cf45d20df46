#!/usr/bin/env bash
# Prepares a dedicated host for Tidewater. Safe to run twice; --dry-run prints what it would do.
# Usage: perf/tune.sh [--dry-run] [--shard-cpus 0-7]
set -uo pipefail
dry=0; shard_cpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --shard-cpus) shard_cpus="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
set_file() { # path value
  [ -w "$1" ] || { echo "skip $1 (absent or read-only)"; return; }
  cur=$(cat "$1" 2>/dev/null)
  case "$cur" in *"[$2]"*|"$2") echo "ok   $1 = $2"; return ;; esac
  if [ $dry = 1 ]; then echo "would set $1: $cur -> $2"; else echo "$2" > "$1" && echo "set  $1 = $2"; fi
}
for g in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do [ -e "$g" ] && set_file "$g" performance; done
set_file /sys/kernel/mm/transparent_hugepage/enabled madvise
set_file /proc/sys/vm/swappiness 1
set_file /proc/sys/net/core/somaxconn 4096
# IRQs away from shard cores: all IRQs to the CPUs not listed in --shard-cpus.
if [ -n "$shard_cpus" ] && command -v python3 >/dev/null; then
  mask=$(python3 - "$shard_cpus" <<'PY'
import os, sys
shard = set()
for part in sys.argv[1].split(','):
    a, _, b = part.partition('-'); shard.update(range(int(a), int(b or a) + 1))
others = [c for c in range(os.cpu_count()) if c not in shard] or [0]
print(format(sum(1 << c for c in others), 'x'))
PY
)
  for irq in /proc/irq/[0-9]*/smp_affinity; do set_file "$irq" "$mask"; done
fi
lim=/etc/security/limits.d/90-tidewater.conf
want=$'* soft nofile 1048576\n* hard nofile 1048576\n* soft memlock unlimited\n* hard memlock unlimited'
if [ "$(cat $lim 2>/dev/null)" = "$want" ]; then echo "ok   $lim"; elif [ $dry = 1 ]; then echo "would write $lim"; else printf '%s\n' "$want" > $lim && echo "set  $lim"; fi
