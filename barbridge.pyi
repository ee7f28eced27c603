"""barbridge: market-data bars from the Alpaca sidecar into a per-symbol store (Rust core).

Type stubs of the pyo3 extension (src/python/); maturin installs them with ``py.typed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Generic, Iterable, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, TypedDict, TypeVar, Union, final, overload

__all__ = ["Consumer", "Bar", "BatchResult", "Subscription", "MinuteClosed", "FifoReader", "FifoWriter", "WireError", "__version__",
           "MAX_LINE_BYTES", "REJECT_REASONS", "default_fifo_path", "default_status_path", "Publisher",
           "normalise_alpaca", "encode_bar", "decode_line", "timestamp_ms", "in_session", "last_session_open",
           "session", "calendar_coverage", "NatsFeed", "MetricsServer"]
__version__: str
MAX_LINE_BYTES: int
REJECT_REASONS: Tuple[str, ...]

class _BarFields(TypedDict):
    symbol: str
    timestamp_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: Optional[float]  # None: the source did not say (never turned into 0)
    trade_count: Optional[int]

class BarDict(_BarFields, total=False):
    """A bar as a dict with the wire field names (README, "Wire protocol"): what the extension
    hands out (``Bar.to_dict``, ``decode_line``, ``normalise_alpaca``) and what sources give
    ``Publisher.submit_bar`` / ``FifoWriter.submit_bar``. Type information only: the extension
    validates every bar (src/wire.rs); ``kind`` and ``type`` are both accepted for the kind.
    Exists for type checkers only: ``if TYPE_CHECKING: from barbridge import BarDict``."""

    kind: Literal["bar", "updated_bar"]
    type: Literal["bar", "updated_bar"]
    source: Optional[str]

# Inputs are any mapping: the extension, not the type checker, decides what is a valid bar.
_BarInput = Union[Mapping[str, Any], str, bytes, bytearray, "Bar"]
_PathLike = Union[str, "os.PathLike[str]"]
_Outcome = Literal[
    "appended", "inserted", "corrected", "duplicate", "conflict", "too_old", "symbol_bound", "filtered",
    "heartbeat", "status", "ignored",
]

def default_fifo_path() -> Path: ...
def default_status_path() -> Path: ...

MINUTE_MS: int  # every bar is a minute bar: timestamp_ms is a multiple of this

def asset_class(symbol: str) -> Literal["stock", "crypto"]: ...  # WireError for a symbol breaking the wire rule
def default_writer_id() -> str: ...
def check_fifo(path: _PathLike) -> bool: ...  # False: none yet; ValueError (one sentence) if refused

class SymbolHealth(TypedDict):
    bars: int
    last_bar_ts_ms: int
    last_received_ms: int

class StatusHealth(TypedDict):
    state: Literal["live", "waiting", "stale"]
    now_ms: int
    started_ms: int
    stale_after_ms: int
    last_message_ms: Optional[int]
    stale_since_ms: Optional[int]
    stale_reason: Optional[Literal["nothing_received", "only_conflicts"]]
    conflicts_since_delivered: int
    sidecar: Optional[Dict[str, Any]]
    counters: Dict[str, int]
    symbols: Dict[str, SymbolHealth]

class _StatusFields(TypedDict):
    version: int
    pid: int
    fifo: Optional[str]
    updated_ms: int
    health: StatusHealth
    stored: Dict[str, int]
    subscribers: List[Dict[str, Any]]
    journal: Optional[Dict[str, Any]]
    session_holes: Dict[str, int]
    symbols_omitted: int
    refresh_ms: Optional[int]
    liveness: Literal["LIVE", "WAITING", "STALE", "NOT RUNNING"]  # added by read_status: `barbridge status --check`

class StatusReport(_StatusFields, total=False):
    """The consumer's status file (src/status.rs ``StatusReport``) as ``read_status`` gives it;
    the keys below are present only when not empty."""

    session_halted: Dict[str, int]
    halted: Dict[str, Dict[str, Any]]
    sections: Dict[str, Any]

def read_status(path: _PathLike) -> StatusReport: ...  # OSError / ValueError, one sentence each

class WireError(ValueError):
    """A bar or line that breaks the wire protocol; the message names the field."""

    reason: str
    """Stable reject code: one of :data:`REJECT_REASONS` (``missing_field``, ``wrong_type``, ...)."""

@final
class Bar:
    """One minute bar (read-only). Attributes carry the wire field names."""

    def __new__(
        cls,
        symbol: str,
        timestamp_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        vwap: Optional[float] = None,
        trade_count: Optional[int] = None,
    ) -> Bar: ...
    @property
    def symbol(self) -> str: ...
    @property
    def timestamp_ms(self) -> int:
        """Start of the minute, UTC epoch milliseconds."""
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...
    @property
    def vwap(self) -> Optional[float]:
        """None when the source gave no vwap (never a made-up 0.0)."""
    @property
    def trade_count(self) -> Optional[int]:
        """None when the source gave no trade count (never a made-up 0)."""
    @property
    def correction(self) -> bool:
        """True when this bar replaced a bar of the same minute delivered earlier."""
    @property
    def source(self) -> Optional[str]:
        """The sidecar's source label (``stream``, ``backfill``, ``replay``, ``synthetic``) or None."""
    def to_dict(self) -> BarDict:
        """The bar as a dict with the wire field names."""
    def to_line(self) -> str:
        """The bar as one wire JSON line (no newline)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class BatchResult:
    """What :meth:`Consumer.push_batch` did; the good bars are stored, the bad ones listed."""

    accepted: int
    corrections: int
    duplicates: int
    conflicts: int
    too_old: int
    refused: int
    filtered: int
    control: int
    rejected: int
    errors: List[Tuple[int, str, str]]
    """``(index, reason_code, message)`` per rejected item."""
    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
    def to_dict(self) -> Dict[str, Any]: ...

_Item = TypeVar("_Item", Bar, Union[Bar, "MinuteClosed"])

@final
class MinuteClosed:
    """One closed minute (``Consumer.subscribe(minutes=True)``), after the bars it covers."""
    @property
    def minute_ms(self) -> int: ...
    @property
    def closed_ms(self) -> int: ...
    @property
    def complete(self) -> bool:
        """Every subscribed, non-halted symbol had its bar (else closed by the deadline)."""
    @property
    def bars(self) -> List[str]: ...
    @property
    def halted(self) -> List[str]: ...
    @property
    def none(self) -> List[str]:
        """Symbols without a bar at the deadline: late, lost or quiet."""
    @property
    def writer(self) -> Optional[str]: ...

@final
class Subscription(Iterator[_Item], Generic[_Item]):
    """New bars of a :meth:`Consumer.subscribe` (and closed minutes with ``minutes=True``);
    ``next()`` waits with the GIL released."""

    def __iter__(self) -> Subscription[_Item]: ...
    def __next__(self) -> _Item: ...
    def get(self, timeout: Optional[float] = None) -> Optional[_Item]:
        """Wait up to ``timeout`` s for the next item; None if none came."""
    def drain(self) -> List[_Item]:
        """Every item queued now, without waiting."""
    @property
    def dropped(self) -> int:
        """Bars dropped because this subscription's buffer was full."""
    def close(self) -> None:
        """Unsubscribe; iteration ends."""
    def __enter__(self) -> Subscription[_Item]: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class Consumer:
    """Validates, dedupes and stores bars per symbol; tracks health; delivers new bars.

    The same pipeline as ``barbridge run``. Thread-safe.
    """

    def __new__(
        cls,
        capacity_per_symbol: int = 10000,
        stale_after: float = 120.0,
        symbols: Optional[Sequence[str]] = None,
        status_file: Optional[_PathLike] = None,
        echo: bool = False,
        journal: Optional[_PathLike] = None,
        fsync: Literal["interval", "always", "never"] = "interval",
        max_symbols: int = 20000,
        max_clock_skew: float = 300.0,
    ) -> Consumer: ...
    def push(self, bar: _BarInput) -> _Outcome:
        """Push one bar (dict with wire field names, wire line, or Bar). Raises WireError."""
    def push_line(self, line: Union[str, bytes]) -> _Outcome:
        """Push one wire line (bar, heartbeat or status). Raises WireError."""
    def push_batch(self, bars: Union[bytes, bytearray, str, Iterable[_BarInput]]) -> BatchResult:
        """Push many bars (``\\n``-separated lines, or an iterable of push() inputs); GIL released."""
    def latest(self, symbol: str) -> Optional[Bar]: ...
    def last_n(self, symbol: str, n: int) -> List[Bar]: ...
    def range(self, symbol: str, from_ms: int, to_ms: int) -> List[Bar]:
        """Bars with ``from_ms <= timestamp_ms < to_ms``, oldest first."""
    def symbols(self) -> List[str]: ...
    def count(self, symbol: str) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, symbol: str, /) -> bool: ...
    def columns(
        self,
        symbol: str,
        n: Optional[int] = None,
        from_ms: Optional[int] = None,
        to_ms: Optional[int] = None,
        numpy: bool = False,
    ) -> Dict[str, Any]:
        """Columns ``timestamp_ms, open, high, low, close, volume, vwap, trade_count``: lists, or
        numpy arrays with ``numpy=True`` (``timestamp_ms`` int64, the rest float64). An absent
        ``vwap`` / ``trade_count`` is None in a list and NaN in an array."""
    def df(
        self,
        symbols: Optional[Sequence[str]] = None,
        n: Optional[int] = None,
        from_ms: Optional[int] = None,
        to_ms: Optional[int] = None,
    ) -> Any:
        """A pandas DataFrame like alpaca-py's ``BarSet.df``: index (``symbol``, ``timestamp``:
        UTC, timezone-aware), columns ``open high low close volume vwap`` (float64) and
        ``trade_count`` (nullable Int64)."""
    def stats(self) -> Dict[str, Any]: ...
    def health(self) -> Dict[str, Any]: ...
    def halted(self) -> Dict[str, Dict[str, Any]]:
        """Subscribed symbols not trading now: symbol → {state, since_ms, code, reason} (a halted symbol
        the minute barrier's latest minute no longer lists is left out; its history stays in ``halts``)."""
    def halts(self, symbol: str) -> List[Dict[str, Any]]:
        """``symbol``'s recent times without trading: {start_ms, end_ms (None while it lasts), code, reason}."""
    def status(self) -> Dict[str, Any]: ...
    @property
    def status_file(self) -> Optional[Path]: ...
    @overload
    def subscribe(
        self,
        symbols: Optional[Sequence[str]] = None,
        capacity: int = 65536,
        timeout: Optional[float] = None,
        minutes: Literal[False] = False,
    ) -> Subscription[Bar]: ...
    @overload
    def subscribe(
        self,
        symbols: Optional[Sequence[str]] = None,
        capacity: int = 65536,
        timeout: Optional[float] = None,
        *,
        minutes: Literal[True],
    ) -> Subscription[Union[Bar, MinuteClosed]]: ...
    def minute_stats(self) -> Dict[str, Any]:
        """The counters (as stats(): one table), the minute barrier's among them: minutes_closed,
        minutes_incomplete, late_bars, quiet_marks, ..."""
    def serve_metrics(self, addr: str, max_symbol_labels: int = 100) -> int:
        """Serve /metrics, /status.json and the live page on ``addr`` (HOST:PORT; port 0: any
        free port) until :meth:`close`; returns the port."""
    def close(self) -> None:
        """Stop the status file writer (one final write) and the metrics server, and flush the
        journal."""
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class MetricsServer:
    """``GET /metrics`` on ``addr`` (HOST:PORT, or PORT on 127.0.0.1; port 0: any free port),
    served from a Rust thread with the consumer's HTTP bounds (64 connections, a 16 KiB request
    head read within 5 s, 30 s per connection, request bodies never read). ``render()`` returns
    the exposition text and is called, under the GIL, for each scrape; an exception answers 500.
    The server's own counters are appended as ``{prefix}http_*``. ValueError for an address that
    is not HOST:PORT, OSError when it cannot be bound."""

    def __new__(cls, addr: str, render: Callable[[], str], prefix: str = "barbridge_sidecar_") -> MetricsServer: ...
    @property
    def port(self) -> int: ...
    @property
    def addr(self) -> str: ...
    def status(self) -> Dict[str, Any]:
        """Connections open, accepted, refused past the bound, accept errors, connection errors,
        deadline closes, requests, failed requests, the last error."""
    def stop(self) -> None:
        """Stop serving and wait for the thread (the GIL is released meanwhile). Idempotent."""

