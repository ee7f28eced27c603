"""FifoSink on real FIFOs with a small Python reader: absent reader, reader restart, full pipe,
overflow, FIFO safety checks."""

from __future__ import annotations

import json
import os
import select
import stat
import threading
import time

import pytest

from bridge import protocol
from bridge.sinks import FifoSink, SinkError
from conftest import wait_for


class PyReader:
    """Minimal FIFO consumer: non-blocking open, poll, line framing."""

    def __init__(self, path, read: bool = True) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.lines: list[dict] = []
        self.read = threading.Event()
        if read:
            self.read.set()
        self._stop = threading.Event()
        self._buf = b""
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        while not self._stop.is_set():
            if not self.read.wait(0.05):
                continue
            if not p.poll(50):
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                time.sleep(0.01)  # no writer right now
                continue
            self._buf += chunk
            *full, self._buf = self._buf.split(b"\n")
            for raw in full:
                assert len(raw) + 1 <= protocol.MAX_LINE_BYTES
                self.lines.append(json.loads(raw))

    def close(self) -> None:
        self._stop.set()
        self.t.join(2)
        os.close(self.fd)

    def bars(self) -> list[dict]:
        return [l for l in self.lines if "symbol" in l]


def bar(i: int, sym: str = "SPY") -> dict:
    p = 100 + i * 0.01
    return {"symbol": sym, "timestamp_ms": 1759930080000 + i * 60000, "open": p, "high": p + 1, "low": p - 1,
            "close": p, "volume": float(i), "vwap": p, "trade_count": i, "kind": "bar", "source": "synthetic"}


@pytest.fixture
def sink_factory(fifo_path):
    made = []

    def make(**kw) -> FifoSink:
        kw.setdefault("heartbeat", 0.2)
        s = FifoSink(str(fifo_path), **kw)
        s.prepare()
        s.start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.close(0.2)


