#!/usr/bin/env python3
"""FIFO throughput: the same seed-format bars streamed through a real FIFO into three readers,
in one run, so the ratios are meaningful on any machine:

  pipe bound      `wc -l` reading the FIFO (no parsing at all)
  barbridge       `barbridge run --once --drain-subscriber` (parse, validate, store, health,
                  deliver to one channel subscriber on another thread)
  barbridge store the same without the subscriber (what delivery costs)
  plain Python    json.loads + dict of deques (what a hand-rolled consumer does)

Reports bars/s, CPU seconds and peak RSS per reader: the best of --repeat runs, interleaved so
that every reader sees the same machine (a shared VM is noisy). Usage:
    scripts/bench_fifo.sh [--bars 2000000] [--symbol-sets 4,10000] [--repeat 3]
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

PY_CONSUMER = r"""
import sys, json, collections
store = collections.defaultdict(lambda: collections.deque(maxlen=10000))
n = 0
for line in sys.stdin.buffer:
    bar = json.loads(line)
    store[bar["symbol"]].append(bar)
    n += 1
print(n)
"""


def generate(path: Path, bars: int, symbols: int) -> None:
    names = [f"S{i:05d}" for i in range(symbols)]
    t0 = 1_759_930_080_000
    with path.open("w") as f:
        for i in range(bars):
            close = 100.0 + (i % 97) * 0.01
            f.write(json.dumps({
                "symbol": names[i % symbols], "timestamp_ms": t0 + (i // symbols) * 60_000,
                "open": close, "high": close + 0.05, "low": close - 0.05, "close": close,
                "volume": 1000 + i % 500, "vwap": close, "trade_count": 10 + i % 50,
            }) + "\n")


def read_nonblocking_then_blocking(fifo: Path) -> int:
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    return fd


def run_one(name: str, data: Path, workdir: Path, binary: str) -> dict:
    rundir = Path(tempfile.mkdtemp(dir=workdir))  # mode 0700
    fifo = rundir / "bars.fifo"
    if name.startswith("barbridge"):
        cmd = [binary, "run", "--once", "--fifo", str(fifo),
               "--status-file", str(rundir / "status.json"), "--capacity", "10000"]
        if name == "barbridge":
            cmd.append("--drain-subscriber")
        consumer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env={**os.environ, "RUST_LOG": "warn"})
        deadline = time.monotonic() + 30
        while not fifo.exists():
            if time.monotonic() > deadline or consumer.poll() is not None:
                raise SystemExit(f"barbridge did not create {fifo}: {consumer.stderr.read().decode()}")
            time.sleep(0.01)
        # The writer's blocking open() below waits for barbridge's reader: --once then ends the
        # consumer exactly when this one writer session closes.
    else:
        os.mkfifo(fifo, 0o600)
        fd = read_nonblocking_then_blocking(fifo)
        cmd = ["wc", "-l"] if name == "wc -l" else [sys.executable, "-c", PY_CONSUMER]
        consumer = subprocess.Popen(cmd, stdin=fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(fd)
    t0 = time.perf_counter()
    with open(fifo, "wb") as out, data.open("rb") as src:
        while chunk := src.read(1 << 16):
            out.write(chunk)
    _, status, ru = os.wait4(consumer.pid, 0)
    elapsed = time.perf_counter() - t0
    consumer.returncode = os.waitstatus_to_exitcode(status)
    if consumer.returncode != 0:
        raise SystemExit(f"{name} failed ({consumer.returncode}): {consumer.stderr.read().decode()[-2000:]}")
    if name.startswith("barbridge"):
        report = json.loads((rundir / "status.json").read_text())
        counted = report["health"]["counters"]["bars_accepted"]
    else:
        counted = int(consumer.stdout.read().split()[0])
    return {"name": name, "bars": counted, "seconds": elapsed,
            "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=2_000_000)
    ap.add_argument("--symbol-sets", default="4,10000")
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader; the fastest is reported")
    ap.add_argument("--bin", default=os.environ.get("BARBRIDGE_BIN", str(REPO / "target/release/barbridge")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="barbridge-bench-") as tmp:
        work = Path(tmp)
        for symbols in (int(s) for s in args.symbol_sets.split(",")):
            data = work / f"bars-{symbols}.jsonl"
            generate(data, args.bars, symbols)
            size_mb = data.stat().st_size / 1e6
            readers = ("wc -l", "barbridge", "barbridge store", "plain Python")
            runs = [run_one(n, data, work, args.bin) for _ in range(args.repeat) for n in readers]
            results = [min((r for r in runs if r["name"] == n), key=lambda r: r["seconds"]) for n in readers]
            print(f"\n{args.bars:,} seed-format bars, {symbols:,} symbols, {size_mb:.0f} MB through a real FIFO "
                  f"(best of {args.repeat})")
            print(f"{'reader':<14} {'bars':>10} {'bars/s':>12} {'CPU s':>7} {'peak RSS':>9}  ratio")
            by = {r["name"]: r for r in results}
            for r in results:
                rate = r["bars"] / r["seconds"]
                print(f"{r['name']:<14} {r['bars']:>10,} {rate:>12,.0f} {r['cpu']:>7.2f} {r['rss_mb']:>7.0f}MB")
                r["rate"] = rate
            bb, wc, py = by["barbridge"], by["wc -l"], by["plain Python"]
            print(f"barbridge = {bb['rate'] / wc['rate'] * 100:.0f}% of the pipe bound (target >= 50%), "
                  f"{bb['rate'] / py['rate']:.1f}x plain Python (target >= 10x); "
                  f"without the subscriber {by['barbridge store']['rate'] / wc['rate'] * 100:.0f}% and "
                  f"{by['barbridge store']['rate'] / py['rate']:.1f}x")
            short = [r for r in runs if r["name"].startswith("barbridge") and r["bars"] != args.bars]
            if short:
                print(f"ERROR: barbridge accepted {short[0]['bars']} of {args.bars} bars")
                return 1
            data.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
