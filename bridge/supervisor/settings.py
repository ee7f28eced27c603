"""The launcher's settings: command line, environment and ``config.env`` → one validated
:class:`Settings`. Precedence: an option beats the environment beats ``config.env`` beats the
default. Everything here is the standard library, so ``--help`` works before ``.venv/`` exists."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Optional

from bridge import config
from bridge.config import HALT_MINUTES, ConfigError, Credentials

PROG = "launch_live_trading"

USAGE = """\
Usage: scripts/launch_live_trading.sh [options]

Runs the market-data bridge: the Rust consumer (barbridge run) and the Python sidecar, supervised
(restart with backoff, stale feed -> sidecar restart, flap and give-up alerts, market-day schedule).
Ctrl-C / SIGTERM stop the sidecar, then the consumer, and remove the FIFO, pid and lock files.
Exit: 0 clean stop (signal, market close, no session today), 1 runtime failure or give-up,
2 configuration or preflight error.

Modes (default: live if credentials are configured, otherwise demo):
  --demo              offline pipeline with a synthetic feed (no network, no credentials)
  --live              live Alpaca feed; credentials required
  --check             run the preflight checks and exit (0 = all good)
  --status            print the running consumer's status and the supervisor's restart counts
  --subscribe LIST    add symbols to the running launcher (same runtime dir) without a restart; the
                      new ones are backfilled from the session's open. Lasts until that launcher
                      stops (sidecar restarts keep it); for good, edit SYMBOLS
  --unsubscribe LIST  remove symbols from the running launcher, likewise

Options (each also settable in config.env / the environment, shown in brackets):
  --config FILE       configuration file [BARBRIDGE_CONFIG, default: <repo>/config.env]
  --symbols LIST      symbols, separated by commas or spaces [SYMBOLS, default SPY,SPXL,SH,SDS;
                      ASSET=crypto: BTC/USD,ETH/USD, streamed 24/7, no market-day schedule by default]
  --run-dir DIR       where dated run directories go [RUNS_DIR, default <repo>/runs]
  --interval SECS     demo: wall seconds per synthetic minute bar [DEMO_INTERVAL, default 1]
                      (the last 390 minutes fast, then one bar per minute: never ahead of the clock)
  --halt-every MIN    demo: halt the last symbol 5 minutes every MIN minutes, with trading
                      statuses, so a halt shows as a halt [DEMO_HALT_EVERY, default 30; 0 = never]
  --schedule          follow the market-day schedule [SCHEDULE, default: on live, off demo]
  --no-schedule       run until stopped, whatever the time
  --wait-open         wait until OPEN_TIME before starting [WAIT_FOR_OPEN, default 1]
  --no-wait-open      start now even before the open
  --open HH:MM        start time, New York [OPEN_TIME, default 09:30]
  --eod HH:MM         end-of-day hook time, New York [EOD_TIME, default 15:58; runs EOD_CMD]
  --close HH:MM       shutdown time, New York [CLOSE_TIME, default 16:00; early closes win]
  --warmup            fetch recent minute bars over REST into the consumer first [WARMUP, live]
  --no-warmup
  --quiet             no per-bar lines on the terminal (status screens and events only)
  -h, --help

Precedence: an option beats the environment beats config.env beats the default. config.env holds
KEY=value lines (config.env.example lists every key; an unknown key is an error).

Schedule: holidays and early closes from the extension's NYSE table; on a day without a session the
launcher says so and exits 0; before the open it waits; EOD_CMD runs once at EOD_TIME (moved before
an early close); at CLOSE_TIME (or an earlier exchange close) it stops.

Supervision settings (environment/config.env; seconds may be fractional):
  STALE_AFTER=60 consumer's "no line at all" threshold -> restart the sidecar (after STALE_GRACE)
  SIDECAR_STALE_AFTER=90 sidecar's own "no bar in session" reconnect threshold
  BACKOFF_MIN=1 BACKOFF_MAX=60 restart backoff; MAX_RESTARTS=10 consecutive failures -> give up
  STABLE_AFTER=60 uptime that resets the backoff; FLAP_THRESHOLD=3 FLAP_WINDOW=600
  CONSUMER_HUNG_AFTER=30 status file age -> restart the consumer; STOP_TIMEOUT=8
  STATUS_EVERY=10 (demo) / 60 (live) status screen period, 0 = off; TICK=1 supervision period
  ALERT_CMD='cmd' run via bash -c with the one-line JSON payload as $1 and on stdin
    (events: stale, restart, flap, give_up; ALERT_TIMEOUT=10)
  HEARTBEAT=5 sidecar heartbeat; BARBRIDGE_RUNTIME_DIR private dir for FIFO, status, pid and lock files
  WS_PING_INTERVAL=10 WS_PING_TIMEOUT=180 websocket keepalive of the live stream

