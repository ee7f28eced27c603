"""Wire protocol (README, "Wire protocol"): encode sidecar lines, decode/validate lines.

One JSON object per line, UTF-8, ``\\n``-terminated, at most :data:`MAX_LINE_BYTES` bytes
including the newline, so that one ``os.write`` of a line into a FIFO is atomic (PIPE_BUF).

The validator mirrors the Rust reader (``src/wire.rs``) and is checked against the shared
vectors in ``tests/wire_vectors.json``; it is used for replay input, never on the hot path.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

MAX_LINE_BYTES = 4096
MAX_SYMBOL_BYTES = 32
MIN_TIMESTAMP_MS = 631_152_000_000  # 1990-01-01: a time in seconds lands far below
MAX_TIMESTAMP_MS = 4_102_444_800_000  # 2100-01-01 (excluded): microseconds land far above
MINUTE_MS = 60_000  # every bar is a minute bar: timestamp_ms is a multiple of this

BAR_KINDS = ("bar", "updated_bar")
SOURCES = ("stream", "backfill", "replay", "synthetic")
STATES = ("connected", "subscribed", "disconnected", "reconnecting", "auth_failed", "stale")

# Bar fields in wire order (the original sidecar's format keeps working unchanged).
BAR_FIELDS = ("symbol", "timestamp_ms", "open", "high", "low", "close", "volume", "vwap", "trade_count")


class WireError(ValueError):
    """A line the consumer would reject; ``reason`` is the shared reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LineTooLong(ValueError):
    pass


def _num(v: float) -> Any:
    """Integral floats are written as integers (like the Rust encoder)."""
    if isinstance(v, bool):
        raise TypeError("bool is not a number")
    if isinstance(v, int):
        return v
    f = float(v)
    if not math.isfinite(f):
        raise WireError("non_finite", f"value {v!r} is not finite")
    if f.is_integer() and abs(f) < 2**53:
        return int(f)
    return f


