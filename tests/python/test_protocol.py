"""The wire protocol, Alpaca normalisation and the session clock - all the extension's (Rust) -
from Python; config units. The shared wire vectors (tests/wire_vectors.json) run here against the
same implementation the Rust tests use."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import barbridge
import msgpack
import pytest
from alpaca.data.models.bars import Bar as SdkBar

from bridge import config, protocol
from bridge.sources.alpaca import ReconnectTracker

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "wire_vectors.json").read_text())
BAR_FIELDS = ("symbol", "timestamp_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count")


def _raw(v: dict) -> bytes:
    return bytes.fromhex(v["line_hex"]) if "line_hex" in v else v["line"].encode()


def _id(v):
    return v["name"]


@pytest.mark.parametrize("vec", VECTORS["vectors"], ids=_id)
def test_decoder_agrees_with_vector(vec):
    raw = _raw(vec)
    if vec["expect"] == "reject":
        with pytest.raises(protocol.WireError) as e:
            protocol.decode_line(raw)
        assert e.value.reason == vec["reason"]
        return
    got = protocol.decode_line(raw)
    if vec["expect"] != "bar":
        assert got is None
        return
    assert got == {k: v for k, v in vec["bar"].items() if k != "seq"}


@pytest.mark.parametrize("vec", [v for v in VECTORS["vectors"] if v["expect"] == "bar"], ids=_id)
def test_encoder_round_trips_vector(vec):
    want = {k: v for k, v in vec["bar"].items() if k != "seq"}
    line = protocol.encode_bar(want)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= VECTORS["max_line_bytes"]
    got = json.loads(line)
    for f in BAR_FIELDS:
        assert got.get(f) == want[f], f  # an absent vwap / trade_count stays absent, never 0
    assert protocol.decode_line(line.rstrip(b"\n")) == want


def test_encoder_refuses_bad_bars():
    good = {k: v for k, v in VECTORS["vectors"][0]["bar"].items() if k != "seq"}
    for bad, reason in (({"high": 1.0}, "high_below_low"), ({"close": float("nan")}, "non_finite"),
                        ({"symbol": "spy"}, "invalid_symbol"), ({"timestamp_ms": 1759930080001}, "off_minute")):
        with pytest.raises(protocol.WireError) as e:
            protocol.encode_bar({**good, **bad})
        assert e.value.reason == reason


# ---------------------------------------------------------------- Alpaca normaliser vs the SDK's own model
T0 = 1759930080000
FULL = {"T": "b", "S": "SPY", "o": 671.2, "h": 671.5, "l": 671.1, "c": 671.4, "v": 18234, "n": 212, "vw": 671.33}
SHAPES = {
    "full": FULL,
    "no vw": {k: v for k, v in FULL.items() if k != "vw"},
    "no n": {k: v for k, v in FULL.items() if k != "n"},
    "neither vw nor n": {k: v for k, v in FULL.items() if k not in ("vw", "n")},
    "vw and n null": {**FULL, "vw": None, "n": None},
    "integer prices": {**FULL, "o": 671, "h": 672, "l": 670, "c": 671, "vw": 671},
    "float volume and count": {**FULL, "v": 18234.5, "n": 212.0},
    "zero volume, zero count": {**FULL, "v": 0, "n": 0, "vw": 0},
    "updated bar": {**FULL, "T": "u", "c": 671.45},
    "dotted symbol": {**FULL, "S": "BRK.B"},
}


def _stream(msg: dict, ts_ms: int) -> dict:
    """What alpaca-py hands a raw_data handler: the msgpack round trip of the server's frame."""
    frame = msgpack.packb([{**msg, "t": msgpack.Timestamp.from_unix_nano(ts_ms * 1_000_000)}])
    return msgpack.unpackb(frame)[0]


def _sdk(msg: dict) -> SdkBar:
    """The SDK's own reading of a bar (what it builds with raw_data=False; its model wants the
    optional keys present, so an absent one is given as None)."""
    m = {"n": None, "vw": None, **msg}
    if isinstance(m["t"], msgpack.Timestamp):
        m["t"] = m["t"].to_datetime()
    return SdkBar(m.get("S", "SPY"), m)