class NatsFeed:
    """Feeds a :class:`Consumer` from the NATS JetStream stream ``barbridge run --publish`` fills
    (a durable pull consumer; acknowledged once journaled). Rust does the NATS work."""

    def __new__(
        cls,
        consumer: Consumer,
        url: str,
        durable: str,
        stream: str = "BARS",
        feed: str = "iex",
        since: Optional[str] = None,
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        password_file: Union[str, os.PathLike[str], None] = None,
        token: Optional[str] = None,
        token_file: Union[str, os.PathLike[str], None] = None,
        nkey_seed: Optional[str] = None,
        nkey_file: Union[str, os.PathLike[str], None] = None,
        creds: Union[str, os.PathLike[str], None] = None,
        tls: bool = False,
        ca: Union[str, os.PathLike[str], None] = None,
        cert: Union[str, os.PathLike[str], None] = None,
        key: Union[str, os.PathLike[str], None] = None,
    ) -> NatsFeed: ...
    @property
    def url(self) -> str: ...
    @property
    def durable(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> NatsFeed: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class FifoWriter:
    """The sidecar's side of the FIFO: ``submit_bar`` validates and queues in Rust (never waiting
    for the consumer); a Rust thread writes whole lines atomically, with ``seq``/``writer``,
    heartbeats, a bounded backlog and a re-send of recent minutes when a reader returns."""

    def __new__(
        cls,
        path: _PathLike,
        *,
        writer: str,
        backlog: int = 100000,
        heartbeat: float = 5.0,
        pipe_size: int = 1048576,
        replay: int = 4096,
        open_backoff_max: float = 1.0,
    ) -> FifoWriter: ...
    def prepare(self) -> None: ...
    def start(self) -> None: ...
    def submit_bar(self, bar: Mapping[str, Any]) -> bool: ...
    def submit_status(self, state: str, detail: str = "") -> None: ...
    def backlog(self) -> int: ...
    def stats(self) -> Dict[str, int]: ...
    @property
    def reader_present(self) -> bool: ...
    @property
    def writer(self) -> str: ...
    def next_event(self, timeout: float) -> Optional[Tuple[str, str]]: ...
    def finished(self) -> bool: ...
    def join(self) -> Optional[Tuple[bool, str]]: ...
    def close(self, flush_timeout: float = 2.0) -> None: ...

@final
class FifoReader(Iterator[Bar]):
    """``for bar in FifoReader(path): ...`` — a Rust reader thread on the sidecar's FIFO."""

    def __new__(
        cls,
        path: _PathLike,
        symbols: Optional[Sequence[str]] = None,
        stale_after: float = 120.0,
        capacity_per_symbol: int = 10000,
        status_file: Optional[_PathLike] = None,
        echo: bool = False,
        consumer: Optional[Consumer] = None,
        once: bool = False,
        timeout: Optional[float] = None,
        capacity: int = 65536,
        journal: Optional[_PathLike] = None,
        fsync: Literal["interval", "always", "never"] = "interval",
    ) -> FifoReader: ...
    @property
    def consumer(self) -> Consumer: ...
    @property
    def path(self) -> Path: ...
    @property
    def running(self) -> bool: ...
    def __iter__(self) -> FifoReader: ...
    def __next__(self) -> Bar: ...
    def get(self, timeout: Optional[float] = None) -> Optional[Bar]: ...
    def close(self) -> None: ...
    def __enter__(self) -> FifoReader: ...
    def __exit__(self, *args: object) -> bool: ...
    def latest(self, symbol: str) -> Optional[Bar]: ...
    def last_n(self, symbol: str, n: int) -> List[Bar]: ...
    def stats(self) -> Dict[str, Any]: ...

# ---- the sidecar's hot path and session clock (src/python/alpaca.rs)

class Publisher:
    """Every bar of the sidecar goes through it once into ``sink`` (normalise, validate, dedupe,
    backfill never replacing a newer stream version, last minute per symbol, staleness clock)."""
    def __new__(cls, sink: Union[FifoWriter, Consumer], *, remember: Optional[int] = None) -> Publisher: ...
    def submit_alpaca(self, msg: Any) -> bool: ...
    def submit_frame(self, frame: bytes) -> Optional[bytes]: ...
    def submit_backfill(self, symbol: str, msg: Mapping[str, Any], since: int) -> bool: ...
    def submit_bar(self, bar: Mapping[str, Any]) -> bool: ...
    def mark(self) -> int: ...
    def last_seen(self, symbol: str) -> Optional[int]: ...
    def last_seen_all(self) -> Dict[str, int]: ...
    def counts(self) -> Dict[str, int]: ...
    def silent_for(self) -> float: ...
    def reset_clock(self) -> None: ...
    def check_stale(self, active: bool, stale_after: float, *, always: bool = False,
                    symbols: Optional[Sequence[str]] = None) -> bool: ...
    def submit_trading_status(self, msg: Any) -> bool: ...
    def halted(self) -> List[str]: ...
    def all_halted(self, symbols: Sequence[str]) -> bool: ...
    def status(self, state: str, detail: str = "") -> None: ...
    def minute_barrier(self, symbols: Sequence[str], *, deadline: float = 10.0, every_minute: bool = False) -> None:
        """Start the minute barrier: minute_closed line(s) after each minute's bars."""
    def minute_symbols(self, symbols: Sequence[str]) -> None: ...
    def minutes_from(self, minute_ms: int, *, hold: float = 120.0) -> None:
        """Close minutes from the start-up backfill's start once minutes_backfilled() is called."""
    def minutes_backfilled(self) -> None: ...
    def tick_minutes(self) -> int:
        """Close the minutes past their deadline; how many."""
    def take_unconfirmed(self) -> List[Tuple[int, List[str]]]: ...
    def mark_quiet(self, minute_ms: int, symbols: Sequence[str]) -> None: ...
    @property
    def minutes_closed(self) -> int: ...

def normalise_alpaca(msg: Mapping[str, Any], *, source: str = "stream", symbol: Optional[str] = None) -> BarDict: ...
def encode_bar(bar: Mapping[str, Any]) -> bytes: ...
def decode_line(line: bytes) -> Optional[BarDict]: ...
def timestamp_ms(t: Any) -> int: ...
def in_session(now_ms: Optional[int] = None) -> bool: ...
def last_session_open(now_ms: Optional[int] = None) -> int: ...
def session(date: str) -> Optional[Tuple[int, int]]: ...
def calendar_coverage() -> Tuple[str, str]: ...
def validate_symbol(symbol: str) -> None: ...
def ensure_private_dir(path: _PathLike) -> None: ...
def write_private_file(dir: Union[str, os.PathLike[str]], name: str, data: bytes) -> None: ...
def read_private_file(path: Union[str, os.PathLike[str]], limit: int) -> Optional[bytes]: ...
