"""``barbridge.NatsFeed``: a Python Consumer fed from JetStream by the extension (real nats-server,
real ``barbridge run --publish`` on a real FIFO)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

import barbridge
from conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server is not installed (scripts/test_all.sh installs it)")

T0 = 1_759_930_080_000  # 2025-10-08 09:28 New York, a minute start


def line(symbol: str, minute: int, close: float, kind: str = "bar") -> str:
    return json.dumps({"type": kind, "symbol": symbol, "timestamp_ms": T0 + minute * 60_000, "open": close, "high": close,
                       "low": close, "close": close, "volume": 100, "vwap": close, "trade_count": 3})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_accepting(port: int) -> None:
    """Wait until the nats-server on ``port`` accepts connections."""
    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_for(up, 15, what="nats-server accepting connections")


@pytest.fixture
def nats_url(tmp_path, procs):
    port = free_port()
    procs.append(Proc(["nats-server", "-js", "-sd", str(tmp_path / "js"), "-a", "127.0.0.1", "-p", str(port)],
                      tmp_path, "nats"))
    wait_accepting(port)
    return f"nats://127.0.0.1:{port}"


def publish(tmp_path: Path, procs, consumer_bin: Path, url: str, lines: list[str], env: Optional[dict] = None) -> None:
    """Run ``barbridge run --publish`` on a FIFO, write ``lines``, wait until all are published."""
    pub = tmp_path / "pub"
    pub.mkdir(mode=0o700, exist_ok=True)
    fifo = pub / "rt" / "bars.fifo"
    for left in (fifo, pub / "rt" / "status.json"):  # an earlier run's: waited on below, so gone first
        left.unlink(missing_ok=True)
    p = Proc([str(consumer_bin), "run", "--fifo", str(fifo), "--journal", str(pub / "j"), "--status-file",
              str(pub / "rt" / "status.json"), "--publish", url], pub, f"publisher{len(procs)}", env)
    procs.append(p)
    wait_for(fifo.exists, 15, what="the publisher's FIFO")
    with open(fifo, "w") as f:
        f.write("".join(x + "\n" for x in lines))

    def published() -> int:
        try:
            status = json.loads((pub / "rt" / "status.json").read_text())
        except (OSError, ValueError):
            return 0
        return int((status.get("sections", {}).get("publish") or {}).get("published", 0))
    wait_for(lambda: published() >= len(lines), 30, what=f"{len(lines)} bars published")
    p.signal(signal.SIGTERM)
    assert p.wait(15) == 0, p.stderr()


def test_natsfeed_receives_every_bar_and_a_new_feed_resumes_on_its_durable(tmp_path, procs, consumer_bin, nats_url):
    publish(tmp_path, procs, consumer_bin, nats_url, [line("SPY", m, 600 + m) for m in range(30)])
    c = barbridge.Consumer(journal=tmp_path / "j")
    sub = c.subscribe(timeout=10)
    with barbridge.NatsFeed(c, nats_url, durable="py-engine") as feed:
        assert feed.running and feed.durable == "py-engine"
        got = [next(sub) for _ in range(30)]
    assert not feed.running
    assert [b.timestamp_ms for b in got] == [T0 + m * 60_000 for m in range(30)]
    assert [b.close for b in got] == [600 + m for m in range(30)]
    # a correction and 10 new minutes: a new feed on the same durable gets exactly those
    more = [line("SPY", 5, 1.5, "updated_bar")] + [line("SPY", m, 600 + m) for m in range(30, 40)]
    publish(tmp_path, procs, consumer_bin, nats_url, more)
    sub2 = c.subscribe(timeout=20)
    with barbridge.NatsFeed(c, nats_url, durable="py-engine"):
        again = [next(sub2) for _ in range(11)]
    assert [(b.timestamp_ms, b.close) for b in again] == (
        [(T0 + 5 * 60_000, 1.5)] + [(T0 + m * 60_000, 600 + m) for m in range(30, 40)])
    assert again[0].correction and not any(b.correction for b in again[1:])
    assert c.last_n("SPY", 40)[5].close == 1.5 and len(c.last_n("SPY", 100)) == 40
    assert c.stats()["duplicates"] == 0  # the durable resumed after the 30 acknowledged bars, none sent again


def test_natsfeed_arguments_are_checked_in_one_sentence():
    c = barbridge.Consumer()
    with pytest.raises(ValueError, match="is not a NATS URL"):
        barbridge.NatsFeed(c, "http://127.0.0.1:4222", durable="x")
    with pytest.raises(ValueError, match="is not a time"):
        barbridge.NatsFeed(c, "nats://127.0.0.1:4222", durable="x", since="yesterday")
    with pytest.raises(ValueError, match="durable"):
        barbridge.NatsFeed(c, "nats://127.0.0.1:4222", durable="a.b")


# ---------------------------------------------------------------- credentials: NATS=local's config
def start_configured(tmp_path: Path, procs, port: int) -> Path:
    """nats-server with the launcher's own NATS=local config (bridge/supervisor/natslocal.py)."""
    from bridge.supervisor import natslocal
    rt = tmp_path / "rt"
    conf = natslocal.write_config(rt, port, tmp_path / "js")
    procs.append(Proc(["nats-server", "-c", str(conf)], tmp_path, "nats"))
    wait_accepting(port)
    return rt


