"""Fixtures for the sidecar tests: fake Alpaca server, private FIFO dirs, the real Rust
consumer binary, and subprocess helpers that always clean up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fake_alpaca import FakeAlpacaServer  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
KEY = "PKTESTKEYABCD1234WXYZ"
SECRET = "sEcReTvAlUe0123456789SECRETTAIL"


def wait_for(pred: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``pred`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")


class Proc:
    """A subprocess with stdout/stderr captured to files (no pipe can fill up and stall it)."""

    def __init__(self, argv: list[str], workdir: Path, name: str, env: Optional[dict] = None) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                  env=env, cwd=str(workdir), start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.p.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.p.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            try:
                os.kill(self.p.pid, signal.SIGCONT)
                os.kill(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()
        self._err.close()

    def stats(self) -> list[dict]:
        """The sidecar's periodic ``stats {...}`` lines."""
        out = []
        for line in self.stderr().splitlines():
            i = line.find(" stats {")
            if i >= 0:
                try:
                    out.append(json.loads(line[i + 7:]))
                except ValueError:
                    pass
        return out


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def fifo_path(tmp_path: Path) -> Path:
    """A FIFO path inside a not-yet-existing private directory."""
    return tmp_path / "run" / "bars.fifo"


@pytest.fixture
def fake_server():
    srv = FakeAlpacaServer(symbols=("SPY", "SH", "SDS"), interval=0.25, key=KEY, secret=SECRET, prefill=5,
                           page_size=7).start_in_thread()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def consumer_bin() -> Path:
    """The real Rust consumer, built once per session (waits on cargo's lock if it is busy)."""
    r = subprocess.run(["cargo", "build", "--release", "--features", "nats", "--bin", "barbridge"], cwd=REPO, capture_output=True,
                       text=True, timeout=1500)
    assert r.returncode == 0, f"cargo build failed:\n{r.stderr[-3000:]}"
    path = Path(os.environ.get("BARBRIDGE_BIN") or REPO / "target" / "release" / "barbridge")
    assert path.exists(), f"{path} missing after cargo build"
    return path


def sidecar_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_"))}
    env.update({"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "ALPACA_API_KEY": KEY, "ALPACA_SECRET_KEY": SECRET})
    env.update(extra or {})
    return env


FAST = ["--heartbeat", "0.5", "--reconnect-min", "0.2", "--reconnect-max", "0.5", "--stats-interval", "0.5",
        "--ping-interval", "2", "--ping-timeout", "4", "--market-hours", "always", "--no-preflight"]


@pytest.fixture
def start_sidecar(procs, tmp_path):
    def start(fifo: Path, *args: str, server: Optional[FakeAlpacaServer] = None, env: Optional[dict] = None,
              name: str = "sidecar", fast: bool = True) -> Proc:
        argv = [PY, "-m", "bridge", "--fifo", str(fifo)]
        if server is not None:
            argv += ["--stream-url", server.ws_url, "--data-url", server.data_url]
        argv += (FAST if fast else []) + list(args)
        p = Proc(argv, tmp_path, name, env=sidecar_env(env))
        procs.append(p)
        return p
    return start


class Consumer(Proc):
    def lines(self) -> list[dict]:
        """Every JSON line ``--echo`` printed so far."""
        out = []
        for line in self.stdout().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
        return out

    def bars(self) -> list[dict]:
        return [b for b in self.lines() if b.get("type") != "minute_closed"]

    def minutes(self) -> list[dict]:
        """The ``minute_closed`` lines printed so far (a minute of many symbols has several parts)."""
        return [b for b in self.lines() if b.get("type") == "minute_closed"]


@pytest.fixture
def start_consumer(procs, tmp_path, consumer_bin):
    counter = {"n": 0}

    def start(fifo: Path, *args: str) -> Consumer:
        counter["n"] += 1
        name = f"consumer{counter['n']}"
        argv = [str(consumer_bin), "run", "--fifo", str(fifo), "--echo",
                "--status-file", str(tmp_path / f"{name}.status.json"), *args]
        p = Consumer(argv, tmp_path, name, env={**os.environ, "RUST_LOG": "info"})
        procs.append(p)
        return p
    return start


def values(b: dict) -> tuple:
    return (float(b["open"]), float(b["high"]), float(b["low"]), float(b["close"]), float(b["volume"]),
            float(b.get("vwap") or 0), int(b.get("trade_count") or 0))


def truth(server: FakeAlpacaServer, symbols) -> dict:
    """(symbol, timestamp_ms) → values of every bar the server has published (final version)."""
    hist = server.snapshot_history()
    return {(s, ts): (float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]), float(b["v"]), float(b["vw"]),
                      int(b["n"]))
            for s in symbols for ts, b in hist.get(s, {}).items()}


def check_delivery(echoed: list[dict], expected: dict, *, allow_repeats: bool = False) -> None:
    """Every expected bar present with its final value; no bar version echoed twice."""
    final: dict = {}
    seen: dict = {}
    for b in echoed:
        key = (b["symbol"], b["timestamp_ms"])
        v = values(b)
        final[key] = v
        seen[(key, v)] = seen.get((key, v), 0) + 1
    missing = sorted(k for k in expected if k not in final)
    assert not missing, f"{len(missing)} bar(s) never reached the consumer, e.g. {missing[:5]}"
    wrong = [k for k in expected if final[k] != expected[k]]
    assert not wrong, f"{len(wrong)} bar(s) with wrong final values, e.g. {wrong[:3]}"
    extra = [k for k in final if k not in expected]
    assert not extra, f"consumer has bars the server never produced: {extra[:5]}"
    if not allow_repeats:
        dup = [k for k, n in seen.items() if n > 1]
        assert not dup, f"{len(dup)} bar version(s) echoed more than once, e.g. {dup[:3]}"


def delivered(consumer: Consumer, expected: dict) -> bool:
    got = {(b["symbol"], b["timestamp_ms"]): values(b) for b in consumer.bars()}
    return all(got.get(k) == v for k, v in expected.items())
