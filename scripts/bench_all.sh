#!/usr/bin/env bash
# Every benchmark of the README's performance section, in order, each printing its own table
# with the baselines measured in the same run (about 15 minutes on a 2-core machine):
#   cargo bench --bench pipeline   latency (and its bare-pipe floor), burst, memory, idle CPU
#   scripts/bench_fifo.sh          FIFO throughput vs wc -l and a plain Python consumer
#   scripts/bench_sidecar.py       the sidecar's FifoSink vs a naive open-per-bar writer
#   scripts/bench_python_push.py   the extension's push paths vs pure Python
#   scripts/bench_burst.py         full-market bursts: the sidecar vs alpaca-py alone (~4 minutes)
#   scripts/bench_nats.py          NATS fan-out beside the FIFO path: latency, burst, throughput
#                                  with 3 subscribers (~40 s; skipped without nats-server)
#   cargo bench --bench consumer   criterion: parse, store insert, ingest, queries (--criterion)
# Needs .venv/ (scripts/test_all.sh creates it); builds the extension when missing.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
with_criterion=0
case "${1:-}" in
    --criterion) with_criterion=1 ;;
    "") ;;
    *) echo "bench_all: unknown option $1 (only --criterion)" >&2; exit 2 ;;
esac
scripts/ensure_extension.sh
section() { printf '\n=== %s\n' "$1"; }
section "write->stored latency, burst, memory, idle CPU (cargo bench --bench pipeline)"
cargo bench --quiet --bench pipeline 2>/dev/null
section "FIFO throughput (scripts/bench_fifo.sh)"
scripts/bench_fifo.sh
section "sidecar write path (scripts/bench_sidecar.py)"
.venv/bin/python scripts/bench_sidecar.py
section "Python extension push paths (scripts/bench_python_push.py)"
.venv/bin/python scripts/bench_python_push.py
section "full-market burst (scripts/bench_burst.py --per-message)"
.venv/bin/python scripts/bench_burst.py --per-message
section "NATS fan-out beside the FIFO path (scripts/bench_nats.sh)"
if command -v nats-server >/dev/null; then
    scripts/bench_nats.sh
else
    echo "skipped: nats-server is not on PATH (apt-get install nats-server)"
fi
if ((with_criterion)); then
    section "criterion micro-benchmarks (cargo bench --bench consumer)"
    cargo bench --bench consumer
fi
