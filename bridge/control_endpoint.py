"""The sidecar's control endpoint: subscribe and unsubscribe symbols while it runs (README,
"Changing symbols while running").

A Unix socket (mode 0600) in a private directory (0700, the FIFO's: ``barbridge.ensure_private_dir``,
the crate's rules), one JSON line per request and one per answer::

    {"op": "subscribe", "symbols": ["QQQ", "IWM"]}   {"op": "unsubscribe", "symbols": ["SH"]}
    {"op": "symbols"}
    -> {"ok": true, "symbols": [...now...], "added": [...], "removed": [...], "message": "one sentence"}
    -> {"ok": false, "error": "one sentence"}

Connections are served concurrently (at most ``MAX_CLIENTS``; each request has a deadline of
``REQUEST_DEADLINE`` for the whole line) by the ``control`` thread, and requests are handled one at
a time by the ``control-handler`` thread, which calls the source's ``change_symbols``: never a
handler of the SDK's loop (subscribing from one deadlocks). Any failure answers its request with
an error; the endpoint goes on. Symbols are
checked by the wire protocol's rule (``barbridge.validate_symbol``). After every change the
current list is written to the state file (atomic, 0600); a sidecar started with that file takes
its list from it, so a restart by the supervisor keeps the change.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Optional, Protocol

import barbridge  # type: ignore[import-not-found]

from bridge import config

log = logging.getLogger("bridge.control_endpoint")

MAX_REQUEST_BYTES = 1 << 20  # a full-market list (10,000 symbols) is about 70 KB
REQUEST_DEADLINE = 5.0  # seconds a client has to send its whole request line (and to read the answer)
MAX_NESTING = 8  # arrays/objects inside each other in a request (a real one has 2)
MAX_CLIENTS = 16  # connections open at once; a new one closes the longest-silent
LISTEN_BACKLOG = 128  # connections waiting to be accepted


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
            config.check_symbol(s)  # the wire rule, through the extension
        except config.ConfigError as e:
            raise ValueError(str(e).rstrip(".")) from None
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


class _Throttle:
    """At most ``burst`` log lines per ``window`` seconds for each kind of client-triggered
    warning; the next line that passes says how many were left out."""

    def __init__(self, window: float = 10.0, burst: int = 5) -> None:
        self.window, self.burst = window, burst
        self._seen: dict[str, list[float]] = {}  # kind -> [window start, lines in it, left out]

    def allow(self, kind: str) -> tuple[bool, int]:
        now = time.monotonic()
        w = self._seen.setdefault(kind, [now, 0.0, 0.0])
        if now - w[0] >= self.window:
            w[0], w[1] = now, 0.0
        if w[1] < self.burst:
            w[1] += 1
            left_out, w[2] = int(w[2]), 0.0
            return True, left_out
        w[2] += 1
        return False, 0


def nesting_depth_exceeds(line: bytes, limit: int) -> bool:
    """True when the JSON text ``line`` opens more than ``limit`` arrays/objects inside each other
    (brackets inside strings do not count). Checked before ``json.loads``, whose recursion a deep
    line would exhaust (a line of 200,000 ``[`` raises RecursionError)."""
    depth, in_string, escaped = 0, False, False
    for c in line:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line → its object; ValueError (one sentence) for anything else."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError(f"the request is longer than {MAX_REQUEST_BYTES} bytes")
    if nesting_depth_exceeds(line, MAX_NESTING):
        raise ValueError(f"the request nests more than {MAX_NESTING} arrays/objects")
    try:
        req = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("the request is not JSON") from None
    if not isinstance(req, dict):
        raise ValueError("the request is not a JSON object")
    return req


class _Client:
    """One connection: what it sent so far, its deadline, the answer waiting to be written."""

    __slots__ = ("sock", "buf", "deadline", "opened", "out", "state")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.opened = time.monotonic()
        self.deadline = deadline
        self.out = b""
        self.state = "reading"  # -> "handling" (with the handler thread) -> "writing" -> closed


class ControlServer:
    """Serves the requests on ``path`` until :meth:`stop`; changes go to ``source``, the resulting
    list to ``state_file`` (if any) and to ``on_change(added, removed, now)``.

    Two threads. ``control`` does all the socket work, never blocking: it accepts, reads each
    connection's request line until the request's deadline (``request_deadline`` seconds from
    the connect, for the whole request), and writes answers. At most ``max_clients``
    connections are open; a new one closes the one that has been silent longest (a connection
    whose request is being handled is never closed). ``control-handler`` takes complete
    requests one at a time, so symbol changes are serialised. An exception in either thread
    answers the request at hand with an error and the endpoint goes on; a thread that dies anyway
    is restarted, logged at error level and counted (``stats()``)."""

    def __init__(self, path: Path, source: SymbolSource, state_file: Optional[Path] = None,
                 on_change: Any = None, *, request_deadline: float = REQUEST_DEADLINE,
                 max_clients: int = MAX_CLIENTS, asset: Optional[str] = None) -> None:
        self.path = path
        self.source = source
        self.asset = asset  # "stock" or "crypto": a subscribe of the other shape is refused
        self.state_file = state_file
        self.on_change = on_change
        self.request_deadline = request_deadline
        self.max_clients = max_clients
        self.changes = 0
        self.errors = 0  # requests answered with an internal error
        self.restarts = 0  # threads that died and were started again
        self.closed_idle = 0  # connections closed to make room, or past their deadline
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._clients: dict[int, _Client] = {}  # by fd; only the control thread touches it
        self._requests: queue.Queue[Optional[tuple[_Client, bytes]]] = queue.Queue()
        self._answers: collections.deque[tuple[_Client, bytes]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._throttle = _Throttle()
        self._guard = threading.Lock()

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
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._sock = sock

    def start(self) -> None:
        if self._sock is None:
            self.bind()
        self._start_thread("control", self._serve)
        self._start_thread("control-handler", self._handle_requests)
        log.info("control endpoint on %s (subscribe/unsubscribe symbols while running)", self.path)

    def _start_thread(self, name: str, body: Any) -> None:
        t = threading.Thread(target=self._run_guarded, args=(name, body), name=name, daemon=True)
        self._threads[name] = t
        t.start()

    def _run_guarded(self, name: str, body: Any) -> None:
        """``body`` until :meth:`stop`; if it raises or returns early, log and run it again (after
        a pause growing to 1 s, so a failure that repeats cannot spin)."""
        pause = 0.05
        while not self._stop.is_set():
            try:
                body()
            except BaseException as e:  # noqa: BLE001 (SystemExit/KeyboardInterrupt of a thread included)
                with self._guard:
                    self.restarts += 1
                log.error("control endpoint: the %s thread failed (%s: %s); restarted (%d restart(s) so far)",
                          name, type(e).__name__, e, self.restarts, exc_info=True)
            else:
                if self._stop.is_set():
                    return
                with self._guard:
                    self.restarts += 1
                log.error("control endpoint: the %s thread stopped by itself; restarted (%d restart(s) so far)",
                          name, self.restarts)
            self._stop.wait(pause)
            pause = min(pause * 2, 1.0)

    def alive(self) -> bool:
        """True while both threads run (they restart themselves; False only after :meth:`stop`
        or before :meth:`start`)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads.values())

    def stats(self) -> dict[str, int]:
        """Counts for the sidecar's stats line."""
        return {"control_alive": int(self.alive()), "control_changes": self.changes, "control_errors": self.errors,
                "control_restarts": self.restarts, "control_closed_idle": self.closed_idle}

    def stop(self) -> None:
        self._stop.set()
        self._requests.put(None)
        self._wake()
        for t in self._threads.values():
            t.join(2)
        for c in list(self._clients.values()):
            self._close(c)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except FileNotFoundError:
                pass
        self._wake_r.close()
        self._wake_w.close()

    # ---------------------------------------------------------------- the control thread (I/O only)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed (stopping)

    def _warn(self, kind: str, msg: str, *args: Any) -> None:
        """A warning a client can trigger: rate-limited per kind."""
        ok, left_out = self._throttle.allow(kind)
        if ok:
            log.warning(msg + (f" ({left_out} more like it not logged)" if left_out else ""), *args)

    def _serve(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ, "listen")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            for c in self._clients.values():  # a restarted thread takes over the open connections
                if c.state == "reading":
                    sel.register(c.sock, selectors.EVENT_READ, c)
                elif c.state == "writing":
                    sel.register(c.sock, selectors.EVENT_WRITE, c)
            while not self._stop.is_set():
                try:
                    self._serve_once(sel)
                except Exception as e:  # noqa: BLE001 (the endpoint must outlive any one failure)
                    self._warn("loop", "control endpoint: unexpected error, going on (%s: %s)", type(e).__name__, e)
                    self._stop.wait(0.05)

    def _serve_once(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        reading = [c.deadline for c in self._clients.values() if c.state == "reading"]
        timeout = max(0.0, min([now + 0.5, *reading]) - now)
        for key, _ in sel.select(timeout):
            if key.data == "listen":
                self._accept(sel)
            elif key.data == "wake":
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
            else:
                client: _Client = key.data
                try:
                    if client.state == "reading":
                        self._read(sel, client)
                    elif client.state == "writing":
                        self._write(sel, client)
                except OSError as e:
                    self._warn("client", "control request abandoned: %s", e.strerror or e)
                    self._drop(sel, client)
        while self._answers:
            client, answer = self._answers.popleft()
            client.out, client.state = answer, "writing"
            self._write(sel, client, register=True)
        now = time.monotonic()
        for c in [c for c in self._clients.values() if c.state != "handling" and c.deadline <= now]:
            with self._guard:
                self.closed_idle += 1
            if c.state == "reading":
                self._warn("deadline", "control request not complete within %.0f s: connection closed",
                           self.request_deadline)
                self._send_now(c, {"ok": False, "error": f"the request was not complete within "
                                   f"{self.request_deadline:g} s (one JSON line, sent at once)."})
            self._drop(sel, c)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._sock is not None
        for _ in range(64):  # a bounded batch per round: answers and reads are not starved
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: logged, the backlog keeps the client waiting
                self._warn("accept", "control endpoint cannot accept a connection now (%s)", e.strerror or e)
                self._stop.wait(0.1)
                return
            conn.setblocking(False)
            if len(self._clients) >= self.max_clients and not self._make_room(sel):
                self._send_now(_Client(conn, 0.0), {"ok": False, "error": "the control endpoint is busy with "
                                                    f"{self.max_clients} requests; try again."})
                conn.close()
                continue
            client = _Client(conn, time.monotonic() + self.request_deadline)
            self._clients[conn.fileno()] = client
            sel.register(conn, selectors.EVENT_READ, client)
            try:
                self._read(sel, client)  # a request sent with the connect is taken now
            except OSError:
                self._drop(sel, client)

    def _make_room(self, sel: selectors.BaseSelector) -> bool:
        """Close the connection still sending its request that opened first (the idle or slow
        one); False when every connection is being answered."""
        waiting = [c for c in self._clients.values() if c.state == "reading"]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.opened)
        with self._guard:
            self.closed_idle += 1
        self._warn("full", "control endpoint: %d connections open; closing the oldest that sent no complete "
                   "request", self.max_clients)
        self._send_now(oldest, {"ok": False, "error": "closed: too many connections to the control endpoint "
                               "while this one sent no complete request."})
        self._drop(sel, oldest)
        return True

    def _read(self, sel: selectors.BaseSelector, client: _Client) -> None:
        while True:
            try:
                chunk = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if chunk:
                client.buf += chunk
            end = client.buf.find(b"\n")
            if end >= 0 or not chunk or len(client.buf) > MAX_REQUEST_BYTES:
                line = bytes(client.buf[:end] if end >= 0 else client.buf)
                if not chunk and not line.strip():
                    self._drop(sel, client)  # connected and closed without a request
                    return
                sel.unregister(client.sock)
                client.state, client.buf = "handling", bytearray()
                self._requests.put((client, line))
                return

    def _write(self, sel: selectors.BaseSelector, client: _Client, register: bool = False) -> None:
        try:
            n = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._warn("client", "control answer not delivered: %s", e.strerror or e)
            self._drop(sel, client, registered=not register)
            return
        client.out = client.out[n:]
        if not client.out:
            self._drop(sel, client, registered=not register)
        elif register:
            client.deadline = time.monotonic() + self.request_deadline  # to read the answer
            sel.register(client.sock, selectors.EVENT_WRITE, client)

    @staticmethod
    def _send_now(client: _Client, answer: dict[str, Any]) -> None:
        """Best effort, never blocking: an answer to a connection about to be closed."""
        try:
            client.sock.send(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass

    def _drop(self, sel: selectors.BaseSelector, client: _Client, registered: bool = True) -> None:
        if registered:
            try:
                sel.unregister(client.sock)
            except (KeyError, ValueError):
                pass
        self._close(client)

    def _close(self, client: _Client) -> None:
        try:
            fd = client.sock.fileno()
        except OSError:
            fd = -1
        if self._clients.get(fd) is client:
            del self._clients[fd]
        client.state = "closed"
        client.sock.close()

    # ---------------------------------------------------------------- the handler thread (one request at a time)

    def _handle_requests(self) -> None:
        while not self._stop.is_set():
            item = self._requests.get()
            if item is None:
                return
            client, line = item
            try:
                data = json.dumps(self.answer(line)).encode() + b"\n"
            except Exception as e:  # noqa: BLE001 (the client still gets an answer; the thread goes on)
                with self._guard:
                    self.errors += 1
                log.error("control endpoint: unexpected error answering a request (%s: %s)", type(e).__name__, e,
                          exc_info=True)
                data = json.dumps({"ok": False, "error": f"the request failed in the sidecar ({type(e).__name__}); "
                                   "see its log."}).encode() + b"\n"
            self._answers.append((client, data))
            self._wake()

    def answer(self, line: bytes) -> dict[str, Any]:
        """One request line → its answer; never raises."""
        try:
            req = parse_request(line)
        except ValueError as e:
            return {"ok": False, "error": f"{e}: send one JSON object on one line (at most 1 MiB), e.g. "
                    '{"op": "symbols"}.'}
        try:
            return self.handle(req)
        except Exception as e:  # noqa: BLE001 (any failure answers this request; the endpoint goes on)
            with self._guard:
                self.errors += 1
            log.error("control request %s failed: %s: %s", str(req.get("op"))[:40], type(e).__name__, e,
                      exc_info=True)
            return {"ok": False, "error": f"the request failed in the sidecar ({type(e).__name__}: {e}); "
                    "see its log."}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request → its answer (see the module doc)."""
        op = req.get("op")
        now = list(self.source.symbols)
        if op == "symbols":
            return {"ok": True, "symbols": now, "added": [], "removed": [], "message": "symbols " + ",".join(now)}
        if op not in ("subscribe", "unsubscribe"):
            return {"ok": False, "error": f"unknown op {str(op)[:40]!r}: use subscribe, unsubscribe or symbols."}
        try:
            wanted = check_symbols(req.get("symbols"))
        except ValueError as e:
            return {"ok": False, "error": f"{e}."}
        if op == "subscribe":
            add, remove = [s for s in wanted if s not in now], []
            if self.asset is not None:
                try:
                    config.check_asset_symbols(self.asset, add)  # the extension's shape rule
                except config.ConfigError as e:
                    return {"ok": False, "error": str(e)}
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
        saved, not_saved = "", None
        if self.state_file is not None:
            try:
                write_state(self.state_file, now)
                saved = f"; kept for restarts in {self.state_file}"
            except (OSError, ValueError) as e:  # the change is applied: say that it will not survive a restart
                not_saved = str(getattr(e, "strerror", None) or e).rstrip(".")
                log.error("cannot write the live symbol list %s (%s): a restarted sidecar would subscribe the "
                          "configured symbols", self.state_file, not_saved)
        log.info("symbols changed live: %s; now %s%s", what, ",".join(now), saved)
        if self.on_change is not None:
            try:
                self.on_change(add, remove, now)
            except Exception as e:  # noqa: BLE001 (the change is applied: the answer says so)
                log.error("control endpoint: on_change failed after the change (%s: %s)", type(e).__name__, e,
                          exc_info=True)
        verb = "subscribed " + ",".join(add) if add else "unsubscribed " + ",".join(remove)
        answer: dict[str, Any] = {"ok": True, "symbols": now, "added": add, "removed": remove,
                                  "message": f"{verb}; symbols now {','.join(now)}."}
        if not_saved is not None:
            answer["saved"] = False
            answer["message"] += (f" The list could not be saved to {self.state_file} ({not_saved}): a restarted "
                                  "sidecar would subscribe the configured symbols.")
        return answer
