#!/usr/bin/env python3
"""Full-market burst: the sidecar against the official alpaca-py client alone, in one run.

    .venv/bin/python scripts/bench_burst.py [--sizes 3000,10000] [--minutes 8] [--interval 1.5]

For each N, the fake Alpaca server (burst mode: every minute's N bars in one websocket frame)
serves each client in turn (``--rounds`` times, interleaved):

* **SDK alone**: a ``StockDataStream`` (raw_data) whose bar handler only counts; a minute is done
  when its N-th bar was handled.
* **barbridge**: the real sidecar (``python -m bridge``, FIFO sink) → FIFO → a ``barbridge``
  consumer in this process; a minute is done when its last bar is in the consumer's store.

Latency = done time - the server's send time of the minute's frame (one machine, one clock).
Reported: median and max over the rounds' ``--minutes`` minutes each (after 2 warm-up minutes per
run), the ratio of the medians (barbridge / SDK alone), every bar delivered, and the CPU (user+system) each client
process spent per bar over the measured minutes. Exit 1 when a bar is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable
KEY, SECRET = "FAKEKEY0000", "FAKESECRET0000"
WARMUP = 2


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """The fake Alpaca server in burst mode, in its own process."""

    def __init__(self, n: int, interval: float) -> None:
        self.proc = subprocess.Popen([PY, "-m", "fake_alpaca", "--port", "0", "--burst", str(n),
                                      "--interval", str(interval), "--prefill", "0"], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("FAKE_ALPACA_STREAM_URL="):
            raise SystemExit("bench_burst: the fake Alpaca server did not start")
        self.ws_url = line.strip().split("=", 1)[1]
        self.data_url = self.ws_url.replace("ws://", "http://").rsplit("/v2/", 1)[0]

    def sent(self) -> dict[int, float]:
        with urllib.request.urlopen(f"{self.data_url}/_fake/stats", timeout=10) as r:
            return {int(k): v for k, v in json.load(r)["burst_sent"].items()}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ---------------------------------------------------------------- the SDK alone (a child process)
def sdk_child(url: str, n: int, minutes: int) -> int:
    """Count bars per minute with the official client; print ``{"ts", "done"}`` per full minute."""
    from alpaca.data.live import StockDataStream

    from fake_alpaca import burst_symbols

    counts: dict[int, int] = {}
    stream = StockDataStream(KEY, SECRET, raw_data=True, url_override=url)

    async def on_bar(msg: dict) -> None:
        ts = msg["t"].seconds * 1000
        c = counts[ts] = counts.get(ts, 0) + 1
        if c == n:
            print(json.dumps({"ts": ts, "done": time.time()}), flush=True)

    stream.subscribe_bars(on_bar, *burst_symbols(n))
    stream.run()
    return 0


def run_sdk_alone(n: int, minutes: int, interval: float) -> dict:
    server = Server(n, interval)
    child = subprocess.Popen([PY, __file__, "--sdk-child", server.ws_url, str(n), str(minutes + WARMUP)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    done: dict[int, float] = {}
    cpu0 = None
    try:
        for line in child.stdout:
            d = json.loads(line)
            done[d["ts"]] = d["done"]
            if len(done) == WARMUP:
                cpu0 = cpu_seconds(child.pid)
            if len(done) >= minutes + WARMUP:
                cpu1 = cpu_seconds(child.pid)
                break
        sent = server.sent()
    finally:
        child.kill()
        child.wait()
        server.stop()
    measured = sorted(done)[WARMUP:]
    return {"latency_ms": [(done[t] - sent[t]) * 1000 for t in measured],
            "cpu_us_per_bar": (cpu1 - cpu0) / (len(measured) * n) * 1e6, "complete": len(measured) == minutes}


# ---------------------------------------------------------------- barbridge: sidecar → FIFO → consumer
def run_barbridge(n: int, minutes: int, interval: float, per_message: bool = False) -> dict:
    os.environ.setdefault("RUST_LOG", "error")  # the idle iterator's drop notices are not news here
    import barbridge

    from fake_alpaca import burst_symbols

    symbols = burst_symbols(n)
    server = Server(n, interval)
    tmp = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    fifo = tmp / "run" / "bars.fifo"
    consumer = barbridge.Consumer(capacity_per_symbol=minutes + WARMUP + 8)
    last = consumer.subscribe(symbols=[symbols[-1]], timeout=60)  # the frame's last bar
    reader = barbridge.FifoReader(str(fifo), consumer=consumer, capacity=1)
    env = {**os.environ, "ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET, "BARBRIDGE_LOG": "WARNING",
           "PYTHONPATH": str(REPO)}
    env.pop("BARBRIDGE_CONFIG", None)
    side = subprocess.Popen([PY, "-m", "bridge", "--stream-url", server.ws_url, "--fifo", str(fifo),
                             "--symbols", ",".join(symbols), "--no-backfill", "--no-preflight",
                             "--market-hours", "always", "--stale-after", "0", "--stats-interval", "0"]
                            + (["--per-message"] if per_message else []),
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "sidecar.log", "w"))
    done: dict[int, float] = {}
    cpu0 = cpu1 = 0.0
    try:
        for bar in last:
            ts = bar.timestamp_ms
            done[ts] = time.time()
            if len(done) == WARMUP:
                cpu0 = cpu_seconds(side.pid)
            if len(done) >= minutes + WARMUP:
                cpu1 = cpu_seconds(side.pid)
                break
        sent = server.sent()
        measured = sorted(done)[WARMUP:]
        if not measured:
            raise SystemExit("bench_burst: no minute reached the consumer; the sidecar said:\n"
                             + (tmp / "sidecar.log").read_text()[-2000:])
        # every bar of every measured minute is in the store (the store keeps one bar per minute)
        lo, hi = measured[0], measured[-1] + 60_000
        missing = sum(len(measured) - len(consumer.range(s, lo, hi)) for s in symbols)
        stats = consumer.stats()
    finally:
        side.terminate()
        side.wait(15)
        reader.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"latency_ms": [(done[t] - sent[t]) * 1000 for t in measured], "missing": missing,
            "duplicates": stats["duplicates"], "cpu_us_per_bar": (cpu1 - cpu0) / (len(measured) * n) * 1e6,
            "complete": len(measured) == minutes and missing == 0}


def pool(runs: list[dict]) -> dict:
    """The rounds of one client as one result: all their minutes, mean CPU per bar."""
    return {"latency_ms": [x for r in runs for x in r["latency_ms"]],
            "cpu_us_per_bar": statistics.mean(r["cpu_us_per_bar"] for r in runs),
            "complete": all(r["complete"] for r in runs), "missing": sum(r.get("missing", 0) for r in runs),
            "duplicates": sum(r.get("duplicates", 0) for r in runs)}


def summary(name: str, r: dict) -> str:
    lat = r["latency_ms"]
    return (f"  {name:<22} median {statistics.median(lat):7.1f} ms   max {max(lat):7.1f} ms   "
            f"CPU {r['cpu_us_per_bar']:5.2f} µs/bar")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="3000,10000", help="comma-separated symbol counts")
    ap.add_argument("--minutes", type=int, default=8, help="measured minutes per run (after 2 warm-up minutes)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per client, taking turns; their minutes are pooled")
    ap.add_argument("--interval", type=float, default=1.5, help="wall seconds per data minute")
    ap.add_argument("--per-message", action="store_true",
                    help="also run the sidecar with --per-message (bars handed over after the SDK's dispatch)")
    ap.add_argument("--sdk-child", nargs=3, metavar=("URL", "N", "MINUTES"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.sdk_child:
        return sdk_child(a.sdk_child[0], int(a.sdk_child[1]), int(a.sdk_child[2]))
    ok = True
    for n in (int(x) for x in a.sizes.split(",")):
        print(f"N = {n:,} symbols, one frame per minute, {a.rounds} x {a.minutes} minutes of {a.interval:g} s "
              "(the clients take turns):", flush=True)
        runs: dict[str, list[dict]] = {"alpaca-py alone": [], "barbridge per message": [], "barbridge (to store)": []}
        for _ in range(a.rounds):  # interleaved, so that a busy spell of the machine hits both
            runs["alpaca-py alone"].append(run_sdk_alone(n, a.minutes, a.interval))
            if a.per_message:
                runs["barbridge per message"].append(run_barbridge(n, a.minutes, a.interval, per_message=True))
            runs["barbridge (to store)"].append(run_barbridge(n, a.minutes, a.interval))
        pooled = {name: pool(rs) for name, rs in runs.items() if rs}
        for name, r in pooled.items():
            print(summary(name, r), flush=True)
        sdk, ours = pooled["alpaca-py alone"], pooled["barbridge (to store)"]
        ratio = statistics.median(ours["latency_ms"]) / statistics.median(sdk["latency_ms"])
        delivered = "every bar delivered" if ours["complete"] else f"{ours['missing']} bar(s) MISSING"
        print(f"  ratio {ratio:.2f} (goal <= 1.10); {delivered}; duplicates {ours['duplicates']}", flush=True)
        ok = ok and ours["complete"] and sdk["complete"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
