"""``NATS=local``: a ``nats-server`` with JetStream run by the launcher on 127.0.0.1, its storage
under the run directory. The NATS work itself (publishing, checking) is the Rust consumer's.

Secure by default: the server's config (``<runtime>/nats/server.conf``, 0600) is written with two
identities whose passwords are new every launcher run (``secrets``): ``barbridge-publisher``, the
launcher's consumer, may publish to ``bars.>`` and use the JetStream API; ``barbridge-subscriber``
may read the stream through a durable consumer and write its lease, and never publish to ``bars.>``
(the server's own permissions enforce it). A client without credentials is refused. Each identity's
password is in ``<runtime>/nats/<identity>.password`` (0600) and the URL in ``<runtime>/nats/url``,
where a local subscriber finds them (README, NATS)."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

READY_TIMEOUT = 15.0
INSTALL_HINT = "install it (Debian: apt-get install nats-server), or set NATS_URL to an existing server"
DEFAULT_PORT = 4222
PUBLISHER = "barbridge-publisher"
SUBSCRIBER = "barbridge-subscriber"
STREAM = "BARS"
LEASES = "BARBRIDGE_LEASES"

# config.env keys → the consumer's BARBRIDGE_NATS_* variables (with NATS_URL, for your own server)
CLIENT_KEYS = ("USER", "PASSWORD", "PASSWORD_FILE", "TOKEN", "TOKEN_FILE", "NKEY", "NKEY_FILE", "CREDS", "TLS", "CA", "CERT",
               "KEY")


def nats_dir(runtime_dir: Path) -> Path:
    """Where the local server's config, the identities' passwords and the URL are."""
    return runtime_dir / "nats"


def password_file(runtime_dir: Path, identity: str) -> Path:
    return nats_dir(runtime_dir) / f"{identity.removeprefix('barbridge-')}.password"


def permissions() -> dict[str, dict[str, dict[str, list[str]]]]:
    """nats-server permissions per identity. The subscriber's are what ``barbridge run --source`` and
    ``NatsFeed`` use on stream BARS (src/nats/subscribe.rs, lease.rs), nothing that writes a bar:
    no publish to ``bars.>``, no stream creation or change (a stream's republish could write one)."""
    js = "$JS.API"
    subscriber = {
        "publish": {
            "allow": [f"{js}.INFO", f"{js}.STREAM.INFO.{STREAM}", f"{js}.STREAM.INFO.{LEASES}",
                      f"{js}.CONSUMER.INFO.{STREAM}.*", f"{js}.CONSUMER.CREATE.{STREAM}.>",
                      f"{js}.CONSUMER.DURABLE.CREATE.{STREAM}.*", f"{js}.CONSUMER.MSG.NEXT.{STREAM}.*",
                      f"$JS.ACK.{STREAM}.>", f"{js}.STREAM.MSG.GET.{LEASES}",
                      f"{js}.STREAM.MSG.DELETE.{LEASES}", f"barbridge.lease.{STREAM}.>"],
            "deny": ["bars.>"],
        },
        "subscribe": {"allow": ["_INBOX.>", "bars.>"]},
    }
    publisher = {
        "publish": {"allow": ["bars.>", f"{js}.>"]},
        "subscribe": {"allow": ["_INBOX.>"]},
    }
    return {PUBLISHER: publisher, SUBSCRIBER: subscriber}


def write_config(runtime_dir: Path, port: int, store: Path) -> Path:
    """Generate this run's passwords and write the server config, one password file per identity
    and the URL (all 0600, in a private directory); the config's path."""
    import barbridge  # type: ignore[import-not-found]  # the crate's private-file rules; loaded when needed
    d = nats_dir(runtime_dir)
    barbridge.ensure_private_dir(str(d))
    perms = permissions()
    users = []
    for identity in (PUBLISHER, SUBSCRIBER):
        password = secrets.token_urlsafe(32)
        barbridge.write_private_file(str(d), password_file(runtime_dir, identity).name, (password + "\n").encode())
        users.append({"user": identity, "password": password, "permissions": perms[identity]})
    # JSON is valid nats-server config syntax
    config = {"listen": f"127.0.0.1:{port}", "server_name": "barbridge-local",
              "jetstream": {"store_dir": str(store)}, "authorization": {"users": users}}
    barbridge.write_private_file(str(d), "server.conf", (json.dumps(config, indent=1) + "\n").encode())
    barbridge.write_private_file(str(d), "url", (url(port) + "\n").encode())
    return d / "server.conf"


def remove_config(runtime_dir: Path) -> None:
    """At exit: the config, passwords and URL of a server that no longer runs."""
    d = nats_dir(runtime_dir)
    for name in ("server.conf", "url", password_file(runtime_dir, PUBLISHER).name, password_file(runtime_dir, SUBSCRIBER).name):
        (d / name).unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:
        pass


def subscriber_hint(runtime_dir: Path, port: int) -> str:
    """The command line a local subscriber uses (no secret on it: the password stays in its file)."""
    return (f"barbridge run --source {url(port)} --nats-user {SUBSCRIBER} --nats-password-file "
            f"{password_file(runtime_dir, SUBSCRIBER)} --durable NAME --journal DIR --status-file FILE")


def client_env(env: dict[str, str], runtime_dir: Path, port: int, local: bool, nats_url: str,
               url_var: str = "BARBRIDGE_PUBLISH") -> dict[str, str]:
    """The consumer's (or ``nats-check``'s) environment for NATS: the URL in ``url_var`` (a
    password in it stays off the command line) and the credentials as ``BARBRIDGE_NATS_*``: the
    local publisher identity with ``NATS=local``, else the ``NATS_*`` keys of config.env."""
    out = {k: v for k, v in env.items() if not k.startswith("BARBRIDGE_NATS_")}
    if local:
        out.update({url_var: url(port), "BARBRIDGE_NATS_USER": PUBLISHER,
                    "BARBRIDGE_NATS_PASSWORD_FILE": str(password_file(runtime_dir, PUBLISHER))})
    elif nats_url:
        out[url_var] = nats_url
        for key in CLIENT_KEYS:
            if env.get(f"NATS_{key}", "").strip():
                out[f"BARBRIDGE_NATS_{key}"] = env[f"NATS_{key}"]
    return out


def binary() -> Optional[str]:
    """The ``nats-server`` executable on PATH, or None."""
    return shutil.which("nats-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def argv(server: str, config: Path) -> list[str]:
    """The server's command line: everything (127.0.0.1:port, JetStream under the store, the
    identities; no monitoring port) is in ``config`` (:func:`write_config`)."""
    return [server, "--config", str(config)]


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
