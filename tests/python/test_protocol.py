"""Wire protocol, config and health units; the shared wire vectors (tests/wire_vectors.json)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgpack
import pytest

from bridge import config, protocol
from bridge.health import MarketClock, ReconnectTracker, Staleness

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "wire_vectors.json").read_text())
BAR_FIELDS = ("symbol", "timestamp_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def _raw(v: dict) -> bytes:
    return bytes.fromhex(v["line_hex"]) if "line_hex" in v else v["line"].encode()


def _id(v):
    return v["name"]


@pytest.mark.parametrize("vec", [v for v in VECTORS["vectors"] if v["expect"] == "bar"], ids=_id)
def test_python_encoder_matches_vector(vec):
    """Encoding the normalised bar gives a line that decodes (json) to the same values."""
    want = vec["bar"]
    line = protocol.encode_bar(want, seq=want["seq"], writer="w1")
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= VECTORS["max_line_bytes"]
    got = json.loads(line)
    for f in BAR_FIELDS:
        assert got.get(f) == want[f], f  # an absent vwap / trade_count stays absent (None), never 0
        assert type(got.get(f)) in (int, float) or f == "symbol" or want[f] is None
    assert got.get("type", "bar") == want["kind"]
    assert got.get("seq") == want["seq"]
    assert got.get("source") == want["source"]
    # and the Python validator reads it back to the same normalised bar
    back = protocol.decode_line(line.rstrip(b"\n")).bar
    assert {k: back[k] for k in want} == want


@pytest.mark.parametrize("vec", VECTORS["vectors"], ids=_id)
def test_python_validator_agrees_with_vector(vec):
    raw = _raw(vec)
    if vec["expect"] == "reject":
        with pytest.raises(protocol.WireError) as e:
            protocol.decode_line(raw)
        assert e.value.reason == vec["reason"]
        return
    d = protocol.decode_line(raw)
    assert d.expect == vec["expect"]
    if vec["expect"] == "bar":
        assert d.bar == vec["bar"]


def test_stream_and_rest_timestamps_agree():
    ts = 1759930080000
    stream = {"T": "b", "S": "SPY", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "n": 3, "vw": 1.2,
              "t": msgpack.Timestamp.from_unix_nano(ts * 1_000_000)}
    # what alpaca-py hands a raw_data handler: the msgpack round trip of the server's frame
    stream = msgpack.unpackb(msgpack.packb([stream]))[0]
    rest = {"t": "2025-10-08T13:28:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "n": 3, "vw": 1.2}
    a = protocol.normalise_alpaca_bar(stream, source="stream")
    b = protocol.normalise_alpaca_bar(rest, source="backfill", symbol="SPY")
    assert a["timestamp_ms"] == b["timestamp_ms"] == ts
    assert protocol.bar_values(a) == protocol.bar_values(b)
    assert protocol.normalise_alpaca_bar({**stream, "T": "u"}, source="stream")["kind"] == "updated_bar"
    assert protocol._ts_to_ms("2025-10-08T13:28:00.123456789Z") == ts + 123
    # A bar without vw / n keeps them absent, never 0.
    bare = protocol.normalise_alpaca_bar({k: v for k, v in rest.items() if k not in ("vw", "n")}, source="backfill",
                                         symbol="SPY")
    assert (bare["vwap"], bare["trade_count"]) == (None, None)
    assert b'"vwap"' not in protocol.encode_bar(bare) and b'"trade_count"' not in protocol.encode_bar(bare)


def test_encoder_refuses_bad_bars_and_oversize():
    good = dict(VECTORS["vectors"][0]["bar"])
    with pytest.raises(protocol.WireError):
        protocol.encode_bar({**good, "high": 1.0})
    with pytest.raises(protocol.WireError):
        protocol.encode_bar({**good, "close": float("nan")})
    with pytest.raises(protocol.LineTooLong):
        protocol.encode_status(1, "stale", "x" * 900, writer="w" * 4000)
    hb = json.loads(protocol.encode_heartbeat(5, seq=3, writer="w"))
    assert hb == {"type": "heartbeat", "ts_ms": 5, "seq": 3, "writer": "w"}


def test_config_env_file_symbols_and_masking(tmp_path):
    f = tmp_path / "config.env"
    f.write_text("# comment\nexport ALPACA_PAPER_API_KEY=PKabcd1234\nALPACA_PAPER_SECRET_KEY='se cret9876'\n")
    env: dict = {}
    config.load_config_env(str(f), env, required=True)
    creds = config.credentials_from_env(env)
    assert creds.api_key == "PKabcd1234" and creds.secret_key == "se cret9876"
    assert "PKabcd1234" not in repr(creds) and "9876" in repr(creds)
    assert config.mask("PKabcd1234") == "****1234"
    assert config.scrub("key PKabcd1234!", ["PKabcd1234"]) == "key ****1234!"
    assert config.parse_symbols(None) == ["SPY", "SPXL", "SH", "SDS"]
    assert config.parse_symbols("spy, sh,SPY") == ["SPY", "SH"]
    for empty in ("", " , ", ","):
        with pytest.raises(config.ConfigError, match="empty"):
            config.parse_symbols(empty)
    with pytest.raises(config.ConfigError):
        config.load_config_env(str(tmp_path / "nope.env"), {}, required=True)


UTC = dt.timezone.utc


@pytest.mark.parametrize("when,open_", [
    (dt.datetime(2025, 3, 7, 14, 30, tzinfo=UTC), True),    # 09:30 EST
    (dt.datetime(2025, 3, 7, 14, 29, tzinfo=UTC), False),
    (dt.datetime(2025, 3, 10, 13, 30, tzinfo=UTC), True),   # 09:30 EDT (DST started Mar 9)
    (dt.datetime(2025, 3, 10, 20, 0, tzinfo=UTC), False),   # 16:00 EDT
    (dt.datetime(2025, 12, 25, 15, 0, tzinfo=UTC), False),  # Christmas
    (dt.datetime(2025, 11, 28, 18, 30, tzinfo=UTC), False),  # day after Thanksgiving: early close 13:00
    (dt.datetime(2025, 10, 11, 15, 0, tzinfo=UTC), False),  # Saturday
])
def test_market_hours_new_york(when, open_):
    assert MarketClock("regular").in_session(when) is open_
    assert MarketClock("always").in_session(when) is True


def test_last_session_open_and_flap_detection():
    sat = dt.datetime(2025, 10, 11, 15, 0, tzinfo=UTC)
    assert MarketClock().last_session_open(sat) == dt.datetime(2025, 10, 10, 13, 30, tzinfo=UTC)
    t = [0.0]
    tr = ReconnectTracker(clock=lambda: t[0])
    tr.on_connected()  # first connect is not a reconnect
    for i in range(3):
        t[0] += 10
        tr.on_connected()
        assert tr.check_flap() is None
    t[0] += 10
    tr.on_connected()
    assert tr.check_flap() == 4 and tr.check_flap() is None  # reported once per episode
    t[0] += 700
    assert tr.check_flap() is None and not tr.flapping


def test_staleness_counts_only_in_session():
    now = [0.0]
    closed = MarketClock("regular")
    closed.in_session = lambda when=None: False
    s = Staleness(5, closed, mono=lambda: now[0])
    now[0] = 100
    assert not s.check(active=True)
    s = Staleness(5, MarketClock("always"), mono=lambda: now[0])
    now[0] += 4
    assert not s.check(active=True)
    now[0] += 2
    assert s.check(active=True) and s.stale
    now[0] += 100
    assert not s.check(active=False)  # not subscribed: not stale


def test_direct_bar_formatting_equals_json_dumps():
    """encode_bar formats text directly for speed; it must be exactly what json.dumps writes."""
    import random

    rng = random.Random(7)
    for i in range(2000):
        low = rng.choice([0.0, 1e-7, 0.01, 1.0, 671.1, 123456.789, 1e15, 3.0e16, rng.random() * 1000])
        high = low + rng.choice([0.0, 0.5, 1e-9, rng.random()])
        bar = {"symbol": rng.choice(["SPY", "BTC/USD", 'A"B', "X\\Y"]), "timestamp_ms": 1759930080000 + i * 60_000,
               "open": low, "high": high, "low": low, "close": high,
               "volume": rng.choice([0, 5, 18234.0, 0.25, 2**53 + 2.0]), "vwap": rng.choice([None, 0, low]),
               "trade_count": rng.choice([None, 0, 212]), "kind": rng.choice(["bar", "updated_bar"]),
               "source": rng.choice([None, "stream", "backfill"])}
        expected: dict = {}
        if bar["kind"] != "bar":
            expected["type"] = bar["kind"]
        expected["symbol"] = bar["symbol"]
        expected["timestamp_ms"] = bar["timestamp_ms"]
        for f in ("open", "high", "low", "close", "volume"):
            expected[f] = protocol._num(bar[f])
        if bar["vwap"] is not None:
            expected["vwap"] = protocol._num(bar["vwap"])
        if bar["trade_count"] is not None:
            expected["trade_count"] = bar["trade_count"]
        if bar["source"]:
            expected["source"] = bar["source"]
        expected["seq"] = i
        expected["writer"] = "w-1"
        want = json.dumps(expected, separators=(",", ":")).encode() + b"\n"
        assert protocol.encode_bar(bar, seq=i, writer="w-1") == want
