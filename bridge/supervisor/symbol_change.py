"""The launcher's side of a live symbol change: ``--subscribe LIST`` / ``--unsubscribe LIST``
reach the launcher running on the same runtime directory (its lock says whether one runs) through
its sidecar's control endpoint (``bridge/control_endpoint.py``), and the symbol list the supervisor shows
and restarts the sidecar with."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from typing import Callable

from bridge.exitcodes import ExitCode
from bridge.supervisor import runtime
from bridge.supervisor.settings import PROG, Settings


def launcher_running(s: Settings) -> bool:
    """True while a launcher holds the runtime directory's lock (``launcher.lock``)."""
    try:
        fd = os.open(s.runtime_dir / "launcher.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops a lock taken just now: the file stays the launcher's
    return False


def current_symbols(s: Settings) -> list[str]:
    """The symbols now: the last live change of this launcher run, else the configured ones."""
    try:
        data = json.loads(s.live_symbols_file.read_text())
        symbols = data["symbols"]
        if isinstance(symbols, list) and symbols and all(isinstance(x, str) for x in symbols):
            return symbols
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return list(s.symbols)


def change(s: Settings, say: Callable[[str], None] = print) -> int:
    """``--subscribe``/``--unsubscribe``: 0 and one sentence of what changed, 1 when no launcher
    (or no sidecar) is there to ask, 2 when the sidecar refused the change (and why)."""
    from bridge import control_endpoint

    op, symbols = s.action, s.change_symbols
    if not launcher_running(s):
        say(f"{PROG}: error: no launcher is running on {s.runtime_dir}, so there is nothing to {op} to: start it "
            f"with --symbols, or set SYMBOLS in {s.config_file}.")
        return ExitCode.FAILURE
    pid = runtime.read_pid(s.runtime_dir / "launcher.lock")
    try:
        answer = control_endpoint.request(s.control_socket, op, symbols)
    except (OSError, ValueError) as e:
        say(f"{PROG}: error: the launcher (pid {pid}) runs but its sidecar does not answer on {s.control_socket} "
            f"({getattr(e, 'strerror', None) or e}): it is starting, restarting or waiting for the open; try again "
            "in a few seconds.")
        return ExitCode.FAILURE
    if not answer.get("ok"):
        say(f"{PROG}: error: {answer.get('error') or 'the sidecar refused the change.'}")
        return ExitCode.CONFIG
    say(f"{PROG}: {answer.get('message')} (launcher pid {pid}; until it stops, sidecar restarts included)")
    return ExitCode.OK


def main_change(s: Settings) -> int:
    """The CLI entry: sentences to stdout on success, stderr on failure."""
    out: list[str] = []
    rc = change(s, out.append)
    print("\n".join(out), file=sys.stdout if rc == 0 else sys.stderr, flush=True)
    return rc
