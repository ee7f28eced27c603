#!/usr/bin/env python3
"""NATS fan-out benchmark: writer -> FIFO -> `barbridge run --publish` -> JetStream ->
`barbridge run --source` subscribers, with the FIFO path alone (writer -> the publishing
consumer's store) measured in the same run as the baseline. Not a test: it prints numbers.

Every process is real: a nats-server with JetStream (its own temp dir, a port picked at run
time), the publishing consumer `barbridge run --fifo F --journal J --publish nats://...`, and
1, then 3, subscribers `barbridge run --source nats://... --durable subN` with journals of
their own. The writer is the extension's `barbridge.FifoWriter` (the sidecar's writer) in this
process. For latency a bar counts as stored when the consumer's `--echo` prints it (the echo
thread gets each bar after the store accepted it); this process reads every `--echo` pipe and
stamps the arrival with the same monotonic clock that stamped the send, so latency = stored -
submitted. The echo is a bounded channel that drops its oldest lines under a flood (counted), so
throughput is counted instead by each consumer's own `barbridge_bars_accepted_total` on its
`--metrics-addr`, polled every 10 ms, in a rig of its own without `--echo`.

For 1 and then 3 subscribers (fresh server, consumers and directories each time):
  steady    --rate bars/s for --seconds: per-bar latency p50/p99, FIFO consumer vs subscribers
  burst     --burst bars submitted at once: time from the first submit until the last bar is
            stored (the FIFO consumer, each subscriber)
Then, with 1 and then 3 subscribers and no --echo:
  flood     --flood bars at once: throughput = bars / time from the first submit until the
            consumer's counter has them all, for the FIFO consumer and each subscriber; the
            CPU each process used per bar during the flood (utime + stime deltas from
            /proc/PID/stat: nats-server, the publishing consumer, each subscriber, this driver
            with its writer), and every journal checked exact (each bar once, none missing)

The 1-minute load average is printed at the start and before each phase: on a shared machine
the numbers mean something only while it is low.

Usage: scripts/bench_nats.sh [--rate 1000] [--seconds 10] [--burst 10000] [--flood 100000]
                             [--skip-latency]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
BASE_MS = 1_759_930_080_000  # 2025-10-08 13:28 UTC, a minute in a regular session
SYMBOLS = 100
KEY = re.compile(rb'"symbol":"([^"]+)","timestamp_ms":(\d+)')

Key = Tuple[str, int]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_nats: timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class Reader:
    """One `barbridge run --echo` process and the arrival time of every bar it stored."""

    name: str
    proc: subprocess.Popen[bytes]
    arrived: Dict[Key, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, out: Optional[IO[bytes]]) -> None:
        assert out is not None
        fd = out.fileno()
        rest = b""
        while chunk := os.read(fd, 1 << 20):
            now = time.monotonic_ns()
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            keys = [(m[1].decode(), int(m[2])) for m in KEY.finditer(data, 0, cut)]
            with self.lock:
                for k in keys:
                    self.arrived.setdefault(k, now)

    def has(self, key: Key) -> bool:
        with self.lock:
            return key in self.arrived

    def count(self, keys: List[Key]) -> int:
        with self.lock:
            return sum(k in self.arrived for k in keys)

    def times(self, keys: List[Key]) -> List[int]:
        with self.lock:
            return [self.arrived[k] for k in keys]


class Rig:
    """nats-server, the publishing FIFO consumer, `subscribers` subscribers and the writer."""

    def __init__(self, work: Path, binary: str, subscribers: int, echo: bool = True) -> None:
        self.procs: List[subprocess.Popen[bytes]] = []
        self.writer = None
        try:
            self._start(work, binary, subscribers, echo)
        except BaseException:
            self.close()  # never leave a process behind
            raise

    def _start(self, work: Path, binary: str, subscribers: int, echo: bool) -> None:
        import barbridge  # the extension (scripts/ensure_extension.sh builds it)

        self.work = work
        port = free_port()
        (work / "nats").mkdir()
        self.monitor = f"127.0.0.1:{free_port()}"  # nats-server's /jsz: messages in the streams
        self.nats = self._spawn(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                                 "-m", self.monitor.split(":")[1], "-sd", str(work / "nats")],
                                stdout=subprocess.DEVNULL)
        url = f"nats://127.0.0.1:{port}"
        wait_for("nats-server", lambda: _connects(port))
        env = {**os.environ, "RUST_LOG": "warn"}
        pub = work / "publisher"
        self.fifo = pub / "run" / "bars.fifo"
        # Each consumer's /metrics on a port of its own (counts every bar, unlike --echo).
        self.metrics = [f"127.0.0.1:{free_port()}" for _ in range(subscribers + 1)]
        out = ["--echo"] if echo else []
        self.journals = [pub / "journal", *(work / f"sub{i + 1}" / "journal" for i in range(subscribers))]
        self.fifo_reader = Reader("FIFO consumer", self._spawn(
            [binary, "run", "--fifo", str(self.fifo), "--journal", str(pub / "journal"),
             "--status-file", str(pub / "run" / "status.json"), "--publish", url,
             "--metrics-addr", self.metrics[0], *out], env=env, echo=echo))
        wait_for("the publishing consumer's FIFO", self.fifo.exists)
        self.subs = [Reader(f"subscriber {i + 1}", self._spawn(
            [binary, "run", "--source", url, "--durable", f"bench-{i + 1}",
             "--journal", str(work / f"sub{i + 1}" / "journal"),
             "--status-file", str(work / f"sub{i + 1}" / "run" / "status.json"),
             "--metrics-addr", self.metrics[i + 1], *out], env=env, echo=echo))
            for i in range(subscribers)]
        if echo:
            for r in self.readers:
                r.start()
        self.writer = barbridge.FifoWriter(self.fifo, writer="bench-nats", heartbeat=0.0, backlog=1_000_000)
        self.writer.start()
        self.sent: Dict[Key, int] = {}
        self.next = 0
        # Warm up: one bar through every consumer (the stream exists, every durable is attached).
        warm = self.submit(1)[0]
        if echo:
            wait_for("the first bar in every subscriber", lambda: all(r.has(warm) for r in self.readers))
        else:
            wait_for("the first bar in every subscriber", self._warm)

    @property
    def readers(self) -> List[Reader]:
        return [self.fifo_reader, *self.subs]

    def _spawn(self, cmd: List[str], echo: bool = True, **kw) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
        kw.setdefault("stdout", subprocess.PIPE if echo else subprocess.DEVNULL)
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE if "env" not in kw else None, **kw)
        self.procs.append(p)
        return p

    def _warm(self) -> bool:
        try:
            return min(self.accepted()) >= 1
        except OSError:  # a /metrics not listening yet
            return False

    def accepted(self) -> List[int]:
        """`barbridge_bars_accepted_total` of the FIFO consumer, then of each subscriber."""
        return [_accepted(addr) for addr in self.metrics]

    def submit(self, n: int, rate: Optional[float] = None) -> List[Key]:
        """Submit `n` new bars (one per (symbol, minute)), paced at `rate` bars/s or at once."""
        bars: List[Dict[str, object]] = []
        keys: List[Key] = []
        for j in range(self.next, self.next + n):
            symbol, ts, close = f"S{j % SYMBOLS:03d}", BASE_MS + j // SYMBOLS * 60_000, 100.0 + (j % 97) * 0.01
            bars.append({"symbol": symbol, "timestamp_ms": ts, "open": close, "high": close + 0.05,
                         "low": close - 0.05, "close": close, "volume": 1000 + j % 500, "vwap": close,
                         "trade_count": 10})
            keys.append((symbol, ts))
        self.next += n
        submit, clock = self.writer.submit_bar, time.monotonic_ns
        stamps = []
        t0 = clock()
        for i, bar in enumerate(bars):
            if rate:
                due = t0 + int(i * 1e9 / rate)
                while (now := clock()) < due:
                    time.sleep(min((due - now) / 1e9, 0.001))
            stamps.append(clock())
            if not submit(bar):
                raise SystemExit("bench_nats: the FIFO writer refused a bar (backlog full?)")
        self.sent.update(zip(keys, stamps, strict=True))
        return keys

    def wait_all(self, keys: List[Key], timeout: float = 300.0) -> None:
        for r in self.readers:
            wait_for(f"{len(keys):,} bars in {r.name} (has {r.count(keys):,})",
                     lambda r=r: r.count(keys) == len(keys), timeout)

    def close(self) -> None:
        """Stop the consumers, then nats-server (so they do not log its shutdown)."""
        if self.writer is not None:
            self.writer.close(2.0)
        for group in (self.procs[1:], self.procs[:1]):
            for p in group:
                p.terminate()
            for p in group:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load1() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def journal_keys(journal: Path) -> Tuple[int, int]:
    """(records, distinct (symbol, minute)) in the day files of `journal`."""
    records, keys = 0, set()
    for path in sorted(journal.glob("*.jsonl")):
        for m in KEY.finditer(path.read_bytes()):
            records += 1
            keys.add((m[1], m[2]))
    return records, len(keys)


def _accepted(addr: str) -> int:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("barbridge_bars_accepted_total "):
                return int(float(line.split()[1]))
    raise SystemExit(f"bench_nats: no barbridge_bars_accepted_total on http://{addr}/metrics")


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"


def steady(rig: Rig, rate: float, seconds: float) -> Dict[str, Tuple[float, float]]:
    keys = rig.submit(int(rate * seconds), rate)
    rig.wait_all(keys)
    out = {}
    for r in rig.readers:
        lat = [a - rig.sent[k] for k, a in zip(keys, r.times(keys), strict=True)]
        out[r.name] = (pct(lat, 50), pct(lat, 99))
    return out


def burst(rig: Rig, n: int) -> Dict[str, float]:
    """Time from the first submit until the last bar of the burst is stored, per reader."""
    keys = rig.submit(n)
    rig.wait_all(keys)
    first = rig.sent[keys[0]]
    return {r.name: max(r.times(keys)) - first for r in rig.readers}


def stream_messages(monitor: str) -> int:
    """Messages in nats-server's streams (its /jsz)."""
    with urllib.request.urlopen(f"http://{monitor}/jsz", timeout=5) as r:
        return int(json.load(r)["messages"])


