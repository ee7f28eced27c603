"""The pyo3 extension `barbridge` (src/python/), on the built module in .venv: wire vectors,
batches, dedupe/corrections, queries, subscriptions, FifoReader on real FIFOs (writers that
open/close per line, Ctrl-C), thread safety, and the sidecar's one-process mode."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import PY, REPO, Proc, sidecar_env, wait_for

barbridge = pytest.importorskip(
    "barbridge", reason="the barbridge extension is not built (scripts/test_all.sh runs maturin develop)")

VECTORS = json.loads((REPO / "tests" / "wire_vectors.json").read_text())["vectors"]
T0 = 1_759_930_080_000
MIN = 60_000


def vector_bytes(v: dict) -> bytes:
    return bytes.fromhex(v["line_hex"]) if "line_hex" in v else v["line"].encode()


def bar(symbol: str = "SPY", minute: int = 0, close: float = 100.0, **over) -> dict:
    b = {"symbol": symbol, "timestamp_ms": T0 + minute * MIN, "open": close, "high": close + 0.5,
         "low": close - 0.5, "close": close, "volume": 100, "vwap": close, "trade_count": 5}
    b.update(over)
    return b


def line(**kw) -> bytes:
    return json.dumps(bar(**kw)).encode()


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


# ------------------------------------------------------------------------------ basics

def test_module_docs_and_types():
    assert "Consumer" in barbridge.__doc__ and "FifoReader" in barbridge.__doc__
    for name in ("Consumer", "Bar", "FifoReader", "Subscription", "BatchResult", "WireError"):
        assert getattr(barbridge, name).__doc__, name
    assert issubclass(barbridge.WireError, ValueError)
    assert barbridge.Consumer.push.__doc__ and "WireError" in barbridge.Consumer.push.__doc__
    assert set(barbridge.REJECT_REASONS) >= {v["reason"] for v in VECTORS if v["expect"] == "reject"}
    stub = Path(barbridge.__file__).with_name("__init__.pyi")
    assert stub.exists() and (stub.parent / "py.typed").exists(), "type stubs not installed"


def test_readme_one_liner():
    c = barbridge.Consumer()
    seed = json.loads(VECTORS[0]["line"])
    assert c.push(seed) == "appended"
    b = c.latest("SPY")
    assert repr(b) == ("Bar(symbol='SPY', timestamp_ms=1759930080000, open=671.2, high=671.5, low=671.1, "
                       "close=671.4, volume=18234.0, vwap=671.33, trade_count=212)")
    assert b.to_dict() == {**seed, "volume": 18234.0}
    assert b.to_line() == VECTORS[1]["line"]  # the original compact bar format


# ------------------------------------------------------------------------ wire vectors

@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_wire_vector_round_trip(v):
    c = barbridge.Consumer()
    raw = vector_bytes(v)
    expect, reason = consumer_expectation(v)
    if expect == "reject":
        with pytest.raises(barbridge.WireError) as ei:
            c.push_line(raw)
        assert ei.value.reason == reason, str(ei.value)
        assert c.stats()["rejects"] == {reason: 1}
        assert c.symbols() == []
        return
    outcome = c.push_line(raw)
    if expect == "bar":
        want = v["bar"]
        assert outcome == "appended"
        got = c.latest(want["symbol"])
        for f in ("symbol", "timestamp_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count"):
            assert getattr(got, f) == want[f], f
        # Round trips: the encoded line, the dict form and the Bar itself give the same bar.
        for form in (got.to_line(), got.to_line().encode(), got.to_dict(), got):
            c2 = barbridge.Consumer()
            assert c2.push(form) == "appended"
            assert c2.latest(want["symbol"]) == got
        assert c.push(got.to_dict()) == "duplicate"
    else:
        assert outcome == {"heartbeat": "heartbeat", "status": "status", "trading_status": "trading_status",
                           "ignored": "ignored"}[expect]
        assert c.symbols() == []
        if expect == "status":
            assert c.health()["sidecar"]["state"] == v["state"]
    assert c.stats()["rejects_total"] == 0


def consumer_expectation(v: dict) -> tuple[str, str]:
    """A vector's outcome in a consumer with a real clock: a bar valid by the wire rules but more
    than the default clock skew (300 s) ahead of now (the year-2099 vector) is `future_bar`."""
    if v["expect"] == "bar" and v["bar"]["timestamp_ms"] > time.time() * 1000 + 300_000:
        return "reject", "future_bar"
    return v["expect"], v.get("reason", "")


def test_wire_vectors_as_one_batch():
    raws = [vector_bytes(v) for v in VECTORS]
    assert not any(b"\n" in r for r in raws)
    c = barbridge.Consumer()
    res = c.push_batch(b"\n".join(raws) + b"\n")
    outcomes = [consumer_expectation(v) for v in VECTORS]
    want = [(i, reason) for i, (expect, reason) in enumerate(outcomes) if expect == "reject"]
    assert [(i, code) for i, code, _ in res.errors] == want
    assert res.rejected == len(want)
    bars = sum(1 for expect, _ in outcomes if expect == "bar")
    assert res.accepted + res.corrections + res.duplicates + res.conflicts == bars
    assert res.control == sum(1 for v in VECTORS if v["expect"] in ("heartbeat", "status", "trading_status", "ignored"))
    assert c.stats()["rejects_total"] == len(want)


# ------------------------------------------------------------------- errors and batches

def test_bad_dicts_raise_naming_the_field():
    c = barbridge.Consumer()
    cases = [
        ({k: v for k, v in bar().items() if k != "close"}, "missing_field", "close"),
        ({k: v for k, v in bar().items() if k != "symbol"}, "missing_field", "symbol"),
        (bar(open="100"), "wrong_type", "open"),
        (bar(timestamp_ms=T0 + 0.5), "wrong_type", "timestamp_ms"),
        (bar(trade_count=-1), "wrong_type", "trade_count"),
        (bar(high=99.0, low=99.5), "high_below_low", "high"),
        ({**bar(), "close": float("nan")}, "non_finite", "close"),
        (bar(volume=-1), "negative_volume", "volume"),
        (bar(symbol="S PY"), "invalid_symbol", "symbol"),
    ]
    for b, reason, field in cases:
        with pytest.raises(barbridge.WireError) as ei:
            c.push(b)
        assert ei.value.reason == reason, (b, str(ei.value))
        assert field in str(ei.value), (field, str(ei.value))
    # The same bars as wire lines (Python's json.dumps writes NaN) fail the same way.
    for b, reason, field in cases:
        with pytest.raises(ValueError) as ei:
            c.push(json.dumps(b))
        assert ei.value.reason == reason and field in str(ei.value), str(ei.value)
    st = c.stats()
    assert st["rejects_total"] == 2 * len(cases) and st["bars_accepted"] == 0
    with pytest.raises(TypeError):
        c.push(42)
    with pytest.raises(barbridge.WireError):
        barbridge.Bar("SPY", T0, 1.0, 0.5, 1.0, 1.0, 1.0)


def test_batch_keeps_good_rows_and_reports_bad():
    c = barbridge.Consumer()
    rows = [bar(minute=i, close=100 + i) for i in range(10)]
    rows[3] = {k: v for k, v in rows[3].items() if k != "volume"}
    rows[7] = bar(minute=7, high=1.0)  # high below low
    rows.append(json.dumps(bar(minute=20)))  # a wire line in the list
    rows.append(barbridge.Bar("SPY", T0 + 21 * MIN, 1.0, 2.0, 0.5, 1.5, 10.0))
    rows.append(42)  # not a bar at all: one more bad row, not a failed batch
    res = c.push_batch(rows)
    assert (res.accepted, res.rejected) == (10, 3)
    assert [(i, code) for i, code, _ in res.errors] == [(3, "missing_field"), (7, "high_below_low"), (12, "wrong_type")]
    assert "volume" in res.errors[0][2]
    assert not res.ok and res.to_dict()["accepted"] == 10
    assert c.count("SPY") == 10

    data = b"\n".join([line(symbol="QQQ", minute=i) for i in range(5)] + [b"{oops"] +
                      [line(symbol="QQQ", minute=i) for i in range(5, 8)])  # no final newline
    res = c.push_batch(data)
    assert (res.accepted, res.rejected, res.errors[0][:2]) == (8, 1, (5, "malformed_json"))
    assert c.count("QQQ") == 8
    assert c.push_batch(bytearray(data)).duplicates == 8
    assert c.push_batch(data.decode()).duplicates == 8
    assert c.push_batch([]).accepted == 0


def test_symbols_past_the_store_bound_are_refused_counted_and_known_ones_go_on():
    c = barbridge.Consumer()
    full = b"\n".join(line(symbol=f"S{i}", minute=0) for i in range(20_000)) + b"\n"
    assert c.push_batch(full).accepted == 20_000  # the default bound: twice the full market
    res = c.push_batch([bar(symbol="NEW1"), bar(symbol="NEW2"), bar(symbol="S7", minute=1)])
    assert (res.accepted, res.refused) == (1, 2) and res.to_dict()["refused"] == 2
    assert c.push(bar(symbol="NEW3")) == "symbol_bound"
    assert c.stats()["symbol_bound_refused"] == 3
    assert c.count("S7") == 2 and c.count("NEW1") == 0


def test_dedupe_and_corrections():
    c = barbridge.Consumer()
    assert c.push(bar(minute=1)) == "appended"
    assert c.push(bar(minute=1)) == "duplicate"
    assert c.push(bar(minute=1, close=100.2)) == "conflict"
    assert c.latest("SPY").close == 100.0, "a first report does not overwrite"
    assert c.push(bar(minute=1, close=100.2, type="updated_bar")) == "corrected"
    assert c.latest("SPY").close == 100.2
    assert c.push(bar(minute=1, close=100.3, source="backfill")) == "corrected"
    assert c.push(bar(minute=0)) == "inserted"
    assert [b.timestamp_ms for b in c.last_n("SPY", 5)] == [T0, T0 + MIN]
    st = c.stats()
    assert (st["bars_accepted"], st["duplicates"], st["conflicts"], st["corrections"]) == (2, 1, 1, 2)
    c.push_line(b'{"type":"heartbeat","ts_ms":1,"seq":1,"writer":"w"}')
    c.push_line(b'{"type":"heartbeat","ts_ms":1,"seq":3,"writer":"w"}\n')
    assert (c.stats()["seq_gaps"], c.stats()["lines_lost"]) == (1, 1)


def test_a_dict_the_extension_handed_out_pushes_back_as_what_it_was():
    # normalise_alpaca() says "kind" (not the wire's "type"): a correction pushed on stays a correction.
    c = barbridge.Consumer()
    raw = {"S": "SPY", "t": "2025-10-08T13:31:00Z", "o": 100.0, "h": 100.5, "l": 99.5, "v": 1000}
    first = barbridge.normalise_alpaca({**raw, "T": "b", "c": 100.0})
    correction = barbridge.normalise_alpaca({**raw, "T": "u", "c": 100.2})
    assert correction["kind"] == "updated_bar" and "type" not in correction, correction
    assert c.push(first) == "appended"
    assert c.push(correction) == "corrected"
    assert c.latest("SPY").close == 100.2
    with pytest.raises(ValueError, match="kind"):
        c.push({**correction, "kind": "bogus"})


# -------------------------------------------------------------------------------- queries

def test_queries_and_columns():
    c = barbridge.Consumer(capacity_per_symbol=50)
    c.push_batch([bar(minute=i, close=100 + i, trade_count=i) for i in range(60)])
    c.push(bar(symbol="AAA", minute=0))
    assert c.symbols() == ["AAA", "SPY"]
    assert (c.count("SPY"), len(c), "SPY" in c, "NOPE" in c) == (50, 51, True, False)
    assert c.latest("SPY").close == 159 and c.latest("NOPE") is None
    last = c.last_n("SPY", 3)
    assert [b.close for b in last] == [157, 158, 159] and all(isinstance(b, barbridge.Bar) for b in last)
    r = c.range("SPY", T0 + 20 * MIN, T0 + 23 * MIN)
    assert [b.timestamp_ms for b in r] == [T0 + i * MIN for i in (20, 21, 22)], "half-open range"
    assert c.last_n("NOPE", 3) == [] and c.range("SPY", T0 + 100 * MIN, T0) == []
    b = last[-1]
    assert (b.symbol, b.open, b.high, b.low, b.volume, b.vwap, b.trade_count, b.correction, b.source) == \
        ("SPY", 159, 159.5, 158.5, 100.0, 159, 59, False, None)

    cols = c.columns("SPY", n=3)
    assert cols["close"] == [157.0, 158.0, 159.0] and cols["trade_count"] == [57, 58, 59]
    assert set(cols) == {"timestamp_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count"}
    assert len(c.columns("SPY")["close"]) == 50
    assert c.columns("SPY", from_ms=T0 + 20 * MIN, to_ms=T0 + 25 * MIN, n=2)["close"] == [123.0, 124.0]
    assert c.columns("SPY", from_ms=T0 + 58 * MIN)["close"] == [158.0, 159.0]
    assert c.columns("NOPE")["close"] == []


def test_columns_numpy():
    np = pytest.importorskip("numpy")
    c = barbridge.Consumer()
    c.push_batch([bar(minute=i, close=100 + i) for i in range(10)])
    cols = c.columns("SPY", n=4, numpy=True)
    assert isinstance(cols["close"], np.ndarray) and cols["close"].dtype == np.float64
    assert cols["timestamp_ms"].dtype == np.int64 and cols["trade_count"].dtype == np.float64
    assert cols["close"].tolist() == [106.0, 107.0, 108.0, 109.0] and cols["trade_count"].tolist() == [5.0] * 4
    cols["close"][0] = 0.0  # a private, writable copy
    assert c.latest("SPY").close == 109.0
    # An absent vwap / trade_count is NaN in an array (None in a list), never 0.
    c.push(bar(minute=10, vwap=None, trade_count=None))
    cols = c.columns("SPY", n=2, numpy=True)
    assert np.isnan(cols["vwap"][-1]) and np.isnan(cols["trade_count"][-1]) and cols["vwap"][0] == 109.0
    assert c.columns("SPY", n=1)["vwap"] == [None] and c.columns("SPY", n=1)["trade_count"] == [None]


def test_numpy_is_not_a_hard_dependency():
    code = textwrap.dedent("""
        import sys
        sys.modules["numpy"] = None  # make `import numpy` fail
        import barbridge
        c = barbridge.Consumer()
        c.push({"symbol":"SPY","timestamp_ms":1759930080000,"open":1,"high":1,"low":1,"close":1,"volume":1})
        assert c.columns("SPY")["close"] == [1.0]
        try:
            c.columns("SPY", numpy=True)
        except ImportError as e:
            print("ImportError:", e)
    """)
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    assert "needs numpy" in r.stdout


def test_symbols_filter_and_health_and_status_file(tmp_path):
    status = tmp_path / "run" / "status.json"
    with barbridge.Consumer(symbols=["SPY"], stale_after=60, status_file=str(status)) as c:
        assert c.health()["state"] == "waiting"
        assert c.push(bar(symbol="QQQ")) == "filtered"
        assert c.push(bar(symbol="SPY")) == "appended"
        h = c.health()
        assert h["state"] == "live" and h["counters"]["filtered"] == 1 and h["symbols"]["SPY"]["bars"] == 1
        assert c.status()["stored"] == {"SPY": 1}
        wait_for(lambda: status.exists() and json.loads(status.read_text())["stored"] == {"SPY": 1},
                 what="the status file")
        c.push(bar(symbol="SPY", minute=1))
    # close() writes once more
    assert json.loads(status.read_text())["stored"] == {"SPY": 2}
    assert oct(status.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError):
        barbridge.Consumer(stale_after=0)
    with pytest.raises(ValueError):
        barbridge.Consumer(symbols=["BAD SYMBOL"])


def test_echo_prints_wire_lines():
    code = textwrap.dedent("""
        import barbridge
        c = barbridge.Consumer(echo=True)
        b = {"symbol":"SPY","timestamp_ms":1759930080000,"open":671.2,"high":671.5,"low":671.1,
             "close":671.4,"volume":18234,"vwap":671.33,"trade_count":212}
        c.push(b); c.push(b)
        c.push({**b, "close": 671.5, "type": "updated_bar"})
    """)
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == VECTORS[1]["line"], "duplicates are not echoed; the line is the original compact format"
    assert len(lines) == 2 and lines[1].startswith('{"type":"updated_bar"') and '"close":671.5' in lines[1]


def test_journal_written_and_restored(tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo
    noon = datetime.now(ZoneInfo("America/New_York")).replace(hour=12, minute=0, second=0, microsecond=0)
    t = int(noon.timestamp()) * 1000  # today's New York date: the file a restart reloads
    journal = tmp_path / "journal"
    c = barbridge.Consumer(journal=journal, fsync="always")
    c.push_batch([bar(timestamp_ms=t + i * MIN) for i in range(5)])
    c.push(bar(timestamp_ms=t, close=100.25, type="updated_bar"))
    c.push(bar(timestamp_ms=t + MIN))  # duplicate: not journalled
    c.close()
    path = journal / f"bars-{noon.date()}.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and lines[-1].startswith('{"type":"updated_bar"')
    c2 = barbridge.Consumer(journal=journal)
    assert c2.count("SPY") == 5 and c2.last_n("SPY", 5)[0].close == 100.25, "restored warm, correction applied"
    with pytest.raises(ValueError):
        barbridge.Consumer(journal=journal, fsync="sometimes")


def test_absent_vwap_and_trade_count_stay_absent_through_store_echo_and_journal(tmp_path):
    """A bar without the optional fields is never turned into one with zeros: not in the store,
    the echo, the journal, a restart from the journal, or the Python Bar."""
    from datetime import datetime
    from zoneinfo import ZoneInfo
    noon = datetime.now(ZoneInfo("America/New_York")).replace(hour=12, minute=0, second=0, microsecond=0)
    t = int(noon.timestamp()) * 1000
    code = textwrap.dedent(f"""
        import barbridge, json
        c = barbridge.Consumer(echo=True, journal={str(tmp_path / "j")!r}, fsync="always")
        bare = {{"symbol": "SH", "timestamp_ms": {t}, "open": 10.0, "high": 10.0, "low": 10.0, "close": 10.0,
                 "volume": 0}}
        assert c.push(bare) == "appended"
        assert c.push({{**bare, "vwap": 0.0, "trade_count": 0}}) == "conflict", "0 is not the same as absent"
        b = c.latest("SH")
        assert (b.vwap, b.trade_count) == (None, None), b
        assert b.to_dict()["vwap"] is None and b.to_dict()["trade_count"] is None
        assert "vwap=None, trade_count=None" in repr(b)
        assert barbridge.Bar("SH", {t}, 1, 1, 1, 1, 0).vwap is None
        c.close()
    """)
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    echoed = r.stdout.splitlines()
    assert len(echoed) == 1 and "vwap" not in echoed[0] and "trade_count" not in echoed[0], echoed
    journaled = (tmp_path / "j" / f"bars-{noon.date()}.jsonl").read_text().splitlines()
    assert journaled == echoed
    again = barbridge.Consumer(journal=tmp_path / "j").latest("SH")
    assert (again.vwap, again.trade_count) == (None, None), "restored from the journal still absent"


# ------------------------------------------------------------------ numeric arguments

HUGE_ARGUMENTS = [
    "barbridge.Consumer().subscribe(capacity=10**12)",
    "barbridge.Consumer().subscribe(capacity=2**63)",
    "barbridge.Consumer().subscribe(capacity=2**64)",
    "barbridge.Consumer().subscribe(capacity=0)",
    "barbridge.Consumer().subscribe(capacity=-1)",
    "barbridge.Consumer().subscribe(timeout=1e300)",
    "barbridge.Consumer().subscribe(timeout=10**400)",
    "barbridge.Consumer().subscribe(timeout=float('nan'))",
    "barbridge.FifoReader(PATH, capacity=10**12)",
    "barbridge.FifoReader(PATH, capacity=2**63)",
    "barbridge.FifoReader(PATH, capacity=0)",
    "barbridge.FifoReader(PATH, timeout=1e300)",
    "barbridge.FifoReader(PATH, capacity_per_symbol=0)",
    "barbridge.FifoReader(PATH, stale_after=1e300)",
    "barbridge.Consumer(capacity_per_symbol=0)",
    "barbridge.Consumer(capacity_per_symbol=-5)",
    "barbridge.Consumer(capacity_per_symbol=2**64)",
    "barbridge.Consumer(stale_after=1e300)",
    "barbridge.Consumer(stale_after=0)",
    "barbridge.Consumer(symbols=['spy'])",
    "barbridge.Consumer().subscribe(symbols=['spy'])",
    "barbridge.Consumer().last_n('SPY', -1)",
    "barbridge.Consumer().last_n('SPY', 2**64)",
    "barbridge.Consumer().range('SPY', 0, 2**63)",
    "barbridge.Consumer().columns('SPY', n=-1)",
    "barbridge.Consumer().columns('SPY', from_ms=-2**70)",
    "barbridge.Consumer().subscribe().get(timeout=1e300)",
    "barbridge.FifoWriter(PATH, writer='w', backlog=0)",
    "barbridge.FifoWriter(PATH, writer='w', backlog=2**64)",
    "barbridge.FifoWriter(PATH, writer='w', heartbeat=1e300)",
    "barbridge.FifoWriter(PATH, writer='w', pipe_size=2**40)",
    "barbridge.FifoWriter(PATH, writer='w', unacked_bytes=-1)",
    "barbridge.FifoWriter(PATH, writer='w', open_backoff_max=-1)",
    "barbridge.FifoWriter(PATH, writer='w').next_event(1e300)",
    "barbridge.FifoWriter(PATH, writer='w').close(flush_timeout=float('inf'))",
    "barbridge.Bar('SPY', 2**64, 1, 1, 1, 1, 1)",
    "barbridge.Bar('SPY', 1759930080000, 1, 1, 1, 1, 1, trade_count=-1)",
    "barbridge.Bar('SPY', 1759930080000, 1, 1, 1, 1, 10**400)",
]


@pytest.mark.parametrize("call", HUGE_ARGUMENTS)
def test_numeric_arguments_out_of_range_raise_value_error(call, tmp_path):
    """Each call runs in its own interpreter: before the checks some of them aborted it (SIGABRT)
    or raised a PanicException that `except Exception` does not catch."""
    code = textwrap.dedent(f"""
        import barbridge, sys
        PATH = {str(tmp_path / "run" / "bars.fifo")!r}
        try:
            {call}
        except ValueError as e:
            print("ValueError:", e)
            sys.exit(0)
        except BaseException as e:
            print("not a ValueError:", type(e).__name__, e)
            sys.exit(3)
        print("no error")
        sys.exit(4)
    """)
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, f"{call}: exit {r.returncode}: {r.stdout}{r.stderr[-500:]}"
    message = r.stdout.split("ValueError:", 1)[1].strip()
    assert message and "panicked" not in r.stderr, f"{call}: {message} {r.stderr[-300:]}"


def test_numeric_arguments_in_range_still_work(tmp_path):
    c = barbridge.Consumer(capacity_per_symbol=1, stale_after=1e9)
    sub = c.subscribe(capacity=4_194_304, timeout=0)
    c.push(bar(minute=0))
    c.push(bar(minute=1))
    assert c.count("SPY") == 1 and len(sub.drain()) == 2 and sub.get(timeout=0) is None
    assert c.last_n("SPY", 2**63) == c.last_n("SPY", 1) and c.range("SPY", -2**63, 2**63 - 1)
    with pytest.raises(TypeError):
        c.subscribe(capacity="10")
    with pytest.raises(TypeError):
        c.last_n("SPY", True)


# ---------------------------------------------------------------------------- subscribe

def test_subscribe_waits_without_holding_the_gil():
    c = barbridge.Consumer()
    sub = c.subscribe(symbols=["SPY"], timeout=30)

    def producer():
        time.sleep(0.2)  # the main thread is already waiting in next(sub) by now (GIL released)
        for i in range(5):
            c.push(bar(symbol="QQQ", minute=i))
            c.push(bar(minute=i))
        c.push(bar(minute=0, close=100.1, type="updated_bar", source="backfill"))

    t = threading.Thread(target=producer)
    t.start()
    got = [next(sub) for _ in range(6)]
    t.join()
    assert [b.timestamp_ms for b in got] == [T0 + i * MIN for i in range(5)] + [T0]
    assert all(b.symbol == "SPY" for b in got)
    assert got[-1].correction and got[-1].source == "backfill" and not got[0].correction

    assert sub.get(timeout=0.05) is None
    short = c.subscribe(timeout=0.1)
    c.push(bar(minute=10))
    assert [b.timestamp_ms for b in short] == [T0 + 10 * MIN], "iteration ends after the timeout"
    small = c.subscribe(capacity=2)
    c.push_batch([bar(minute=20 + i) for i in range(5)])
    assert [b.timestamp_ms for b in small.drain()] == [T0 + 23 * MIN, T0 + 24 * MIN]
    assert small.dropped == 3
    with c.subscribe() as s:
        pass
    assert list(s) == []  # closed: iteration ends at once


# ---------------------------------------------------------------------------- threads

def test_threads_push_while_others_query():
    c = barbridge.Consumer(capacity_per_symbol=100_000)
    errors: list = []
    stop = threading.Event()
    n_batches, per_batch = 40, 500

    def pusher(sym: str):
        try:
            for k in range(n_batches):
                data = b"\n".join(line(symbol=sym, minute=k * per_batch + i) for i in range(per_batch))
                assert c.push_batch(data).accepted == per_batch
                c.push(bar(symbol=sym, minute=k * per_batch))  # a single duplicate
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def querier():
        try:
            while not stop.is_set():
                for sym in ("SPY", "QQQ"):
                    last = c.last_n(sym, 50)
                    ts = [b.timestamp_ms for b in last]
                    assert ts == sorted(ts)
                    cols = c.columns(sym, n=20)
                    assert len(cols["close"]) == len(cols["timestamp_ms"])
                    c.latest(sym)
                c.stats()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=pusher, args=(s,)) for s in ("SPY", "QQQ")]
    threads += [threading.Thread(target=querier) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads[:2]:
        t.join(120)
    stop.set()
    for t in threads[2:]:
        t.join(30)
    assert not errors, errors
    assert c.count("SPY") == c.count("QQQ") == n_batches * per_batch
    st = c.stats()
    assert (st["bars_accepted"], st["duplicates"]) == (2 * n_batches * per_batch, 2 * n_batches)


def test_push_batch_releases_the_gil():
    c = barbridge.Consumer(capacity_per_symbol=10)
    data = b"\n".join(line(symbol=f"S{i % 50}", minute=i) for i in range(300_000))
    ticks: list = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=spin)
    t.start()
    wait_for(lambda: ticks, what="the spinning thread")
    start = time.perf_counter()
    assert c.push_batch(data).accepted == 300_000
    end = time.perf_counter()
    stop.set()
    t.join()
    # With the GIL held for the whole call, the other thread could not run at all in its middle.
    q = (end - start) / 4
    assert any(start + q < x < end - q for x in ticks), f"no Python thread ran during a {end - start:.2f}s batch"


# -------------------------------------------------------------------------- FifoReader

WRITER = textwrap.dedent("""
    # Writes each line of stdin to the FIFO with its own open/write/close, like a naive sidecar.
    import errno, os, sys, time
    path = sys.argv[1]
    for line in sys.stdin.buffer:
        deadline = time.monotonic() + 30
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        os.write(fd, line)
        os.close(fd)
