"""Where the sidecar's bars come from: the live Alpaca stream, a replay file, or synthetic bars.

Every source feeds a ``barbridge.Publisher`` and can be stopped. The live source runs on its own
threads until stopped (:class:`LiveSource`); the offline ones run to their end in the caller's
thread (:class:`FiniteSource`).
"""

from __future__ import annotations

from typing import Protocol


class Source(Protocol):
    def stop(self) -> None:
        """Stop producing bars (returns promptly; safe to call twice)."""


class LiveSource(Source, Protocol):
    def start(self) -> None:
        """Connect and stream on the source's own threads; returns at once."""


class FiniteSource(Source, Protocol):
    def run(self) -> int:
        """Produce every bar, then return how many; blocks the calling thread."""