RAW_CLIENT = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.recv(4096)  # INFO
s.sendall(sys.argv[2].encode().replace(b"\\\\n", b"\\r\\n"))
time.sleep(0.5)
out = b""
s.settimeout(1.5)
try:
    while True:  # until the server closes or stays quiet
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
except OSError:
    pass
print(out.decode(errors="replace"))
"""


def raw(port: int, commands: str, user: Optional[str] = None) -> str:
    """A bare TCP client speaking the NATS protocol (``\\n`` written as CRLF), as ``user``."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # runnable by any user
    r = subprocess.run([python, "-c", RAW_CLIENT, str(port), commands], capture_output=True, text=True,
                       timeout=30, user=user)
    return r.stdout + r.stderr


def test_local_config_refuses_strangers_and_subscribers_cannot_write_bars(tmp_path, procs, consumer_bin):
    from bridge.supervisor import natslocal
    port = free_port()
    rt = start_configured(tmp_path, procs, port)
    d = natslocal.nats_dir(rt)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in d.iterdir()} == {
        "server.conf": "0o600", "publisher.password": "0o600", "subscriber.password": "0o600", "url": "0o600"}
    assert (d / "url").read_text().strip() == f"nats://127.0.0.1:{port}"
    bar = line("SPY", 0, 1.0)
    pub = f"PUB bars.iex.SPY {len(bar)}\\n{bar}\\nPING\\n"
    # another local user, no credentials: refused before anything is published
    stranger = raw(port, "CONNECT {}\\n" + pub, user="nobody")
    assert "Authorization Violation" in stranger and "PONG" not in stranger, stranger
    assert "Permission denied" in subprocess.run(["cat", str(d / "subscriber.password")], capture_output=True, text=True,
                                                 user="nobody").stderr
    # the subscriber identity: publishing a bar, or making or changing a stream, is refused by the server
    password = (d / "subscriber.password").read_text().strip()
    creds = json.dumps({"user": natslocal.SUBSCRIBER, "pass": password})
    out = raw(port, f"CONNECT {creds}\\n{pub}PUB $JS.API.STREAM.CREATE.X 0\\n\\nPUB $JS.API.STREAM.DELETE.BARS 0\\n\\nPING\\n")
    assert 'Permissions Violation for Publish to "bars.iex.SPY"' in out, out
    assert 'Publish to "$JS.API.STREAM.CREATE.X"' in out and 'Publish to "$JS.API.STREAM.DELETE.BARS"' in out, out
    # ...while the launcher's publisher identity publishes and a subscriber with the subscriber identity
    # (lease, durable consumer, fetch, ack) gets every bar and nothing else
    env = {**os.environ, "BARBRIDGE_NATS_USER": natslocal.PUBLISHER,
           "BARBRIDGE_NATS_PASSWORD_FILE": str(natslocal.password_file(rt, natslocal.PUBLISHER))}
    publish(tmp_path, procs, consumer_bin, f"nats://127.0.0.1:{port}", [line("SPY", m, 600 + m) for m in range(5)], env)
    c = barbridge.Consumer()
    sub = c.subscribe(timeout=20)
    with barbridge.NatsFeed(c, f"nats://127.0.0.1:{port}", durable="local", user=natslocal.SUBSCRIBER,
                            password_file=d / "subscriber.password"):
        got = [next(sub) for _ in range(5)]
    assert [b.close for b in got] == [600 + m for m in range(5)]
    assert c.stats()["rejects_total"] == 0