""")


def run_writer(path: Path, lines: list[bytes]) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-c", WRITER, str(path)], input=b"".join(l + b"\n" for l in lines),
                          capture_output=True, timeout=60)


def test_fifo_reader_with_a_writer_that_opens_per_line(tmp_path):
    path = tmp_path / "run" / "bars.fifo"
    lines = [line(symbol="SPY" if i % 2 else "SH", minute=i // 2, close=50 + i) for i in range(20)]
    lines.insert(5, b"not json")
    lines.insert(9, lines[8])  # a duplicate
    with barbridge.FifoReader(str(path), timeout=30) as reader:
        assert path.exists() and oct(path.parent.stat().st_mode & 0o777) == "0o700"
        writer = threading.Thread(target=run_writer, args=(path, lines))
        writer.start()
        got = []
        for b in reader:
            got.append(b)
            if len(got) == 20:
                break
        writer.join(60)
        assert [(b.symbol, b.timestamp_ms) for b in got] == [
            ("SPY" if i % 2 else "SH", T0 + (i // 2) * MIN) for i in range(20)]
        st = reader.stats()
        assert (st["bars_accepted"], st["duplicates"], st["rejects"]) == (20, 1, {"malformed_json": 1})
        assert reader.consumer.count("SPY") == 10 and reader.latest("SPY").close == 69
        assert reader.running
    assert not reader.running
    reader.close()  # idempotent


def test_fifo_reader_once_ends_with_the_writer(tmp_path):
    path = tmp_path / "bars.fifo"
    os.mkfifo(path, 0o600)
    os.chmod(tmp_path, 0o700)
    consumer = barbridge.Consumer()
    reader = barbridge.FifoReader(path, consumer=consumer, once=True, timeout=30)
    fd = wait_for(lambda: _try_open(path), what="the reader")
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(line(minute=i) + b"\n" for i in range(100)))
    got = list(reader)  # ends when the writer closes, after draining every bar
    assert len(got) == 100 and consumer.count("SPY") == 100
    assert not reader.running


def _try_open(path: Path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None
        raise


def test_fifo_reader_refuses_unsafe_paths(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(OSError, match="not a FIFO"):
        barbridge.FifoReader(str(regular))
    link = tmp_path / "link"
    link.symlink_to(regular)
    with pytest.raises(OSError, match="symbolic link"):
        barbridge.FifoReader(str(link))


CTRL_C_CHILD = textwrap.dedent("""
    import sys, time, barbridge
    reader = barbridge.FifoReader(sys.argv[1])
    print("ready", flush=True)
    n = 0
    try:
        for bar in reader:
            n += 1
            print("bar", bar.symbol, flush=True)
    except KeyboardInterrupt:
        t = time.monotonic()
        reader.close()
        print(f"interrupted after {n} bars; closed in {time.monotonic() - t:.2f}s; running={reader.running}",
              flush=True)
        sys.exit(0)
    print("iteration ended without Ctrl-C", flush=True)
    sys.exit(1)
