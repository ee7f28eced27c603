"""``NATS=local``: a ``nats-server`` with JetStream run by the launcher on 127.0.0.1, its storage
under the run directory. The NATS work itself (publishing, checking) is the Rust consumer's."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

READY_TIMEOUT = 15.0
INSTALL_HINT = "install it (Debian: apt-get install nats-server), or set NATS_URL to an existing server"


def binary() -> Optional[str]:
    """The ``nats-server`` executable on PATH, or None."""
    return shutil.which("nats-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def argv(server: str, port: int, store: Path) -> list[str]:
    """The server's command line: JetStream on, files under ``store``, listening on 127.0.0.1 only,
    no monitoring port."""
    return [server, "--jetstream", "--store_dir", str(store), "--addr", "127.0.0.1", "--port", str(port),
            "--server_name", "barbridge-local"]


def url(port: int) -> str:
    return f"nats://127.0.0.1:{port}"


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_ready(port: int, proc: asyncio.subprocess.Process, timeout: float = READY_TIMEOUT) -> Optional[str]:
    """Wait until the server accepts connections; None when it does, else why not (one sentence)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            return f"nats-server exited at start (exit {proc.returncode})"
        if await asyncio.to_thread(accepts, port):
            return None
        await asyncio.sleep(0.05)
    return f"nats-server did not accept connections on 127.0.0.1:{port} within {timeout:g} s"