def test_creates_private_fifo_and_backlog_delivered_in_order(sink_factory, fifo_path):
    sink = sink_factory()
    assert stat.S_ISFIFO(os.lstat(fifo_path).st_mode)
    assert stat.S_IMODE(os.lstat(fifo_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(fifo_path.parent).st_mode) == 0o700
    t0 = time.monotonic()
    for i in range(1, 201):  # consumer absent: everything goes to the backlog, nothing blocks
        sink.submit_bar(bar(i))
    assert time.monotonic() - t0 < 0.5
    assert sink.backlog() == 200
    r = PyReader(fifo_path)
    try:
        wait_for(lambda: len(r.bars()) == 200, what="backlog delivered")
        assert [b["timestamp_ms"] for b in r.bars()] == [bar(i)["timestamp_ms"] for i in range(1, 201)]
        seqs = [l["seq"] for l in r.lines]
        assert seqs == list(range(1, len(seqs) + 1)), "seq starts at 1 and has no gaps"
        assert {l["writer"] for l in r.lines} == {sink.writer}
        wait_for(lambda: any(l.get("type") == "heartbeat" for l in r.lines), what="a heartbeat")
    finally:
        r.close()


def test_reader_restart_loses_nothing(sink_factory, fifo_path):
    sink = sink_factory()
    r1 = PyReader(fifo_path)
    for i in range(1, 51):
        sink.submit_bar(bar(i))
    wait_for(lambda: len(r1.bars()) == 50, what="first reader gets 50 bars")
    # stop reading, then die with unread lines in the pipe (they die with it)
    r1.read.clear()
    time.sleep(0.1)
    for i in range(51, 61):
        sink.submit_bar(bar(i))
    time.sleep(0.2)
    r1.close()
    for i in range(61, 81):  # written while nobody reads: EPIPE → backlog
        sink.submit_bar(bar(i))
    wait_for(lambda: sink.stats.reader_lost >= 1, what="EPIPE noticed")
    r2 = PyReader(fifo_path)
    try:
        wait_for(lambda: {b["timestamp_ms"] for b in r2.bars()} >= {bar(i)["timestamp_ms"] for i in range(51, 81)},
                 what="second reader gets every bar the first one missed")
        union = {b["timestamp_ms"] for b in r1.bars() + r2.bars()}
        assert union == {bar(i)["timestamp_ms"] for i in range(1, 81)}
        ts2 = [b["timestamp_ms"] for b in r2.bars()]
        assert ts2 == sorted(ts2), "re-sent lines and the backlog arrive in order"
    finally:
        r2.close()


def test_full_pipe_never_blocks_producers(sink_factory, fifo_path):
    sink = sink_factory(pipe_size=65536)
    r = PyReader(fifo_path, read=False)  # a reader that is stuck
    try:
        wait_for(lambda: sink.reader_present, what="sink opened the FIFO")
        n = 3000  # ~500 KB, far more than the 64 KiB pipe
        t0 = time.monotonic()
        for i in range(1, n + 1):
            sink.submit_bar(bar(i))
        assert time.monotonic() - t0 < 1.0, "submit must never wait for the consumer"
        wait_for(lambda: sink.stats.pipe_full > 0, what="the pipe fills up")
        assert sink.backlog() > 0
        r.read.set()
        wait_for(lambda: len(r.bars()) == n, timeout=30, what="all bars after the reader resumes")
        assert [b["volume"] for b in r.bars()] == [float(i) for i in range(1, n + 1)]
    finally:
        r.close()


def test_overflow_is_counted_and_reported(sink_factory, fifo_path):
    sink = sink_factory(backlog=10)
    for i in range(1, 26):
        sink.submit_bar(bar(i))
    assert sink.stats.dropped_overflow == 15
    r = PyReader(fifo_path)
    try:
        wait_for(lambda: any(l.get("type") == "status" and "overflow" in l.get("detail", "") for l in r.lines),
                 what="an overflow status line")
        wait_for(lambda: len(r.bars()) == 10, what="the newest 10 bars")
        assert [b["volume"] for b in r.bars()] == [float(i) for i in range(16, 26)]
        wait_for(lambda: any(l.get("type") == "heartbeat" and l.get("dropped") == 15 for l in r.lines),
                 what="heartbeat carries the drop counter")
    finally:
        r.close()


def test_invalid_bars_are_dropped_not_sent(sink_factory, fifo_path):
    sink = sink_factory()
    sink.submit_bar({**bar(1), "high": 1.0})
    assert sink.stats.dropped_invalid == 1 and sink.backlog() == 0


def test_fifo_safety(tmp_path):
    """prepare() refuses what the consumer refuses, in one sentence (the foreign-owner case needs
    root and is covered by the Rust tests)."""
    def prepare(path) -> None:
        FifoSink(str(path)).prepare()

    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    reg = d / "regular"
    reg.write_text("x")
    with pytest.raises(SinkError, match="is a regular file, not a FIFO"):
        prepare(reg)
    real = d / "real.fifo"
    os.mkfifo(real, 0o600)
    link = d / "link.fifo"
    link.symlink_to(real)
    with pytest.raises(SinkError, match="symbolic link"):
        prepare(link)
    prepare(real)  # ours: fine
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(SinkError, match="writable by other users"):
        prepare(open_dir / "x.fifo")
    fresh = tmp_path / "new" / "bars.fifo"
    prepare(fresh)  # created: a private directory and a 0600 FIFO
    assert stat.S_ISFIFO(os.lstat(fresh).st_mode) and stat.S_IMODE(os.lstat(fresh).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(fresh.parent).st_mode) == 0o700


def test_inprocess_sink_sends_heartbeats_and_bars_through_the_publisher():
    """One-process mode: the publisher ingests straight into the consumer; a thread adds heartbeats."""
    import barbridge
    from bridge.gate import BarGate
    from bridge.sinks import InProcessSink

    consumer = barbridge.Consumer()
    sink = InProcessSink(consumer=consumer, heartbeat=0.1)
    pub = BarGate(sink, ["SPY"])
    sink.start()
    try:
        for i in range(1, 6):
            assert pub.publish(bar(i))
        pub.status("connected", "x")
        wait_for(lambda: consumer.stats()["heartbeats"] >= 1, what="heartbeat")
        assert consumer.stats()["bars_accepted"] == 5 and sink.stats.bars_written == 5
        assert consumer.health()["sidecar"]["state"] == "connected"
    finally:
        sink.close(0.5)


def test_inprocess_sink_without_extension_is_a_clear_error(monkeypatch):
    import sys
    from bridge.sinks import InProcessSink
    monkeypatch.setitem(sys.modules, "barbridge", None)  # import fails
    with pytest.raises(SinkError, match="needs the barbridge Python extension"):
        InProcessSink()


def test_inprocess_consumer_is_live_while_the_sink_heartbeats_and_stale_once_it_stops():
    """One-process mode's liveness rule is the FIFO path's: heartbeats, not bars, keep the consumer
    live (a halt sends no bars); once the sink stops (the sidecar side is gone) it goes stale."""
    import barbridge
    from bridge.gate import BarGate
    from bridge.sinks import InProcessSink

    consumer = barbridge.Consumer(stale_after=2.0)
    sink = InProcessSink(consumer=consumer, heartbeat=0.1)
    pub = BarGate(sink, ["SPY"])
    sink.start()
    try:
        assert pub.publish(bar(1))
        wait_for(lambda: consumer.stats()["heartbeats"] >= 30, timeout=30, what="3 s of heartbeats, no bars")
        assert consumer.health()["state"] == "live"
    finally:
        sink.close(0.5)
    wait_for(lambda: consumer.health()["state"] == "stale", timeout=30, what="stale after the sink stopped")
    assert consumer.stats()["bars_accepted"] == 1
