"""Replay source: bars from a CSV or JSONL file, optionally paced by their timestamps."""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from .. import protocol

if TYPE_CHECKING:
    from barbridge import BarDict

log = logging.getLogger("bridge.replay")

_ALIASES = {
    "timestamp_ms": ("timestamp_ms", "timestamp", "time", "t", "ts"),
    "symbol": ("symbol", "S", "sym", "ticker"),
    "open": ("open", "o"), "high": ("high", "h"), "low": ("low", "l"), "close": ("close", "c"),
    "volume": ("volume", "v"), "vwap": ("vwap", "vw"), "trade_count": ("trade_count", "n", "trades"),
}


class ReplayError(Exception):
    pass


def _pick(row: dict, field: str):
    for k in _ALIASES[field]:
        if k in row and row[k] not in (None, ""):
            return row[k]
    return None


def _optional(v: Optional[str], convert: Callable[[str], Any]) -> Any:
    """An optional column (vwap, trade_count): an empty or missing cell stays None, never 0."""
    return None if v is None else convert(v)


def _ts(v) -> int:
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip()
    if s.lstrip("-").isdigit():
        n = int(s)
        return n * 1000 if n < 10**11 else n  # seconds or ms
    return protocol._ts_to_ms(s)


def _csv_bar(row: dict, default_symbol: Optional[str]) -> BarDict:
    """A CSV row as a bar dict (the extension validates it); ValueError for a row without one."""
    sym = _pick(row, "symbol") or default_symbol
    if not sym:
        raise ValueError("no symbol column and no --symbols default")

    def num(field: str) -> float:
        return float(_pick(row, field))

    return {"symbol": str(sym).strip().upper(), "timestamp_ms": _ts(_pick(row, "timestamp_ms")),
            "open": num("open"), "high": num("high"), "low": num("low"), "close": num("close"), "volume": num("volume"),
            "vwap": _optional(_pick(row, "vwap"), float),
            "trade_count": _optional(_pick(row, "trade_count"), lambda v: int(float(v))),
            "kind": "bar", "source": "replay"}


def read_bars(path: Path, default_symbol: Optional[str] = None) -> Iterator[BarDict]:
    """Yield normalised bars; invalid rows are logged with their line number and skipped."""
    text = path.read_text(encoding="utf-8")
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{")
    if jsonl:
        for n, line in enumerate(text.splitlines(), 1):
            try:
                decoded = protocol.decode_line(line.encode())
            except protocol.WireError as e:
                log.warning("%s:%d rejected (%s): %s", path, n, e.reason, e)
                continue
            if decoded is None:
                continue
            decoded["source"] = "replay"
            yield decoded
        return
    for n, row in enumerate(csv.DictReader(io.StringIO(text)), 2):
        try:
            bar = _csv_bar(row, default_symbol)
            protocol.encode_bar(bar)  # the protocol's rules (WireError)
        except (TypeError, ValueError, protocol.WireError) as e:
            log.warning("%s:%d rejected: %s", path, n, e)
            continue
        yield bar


class ReplaySource:
    """``speed`` 0 = as fast as the sink takes them; otherwise data time runs ``speed``× wall time."""

    def __init__(self, publisher, path: str, *, speed: float = 0.0, symbols: Optional[list[str]] = None) -> None:
        self.pub = publisher
        self.path = Path(path)
        if not self.path.is_file():
            raise ReplayError(f"replay file {path} does not exist.")
        self.speed = speed
        self.symbols = set(symbols) if symbols else None
        self._stop = threading.Event()
        self.done = threading.Event()

    def run(self) -> int:
        self.pub.status("connected", f"replay of {self.path.name}")
        self.pub.status("subscribed", "replay")
        start: Optional[tuple[int, float]] = None  # (first bar's timestamp_ms, its wall time) when paced
        n = 0
        for bar in read_bars(self.path, next(iter(self.symbols)) if self.symbols and len(self.symbols) == 1 else None):
            if self._stop.is_set():
                break
            if self.symbols and bar["symbol"] not in self.symbols:
                continue
            if self.speed > 0:
                if start is None:
                    start = (bar["timestamp_ms"], time.monotonic())
                due = start[1] + (bar["timestamp_ms"] - start[0]) / 1000 / self.speed
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
            self.pub.publish(bar)
            n += 1
        log.info("replay finished: %d bar(s) from %s", n, self.path)
        self.done.set()
        return 0

    def stop(self) -> None:
        self._stop.set()