def test_natsfeed_credentials_from_the_environment_masked_and_refused(tmp_path, procs, consumer_bin, monkeypatch):
    port = free_port()
    conf = tmp_path / "server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                    'authorization { users = [ {user: pub, password: "pw-SECRET-1"}, {user: eng, password: "pw-SECRET-2"} ] }\n')
    procs.append(Proc(["nats-server", "-c", str(conf)], tmp_path, "nats"))
    wait_for(lambda: "PONG" in raw(port, 'CONNECT {"user":"eng","pass":"pw-SECRET-2"}\\nPING\\n'), 15, what="nats-server")
    url = f"nats://127.0.0.1:{port}"
    env = {**os.environ, "BARBRIDGE_NATS_USER": "pub", "BARBRIDGE_NATS_PASSWORD": "pw-SECRET-1"}
    publish(tmp_path, procs, consumer_bin, url, [line("SPY", m, 600 + m) for m in range(3)], env)
    monkeypatch.setenv("BARBRIDGE_NATS_USER", "eng")
    monkeypatch.setenv("BARBRIDGE_NATS_PASSWORD", "pw-SECRET-2")
    c = barbridge.Consumer()
    sub = c.subscribe(timeout=20)
    with barbridge.NatsFeed(c, url, durable="env") as feed:
        assert [next(sub).close for _ in range(3)] == [600, 601, 602]
    # a password in the URL (it beats the environment's) is masked wherever the URL is shown
    feed = barbridge.NatsFeed(c, f"nats://eng:pw-WRONG@127.0.0.1:{port}", durable="wrong")
    assert "WRONG" not in repr(feed) and feed.url == f"nats://eng:***@127.0.0.1:{port}"
    wait_for(lambda: not feed.running, 30, what="the refused feed to end")
    with pytest.raises(OSError, match=r"refused the connection as user \"eng\" \(authorization violation") as e:
        feed.close()
    assert "WRONG" not in str(e.value)
    with pytest.raises(ValueError, match=r"more than one way to authenticate to NATS is given \(a user and password, a token\)"):
        barbridge.NatsFeed(c, url, durable="x", user="u", password="p", token="t")


def test_natsfeed_delivers_the_minute_barrier_and_quiet_marks(tmp_path, procs, consumer_bin, nats_url):
    """A closed minute and its quiet mark reach a NATS subscriber (subject bars.<feed>._minute),
    after the minute's bars; the subscriber counts the quiet mark like the FIFO consumer."""
    closed = json.dumps({"type": "minute_closed", "v": 1, "minute_ms": T0, "closed_ms": T0 + 70_000,
                         "by": "deadline", "part": 1, "parts": 1, "bars": ["SH", "SPY"], "halted": [],
                         "none": ["QQQ"]}, separators=(",", ":"))
    quiet = json.dumps({"type": "minute_quiet", "v": 1, "minute_ms": T0, "quiet": ["QQQ"]}, separators=(",", ":"))
    publish(tmp_path, procs, consumer_bin, nats_url, [line("SPY", 0, 600), line("SH", 0, 30), closed, quiet])
    c = barbridge.Consumer()
    sub = c.subscribe(timeout=10, minutes=True)
    with barbridge.NatsFeed(c, nats_url, durable="minutes"):
        got = [next(sub) for _ in range(3)]
        wait_for(lambda: c.minute_stats()["quiet_marks"] == 1, 15, what="the quiet mark")
    assert [type(x).__name__ for x in got] == ["Bar", "Bar", "MinuteClosed"], got
    m = got[2]
    assert (m.minute_ms, m.bars, m.none, m.complete) == (T0, ["SH", "SPY"], ["QQQ"], False)
    assert c.stats()["rejects_total"] == 0
