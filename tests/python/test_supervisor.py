"""The supervisor module (bridge/supervisor) tested directly: restart policy, flap detection,
alert payloads and command, settings precedence and validation, instance locks, display."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, wait_for
from bridge.config import ConfigError
from bridge.supervisor import display, runtime, settings
from bridge.supervisor.alerts import Alerter, payload
from bridge.supervisor.policy import Backoff, FlapDetector, RestartPolicy, Tracked


def test_backoff_doubles_up_to_its_maximum():
    b = Backoff(0.5, 5)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


def test_restart_policy_gives_up_on_codes_retrying_cannot_fix_and_after_max_restarts():
    policy = RestartPolicy(Backoff(1, 60), max_restarts=2, stable_after=60)
    side = Tracked("sidecar")
    assert policy.on_exit(side, 137, 1, "killed").delay == 1
    assert policy.on_exit(side, 1, 1, "x").delay == 2
    v = policy.on_exit(side, 1, 1, "boom")
    assert v.give_up and "failed 3 times in a row" in v.give_up and "boom" in v.give_up
    side = Tracked("sidecar")
    for _ in range(2):
        policy.on_exit(side, 1, 1, "x")
    assert policy.on_exit(side, 1, 61, "x").delay == 1, "a stable run starts the count over"
    for code in (2, 3, 4):
        assert "restarting cannot fix" in (policy.on_exit(Tracked("sidecar"), code, 0, "why").give_up or "")
    assert policy.on_exit(Tracked("consumer"), 3, 0, "x").give_up is None
    assert "restarting cannot fix" in (policy.on_exit(Tracked("consumer"), 2, 0, "x").give_up or "")


def test_one_exit_code_enum_and_the_consumer_agrees_on_config(consumer_bin):
    """``bridge.exitcodes.ExitCode`` is the sidecar's and the launcher's; its CONFIG is what ``barbridge
    run`` exits with for a setting it refuses, and the give-up sets are made of it."""
    from bridge.exitcodes import GIVE_UP, ExitCode
    r = subprocess.run([str(consumer_bin), "run", "--symbols", "spy"], capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.CONFIG, r.stderr
    assert GIVE_UP["consumer"] == {ExitCode.CONFIG} and ExitCode.AUTH in GIVE_UP["sidecar"]


def test_read_status_is_the_extensions_typed_reader(tmp_path):
    """The supervisor reads the consumer's state through ``barbridge.read_status`` (the Rust
    StatusReport), not raw keys of whatever JSON is there: errors are one sentence each."""
    import barbridge
    with pytest.raises(FileNotFoundError, match="cannot read status file .*is `barbridge run --status-file"):
        barbridge.read_status(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"pid": 1}')
    with pytest.raises(ValueError, match="is not a valid status report: missing field `version`"):
        barbridge.read_status(tmp_path / "bad.json")
    assert display.read_status(tmp_path / "bad.json") is None
    c = barbridge.Consumer(status_file=tmp_path / "status.json")
    c.push({"symbol": "SPY", "timestamp_ms": 1759930080000, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
            "volume": 1.0})
    report = wait_for(lambda: (r := display.read_status(tmp_path / "status.json")) and r["health"]["symbols"] and r,
                      timeout=30, what="a status report with SPY")
    assert report["pid"] == os.getpid() and report["liveness"] in ("LIVE", "WAITING", "STALE")
    assert report["health"]["symbols"]["SPY"]["last_bar_ts_ms"] == 1759930080000
    del c


def test_preflight_checks_the_fifo_by_the_consumers_rules(tmp_path):
    """The preflight says what the consumer will do, by the same rules (through the extension): a
    0755 directory of ours is accepted as the consumer accepts it (the old preflight refused it), a
    FIFO others can open is refused (the old one accepted it), and nothing is changed."""
    from bridge import preflight
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)
    fifo = run / "bars.fifo"
    assert "will be created" in preflight.check_fifo(fifo)
    os.mkfifo(fifo, 0o600)
    assert "private FIFO you own" in preflight.check_fifo(fifo)
    os.chmod(fifo, 0o666)
    with pytest.raises(preflight.Fail, match="mode 666: other users can open it.*never tightened"):
        preflight.check_fifo(fifo)
    assert (fifo.stat().st_mode & 0o777, run.stat().st_mode & 0o777) == (0o666, 0o755)


def test_flap_alert_once_per_episode():
    f = FlapDetector(threshold=2, window=10)
    assert [f.note(t) for t in (0, 1, 2, 3)] == [None, None, 3, None]
    assert f.note(30) is None  # the window moved on: the episode ended
    assert [f.note(t) for t in (31, 32)] == [None, 3]
    assert f.episodes == 2


def test_alert_payload_is_json_whatever_the_message(tmp_path):
    msg = 'tab\there "quoted" back\\slash\nnewline'
    line = payload("stale", "sidecar", msg, {"mode": "demo", "restarts": {"consumer": 0, "sidecar": 1}})
    assert "\n" not in line and json.loads(line)["message"] == msg
    got = tmp_path / "got"
    logged: list[str] = []
    alerter = Alerter(f"printf '%s' \"$1\" > {got}.arg; cat > {got}.stdin", 10, tmp_path / "log", logged.append,
                      lambda: {"mode": "demo"})
    asyncio.run(alerter.send("flap", "sidecar", msg))
    assert json.loads((tmp_path / "got.arg").read_text())["message"] == msg
    assert json.loads((tmp_path / "got.stdin").read_text())["event"] == "flap"
    assert logged and logged[0].startswith("ALERT {") and alerter.sent == 1
    slow = Alerter("sleep 30", 0.2, tmp_path / "log", logged.append, dict)
    asyncio.run(slow.send("stale", "consumer", "x"))
    assert "did not finish within 0.2 s" in logged[-1]


def load(tmp_path: Path, config: str, *argv: str, **env: str) -> settings.Settings:
    (tmp_path / "c.env").write_text(config)
    return settings.load(["--config", str(tmp_path / "c.env"), *argv], dict(env), REPO)


def test_settings_precedence_and_validation(tmp_path):
    s = load(tmp_path, "SYMBOLS=SPY SH\nBACKOFF_MAX=30\n")
    assert s.mode == "demo" and s.symbols == ["SPY", "SH"] and s.backoff_max == 30 and not s.schedule
    assert s.env["BARBRIDGE_CONFIG"] == str(tmp_path / "c.env"), "the sidecar must read the same file"
    assert load(tmp_path, "SYMBOLS=SPY\n", SYMBOLS="QQQ").symbols == ["QQQ"]
    assert load(tmp_path, "SYMBOLS=SPY\n", "--symbols", "SDS", SYMBOLS="QQQ").symbols == ["SDS"]
    live = load(tmp_path, "ALPACA_API_KEY=k1234\nALPACA_SECRET_KEY=s5678\n")
    assert live.mode == "live" and live.schedule and live.status_every == 60
    for config, message in [("TICK=0\n", "TICK must be more than 0"), ("MAX_RESTARTS=x\n", "not a whole number"),
                            ("WARMUP=maybe\n", "must be 1 or 0"), ("CLOSE_TIME=4pm\n", "not a HH:MM time"),
                            ("ALPACA_FEED=opra\n", "must be iex or sip"), ("SYMBOLS=BTC/USD/X\n", "not a valid symbol"),
                                ("SYMBOLS=SPY spy\n", "'spy' has lower-case letters"),
                            ("ALPACA_API_KEY=k\n", "needs both halves of ALPACA_API_KEY/ALPACA_SECRET_KEY")]:
        with pytest.raises(ConfigError, match=message):
            load(tmp_path, config)
    with pytest.raises(ConfigError, match="unknown option --bogus"):
        settings.load(["--bogus"], {}, REPO)


def test_nats_settings_a_stable_port_credentials_for_your_own_server_and_no_password_shown(tmp_path):
    from bridge.supervisor import natslocal
    assert load(tmp_path, "NATS=local\n").nats_port == 4222  # stable: subscribers find it every run
    assert load(tmp_path, "NATS=local\nNATS_PORT=0\n").nats_port == 0  # 0: a free port picked at start
    with pytest.raises(ConfigError, match="NATS=local makes its own credentials"):
        load(tmp_path, "NATS=local\nNATS_PASSWORD=x\n")
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "NATS_URL=http://u:hunter2@h:1\n")
    assert "hunter2" not in str(e.value)
    s = load(tmp_path, "NATS_URL=tls://h:4222\nNATS_USER=eng\nNATS_PASSWORD=pw\nNATS_CA=/ca.pem\n")
    env = natslocal.client_env({**s.env, "BARBRIDGE_NATS_TOKEN": "stale"}, s.runtime_dir, 0, False, s.nats_url)
    assert {k: v for k, v in env.items() if k.startswith("BARBRIDGE_NATS_") or k == "BARBRIDGE_PUBLISH"} == {
        "BARBRIDGE_PUBLISH": "tls://h:4222", "BARBRIDGE_NATS_USER": "eng", "BARBRIDGE_NATS_PASSWORD": "pw",
        "BARBRIDGE_NATS_CA": "/ca.pem"}


def test_help_needs_only_the_standard_library():
    # -S: no site-packages (a fresh clone has no .venv/ yet)
    r = subprocess.run([sys.executable, "-S", "-m", "bridge.supervisor", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "--status" in r.stdout and "WS_PING_TIMEOUT" in r.stdout, r.stderr


def test_instance_lock_is_exclusive_and_leaves_no_file(tmp_path):
    path = tmp_path / "launcher.lock"
    first = runtime.InstanceLock(path)
    first.acquire()
    holder = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                             "from pathlib import Path; from bridge.supervisor.runtime import InstanceLock, LockTaken\n"
                             "try:\n InstanceLock(Path(sys.argv[2])).acquire()\nexcept LockTaken as e:\n print(e.pid)",
                             str(REPO), str(path)], capture_output=True, text=True, timeout=30)
    assert holder.stdout.strip() == str(os.getpid()), holder.stderr
    first.release()
    assert not path.exists()
    second = runtime.InstanceLock(path)
    second.acquire()
    second.release()


def test_leftover_children_are_recognised_by_their_fifo(tmp_path):
    fifo = tmp_path / "bars.fifo"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(fifo)])
    try:
        wait_for(lambda: str(fifo).encode() in Path(f"/proc/{p.pid}/cmdline").read_bytes(), what="the exec")
        (tmp_path / "consumer.pid").write_text(f"{p.pid}\n")
        (tmp_path / "sidecar.pid").write_text(f"{os.getpid()}\n")  # alive, but not on this FIFO
        assert runtime.leftover_children(tmp_path, fifo) == {"consumer": p.pid}
        assert not (tmp_path / "sidecar.pid").exists()
    finally:
        p.kill()
        p.wait()


def test_bar_tail_groups_minutes_and_render_state_is_for_a_person(tmp_path):
    f = tmp_path / "bars.jsonl"
    f.write_text('{"symbol":"OLD","timestamp_ms":0,"close":1}\n')
    tail = display.BarTail(f)
    with open(f, "a") as w:
        w.write('{"symbol":"SPY","timestamp_ms":1764599400000,"close":671.4}\n'
                '{"symbol":"SH","timestamp_ms":1764599400000,"close":36.5,"type":"updated_bar"}\n'
                '{"symbol":"SPY","timestamp_ms":1764599460000,"close":671.5}\n{"symbol":"SH","timesta')
    lines = tail.lines()
    assert lines[0].startswith("2025-12-01 09:30 NY   SPY") and "(upd)" in lines[0]
    assert lines[1].endswith("[3 bars received]") and "OLD" not in "".join(lines)
    with open(f, "a") as w:
        w.write('mp_ms":1764599460000,"close":36.4}\n')
    assert tail.lines() == ["2025-12-01 09:31 NY   SH         36.4   [4 bars received]"]
    text = display.render_state({"launcher_pid": 1, "mode": "demo", "symbols": "SPY", "sidecar": {"pid": 5, "restarts": 2,
                                 "stale_restarts": 1}}, alive=False)
    assert "NOT RUNNING" in text and "restarts 2 (1 for a stale feed)" in text and "{" not in text


def test_bar_lines_show_a_halt_only_while_the_symbol_is_subscribed(tmp_path):
    """A symbol halted and then unsubscribed is no ghost "HALTED since" on every later bar line."""
    f, written, status = tmp_path / "bars.jsonl", tmp_path / "written.json", tmp_path / "status.json"
    import barbridge  # a real status report (the supervisor reads it through barbridge.read_status), plus a halt
    c = barbridge.Consumer(status_file=written)
    wait_for(written.exists, timeout=30, what="the status file")
    report = json.loads(written.read_text())
    del c
    report["halted"] = {"SDS": {"state": "halted", "since_ms": 1764599400000, "code": "T1", "reason": ""}}
    status.write_text(json.dumps(report))
    live = ["SPY", "SDS"]
    tail = display.BarTail(f, status, symbols=lambda: list(live))
    with open(f, "a") as w:
        w.write('{"symbol":"SPY","timestamp_ms":1764599460000,"close":671.4}\n')
    assert "SDS   HALTED since 09:30 (T1)" in tail.lines()[0]
    live.remove("SDS")
    with open(f, "a") as w:
        w.write('{"symbol":"SPY","timestamp_ms":1764599520000,"close":671.5}\n')
    assert "SDS" not in tail.lines()[0]


def test_python_requirement_matches_alpaca_py():
    import tomllib
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == ">=3.10"  # alpaca-py 0.44 needs 3.10
    assert "Python ≥ 3.10" in (REPO / "README.md").read_text()
