#!/usr/bin/env python3
"""Sidecar write path: bars/s of the sidecar's FifoSink (submit_bar validates and queues in Rust;
the extension's writer thread encodes and writes whole lines, up to 4096 bytes per write) against
a naive sidecar's approach (open the FIFO, json.dump one bar, close, for every bar), into the
same reader, in one run. Timed from the first submit until every line is written.

    .venv/bin/python scripts/bench_sidecar.py [--bars 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.sinks import FifoSink  # noqa: E402


def bars(n: int) -> list[dict]:
    out = []
    for i in range(n):
        close = 100.0 + (i % 97) * 0.01
        out.append({"symbol": ("SPY", "SPXL", "SH", "SDS")[i % 4], "timestamp_ms": 1_759_930_080_000 + (i // 4) * 60_000,
                    "open": close, "high": close + 0.05, "low": close - 0.05, "close": close,
                    "volume": 1000 + i % 500, "vwap": close, "trade_count": 10 + i % 50})
    return out


class Reader:
    """`wc -l` on the FIFO; this process holds a spare write end so per-bar closes are no EOF."""

    def __init__(self, fifo: Path) -> None:
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(rfd, True)
        # The spare write end first: a wc reading a FIFO that has no writer yet sees EOF and exits.
        self.spare = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(self.spare, True)
        self.proc = subprocess.Popen(["wc", "-l"], stdin=rfd, stdout=subprocess.PIPE)
        os.close(rfd)

    def finish(self) -> int:
        os.close(self.spare)
        out, _ = self.proc.communicate(timeout=120)
        return int(out.split()[0])


def seed_writer(fifo: Path, data: list[dict]) -> float:
    t0 = time.perf_counter()
    for bar in data:
        with open(fifo, "w") as f:  # a naive sidecar's handler body
            json.dump(bar, f)
            f.write("\n")
    return time.perf_counter() - t0


def fifo_sink(fifo: Path, data: list[dict]) -> float:
    sink = FifoSink(str(fifo), backlog=len(data) + 1000, heartbeat=3600.0)
    sink.prepare()
    t0 = time.perf_counter()
    sink.start()
    for bar in data:
        sink.submit_bar(bar)
    sink.close(flush_timeout=600)
    elapsed = time.perf_counter() - t0
    assert sink.stats.bars_written == len(data), sink.stats
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bars", type=int, default=100_000)
    args = ap.parse_args()
    data = bars(args.bars)
    rows = []
    with tempfile.TemporaryDirectory(prefix="barbridge-bench-") as tmp:
        for name, fn in (("seed: open+dump+close per bar", seed_writer), ("FifoSink", fifo_sink)):
            fifo = Path(tmp) / name.split(":")[0].replace(" ", "_") / "bars.fifo"
            fifo.parent.mkdir(mode=0o700)
            os.mkfifo(fifo, 0o600)
            reader = Reader(fifo)
            elapsed = fn(fifo, data)
            lines = reader.finish()
            rows.append((name, lines, args.bars / elapsed))
    print(f"\nsidecar write path, {args.bars:,} bars into one FIFO reader")
    print(f"{'writer':<32} {'lines read':>10} {'bars/s':>10}")
    for name, lines, rate in rows:
        print(f"{name:<32} {lines:>10,} {rate:>10,.0f}")
    print(f"FifoSink = {rows[1][2] / rows[0][2]:.1f}x a naive open-per-bar writer (target >= 20x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