""")


@pytest.mark.parametrize("with_bars", [False, True], ids=["idle", "after-bars"])
def test_ctrl_c_while_iterating_a_fifo_reader(tmp_path, procs, with_bars):
    path = tmp_path / "run" / "bars.fifo"
    child = Proc([PY, "-c", CTRL_C_CHILD, str(path)], tmp_path, "iterate", env=child_env())
    procs.append(child)
    wait_for(lambda: "ready" in child.stdout() or not child.alive(), what="the child to start iterating")
    assert child.alive(), child.stderr()
    if with_bars:
        run_writer(path, [line(minute=i) for i in range(3)])
        wait_for(lambda: child.stdout().count("bar SPY") == 3, what="3 bars in the child")
    t = time.monotonic()
    child.signal(signal.SIGINT)
    rc = child.wait(timeout=15)
    elapsed = time.monotonic() - t
    out = child.stdout()
    assert rc == 0, f"rc={rc}\n{out}\n{child.stderr()}"
    assert f"interrupted after {3 if with_bars else 0} bars" in out and "running=False" in out, out
    assert elapsed < 5, f"took {elapsed:.1f}s to react to Ctrl-C"


def test_uncaught_ctrl_c_exits_promptly(tmp_path, procs):
    path = tmp_path / "run" / "bars.fifo"
    code = "import sys, barbridge\nprint('ready', flush=True)\nfor b in barbridge.FifoReader(sys.argv[1]): pass\n"
    child = Proc([PY, "-c", code, str(path)], tmp_path, "uncaught", env=child_env())
    procs.append(child)
    wait_for(lambda: "ready" in child.stdout() and path.exists(), what="the child's reader")
    child.signal(signal.SIGINT)
    rc = child.wait(timeout=15)
    assert rc in (-signal.SIGINT, 130, 1), rc
    assert "KeyboardInterrupt" in child.stderr()


# ------------------------------------------------------------------- one-process mode

def test_sidecar_inprocess_synthetic_delivers_every_bar(tmp_path, procs):
    status = tmp_path / "status.json"
    journal = tmp_path / "journal"
    n, syms = 40, ("SPY", "SH", "SDS")
    argv = [PY, "-m", "bridge", "--source", "synthetic", "--sink", "inprocess", "--interval", "0.01",
            "--count", str(n), "--seed", "7", "--symbols", ",".join(syms), "--echo", "--status-file", str(status),
            "--journal", str(journal), "--heartbeat", "0.2", "--stats-interval", "0"]
    p = Proc(argv, tmp_path, "sidecar-inprocess", env=sidecar_env())
    procs.append(p)
    rc = p.wait(timeout=120)
    assert rc == 0, p.stderr()
    echoed = [b for b in (json.loads(l) for l in p.stdout().splitlines() if l.startswith("{"))
              if b.get("type") != "minute_closed"]
    keys = {(b["symbol"], b["timestamp_ms"]) for b in echoed}
    assert len(echoed) == len(keys) == n * len(syms), "every bar exactly once"
    assert {s for s, _ in keys} == set(syms)
    report = json.loads(status.read_text())
    c = report["health"]["counters"]
    assert (c["bars_accepted"], c["rejects_total"], c["seq_gaps"]) == (n * len(syms), 0, 0)
    assert report["stored"] == {s: n for s in syms}
    assert report["health"]["sidecar"]["state"] == "disconnected"  # "sidecar stopping", the last word
    journalled = [b for f in journal.glob("bars-*.jsonl") for b in map(json.loads, f.read_text().splitlines())
                  if b.get("type") != "minute_closed"]
    assert sorted((b["symbol"], b["timestamp_ms"]) for b in journalled) == sorted(keys)


def test_inprocess_sink_feeds_a_consumer_in_this_process():
    from bridge.sinks import InProcessSink
    consumer = barbridge.Consumer()
    sub = consumer.subscribe(timeout=30)
    sink = InProcessSink(consumer=consumer, heartbeat=0.1)
    pub = barbridge.Publisher(sink.native)
    sink.start()
    for i in range(200):
        pub.submit_bar({**bar(minute=i), "kind": "bar", "source": "stream"})
    got = [next(sub) for _ in range(200)]
    sink.close()
    assert [b.timestamp_ms for b in got] == [T0 + i * MIN for i in range(200)]
    assert got[0].source == "stream"
    st = consumer.stats()
    assert (st["bars_accepted"], st["rejects_total"]) == (200, 0)
    assert sink.stats.bars_written == 200


def test_df_is_indexed_like_alpaca_py_barset():
    """`Consumer.df()` is what alpaca-py users know as `bars.df`: a (symbol, timestamp) index with a
    UTC-aware timestamp, float columns, and `trade_count` an integer column with <NA> where absent."""
    pd = pytest.importorskip("pandas")
    c = barbridge.Consumer()
    c.push({"symbol": "SPY", "timestamp_ms": T0, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10,
            "vwap": 1.2, "trade_count": 7})
    c.push({"symbol": "SPY", "timestamp_ms": T0 + MIN, "open": 1.5, "high": 2, "low": 1, "close": 1.8, "volume": 5})
    c.push({"symbol": "AAPL", "timestamp_ms": T0, "open": 200, "high": 201, "low": 199, "close": 200.5,
            "volume": 3.5, "trade_count": 2})
    df = c.df()
    assert list(df.index.names) == ["symbol", "timestamp"]
    assert list(df.columns) == ["open", "high", "low", "close", "volume", "vwap", "trade_count"]
    assert [s for s, _ in df.index] == ["AAPL", "SPY", "SPY"]
    ts = df.index.get_level_values("timestamp")
    assert str(ts.tz) == "UTC" and ts[1] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert str(df["trade_count"].dtype) == "Int64" and df["trade_count"].tolist()[:2] == [2, 7]
    assert pd.isna(df["trade_count"].iloc[2]) and pd.isna(df["vwap"].iloc[2])
    assert df.loc[("SPY", pd.Timestamp(T0 + MIN, unit="ms", tz="UTC")), "close"] == 1.8
    assert c.df(["SPY"], n=1).index.tolist() == [("SPY", pd.Timestamp(T0 + MIN, unit="ms", tz="UTC"))]
    assert c.df(["NONE"]).empty


def test_help_shows_the_real_defaults():
    import inspect
    for cls, name, default in ((barbridge.Consumer, "capacity_per_symbol", 10000),
                               (barbridge.Consumer, "stale_after", 120.0),
                               (barbridge.FifoReader, "capacity", 65536),
                               (barbridge.FifoWriter, "unacked_bytes", 64 << 20)):
        params = inspect.signature(cls).parameters
        assert params[name].default == default, (cls, params)
    assert "Ellipsis" not in str(inspect.signature(barbridge.Consumer))


def test_rust_warnings_reach_python_logging_and_can_be_quieted():
    """The Rust side's warnings go to Python's logging (loggers named after the Rust module), not
    straight to stderr: a user quiets them the way they quiet any library."""
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    keep = Keep()
    root = logging.getLogger("barbridge")
    root.addHandler(keep)
    try:
        c = barbridge.Consumer()
        with pytest.raises(barbridge.WireError):
            c.push_line("this is no bar")
        wait_for(lambda: any("rejected line" in r.getMessage() for r in keep.records), timeout=10,
                 what="the reject warning in Python's logging")
        rec = next(r for r in keep.records if "rejected line" in r.getMessage())
        assert rec.levelno == logging.WARNING and rec.name.startswith("barbridge."), rec
        root.setLevel(logging.ERROR)
        keep.records.clear()
        bad = '{"symbol":"SPY","timestamp_ms":1759930080000,"open":1,"high":1,"low":2,"close":1,"volume":1}'
        with pytest.raises(barbridge.WireError):
            c.push_line(bad)  # another reason: not rate-limited away, a record is made
        time.sleep(2)  # the pump hands records over within 0.1 s
        assert not keep.records, [r.getMessage() for r in keep.records]
        root.setLevel(logging.NOTSET)
        with pytest.raises(barbridge.WireError):
            c.push_line(bad.replace('"low":2', '"low":1').replace('"volume":1', '"volume":-1'))
        wait_for(lambda: keep.records, timeout=10, what="a record once the level allows it again")
        assert "negative_volume" in keep.records[0].getMessage(), keep.records[0].getMessage()
    finally:
        root.removeHandler(keep)
        root.setLevel(logging.NOTSET)


def test_halts_have_a_python_accessor():
    c = barbridge.Consumer()
    assert c.halted() == {} and c.halts("SPY") == []
    c.push_line('{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":%d,"status":"halted","code":"T1",'
                '"reason":"news"}' % (T0 + 5_000))
    assert c.halted() == {"SPY": {"state": "halted", "since_ms": T0 + 5_000, "code": "T1", "reason": "news"}}
    c.push_line('{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":%d,"status":"trading","code":"",'
                '"reason":""}' % (T0 + 9 * MIN))
    assert c.halted() == {}
    assert c.halts("SPY") == [{"start_ms": T0 + 5_000, "end_ms": T0 + 9 * MIN, "code": "T1", "reason": "news"}]


def test_a_halted_symbol_the_minute_barrier_no_longer_lists_is_not_halted_now():
    """Issue 24 item 5: SPY halted, then unsubscribed (the barrier's next minute lists it nowhere):
    ``halted()`` leaves it out, ``halts()`` keeps its history."""
    c = barbridge.Consumer()
    c.push_line('{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":%d,"status":"halted","code":"T1",'
                '"reason":"news"}' % (T0 + 5_000))
    c.push_line('{"type":"minute_closed","v":1,"minute_ms":%d,"bars":["SH"],"halted":["SPY"]}' % T0)
    assert list(c.halted()) == ["SPY"]
    c.push_line('{"type":"minute_closed","v":1,"minute_ms":%d,"bars":["SH"]}' % (T0 + MIN))
    assert c.halted() == {}
    assert c.halts("SPY") == [{"start_ms": T0 + 5_000, "end_ms": None, "code": "T1", "reason": "news"}]


def test_consumer_symbol_bound_is_settable_and_validated():
    c = barbridge.Consumer(max_symbols=2)
    for sym in ("A", "B"):
        assert c.push({"symbol": sym, "timestamp_ms": T0, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}) \
            == "appended"
    assert c.push({"symbol": "C", "timestamp_ms": T0, "open": 1, "high": 1, "low": 1, "close": 1,
                   "volume": 1}) == "symbol_bound"
    assert c.stats()["symbol_bound_refused"] == 1 and sorted(c.symbols()) == ["A", "B"]
    with pytest.raises(ValueError, match="max_symbols|symbol"):
        barbridge.Consumer(max_symbols=0)


def test_a_bar_from_the_future_is_refused_and_counted() -> None:
    """Issue 23: a pushed bar more than max_clock_skew ahead of the consumer's clock is refused."""
    now = int(time.time() * 1000) // 60_000 * 60_000
    c = barbridge.Consumer(max_clock_skew=300)
    bar = {"symbol": "SPY", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}
    for ts in (3_944_905_200_000, now + 360_000):
        with pytest.raises(barbridge.WireError, match="ahead of this consumer's clock"):
            c.push({**bar, "timestamp_ms": ts})
    c.push({**bar, "timestamp_ms": now - 60_000})
    assert c.stats()["rejects"] == {"future_bar": 2}
    with pytest.raises(ValueError, match="max_clock_skew"):
        barbridge.Consumer(max_clock_skew=86_401)