def _same_as_sdk(ours: dict, sdk: SdkBar) -> None:
    assert ours["symbol"] == sdk.symbol
    assert ours["timestamp_ms"] == int(sdk.timestamp.timestamp() * 1000)
    for f in ("open", "high", "low", "close", "volume", "vwap"):
        assert ours[f] == getattr(sdk, f), f
    assert ours["trade_count"] == (None if sdk.trade_count is None else int(sdk.trade_count))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_stream_message_normalised_like_the_sdk_reads_it(shape):
    msg = _stream(SHAPES[shape], T0)
    ours = barbridge.normalise_alpaca(msg, source="stream")
    _same_as_sdk(ours, _sdk(msg))
    assert ours["kind"] == ("updated_bar" if msg["T"] == "u" else "bar") and ours["source"] == "stream"
    for f in ("vwap", "trade_count"):  # absent stays absent, never a made-up 0
        key = {"vwap": "vw", "trade_count": "n"}[f]
        assert (ours[f] is None) == (msg.get(key) is None)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rest_bar_normalised_like_the_sdk_reads_it(shape):
    rest = {k: v for k, v in SHAPES[shape].items() if k not in ("T", "S")}
    for text in ("2025-10-08T13:28:00Z", "2025-10-08T13:28:00.000000000Z", "2025-10-08T09:28:00-04:00"):
        msg = json.loads(json.dumps({**rest, "t": text}))  # what requests' .json() gives
        ours = barbridge.normalise_alpaca(msg, source="backfill", symbol="SPY")
        assert ours["kind"] == "bar" and ours["timestamp_ms"] == T0
        _same_as_sdk(ours, _sdk({**msg, "S": "SPY"}))


@pytest.mark.parametrize("bad,reason", [
    ({"o": "1.0"}, "wrong_type"), ({"S": None}, "missing_field"), ({"h": 600.0}, "high_below_low"),
    ({"S": "spy"}, "invalid_symbol"), ({"v": -1}, "negative_volume"), ({"n": -3}, "wrong_type"),
])
def test_malformed_messages_are_refused_with_a_reason(bad, reason):
    with pytest.raises(barbridge.WireError) as e:
        barbridge.normalise_alpaca(_stream({**FULL, **bad}, T0))
    assert e.value.reason == reason


def test_a_malformed_message_is_counted_never_raised_on_the_event_loop():
    c = barbridge.Consumer()
    pub = barbridge.Publisher(c)
    assert not pub.submit_alpaca(_stream({**FULL, "o": "x"}, T0))
    assert not pub.submit_alpaca("not a dict")
    assert pub.submit_alpaca(_stream(FULL, T0)) and not pub.submit_alpaca(_stream(FULL, T0))  # duplicate
    st = c.stats()
    assert (st["bars_accepted"], st["rejects_total"]) == (1, 2)
    assert pub.counts()["duplicates_suppressed"] == 1 and pub.last_seen("SPY") == T0


def test_timestamps_of_every_form():
    assert protocol._ts_to_ms("2025-10-08T13:28:00.123456789Z") == T0 + 123
    assert protocol._ts_to_ms(msgpack.Timestamp.from_unix_nano(T0 * 1_000_000 + 5)) == T0
    assert protocol._ts_to_ms(dt.datetime(2025, 10, 8, 13, 28, tzinfo=dt.timezone.utc)) == T0
    with pytest.raises(ValueError, match="naive"):
        protocol._ts_to_ms(dt.datetime(2025, 10, 8, 13, 28))


# ---------------------------------------------------------------- session clock (src/calendar.rs)
UTC = dt.timezone.utc


def _ms(d: dt.datetime) -> int:
    return int(d.timestamp() * 1000)


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
    assert barbridge.in_session(_ms(when)) is open_


