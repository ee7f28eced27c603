"""Child processes of the supervisor (asyncio subprocesses) that die with it: each one asks the
kernel for SIGTERM when the supervisor goes away, even by SIGKILL (``PR_SET_PDEATHSIG``), so a
killed launcher never leaves a consumer and a sidecar running on the FIFO."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import signal
import time
from pathlib import Path
from typing import Callable, Optional

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with(parent: int) -> None:
    """Runs in the child between fork and exec: SIGTERM when the parent dies; and if it already
    has, exit now."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def exit_code(returncode: int) -> int:
    """A shell-style exit code: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


async def spawn(argv: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path,
                stdin: Optional[int] = asyncio.subprocess.DEVNULL, new_session: bool = False) -> asyncio.subprocess.Process:
    """Start ``argv`` with stdout/stderr appended to files; it dies with this process. A
    ``new_session`` child does not get the terminal's Ctrl-C: it is stopped when the supervisor says."""
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=out, stderr=err, env=env, cwd=str(cwd), start_new_session=new_session,
            preexec_fn=functools.partial(_die_with, os.getpid()))


async def run(argv: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, stderr: Path,
              timeout: Optional[float] = None) -> int:
    """Run ``argv`` to the end (killed after ``timeout``; cancelling kills it too); its exit code."""
    proc = await spawn(argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    try:
        return exit_code(await asyncio.wait_for(proc.wait(), timeout))
    except (asyncio.TimeoutError, asyncio.CancelledError):
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise


class Child:
    """A supervised process: started again and again by the supervisor, with a pid file."""

    def __init__(self, name: str, pid_file: Path, log_file: Path) -> None:
        self.name = name
        self.pid_file = pid_file
        self.log_file = log_file
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.started = 0.0  # monotonic

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, argv: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, new_session: bool = False) -> int:
        self.proc = await spawn(argv, env=env, cwd=cwd, stdout=stdout, stderr=self.log_file, new_session=new_session)
        self.started = time.monotonic()
        self.pid_file.write_text(f"{self.proc.pid}\n")
        return self.proc.pid

    def reap(self) -> Optional[int]:
        """The exit code if the process has ended (then it is forgotten), else None."""
        if self.proc is None or self.proc.returncode is None:
            return None
        rc = exit_code(self.proc.returncode)
        self.proc = None
        self.pid_file.unlink(missing_ok=True)
        return rc

    async def stop(self, timeout: float, log: Callable[[str], None]) -> None:
        """SIGTERM (and SIGCONT, for a stopped process), SIGKILL after ``timeout`` s; reaped."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout)
            except asyncio.TimeoutError:
                log(f"{self.name} (pid {proc.pid}) did not stop within {timeout:g}s: killing it")
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
                await proc.wait()
        self.proc = None
        self.pid_file.unlink(missing_ok=True)

    def last_message(self) -> str:
        """What the process said last: the sidecar's last ``error:`` line, the consumer's last line."""
        try:
            lines = self.log_file.read_bytes()[-65536:].decode(errors="replace").splitlines()
        except OSError:
            return ""
        if self.name == "sidecar":
            lines = [x for x in lines if "error:" in x]
        return lines[-1].strip() if lines else ""
