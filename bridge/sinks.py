"""Sinks: where the sidecar's wire lines go.

* :class:`FifoSink` - a named pipe read by the Rust consumer (``barbridge run --fifo``).
* :class:`InProcessSink` - the pyo3 module ``barbridge`` in this process.

Both run on their own thread. Producers (stream handlers on the SDK's event loop, the
backfill thread, ...) only call :meth:`Sink.submit_bar` / :meth:`Sink.submit_status`, which
append to an in-memory deque under a short lock and return immediately: nothing a producer
calls can block on the consumer.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import itertools
import logging
import os
import select
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional

from . import protocol

log = logging.getLogger("bridge.sink")

PIPE_BUF = 4096  # a write() of at most this many bytes to a pipe is atomic
WRITE_BATCH = 64  # lines considered per write()
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


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


# --------------------------------------------------------------------------- FIFO safety

def ensure_fifo(path: str, *, create: bool = True) -> None:
    """Make sure ``path`` is a FIFO we own (create it, and a private 0700 parent, if absent).

    Refuses symlinks, non-FIFOs and FIFOs owned by another user with one clear sentence."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(parent):
        if not create:
            raise SinkError(f"the FIFO directory {parent} does not exist.")
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise SinkError(f"the FIFO {path} does not exist.") from None
        try:
            os.mkfifo(path, 0o600)
            os.chmod(path, 0o600)
            log.info("created FIFO %s (mode 0600)", path)
        except FileExistsError:
            pass  # the consumer created it at the same moment: verify below
        st = os.lstat(path)
    check_fifo_stat(path, st)
    pst = os.stat(parent)
    if pst.st_mode & 0o002 and not pst.st_mode & stat.S_ISVTX:
        raise SinkError(f"the FIFO directory {parent} is world-writable without the sticky bit; use a private directory.")


