"""NautilusTrader fed by barbridge (bridge/nautilus/, README "NautilusTrader"): the mapping, bad
input, the journal export, and live/backtest parity of the example strategy on a real
TradingNode fed by the real sidecar against the fake Alpaca server."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("nautilus_trader", reason="NautilusTrader is not installed (pip install 'barbridge[nautilus]')")

import barbridge  # noqa: E402
from fake_alpaca.server import FakeAlpacaServer  # noqa: E402
from bridge.nautilus.common import (MappingError, PrecisionError, Sequencer, instrument_id, make_instrument,  # noqa: E402
                                    to_bar)
from bridge.nautilus.history import catalog_bars, sequence, stored_bars  # noqa: E402

from conftest import KEY, PY, REPO, SECRET, Proc, sidecar_env, truth, wait_for  # noqa: E402
from test_nats_feed import nats_url  # noqa: E402,F401  (the fixture: a real nats-server)
from test_scripts import launcher  # noqa: E402,F401  (the fixture: the real launcher, demo mode)

T0 = 1_759_932_000_000  # 2025-10-08 10:00 New York (14:00 UTC): a real session minute
DAY = "2025-10-08"
SPY = {"symbol": "SPY", "timestamp_ms": T0, "open": 671.2, "high": 671.5, "low": 671.1, "close": 671.4, "volume": 18234,
       "vwap": 671.33, "trade_count": 212}


def journal_with(tmp_path: Path, bars: list[dict]) -> Path:
    """A real journal written by the extension's consumer."""
    j = tmp_path / "journal"
    c = barbridge.Consumer(journal=j, fsync="always")
    for b in bars:
        c.push(b)
    c.close()
    return j


def run_export(*args: str) -> tuple[int, str, str]:
    r = subprocess.run([PY, "-m", "bridge.nautilus", "export", *args], capture_output=True, text=True, timeout=120,
                       env=sidecar_env(), cwd=REPO)
    return r.returncode, r.stdout, r.stderr


def test_minute_bar_maps_to_a_one_minute_external_bar_stamped_at_its_close():
    spy = make_instrument("SPY")
    b = to_bar(SPY, spy, 123, False)
    assert str(b.bar_type) == "SPY.ALPACA-1-MINUTE-LAST-EXTERNAL"
    assert b.ts_event == (T0 + 60_000) * 1_000_000 and b.ts_init == 123 and not b.is_revision
    assert (str(b.open), str(b.close), str(b.volume)) == ("671.2000", "671.4000", "18234")
    pair = make_instrument("BTC/USD")
    c = to_bar({**SPY, "symbol": "BTC/USD", "open": 97012.5, "high": 97020.0, "low": 97000.25, "close": 97015.0,
                "volume": 0.123456}, pair, 1, False)
    assert str(c.bar_type) == "BTC/USD.ALPACA-1-MINUTE-LAST-EXTERNAL" and float(c.volume) == 0.123456


def test_values_beyond_the_precision_are_refused_in_one_sentence_never_rounded():
    spy = make_instrument("SPY")
    want = r"SPY bar of minute \d+ has close 671.40005, more decimals than SPY.ALPACA's precision 4"
    with pytest.raises(PrecisionError, match=want):
        to_bar({**SPY, "close": 671.40005}, spy, 0, False)
    with pytest.raises(PrecisionError, match="has volume 10.5"):  # an equity's volume is whole shares
        to_bar({**SPY, "volume": 10.5}, spy, 0, False)
    assert str(to_bar({**SPY, "low": 671.1234}, spy, 0, False).low) == "671.1234"  # a sub-penny trade is kept exactly


def test_symbols_nautilus_cannot_represent_are_one_sentence():
    with pytest.raises(MappingError, match="is not BASE/QUOTE"):
        make_instrument("BTC/")
    with pytest.raises(MappingError, match="cannot be a NautilusTrader instrument"):
        instrument_id("SPY", venue="")
    assert str(make_instrument("DOGE/BTC").id) == "DOGE/BTC.ALPACA"  # a coin NautilusTrader knows as a currency


def test_revisions_corrections_and_late_minutes():
    s = Sequencer()
    minutes = (T0, T0 + 60_000, T0, T0 + 120_000, T0 + 60_000)
    assert [s.is_revision("SPY", t) for t in minutes] == [False, False, True, False, True]
    assert s.is_revision("SH", T0) is False  # per instrument