def test_last_session_open_and_flap_detection():
    sat = dt.datetime(2025, 10, 11, 15, 0, tzinfo=UTC)
    assert barbridge.last_session_open(_ms(sat)) == _ms(dt.datetime(2025, 10, 10, 13, 30, tzinfo=UTC))
    t = [0.0]
    tr = ReconnectTracker(clock=lambda: t[0])
    tr.on_connected()  # first connect is not a reconnect
    for _ in range(3):
        t[0] += 10
        tr.on_connected()
        assert tr.check_flap() is None
    t[0] += 10
    tr.on_connected()
    assert tr.check_flap() == 4 and tr.check_flap() is None  # reported once per episode
    t[0] += 700
    assert tr.check_flap() is None and not tr.flapping


def test_staleness_verdict_from_python():
    """The rule itself is unit-tested in Rust (src/publish.rs); here: the binding's arguments."""
    pub = barbridge.Publisher(barbridge.Consumer())
    assert not pub.check_stale(False, 5.0, always=True)  # not subscribed
    assert not pub.check_stale(True, 0, always=True)  # switched off
    assert not pub.check_stale(True, 3600.0, always=True)  # silent for less than an hour
    with pytest.raises(ValueError, match="stale_after"):
        pub.check_stale(True, -1.0)


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
    assert config.parse_symbols("SPY, SH,SPY") == ["SPY", "SH"]
    with pytest.raises(config.ConfigError, match="'spy' has lower-case letters.*Fix: write SPY"):
        config.parse_symbols("spy")  # the wire rule: refused, never upper-cased
    for empty in ("", " , ", ","):
        with pytest.raises(config.ConfigError, match="empty"):
            config.parse_symbols(empty)
    with pytest.raises(config.ConfigError):
        config.load_config_env(str(tmp_path / "nope.env"), {}, required=True)


def _store(c) -> dict:
    return {(s, b.timestamp_ms): (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
            for s in c.symbols() for b in c.last_n(s, 100)}


def test_whole_frames_give_the_same_bars_as_message_by_message():
    """A bar-only frame read in Rust (every message shape the SDK can hand over, a bad one among
    them) ends in the same store as the SDK's unpacking message by message."""
    msgs = [{**shape, "S": f"S{i}", "t": msgpack.Timestamp.from_unix_nano((T0 + 60_000 * i) * 1_000_000)}
            for i, shape in enumerate(SHAPES.values())]
    msgs.append({**FULL, "S": "BAD", "h": 1.0, "t": msgpack.Timestamp.from_unix_nano(T0 * 1_000_000)})
    msgs.append({**FULL, "S": "ZLAST", "t": msgpack.Timestamp.from_unix_nano(T0 * 1_000_000)})
    frame = msgpack.packb(msgs)
    by_frame, by_message = barbridge.Consumer(), barbridge.Consumer()
    fast, slow = barbridge.Publisher(by_frame), barbridge.Publisher(by_message)
    rest = fast.submit_frame(frame)
    assert msgpack.unpackb(rest) == [msgpack.unpackb(frame)[-1]]  # the SDK dispatches the last bar itself
    for m in msgpack.unpackb(rest):
        fast.submit_alpaca(m)
    for m in msgpack.unpackb(frame):
        slow.submit_alpaca(m)
    assert _store(by_frame) == _store(by_message) and len(_store(by_frame)) == len(SHAPES) + 1
    assert by_frame.stats()["rejects_total"] == by_message.stats()["rejects_total"] == 1
    assert fast.counts()["published"] == slow.counts()["published"]


@pytest.mark.parametrize("frame", [
    [{"T": "subscription", "bars": ["SPY"]}, FULL],  # a control message among bars: the SDK's
    [FULL, {"T": "q", "S": "SPY", "bp": 1.0}],  # a quote
    [FULL],  # one bar: nothing to gain
    [],
])
def test_other_frames_are_left_to_the_sdk(frame):
    frame = [{**m, "t": msgpack.Timestamp.from_unix_nano(T0 * 1_000_000)} if m.get("T") == "b" else m for m in frame]
    c = barbridge.Consumer()
    assert barbridge.Publisher(c).submit_frame(msgpack.packb(frame)) is None
    assert barbridge.Publisher(c).submit_frame(b"\x92\xc1") is None  # not msgpack
    assert c.stats()["lines"] == 0
