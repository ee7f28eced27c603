"""Quiet confirmed, lost recovered (docs/ARCHITECTURE.md, "Minute barrier").

A minute the barrier closed with symbols still without a bar is asked about on Alpaca's REST
history, on a thread of its own (never the SDK's event loop): a bar REST has is published as a
backfill bar (the stream lost or delayed it: the consumer counts it in ``late_bars``); a symbol
REST has no bar for was quiet (no trade) and gets a quiet mark (``minute_quiet``: no hole). A
minute REST does not answer for stays unknown, never quiet: on a 429 (or any error) the request
is tried again after a growing pause, until the minute is ``max_age`` old.

Requests: at most ``batch`` (500) symbols each, at most ``rate`` a minute (Alpaca's basic plan
allows 200 a minute for all REST calls of a key; the default leaves room for the backfill).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional

log = logging.getLogger("bridge.confirm")

MINUTE_MS = 60_000
BATCH = 500
RATE_PER_MINUTE = 150
MAX_AGE = 1800.0
BACKOFF_MAX = 60.0


@dataclass
class _Ask:
    minute_ms: int
    symbols: list[str]
    since: float
    attempts: int = 0
    next_try: float = 0.0


@dataclass
class ConfirmCounts:
    rest_requests: int = 0
    rest_429: int = 0
    rest_errors: int = 0
    late_bars: int = 0  # bars REST had that the stream did not deliver by the deadline
    quiet_marked: int = 0  # symbol-minutes confirmed quiet
    unknown: int = 0  # symbol-minutes given up on (no answer within max_age): stay unknown
    pending: int = 0
    by_minute: dict = field(default_factory=dict)


def is_rate_limited(e: BaseException) -> bool:
    code = getattr(e, "status_code", None)
    if code is None:
        code = getattr(getattr(e, "response", None), "status_code", None)
    return code == 429 or "429" in str(e)[:200]


class Confirmer:
    """Takes the barrier's unconfirmed minutes (``pub.native.take_unconfirmed()``) and asks
    ``fetch(symbols, minute_ms)`` → ``{symbol: [raw REST bar, ...]}`` about them."""

    def __init__(self, pub: Any, fetch: Callable[[list[str], int], Any], *, batch: int = BATCH,
                 rate: float = RATE_PER_MINUTE, max_age: float = MAX_AGE, poll: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= batch <= 500:
            raise ValueError(f"batch {batch} must be 1 to 500 symbols (Alpaca's bound per request)")
        if rate <= 0:
            raise ValueError(f"rate {rate} must be more than 0 requests a minute")
        self.pub, self.fetch = pub, fetch
        self.batch, self.rate, self.max_age, self.poll = batch, rate, max_age, poll
        self.clock = clock
        self.counts = ConfirmCounts()
        self._queue: Deque[_Ask] = deque()
        self._sent: Deque[float] = deque()  # when the last requests went out (rate window)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="minute-confirm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def stats(self) -> dict[str, int]:
        c = self.counts
        return {"confirm_rest_requests": c.rest_requests, "confirm_rest_429": c.rest_429,
                "confirm_rest_errors": c.rest_errors, "confirm_late_bars": c.late_bars,
                "confirm_quiet": c.quiet_marked, "confirm_unknown": c.unknown, "confirm_pending": len(self._queue)}

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.step()
            except Exception:  # a bug here must not end the confirmation for good
                log.exception("minute confirmation failed; going on")

    def step(self) -> None:
        """Take new minutes, then ask about every due one (one request per ``batch`` symbols)."""
        now = self.clock()
        for minute_ms, symbols in self.pub.native.take_unconfirmed():
            for i in range(0, len(symbols), self.batch):
                self._queue.append(_Ask(int(minute_ms), list(symbols[i:i + self.batch]), since=now))
        for _ in range(len(self._queue)):
            if self._stop.is_set():
                return
            ask = self._queue.popleft()
            now = self.clock()
            if now - ask.since > self.max_age:
                self.counts.unknown += len(ask.symbols)
                log.warning("no REST answer about %d symbol(s) of minute %d after %.0f s: they stay unknown (not quiet)",
                            len(ask.symbols), ask.minute_ms, now - ask.since)
                continue
            if now < ask.next_try or not self._may_send(now):
                self._queue.append(ask)
                continue
            self._ask(ask)

    def _may_send(self, now: float) -> bool:
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        return len(self._sent) < self.rate

    def _ask(self, ask: _Ask) -> None:
        now = self.clock()
        self._sent.append(now)
        self.counts.rest_requests += 1
        mark = self.pub.mark()  # a stream bar after this is newer than the REST answer
        try:
            raw = self.fetch(ask.symbols, ask.minute_ms) or {}
        except Exception as e:
            limited = is_rate_limited(e)
            if limited:
                self.counts.rest_429 += 1
            else:
                self.counts.rest_errors += 1
            ask.attempts += 1
            pause = min(BACKOFF_MAX, 2.0 ** ask.attempts)
            ask.next_try = now + pause
            if ask.attempts <= 3 or ask.attempts % 10 == 0:
                log.warning("REST %s about minute %d (%d symbols): trying again in %.0f s; they stay unknown meanwhile",
                            "refused with 429 (rate limit)" if limited else f"failed ({e})", ask.minute_ms,
                            len(ask.symbols), pause)
            self._queue.append(ask)
            return
        found: set[str] = set()
        for sym, bars in raw.items():
            for b in bars or ():
                if _minute_of(b) == ask.minute_ms and sym in ask.symbols:
                    found.add(sym)
                    if self.pub.submit_backfill(sym, b, mark):
                        self.counts.late_bars += 1
        quiet = [s for s in ask.symbols if s not in found]
        if quiet:
            self.pub.native.mark_quiet(ask.minute_ms, quiet)
            self.counts.quiet_marked += len(quiet)


def _minute_of(b: Any) -> Optional[int]:
    import barbridge  # type: ignore[import-not-found]
    try:
        t = barbridge.timestamp_ms(b["t"])
    except Exception:
        return None
    return int(t) - int(t) % MINUTE_MS
