"""Issue 22, item 1, on the sidecar's side: its ``--metrics-addr`` endpoint (``barbridge.MetricsServer``,
the consumer's hardened HTTP server) under attack from another local user (``nobody``), while the
sidecar streams into a real consumer: a GET declaring a huge body, more idle connections than the
bound, a header line that never ends, a client that pipelines and reads nothing. Every line the
sidecar writes still arrives (no seq gap, nothing lost), and ``/metrics`` answers afterwards.

prometheus_client's own server (before) kept every idle connection open forever, one thread each,
with no bound: a local user could take every file descriptor of the sidecar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from conftest import PY, REPO, Proc, wait_for

#: The attacker runs as nobody with the system's Python (the venv may live under /root).
ATTACKER_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

ATTACKER = r'''
import socket, sys, time
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def report(s):
    print("ATTACK: " + s, flush=True)
if kind == "huge-length":
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        pass
    report("answer " + (data.split(b"\r\n")[0].decode() or "(closed)"))
elif kind == "idle":
    held = [socket.create_connection((host, port), timeout=5) for _ in range(200)]
    report(f"opened {len(held)}")
    # How many the server closes by itself (past the bound at once, the rest at the head timeout).
    deadline = time.monotonic() + 30
    closed = set()
    while len(closed) < len(held) and time.monotonic() < deadline:
        for i, c in enumerate(held):
            if i in closed:
                continue
            c.settimeout(0.01)
            try:
                if c.recv(1024) == b"":
                    closed.add(i)
            except socket.timeout:
                pass
            except OSError:
                closed.add(i)
    report(f"closed_by_server {len(closed)}")
elif kind == "endless-header":
    s = socket.create_connection((host, port), timeout=10)
    sent = 0
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Endless: ")
        chunk = b"a" * 65536
        while sent < 64 << 20:
            sent += s.send(chunk)
    except OSError:
        pass
    report(f"sent {sent}")
elif kind == "pipeline":
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 4000)
    except OSError:
        pass
    report("sent")
    sys.stdin.read()  # hold the connection, reading nothing, until told
'''


def attack(kind: str, addr: str) -> subprocess.Popen:
    host, port = addr.rsplit(":", 1)
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    return subprocess.Popen([ATTACKER_PY, "-c", ATTACKER, kind, host, port], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd="/", **as_nobody)  # type: ignore[call-overload]


def report(p: subprocess.Popen) -> str:
    line = p.stdout.readline() if p.stdout else ""
    assert line.startswith("ATTACK: "), f"the attacker failed: {line!r}"
    return line[len("ATTACK: "):].strip()


def finish(p: subprocess.Popen) -> None:
    if p.stdin:
        p.stdin.close()
    assert p.wait(60) == 0


def get(url: str, timeout: float = 10.0) -> Optional[str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def metric(text: Optional[str], series: str) -> Optional[float]:
    for line in (text or "").splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def test_metrics_server_addresses_are_checked_by_the_extension():
    import barbridge

    server = barbridge.MetricsServer("0", lambda: "x 1\n")
    try:
        assert server.addr.startswith("127.0.0.1:") and server.port > 0
        text = get(f"http://{server.addr}/metrics")
        assert text is not None and text.startswith("x 1\n") and "barbridge_sidecar_http_requests_total 1" in text
        assert get(f"http://{server.addr}/other") is None  # 404
    finally:
        server.stop()
    with pytest.raises(ValueError, match="is not an address"):
        barbridge.MetricsServer("localhost:x", lambda: "")


def test_a_render_that_raises_answers_500_and_the_server_goes_on():
    import barbridge

    calls = []

    def render() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "y 2\n"

    server = barbridge.MetricsServer("127.0.0.1:0", render)
    try:
        assert get(f"http://{server.addr}/metrics") is None
        assert (get(f"http://{server.addr}/metrics") or "").startswith("y 2\n")
        status = server.status()
        assert status["requests_failed"] == 1 and "could not be rendered" in (status["last_error"] or ""), status
    finally:
        server.stop()
        server.stop()  # idempotent


def test_attacks_on_the_sidecar_metrics_port_never_stop_the_stream(procs, tmp_path, consumer_bin):
    fifo = tmp_path / "run" / "bars.fifo"
    status_file = tmp_path / "status.json"
    consumer = Proc([str(consumer_bin), "run", "--fifo", str(fifo), "--status-file", str(status_file),
                     "--metrics-addr", "127.0.0.1:0"], tmp_path, "consumer")
    procs.append(consumer)
    side = Proc([PY, "-m", "bridge", "--source", "synthetic", "--interval", "0.05", "--fifo", str(fifo),
                 "--heartbeat", "0.5", "--metrics-addr", "127.0.0.1:0"],
                tmp_path, "sidecar", env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    procs.append(side)
    m = wait_for(lambda: re.search(r"sidecar metrics on http://(127\.0\.0\.1:\d+)/metrics", side.stderr()), timeout=60,
                 what="the sidecar's metrics address")
    saddr = m.group(1)
    caddr = wait_for(lambda: re.search(r"metrics on http://(127\.0\.0\.1:\d+)/metrics", consumer.stderr()),
                     timeout=30, what="the consumer's metrics address").group(1)

    def accepted() -> float:
        return metric(get(f"http://{caddr}/metrics"), "barbridge_bars_accepted_total") or 0

    def streams_on() -> None:
        """The sidecar keeps delivering into the consumer (more bars accepted than before)."""
        before = accepted()
        wait_for(lambda: accepted() > before + 10, timeout=60, what="bars still arriving during the attack")
        assert side.alive(), side.stderr()[-3000:]

    wait_for(lambda: accepted() >= 10, timeout=60, what="the first bars")
    _, peak_before = rss_kib(side.pid)

    a = attack("huge-length", saddr)
    streams_on()
    answer = report(a)
    finish(a)
    assert re.match(r"answer HTTP/1\.[01] 200", answer) or answer == "answer (closed)", answer

    a = attack("idle", saddr)
    assert report(a) == "opened 200"
    streams_on()
    # Past the bound at once, the rest at the 5 s head timeout: the server closes every one.
    assert report(a) == "closed_by_server 200"
    finish(a)
    text = wait_for(lambda: get(f"http://{saddr}/metrics"), timeout=60, what="the sidecar's /metrics after the idle attack")
    assert (metric(text, "barbridge_sidecar_http_connections_refused_total") or 0) >= 200 - 64, text
    assert (metric(text, "barbridge_sidecar_http_connection_errors_total") or 0) >= 1, text

    a = attack("endless-header", saddr)
    streams_on()
    sent = report(a)
    finish(a)
    _, peak_after = rss_kib(side.pid)
    assert peak_after < peak_before + 16 * 1024, f"the sidecar's memory peaked at {peak_after} KiB after {sent}"

    a = attack("pipeline", saddr)
    assert report(a) == "sent"
    streams_on()
    for _ in range(3):
        assert wait_for(lambda: get(f"http://{saddr}/metrics"), timeout=60, what="/metrics during the pipeline attack")
    finish(a)

    # Nothing the sidecar wrote was lost on the way.
    text = get(f"http://{caddr}/metrics")
    assert metric(text, "barbridge_seq_gaps_total") == 0 and metric(text, "barbridge_lines_lost") == 0, text
    stext = wait_for(lambda: get(f"http://{saddr}/metrics"), timeout=60, what="the sidecar's /metrics")
    assert metric(stext, "barbridge_sidecar_writer_dropped_overflow_total") == 0, stext
    assert metric(stext, "barbridge_sidecar_http_accept_errors_total") == 0, stext
