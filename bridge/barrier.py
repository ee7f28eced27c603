"""The minute barrier's clock in the sidecar (docs/ARCHITECTURE.md, "Minute barrier").

The barrier itself is Rust (``barbridge.Publisher.minute_barrier``): every bar handed to the sink
is noted there, and a minute whose every subscribed, non-halted symbol has its bar closes at
once, as ``minute_closed`` line(s) after its bars. A minute with symbols still missing closes at
its deadline; nothing arrives to trigger that, so this thread asks the publisher a few times a
second (``tick_minutes``, which releases the GIL: the SDK's event loop never waits for it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

log = logging.getLogger("bridge.barrier")

#: Seconds between deadline checks: a minute closes at most this late after its deadline.
TICK = 0.2


class MinuteTicker:
    """Calls ``native.tick_minutes()`` every :data:`TICK` seconds until :meth:`stop`."""

    def __init__(self, native: Any, interval: float = TICK) -> None:
        self.native = native
        self.interval = interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="minute-barrier", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.native.tick_minutes()
            except Exception:  # never let the clock die: a dead ticker would stop every deadline
                self.errors += 1
                if self.errors <= 5 or self.errors % 1000 == 0:
                    log.exception("minute barrier tick failed (%d so far)", self.errors)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            self.native.tick_minutes()  # what is due now still closes before the sink flushes
        except Exception:
            log.exception("minute barrier: last tick failed")
