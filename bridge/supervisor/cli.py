"""Entry point: ``run`` (the supervisor), ``--check`` (preflight only), ``--status``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from bridge.config import ConfigError
from bridge.supervisor import display, runtime, settings
from bridge.supervisor.app import Log, Supervisor
from bridge.supervisor.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def check(s: Settings, log: Log) -> int:
    """Preflight only: the build, then ``bridge.preflight`` (credentials, CA bundle, stream, FIFO)."""
    if not os.access(s.consumer_bin, os.X_OK):
        log(f"error: the consumer {s.consumer_bin} is not built. Fix: run cargo build --release --bin barbridge.")
        return 2
    try:
        import barbridge  # type: ignore[import-not-found]
        _ = barbridge.FifoWriter
    except (ImportError, AttributeError):
        log("error: the Python extension barbridge (the sidecar's FIFO writer) is not built. "
            "Fix: run scripts/ensure_extension.sh.")
        return 2
    print(f"preflight ({s.mode} mode):\n  ok    python: {sys.version.split()[0]} in .venv/\n"
          f"  ok    consumer: {s.consumer_bin}", flush=True)
    env = {**s.env, "PYTHONPATH": str(s.repo)}
    rc = subprocess.run([s.python, "-m", "bridge.preflight", "--mode", s.mode, "--fifo", str(s.fifo), "--feed", s.feed],
                        env=env, cwd=s.repo).returncode
    if rc == 0:
        print("preflight: all checks passed")
        return 0
    return 2


def status(s: Settings) -> int:
    """The consumer's status (``barbridge status``) and the supervisor's state, for a person.
    Exit 0 while the launcher runs, 1 if it does not."""
    state = display.read_json(s.state_file)
    if state is None:
        print(f"barbridge launcher: not running (no {s.state_file}).")
        return 1
    pid = state.get("launcher_pid")
    running = isinstance(pid, int) and runtime.alive(pid)
    if not running:
        print(f"barbridge launcher: pid {pid} is not running (stale {s.state_file}).")
    sys.stdout.flush()
    subprocess.run([str(s.consumer_bin), "status", "--status-file", str(s.status_file)])
    print()
    print(display.render_state(state, running))
    return 0 if running else 1


def main(argv: Optional[list[str]] = None) -> int:
    log = Log()
    try:
        s = settings.load(argv, dict(os.environ), REPO)
    except settings.HelpShown:
        return 0
    except ConfigError as e:
        log(f"error: {e}")
        return 2
    if s.config_loaded and s.config_file.stat().st_mode & 0o077:
        log(f"warning: {s.config_file} is readable by other users and may hold API keys. "
            f"Fix: chmod 600 {s.config_file}.")
    if s.action == "status":
        return status(s)
    if s.action == "check":
        return check(s, log)
    return asyncio.run(Supervisor(s, log).main())