def test_export_is_the_live_sequence_and_restores_revisions(tmp_path):
    bars = [SPY, {**SPY, "timestamp_ms": T0 + 60_000}, {**SPY, "kind": "updated_bar", "close": 671.45},
            {**SPY, "timestamp_ms": T0 + 120_000},
            {**SPY, "symbol": "SH", "open": 36.4, "high": 36.5, "low": 36.3, "close": 36.4}]
    j = journal_with(tmp_path, bars)
    seq = sequence(j, [dt.date.fromisoformat(DAY)])
    assert [(str(b.bar_type.instrument_id), b.is_revision, float(b.close)) for b in seq.out] == [
        ("SPY.ALPACA", False, 671.4), ("SPY.ALPACA", False, 671.4), ("SPY.ALPACA", True, 671.45),
        ("SPY.ALPACA", False, 671.4), ("SH.ALPACA", False, 36.4)]
    code, out, err = run_export("--journal", str(j), "--day", DAY, "--catalog", str(tmp_path / "cat"))
    assert code == 0, err
    assert "exported 5 bar(s) (1 revision(s)) and 0 status event(s) of 2 instrument(s)" in out
    back = catalog_bars(tmp_path / "cat")
    spy = [(b.is_revision, float(b.close)) for b in back if str(b.bar_type.instrument_id) == "SPY.ALPACA"]
    assert spy == [(False, 671.4), (False, 671.4), (True, 671.45), (False, 671.4)]
    # request_bars' source: the final bars of the journal (the correction applied)
    assert [b["close"] for b in stored_bars(j, "SPY", T0, T0 + 180_000)] == [671.45, 671.4, 671.4]