Fan-out and your own engine (config.env):
  NATS_URL=nats://HOST:PORT  the consumer publishes every journaled bar to JetStream there
  NATS=local         run and supervise a local nats-server (JetStream files under the run dir,
                     127.0.0.1:NATS_PORT, default 4222; credentials made per run in
                     <runtime>/nats/) and publish to it; stopped last
  NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY, NATS_CREDS (a file), NATS_TLS=1, NATS_CA,
  NATS_CERT/NATS_KEY (files)  credentials and TLS for NATS_URL
  CONSUMER_CMD='prog args'  run your program instead of barbridge run; it gets BARBRIDGE_FIFO,
                     BARBRIDGE_JOURNAL, BARBRIDGE_STATUS_FILE and BARBRIDGE_SYMBOLS in its environment
"""

_SECONDS = re.compile(r"^([0-9]+)(\.[0-9]*)?$")
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class HelpShown(Exception):
    """``--help`` was printed: exit 0."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One sentence, never the whole help (which --help prints).
        m = re.search(r"unrecognized arguments: (\S+)", message)
        if m:
            raise ConfigError(f"unknown option {m.group(1)}.", "see --help")
        m = re.search(r"argument (\S+?)(?:/\S+)?: expected one argument", message)
        if m:
            flag = m.group(1)
            raise ConfigError(f"{flag} needs a value.", f"give it one, e.g. {flag} {_EXAMPLES.get(flag, 'VALUE')}")
        raise ConfigError(f"{message}.", "see --help")


#: What the one-sentence error suggests when a flag is given without its value.
_EXAMPLES = {"--subscribe": "QQQ,IWM", "--unsubscribe": "SH", "--symbols": "SPY,SPXL", "--config": "config.env",
             "--run-dir": "runs", "--interval": "1", "--halt-every": "30", "--open": "09:30", "--eod": "15:55",
             "--close": "16:00"}


def _parser() -> _Parser:
    p = _Parser(prog="scripts/launch_live_trading.sh", add_help=False, allow_abbrev=False, usage=USAGE)
    p.add_argument("--demo", dest="mode", action="store_const", const="demo")
    p.add_argument("--live", dest="mode", action="store_const", const="live")
    p.add_argument("--check", dest="action", action="store_const", const="check", default="run")
    p.add_argument("--status", dest="action", action="store_const", const="status")
    p.add_argument("--subscribe", dest="change", type=lambda v: ("subscribe", v))
    p.add_argument("--unsubscribe", dest="change", type=lambda v: ("unsubscribe", v))
    p.add_argument("--config")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    for flag, key in (("--symbols", "SYMBOLS"), ("--run-dir", "RUNS_DIR"), ("--interval", "DEMO_INTERVAL"),
                      ("--halt-every", "DEMO_HALT_EVERY"),
                      ("--open", "OPEN_TIME"), ("--eod", "EOD_TIME"), ("--close", "CLOSE_TIME")):
        p.add_argument(flag, dest=key)
    for flag, key, value in (("--schedule", "SCHEDULE", "1"), ("--no-schedule", "SCHEDULE", "0"),
                             ("--wait-open", "WAIT_FOR_OPEN", "1"), ("--no-wait-open", "WAIT_FOR_OPEN", "0"),
                             ("--warmup", "WARMUP", "1"), ("--no-warmup", "WARMUP", "0")):
        p.add_argument(flag, dest=key, action="store_const", const=value)
    return p


def _demo_start(text: str) -> Optional[int]:
    """DEMO_START: an ISO time with its zone (2025-10-08T10:00-04:00) or epoch milliseconds; not in
    the future (the demo keeps to the clock)."""
    text = text.strip()
    if not text:
        return None
    try:
        ms = int(text) if text.isdigit() else int(dt.datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"DEMO_START={text} is not a time.", "use an ISO time with its zone, e.g. "
                          "2025-10-08T10:00-04:00, or epoch milliseconds") from None
    if ms > time.time() * 1000:
        raise ConfigError(f"DEMO_START={text} is in the future; the demo never runs ahead of the clock.",
                          "give a past time, or leave DEMO_START unset")
    return ms


