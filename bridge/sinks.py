"""Sinks: where the sidecar's bars go, both in the extension (no Python per bar).

* :class:`FifoSink` - a named pipe read by the Rust consumer (``barbridge run --fifo``), written
  by the extension's native ``barbridge.FifoWriter``.
* :class:`InProcessSink` - a ``barbridge.Consumer`` in this process (one-process mode).

Either one's ``native`` object is what the extension's ``barbridge.Publisher`` sends bars into
(``bridge.gate``): nothing a producer calls waits for the consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:
    from barbridge import BarDict


log = logging.getLogger("bridge.sink")


class Sink(Protocol):
    """Where the sidecar's lines go: :class:`FifoSink` (the FIFO, through the Rust writer) or
    :class:`InProcessSink` (a ``barbridge.Consumer`` in this process)."""

    writer: str
    on_fatal: Optional[Callable[[BaseException], None]]

    def prepare(self) -> None: ...
    def start(self) -> None: ...
    def close(self, flush_timeout: float = 2.0) -> None: ...
    def backlog(self) -> int: ...


class SinkError(Exception):
    """A sink problem the user must fix (one sentence; exit 2)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_writer_id() -> str:
    """Short id unique per sidecar process: pid + start time (base 36 ms), the extension's."""
    return str(_extension().default_writer_id())


@dataclass
class SinkStats:
    lines_written: int = 0
    bars_written: int = 0
    dropped_overflow: int = 0
    dropped_invalid: int = 0
    reader_opens: int = 0
    reader_lost: int = 0
    pipe_full: int = 0
    replayed: int = 0
    hole_resends: int = 0
    acked: int = 0
    unacked: int = 0
    unacked_evicted: int = 0


BUILD_HINT = "`VIRTUAL_ENV=.venv .venv/bin/maturin develop --release` (scripts/launch_live_trading.sh does it)"


def _extension() -> Any:
    """The pyo3 module ``barbridge``, or SinkError saying how to build it."""
    try:
        import barbridge  # type: ignore[import-not-found]
    except ImportError as e:
        raise SinkError(f"the sidecar needs the barbridge Python extension: build it with {BUILD_HINT} "
                        f"(import failed: {e}).") from None
    return barbridge