def flood(rig: Rig, n: int, timeout: float = 600.0) -> Tuple[List[float], float]:
    """Submit `n` bars at once; seconds from the first submit until each consumer's own counter
    has them all (FIFO consumer first, then each subscriber), and until the stream has them."""
    before = rig.accepted()
    stored0 = stream_messages(rig.monitor)
    t0 = rig.sent[rig.submit(n)[0]] / 1e9  # the first submit (same monotonic clock)
    done: List[Optional[float]] = [None] * len(before)
    published: Optional[float] = None
    while None in done:
        now = time.monotonic()
        if now - t0 > timeout:
            have = [a - b for a, b in zip(rig.accepted(), before, strict=True)]
            raise SystemExit(f"bench_nats: timed out: the consumers have {have} of {n:,}")
        for i, (a, b) in enumerate(zip(rig.accepted(), before, strict=True)):
            if done[i] is None and a - b >= n:
                done[i] = now - t0
        if published is None and stream_messages(rig.monitor) - stored0 >= n:
            published = now - t0
        time.sleep(0.01)
    return [d for d in done if d is not None], published or 0.0


def run_flood(work: Path, binary: str, subscribers: int, n: int) -> bool:
    print(f"\n(load average before the {subscribers}-subscriber flood: {load1()})")
    rig = Rig(work, binary, subscribers, echo=False)
    try:
        # procs: nats-server, the publishing FIFO consumer, the subscribers
        pids = [p.pid for p in rig.procs]
        cpu0 = [cpu_seconds(pid) for pid in pids] + [cpu_seconds(os.getpid())]
        secs, published = flood(rig, n)
        # everything is stored; the publisher may still be settling its last acks: let it idle
        time.sleep(0.5)
        cpu = [cpu_seconds(pid) - c for pid, c in zip([*pids, os.getpid()], cpu0, strict=True)]
        expected = rig.next  # the warm-up bar and the flood, each a distinct (symbol, minute)
        exact = [journal_keys(j) for j in rig.journals]
    finally:
        rig.close()
    base = n / secs[0]
    print(f"throughput, {n:,} bars submitted at once, {subscribers} subscriber(s) (no --echo; counted by each "
          "consumer's barbridge_bars_accepted_total): first submit -> the consumer has them all")
    print(f"  {'reader':<15} {'all stored':>11} {'bars/s':>10} {'vs FIFO':>8}   journal (records / distinct / sent)")
    names = ["FIFO consumer", *(f"subscriber {i + 1}" for i in range(subscribers))]
    ok = True
    for name, t, (records, distinct) in zip(names, secs, exact, strict=True):
        good = records == distinct == expected
        ok &= good
        print(f"  {name:<15} {t * 1e3:>8.0f} ms {n / t:>10,.0f} {n / t / base:>7.2f}x   "
              f"{records:,} / {distinct:,} / {expected:,} {'exact' if good else 'NOT EXACT'}")
    print(f"  {'in the stream':<15} {published * 1e3:>8.0f} ms {n / published:>10,.0f} {n / published / base:>7.2f}x"
          "   (nats-server's /jsz: the publisher's pace)")
    print(f"  CPU per bar during the flood (utime + stime, {n:,} bars; wall {secs[-1]:.2f} s of 2 shared cores):")
    who = ["nats-server", "publishing consumer", *(f"subscriber {i + 1}" for i in range(subscribers)),
           "driver (writer)"]
    for name, c in zip(who, cpu, strict=True):
        print(f"    {name:<20} {c * 1e6 / n:>6.1f} us/bar  ({c:.2f} s)")
    print(f"    {'total':<20} {sum(cpu) * 1e6 / n:>6.1f} us/bar  ({sum(cpu):.2f} s)")
    return ok


