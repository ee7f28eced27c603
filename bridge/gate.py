"""The sidecar's bar gate: the path every bar takes from a source to the sink, the extension's
``barbridge.Publisher`` (:class:`BarGate`).

The bookkeeping (normalising Alpaca's messages, validation, duplicate suppression, a backfill
never replacing a newer stream version, the last minute seen per symbol, the staleness clock) is
Rust; this wrapper only adds the sidecar's status lines to its log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from barbridge import BarDict

log = logging.getLogger("bridge")


class BarGate:
    """The sidecar's bar gate: ``barbridge.Publisher`` on ``sink.native`` (a FifoWriter or a
    Consumer); its methods are the native ones (no Python frame per bar)."""

    def __init__(self, sink: Any, symbols: list[str]) -> None:
        import barbridge  # type: ignore[import-not-found]

        self.sink = sink
        self.native = barbridge.Publisher(sink.native)
        self._minutes = False
        self.confirmer: Any = None  # bridge.confirm.Confirmer, when REST confirmation runs (metrics read it)
        self.symbols = list(symbols)
        self.submit_alpaca = self.native.submit_alpaca  # one stream message → one call into Rust
        self.submit_backfill = self.native.submit_backfill
        self.publish: Callable[[BarDict], bool] = self.native.submit_bar  # a bar dict (replay, synthetic)
        self.mark = self.native.mark
        self.last_seen = self.native.last_seen
        self.state = "starting"

    @property
    def symbols(self) -> list[str]:
        return self._symbols

    @symbols.setter
    def symbols(self, symbols: list[str]) -> None:
        """The subscription; a live change reaches the minute barrier at once."""
        self._symbols = list(symbols)
        if self._minutes:
            self.native.minute_symbols(self._symbols)

    def enable_minutes(self, deadline: float, every_minute: bool) -> None:
        """Start the minute barrier over the current symbols (``bridge.barrier``)."""
        self.native.minute_barrier(self._symbols, deadline=deadline, every_minute=every_minute)
        self._minutes = True

    @property
    def counts(self) -> dict[str, int]:
        return self.native.counts()

    def status(self, state: str, detail: str = "", *, level: int = logging.INFO) -> None:
        self.state = state
        log.log(level, "status %s%s", state, f": {detail}" if detail else "")
        self.native.status(state, detail)