@dataclass(frozen=True)
class Settings:
    """Everything the supervisor needs, validated."""

    repo: Path
    action: str  # run | check | status | subscribe | unsubscribe
    change_symbols: list[str]  # --subscribe / --unsubscribe: the symbols to add or remove
    mode: str  # live | demo
    config_file: Path
    config_loaded: bool
    env: dict[str, str]  # the environment the children get (config.env merged in)
    creds: Optional[Credentials]
    symbols: list[str]
    asset: str  # stock | crypto (24/7: no market-day schedule by default)
    runs_dir: Path
    runtime_dir: Path
    consumer_bin: Path
    feed: str
    schedule: bool
    wait_for_open: bool
    warmup: bool
    warmup_days: int
    open_time: str
    eod_time: str
    close_time: str
    eod_cmd: str
    alert_cmd: str
    demo_interval: float
    demo_halt_every: int  # demo: halt the last symbol 5 minutes every this many minutes (0 = never)
    demo_start_ms: Optional[int]  # demo: the first synthetic minute (DEMO_START); None = continue or catch up
    stale_after: float
    sidecar_stale_after: float
    stale_grace: float
    hung_after: float
    heartbeat: float
    tick: float
    status_every: float
    alert_timeout: float
    stop_timeout: float
    backoff_min: float
    backoff_max: float
    stable_after: float
    flap_window: float
    max_restarts: int
    flap_threshold: int
    quiet: bool
    nats_url: str  # "" = no publishing; with NATS=local, filled in by the supervisor
    nats_local: bool
    nats_port: int  # NATS=local: default 4222; 0 = pick a free port at start
    consumer_cmd: list[str]  # [] = barbridge run
    schedule_now: Optional[str]  # tests only: the instant that decides today's phase

    @property
    def fifo(self) -> Path:
        return self.runtime_dir / "bars.fifo"

    @property
    def status_file(self) -> Path:
        return self.runtime_dir / "status.json"

    @property
    def control_socket(self) -> Path:
        """The sidecar's control endpoint (``bridge/control_endpoint.py``): ``--subscribe``/``--unsubscribe``."""
        return self.runtime_dir / "control.sock"

    @property
    def live_symbols_file(self) -> Path:
        """The symbol list after a live change, kept for the sidecar's restarts; removed at exit."""
        return self.runtime_dir / "symbols.live.json"

    @property
    def state_file(self) -> Path:
        """The live supervisor state (``--status`` reads it); removed at exit."""
        return self.runtime_dir / "supervisor.json"

    @property
    def python(self) -> str:
        return sys.executable


def seconds(name: str, text: str) -> float:
    if not _SECONDS.match(text.strip()):
        raise ConfigError(f"{name}={text} is not a number of seconds.", f"set {name} to e.g. 5 or 0.5")
    return float(text)


def whole(name: str, text: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"{name}={text} is not a whole number.", f"set {name} to e.g. 10")
    return int(text)


def hhmm(name: str, text: str) -> str:
    config.parse_hhmm(name, text)  # the one HH:MM parser
    return text.strip()


def flag(name: str, text: str) -> bool:
    v = _BOOLS.get(text.strip().lower())
    if v is None:
        raise ConfigError(f"{name}={text} must be 1 or 0.", f"set {name}=1 or {name}=0")
    return v


