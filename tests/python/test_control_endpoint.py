"""The sidecar's control endpoint under hostile or broken clients (issue 22, item 5; issue 25's
unsaved-list defect): a real sidecar (synthetic source) and its real Unix socket, or the endpoint
object on a real socket. Nothing a client sends, or does not send, stops the endpoint or locks
out the launcher's ``--subscribe``."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import wait_for

from bridge import control_endpoint


def start_endpoint(start_sidecar, fifo_path: Path, *extra: str):
    sock, state = fifo_path.parent / "control.sock", fifo_path.parent / "symbols.json"
    side = start_sidecar(fifo_path, "--source", "synthetic", "--interval", "0.5", "--symbols", "SPY,SH",
                         "--control", str(sock), "--symbols-state", str(state), *extra)
    wait_for(lambda: "control endpoint on" in side.stderr() and sock.exists(), what="the control endpoint")
    return side, sock, state


def raw_connect(sock: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    return s


def read_answer(s: socket.socket, timeout: float) -> bytes:
    """What the endpoint sends before closing (or up to its first newline) within ``timeout``."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def test_a_deeply_nested_line_gets_an_error_and_the_endpoint_lives_on(start_sidecar, fifo_path):
    side, sock, _ = start_endpoint(start_sidecar, fifo_path)
    with raw_connect(sock) as s:
        s.sendall(b"[" * 200_000 + b"\n")
        answer = json.loads(read_answer(s, 10))
    assert answer["ok"] is False and "nests more than" in answer["error"], answer
    for bad in (b'{"op": "subscribe", "symbols": [[[[[[[[[["X"]]]]]]]]]]}\n', b'"just a string"\n', b"\xff\xfe\n",
                b'{"op": "subscribe", "symbols": ["' + b"9" * 5000 + b'"]}\n', b'{"op": ' + b"9" * 5000 + b"}\n"):
        with raw_connect(sock) as s:
            s.sendall(bad)
            answer = json.loads(read_answer(s, 10))
        assert answer["ok"] is False and answer["error"], (bad[:40], answer)
    # the endpoint lives on: a real request gets its answer
    ok = control_endpoint.request(sock, "symbols", timeout=10)
    assert ok["ok"] and ok["symbols"] == ["SPY", "SH"], ok
    assert side.alive()


def test_a_slow_client_blocks_no_one_and_is_cut_at_the_deadline(start_sidecar, fifo_path):
    _, sock, _ = start_endpoint(start_sidecar, fifo_path)
    slow = raw_connect(sock)
    cut: dict = {}

    def dribble() -> None:
        """One byte a second, never a newline, until the endpoint closes the connection."""
        sent, got = 0, b""
        while sent < 60:
            try:
                slow.sendall(b"{" if sent == 0 else b" ")
            except OSError:
                break
            sent += 1
            if select.select([slow], [], [], 1.0)[0]:
                got = read_answer(slow, 2)
                break
        cut.update(sent=sent, got=got)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        time.sleep(1.5)  # the slow client is connected first and is being read
        # a real request made while the slow client dribbles is answered at once
        ok = control_endpoint.request(sock, "subscribe", ["QQQ"], timeout=10)
        assert ok["ok"] and ok["added"] == ["QQQ"], ok
        # the slow client is cut at the request's deadline (5 s for the whole line), not per byte
        t.join(60)
        assert cut and cut["sent"] < 30, f"the slow client was still being read after {cut.get('sent')} bytes"
        assert b"not complete within 5 s" in cut["got"], cut
    finally:
        slow.close()
        t.join(5)


def test_idle_connections_do_not_lock_out_subscribe(start_sidecar, fifo_path):
    side, sock, state = start_endpoint(start_sidecar, fifo_path)
    idle: list[socket.socket] = []
    try:
        for _ in range(40):  # more than the endpoint keeps open (16) and than the old backlog (8)
            try:
                idle.append(raw_connect(sock, timeout=1))
            except OSError:
                break  # the old endpoint: backlog full
        # the launcher's own request (what --subscribe sends) gets through at once
        ok = control_endpoint.request(sock, "subscribe", ["QQQ"], timeout=10)
        assert ok["ok"] and ok["symbols"] == ["SPY", "SH", "QQQ"], ok
        assert json.loads(state.read_text()) == {"symbols": ["SPY", "SH", "QQQ"]}
        # the longest-idle connections were closed to make room, with one sentence
        first = read_answer(idle[0], 5)
        assert b"too many connections" in first, first
        assert len(idle) == 40
        wait_for(lambda: "connections open; closing the oldest" in side.stderr(), what="the eviction logged")
        # rate-limited: 24 evictions, at most 5 lines a window
        assert side.stderr().count("closing the oldest") <= 6, side.stderr()
    finally:
        for s in idle:
            s.close()


