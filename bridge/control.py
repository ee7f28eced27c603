"""The sidecar's control endpoint: subscribe and unsubscribe symbols while it runs (README,
"Changing symbols while running").

A Unix socket (mode 0600) in a private directory (0700, the FIFO's: ``barbridge.ensure_private_dir``,
the crate's rules), one JSON line per request and one per answer::

    {"op": "subscribe", "symbols": ["QQQ", "IWM"]}   {"op": "unsubscribe", "symbols": ["SH"]}
    {"op": "symbols"}
    -> {"ok": true, "symbols": [...now...], "added": [...], "removed": [...], "message": "one sentence"}
    -> {"ok": false, "error": "one sentence"}

Requests are served one at a time on the ``control`` thread, which calls the source's
``change_symbols``: never a handler of the SDK's loop (subscribing from one deadlocks). Symbols are
checked by the wire protocol's rule (``barbridge.validate_symbol``). After every change the
current list is written to the state file (atomic, 0600); a sidecar started with that file takes
its list from it, so a restart by the supervisor keeps the change.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any, Optional, Protocol

import barbridge  # type: ignore[import-not-found]

log = logging.getLogger("bridge.control")

MAX_REQUEST_BYTES = 1 << 20  # a full-market list (10,000 symbols) is about 70 KB
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request


class ControlError(Exception):
    """The endpoint cannot be set up (one sentence)."""


class SymbolSource(Protocol):
    """A source whose symbols can change while it runs."""

    symbols: list[str]

    def change_symbols(self, add: list[str], remove: list[str]) -> None:
        """Subscribe ``add`` and unsubscribe ``remove`` (disjoint, already checked) from a thread
        that is not the SDK's; ``symbols`` is the new list when it returns."""


def check_symbols(symbols: object) -> list[str]:
    """The request's symbols (a non-empty list of strings), each by the wire rule; ValueError with
    one sentence otherwise. Order kept, duplicates dropped."""
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise ValueError("the request needs \"symbols\": a non-empty list of symbols")
    out: list[str] = []
    for s in symbols:
        try:
            barbridge.validate_symbol(s)
        except ValueError:
            raise ValueError(f"{s!r} is not a valid symbol (1-32 printable characters, upper case, no space, "
                             "e.g. QQQ or BRK.B)") from None
        if s not in out:
            out.append(s)
    return out


def read_state(path: Path) -> Optional[list[str]]:
    """The symbol list a live change left in ``path``; None if there is none. ValueError (one
    sentence) for a file that is not a regular file of ours, or not a list of valid symbols."""
    try:
        raw = barbridge.read_private_file(path, MAX_REQUEST_BYTES)  # the crate's private-file rules
    except ValueError as e:
        raise ValueError(f"the live symbol list is unusable: {e}; remove it.") from None
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError(f"the live symbol list {path} is not JSON; remove it.") from None
    try:
        return check_symbols(data.get("symbols") if isinstance(data, dict) else None)
    except ValueError as e:
        raise ValueError(f"the live symbol list {path} is unusable: {e}; remove it.") from None


def write_state(path: Path, symbols: list[str]) -> None:
    """``{"symbols": [...]}`` into ``path``, atomically, by the crate's private-file rules."""
    barbridge.write_private_file(path.parent, path.name, json.dumps({"symbols": symbols}).encode() + b"\n")