def fan_out(env: dict[str, str]) -> tuple[str, bool, int, list[str]]:
    """NATS_URL, NATS=local, NATS_PORT and CONSUMER_CMD, checked against each other."""
    url = env.get("NATS_URL", "").strip()
    mode = env.get("NATS", "").strip().lower()
    if mode not in ("", "local"):
        raise ConfigError(f"NATS={env['NATS']} is not a NATS mode.", "set NATS=local, or set NATS_URL=nats://HOST:PORT instead")
    local = mode == "local"
    if local and url:
        raise ConfigError("NATS=local and NATS_URL are both set: the consumer publishes to one server.",
                          "keep NATS=local (a server run by the launcher) or NATS_URL (your own server), not both")
    if url and not all(u.strip().startswith(("nats://", "tls://")) and len(u.strip()) > len("nats://") for u in url.split(",")):
        # not echoed: it may hold a password
        raise ConfigError("NATS_URL is not a NATS URL.", "use NATS_URL=nats://HOST:PORT (or tls://HOST:PORT)")
    port_text = env.get("NATS_PORT", "").strip()
    if port_text and (not port_text.isdigit() or int(port_text) > 65535):
        raise ConfigError(f"NATS_PORT={env['NATS_PORT']} is not a port number.", "set NATS_PORT to e.g. 4222, or leave it unset")
    if port_text and not local:
        raise ConfigError("NATS_PORT is set but NATS=local is not.", "add NATS=local, or remove NATS_PORT")
    auth = [f"NATS_{k}" for k in ("USER", "PASSWORD", "PASSWORD_FILE", "TOKEN", "TOKEN_FILE", "NKEY", "NKEY_FILE", "CREDS", "TLS",
                                  "CA", "CERT", "KEY") if env.get(f"NATS_{k}", "").strip()]
    if auth and not url:
        raise ConfigError(f"{auth[0]} is set but NATS_URL is not: NATS=local makes its own credentials." if local
                          else f"{auth[0]} is set but NATS_URL is not.", "remove it, or set NATS_URL to your server")
    try:
        cmd = shlex.split(env.get("CONSUMER_CMD", ""))
    except ValueError as e:
        raise ConfigError(f"CONSUMER_CMD cannot be split into words ({e}).", "check its quotes") from None
    if cmd and (url or local):
        raise ConfigError("CONSUMER_CMD cannot be combined with NATS_URL or NATS=local: publishing is done by barbridge "
                          "run, and your program would replace it.",
                          "keep barbridge run as the consumer and attach your engine to NATS (barbridge run --source, "
                          "or barbridge::nats::NatsFeed), or drop NATS_URL/NATS")
    return url, local, int(port_text or 4222), cmd


