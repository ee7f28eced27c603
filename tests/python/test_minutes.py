"""The minute barrier end to end (docs/ARCHITECTURE.md, "Minute barrier"): the real alpaca-py
client against the fake server, the sidecar, the FIFO and the Rust consumer; every minute closes
once, after its bars, with the right sets; a consumer killed between a minute's bars and its
close sees it close exactly once."""

from __future__ import annotations

import signal
import time

import pytest

from fake_alpaca.server import FakeAlpacaServer

from conftest import KEY, SECRET, Consumer, wait_for

SYMBOLS = ("SPY", "SH", "SDS")


@pytest.fixture
def minute_server():
    srv = FakeAlpacaServer(symbols=SYMBOLS, interval=0.25, key=KEY, secret=SECRET, prefill=0).start_in_thread()
    yield srv
    srv.stop()


def closed_minutes(consumer: Consumer) -> dict[int, dict]:
    """minute → its parts merged, for the minutes whose every part was printed; fails on a part
    printed twice."""
    out: dict[int, dict] = {}
    parts: dict[int, set] = {}
    for m in consumer.minutes():
        key = m["minute_ms"]
        assert m["part"] not in parts.setdefault(key, set()), f"minute {key} part {m['part']} closed twice"
        parts[key].add(m["part"])
        acc = out.setdefault(key, {"bars": [], "halted": [], "none": [], "by": m["by"], "parts": m["parts"]})
        for k in ("bars", "halted", "none"):
            acc[k] += m[k]
    return {k: v for k, v in out.items() if len(parts[k]) == v["parts"]}


def test_every_minute_closes_once_after_its_bars_with_the_right_sets(minute_server, start_sidecar, start_consumer,
                                                                     fifo_path, tmp_path):
    consumer = start_consumer(fifo_path, "--journal", str(tmp_path / "journal"))
    # QQQ is subscribed but the server has no such symbol: no bar ever (a quiet symbol).
    start_sidecar(fifo_path, "--symbols", ",".join(SYMBOLS) + ",QQQ", "--minute-deadline", "5", server=minute_server)
    wait_for(lambda: len(closed_minutes(consumer)) >= 4, timeout=60, what="four closed minutes")
    minute_server.inject("halt:SDS")
    halted_at = minute_server.data_minute()
    wait_for(lambda: any(m > halted_at + 60_000 for m in closed_minutes(consumer)), timeout=60,
             what="minutes closed during the halt")
    minutes = closed_minutes(consumer)
    lines = consumer.lines()
    truth = minute_server.snapshot_history()
    for minute, m in sorted(minutes.items()):
        have = sorted(s for s in SYMBOLS if minute in truth[s])
        assert sorted(m["bars"]) == have, (minute, m)
        assert m["none"] == ["QQQ"], (minute, m)
        assert sorted(m["bars"] + m["halted"] + m["none"]) == sorted([*SYMBOLS, "QQQ"]), (minute, m)
        assert m["by"] == "deadline"  # QQQ never came
        # The close comes after every bar of its minute in the consumer's output.
        at = next(i for i, b in enumerate(lines) if b.get("type") == "minute_closed" and b["minute_ms"] == minute)
        late = [b for b in lines[at:] if b.get("timestamp_ms") == minute and b.get("type") != "updated_bar"]
        assert not late, (minute, late)
    assert any("SDS" in m["halted"] for t, m in minutes.items() if t > halted_at), minutes
    # Consecutive minutes from the first: none skipped.
    ts = sorted(minutes)
    assert ts == list(range(ts[0], ts[-1] + 60_000, 60_000)), ts


def test_a_complete_minute_closes_at_once(minute_server, start_sidecar, start_consumer, fifo_path):
    consumer = start_consumer(fifo_path)
    # A deadline far beyond the run: only completeness can close a minute.
    start_sidecar(fifo_path, "--symbols", ",".join(SYMBOLS), "--minute-deadline", "3600", server=minute_server)
    wait_for(lambda: len(closed_minutes(consumer)) >= 3, timeout=60, what="three closed minutes")
    for minute, m in closed_minutes(consumer).items():
        assert (m["by"], sorted(m["bars"]), m["none"]) == ("all", sorted(SYMBOLS), []), (minute, m)


