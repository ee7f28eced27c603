"""Entry point: ``run`` (the supervisor), ``--check`` (preflight only), ``--status``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from bridge.config import ConfigError
from bridge.exitcodes import ExitCode
from bridge.supervisor import display, natslocal, runtime, settings
from bridge.supervisor.app import Log, Supervisor
from bridge.supervisor.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def check(s: Settings, log: Log) -> int:
    """Preflight only: the build, then ``bridge.preflight`` (credentials, CA bundle, stream, FIFO)."""
    if not os.access(s.consumer_bin, os.X_OK):
        log(f"error: the consumer {s.consumer_bin} is not built. Fix: run cargo build --release --bin barbridge.")
        return ExitCode.CONFIG
    try:
        import barbridge  # type: ignore[import-not-found]
        _ = barbridge.FifoWriter
    except (ImportError, AttributeError):
        log("error: the Python extension barbridge (the sidecar's FIFO writer) is not built. "
            "Fix: run scripts/ensure_extension.sh.")
        return ExitCode.CONFIG
    print(f"preflight ({s.mode} mode):\n  ok    python: {sys.version.split()[0]} in .venv/\n"
          f"  ok    consumer: {s.consumer_bin}", flush=True)
    from bridge import preflight

    rc = preflight.run(s.mode, s.fifo, s.env.get("ALPACA_STREAM_URL") or None, s.env.get("ALPACA_TRADING_URL") or None,
                       s.feed, preflight.TIMEOUT, environ=dict(s.env))
    if (s.nats_url or s.nats_local) and not check_nats(s):
        rc = rc or ExitCode.CONFIG
    if rc == 0:
        print("preflight: all checks passed")
        return ExitCode.OK
    return ExitCode.CONFIG


def check_nats(s: Settings) -> bool:
    """NATS_URL: the server is reachable with the configured credentials and TLS, and the stream
    usable (``barbridge nats-check``; URL and secrets in its environment, never on its command line).
    NATS=local: NATS_PORT is free, and the same check against a nats-server started for it with a
    config like the launcher's (generated credentials) in a temporary directory, as the publisher
    and as the subscriber identity, then stopped."""
    sys.stdout.flush()
    check = [str(s.consumer_bin), "nats-check"]
    if s.nats_url:
        env = natslocal.client_env(s.env, s.runtime_dir, 0, False, s.nats_url, url_var="BARBRIDGE_NATS_URL")
        return subprocess.run(check, env=env).returncode == 0
    server = natslocal.binary()
    if server is None:
        print(f"  FAIL  NATS=local needs nats-server, which is not installed. Fix: {natslocal.INSTALL_HINT}.", flush=True)
        return False
    if s.nats_port and natslocal.accepts(s.nats_port):
        state = display.read_json(s.state_file) or {}
        ours = (state.get("nats") or {}).get("url") == natslocal.url(s.nats_port)
        if not ours:
            print(f"  FAIL  NATS_PORT {s.nats_port} on 127.0.0.1 is already in use. Fix: stop what listens there, or set "
                  "NATS_PORT to a free port in config.env (0 picks one at start).", flush=True)
            return False
        print(f"  ok    NATS_PORT {s.nats_port}: this launcher's nats-server listens there", flush=True)
    port = natslocal.free_port()
    with tempfile.TemporaryDirectory(prefix="barbridge-nats-check-") as tmp:
        config = natslocal.write_config(Path(tmp), port, Path(tmp) / "store")
        log_path = Path(tmp) / "nats.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(natslocal.argv(server, config), stdout=log_file, stderr=log_file,
                                    stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + natslocal.READY_TIMEOUT
            while proc.poll() is None and not natslocal.accepts(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None or not natslocal.accepts(port):
                last = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
                print(f"  FAIL  nats-server ({server}) did not start on 127.0.0.1:{port}: {last}. Fix: run it by hand "
                      f"to see why ({server} --config FILE, with a config like {config}).", flush=True)
                return False
            print(f"  ok    NATS=local: {server} starts with JetStream and per-run credentials (a test instance on "
                  f"127.0.0.1:{port})", flush=True)
            ok = True
            for identity in (natslocal.PUBLISHER, natslocal.SUBSCRIBER):
                env = {k: v for k, v in s.env.items() if not k.startswith("BARBRIDGE_NATS_")}
                env.update({"BARBRIDGE_NATS_URL": natslocal.url(port), "BARBRIDGE_NATS_USER": identity,
                            "BARBRIDGE_NATS_PASSWORD_FILE": str(natslocal.password_file(Path(tmp), identity))})
                ok = subprocess.run(check, env=env).returncode == 0 and ok
            return ok
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def status(s: Settings) -> int:
    """The consumer's status (``barbridge status``) and the supervisor's state, for a person.
    Exit 0 while the launcher runs, 1 if it does not."""
    state = display.read_json(s.state_file)
    if state is None:
        print(f"barbridge launcher: not running (no {s.state_file}).")
        return ExitCode.FAILURE
    pid = state.get("launcher_pid")
    running = isinstance(pid, int) and runtime.alive(pid)
    if not running:
        print(f"barbridge launcher: pid {pid} is not running (stale {s.state_file}).")
    sys.stdout.flush()
    subprocess.run([str(s.consumer_bin), "status", "--status-file", str(s.status_file)])
    print()
    print(display.render_state(state, running))
    return ExitCode.OK if running else ExitCode.FAILURE


def main(argv: Optional[list[str]] = None) -> int:
    log = Log()
    try:
        s = settings.load(argv, dict(os.environ), REPO)
    except settings.HelpShown:
        return ExitCode.OK
    except ConfigError as e:
        log(f"error: {e}")
        return ExitCode.CONFIG
    if s.config_loaded and s.config_file.stat().st_mode & 0o077:
        log(f"warning: {s.config_file} is readable by other users and may hold API keys. "
            f"Fix: chmod 600 {s.config_file}.")
    if s.action == "status":
        return status(s)
    if s.action == "check":
        return check(s, log)
    if s.action in ("subscribe", "unsubscribe"):
        from bridge.supervisor import symbol_change
        return symbol_change.main_change(s)
    return asyncio.run(Supervisor(s, log).main())
