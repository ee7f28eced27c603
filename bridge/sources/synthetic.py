"""Synthetic source: realistic random-walk minute bars for any symbols (offline demo/tests)."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from typing import TYPE_CHECKING, Optional

from ..config import DEMO_HISTORY_MINUTES, HALT_MINUTES
from ..protocol import MINUTE_MS
from ..gate import BarGate

if TYPE_CHECKING:
    from barbridge import BarDict

log = logging.getLogger("bridge.synthetic")
#: Seconds after a minute's end its bar is produced once caught up (Alpaca: about a second).
CLOSE_DELAY = 1.0
BASE = {"SPY": 671.0, "SPXL": 198.0, "SH": 36.5, "SDS": 15.2}
BETA = {"SPY": 1.0, "SPXL": 3.0, "SH": -1.0, "SDS": -2.0}


"""How long a scripted halt lasts by default, in minutes."""


class SyntheticSource:
    """One bar per symbol per minute. Symbols share a market factor (SPXL ≈ 3×SPY, SH ≈ −1×,
    SDS ≈ −2×) plus idiosyncratic noise; OHLC comes from sub-minute steps; volume is lognormal.

    ``interval`` wall seconds between minutes (60 = real time, aligned to wall-clock minutes);
    ``count`` minutes then stop (None = forever). The clock never runs ahead of the wall clock: a
    minute is produced only once it has closed. Accelerated (``interval`` < 60) without
    ``start_ms``, it starts ``count`` minutes ago (or ``history`` minutes ago, forever) and
    catches up at ``interval`` seconds per minute, then goes on at one bar per minute, on time.
    Every ``halt_every`` minutes (0 = never) the last symbol is halted for ``halt_minutes`` (a
    trading status, then no bars for it, then a resumption), so the demo shows a halt as a halt."""

    def __init__(self, publisher: BarGate, symbols: list[str], *, interval: float = 60.0,
                 count: Optional[int] = None, seed: Optional[int] = None, start_ms: Optional[int] = None,
                 halt_every: int = 0, halt_minutes: int = HALT_MINUTES, history: int = DEMO_HISTORY_MINUTES) -> None:
        self.pub = publisher
        self.symbols = symbols
        self.interval = interval
        self.count = count
        self.rng = random.Random(seed)
        now_ms = int(time.time() * 1000)
        # real time: the first bar is the minute that just closed; accelerated: catch up from the past
        back = 1 if interval >= 60 else (count if count is not None else history)
        self.ts = (start_ms if start_ms is not None else now_ms - back * MINUTE_MS) // MINUTE_MS * MINUTE_MS
        self.price = {s: BASE.get(s, 20 + self.rng.random() * 300) for s in symbols}
        if halt_every < 0 or 0 < halt_every <= halt_minutes:
            raise ValueError(f"--halt-every {halt_every} must be 0 (never) or more than the {halt_minutes} "
                             "minutes a synthetic halt lasts.")
        self.halt_every, self.halt_minutes = halt_every, halt_minutes
        self._stop = threading.Event()
        self._caught_up = False
        self._lock = threading.Lock()  # the minute's bars vs a live symbol change
        self.done = threading.Event()

    def _trading_status(self, produced: int) -> Optional[str]:
        """The scripted halt: the halted symbol during minute ``produced``, sending its statuses."""
        if not self.halt_every or len(self.symbols) < 2:
            return None
        sym, phase = self.symbols[-1], produced % self.halt_every
        start = self.halt_every - self.halt_minutes
        if phase in (start, 0) and produced >= start:
            halt = phase == start
            self.pub.native.submit_trading_status({
                "T": "s", "S": sym, "sc": "H" if halt else "T", "rc": "T1",
                "rm": "Halt News Pending (synthetic demo halt)" if halt else "", "t": self.ts + 1_000})
        return sym if phase >= start else None

    def _bar(self, sym: str, market: list[float]) -> BarDict:
        beta = BETA.get(sym, 0.3 + self.rng.random())
        p = self.price[sym]
        o = p
        path = [p]
        for m in market:
            p *= math.exp(beta * m + self.rng.gauss(0, 0.0002))
            path.append(p)
        self.price[sym] = p
        o, c = round(o, 2), round(p, 2)
        h = max(round(max(path), 2), o, c)
        lo = min(round(min(path), 2), o, c)
        v = max(1, int(self.rng.lognormvariate(8.5, 0.8) * (2 if sym == "SPY" else 1)))
        n = max(1, v // self.rng.randint(40, 120))
        vw = round(min(max(sum(path) / len(path), lo), h), 4)
        return {"symbol": sym, "timestamp_ms": self.ts, "open": o, "high": h, "low": lo, "close": c,
                "volume": float(v), "vwap": vw, "trade_count": n, "kind": "bar", "source": "synthetic"}

    def run(self) -> int:
        self.pub.status("connected", "synthetic source")
        self.pub.status("subscribed", "synthetic: " + ",".join(self.symbols))
        if self.halt_every and len(self.symbols) >= 2:  # the halted symbol's status now, as on subscribe:
            # a source restarted during its halt (the launcher restarting it) ends that halt
            self.pub.native.submit_trading_status({"T": "s", "S": self.symbols[-1], "sc": "T", "rc": "",
                                                   "rm": "", "t": self.ts})
        produced = 0
        next_at = time.monotonic() + (self.interval if self.interval >= 60 else 0)
        if self.interval >= 60:  # align to the wall-clock minute (+1 s, like Alpaca)
            next_at = time.monotonic() + (60 - time.time() % 60) + 1
        while not self._stop.is_set() and (self.count is None or produced < self.count):
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                break
            ahead = (self.ts + MINUTE_MS) / 1000 - time.time()
            if ahead > 0:  # caught up with the clock: the minute is produced once it has closed
                if not self._caught_up:
                    log.info("synthetic source caught up with the clock: one bar per minute from now on")
                    self._caught_up = True
                if self._stop.wait(ahead + CLOSE_DELAY):
                    break
                next_at = time.monotonic()
            with self._lock:
                market = [self.rng.gauss(0, 0.00035) for _ in range(6)]
                halted = self._trading_status(produced)
                for s in self.symbols:
                    if s != halted:
                        self.pub.publish(self._bar(s, market))
            produced += 1
            self.ts += MINUTE_MS
            next_at += self.interval
        log.info("synthetic source produced %d minute(s)", produced)
        self.done.set()
        return 0

    def change_symbols(self, add: list[str], remove: list[str]) -> None:
        """Live change (the control endpoint): new symbols get bars from the next minute on (a demo
        has no history to backfill)."""
        with self._lock:
            for sym in add:
                self.price.setdefault(sym, BASE.get(sym, 20 + self.rng.random() * 300))
            self.symbols = [s for s in self.symbols if s not in remove] + [s for s in add if s not in self.symbols]
        self.pub.symbols = list(self.symbols)
        self.pub.status("subscribed", "synthetic: " + ",".join(self.symbols))

    def stop(self) -> None:
        self._stop.set()