def test_a_consumer_killed_between_a_minutes_bars_and_its_close_sees_it_close_once(start_consumer, fifo_path,
                                                                                   tmp_path):
    import barbridge  # type: ignore[import-not-found]
    journal = tmp_path / "journal"
    writer = barbridge.FifoWriter(str(fifo_path), writer="minute-test", heartbeat=0.2)
    writer.prepare()
    writer.start()
    pub = barbridge.Publisher(writer)
    pub.minute_barrier(["SPY", "SH", "QQQ"], deadline=1.0, every_minute=True)
    minute = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    try:
        first = start_consumer(fifo_path, "--journal", str(journal))
        for sym in ("SPY", "SH"):
            assert pub.submit_bar({"symbol": sym, "timestamp_ms": minute, "open": 1, "high": 1, "low": 1, "close": 1,
                                   "volume": 1, "source": "synthetic"})
        wait_for(lambda: len(first.bars()) == 2, timeout=30, what="the minute's bars echoed")
        wait_for(lambda: writer.stats()["acked"] >= 2, timeout=30, what="the bars acknowledged (journaled)")
        assert pub.tick_minutes() == 0, "QQQ may still come: not closed before the deadline"
        first.signal(signal.SIGKILL)
        first.wait(10)
        wait_for(lambda: pub.tick_minutes() == 1 or pub.minutes_closed == 1, timeout=30, what="the deadline")
        assert first.minutes() == []
        second = start_consumer(fifo_path, "--journal", str(journal))
        wait_for(lambda: second.minutes(), timeout=30, what="the minute closed in the restarted consumer")
        (m,) = second.minutes()
        assert (m["minute_ms"], m["bars"], m["none"]) == (minute, ["SH", "SPY"], ["QQQ"]), m
        assert second.bars() == [], "the bars were journaled before the kill: not delivered again"
        # Killed again right after the close (perhaps before acknowledging it): a third consumer
        # does not close the minute a second time.
        second.signal(signal.SIGKILL)
        second.wait(10)
        third = start_consumer(fifo_path, "--journal", str(journal), "--metrics-addr", "127.0.0.1:0")
        wait_for(lambda: "consumer instance" in third.stderr(), timeout=30, what="the third consumer")
        time.sleep(1.5)  # several heartbeats and re-send rounds
        assert third.minutes() == [], third.minutes()
        parts = [ln for f in journal.glob("bars-*.jsonl") for ln in f.read_text().splitlines() if "minute_closed" in ln]
        assert len(parts) == 1, parts
    finally:
        writer.close(0.5)


def test_python_subscription_yields_the_minute_after_its_bars():
    import barbridge  # type: ignore[import-not-found]
    consumer = barbridge.Consumer()
    sub = consumer.subscribe(minutes=True, timeout=5.0)
    pub = barbridge.Publisher(consumer)
    pub.minute_barrier(["SPY", "SH"], deadline=30.0, every_minute=True)
    minute = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    for sym in ("SPY", "SH"):
        pub.submit_bar({"symbol": sym, "timestamp_ms": minute, "open": 1, "high": 1, "low": 1, "close": 1,
                        "volume": 1, "source": "synthetic"})
    got = [sub.get(5.0) for _ in range(3)]
    assert [type(x).__name__ for x in got] == ["Bar", "Bar", "MinuteClosed"], got
    m = got[2]
    assert isinstance(m, barbridge.MinuteClosed)
    assert (m.minute_ms, m.complete, m.bars, m.halted, m.none) == (minute, True, ["SH", "SPY"], [], [])
    assert consumer.minute_stats()["minutes_closed"] == 1
    plain = consumer.subscribe(timeout=0.2)
    pub.submit_bar({"symbol": "SPY", "timestamp_ms": minute + 60_000, "open": 1, "high": 1, "low": 1, "close": 1,
                    "volume": 1, "source": "synthetic"})
    assert [type(x).__name__ for x in plain] == ["Bar"], "a subscription without minutes=True yields bars only"
    consumer.close()