class FifoSink:
    """Writes wire lines into a FIFO through the extension's native ``barbridge.FifoWriter``.

    ``submit_bar`` validates and queues in Rust (well under a microsecond, never waiting for the
    consumer); a Rust thread encodes and writes. It opens ``O_WRONLY|O_NONBLOCK|O_NOFOLLOW`` and
    retries while no reader is there; raises the pipe buffer (``F_SETPIPE_SZ``); packs whole lines
    into atomic writes of at most 4096 bytes; keeps lines in a bounded backlog while the pipe is
    full or the reader is gone (oldest dropped, counted and announced); and keeps every line it
    wrote until the consumer acknowledges it (up to ``unacked_bytes``), re-sending what a new
    consumer instance has not acknowledged (a consumer that died with lines in its pipe or read
    but not journaled loses none of them; its cursor makes the re-send exact). What the writer
    reports is logged here, through ``logging``."""

    name = "fifo"

    def __init__(self, path: str, *, backlog: int = 100_000, heartbeat: float = 5.0,
                 pipe_size: int = 1 << 20, unacked_bytes: int = 64 << 20, open_backoff_max: float = 1.0,
                 writer: Optional[str] = None) -> None:
        native = getattr(_extension(), "FifoWriter", None)
        if native is None:
            raise SinkError(f"the installed barbridge extension has no FifoWriter; rebuild it with {BUILD_HINT}.")
        self.path = path
        self.writer = writer or make_writer_id()
        self._native = native(path, writer=self.writer, backlog=backlog, heartbeat=heartbeat,
                              pipe_size=pipe_size, unacked_bytes=unacked_bytes,
                              open_backoff_max=open_backoff_max)
        self.native = self._native  # what barbridge.Publisher sends into
        # The producer side is the native writer's own: no Python frame per bar.
        self.submit_bar: Callable[[BarDict], bool] = self._native.submit_bar
        self.submit_status: Callable[..., None] = self._native.submit_status
        self.backlog: Callable[[], int] = self._native.backlog
        self._relay: Optional[threading.Thread] = None
        self.fatal: Optional[BaseException] = None
        self.on_fatal: Optional[Callable[[BaseException], None]] = None

    @property
    def stats(self) -> SinkStats:
        return SinkStats(**self._native.stats())

    @property
    def reader_present(self) -> bool:
        return bool(self._native.reader_present)

    def prepare(self) -> None:
        """Create/verify the FIFO now, so configuration errors surface at start-up."""
        try:
            self._native.prepare()
        except OSError as e:
            raise SinkError(str(e)) from None

    def start(self) -> None:
        try:
            self._native.start()
        except OSError as e:
            raise SinkError(str(e)) from None
        self._relay = threading.Thread(target=self._relay_events, name="fifo-sink-log", daemon=True)
        self._relay.start()

    def close(self, flush_timeout: float = 2.0) -> None:
        """Stop the writer, first trying for ``flush_timeout`` s to deliver what is pending."""
        self._native.close(flush_timeout)
        if self._relay:
            self._relay.join(2.0)

    def _relay_events(self) -> None:
        """The writer's messages into ``logging``; a writer that stopped by itself is fatal."""
        while True:
            event = self._native.next_event(0.5)
            if event is not None:
                level, text = event
                log.log(_LEVELS[level], "%s", text)
                continue
            if not self._native.finished():
                continue
            while (event := self._native.next_event(0)) is not None:
                log.log(_LEVELS[event[0]], "%s", event[1])
            stopped = self._native.join()
            if stopped is not None:
                unusable, message = stopped
                self.fatal = SinkError(message) if unusable else OSError(message)
                if self.on_fatal:
                    self.on_fatal(self.fatal)
            return


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class InProcessSink:
    """Feeds a ``barbridge.Consumer`` in the same process (one-process mode).

    The Rust side does everything ``barbridge run`` does for the FIFO path - validation,
    dedupe, corrections, health and counters - and, when asked, journals accepted bars
    (``journal`` directory), writes the status file (``status_file``) and prints every accepted
    bar as a wire line to stdout (``echo``, like ``barbridge run --echo``). Bars go from the
    publisher straight into the consumer's store (no JSON in between); a thread adds a heartbeat
    every ``heartbeat`` seconds. The ``barbridge.Consumer`` is :attr:`consumer`: a strategy in the
    same process queries it (``latest``, ``last_n``, ``columns``, ``subscribe``)."""

    name = "inprocess"

    def __init__(self, *, heartbeat: float = 5.0, consumer: Any = None, writer: Optional[str] = None,
                 status_file: Optional[str] = None, echo: bool = False, symbols: Optional[list] = None,
                 stale_after: float = 120.0, journal: Optional[str] = None) -> None:
        self.writer = writer or make_writer_id()
        self.heartbeat_interval = heartbeat
        self._owns_consumer = consumer is None
        if consumer is None:
            barbridge = _extension()
            if not hasattr(barbridge, "Consumer"):
                raise SinkError("the installed barbridge module has no Consumer class; rebuild the extension.")
            try:
                consumer = barbridge.Consumer(status_file=status_file, echo=echo, symbols=symbols,
                                              stale_after=stale_after, journal=journal)
            except (ValueError, OSError) as e:
                raise SinkError(f"cannot start the in-process consumer: {e}.") from None
        self.consumer = self.native = consumer
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.fatal: Optional[BaseException] = None
        self.on_fatal: Optional[Callable[[BaseException], None]] = None

    @property
    def stats(self) -> SinkStats:
        c = self.consumer.stats()
        return SinkStats(lines_written=c.get("lines", 0), bars_written=c.get("bars_accepted", 0))

    def backlog(self) -> int:
        return 0  # a push is stored before it returns

    def prepare(self) -> None:
        pass

    def start(self) -> None:
        if self.heartbeat_interval > 0:
            self._thread = threading.Thread(target=self._heartbeats, name="inprocess-heartbeat", daemon=True)
            self._thread.start()

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            self.consumer.push({"type": "heartbeat", "ts_ms": now_ms(), "writer": self.writer})

    def close(self, flush_timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(flush_timeout + 1.0)
        if self._owns_consumer:
            self.consumer.close()  # final status file write
