"""Sinks: where the sidecar's wire lines go.

* :class:`FifoSink` - a named pipe read by the Rust consumer (``barbridge run --fifo``), written
  by the extension's native ``barbridge.FifoWriter``.
* :class:`InProcessSink` - the pyo3 module ``barbridge`` in this process.

Both write on their own thread. Producers (stream handlers on the SDK's event loop, the
backfill thread, ...) only call ``submit_bar`` / ``submit_status``, which append to an
in-memory backlog under a short lock and return immediately: nothing a producer calls can
block on the consumer.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional

from . import protocol

log = logging.getLogger("bridge.sink")



class SinkError(Exception):
    """A sink problem the user must fix (one sentence; exit 2)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_writer_id() -> str:
    """Short id unique per sidecar process: pid + start time (base 36 ms)."""
    t = now_ms()
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while t:
        t, r = divmod(t, 36)
        s = digits[r] + s
    return f"{os.getpid()}-{s}"


# --------------------------------------------------------------------------- items

@dataclass
class _Item:
    kind: str  # bar | status | heartbeat
    payload: Any = None
    ts_ms: int = field(default_factory=now_ms)

    def encode(self, seq: int, writer: str, extra: Callable[[], dict]) -> bytes:
        if self.kind == "bar":
            return protocol.encode_bar(self.payload, seq=seq, writer=writer, validated=True)  # by submit_bar
        if self.kind == "status":
            state, detail = self.payload
            return protocol.encode_status(self.ts_ms, state, detail, seq=seq, writer=writer)
        return protocol.encode_heartbeat(now_ms(), seq=seq, writer=writer, **extra())


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
    acked: int = 0
    unacked: int = 0
    unacked_evicted: int = 0


class Sink:
    """Common part: a bounded, ordered backlog drained by the sink's own thread."""

    name = "sink"

    def __init__(self, *, backlog: int = 100_000, heartbeat: float = 5.0, writer: Optional[str] = None) -> None:
        self.writer = writer or make_writer_id()
        self.backlog_max = max(1, backlog)
        self.heartbeat_interval = heartbeat
        self.stats = SinkStats()
        self._pending: Deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._flush_deadline = 0.0
        self._seq = 0
        self._thread: Optional[threading.Thread] = None
        self._overflow_reported = 0
        self.fatal: Optional[BaseException] = None
        self.on_fatal: Optional[Callable[[BaseException], None]] = None

    # ---- producer side (any thread; never blocks on the consumer)
    def submit_bar(self, bar: dict) -> None:
        try:
            protocol.validate_bar_values(bar["symbol"], bar)
        except (protocol.WireError, KeyError, TypeError, ValueError) as e:
            self.stats.dropped_invalid += 1
            log.warning("dropping invalid bar %s: %s", bar.get("symbol"), e)
            return
        self._enqueue(_Item("bar", dict(bar)))

    def submit_status(self, state: str, detail: str = "") -> None:
        self._enqueue(_Item("status", (state, detail)))

    def _enqueue(self, item: _Item) -> None:
        with self._cond:
            if len(self._pending) >= self.backlog_max:
                # Keep the newest data: the oldest minutes can be backfilled over REST later.
                self._pending.popleft()
                self.stats.dropped_overflow += 1
            self._pending.append(item)
            self._cond.notify()

    def backlog(self) -> int:
        return len(self._pending)

    def heartbeat_extra(self) -> dict:
        return {"backlog": len(self._pending), "dropped": self.stats.dropped_overflow}

    # ---- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=f"{self.name}-sink", daemon=True)
        self._thread.start()

    def close(self, flush_timeout: float = 2.0) -> None:
        """Stop the thread, first trying for ``flush_timeout`` s to deliver what is pending."""
        self._flush_deadline = time.monotonic() + flush_timeout
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(flush_timeout + 1.0)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            self.fatal = e
            log.error("%s sink stopped: %s", self.name, e)
            if self.on_fatal:
                self.on_fatal(e)

    def _stopping_and_done(self) -> bool:
        return self._stop.is_set() and (not self._pending or time.monotonic() >= self._flush_deadline)

    def _report_overflow(self) -> None:
        n = self.stats.dropped_overflow
        if n > self._overflow_reported:
            log.error("backlog overflow: %d line(s) dropped in total (backlog limit %d)", n, self.backlog_max)
            self._overflow_reported = n
            with self._cond:
                self._pending.appendleft(_Item("status", ("disconnected", f"sidecar backlog overflow: {n} line(s) dropped while the consumer was away or slow; they will be backfilled")))

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


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
        # The producer side is the native writer's own: no Python frame per bar.
        self.submit_bar: Callable[[dict], bool] = self._native.submit_bar
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


class InProcessSink(Sink):
    """Feeds lines to the pyo3 extension ``barbridge`` in the same process (one-process mode).

    The Rust side does everything ``barbridge run`` does for the FIFO path - validation,
    dedupe, corrections, health and counters - and, when asked, journals accepted bars
    (``journal`` directory), writes the status file (``status_file``) and prints every accepted bar as a wire line to stdout (``echo``, like
    ``barbridge run --echo``). Pending lines are pushed in batches (``push_batch``, GIL
    released while Rust ingests them). The ``barbridge.Consumer`` is :attr:`consumer`: a
    strategy in the same process queries it (``latest``, ``last_n``, ``columns``, ``subscribe``)."""

    name = "inprocess"
    batch_max = 4096

    def __init__(self, *, backlog: int = 100_000, heartbeat: float = 5.0, consumer: Any = None,
                 writer: Optional[str] = None, status_file: Optional[str] = None, echo: bool = False,
                 symbols: Optional[list] = None, stale_after: float = 120.0,
                 journal: Optional[str] = None) -> None:
        super().__init__(backlog=backlog, heartbeat=heartbeat, writer=writer)
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
        self.consumer = consumer
        self.rejected = 0

    def prepare(self) -> None:
        pass

    def close(self, flush_timeout: float = 2.0) -> None:
        super().close(flush_timeout)
        if self._owns_consumer:
            self.consumer.close()  # final status file write

    def _run(self) -> None:
        next_hb = time.monotonic() + self.heartbeat_interval
        while not self._stopping_and_done():
            self._report_overflow()
            if self.heartbeat_interval > 0 and time.monotonic() >= next_hb:
                next_hb = time.monotonic() + self.heartbeat_interval
                self._enqueue(_Item("heartbeat"))
            with self._cond:
                if not self._pending:
                    if self._stop.is_set():
                        return
                    self._cond.wait(0.5)
                    continue
                items = [self._pending.popleft() for _ in range(min(len(self._pending), self.batch_max))]
            lines = []
            for item in items:
                self._seq += 1
                lines.append(item.encode(self._seq, self.writer, self.heartbeat_extra))
            result = self.consumer.push_batch(b"".join(lines))
            # Rejects are counted and logged (rate-limited) by the Rust consumer; never fatal here.
            if result.rejected:
                self.rejected += result.rejected
                log.warning("in-process consumer rejected %d line(s), e.g. %s", result.rejected, result.errors[0][2])
            self.stats.lines_written += len(items)
            self.stats.bars_written += sum(1 for item in items if item.kind == "bar")