def request(path: Path, op: str, symbols: Optional[list[str]] = None, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the endpoint at ``path``; its answer. OSError when nobody answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps({"op": op, **({"symbols": symbols} if symbols is not None else {})}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data) if data.strip() else None
    if not isinstance(answer, dict):
        raise OSError(f"the control endpoint {path} gave no answer")
    return answer


class ControlServer:
    """Serves the requests on ``path`` until :meth:`stop`; changes go to ``source``, the resulting
    list to ``state_file`` (if any) and to ``on_change(added, removed, now)``."""

    def __init__(self, path: Path, source: SymbolSource, state_file: Optional[Path] = None,
                 on_change: Any = None) -> None:
        self.path = path
        self.source = source
        self.state_file = state_file
        self.on_change = on_change
        self.changes = 0
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def bind(self) -> None:
        """Create the socket; ControlError when the directory is not private or another process
        answers on ``path``."""
        try:
            barbridge.ensure_private_dir(str(self.path.parent))
        except ValueError as e:
            raise ControlError(f"the control socket's directory is refused: {e}.") from None
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
                raise ControlError(f"{self.path} exists and is not a socket of this user; remove it or choose "
                                   "another --control path.")
            try:
                request(self.path, "symbols", timeout=2)
            except (OSError, ValueError):
                self.path.unlink()  # left by a sidecar that died
            else:
                raise ControlError(f"another sidecar answers on the control socket {self.path}; stop it first.")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600 (this only ever clears bits beyond 0600)
        try:
            sock.bind(str(self.path))
        except OSError as e:
            sock.close()
            raise ControlError(f"cannot create the control socket {self.path} ({e.strerror or e}).") from None
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.25)
        self._sock = sock

    def start(self) -> None:
        if self._sock is None:
            self.bind()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.info("control endpoint on %s (subscribe/unsubscribe symbols while running)", self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            with conn:
                try:
                    self._answer(conn)
                except OSError as e:
                    log.warning("control request abandoned: %s", e)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT)
        data = b""
        while b"\n" not in data and len(data) <= MAX_REQUEST_BYTES:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        try:
            req = json.loads(data.split(b"\n", 1)[0]) if len(data) <= MAX_REQUEST_BYTES else None
        except ValueError:
            req = None
        answer = self.handle(req) if isinstance(req, dict) else {
            "ok": False, "error": "the request is not one JSON object on one line (at most 1 MiB)."}
        conn.sendall(json.dumps(answer).encode() + b"\n")

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request → its answer (see the module doc)."""
        op = req.get("op")
        now = list(self.source.symbols)
        if op == "symbols":
            return {"ok": True, "symbols": now, "added": [], "removed": [], "message": "symbols " + ",".join(now)}
        if op not in ("subscribe", "unsubscribe"):
            return {"ok": False, "error": f"unknown op {op!r}: use subscribe, unsubscribe or symbols."}
        try:
            wanted = check_symbols(req.get("symbols"))
        except ValueError as e:
            return {"ok": False, "error": f"{e}."}
        if op == "subscribe":
            add, remove = [s for s in wanted if s not in now], []
        else:
            unknown = [s for s in wanted if s not in now]
            if unknown:
                return {"ok": False, "error": f"{','.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                        f"subscribed (subscribed: {','.join(now)})."}
            add, remove = [], wanted
            if len(remove) == len(now):
                return {"ok": False, "error": "cannot unsubscribe every symbol: the stream needs at least one "
                        "(subscribe the new ones first)."}
        if not add and not remove:
            return {"ok": True, "symbols": now, "added": [], "removed": [],
                    "message": f"nothing to change: {','.join(wanted)} already subscribed."}
        self.source.change_symbols(add, remove)
        now = list(self.source.symbols)
        self.changes += 1
        what = " ".join(filter(None, ["+" + ",".join(add) if add else "", "-" + ",".join(remove) if remove else ""]))
        saved = ""
        if self.state_file is not None:
            try:
                write_state(self.state_file, now)
                saved = f"; kept for restarts in {self.state_file}"
            except OSError as e:
                log.error("cannot write the live symbol list %s (%s): a restarted sidecar would subscribe the "
                          "configured symbols", self.state_file, e.strerror or e)
        log.info("symbols changed live: %s; now %s%s", what, ",".join(now), saved)
        if self.on_change is not None:
            self.on_change(add, remove, now)
        verb = "subscribed " + ",".join(add) if add else "unsubscribed " + ",".join(remove)
        return {"ok": True, "symbols": now, "added": add, "removed": remove,
                "message": f"{verb}; symbols now {','.join(now)}."}
