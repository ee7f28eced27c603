"""Flapping: more than ``threshold`` events (restarts, reconnects) within ``window`` seconds. The
one implementation, for the supervisor's restarts (``FLAP_THRESHOLD``/``FLAP_WINDOW``) and the
live source's reconnects. Times are monotonic seconds. Standard library only."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Deque, Optional

#: The defaults of ``FLAP_THRESHOLD`` and ``FLAP_WINDOW`` (the sidecar's reconnects use the same).
DEFAULT_THRESHOLD = 3
DEFAULT_WINDOW = 600.0


@dataclass
class FlapDetector:
    """Events within the last ``window`` seconds; more than ``threshold`` of them is a flapping
    episode, reported once (``episodes`` counts them)."""

    threshold: int = DEFAULT_THRESHOLD
    window: float = DEFAULT_WINDOW
    episodes: int = 0
    flapping: bool = False
    _times: Deque[float] = field(default_factory=collections.deque)

    def record(self, now: float) -> None:
        """One event at ``now``."""
        self._times.append(now)

    def check(self, now: float) -> Optional[int]:
        """The number of events in the window when a flapping episode starts, else None; the
        episode ends when the window holds ``threshold`` or fewer."""
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        n = len(self._times)
        if n <= self.threshold:
            self.flapping = False
            return None
        if self.flapping:
            return None
        self.flapping = True
        self.episodes += 1
        return n

    def note(self, now: float) -> Optional[int]:
        """:meth:`record` then :meth:`check`."""
        self.record(now)
        return self.check(now)
