"""Trading halts against the fake server with the real alpaca-py client, sidecar and consumer:
a halt is a halt (not holes, not stale), a market-wide one forces no reconnect, and a dead
socket during a halt is still found (docs/ARCHITECTURE.md, "Trading statuses")."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from bridge import control_endpoint
from fake_alpaca.server import FakeAlpacaServer

from conftest import KEY, SECRET, Consumer, wait_for

# Data minutes inside a real NYSE session (2025-10-08 10:00 New York), so that `barbridge gaps`
# has a session to count in; the data clock runs from there at 0.25 s a minute.
SESSION_DATE = "2025-10-08"
EPOCH_MS = 1_759_932_000_000
SYMBOLS = ("SPY", "SH", "SDS")


@pytest.fixture
def halt_server():
    import time
    srv = FakeAlpacaServer(symbols=SYMBOLS, interval=0.25, key=KEY, secret=SECRET, prefill=0,
                           epoch_ms=EPOCH_MS, epoch_wall=time.time()).start_in_thread()
    yield srv
    srv.stop()


def status(consumer: Consumer, tmp_path: Path) -> dict:
    path = tmp_path / f"{consumer.name}.status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bars_of(consumer: Consumer, symbol: str) -> list[int]:
    return sorted(b["timestamp_ms"] for b in consumer.bars() if b["symbol"] == symbol)


def data_minutes_pass(server: FakeAlpacaServer, n: int) -> None:
    """Wait until the server's data clock has moved ``n`` minutes on (a wait on the data, not a
    wall-clock threshold)."""
    start = server.data_minute()
    wait_for(lambda: server.data_minute() >= start + n * 60_000, timeout=60, what=f"{n} data minutes")


def gaps(consumer_bin: Path, journal: Path) -> dict:
    r = subprocess.run([str(consumer_bin), "gaps", "--journal", str(journal), "--date", SESSION_DATE, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return {g["symbol"]: g for g in json.loads(r.stdout)["symbols"]}


def metrics(consumer: Consumer) -> dict[str, float]:
    """The consumer's /metrics (it runs with --metrics-addr 127.0.0.1:0 and logs the port), one
    series → value."""
    m = wait_for(lambda: re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", consumer.stderr()), timeout=30,
                 what="the consumer's metrics address")
    with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines()
                                     if line.startswith("barbridge_") and " " in line)}


def halt_metrics_agree(consumer: Consumer, st: dict) -> None:
    """The halt metrics say what the status file says (the same report; see "Trading statuses")."""
    m = metrics(consumer)
    c = st["health"]["counters"]
    assert m["barbridge_symbols_halted"] == len(st.get("halted", {})), (m, st.get("halted"))
    for sym in SYMBOLS:
        assert m[f'barbridge_symbol_halted{{symbol="{sym}"}}'] == (sym in st.get("halted", {})), sym
        assert m[f'barbridge_symbol_session_halted_seconds{{symbol="{sym}"}}'] == \
            60 * st.get("session_halted", {}).get(sym, 0), sym
    assert m["barbridge_trading_statuses_total"] == c["trading_statuses"]
    assert m["barbridge_halts_total"] == c["halts"]


def test_a_single_symbol_halt_is_halted_not_holes(halt_server, start_sidecar, start_consumer, fifo_path, tmp_path,
                                                   consumer_bin):
    journal = tmp_path / "journal"
    consumer = start_consumer(fifo_path, "--journal", str(journal), "--metrics-addr", "127.0.0.1:0")
    sidecar = start_sidecar(fifo_path, "--stale-after", "2", "--symbols", ",".join(SYMBOLS), server=halt_server)
    wait_for(lambda: all(len(bars_of(consumer, s)) >= 3 for s in SYMBOLS), timeout=60, what="bars of every symbol")
    halt_server.inject("halt:SH")
    wait_for(lambda: "SH" in status(consumer, tmp_path).get("halted", {}), timeout=30, what="SH halted in the status")
    data_minutes_pass(halt_server, 12)
    scraped = metrics(consumer)
    assert scraped["barbridge_symbols_halted"] == 1 and scraped['barbridge_symbol_halted{symbol="SH"}'] == 1
    halt_metrics_agree(consumer, status(consumer, tmp_path))  # nothing about the halt changes meanwhile
    halt_server.inject("unhalt:SH")
    resumed = halt_server.data_minute()
    wait_for(lambda: any(t > resumed for t in bars_of(consumer, "SH")), timeout=30, what="SH bars again")
    wait_for(lambda: (st := status(consumer, tmp_path)) and "SH" not in st.get("halted", {}), timeout=30,
             what="SH trading")
    st = status(consumer, tmp_path)
    c = st["health"]["counters"]
    assert (c["trading_statuses"], c["halts"], c["reconnects"]) == (2, 1, 0), c
    halt_metrics_agree(consumer, st)
    g = gaps(consumer_bin, journal)
    assert g["SH"]["holes"] == [], g["SH"]
    assert g["SH"]["halted_minutes"] >= 10, g["SH"]
    assert [(h["code"], h["end_ms"] is not None) for h in g["SH"]["halts"]] == [("T1", True)]
    assert g["SPY"]["holes"] == [] and g["SPY"]["halted_minutes"] == 0, g["SPY"]
    text = subprocess.run([str(consumer_bin), "gaps", "--journal", str(journal), "--date", SESSION_DATE],
                          capture_output=True, text=True, timeout=30).stdout
    assert "halted " in text and "code T1" in text, text
    assert halt_server.stats["connections"] == 1 and "forcing a reconnect" not in sidecar.stderr()


def session_view(consumer: Consumer) -> dict:
    """The live page's data (``/session.json`` on the consumer's metrics address)."""
    m = wait_for(lambda: re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", consumer.stderr()), timeout=30,
                 what="the consumer's metrics address")
    with urllib.request.urlopen(f"http://{m.group(1)}/session.json", timeout=10) as r:
        return json.loads(r.read())


def status_text(consumer_bin: Path, consumer: Consumer, tmp_path: Path) -> str:
    return subprocess.run([str(consumer_bin), "status", "--status-file", str(tmp_path / f"{consumer.name}.status.json")],
                          capture_output=True, text=True, timeout=30).stdout


def minutes_closed(consumer: Consumer, tmp_path: Path) -> int:
    return int(status(consumer, tmp_path).get("health", {}).get("counters", {}).get("minutes_closed", 0))


def test_a_halted_symbol_unsubscribed_is_not_halted_now_even_after_a_restart(
        halt_server, start_sidecar, start_consumer, fifo_path, tmp_path, consumer_bin):
    """Issue 24 item 5 (ghost halts): SPY halted, then unsubscribed. Once the minute barrier closes a
    minute that no longer lists it, the status file, `barbridge status`, /metrics and the page stop
    calling it halted; a consumer restarted on the journal (which holds the halt) does not bring
    it back. Its halt stays in the journal (`gaps`)."""
    journal = tmp_path / "journal"
    sock = fifo_path.parent / "control.sock"
    consumer = start_consumer(fifo_path, "--journal", str(journal), "--metrics-addr", "127.0.0.1:0")
    start_sidecar(fifo_path, "--stale-after", "2", "--symbols", ",".join(SYMBOLS), "--control", str(sock),
                  server=halt_server)
    wait_for(lambda: all(len(bars_of(consumer, s)) >= 3 for s in SYMBOLS), timeout=60, what="bars of every symbol")
    halt_server.inject("halt:SPY")
    wait_for(lambda: "SPY" in status(consumer, tmp_path).get("halted", {}), timeout=30, what="SPY halted in the status")
    assert re.search(r"^HALTED +SPY ", status_text(consumer_bin, consumer, tmp_path), re.M)
    assert session_view(consumer)["symbols_halted"] == 1
    closed = minutes_closed(consumer, tmp_path)
    assert closed > 0, "the minute barrier is on (the sidecar's default --minute-deadline)"

    ok = control_endpoint.request(sock, "unsubscribe", ["SPY"])
    assert ok["ok"] and ok["symbols"] == ["SH", "SDS"], ok

    def not_halted(c: Consumer) -> None:
        st = status(c, tmp_path)
        assert "SPY" not in st.get("halted", {}), st.get("halted")
        halt_metrics_agree(c, st)
        assert metrics(c)['barbridge_symbol_halted{symbol="SPY"}'] == 0
        text = status_text(consumer_bin, c, tmp_path)
        assert not re.search(r"^HALTED +SPY ", text, re.M), text
        view = session_view(c)
        spy = next(s for s in view["symbols"] if s["symbol"] == "SPY")
        assert spy["halted"] is None and view["symbols_halted"] == 0, (spy, view["symbols_halted"])
        assert spy["subscribed"] is False, spy  # the page greys its row instead of a red age

    wait_for(lambda: "SPY" not in status(consumer, tmp_path).get("halted", {}), timeout=30,
             what="SPY no longer halted once a minute closes without it")
    not_halted(consumer)

    # Restarted on the same journal: the halt is known again, and so is the last minute's universe.
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0
    restart_minute = halt_server.data_minute()
    restarted = start_consumer(fifo_path, "--journal", str(journal), "--metrics-addr", "127.0.0.1:0")
    wait_for(lambda: status(restarted, tmp_path).get("health", {}).get("counters", {}).get("last_minute_ms", 0) > restart_minute,
             timeout=60, what="a minute closed after the restart")
    not_halted(restarted)
    spy = gaps(consumer_bin, journal)["SPY"]
    assert [(h["code"], h["end_ms"]) for h in spy["halts"]] == [("T1", None)], spy["halts"]


def test_a_market_wide_halt_forces_no_reconnect_but_a_dead_socket_is_found(
        halt_server, start_sidecar, start_consumer, fifo_path, tmp_path, consumer_bin):
    journal = tmp_path / "journal"
    consumer = start_consumer(fifo_path, "--journal", str(journal), "--metrics-addr", "127.0.0.1:0")
    # The keepalive's own timeout is long here: finding the dead socket is the halt probe's job.
    sidecar = start_sidecar(fifo_path, "--stale-after", "2", "--ping-timeout", "120", "--symbols", ",".join(SYMBOLS),
                            server=halt_server)
    wait_for(lambda: all(len(bars_of(consumer, s)) >= 2 for s in SYMBOLS), timeout=60, what="bars of every symbol")
    halt_server.inject("halt_all")
    wait_for(lambda: len(status(consumer, tmp_path).get("halted", {})) == 3, timeout=30, what="every symbol halted")
    wait_for(lambda: "every subscribed symbol is halted" in sidecar.stderr(), timeout=30, what="the sidecar noticing")
    data_minutes_pass(halt_server, 40)  # 10 s: five times --stale-after without a bar
    st = status(consumer, tmp_path)
    assert halt_server.stats["connections"] == 1, "a market-wide halt forced a reconnect"
    assert st["health"]["counters"]["reconnects"] == 0
    assert st["health"]["state"] == "live", "heartbeats keep the consumer live during the halt"
    assert st["health"]["sidecar"]["state"] == "subscribed", st["health"]["sidecar"]
    assert all(h["code"] == "MWC1" for h in st["halted"].values())
    halt_metrics_agree(consumer, st)
    # The socket dies without closing: pings go unanswered. The probe finds it.
    halt_server.inject("blackhole")
    wait_for(lambda: halt_server.stats["connections"] >= 2 and halt_server.authenticated_clients() == 1,
             timeout=60, what="a reconnect after the socket went dead")
    assert "got no pong" in sidecar.stderr()
    wait_for(lambda: status(consumer, tmp_path)["health"]["counters"]["reconnects"] >= 1, timeout=30,
             what="the reconnect in the consumer's counters")
    halt_server.inject("unhalt_all")
    resumed = halt_server.data_minute()
    wait_for(lambda: all(any(t > resumed for t in bars_of(consumer, s)) for s in SYMBOLS), timeout=30,
             what="bars after the halt")
    wait_for(lambda: (st := status(consumer, tmp_path)) and not st.get("halted"), timeout=30, what="trading again")
    g = gaps(consumer_bin, journal)
    for s in SYMBOLS:
        assert g[s]["holes"] == [] and g[s]["halted_minutes"] >= 40, g[s]
    shown = subprocess.run([str(consumer_bin), "status", "--status-file", str(tmp_path / f"{consumer.name}.status.json")],
                             capture_output=True, text=True, timeout=30)
    assert "trading   6 statuses, 3 halts" in shown.stdout, shown.stdout


def test_one_process_mode_stays_live_through_a_market_wide_halt(halt_server, start_sidecar, fifo_path, tmp_path):
    """--sink inprocess: the sink's heartbeats reach the consumer's health as on the FIFO path, so
    every symbol halted for five times the consumer's stale_after is live, not stale."""
    status_file = tmp_path / "inprocess.status.json"
    sidecar = start_sidecar(fifo_path, "--sink", "inprocess", "--status-file", str(status_file),
                            "--consumer-stale-after", "2", "--stale-after", "2", "--symbols", ",".join(SYMBOLS),
                            server=halt_server)

    def st() -> dict:
        try:
            return json.loads(status_file.read_text())
        except (OSError, ValueError):
            return {}
    wait_for(lambda: st().get("health", {}).get("counters", {}).get("bars_accepted", 0) >= 6, timeout=60,
             what="bars in the in-process consumer")
    halt_server.inject("halt_all")
    wait_for(lambda: len(st().get("halted", {})) == 3, timeout=30, what="every symbol halted")
    before = st()["health"]["counters"]  # (a slow start may have counted a stale episode before the first line)
    data_minutes_pass(halt_server, 40)  # 10 s: five times the consumer's stale_after without a bar
    health = st()["health"]
    c = health["counters"]
    assert health["state"] == "live", health
    assert c["stale_episodes"] == before["stale_episodes"] and c["heartbeats"] >= before["heartbeats"] + 10, c
    assert halt_server.stats["connections"] == 1 and "forcing a reconnect" not in sidecar.stderr()
