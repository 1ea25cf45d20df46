#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an already prepared one:
#   1. installs what it needs (idempotent; fast when everything is there already):
#      apt: kcat (Debian's, librdkafka 2.0.2), nodejs + npm, python3-venv when needed;
#      .venv: confluent-kafka, kafka-python, aiokafka, pytest, pytest-timeout (tests/clients/requirements.txt);
#      tests/clients/node_modules: kafkajs (tests/clients/package-lock.json);
#   2. cargo build --release, cargo test --release;
#   3. pytest tests/clients against brokers the tests start themselves on free 127.0.0.1 ports;
#   4. pytest tests/faults: crash loop with the history checker, power loss, hostile clients.
# Arguments are passed to the client pytest run (e.g. `bash scripts/test.sh -k kcat -x`).
# Env: SKIP_RUST_TESTS=1 skips step 2's cargo test; TIDEWATER_BIN overrides the broker binary.
# Exits non-zero when any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

T0=$(date +%s)
step() { printf '\n=== [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { printf '\nscripts/test.sh: %s\n' "$*" >&2; exit 1; }
sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
# Each test step's output is also kept here, so the names of failed tests can be repeated last:
# CI shows only the tail of this script's output.
LOGS="$(mktemp -d /tmp/tidewater-ci-logs.XXXXXX)"
trap 'rm -rf "$LOGS"' EXIT
# Runs a command with its output shown and kept in $LOGS/NAME.log; returns the command's status.
logged() {
  local name=$1 rc
  shift
  set +e
  "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
fi
apt_updated=0
apt_install() {
  # Installs the given Debian packages; `apt-get update` only the first time something is missing.
  if [ "$apt_updated" = 0 ]; then
    $SUDO apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

step "system packages"
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt_install "${missing[@]}"
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "installing: python3-venv"
  apt_install python3-venv
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust: rustup)"
echo "kcat:   $(kcat -V 2>&1 | grep -m1 -o 'Version .*librdkafka [0-9.]*' || true)"
echo "node:   $(node --version)  npm: $(npm --version 2>/dev/null)"
echo "python: $(python3 --version 2>&1)"
echo "cargo:  $(cargo --version)"

step "python venv with Kafka clients (.venv)"
REQ=tests/clients/requirements.txt
want="$(sha "$REQ")-$(python3 -c 'import sys; print(sys.version)' | sha256sum | cut -c1-12)"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
fi
if [ "$(cat .venv/.tidewater-stamp 2>/dev/null)" != "$want" ] \
  || ! .venv/bin/python -c 'import confluent_kafka, kafka, aiokafka, pytest, pytest_timeout' >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q -r "$REQ"
  echo "$want" > .venv/.tidewater-stamp
else
  echo "up to date"
fi
.venv/bin/python -c 'import confluent_kafka as c; print("confluent-kafka", c.version()[0] if isinstance(c.version(), tuple) else c.version(), "librdkafka", c.libversion()[0])'

step "kafkajs (tests/clients/node_modules)"
LOCK=tests/clients/package-lock.json
want="$(sha tests/clients/package.json "$LOCK")"
if [ "$(cat tests/clients/node_modules/.tidewater-stamp 2>/dev/null)" != "$want" ] \
  || [ ! -f tests/clients/node_modules/kafkajs/package.json ]; then
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > tests/clients/node_modules/.tidewater-stamp
else
  echo "up to date"
fi
node -e 'console.log("kafkajs", require("./tests/clients/node_modules/kafkajs/package.json").version)'

step "cargo build --release"
cargo build --release --workspace

failed=()
if [ "${SKIP_RUST_TESTS:-0}" != 1 ]; then
  step "cargo test --release"
  logged cargo-test cargo test --release --workspace || failed+=("cargo test")
fi

step "real-client tests (pytest tests/clients)"
export TIDEWATER_BIN="${TIDEWATER_BIN:-$ROOT/target/release/tidewater}"
[ -x "$TIDEWATER_BIN" ] || die "broker binary $TIDEWATER_BIN missing after the build"
echo "broker: $TIDEWATER_BIN"
rc=0
logged clients .venv/bin/python -m pytest tests/clients -p no:cacheprovider -rfEs --durations=10 "$@" \
  || rc=$?
if [ "$rc" = 5 ]; then
  failed+=("pytest (no tests collected)")
elif [ "$rc" != 0 ]; then
  failed+=("pytest (exit $rc)")
fi

step "fault campaign, short form (pytest tests/faults)"
rc=0
logged faults .venv/bin/python -m pytest tests/faults -p no:cacheprovider -rfEs --durations=5 || rc=$?
[ "$rc" = 0 ] || failed+=("faults (exit $rc)")

step "done"
if ((${#failed[@]})); then
  # The failed tests by name (pytest's short summary, cargo's `test ... FAILED` lines).
  grep -h -E '^(FAILED|ERROR) |^test .* FAILED$|panicked at' "$LOGS"/*.log 2>/dev/null | cut -c1-400 | tail -n 40
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