def test_a_lower_case_symbol_or_a_pair_on_a_stock_sidecar_is_refused(start_sidecar, fifo_path):
    side, sock, _ = start_endpoint(start_sidecar, fifo_path)
    low = control_endpoint.request(sock, "subscribe", ["qqq"], timeout=10)
    assert not low["ok"] and "'qqq' has lower-case letters" in low["error"] and "write QQQ" in low["error"], low
    pair = control_endpoint.request(sock, "subscribe", ["QQQ", "BTC/USD"], timeout=10)
    assert not pair["ok"] and "BTC/USD look like crypto pairs: set ASSET=crypto" in pair["error"], pair
    now = control_endpoint.request(sock, "symbols", timeout=10)
    assert now["symbols"] == ["SPY", "SH"], now  # nothing changed, nothing subscribed
    assert side.alive()


@pytest.mark.parametrize("break_it", ["directory at the path", "parent directory gone"])
def test_saving_the_symbol_list_fails_the_change_stays_and_the_endpoint_lives(start_sidecar, tmp_path, break_it):
    fifo = tmp_path / "run" / "bars.fifo"
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    state = state_dir / "symbols.json"
    side, sock, _ = start_endpoint(start_sidecar, fifo, "--symbols-state", str(state))
    if break_it == "directory at the path":
        state.mkdir()
    else:
        shutil.rmtree(state_dir)
    ok = control_endpoint.request(sock, "subscribe", ["QQQ"], timeout=10)
    assert ok["ok"] and ok["added"] == ["QQQ"] and ok.get("saved") is False, ok
    assert "could not be saved" in ok["message"] and str(state) in ok["message"], ok
    wait_for(lambda: "cannot write the live symbol list" in side.stderr(), what="the failure logged")
    # the change stays applied and later requests work
    for _ in range(3):
        now = control_endpoint.request(sock, "symbols", timeout=10)
        assert now["ok"] and now["symbols"] == ["SPY", "SH", "QQQ"], now
    ok = control_endpoint.request(sock, "unsubscribe", ["SH"], timeout=10)
    assert ok["ok"] and ok["symbols"] == ["SPY", "QQQ"], ok
    assert side.alive()


class Symbols:
    """A symbol source that only keeps the list (the endpoint is what is tested)."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols

    def change_symbols(self, add: list[str], remove: list[str]) -> None:
        if "BOOM" in add:
            raise RuntimeError("the source failed")
        self.symbols = [s for s in self.symbols if s not in remove] + add


def test_a_failing_source_answers_an_error_and_the_endpoint_goes_on(tmp_path):
    server = control_endpoint.ControlServer(tmp_path / "run" / "control.sock", Symbols(["SPY"]))
    server.start()
    try:
        bad = control_endpoint.request(server.path, "subscribe", ["BOOM"], timeout=10)
        assert bad["ok"] is False and "RuntimeError: the source failed" in bad["error"], bad
        assert control_endpoint.request(server.path, "subscribe", ["QQQ"], timeout=10)["symbols"] == ["SPY", "QQQ"]
        assert server.stats()["control_errors"] == 1 and server.alive()
    finally:
        server.stop()


def test_another_user_cannot_connect(tmp_path):
    """The socket itself is 0600: with every directory on the way open to traversal, another
    local user still gets EACCES."""
    base = Path(tempfile.mkdtemp(prefix="barbridge-control-"))
    run = base / "run"
    server = control_endpoint.ControlServer(run / "control.sock", Symbols(["SPY"]))
    server.start()
    try:
        assert oct(server.path.stat().st_mode & 0o777) == "0o600"
        os.chmod(base, 0o711)
        os.chmod(run, 0o711)  # only to reach the socket's own permission check
        probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(e.errno)\nelse:\n    print('connected')\n")
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c",
                            probe, str(server.path)], capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "13", (r.stdout, r.stderr)  # EACCES
        assert control_endpoint.request(server.path, "symbols", timeout=10)["ok"]
    finally:
        server.stop()
        shutil.rmtree(base)


def test_a_thread_that_dies_anyway_is_restarted_and_counted(tmp_path, caplog):
    server = control_endpoint.ControlServer(tmp_path / "run" / "control.sock", Symbols(["SPY"]))
    real, calls = server._serve_once, []

    def dies_once(sel):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # not an Exception: the per-round catch lets it through
        real(sel)

    server._serve_once = dies_once  # type: ignore[method-assign]
    server.start()
    try:
        assert control_endpoint.request(server.path, "symbols", timeout=10)["symbols"] == ["SPY"]
        assert server.stats()["control_restarts"] == 1 and server.alive()
        assert "the control thread failed (KeyboardInterrupt" in caplog.text
    finally:
        server.stop()
