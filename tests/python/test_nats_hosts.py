"""Several hosts for real, on this machine: each host is its own network, UTS (hostname) and pid
namespace (``ip netns`` + ``unshare``), joined by veth pairs on a bridge. A 3-node nats-server
cluster runs across them with TLS and credentials on clients and routes; ``barbridge run
--publish`` runs on one host and ``barbridge run --source`` subscribers on the other two. Nodes,
subscribers and the publisher are SIGKILLed, a host is cut off, and every journal is exact after.

Needs root and ``ip`` (iproute2); skips in one line where a network namespace cannot be made
(no CAP_NET_ADMIN). ``BARBRIDGE_NETNS_CUT_S`` sets how long a host stays cut off (default 30 s)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from conftest import Proc, wait_for

T0 = 1_759_930_080_000  # 2025-10-08 09:28 New York, a minute start
SYMBOLS = ("SPY", "QQQ", "IWM")
CUT_S = float(os.environ.get("BARBRIDGE_NETNS_CUT_S", "30"))
PUB_PASSWORD = "pub-" + secrets.token_hex(8)
SUB_PASSWORD = "sub-" + secrets.token_hex(8)
ROUTE_PASSWORD = "route-" + secrets.token_hex(8)

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None or shutil.which("ip") is None
                                or shutil.which("unshare") is None or shutil.which("openssl") is None,
                                reason="nats-server, ip, unshare or openssl missing (scripts/test_all.sh installs them)")


def sh(*argv: str) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


class Hosts:
    """Three network namespaces on a bridge: host i is ``10.<a>.<b>.i`` on its ``eth0``."""

    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.tmp = tmp
        self.bridge = f"bb{tag}br"
        self.ns = {i: f"bb{tag}h{i}" for i in (1, 2, 3)}
        self.veth = {i: f"bb{tag}v{i}" for i in (1, 2, 3)}
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.made: list[tuple[str, ...]] = []  # undo commands, run in reverse

    def ip(self, i: int) -> str:
        return f"{self.net}.{i}"

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("ip", "link", "del", self.bridge))
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in self.ns.items():
            sh("ip", "netns", "add", ns)
            self.made.append(("ip", "netns", "del", ns))
            sh("ip", "link", "add", self.veth[i], "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(("ip", "link", "del", self.veth[i]))
            sh("ip", "link", "set", self.veth[i], "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for undo in reversed(self.made):
            subprocess.run(list(undo), capture_output=True, timeout=30)
        self.made.clear()

    def cut(self, i: int, off: bool) -> None:
        """Unplug (or plug back) host ``i``'s cable."""
        sh("ip", "link", "set", self.veth[i], "down" if off else "up")

    def argv(self, i: int, hostname: str, argv: list[str], bump: int = 0) -> list[str]:
        """``argv`` run on host ``i`` under ``hostname`` in a new pid namespace; ``bump``
        short-lived processes first, so its pid differs from another host's."""
        script = ('hostname "$0"; i=0; while [ "$i" -lt "$1" ]; do /bin/true; i=$((i+1)); done; shift; '
                  '"$@" & wait $!')
        return ["ip", "netns", "exec", self.ns[i], "unshare", "--uts", "--pid", "--fork", "--kill-child",
                "--mount-proc", "sh", "-c", script, hostname, str(bump), *argv]


def inner_pids(pid: int) -> list[int]:
    """The descendants of ``pid`` (as this pid namespace numbers them)."""
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in map(int, children):
        out += [c] + inner_pids(c)
    return out