def _dumps(obj: Mapping[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    if len(data) + 1 > MAX_LINE_BYTES:
        raise LineTooLong(f"line of {len(data) + 1} bytes exceeds {MAX_LINE_BYTES}")
    return data + b"\n"


def encode_bar(bar: Mapping[str, Any], *, seq: Optional[int] = None, writer: Optional[str] = None,
               validated: bool = False) -> bytes:
    """Encode a normalised bar dict (see :func:`normalise_bar`) as one wire line (with ``\\n``).

    Prices/volume keep their float value; ``kind``/``source`` become ``type``/``source``.
    ``validated=True`` skips the rules check for a bar that already passed it."""
    if not validated:
        validate_bar_values(bar["symbol"], bar)
    # Formatted directly (the hot path of the sidecar): the same text json.dumps would give,
    # since json writes floats with float.__repr__; test_protocol checks the equivalence.
    kind = bar.get("kind") or "bar"
    parts = ['{"type":' + _jstr(kind) + "," if kind != "bar" else "{",
             '"symbol":', _jstr(bar["symbol"]), ',"timestamp_ms":', str(int(bar["timestamp_ms"]))]
    for f in ("open", "high", "low", "close", "volume"):
        parts += (',"', f, '":', _numtext(bar[f]))
    if bar.get("vwap") is not None:  # absent stays absent, never 0
        parts += (',"vwap":', _numtext(bar["vwap"]))
    if bar.get("trade_count") is not None:
        parts += (',"trade_count":', str(int(bar["trade_count"])))
    if bar.get("source"):
        parts += (',"source":', _jstr(bar["source"]))
    if seq is not None:
        parts += (',"seq":', str(int(seq)))
    if writer:
        parts += (',"writer":', _jstr(writer))
    parts.append("}\n")
    data = "".join(parts).encode()
    if len(data) > MAX_LINE_BYTES:
        raise LineTooLong(f"line of {len(data)} bytes exceeds {MAX_LINE_BYTES}")
    return data


def _jstr(s: str) -> str:
    """A JSON string literal (json.dumps only when escaping is needed)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    return json.dumps(s)


def _numtext(v: Any) -> str:
    n = _num(v)
    return str(n) if isinstance(n, int) else repr(n)


def encode_heartbeat(ts_ms: int, *, seq: Optional[int] = None, writer: Optional[str] = None, **extra: Any) -> bytes:
    return _encode_control({"type": "heartbeat", "ts_ms": int(ts_ms)}, seq, writer, extra)


def encode_status(ts_ms: int, state: str, detail: str = "", *, seq: Optional[int] = None,
                  writer: Optional[str] = None, **extra: Any) -> bytes:
    if state not in STATES:
        raise ValueError(f"unknown status state {state!r}")
    return _encode_control({"type": "status", "ts_ms": int(ts_ms), "state": state, "detail": detail[:1000]},
                           seq, writer, extra)


def _encode_control(out: dict[str, Any], seq: Optional[int], writer: Optional[str], extra: dict) -> bytes:
    if seq is not None:
        out["seq"] = int(seq)
    if writer:
        out["writer"] = writer
    out.update(extra)
    return _dumps(out)


# --------------------------------------------------------------------------- normalisation

def _ts_to_ms(t: Any) -> int:
    """Alpaca timestamps -> epoch ms (UTC, from the data; never local time).

    Stream (msgpack, raw_data=True): ``msgpack.Timestamp``; REST (raw): RFC 3339 string;
    also accepts datetime (must be aware) and ints (ms)."""
    if hasattr(t, "to_unix_nano"):  # msgpack.Timestamp
        return t.to_unix_nano() // 1_000_000
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise ValueError("naive datetime: refusing to guess its time zone")
        return int(t.timestamp() * 1000)
    if isinstance(t, str):
        s = t.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        # fromisoformat (3.11) handles nanosecond-free forms; trim sub-microsecond digits.
        if "." in s:
            head, rest = s.split(".", 1)
            frac = "".join(ch for ch in rest if ch.isdigit())
            tz = rest[len(frac):]
            s = f"{head}.{frac[:6]}{tz}"
        d = _dt.datetime.fromisoformat(s)
        if d.tzinfo is None:
            d = d.replace(tzinfo=_dt.timezone.utc)
        return round(d.timestamp() * 1000)
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return int(t)
    raise TypeError(f"unsupported timestamp {t!r}")


def normalise_alpaca_bar(msg: Mapping[str, Any], *, source: str, kind: Optional[str] = None,
                         symbol: Optional[str] = None) -> dict[str, Any]:
    """Alpaca short-key bar (stream raw dict ``T,S,o,h,l,c,v,t,n,vw`` or REST raw dict) ->
    normalised bar dict (the wire bar plus ``kind`` and ``source``)."""
    if kind is None:
        kind = "updated_bar" if msg.get("T") == "u" else "bar"
    return {
        "symbol": symbol or msg["S"],
        "timestamp_ms": _ts_to_ms(msg["t"]),
        "open": float(msg["o"]),
        "high": float(msg["h"]),
        "low": float(msg["l"]),
        "close": float(msg["c"]),
        "volume": float(msg["v"]),
        "vwap": None if msg.get("vw") is None else float(msg["vw"]),
        "trade_count": None if msg.get("n") is None else int(msg["n"]),
        "kind": kind,
        "source": source,
    }


def bar_values(bar: Mapping[str, Any]) -> tuple:
    """The values the consumer compares for dedupe/corrections (None: an absent optional field)."""
    vwap, count = bar.get("vwap"), bar.get("trade_count")
    return tuple(float(bar[f]) for f in ("open", "high", "low", "close", "volume")) + (
        None if vwap is None else float(vwap), None if count is None else int(count))


# --------------------------------------------------------------------------- validation

def validate_bar_values(symbol: Any, bar: Mapping[str, Any]) -> None:
    """The protocol's bar rules (same order as the Rust ``wire::validate``)."""
    # 0x21..0x7E: printable ASCII without space, and no lower-case letter.
    if (not isinstance(symbol, str) or not symbol or len(symbol) > MAX_SYMBOL_BYTES
            or not (symbol.isascii() and symbol.isprintable()) or " " in symbol
            or any("a" <= ch <= "z" for ch in symbol)):
        raise WireError("invalid_symbol", f"symbol {symbol!r} is not 1-{MAX_SYMBOL_BYTES} printable ASCII characters "
                                          "without spaces or lower-case letters")
    ts = bar["timestamp_ms"]
    if not MIN_TIMESTAMP_MS <= ts < MAX_TIMESTAMP_MS:
        raise WireError("invalid_timestamp", f"timestamp_ms {ts} is not epoch milliseconds between 1990 and 2100")
    if ts % MINUTE_MS:
        raise WireError("off_minute", f"timestamp_ms {ts} is not the start of a minute")
    for f in ("open", "high", "low", "close", "volume", "vwap"):
        v = bar.get(f) if f == "vwap" else bar[f]
        if v is None:  # an absent vwap
            continue
        if not math.isfinite(float(v)):
            raise WireError("non_finite", f"{f} is not finite")
    o, h, lo, c = (float(bar[f]) for f in ("open", "high", "low", "close"))
    if h < lo:
        raise WireError("high_below_low", f"high {h} < low {lo}")
    if not lo <= o <= h:
        raise WireError("open_outside_range", f"open {o} outside [{lo}, {h}]")
    if not lo <= c <= h:
        raise WireError("close_outside_range", f"close {c} outside [{lo}, {h}]")
    if float(bar["volume"]) < 0:
        raise WireError("negative_volume", f"volume {bar['volume']} < 0")


_INT_FIELDS = ("timestamp_ms", "ts_ms")  # i64
_UINT_FIELDS = ("trade_count", "seq")  # u64
_FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "vwap")
_STR_FIELDS = ("type", "symbol", "source", "writer", "state", "detail")


def _reject_constant(name: str) -> Any:
    raise WireError("non_finite", f"{name} is not valid JSON")


@dataclass
class Decoded:
    expect: str  # bar | heartbeat | status | ignored
    bar: Optional[dict[str, Any]] = None
    obj: Optional[dict[str, Any]] = None


def decode_line(raw: bytes) -> Decoded:
    """Decode and validate one line (without its ``\\n``; a trailing ``\\r`` is tolerated).

    Raises :class:`WireError` with the shared reject reason code."""
    if len(raw) >= MAX_LINE_BYTES:
        raise WireError("oversize", f"line of {len(raw) + 1} bytes exceeds {MAX_LINE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("invalid_utf8", str(e)) from None
    if not text.strip():
        return Decoded("ignored")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except WireError:
        raise
    except ValueError as e:
        raise WireError("malformed_json", str(e)) from None
    if not isinstance(obj, dict):
        raise WireError("malformed_json", "expected an object")
    for k in _FLOAT_FIELDS:
        v = obj.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise WireError("wrong_type", f"{k} is not a number")
        if not math.isfinite(float(v)):
            raise WireError("non_finite", f"{k} is not finite")
    for k in _INT_FIELDS + _UINT_FIELDS:
        v = obj.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise WireError("wrong_type", f"{k} is not an integer")
        if k in _UINT_FIELDS and v < 0:
            raise WireError("wrong_type", f"{k} is negative")
        if not -(2**63) <= v < 2**64:
            raise WireError("wrong_type", f"{k} out of range")
    for k in _STR_FIELDS:
        v = obj.get(k)
        if v is not None and not isinstance(v, str):
            raise WireError("wrong_type", f"{k} is not a string")
    kind = obj.get("type")
    if kind == "heartbeat":
        return Decoded("heartbeat", obj=obj)
    if kind == "status":
        if obj.get("state") is None:
            raise WireError("missing_field", "state")
        return Decoded("status", obj=obj)
    if kind not in (None, "bar", "updated_bar"):
        return Decoded("ignored", obj=obj)
    for f in ("symbol", "timestamp_ms", "open", "high", "low", "close", "volume"):
        if obj.get(f) is None:
            raise WireError("missing_field", f)
    bar = {
        "symbol": obj["symbol"],
        "timestamp_ms": obj["timestamp_ms"],
        **{f: float(obj[f]) for f in ("open", "high", "low", "close", "volume")},
        "vwap": None if obj.get("vwap") is None else float(obj["vwap"]),
        "trade_count": obj.get("trade_count"),
        "kind": kind or "bar",
        "seq": obj.get("seq"),
        "source": obj.get("source") if obj.get("source") in SOURCES else None,
    }
    validate_bar_values(bar["symbol"], bar)
    return Decoded("bar", bar=bar, obj=obj)