def test_export_bad_input_is_one_sentence_and_exit_2(tmp_path):
    j = journal_with(tmp_path, [SPY])
    cases = [
        (["--symbols", "BTC/USD"], f"holds us_equity bars for {DAY}, not crypto as configured"),
        (["--day", "2025-10-07"], "has no day file for 2025-10-07"),
        (["--equity-price-precision", "0"], "has open 671.2, more decimals than SPY.ALPACA's precision 0"),
        (["--symbols", "BAD SYMBOL"], "symbol"),
    ]
    for extra, want in cases:
        day = ["--day", DAY] if "--day" not in extra else []
        args = ["--journal", str(j), "--catalog", str(tmp_path / "cat"), *day, *extra]
        code, out, err = run_export(*args)
        assert code == 2 and want in err, (extra, code, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cat").exists()  # nothing half-written


def test_crypto_journal_exports_pairs_and_refuses_stock_symbols(tmp_path):
    pair = {**SPY, "symbol": "BTC/USD", "open": 97012.5, "high": 97020.0, "low": 97000.25, "close": 97015.0,
            "volume": 0.123456}
    j = journal_with(tmp_path, [pair, {**pair, "timestamp_ms": T0 + 60_000, "volume": 1.5}])
    utc_day = "2025-10-08"  # a pair's day file is its UTC day
    code, out, err = run_export("--journal", str(j), "--day", utc_day, "--catalog", str(tmp_path / "cat"), "--symbols", "BTC/USD")
    assert code == 0 and "exported 2 bar(s) (0 revision(s)) and 0 status event(s) of 1 instrument(s) (BTC/USD)" in out, err
    assert [float(b.volume) for b in catalog_bars(tmp_path / "cat")] == [0.123456, 1.5]
    code, out, err = run_export("--journal", str(j), "--day", utc_day, "--catalog", str(tmp_path / "c2"), "--symbols", "SPY")
    assert code == 2 and err.strip() == f"journal {j} holds crypto bars for {utc_day}, not us_equity as configured (symbols SPY)"


def test_a_node_with_a_symbol_it_cannot_take_exits_2_in_one_sentence(tmp_path):
    r = subprocess.run([PY, str(REPO / "examples" / "nautilus" / "sma_strategy.py"), "live", "--fifo",
                        str(tmp_path / "run" / "bars.fifo"), "--symbols", "SPY,BTC/"], capture_output=True, text=True,
                       timeout=120, env=sidecar_env(), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and '"BTC/"' in r.stderr, r.stderr


def records(path: Path, kinds=("decision", "revision")) -> dict[str, list[tuple]]:
    """Per instrument, the strategy's decisions and revisions in order."""
    out: dict[str, list[tuple]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] in kinds:
            out.setdefault(r["instrument"], []).append((r["kind"], r["minute"], r.get("decision"), r["close"]))
    return out


def test_live_node_and_backtest_make_the_same_decisions(tmp_path, procs, start_sidecar):
    """A TradingNode runs the example strategy on the sidecar's bars (FIFO, journal, acks) through a
    dropped connection, corrections and a halt; the journal's export replayed by a BacktestEngine
    makes the same decisions at the same minutes."""
    syms = ("SPY", "SH")
    sent = (*syms, "SDS")  # the sidecar sends one symbol more than the node has instruments for
    srv = FakeAlpacaServer(symbols=sent, interval=0.5, key=KEY, secret=SECRET, prefill=5, page_size=4, updated_every=3,
                           epoch_ms=T0, epoch_wall=time.time()).start_in_thread()
    try:
        fifo, journal = tmp_path / "run" / "bars.fifo", tmp_path / "journal"
        live_out, bt_out = tmp_path / "live.jsonl", tmp_path / "backtest.jsonl"
        example = str(REPO / "examples" / "nautilus" / "sma_strategy.py")
        node = Proc([PY, example, "live", "--fifo", str(fifo), "--journal", str(journal), "--status-file",
                     str(tmp_path / "status.json"), "--symbols", ",".join(syms), "--decisions", str(live_out),
                     "--log-level", "INFO"], tmp_path, "node", env=sidecar_env())
        procs.append(node)
        wait_for(lambda: "reading barbridge FIFO" in node.stdout() or not node.alive(), timeout=60, what="node connected")
        assert node.alive(), node.stderr()[-2000:]
        side = start_sidecar(fifo, "--symbols", ",".join(sent), "--backfill-from", "2025-10-08T13:30:00Z", server=srv)
        n_decisions = lambda: sum(len(v) for v in records(live_out, ("decision",)).values())
        streamed = lambda: (side.stats() or [{}])[-1].get("received_stream", 0)
        wait_for(lambda: n_decisions() >= 10 and streamed() >= 6, timeout=60, what="live decisions on streamed bars")
        subs = srv.stats["subscribes"]
        srv.inject("drop")
        wait_for(lambda: srv.stats["subscribes"] > subs and srv.authenticated_clients() == 1, timeout=60,
                 what="sidecar reconnected")
        after = streamed()
        wait_for(lambda: streamed() >= after + 4, timeout=60, what="streamed bars after the reconnect")
        assert "status disconnected" in side.stderr()
        srv.inject("halt:SH")
        wait_for(lambda: any(r[0] == "status" for r in status_records(live_out)), timeout=60, what="HALT in on_instrument_status")
        srv.inject("unhalt:SH")
        wait_for(lambda: [r[1] for r in status_records(live_out)][-1:] == ["TRADING"], timeout=60,
                 what="TRADING in on_instrument_status")
        seen = n_decisions()
        wait_for(lambda: n_decisions() >= seen + 6, timeout=60, what="decisions after the resumption")
        srv.inject("pause")
        expected = truth(srv, sent)

        def differences() -> list:  # the journal holds every symbol sent, exactly the server's bars
            want = {(s, ts): v[3] for (s, ts), v in expected.items()}
            got = {(s, ts): c for s in sent for ts, c in stored(journal, s).items()}
            return sorted(set(want.items()) ^ set(got.items()))[:6]
        try:
            wait_for(lambda: not differences(), timeout=60, what="the journal to hold every bar the server produced")
        except AssertionError:
            assert differences() == [], "the journal differs from the server's bars (final values)"
        n_live = len(live_out.read_text().splitlines())
        time.sleep(1.0)  # the node has the bars the journal has (same batch); nothing more is coming
        wait_for(lambda: len(live_out.read_text().splitlines()) == n_live, what="the live node to be quiet")
        side.signal(signal.SIGTERM)
        assert side.wait(10) == 0
        node.signal(signal.SIGTERM)
        assert node.wait(60) == 0, node.stderr()[-2000:]

        assert "bars of SDS are not delivered: it is not among the configured symbols" in node.stdout() + node.stderr()
        assert "'refused_precision': 0" in node.stdout() and "'delivery_drops': 0" in node.stdout(), node.stdout()[-1500:]
        code, out, err = run_export("--journal", str(journal), "--day", DAY, "--catalog", str(tmp_path / "catalog"),
                                    "--symbols", ",".join(syms))
        assert code == 0, err
        bt = Proc([PY, example, "backtest", "--catalog", str(tmp_path / "catalog"), "--symbols", ",".join(syms),
                   "--decisions", str(bt_out)], tmp_path, "backtest", env=sidecar_env())
        procs.append(bt)
        assert bt.wait(180) == 0, bt.stderr()[-2000:]

        live, back = records(live_out), records(bt_out)
        assert set(live) == {"SPY.ALPACA", "SH.ALPACA"}
        assert status_records(live_out) == status_records(bt_out), "the halt and the resumption in the backtest too"
        assert live == back
        assert sum(k == "revision" for v in live.values() for k, *_ in v) >= 2, "corrections reached on_bar as revisions"
        for inst, recs in live.items():  # new minutes strictly in order, each once
            minutes = [m for k, m, *_ in recs if k == "decision"]
            assert minutes == sorted(set(minutes)), inst
        assert [a for _, a, _ in status_records(live_out)] == ["HALT", "TRADING"]
        assert any(st.get("backfills", 0) >= 2 for st in side.stats()), "the reconnect was backfilled over REST"
        # every bar the node saw is in the catalog; window 3: two bars per instrument before the first decision
        assert f"{sum(len(v) for v in live.values()) + 4} bar(s)" in out
    finally:
        srv.stop()


def status_records(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    return [(r["kind"], r["action"], r["minute"]) for r in map(json.loads, path.read_text().splitlines())
            if r["kind"] == "status"]


def stored(journal: Path, symbol: str) -> dict[int, float]:
    try:
        return {int(b["timestamp_ms"]): float(b["close"]) for b in stored_bars(journal, symbol, T0 - 86_400_000, T0 + 86_400_000)}
    except (MappingError, OSError):
        return {}


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed (scripts/test_all.sh installs it)")
def test_nats_subscriber_node_and_request_bars_from_its_journal(tmp_path, procs, consumer_bin, nats_url):  # noqa: F811
    """A node on another host's stream (a JetStream durable): every bar once, the correction as a
    revision; restarted on the same durable it gets nothing twice, and request_bars is answered
    from its journal with the corrected values."""
    from zoneinfo import ZoneInfo

    from test_nats_feed import publish

    # minutes of today's New York day (a restarted node reloads today's journal): the last 15, or
    # from midnight on if that is nearer (minutes a little ahead of the clock are fine)
    now = int(time.time() * 1000) // 60_000 * 60_000
    midnight = int(dt.datetime.now(ZoneInfo("America/New_York")).replace(hour=0, minute=0, second=0, microsecond=0)
                   .timestamp() * 1000)
    N0 = max(now - 15 * 60_000, midnight)

    def line(symbol: str, minute: int, close: float, kind: str = "bar") -> str:
        return json.dumps({"type": kind, "symbol": symbol, "timestamp_ms": N0 + minute * 60_000, "open": close,
                           "high": close, "low": close, "close": close, "volume": 100, "vwap": close, "trade_count": 3})

    publish(tmp_path, procs, consumer_bin, nats_url,
            [line("SPY", m, 600 + m) for m in range(12)] + [line("SPY", 5, 1.5, "updated_bar"), line("SPY", 12, 612.00001)])
    example = str(REPO / "examples" / "nautilus" / "sma_strategy.py")
    out = tmp_path / "nats.jsonl"

    def node(name: str, *extra: str) -> Proc:
        p = Proc([PY, example, "live", "--nats-url", nats_url, "--nats-durable", "nautilus", "--journal",
                  str(tmp_path / "subj"), "--symbols", "SPY", "--decisions", str(out), "--log-level", "INFO", *extra],
                 tmp_path, name,
                 env=sidecar_env())
        procs.append(p)
        return p

    first = node("node1")
    wait_for(lambda: len(records(out).get("SPY.ALPACA", [])) >= 11, timeout=60, what="decisions and the revision")
    time.sleep(1.0)
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0, first.stderr()[-2000:]
    recs = records(out)["SPY.ALPACA"]
    assert [k for k, *_ in recs] == ["decision"] * 10 + ["revision"]
    assert [m for _, m, *_ in recs[:10]] == [(N0 + (m + 1) * 60_000) * 1_000_000 for m in range(2, 12)]
    assert recs[-1][1:] == ((N0 + 6 * 60_000) * 1_000_000, None, 1.5)
    # minute 12's close has five decimals: one sentence, counted, not rounded into a decision
    assert f"SPY bar of minute {N0 + 12 * 60_000} has open 612.00001, more decimals than SPY.ALPACA's precision 4: refused, " \
        "not rounded" in first.stderr()
    assert "'refused_precision': 1" in first.stdout()

    start = dt.datetime.fromtimestamp(N0 / 1000, dt.timezone.utc).isoformat()
    second = node("node2", "--history-from", start)
    wait_for(lambda: len(records(out, ("history",)).get("SPY.ALPACA", [])) >= 12, timeout=60, what="request_bars answered")
    # a correction of a minute the first node delivered is a revision for the restarted node too
    publish(tmp_path, procs, consumer_bin, nats_url, [line("SPY", 3, 2.5, "updated_bar")])
    wait_for(lambda: len(records(out)["SPY.ALPACA"]) >= 12, timeout=60, what="the correction in the restarted node")
    time.sleep(1.0)
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.stderr()[-2000:]
    history = records(out, ("history",))["SPY.ALPACA"]
    assert [(m, c) for _, m, _, c in history] == [((N0 + (m + 1) * 60_000) * 1_000_000, 1.5 if m == 5 else 600.0 + m)
                                                 for m in range(12)]
    assert records(out)["SPY.ALPACA"][11:] == [("revision", (N0 + 4 * 60_000) * 1_000_000, None, 2.5)], \
        "the restarted node got no bar twice, and the correction as a revision"


def test_the_node_as_the_launchers_consumer(launcher, tmp_path, consumer_bin):  # noqa: F811
    """README "NautilusTrader": CONSUMER_CMD runs the example node in the consumer's place (the FIFO,
    journal, status file and symbols from the launcher's environment); its decisions show on the
    launcher's terminal, the launcher's health check reads its status file, and it stops cleanly."""
    example = REPO / "examples" / "nautilus" / "sma_strategy.py"
    (tmp_path / "config.env").write_text(f"CONSUMER_CMD={PY} {example} live\nSYMBOLS=SPY,SH\n")
    lc = launcher()
    wait_for(lambda: lc.stdout().count('"kind": "decision", "instrument": "SPY.ALPACA"') >= 5
             and '"instrument": "SH.ALPACA"' in lc.stdout(), 90, what="the node's decisions on the launcher's terminal")
    status = subprocess.run([str(consumer_bin), "status", "--status-file", str(lc.rt / "status.json"), "--check"],
                            capture_output=True, text=True)
    assert status.stdout.strip() == "LIVE", status.stdout + status.stderr
    wait_for(lambda: list((lc.run_dir() / "demo-journal").glob("bars-*.jsonl")), 10, what="the node's journal")
    assert lc.stop(60) == 0, lc.stderr()


def test_request_bars_fills_the_journals_gap_from_rest_history(tmp_path, procs):
    """request_bars with backfill_rest: the journal's bars as they are, and the minutes it lacks
    from the fake server's REST history (through the sidecar's Publisher.submit_backfill)."""
    srv = FakeAlpacaServer(symbols=("SPY",), interval=60, key=KEY, secret=SECRET, prefill=12, epoch_ms=T0,
                           epoch_wall=time.time()).start_in_thread()
    try:
        hist = srv.snapshot_history()["SPY"]
        minutes = sorted(hist)
        gap = set(minutes[4:7])
        wire = lambda b: {"symbol": "SPY", "timestamp_ms": b["t"], "open": b["o"], "high": b["h"], "low": b["l"],
                          "close": b["c"], "volume": b["v"], "vwap": b["vw"], "trade_count": b["n"]}
        j = journal_with(tmp_path, [wire(hist[m]) for m in minutes if m not in gap])
        start = dt.datetime.fromtimestamp(minutes[0] / 1000, dt.timezone.utc)
        out = tmp_path / "history.jsonl"
        example = str(REPO / "examples" / "nautilus" / "sma_strategy.py")
        node = Proc([PY, example, "live", "--fifo", str(tmp_path / "run" / "bars.fifo"),
                     "--journal", str(j), "--symbols", "SPY", "--decisions", str(out), "--log-level", "INFO",
                     "--history-from", start.isoformat(), "--backfill-rest", "--alpaca-data-url", srv.data_url],
                    tmp_path, "node", env=sidecar_env())
        procs.append(node)
        wait_for(lambda: len(records(out, ("history",)).get("SPY.ALPACA", [])) >= len(minutes), timeout=90,
                 what="request_bars answered with the gap filled")
        assert "3 minute(s) the journal lacks from Alpaca's REST history" in node.stdout()
        node.signal(signal.SIGTERM)
        assert node.wait(60) == 0, node.stderr()[-2000:]
        got = [(m, c) for _, m, _, c in records(out, ("history",))["SPY.ALPACA"]]
        assert got == [((m + 60_000) * 1_000_000, float(hist[m]["c"])) for m in minutes]
    finally:
        srv.stop()


def test_crypto_pairs_live_and_backtest_make_the_same_decisions(tmp_path, procs, start_sidecar):
    """Crypto pairs (CurrencyPair, fractional volumes) through the crypto sidecar: the same parity."""
    pairs = ("BTC/USD", "ETH/USD")
    srv = FakeAlpacaServer(symbols=pairs, interval=0.5, key=KEY, secret=SECRET, prefill=5, updated_every=3, epoch_ms=T0,
                           epoch_wall=time.time()).start_in_thread()
    try:
        fifo, journal = tmp_path / "run" / "bars.fifo", tmp_path / "journal"
        live_out, bt_out = tmp_path / "live.jsonl", tmp_path / "backtest.jsonl"
        example = str(REPO / "examples" / "nautilus" / "sma_strategy.py")
        node = Proc([PY, example, "live", "--fifo", str(fifo), "--journal", str(journal), "--symbols", ",".join(pairs),
                     "--decisions", str(live_out), "--log-level", "INFO"], tmp_path, "node", env=sidecar_env())
        procs.append(node)
        wait_for(lambda: "reading barbridge FIFO" in node.stdout() or not node.alive(), timeout=60, what="node connected")
        side = start_sidecar(fifo, "--asset", "crypto", "--symbols", ",".join(pairs), "--stream-url", srv.crypto_ws_url,
                             "--data-url", srv.data_url, "--backfill-from", "2025-10-08T13:30:00Z")
        wait_for(lambda: sum(k == "revision" for v in records(live_out).values() for k, *_ in v) >= 4
                 and all(len(records(live_out).get(f"{p}.ALPACA", [])) >= 8 for p in pairs), timeout=60,
                 what="decisions and revisions for both pairs")
        srv.inject("pause")
        time.sleep(1.5)
        side.signal(signal.SIGTERM)
        assert side.wait(10) == 0
        node.signal(signal.SIGTERM)
        assert node.wait(60) == 0, node.stderr()[-2000:]
        code, out, err = run_export("--journal", str(journal), "--day", DAY, "--catalog", str(tmp_path / "catalog"),
                                    "--symbols", ",".join(pairs))
        assert code == 0, err
        bt = Proc([PY, example, "backtest", "--catalog", str(tmp_path / "catalog"), "--symbols", ",".join(pairs),
                   "--decisions", str(bt_out)], tmp_path, "backtest", env=sidecar_env())
        procs.append(bt)
        assert bt.wait(180) == 0, bt.stderr()[-2000:]
        assert records(live_out) == records(bt_out)
        assert any(float(b.volume) % 1 for b in catalog_bars(tmp_path / "catalog")), "fractional volumes kept"
    finally:
        srv.stop()


def test_a_second_node_on_the_same_fifo_exits_2_in_one_sentence(tmp_path, procs):
    """A source the client cannot open (here: the FIFO already has its one reader) stops the node;
    the example exits 2 with the sentence instead of running without data."""
    example = str(REPO / "examples" / "nautilus" / "sma_strategy.py")
    fifo = tmp_path / "run" / "bars.fifo"
    first = Proc([PY, example, "live", "--fifo", str(fifo), "--symbols", "SPY", "--log-level", "INFO"], tmp_path, "first",
                 env=sidecar_env())
    procs.append(first)
    wait_for(lambda: "reading barbridge FIFO" in first.stdout(), timeout=60, what="the first node reading the FIFO")
    second = Proc([PY, example, "live", "--fifo", str(fifo), "--symbols", "SPY"], tmp_path, "second", env=sidecar_env())
    procs.append(second)
    assert second.wait(90) == 2
    assert second.stderr().strip().splitlines()[-1].startswith(
        f"sma_strategy: the barbridge data client cannot start: {fifo} already has a reader (pid {first.pid})")
    assert first.alive()