def check_fifo_stat(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise SinkError(f"refusing to use {path}: it is a symbolic link, not a FIFO.")
    if not stat.S_ISFIFO(st.st_mode):
        raise SinkError(f"refusing to use {path}: it exists but is not a FIFO (remove it or choose another --fifo path).")
    if st.st_uid != os.getuid():
        raise SinkError(f"refusing to use {path}: the FIFO is owned by uid {st.st_uid}, not by you (uid {os.getuid()}).")


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


class FifoSink(Sink):
    """Writes wire lines into a FIFO, one ``os.write`` per line.

    * open ``O_WRONLY|O_NONBLOCK|O_NOFOLLOW``; ENXIO (no reader yet) → retry with backoff;
    * ``F_SETPIPE_SZ`` raises the pipe buffer (a slow consumer absorbs bursts);
    * EAGAIN (pipe full) → the line stays first in the backlog; poll for POLLOUT;
    * EPIPE (reader gone) → close, reopen when a reader returns, and first re-send the last
      ``replay`` bar lines: lines sitting unread in the dead reader's pipe are lost with it,
      and the consumer's dedupe on (symbol, timestamp) makes the re-send harmless.
    """

    name = "fifo"

    def __init__(self, path: str, *, backlog: int = 100_000, heartbeat: float = 5.0,
                 pipe_size: int = 1 << 20, replay: int = 4096, open_backoff_max: float = 1.0,
                 writer: Optional[str] = None) -> None:
        super().__init__(backlog=backlog, heartbeat=heartbeat, writer=writer)
        self.path = path
        self.pipe_size = pipe_size
        self.open_backoff_max = open_backoff_max
        self._ring: Deque[_Item] = collections.deque(maxlen=max(0, replay))
        self._fd: Optional[int] = None
        self.reader_present = False

    def prepare(self) -> None:
        """Create/verify the FIFO now, so configuration errors surface at start-up."""
        ensure_fifo(self.path)

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return False  # no reader yet
            if e.errno == errno.ENOENT:
                ensure_fifo(self.path)  # removed behind our back: recreate (consumer side may too)
                return False
            if e.errno == errno.ELOOP:
                raise SinkError(f"refusing to use {self.path}: it is a symbolic link, not a FIFO.") from None
            raise
        try:
            check_fifo_stat(self.path, os.fstat(fd))
        except SinkError:
            os.close(fd)
            raise
        size = self.pipe_size
        while size >= 4096:
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, size)
                break
            except OSError:
                size //= 2
        self._fd = fd
        self.reader_present = True
        self.stats.reader_opens += 1
        log.info("consumer connected to %s (pipe buffer %s bytes)", self.path, _pipe_size(fd))
        return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        self.reader_present = False

    def _run(self) -> None:
        backoff = 0.01
        next_hb = time.monotonic() + self.heartbeat_interval
        lost = False
        try:
            while not self._stopping_and_done():
                if self._fd is None:
                    if self._open():
                        backoff = 0.01
                        if lost and self._ring:
                            # Only the newest version of each minute: re-sending an older version
                            # first would make the consumer flip back and forth (and journal both).
                            newest = list({(i.payload["symbol"], i.payload["timestamp_ms"]): i
                                           for i in self._ring}.values())
                            with self._cond:
                                self._pending.extendleft(reversed(newest))
                            self.stats.replayed += len(newest)
                            log.info("consumer returned: re-sending the last %d bar line(s)", len(newest))
                            self._ring.clear()
                        lost = False
                        next_hb = 0.0  # tell the new reader who we are right away
                    else:
                        if self._stop.is_set():
                            if time.monotonic() >= self._flush_deadline:
                                return  # no reader came to take what is pending
                            time.sleep(min(backoff, 0.05))
                            continue
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.open_backoff_max)
                        continue
                self._report_overflow()
                now = time.monotonic()
                if now >= next_hb and self.heartbeat_interval > 0:
                    next_hb = now + self.heartbeat_interval
                    with self._cond:
                        self._pending.append(_Item("heartbeat"))
                with self._cond:
                    if not self._pending:
                        if self._stop.is_set():
                            return
                        self._cond.wait(max(0.0, min(next_hb - time.monotonic(), 0.5)))
                        continue
                    head = list(itertools.islice(self._pending, WRITE_BATCH))
                # Whole lines packed into one write() of at most PIPE_BUF bytes: still atomic, so
                # lines never interleave with another writer's, at a fraction of the syscalls.
                items, lines, size = [], [], 0
                for item in head:
                    line = item.encode(self._seq + 1 + len(lines), self.writer, self.heartbeat_extra)
                    if lines and size + len(line) > PIPE_BUF:
                        break
                    items.append(item)
                    lines.append(line)
                    size += len(line)
                line = b"".join(lines)
                try:
                    n = os.write(self._fd, line)
                except BlockingIOError:
                    self.stats.pipe_full += 1
                    self._wait_writable(0.2)
                    continue
                except BrokenPipeError:
                    self.stats.reader_lost += 1
                    log.warning("consumer went away (EPIPE); keeping %d line(s) until it returns", len(self._pending))
                    self._close_fd()
                    lost = True
                    continue
                if n != len(line):  # cannot happen for <= PIPE_BUF bytes; never silent if it does
                    raise OSError(f"short write of {n}/{len(line)} bytes to {self.path}")
                self._seq += len(items)
                self.stats.lines_written += len(items)
                with self._cond:
                    for item in items:
                        if self._pending and self._pending[0] is item:
                            self._pending.popleft()
                for item in items:
                    if item.kind == "bar":
                        self.stats.bars_written += 1
                        if self._ring.maxlen:
                            self._ring.append(item)
        finally:
            self._close_fd()

    def _wait_writable(self, timeout: float) -> None:
        p = select.poll()
        p.register(self._fd, select.POLLOUT)
        p.poll(timeout * 1000)


def _pipe_size(fd: int) -> Any:
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ)
    except OSError:
        return "?"


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
            try:
                import barbridge  # type: ignore[import-not-found]
            except ImportError as e:
                raise SinkError("--sink inprocess needs the barbridge Python extension: build it with "
                                "`VIRTUAL_ENV=.venv .venv/bin/maturin develop --release` (import failed: "
                                f"{e}).") from None
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