def signal_inner(p: Proc, name: str, sig: int) -> None:
    """Send ``sig`` to the process named ``name`` running under ``p`` (in its namespaces)."""
    for pid in inner_pids(p.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                os.kill(pid, sig)
                return
        except OSError:
            pass
    raise AssertionError(f"no {name} under {p.name}")


def make_certs(d: Path, ips: list[str]) -> None:
    """A CA and one certificate for every node (server and client use: routes are mutual TLS)."""
    def ssl(args: str) -> None:
        subprocess.run(["openssl", *args.split(" ")], cwd=d, check=True, capture_output=True, timeout=60)
    (d / "node.ext").write_text("subjectAltName=" + ",".join(f"IP:{a}" for a in ips)
                                + "\nextendedKeyUsage=serverAuth,clientAuth\n")
    ssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=ca -keyout ca.key -out ca.pem")
    ssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=node -keyout node.key -out node.csr")
    ssl("x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out node.pem -extfile node.ext")
    os.chmod(d / "node.key", 0o600)


def node_config(hosts: Hosts, i: int, d: Path) -> Path:
    from bridge.supervisor import natslocal
    perms = natslocal.permissions()
    tls = {"cert_file": str(d / "node.pem"), "key_file": str(d / "node.key"), "ca_file": str(d / "ca.pem"), "timeout": 5}
    routes = [f"nats-route://route:{ROUTE_PASSWORD}@{hosts.ip(j)}:6222" for j in (1, 2, 3) if j != i]
    config = {
        "server_name": f"n{i}", "listen": f"{hosts.ip(i)}:4222", "tls": tls,
        "jetstream": {"store_dir": str(d / f"js{i}")},
        "authorization": {"users": [
            {"user": natslocal.PUBLISHER, "password": PUB_PASSWORD, "permissions": perms[natslocal.PUBLISHER]},
            {"user": natslocal.SUBSCRIBER, "password": SUB_PASSWORD, "permissions": perms[natslocal.SUBSCRIBER]}]},
        "cluster": {"name": "bb", "listen": f"{hosts.ip(i)}:6222", "routes": routes,
                    "tls": {**tls, "verify": True}, "authorization": {"user": "route", "password": ROUTE_PASSWORD}},
    }
    path = d / f"n{i}.conf"
    path.write_text(json.dumps(config, indent=1))
    os.chmod(path, 0o600)
    return path


def bar(symbol: str, minute: int) -> str:
    close = 100 + minute + SYMBOLS.index(symbol) / 10
    return json.dumps({"type": "bar", "symbol": symbol, "timestamp_ms": T0 + minute * 60_000, "open": close,
                       "high": close, "low": close, "close": close, "volume": 100 + minute, "vwap": close,
                       "trade_count": 3})


def journal(d: Path) -> list[tuple[str, int, float]]:
    """Every bar record in journal ``d``, in order: (symbol, minute, close)."""
    out = []
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        try:
            text = f.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            try:
                b = json.loads(line)
            except ValueError:
                continue
            if isinstance(b, dict) and "symbol" in b and "timestamp_ms" in b and b.get("type", "bar") != "minute_closed":
                out.append((b["symbol"], (b["timestamp_ms"] - T0) // 60_000, float(b["close"])))
    return out


class Cluster:
    """Processes on the hosts: nats-server nodes, the publisher, the subscribers."""

    def __init__(self, hosts: Hosts, tmp: Path, consumer_bin: Path, procs: list[Proc]) -> None:
        self.hosts, self.tmp, self.bin, self.procs = hosts, tmp, consumer_bin, procs
        self.certs = tmp / "certs"
        self.certs.mkdir(mode=0o700)
        make_certs(self.certs, [hosts.ip(i) for i in (1, 2, 3)])
        self.url = ",".join(f"tls://{hosts.ip(i)}:4222" for i in (1, 2, 3))
        self.nodes: dict[int, Proc] = {}
        self.written = 0
        for who, password in (("publisher", PUB_PASSWORD), ("subscriber", SUB_PASSWORD)):
            f = tmp / f"{who}.password"
            f.write_text(password + "\n")
            os.chmod(f, 0o600)

    def start(self, i: int, hostname: str, argv: list[str], name: str, env: Optional[dict] = None,
              bump: int = 0) -> Proc:
        p = Proc(self.hosts.argv(i, hostname, argv, bump), self.tmp, name, env)
        self.procs.append(p)
        return p

    def node(self, i: int) -> Proc:
        conf = self.certs / f"n{i}.conf"
        if not conf.exists():
            node_config(self.hosts, i, self.certs)
        self.nodes[i] = self.start(i, f"host{i}", ["nats-server", "-c", str(conf)], f"n{i}-{len(self.procs)}")
        return self.nodes[i]

    def env(self, who: str) -> dict:
        from bridge.supervisor import natslocal
        user = natslocal.PUBLISHER if who == "publisher" else natslocal.SUBSCRIBER
        return {**{k: v for k, v in os.environ.items() if not k.startswith("BARBRIDGE_NATS_")},
                "BARBRIDGE_NATS_USER": user, "BARBRIDGE_NATS_PASSWORD_FILE": str(self.tmp / f"{who}.password"),
                "BARBRIDGE_NATS_CA": str(self.certs / "ca.pem"), "RUST_LOG": "info"}

    def publisher(self) -> Proc:
        d = self.tmp / "pub"
        d.mkdir(mode=0o700, exist_ok=True)
        (d / "bars.fifo").unlink(missing_ok=True)
        argv = [str(self.bin), "run", "--fifo", str(d / "bars.fifo"), "--journal", str(d / "j"), "--status-file",
                str(d / "status.json"), "--publish", self.url, "--stream-replicas", "3"]
        p = self.start(1, "host1", argv, f"publisher-{len(self.procs)}", self.env("publisher"))
        wait_for(lambda: (d / "bars.fifo").exists() or not p.alive(), 60, what="the publisher's FIFO")
        assert p.alive(), p.stderr()
        return p

    def subscriber(self, i: int, durable: str, hostname: str, bump: int = 0) -> Proc:
        d = self.tmp / durable
        d.mkdir(mode=0o700, exist_ok=True)
        argv = [str(self.bin), "run", "--source", self.url, "--durable", durable, "--journal", str(d / "j"),
                "--status-file", str(d / f"status-{len(self.procs)}.json")]
        return self.start(i, hostname, argv, f"{durable}-{len(self.procs)}", self.env("subscriber"), bump)

    def write(self, minutes: range) -> None:
        """The writer (the sidecar's part): bars for ``minutes`` of every symbol into the FIFO."""
        with open(self.tmp / "pub" / "bars.fifo", "w") as f:
            f.write("".join(bar(s, m) + "\n" for m in minutes for s in SYMBOLS))
        self.written = max(self.written, minutes.stop)

    def expected(self) -> list[tuple[str, int, float]]:
        return sorted((s, m, 100 + m + SYMBOLS.index(s) / 10) for m in range(self.written) for s in SYMBOLS)

    def wait_journal(self, name: str, timeout: float = 90) -> None:
        want = self.expected()
        wait_for(lambda: sorted(set(journal(self.tmp / name / "j"))) == want, timeout, interval=0.25,
                 what=f"{name}'s journal to hold minutes 0..{self.written - 1}")

    def assert_exact(self, name: str) -> None:
        got = journal(self.tmp / name / "j")
        assert sorted(got) == self.expected(), f"{name}: {len(got)} records, want {len(self.expected())}"


@pytest.fixture
def hosts(tmp_path: Path, procs) -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    h = Hosts(tmp_path)
    probe = h.ns[1] + "p"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (no CAP_NET_ADMIN?)")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    try:
        try:
            h.up()
        except RuntimeError as e:  # no bridge or veth support here: the host's limit, not a failure
            pytest.skip(f"cannot build the hosts' network here ({e})")
        yield h
    finally:
        for p in procs:  # before the namespaces go: nothing left running in them
            p.kill()
        h.down()


def lease_log(p: Proc) -> str:
    return "\n".join(x for x in p.stderr().splitlines() if "lease" in x)


def test_three_hosts_cluster_with_tls_survives_kills_and_a_cut_with_every_journal_exact(hosts, tmp_path, procs,
                                                                                       consumer_bin):
    c = Cluster(hosts, tmp_path, consumer_bin, procs)
    for i in (1, 2, 3):
        c.node(i)
    pub = c.publisher()
    s2 = c.subscriber(2, "eng2", "host2")
    s3 = c.subscriber(3, "eng3", "twin", bump=40)  # bumped: its pid exists in no other host's namespace
    c.write(range(0, 5))
    for name in ("pub", "eng2", "eng3"):
        c.wait_journal(name)

    # kill -9 a node: the cluster (2 of 3) goes on, clients move to another node
    c.nodes[2].kill()
    c.write(range(5, 10))
    c.wait_journal("eng2")
    c.wait_journal("eng3")
    c.node(2)

    # two hosts with one hostname: the second subscriber on eng3 (host1, also "twin") must not
    # take over the live lease of the first, whose pid does not exist in its pid namespace
    twin = c.subscriber(1, "eng3", "twin")
    wait_for(lambda: not twin.alive(), 60, what="the second eng3 subscriber to be refused")
    assert twin.wait(5) == 2, twin.stderr()
    assert "taking over" not in twin.stderr() and "eng3" in twin.stderr(), twin.stderr()
    assert s3.alive(), s3.stderr()

    # kill -9 a subscriber; its durable resumes on ANOTHER host (same journal directory): the
    # lease is taken over once it went unrenewed (the 4 s path)
    signal_inner(s2, "barbridge", signal.SIGKILL)
    wait_for(lambda: not s2.alive(), 15, what="the killed subscriber's host process to end")
    c.write(range(10, 15))
    started = time.monotonic()
    s2b = c.subscriber(3, "eng2", "host3")
    c.wait_journal("eng2")
    took = time.monotonic() - started
    assert "taking over the lease" in s2b.stderr(), lease_log(s2b)
    print(f"eng2 resumed on host3 after the SIGKILL in {took:.1f} s")

    # kill -9 the publisher once it journaled a batch; a new one (same journal) publishes the rest
    c.write(range(15, 20))
    c.wait_journal("pub")
    signal_inner(pub, "barbridge", signal.SIGKILL)
    wait_for(lambda: not pub.alive(), 15, what="the killed publisher's host process to end")
    pub = c.publisher()
    c.write(range(20, 25))
    for name in ("pub", "eng2", "eng3"):
        c.wait_journal(name)

    # cut host 3 (node 3, eng2's new home and eng3) off; bars go on meanwhile
    hosts.cut(3, True)
    c.write(range(25, 30))
    c.wait_journal("pub")
    time.sleep(CUT_S)
    hosts.cut(3, False)
    c.write(range(30, 35))
    for name in ("pub", "eng2", "eng3"):
        c.wait_journal(name, 120)

    for p in (pub, s2b, s3):
        assert p.alive(), p.stderr()[-3000:]
        signal_inner(p, "barbridge", signal.SIGTERM)
    for p in (pub, s2b, s3):
        assert p.wait(30) == 0, p.stderr()[-3000:]  # a clean stop (the lease released, the journal flushed)
    for name in ("pub", "eng2", "eng3"):
        c.assert_exact(name)
