"""Sidecar-side health: market-hours-aware staleness, reconnect counters, flap detection.

Market hours are computed in America/New_York (zoneinfo, DST-aware) from UTC instants;
holidays and early closes come from exchange_calendars (XNYS) when its calendar covers the
date, otherwise a plain Mon-Fri 09:30-16:00 rule is used.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from typing import Callable, Deque, Optional
from zoneinfo import ZoneInfo

log = logging.getLogger("bridge.health")
NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc


class MarketClock:
    """Answers "is the regular session open at this UTC instant?" and "when did the most
    recent session open?". ``mode='always'`` treats every instant as in session (tests, 24h feeds)."""

    def __init__(self, mode: str = "regular") -> None:
        if mode not in ("regular", "always"):
            raise ValueError(f"market-hours mode must be regular or always, not {mode!r}")
        self.mode = mode
        self._cal = None
        self._cal_lock = threading.Lock()
        self._cal_failed = False

    def _calendar(self):
        with self._cal_lock:
            if self._cal is None and not self._cal_failed:
                try:
                    import warnings
                    import exchange_calendars as xc  # heavy (pandas); loaded lazily
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # pandas deprecation noise from the library
                        self._cal = xc.get_calendar("XNYS")
                except Exception as e:  # pragma: no cover - fallback path
                    log.warning("exchange_calendars unavailable (%s); using Mon-Fri 09:30-16:00 New York", e)
                    self._cal_failed = True
            return self._cal

    @staticmethod
    def _simple_session(day: dt.date) -> Optional[tuple[dt.datetime, dt.datetime]]:
        if day.weekday() >= 5:
            return None
        o = dt.datetime.combine(day, dt.time(9, 30), NY)
        c = dt.datetime.combine(day, dt.time(16, 0), NY)
        return o.astimezone(UTC), c.astimezone(UTC)

    def _session(self, day: dt.date) -> Optional[tuple[dt.datetime, dt.datetime]]:
        """Regular session (open, close) in UTC of the New York calendar day, or None."""
        cal = self._calendar()
        if cal is not None:
            try:
                import pandas as pd
                ts = pd.Timestamp(day)
                if cal.first_session <= ts <= cal.last_session:
                    if not cal.is_session(ts):
                        return None
                    return (cal.session_open(ts).to_pydatetime().astimezone(UTC),
                            cal.session_close(ts).to_pydatetime().astimezone(UTC))
            except Exception as e:  # pragma: no cover
                log.debug("calendar lookup failed for %s: %s", day, e)
        return self._simple_session(day)

    def in_session(self, now: Optional[dt.datetime] = None) -> bool:
        if self.mode == "always":
            return True
        now = now or dt.datetime.now(UTC)
        s = self._session(now.astimezone(NY).date())
        return bool(s and s[0] <= now < s[1])

    def last_session_open(self, now: Optional[dt.datetime] = None) -> dt.datetime:
        """Open of the current session, or of the most recent one before ``now`` (UTC)."""
        now = now or dt.datetime.now(UTC)
        day = now.astimezone(NY).date()
        for _ in range(15):
            s = self._session(day)
            if s and s[0] <= now:
                return s[0]
            day -= dt.timedelta(days=1)
        return now - dt.timedelta(hours=24)


class ReconnectTracker:
    """Counts (re)connects and detects flapping: more than ``flap_threshold`` reconnects
    within ``flap_window`` seconds."""

    def __init__(self, flap_threshold: int = 3, flap_window: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.flap_threshold = flap_threshold
        self.flap_window = flap_window
        self._clock = clock
        self._events: Deque[float] = collections.deque()
        self.connects = 0
        self.reconnects = 0
        self.disconnects = 0
        self.flapping = False

    def on_connected(self) -> None:
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            self._events.append(self._clock())

    def on_disconnected(self) -> None:
        self.disconnects += 1

    def check_flap(self) -> Optional[int]:
        """Number of reconnects in the window when flapping starts (once per episode), else None."""
        now = self._clock()
        while self._events and now - self._events[0] > self.flap_window:
            self._events.popleft()
        n = len(self._events)
        if n > self.flap_threshold and not self.flapping:
            self.flapping = True
            return n
        if n <= self.flap_threshold:
            self.flapping = False
        return None


class Staleness:
    """No bar for ``stale_after`` seconds while the session is open (and the stream is
    subscribed) → stale. Time spent out of session or not subscribed never counts."""

    def __init__(self, stale_after: float, clock: MarketClock, mono: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.market = clock
        self._mono = mono
        self._last = mono()
        self.stale = False

    def reset(self) -> None:
        self._last = self._mono()
        self.stale = False

    def on_bar(self) -> None:
        self._last = self._mono()
        self.stale = False

    def silent_for(self) -> float:
        return self._mono() - self._last

    def check(self, active: bool) -> bool:
        """True exactly when the stream turns stale (caller forces a reconnect)."""
        if not active or self.stale_after <= 0 or not self.market.in_session():
            self._last = self._mono()  # quiet time outside the session never counts
            return False
        if self.silent_for() >= self.stale_after:
            self.stale = True
            self._last = self._mono()  # next verdict only after another full period
            return True
        return False