def load(argv: Optional[list[str]], environ: dict[str, str], repo: Path) -> Settings:
    """Parse and validate; raises :class:`ConfigError` (exit 2) or :class:`HelpShown`."""
    a = _parser().parse_args(argv)
    if a.help:
        print(USAGE)
        raise HelpShown()
    change_symbols: list[str] = []
    if a.change:
        if a.action != "run" or a.mode:
            raise ConfigError(f"--{a.change[0]} talks to the running launcher and goes with no mode or action option.",
                              f"run scripts/launch_live_trading.sh --{a.change[0]} {a.change[1]} alone")
        a.action = a.change[0]
        change_symbols = config.parse_symbols(a.change[1])
    env = dict(environ)
    for key in ("SYMBOLS", "RUNS_DIR", "DEMO_INTERVAL", "DEMO_HALT_EVERY", "OPEN_TIME", "EOD_TIME", "CLOSE_TIME", "SCHEDULE",
                "WAIT_FOR_OPEN", "WARMUP"):
        if getattr(a, key) is not None:
            env[key] = getattr(a, key)
    cfg, named = config.config_path(a.config, env, repo)
    loaded = False
    if cfg.is_file():
        if not os.access(cfg, os.R_OK):
            raise ConfigError(f"config file {cfg} is not readable.", "check its permissions")
        for k, v in config.parse_env_file(cfg).items():
            env.setdefault(k, v)
        loaded = True
    elif named:
        raise ConfigError(f"config file {cfg} does not exist.", "create it from config.env.example or drop --config")
    if loaded:
        env["BARBRIDGE_CONFIG"] = str(cfg)  # the sidecar reads the same file
    else:
        env.pop("BARBRIDGE_CONFIG", None)

    creds = config.credentials_from_env(env)
    partial = None if creds else config.partial_credentials(env)
    mode = a.mode or ("live" if creds or partial else "demo")
    if mode == "live" and creds is None and a.action in ("run", "check"):
        if partial:
            raise ConfigError(f"live mode needs both halves of {partial} and one is missing.",
                              f"set both in {cfg}, or run with --demo")
        raise ConfigError("live mode needs Alpaca credentials and none are configured.",
                          f"set ALPACA_API_KEY and ALPACA_SECRET_KEY in {cfg} (see config.env.example), or run with --demo")

    def get(key: str, default: str) -> str:
        v = env.get(key, "")
        return v if v.strip() else default

    live = mode == "live"
    asset = config.parse_asset(get("ASSET", "stock"))
    if change_symbols:  # a live change keeps to the running stream's asset class (the extension's shape rule)
        config.check_asset_symbols(asset, change_symbols)
    symbols = config.parse_symbols(env.get("SYMBOLS", "").strip() or None, asset)
    config.check_asset_symbols(asset, symbols)
    runs = Path(get("RUNS_DIR", str(repo / "runs")))
    feed = get("ALPACA_FEED", "iex")
    if feed not in ("iex", "sip"):
        raise ConfigError(f"ALPACA_FEED={feed} must be iex or sip.", "set ALPACA_FEED=iex")
    demo_interval = seconds("DEMO_INTERVAL", get("DEMO_INTERVAL", "1"))
    if demo_interval <= 0:
        raise ConfigError("DEMO_INTERVAL must be more than 0 seconds.", "use e.g. --interval 1")
    demo_start_ms = _demo_start(get("DEMO_START", ""))
    demo_halt_every = whole("DEMO_HALT_EVERY", get("DEMO_HALT_EVERY", "30"))
    if 0 < demo_halt_every <= HALT_MINUTES:
        raise ConfigError(f"DEMO_HALT_EVERY={demo_halt_every} must be 0 (never) or more than the "
                          f"{HALT_MINUTES} minutes a demo halt lasts.", "use e.g. DEMO_HALT_EVERY=30")
    stale_after = seconds("STALE_AFTER", get("STALE_AFTER", "60"))
    if stale_after <= 0:
        raise ConfigError("STALE_AFTER must be more than 0 seconds.", "use e.g. STALE_AFTER=60")
    tick = seconds("TICK", get("TICK", "1"))
    if tick <= 0:
        raise ConfigError("TICK must be more than 0 seconds.", "use e.g. TICK=1")
    nats_url, nats_local, nats_port, consumer_cmd = fan_out(env)
    # The default: the directory of the extension's default FIFO (the consumer's and the sidecar's default).
    runtime = env.get("BARBRIDGE_RUNTIME_DIR") or str(Path(config.default_fifo_path()).parent)
    return Settings(
        repo=repo, action=a.action, change_symbols=change_symbols, mode=mode, config_file=cfg, config_loaded=loaded,
        env=env, creds=creds,
        symbols=symbols, asset=asset, runs_dir=runs if runs.is_absolute() else Path.cwd() / runs,
        runtime_dir=Path(runtime), consumer_bin=Path(get("BARBRIDGE_BIN", str(repo / "target" / "release" / "barbridge"))),
        feed=feed, schedule=flag("SCHEDULE", get("SCHEDULE", "1" if live and asset == "stock" else "0")),
        wait_for_open=flag("WAIT_FOR_OPEN", get("WAIT_FOR_OPEN", "1")), warmup=flag("WARMUP", get("WARMUP", "0")),
        warmup_days=whole("WARMUP_DAYS", get("WARMUP_DAYS", "20")),
        open_time=hhmm("OPEN_TIME", get("OPEN_TIME", "09:30")), eod_time=hhmm("EOD_TIME", get("EOD_TIME", "15:58")),
        close_time=hhmm("CLOSE_TIME", get("CLOSE_TIME", "16:00")), eod_cmd=env.get("EOD_CMD", ""),
        alert_cmd=env.get("ALERT_CMD", ""), demo_interval=demo_interval, demo_halt_every=demo_halt_every,
        demo_start_ms=demo_start_ms,
        stale_after=stale_after,
        sidecar_stale_after=seconds("SIDECAR_STALE_AFTER", get("SIDECAR_STALE_AFTER", "90")),
        stale_grace=seconds("STALE_GRACE", get("STALE_GRACE", get("STALE_AFTER", "60"))),
        hung_after=seconds("CONSUMER_HUNG_AFTER", get("CONSUMER_HUNG_AFTER", "30")),
        heartbeat=seconds("HEARTBEAT", get("HEARTBEAT", "5")), tick=tick,
        status_every=seconds("STATUS_EVERY", get("STATUS_EVERY", "60" if live else "10")),
        alert_timeout=seconds("ALERT_TIMEOUT", get("ALERT_TIMEOUT", "10")),
        stop_timeout=seconds("STOP_TIMEOUT", get("STOP_TIMEOUT", "8")),
        backoff_min=seconds("BACKOFF_MIN", get("BACKOFF_MIN", "1")),
        backoff_max=seconds("BACKOFF_MAX", get("BACKOFF_MAX", "60")),
        stable_after=seconds("STABLE_AFTER", get("STABLE_AFTER", "60")),
        flap_window=seconds("FLAP_WINDOW", get("FLAP_WINDOW", "600")),
        max_restarts=whole("MAX_RESTARTS", get("MAX_RESTARTS", "10")),
        flap_threshold=whole("FLAP_THRESHOLD", get("FLAP_THRESHOLD", "3")),
        quiet=a.quiet, nats_url=nats_url, nats_local=nats_local, nats_port=nats_port, consumer_cmd=consumer_cmd,
        schedule_now=env.get("SCHEDULE_NOW") or None)
