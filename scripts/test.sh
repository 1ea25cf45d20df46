#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs (apt kcat, a Python venv
# with the Kafka clients, kafkajs), builds, runs the Rust tests, then the real-client tests
# against brokers the tests start themselves on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
kcat -V 2>&1 | head -n 1

step "python venv with Kafka clients"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

step "kafkajs"
if [ ! -d tests/clients/node_modules/kafkajs ]; then
  (cd tests/clients && npm install --no-audit --no-fund --silent)
fi

step "build"
cargo build --release --workspace

step "rust tests"
cargo test --release --workspace

step "real-client tests"
export TIDEWATER_BIN="$PWD/target/release/tidewater"
.venv/bin/python -m pytest tests/clients -q -p no:cacheprovider "$@"
