"""One instance per runtime directory and per run directory: lock files held by the supervisor,
pid files of its children, and detection of children an earlier launcher left running."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from bridge.config import ConfigError

CHILDREN = ("consumer", "sidecar")


class LockTaken(Exception):
    """Another live process holds the lock; ``pid`` is what it wrote into the file (if readable)."""

    def __init__(self, pid: Optional[int]) -> None:
        super().__init__(f"locked by pid {pid}")
        self.pid = pid


class InstanceLock:
    """An exclusive ``flock`` on ``path`` for as long as this process lives (the kernel releases it
    when the process dies, however it dies), with the holder's pid written inside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LockTaken(read_pid(self.path)) from None
            try:  # the holder before us may have unlinked the file while we waited: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


def read_pid(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """True for a running process (a zombie is not running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def leftover_children(runtime_dir: Path, fifo: Path) -> dict[str, int]:
    """Children of an earlier launcher still running on ``fifo`` (per their pid files); pid files of
    processes that are gone (or are something else now) are removed."""
    found = {}
    for name in CHILDREN:
        pid_file = runtime_dir / f"{name}.pid"
        pid = read_pid(pid_file)
        if pid is None:
            continue
        if alive(pid) and str(fifo) in _cmdline(pid):
            found[name] = pid
        else:
            pid_file.unlink(missing_ok=True)
    return found


def prepare_private_dir(path: Path) -> None:
    """Create ``path`` (0700, with its missing parents) or check an existing one by the crate's
    private-directory rules (``src/private.rs``, through the extension): a real directory of ours
    that others cannot write, under directories only we or root can change. Anything else is
    refused (never tightened: what others may already have put in it stays untrusted) with a
    ConfigError of one sentence."""
    import barbridge  # type: ignore[import-not-found]  # the crate's rules; loaded when a launcher runs

    try:
        barbridge.ensure_private_dir(path)
    except ValueError as e:
        raise ConfigError(f"runtime directory refused: {e}.", "set BARBRIDGE_RUNTIME_DIR to a private directory of "
                          "yours") from None
