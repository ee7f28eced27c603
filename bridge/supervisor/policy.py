"""Restart policy, with no processes in it: backoff, when it starts over, when to give up, and when
restarts count as flapping. Times are monotonic seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bridge.exitcodes import GIVE_UP as GIVE_UP_CODES
from bridge.flap import FlapDetector

__all__ = ["Backoff", "FlapDetector", "GIVE_UP_CODES", "RestartPolicy", "Tracked", "Verdict"]


@dataclass(frozen=True)
class Backoff:
    minimum: float
    maximum: float

    def delay(self, failures: int) -> float:
        """Delay before restart number ``failures`` (1-based) of consecutive failures: doubling
        from ``minimum``, at most ``maximum``."""
        d = self.minimum
        while failures > 1 and d < self.maximum:
            d *= 2
            failures -= 1
        return min(d, self.maximum)


@dataclass
class Tracked:
    """Counters of one supervised process."""

    name: str
    failures: int = 0  # consecutive
    restarts: int = 0
    stale_restarts: int = 0
    restart_at: Optional[float] = None


@dataclass(frozen=True)
class Verdict:
    """What to do after an exit: restart after ``delay`` seconds, or give up with ``reason``."""

    delay: float = 0.0
    give_up: Optional[str] = None


@dataclass(frozen=True)
class RestartPolicy:
    backoff: Backoff
    max_restarts: int
    stable_after: float

    def on_exit(self, p: Tracked, rc: int, uptime: float, why: str) -> Verdict:
        """Count the failure (the count starts over after ``stable_after`` of uptime)."""
        if uptime >= self.stable_after:
            p.failures = 0
        p.failures += 1
        if rc in GIVE_UP_CODES.get(p.name, ()):
            return Verdict(give_up=f"the {p.name} stopped with exit {rc}, a configuration/credential error that "
                                   f"restarting cannot fix: {why}")
        if p.failures > self.max_restarts:
            return Verdict(give_up=f"the {p.name} failed {p.failures} times in a row (last exit {rc} after "
                                   f"{uptime:.0f} s; MAX_RESTARTS={self.max_restarts}): giving up. Last message: {why}")
        return Verdict(delay=self.backoff.delay(p.failures))
