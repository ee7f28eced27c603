"""The minute barrier end to end (docs/ARCHITECTURE.md, "Minute barrier"): the real alpaca-py
client against the fake server, the sidecar, the FIFO and the Rust consumer; every minute closes
once, after its bars, with the right sets; a consumer killed between a minute's bars and its
close sees it close exactly once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

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


# Data minutes inside a real NYSE session (2025-10-08 10:00 New York), so that `barbridge gaps`
# has a session to count in; the data clock runs from there at 0.25 s a minute.
SESSION_DATE = "2025-10-08"
EPOCH_MS = 1_759_932_000_000


def journal_records(journal: Path, kind: str) -> list[dict]:
    out = []
    for f in sorted(journal.glob("bars-*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r.get("type") == kind:
                out.append(r)
    return out


def gaps(consumer_bin: Path, journal: Path) -> dict:
    r = subprocess.run([str(consumer_bin), "gaps", "--journal", str(journal), "--date", SESSION_DATE, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return {g["symbol"]: g for g in json.loads(r.stdout)["symbols"]}


def test_lost_bars_are_recovered_late_and_quiet_minutes_are_no_holes(start_sidecar, start_consumer, fifo_path,
                                                                      tmp_path, consumer_bin):
    srv = FakeAlpacaServer(symbols=SYMBOLS, interval=0.25, key=KEY, secret=SECRET, prefill=0, epoch_ms=EPOCH_MS,
                           epoch_wall=time.time(), no_trade_prob=0.25, lost_prob=0.15, late_prob=0.1).start_in_thread()
    try:
        journal = tmp_path / "journal"
        consumer = start_consumer(fifo_path, "--journal", str(journal))
        sidecar = start_sidecar(fifo_path, "--symbols", ",".join(SYMBOLS), "--minute-deadline", "5", server=srv)
        wait_for(lambda: len(closed_minutes(consumer)) >= 16, timeout=90, what="sixteen closed minutes")
        srv.call(lambda: setattr(srv, "paused", True))
        minutes = closed_minutes(consumer)
        first, last = min(minutes), max(minutes)
        truth = srv.snapshot_history()
        assert srv.lost and srv.late, (srv.lost, srv.late)

        def settled() -> bool:
            got = {(b["symbol"], b["timestamp_ms"]) for b in consumer.bars()}
            want = {(s, t) for s in SYMBOLS for t in truth[s] if first <= t <= last}
            quiet = {(s, q["minute_ms"]) for q in journal_records(journal, "minute_quiet") for s in q["quiet"]}
            silent = {(s, t) for s in SYMBOLS for t in minutes if t not in truth[s]}
            return want <= got and silent <= quiet
        wait_for(settled, timeout=60, what="every lost bar recovered and every quiet minute marked")
        # Quiet is never a hole, and a quiet mark never names a minute that had a bar.
        quiet = {(s, q["minute_ms"]) for q in journal_records(journal, "minute_quiet") for s in q["quiet"]}
        assert all(t not in truth[s] for s, t in quiet), [k for k in quiet if k[1] in truth[k[0]]]
        # Every bar the stream lost or sent late, inside the closed minutes, came as a late bar.
        missed = {(s, t) for s, t in srv.lost + srv.late if first <= t <= last}
        for s, t in missed:
            assert s in minutes[t]["none"], (s, t, minutes[t])
        st = wait_for(lambda: (x := status(tmp_path, consumer)).get("health", {}).get("counters", {}).get("late_bars", 0)
                      >= len(missed)
                      and x, timeout=30, what="late bars counted")
        counters = st["health"]["counters"]
        assert counters["late_bars"] == len(missed), (counters, missed)
        # Latency: every streamed bar carries the sidecar's receipt time, into the journal too.
        lat = st["latency"]
        assert lat["receipt_to_store"]["count"] > 0 and lat["minute_end_to_receipt"]["count"] > 0, lat
        assert lat["minute_end_to_closed"]["count"] >= len(minutes), lat
        assert lat["receipt_to_store"]["p99_ms"] <= 5_000, lat  # same host: a generous bound
        journaled = [json.loads(x) for f in journal.glob("bars-*.jsonl") for x in f.read_text().splitlines()]
        assert all("received_ms" in b for b in journaled if "symbol" in b and b.get("source") is None), journaled[:3]
        assert counters["quiet_rejected"] == 0
        consumer.signal(signal.SIGINT)
        consumer.wait(30)
        g = gaps(consumer_bin, journal)
        for s in SYMBOLS:
            assert g[s]["holes"] == [], g[s]
            assert g[s]["quiet_minutes"] >= sum(1 for k in quiet if k[0] == s) - 0, g[s]
        assert sum(g[s]["quiet_minutes"] for s in SYMBOLS) > 0
        assert "confirm_late_bars" in sidecar.stderr()
    finally:
        srv.stop()


def test_rest_429_leaves_minutes_unknown_not_quiet(start_sidecar, start_consumer, fifo_path, tmp_path):
    srv = FakeAlpacaServer(symbols=SYMBOLS, interval=0.25, key=KEY, secret=SECRET, prefill=0).start_in_thread()
    try:
        journal = tmp_path / "journal"
        srv.inject("rest429:100000")  # every REST request refused from now on
        consumer = start_consumer(fifo_path, "--journal", str(journal))
        # QQQ: subscribed, never a bar: each minute asks REST about it.
        sidecar = start_sidecar(fifo_path, "--symbols", ",".join(SYMBOLS) + ",QQQ", "--minute-deadline", "5",
                                "--no-backfill", "--metrics-addr", "127.0.0.1:0", server=srv)
        wait_for(lambda: len(closed_minutes(consumer)) >= 6, timeout=60, what="six closed minutes")
        wait_for(lambda: srv.stats["rest429"] >= 3, timeout=60, what="REST refused with 429 several times")
        assert journal_records(journal, "minute_quiet") == [], "a minute REST did not answer for is not quiet"
        assert all(m["none"] == ["QQQ"] for m in closed_minutes(consumer).values())
        wait_for(lambda: any(s.get("confirm_rest_429", 0) >= 1 for s in sidecar.stats()), timeout=30,
                 what="the sidecar counting 429s")
        addr = wait_for(lambda: re.search(r"sidecar metrics on http://(127\.0\.0\.1:\d+)/metrics", sidecar.stderr()),
                        timeout=30, what="the sidecar's metrics address").group(1)
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
            text = r.read().decode()
        scraped = {k: float(v) for k, v in (x.rsplit(" ", 1) for x in text.splitlines() if x.startswith("barbridge_"))}
        assert scraped["barbridge_sidecar_confirm_rest_429_total"] >= 1, scraped
        assert scraped["barbridge_sidecar_confirm_quiet_total"] == 0 and scraped["barbridge_sidecar_minute_closes_total"] >= 6
        # REST answers again: the unknown minutes are confirmed quiet (QQQ never trades).
        srv.call(lambda: setattr(srv, "rest429", 0))
        wait_for(lambda: journal_records(journal, "minute_quiet"), timeout=90, what="quiet marks after the 429s")
        assert all(q["quiet"] == ["QQQ"] for q in journal_records(journal, "minute_quiet"))
    finally:
        srv.stop()


def status(tmp_path: Path, consumer: Consumer) -> dict:
    try:
        return json.loads((tmp_path / f"{consumer.name}.status.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_full_market_universe_closes_each_minute_once_and_confirms_the_quiet(start_sidecar, start_consumer,
                                                                                fifo_path, tmp_path):
    """The barrier and the REST confirmation at scale: burst frames (the whole minute in one
    websocket frame, as Alpaca's SIP feed sends the top of a minute), 20 % of the minutes quiet,
    two symbols halted. 2,000 symbols in the suite; BARBRIDGE_SCALE_SYMBOLS=10000 for the full
    universe (the sidecar's CPU then decides the pace: give it --interval time)."""
    import os
    from fake_alpaca import burst_symbols
    from bridge import control_endpoint as control
    n = int(os.environ.get("BARBRIDGE_SCALE_SYMBOLS", "2000"))
    everyone = burst_symbols(n + 100)
    symbols, later = everyone[:n], everyone[n:]  # 100 more subscribed live, below
    srv = FakeAlpacaServer(symbols=everyone, interval=max(0.5, n / 4000), key=KEY, secret=SECRET, prefill=0,
                           burst=True, no_trade_prob=0.2).start_in_thread()
    try:
        journal = tmp_path / "journal"
        sock = fifo_path.parent / "control.sock"
        consumer = start_consumer(fifo_path, "--journal", str(journal))
        start_sidecar(fifo_path, "--symbols", ",".join(symbols), "--minute-deadline", "20", "--control", str(sock),
                      server=srv)
        wait_for(lambda: len(closed_minutes(consumer)) >= 2, timeout=120, what="two closed minutes")
        assert all(len(m["bars"]) + len(m["none"]) + len(m["halted"]) == n for m in closed_minutes(consumer).values())
        ok = control.request(sock, "subscribe", later)
        assert ok["ok"], ok
        subscribed_at = srv.data_minute()
        n += len(later)
        symbols = everyone
        srv.inject(f"halt:{symbols[0]}+{symbols[1]}")
        halted_at = srv.data_minute()
        wait_for(lambda: sum(1 for t in closed_minutes(consumer) if t > max(halted_at + 60_000, subscribed_at + 180_000))
                 >= 2, timeout=120, what="two minutes closed during the halt, with the new symbols")
        srv.inject("pause")
        minutes = closed_minutes(consumer)
        truth_ = srv.snapshot_history()
        for minute, m in minutes.items():
            if minute <= subscribed_at + 3 * 60_000:
                continue  # while the live subscribe reaches the server (before it: checked above)
            assert len(m["bars"]) + len(m["halted"]) + len(m["none"]) == n, (minute, len(m["bars"]))
            assert sorted(m["bars"]) == sorted(s for s in symbols if minute in truth_[s]), minute
            assert not set(m["none"]) & set(m["bars"]), minute
            if minute > halted_at + 60_000:
                assert set(m["halted"]) == {symbols[0], symbols[1]}, (minute, m["halted"])
        silent = {(s, t) for t, m in minutes.items() for s in m["none"] if t > subscribed_at + 3 * 60_000}
        assert len(silent) > n // 10, len(silent)
        assert any(set(later) & set(m["bars"]) for m in minutes.values()), "the live-subscribed symbols' bars"

        def quiet() -> set:
            return {(s, q["minute_ms"]) for q in journal_records(journal, "minute_quiet") for s in q["quiet"]}
        wait_for(lambda: silent <= quiet(), timeout=120, what="every symbol-minute without a bar confirmed quiet")
        assert srv.stats["rest_requests"] <= 10 + len(minutes) * (n // 500 + 2), srv.stats["rest_requests"]
    finally:
        srv.stop()


def test_a_sidecar_killed_and_restarted_leaves_no_minute_unclosed(minute_server, start_sidecar, start_consumer,
                                                                  fifo_path, tmp_path):
    """kill -9 of the sidecar mid-session: the restarted one closes the minutes from its start-up
    backfill's start (the ones between the death and its first live bar included) once their
    backfilled bars are handed over; the consumer delivers each minute exactly once (the re-closes
    of minutes the first sidecar closed are duplicates: counted, not delivered)."""
    import datetime as dt
    srv = minute_server
    start = srv.epoch_ms  # the first data minute: the start-up backfill starts there
    since = dt.datetime.fromtimestamp(start / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ("--symbols", ",".join(SYMBOLS), "--minute-deadline", "3", "--backfill-from", since)
    consumer = start_consumer(fifo_path, "--journal", str(tmp_path / "journal"))
    first = start_sidecar(fifo_path, *args, server=srv, name="sidecar1")
    wait_for(lambda: len(closed_minutes(consumer)) >= 3, timeout=60, what="three closed minutes")
    first.signal(signal.SIGKILL)
    first.wait(10)
    died_at = srv.data_minute()
    wait_for(lambda: srv.data_minute() >= died_at + 4 * 60_000, timeout=30, what="four data minutes without a sidecar")
    start_sidecar(fifo_path, *args, server=srv, name="sidecar2")
    target = srv.data_minute() + 3 * 60_000
    wait_for(lambda: any(t >= target for t in closed_minutes(consumer)), timeout=90, what="minutes after the restart")
    srv.inject("pause")  # no new minutes: the counts below settle
    time.sleep(5)  # the last minutes' deadlines, any re-close still on its way
    minutes = closed_minutes(consumer)  # fails on a part printed twice (a minute closed twice)
    last = max(minutes)
    expected = list(range(start, last + 60_000, 60_000))
    assert sorted(minutes) == expected, ([t for t in expected if t not in minutes], sorted(minutes))
    truth = srv.snapshot_history()
    for t in range(died_at - 60_000, died_at + 4 * 60_000, 60_000):  # the minutes no sidecar watched live
        assert sorted(minutes[t]["bars"]) == sorted(s for s in SYMBOLS if t in truth[s]), (t, minutes[t])
    st = wait_for(lambda: (x := status(tmp_path, consumer)).get("health", {}).get("counters", {}).get("minute_duplicates", 0)
                  > 0 and x["health"]["counters"]["minutes_closed"] >= len(minutes) and x, timeout=30,
                  what="the restarted sidecar's re-closes counted as duplicates")
    assert st["health"]["counters"]["minutes_closed"] == len(closed_minutes(consumer)), st["health"]["counters"]
