"""Paths another local user can prepare, and a journal on a full disk.

The other user is real: a throw-away unprivileged account created by the test (``useradd``) that
runs the attacker's steps through ``runuser``; it is deleted again at the end, also on failure.
The consumer runs as this (root) user. Where an account cannot be created (not root) or a tmpfs
cannot be mounted, the test is skipped with a loud message: that case is then NOT tested here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from conftest import wait_for

try:
    from zoneinfo import ZoneInfo
except ImportError:  # Python 3.8 has no zoneinfo; the tests need 3.9+ anyway
    ZoneInfo = None  # type: ignore[assignment,misc]

NOT_TESTED = "NOT TESTED: "


class Attacker:
    """Another local user, for the steps an attacker takes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)

    def run(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", self.name, "--", *argv], check=True, timeout=30)

    def write(self, path: Path, text: str) -> None:
        subprocess.run(["runuser", "-u", self.name, "--", "sh", "-c", 'cat > "$1"', "sh", str(path)],
                       input=text, text=True, check=True, timeout=30)


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip(NOT_TESTED + "other-user cases need root with useradd and runuser to create a throw-away user")
    name = "bbatk" + uuid.uuid4().hex[:8]
    r = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(NOT_TESTED + f"cannot create a throw-away user: {r.stderr.strip()}")
    try:
        yield Attacker(name)
    finally:
        # -r also removes the (absent) home and mail spool; its "not found" notes are expected.
        subprocess.run(["userdel", "-r", name], capture_output=True)
        assert subprocess.run(["id", name], capture_output=True).returncode != 0, f"user {name} left behind"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A stand-in for /tmp: owned by root, world-writable and sticky."""
    d = Path(tempfile.mkdtemp(prefix="bb-shared-", dir="/tmp"))
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def today_ms(minute: int) -> int:
    """Epoch ms of `minute` minutes after 09:30 New York time today (today's journal file)."""
    assert ZoneInfo is not None
    ny = datetime.now(ZoneInfo("America/New_York"))
    open_ = ny.replace(hour=9, minute=30, second=0, microsecond=0)
    return int(open_.astimezone(timezone.utc).timestamp() * 1000) + minute * 60_000


def today_file() -> str:
    assert ZoneInfo is not None
    return f"bars-{datetime.now(ZoneInfo('America/New_York')).date().isoformat()}.jsonl"


def bar_line(symbol: str, ts: int, close: float) -> str:
    return json.dumps({"symbol": symbol, "timestamp_ms": ts, "open": close, "high": close, "low": close,
                       "close": close, "volume": 1}) + "\n"


def run_to_exit(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the consumer; it must end by itself (a refusal), not keep running on the prepared path."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the consumer accepted the prepared path and kept running: {argv}")


def assert_refused(r: subprocess.CompletedProcess, *phrases: str) -> None:
    said = [line for line in r.stderr.splitlines() if line.startswith("barbridge:")]
    assert r.returncode == 2, f"exit {r.returncode}, expected 2 (refused); stderr:\n{r.stderr[-2000:]}"
    assert len(said) == 1 and said[0].count(". ") == 0, f"expected one sentence, got {said}"
    for p in phrases:
        assert p in said[0], f"{p!r} not in {said[0]!r}"


def test_runtime_dir_created_by_another_user_is_refused(attacker, shared_tmp, consumer_bin, tmp_path):
    """The default runtime dir (`$XDG_RUNTIME_DIR/barbridge` here, `/tmp/barbridge-$UID` without
    it) is predictable: another user creates it first (0755, theirs) to swap the FIFO later."""
    runtime = shared_tmp / "barbridge"
    attacker.run("mkdir", "-m", "0755", str(runtime))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(shared_tmp)}
    r = run_to_exit([str(consumer_bin), "run"], env=env)
    assert_refused(r, str(runtime), f"uid {attacker.uid}")
    assert list(runtime.iterdir()) == [], "the consumer created files in another user's directory"


def test_fifo_others_can_open_is_refused_not_tightened(attacker, shared_tmp, consumer_bin, tmp_path):
    """A FIFO of ours left open to others (0666): another user opened it (and holds the handle) before
    the consumer starts. A chmod would not take that handle away, so the consumer refuses the FIFO
    (one sentence, exit 2) and leaves its mode as it found it."""
    d = shared_tmp / "run"
    d.mkdir(mode=0o755)  # ours, others may only enter: accepted (src/private.rs)
    fifo = d / "bars.fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o666)
    holder = subprocess.Popen(["runuser", "-u", attacker.name, "--", "sh", "-c", 'exec 3<>"$1"; echo held; sleep 60',
                               "sh", str(fifo)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = run_to_exit([str(consumer_bin), "run", "--fifo", str(fifo), "--status-file", str(tmp_path / "status.json")])
        assert_refused(r, str(fifo), "mode 666", "never tightened")
        assert stat.S_IMODE(fifo.stat().st_mode) == 0o666, "the FIFO was changed instead of refused"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def test_launcher_runtime_dir_others_can_write_is_refused_not_tightened(attacker, shared_tmp):
    """The launcher's runtime directory is ours but others can write it (0777), and another user has
    already put something in it: refused with one sentence (exit 2 in the launcher), mode untouched,
    by the crate's rule (src/private.rs, through the extension), not chmod'ed 0700 and trusted."""
    from bridge.config import ConfigError
    from bridge.supervisor import runtime

    rt = shared_tmp / "rt"
    rt.mkdir()
    os.chmod(rt, 0o777)
    attacker.write(rt / "symbols.live.json", '{"symbols": ["EVIL"]}\n')
    with pytest.raises(ConfigError, match="writable by other users") as e:
        runtime.prepare_private_dir(rt)
    assert str(rt) in str(e.value) and "Fix:" in str(e.value)
    assert stat.S_IMODE(rt.stat().st_mode) == 0o777, "the directory was tightened instead of refused"


def test_launcher_runtime_dir_under_a_parent_others_can_change_is_refused(attacker, shared_tmp):
    """A parent another user can write (not sticky) lets them rename our directory away and put theirs in
    its place: refused before anything is created under it (the old launcher checked no parent)."""
    from bridge.config import ConfigError
    from bridge.supervisor import runtime

    open_dir = shared_tmp / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)  # root's, but anyone can rename entries in it
    attacker.run("touch", str(open_dir / "theirs"))
    with pytest.raises(ConfigError, match="writable by other users and not sticky"):
        runtime.prepare_private_dir(open_dir / "rt")
    assert not (open_dir / "rt").exists(), "created under a parent others can change"


def test_status_temp_name_symlink_does_not_clobber_its_target(attacker, shared_tmp):
    """A symlink planted at the status writer's temporary name must not redirect the write."""
    barbridge = pytest.importorskip("barbridge")
    victim = shared_tmp / "victim"
    victim.write_text("precious\n")
    before = victim.stat()
    status = shared_tmp / "status.json"
    attacker.run("ln", "-s", str(victim), str(shared_tmp / f"status.tmp.{os.getpid()}"))
    # The status writer holds its file alone (a lock beside it), so a directory another user can
    # write to is refused before anything is written there.
    with pytest.raises(OSError, match="writable by other users"):
        barbridge.Consumer(status_file=str(status))
    assert victim.read_text() == "precious\n", "the status writer followed a planted symlink"
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    assert not status.exists() or not status.is_symlink()


def test_journal_dir_of_another_user_with_a_planted_bar_is_refused(attacker, shared_tmp, consumer_bin, tmp_path):
    """Another user pre-creates the journal directory with a SPY bar at close 1.0 (price injection)."""
    journal = shared_tmp / "journal"
    attacker.run("mkdir", "-m", "0755", str(journal))
    attacker.write(journal / today_file(), bar_line("SPY", today_ms(1), 1.0))
    r = run_to_exit([str(consumer_bin), "run", "--fifo", str(tmp_path / "run" / "bars.fifo"),
                     "--status-file", str(tmp_path / "status.json"), "--journal", str(journal)])
    assert_refused(r, str(journal), f"uid {attacker.uid}")
    assert "restored" not in r.stderr, "the planted journal was loaded"


def test_symlinked_day_file_is_refused_and_its_target_untouched(attacker, shared_tmp, consumer_bin, tmp_path):
    """A day file that is a symlink to someone else's file: neither read nor truncated nor appended."""
    theirs = shared_tmp / "theirs.jsonl"
    attacker.write(theirs, bar_line("SPY", today_ms(1), 1.0))
    before = (theirs.read_bytes(), theirs.stat().st_mtime_ns)
    journal = tmp_path / "journal"
    journal.mkdir(mode=0o700)
    (journal / today_file()).symlink_to(theirs)
    r = run_to_exit([str(consumer_bin), "run", "--fifo", str(tmp_path / "run" / "bars.fifo"),
                     "--status-file", str(tmp_path / "status.json"), "--journal", str(journal)])
    assert_refused(r, today_file(), "symbolic link")
    assert (theirs.read_bytes(), theirs.stat().st_mtime_ns) == before


# ------------------------------------------------------------------------------------ full disk

@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test (unmounted at the end, also on failure)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(NOT_TESTED + f"cannot mount a tmpfs for the full-disk test: {r.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(path: Path, leave_bytes: int) -> None:
    """Fill the file system holding `path` until only about `leave_bytes` are free."""
    st = os.statvfs(path.parent)
    size = max(0, st.f_bavail * st.f_frsize - leave_bytes)
    with open(path, "wb") as f:
        f.write(b"\0" * size)


def status_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def journal_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if ("WARN" in line or "ERROR" in line) and "journal" in line]


def test_full_disk_journal_holds_each_bar_once_with_few_warnings(small_disk, start_consumer, fifo_path, tmp_path):
    filler = small_disk / "filler"
    fill(filler, leave_bytes=160 << 10)
    journal = small_disk / "journal"
    consumer = start_consumer(fifo_path, "--journal", str(journal))
    status_path = Path(consumer.argv[consumer.argv.index("--status-file") + 1])
    wait_for(lambda: status_of(status_path), what="the consumer's first status file")

    symbols = [f"S{i:02d}" for i in range(40)]
    t0 = 1759930080000  # 2025-10-08 09:28 New York: 300 minutes stay within that day
    lines = [bar_line(s, t0 + m * 60_000, 10.0 + m / 100) for m in range(300) for s in symbols]
    assert len(lines) == 12_000
    with open(fifo_path, "wb", buffering=0) as w:
        chunk = ""
        for line in lines:
            if len(chunk) + len(line) > 4096:
                w.write(chunk.encode())  # whole lines, at most PIPE_BUF per write
                chunk = ""
            chunk += line
        w.write(chunk.encode())

    def full() -> dict:
        s = status_of(status_path)
        j = s.get("journal") or {}
        ok = s.get("health", {}).get("counters", {}).get("bars_accepted") == 12_000 and j.get("error")
        return s if ok else {}
    s = wait_for(full, what="every bar accepted and the journal reporting the full disk")
    assert "space" in s["journal"]["error"], s["journal"]
    # Let the consumer retry against the full disk for a few status periods.
    seen: set = set()
    wait_for(lambda: seen.add(status_of(status_path).get("updated_ms")) or len(seen) >= 4,
             what="four more status writes while the disk is full")

    filler.unlink()

    def drained() -> dict:
        s = status_of(status_path)
        j = s.get("journal") or {}
        return s if j.get("pending_records") == 0 and not j.get("error") else {}
    s = wait_for(drained, what="the journal backlog written after space was freed")
    consumer.signal(signal.SIGINT)
    assert consumer.wait(30) == 0, consumer.stderr()[-2000:]

    written = [line for f in sorted(journal.glob("bars-*.jsonl")) for line in f.read_text().splitlines()]
    keys = [(b["symbol"], b["timestamp_ms"]) for b in map(json.loads, written)]
    expected = {(s, t0 + m * 60_000) for m in range(300) for s in symbols}
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} duplicated lines in the journal"
    assert set(keys) == expected
    j = status_of(status_path)["journal"]
    assert (j["records_written"], j["dropped_records"], j["pending_records"]) == (12_000, 0, 0), j
    warnings = journal_warnings(consumer.stderr())
    assert len(warnings) <= 3, f"{len(warnings)} journal warnings:\n" + "\n".join(warnings[:20])