def run_phase(work: Path, binary: str, subscribers: int, args: argparse.Namespace) -> bool:
    print(f"\n(load average before the {subscribers}-subscriber latency phase: {load1()})")
    rig = Rig(work, binary, subscribers)
    try:
        lat = steady(rig, args.rate, args.seconds)
        bur = burst(rig, args.burst)
    finally:
        rig.close()
    base_p50, base_p99 = lat["FIFO consumer"]
    print(f"{subscribers} subscriber(s): {args.rate:,.0f} bars/s for {args.seconds:g} s "
          f"({int(args.rate * args.seconds):,} bars, {SYMBOLS} symbols): submit -> stored")
    print(f"  {'reader':<15} {'p50':>10} {'p99':>10}   {'p50/FIFO':>8} {'p99/FIFO':>8}   "
          f"{args.burst:,}-bar burst: last stored")
    for name, (p50, p99) in lat.items():
        print(f"  {name:<15} {ms(p50):>10} {ms(p99):>10}   {p50 / base_p50:>7.1f}x {p99 / base_p99:>7.1f}x   "
              f"{ms(bur[name]):>10} ({bur[name] / bur['FIFO consumer']:.1f}x)")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="bars/s of the steady phase")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the steady phase")
    ap.add_argument("--burst", type=int, default=10_000)
    ap.add_argument("--flood", type=int, default=100_000, help="bars of the throughput run (0: skipped)")
    ap.add_argument("--skip-latency", action="store_true", help="only the floods")
    ap.add_argument("--bin", default=os.environ.get("BARBRIDGE_BIN", str(REPO / "target/release/barbridge")))
    args = ap.parse_args()
    if shutil.which("nats-server") is None:
        raise SystemExit("bench_nats: nats-server is not on PATH (apt-get install nats-server)")
    print(f"bench_nats: {os.cpu_count()} cores, load average {load1()}; latency = submitted to the FIFO "
          "writer -> printed by the reader's --echo after it stored the bar (same monotonic clock)")
    exact = True
    with tempfile.TemporaryDirectory(prefix="barbridge-bench-nats-") as tmp:
        if not args.skip_latency:
            for subscribers in (1, 3):
                work = Path(tmp) / f"s{subscribers}"
                work.mkdir(mode=0o700)
                run_phase(work, args.bin, subscribers, args)
        if args.flood:
            for subscribers in (1, 3):
                work = Path(tmp) / f"flood{subscribers}"
                work.mkdir(mode=0o700)
                exact &= run_flood(work, args.bin, subscribers, args.flood)
    if not exact:
        print("bench_nats: a journal is not exact (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
