"""The path every bar takes from a source to the sink (any thread; never blocks)."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Optional

from . import protocol
from .sinks import Sink

log = logging.getLogger("bridge")


class Publisher:
    """Tracks the last bar seen per symbol (backfill starts there), suppresses exact
    duplicates (a backfilled minute the stream already delivered), and forwards to the sink."""

    def __init__(self, sink: Sink, symbols: list[str], *, remember: int = 50_000) -> None:
        self.sink = sink
        self.symbols = list(symbols)
        self._lock = threading.Lock()
        self._sent: "collections.OrderedDict[tuple[str, int], tuple]" = collections.OrderedDict()
        self._remember = remember
        self.last_seen: dict[str, int] = {}
        self.counts = collections.Counter()
        self.on_bar: Optional[Callable[[dict], None]] = None
        self.state = "starting"

    def publish(self, bar: dict) -> bool:
        """Send ``bar`` unless the very same values were already sent. Returns True if sent."""
        key = (bar["symbol"], int(bar["timestamp_ms"]))
        vals = protocol.bar_values(bar)
        with self._lock:
            self.counts[f"received_{bar.get('source')}"] += 1
            if self._sent.get(key) == vals:
                self.counts["duplicates_suppressed"] += 1
                return False
            self._sent[key] = vals
            self._sent.move_to_end(key)
            while len(self._sent) > self._remember:
                self._sent.popitem(last=False)
            if key[1] > self.last_seen.get(key[0], 0):
                self.last_seen[key[0]] = key[1]
            self.counts["published"] += 1
        self.sink.submit_bar(bar)
        if self.on_bar:
            self.on_bar(bar)
        return True

    def status(self, state: str, detail: str = "", *, level: int = logging.INFO) -> None:
        self.state = state
        log.log(level, "status %s%s", state, f": {detail}" if detail else "")
        self.sink.submit_status(state, detail)
