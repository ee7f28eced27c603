"""``barbridge.NatsFeed``: a Python Consumer fed from JetStream by the extension (real nats-server,
real ``barbridge run --publish`` on a real FIFO)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
from pathlib import Path

import pytest

import barbridge
from conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server is not installed (scripts/test_all.sh installs it)")

T0 = 1_759_930_080_000  # 2025-10-08 09:28 New York, a minute start


def line(symbol: str, minute: int, close: float, kind: str = "bar") -> str:
    return json.dumps({"type": kind, "symbol": symbol, "timestamp_ms": T0 + minute * 60_000, "open": close, "high": close,
                       "low": close, "close": close, "volume": 100, "vwap": close, "trade_count": 3})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nats_url(tmp_path, procs):
    port = free_port()
    procs.append(Proc(["nats-server", "-js", "-sd", str(tmp_path / "js"), "-a", "127.0.0.1", "-p", str(port)],
                      tmp_path, "nats"))

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_for(up, 15, what="nats-server accepting connections")
    return f"nats://127.0.0.1:{port}"


def publish(tmp_path: Path, procs, consumer_bin: Path, url: str, lines: list[str]) -> None:
    """Run ``barbridge run --publish`` on a FIFO, write ``lines``, wait until all are published."""
    pub = tmp_path / "pub"
    pub.mkdir(mode=0o700, exist_ok=True)
    fifo = pub / "rt" / "bars.fifo"
    for left in (fifo, pub / "rt" / "status.json"):  # an earlier run's: waited on below, so gone first
        left.unlink(missing_ok=True)
    p = Proc([str(consumer_bin), "run", "--fifo", str(fifo), "--journal", str(pub / "j"), "--status-file",
              str(pub / "rt" / "status.json"), "--publish", url], pub, f"publisher{len(procs)}")
    procs.append(p)
    wait_for(fifo.exists, 15, what="the publisher's FIFO")
    with open(fifo, "w") as f:
        f.write("".join(x + "\n" for x in lines))

    def published() -> int:
        try:
            status = json.loads((pub / "rt" / "status.json").read_text())
        except (OSError, ValueError):
            return 0
        return int((status.get("sections", {}).get("publish") or {}).get("published", 0))
    wait_for(lambda: published() >= len(lines), 30, what=f"{len(lines)} bars published")
    p.signal(signal.SIGTERM)
    assert p.wait(15) == 0, p.stderr()


def test_natsfeed_receives_every_bar_and_a_new_feed_resumes_on_its_durable(tmp_path, procs, consumer_bin, nats_url):
    publish(tmp_path, procs, consumer_bin, nats_url, [line("SPY", m, 600 + m) for m in range(30)])
    c = barbridge.Consumer(journal=tmp_path / "j")
    sub = c.subscribe(timeout=10)
    with barbridge.NatsFeed(c, nats_url, durable="py-engine") as feed:
        assert feed.running and feed.durable == "py-engine"
        got = [next(sub) for _ in range(30)]
    assert not feed.running
    assert [b.timestamp_ms for b in got] == [T0 + m * 60_000 for m in range(30)]
    assert [b.close for b in got] == [600 + m for m in range(30)]
    # a correction and 10 new minutes: a new feed on the same durable gets exactly those
    more = [line("SPY", 5, 1.5, "updated_bar")] + [line("SPY", m, 600 + m) for m in range(30, 40)]
    publish(tmp_path, procs, consumer_bin, nats_url, more)
    sub2 = c.subscribe(timeout=20)
    with barbridge.NatsFeed(c, nats_url, durable="py-engine"):
        again = [next(sub2) for _ in range(11)]
    assert [(b.timestamp_ms, b.close) for b in again] == (
        [(T0 + 5 * 60_000, 1.5)] + [(T0 + m * 60_000, 600 + m) for m in range(30, 40)])
    assert again[0].correction and not any(b.correction for b in again[1:])
    assert c.last_n("SPY", 40)[5].close == 1.5 and len(c.last_n("SPY", 100)) == 40
    assert c.stats()["duplicates"] == 0  # the durable resumed after the 30 acknowledged bars, none sent again


def test_natsfeed_arguments_are_checked_in_one_sentence():
    c = barbridge.Consumer()
    with pytest.raises(ValueError, match="is not a NATS URL"):
        barbridge.NatsFeed(c, "http://127.0.0.1:4222", durable="x")
    with pytest.raises(ValueError, match="is not a time"):
        barbridge.NatsFeed(c, "nats://127.0.0.1:4222", durable="x", since="yesterday")
    with pytest.raises(ValueError, match="durable"):
        barbridge.NatsFeed(c, "nats://127.0.0.1:4222", durable="a.b")
