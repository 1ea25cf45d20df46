#!/usr/bin/env bash
# Prepares a dedicated host for Tidewater (or any broker under test):
#   CPU frequency governor -> performance (and no deep idle via energy_perf_bias when present)
#   IRQ affinity -> CPUs outside --shard-cpus (irqbalance stopped so it does not undo it)
#   transparent huge pages -> madvise (defrag: defer+madvise)
#   vm.swappiness -> 1; net.core.somaxconn and TCP backlog -> 4096
#   open files and locked memory limits -> 1048576 / unlimited (limits.d, and this shell)
# Idempotent (settings already in place are reported as ok); --dry-run only prints what it
# would change. Missing or read-only sysfs/procfs files (VMs, containers) are skipped.
# Usage: sudo perf/tune.sh [--dry-run] [--shard-cpus LIST]   (LIST like 0-7 or 0,2,4)
set -uo pipefail
dry=0; shard_cpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run|-n) dry=1 ;;
    --shard-cpus) shard_cpus="${2:?--shard-cpus needs a CPU list}"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "not root: changes will fail; use --dry-run to see what would change" >&2
fi
changed=0; skipped=0
set_file() { # path value [label]
  local f="$1" want="$2" cur
  if [ ! -e "$f" ]; then echo "skip $f (absent)"; skipped=$((skipped + 1)); return; fi
  cur=$(cat "$f" 2>/dev/null) || { echo "skip $f (unreadable)"; skipped=$((skipped + 1)); return; }
  # Selector files show the choice in brackets: "always [madvise] never".
  case "$cur" in *"[$want]"*|"$want") echo "ok   $f = $want"; return ;; esac
  if [ "$dry" = 1 ]; then echo "would set $f: '$cur' -> '$want'"; changed=$((changed + 1)); return; fi
  if { echo "$want" > "$f"; } 2>/dev/null; then echo "set  $f = $want"; changed=$((changed + 1))
  else echo "skip $f (write refused: read-only or unsupported value)"; skipped=$((skipped + 1)); fi
}

echo "# CPU frequency governor"
govs=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
if [ -e "${govs[0]}" ]; then for g in "${govs[@]}"; do set_file "$g" performance; done
else echo "skip cpufreq (no scaling_governor: VM or fixed frequency)"; fi
for e in /sys/devices/system/cpu/cpu[0-9]*/power/energy_perf_bias; do [ -e "$e" ] && set_file "$e" 0; done

echo "# transparent huge pages"
set_file /sys/kernel/mm/transparent_hugepage/enabled madvise
set_file /sys/kernel/mm/transparent_hugepage/defrag defer+madvise

echo "# VM and network"
set_file /proc/sys/vm/swappiness 1
set_file /proc/sys/net/core/somaxconn 4096
set_file /proc/sys/net/ipv4/tcp_max_syn_backlog 4096
set_file /proc/sys/fs/aio-max-nr 1048576

echo "# IRQ affinity"
if [ -n "$shard_cpus" ]; then
  mask=$(python3 - "$shard_cpus" <<'PY'
import os, sys
shard = set()
for part in sys.argv[1].split(','):
    a, _, b = part.partition('-'); shard.update(range(int(a), int(b or a) + 1))
others = [c for c in range(os.cpu_count()) if c not in shard] or [0]
m = sum(1 << c for c in others)
# /proc/irq/*/smp_affinity format: comma-separated 32-bit hex groups.
groups = []
while True:
    groups.append(format(m & 0xffffffff, '08x')); m >>= 32
    if not m: break
print(','.join(reversed(groups)))
PY
) || { echo "bad --shard-cpus $shard_cpus" >&2; exit 2; }
  echo "IRQs to CPUs outside $shard_cpus (mask $mask)"
  if command -v systemctl >/dev/null && systemctl is-active --quiet irqbalance 2>/dev/null; then
    if [ "$dry" = 1 ]; then echo "would stop irqbalance"; changed=$((changed + 1))
    else systemctl stop irqbalance && echo "stopped irqbalance"; changed=$((changed + 1)); fi
  fi
  set_file /proc/irq/default_smp_affinity "$mask"
  for irq in /proc/irq/[0-9]*/smp_affinity; do
    [ -e "$irq" ] || continue
    cur=$(cat "$irq" 2>/dev/null) || continue
    # Compare without leading zeros/commas (kernels print different widths).
    norm() { echo "$1" | tr -d ',' | sed 's/^0*//'; }
    if [ "$(norm "$cur")" = "$(norm "$mask")" ]; then continue; fi
    if [ "$dry" = 1 ]; then echo "would set $irq: $cur -> $mask"; changed=$((changed + 1))
    elif { echo "$mask" > "$irq"; } 2>/dev/null; then changed=$((changed + 1))
    else skipped=$((skipped + 1)); fi   # per-CPU and managed IRQs refuse; that is fine
  done
else
  echo "skip (no --shard-cpus given)"
fi

echo "# limits: open files, locked memory"
lim=/etc/security/limits.d/90-tidewater.conf
want=$'* soft nofile 1048576\n* hard nofile 1048576\n* soft memlock unlimited\n* hard memlock unlimited\nroot soft nofile 1048576\nroot hard nofile 1048576\nroot soft memlock unlimited\nroot hard memlock unlimited'
if [ "$(cat "$lim" 2>/dev/null)" = "$want" ]; then echo "ok   $lim"
elif [ "$dry" = 1 ]; then echo "would write $lim (nofile 1048576, memlock unlimited; new logins)"; changed=$((changed + 1))
elif [ -d "$(dirname "$lim")" ] && printf '%s\n' "$want" > "$lim" 2>/dev/null; then echo "set  $lim"; changed=$((changed + 1))
else echo "skip $lim (cannot write)"; skipped=$((skipped + 1)); fi
echo "this shell: nofile $(ulimit -n), memlock $(ulimit -l); for a broker started from it run:"
echo "  ulimit -n 1048576; ulimit -l unlimited"
echo "# done: $( [ "$dry" = 1 ] && echo "would change" || echo changed) $changed, skipped $skipped"
