"""Alerts: a one-line JSON payload, logged, and given to ``ALERT_CMD`` (``bash -c``) as ``$1`` and
on stdin."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable

EVENTS = ("stale", "restart", "flap", "give_up")


def payload(event: str, process: str, message: str, context: dict[str, Any]) -> str:
    """The alert as one JSON line (any character in ``message`` is escaped by ``json``)."""
    return json.dumps({"event": event, "process": process, "message": message, **context},
                      separators=(",", ":"), ensure_ascii=False)


def local_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Alerter:
    """Sends alerts; ``context`` adds the supervisor's fields (mode, ts, restarts, run_dir)."""

    def __init__(self, command: str, timeout: float, output: Path, log: Callable[[str], None],
                 context: Callable[[], dict[str, Any]]) -> None:
        self.command = command
        self.timeout = timeout
        self.output = output
        self.log = log
        self.context = context
        self.sent = 0

    async def send(self, event: str, process: str, message: str) -> None:
        line = payload(event, process, message, self.context())
        self.sent += 1
        self.log(f"ALERT {line}")
        if not self.command:
            return
        with open(self.output, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", self.command, "alert", line, stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out)
        try:
            await asyncio.wait_for(proc.communicate((line + "\n").encode()), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            self.log(f"error: ALERT_CMD did not finish within {self.timeout:g} s and was killed")
            return
        if proc.returncode:
            self.log(f"error: ALERT_CMD failed (exit {proc.returncode}; its output is in {self.output})")
