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
        # (symbol, ts) -> (values last sent, generation of the last stream bar for it or 0)
        self._sent: "collections.OrderedDict[tuple[str, int], tuple[tuple, int]]" = collections.OrderedDict()
        self._gen = 0
        self._remember = remember
        self.last_seen: dict[str, int] = {}
        self.counts = collections.Counter()
        self.on_bar: Optional[Callable[[dict], None]] = None
        self.state = "starting"

    def mark(self) -> int:
        """A point in the stream's history: take it before a REST request, pass it to
        :meth:`publish` as ``stream_since`` with the request's bars."""
        with self._lock:
            return self._gen

    def publish(self, bar: dict, *, stream_since: Optional[int] = None) -> bool:
        """Send ``bar`` unless the very same values were already sent. Returns True if sent.

        ``stream_since`` (backfill bars): if the stream delivered this minute after that
        :meth:`mark`, the REST answer may be older than the stream's version (a correction that
        arrived while the request was in flight) and the stream delivers any later one in
        order, so the backfill bar is not sent (it would otherwise replace the correction)."""
        key = (bar["symbol"], int(bar["timestamp_ms"]))
        vals = protocol.bar_values(bar)
        with self._lock:
            self.counts[f"received_{bar.get('source')}"] += 1
            prev_vals, stream_gen = self._sent.get(key, (None, 0))
            if bar.get("source") == "stream":
                self._gen += 1
                stream_gen = self._gen
            if prev_vals == vals:
                self._sent[key] = (vals, stream_gen)
                self.counts["duplicates_suppressed"] += 1
                return False
            if stream_since is not None and stream_gen > stream_since:
                self.counts["backfill_superseded"] += 1
                return False
            self._sent[key] = (vals, stream_gen)
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
