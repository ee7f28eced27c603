#!/usr/bin/env bash
# FIFO throughput benchmark: barbridge vs the pipe bound (wc -l) vs a plain Python consumer,
# measured side by side in one run. Options are passed to scripts/bench_fifo.py.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo build --release --quiet --bin barbridge
exec python3 scripts/bench_fifo.py "$@"
