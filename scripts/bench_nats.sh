#!/usr/bin/env bash
# NATS fan-out benchmark: FIFO -> barbridge run --publish -> JetStream -> 1, then 3,
# barbridge run --source subscribers, beside the FIFO path alone in the same run (latency at a
# steady rate, a burst, throughput). Needs nats-server on PATH and .venv/ (scripts/test_all.sh
# creates it). Options are passed to scripts/bench_nats.py (--help).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo build --release --quiet --features nats --bin barbridge
scripts/ensure_extension.sh
exec .venv/bin/python scripts/bench_nats.py "$@"
