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
        self.symbols = list(symbols)
        self.native = barbridge.Publisher(sink.native)
        self.submit_alpaca = self.native.submit_alpaca  # one stream message → one call into Rust
        self.submit_backfill = self.native.submit_backfill
        self.publish: Callable[[BarDict], bool] = self.native.submit_bar  # a bar dict (replay, synthetic)
        self.mark = self.native.mark
        self.last_seen = self.native.last_seen
        self.state = "starting"

    @property
    def counts(self) -> dict[str, int]:
        return self.native.counts()

    def status(self, state: str, detail: str = "", *, level: int = logging.INFO) -> None:
        self.state = state
        log.log(level, "status %s%s", state, f": {detail}" if detail else "")
        self.native.status(state, detail)
