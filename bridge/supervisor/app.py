"""The supervisor: runs the consumer (``barbridge run``) and the sidecar (``python -m bridge``) for
one instance, and keeps them running.

* start: settings → run directory → instance locks (runtime dir and run dir) → leftover children
  of an earlier launcher refused → preflight → market-day schedule (wait for the open) → with
  ``NATS=local`` a nats-server → consumer (``barbridge run``, or ``CONSUMER_CMD``), its FIFO →
  optional warm-up → sidecar.
* every ``TICK``: EOD hook, close; children that exited are restarted with backoff, or the
  supervisor gives up (exit 1); a consumer whose status file stops changing is restarted; a feed the
  consumer reports stale restarts the sidecar; new bars and periodic status screens on stdout.
* stop (SIGINT/SIGTERM/SIGHUP, the close, a give-up): the sidecar, then the consumer (it flushes
  its journal), then the local nats-server (the publisher has drained what it could); FIFO,
  status, pid, state and lock files removed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from bridge.config import DEMO_HISTORY_MINUTES, ConfigError, mask
from bridge.exitcodes import ExitCode
from bridge.supervisor import display, natslocal, runtime
from bridge.supervisor.symbol_change import current_symbols
from bridge.supervisor.alerts import Alerter, local_ts
from bridge.supervisor.children import Child, run as run_to_end
from bridge.supervisor.policy import Backoff, FlapDetector, RestartPolicy, Tracked
from bridge.supervisor.settings import PROG, Settings

if TYPE_CHECKING:
    from barbridge import StatusReport

CONSUMER_FIFO_TIMEOUT = 15.0


def _minute_ms() -> int:
    """The minute, in ms (every bar is a minute bar): the extension's, loaded when a consumer runs."""
    import barbridge  # type: ignore[import-not-found]

    return int(barbridge.MINUTE_MS)


class Fatal(Exception):
    """Stop with ``code`` after logging ``error: sentence Fix: fix.``"""

    def __init__(self, code: int, sentence: str, fix: Optional[str] = None) -> None:
        super().__init__(f"{sentence} Fix: {fix}." if fix else sentence)
        self.code = code


class Stopped(Exception):
    """A signal asked the supervisor to stop (exit 0)."""


class Log:
    """``<local time> [launch_live_trading] message`` on stderr and, once there is a run
    directory, in its ``launcher.log``."""

    def __init__(self) -> None:
        self.file: Optional[Path] = None

    def __call__(self, message: str) -> None:
        line = f"{local_ts()} [{PROG}] {message}\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if self.file is not None:
            try:
                with open(self.file, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError:
                pass


class Supervisor:
    def __init__(self, s: Settings, log: Log) -> None:
        self.s = s
        self.log = log
        self.stop_signal: Optional[str] = None
        self.stop_event = asyncio.Event()
        self.run_dir: Optional[Path] = None
        self.locks: list[runtime.InstanceLock] = []
        self.consumer = Child("consumer", s.runtime_dir / "consumer.pid", Path(os.devnull))
        self.sidecar = Child("sidecar", s.runtime_dir / "sidecar.pid", Path(os.devnull))
        self.nats = Child("nats", s.runtime_dir / "nats.pid", Path(os.devnull))
        self.nats_port = s.nats_port
        self.nats_config = Path(os.devnull)  # NATS=local: written at the first start
        self.track = {"consumer": Tracked("consumer"), "sidecar": Tracked("sidecar"), "nats": Tracked("nats")}
        self.policy = RestartPolicy(Backoff(s.backoff_min, s.backoff_max), s.max_restarts, s.stable_after)
        self.flaps = FlapDetector(s.flap_threshold, s.flap_window)
        self.gave_up = False
        self.alerter: Optional[Alerter] = None
        self.stdout_open = True
        self.tasks: set[asyncio.Task[Any]] = set()
        self.env = {**s.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(s.repo), s.env.get("PYTHONPATH")])),
                    "PYTHONUNBUFFERED": "1"}

    # ------------------------------------------------------------------ helpers
    def _on_signal(self, sig: signal.Signals) -> None:
        self.stop_signal = sig.name
        self.stop_event.set()

    async def nap(self, seconds: float) -> None:
        """Sleep, ending at once (with :class:`Stopped`) when a signal arrives."""
        try:
            await asyncio.wait_for(self.stop_event.wait(), max(0.0, seconds))
        except asyncio.TimeoutError:
            pass
        if self.stop_event.is_set():
            raise Stopped()

    def out(self, text: str) -> None:
        """The terminal display; a closed stdout (``| head``) ends it, never the pipeline."""
        if not self.stdout_open:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, BrokenPipeError) and e.errno != errno.EPIPE:
                raise
            self.stdout_open = False
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
            os.close(devnull)
            self.log("stdout was closed (e.g. by `| head`): bars and status screens are no longer shown; the "
                     f"pipeline keeps running (logs in {self.run_dir}; stop it with Ctrl-C or SIGTERM)")

    def path(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / name

    def state(self) -> dict[str, Any]:
        t = self.track
        symbols = current_symbols(self.s)
        return {"launcher_pid": os.getpid(), "mode": self.s.mode, "symbols": ",".join(symbols),
                "configured_symbols": ",".join(self.s.symbols) if symbols != self.s.symbols else None,
                "run_dir": str(self.run_dir), "config": str(self.s.config_file) if self.s.config_loaded else None,
                "updated": local_ts(),
                "nats": {"pid": self.nats.pid, "url": natslocal.url(self.nats_port), "restarts": t["nats"].restarts}
                if self.s.nats_local else None,
                "consumer": {"pid": self.consumer.pid, "restarts": t["consumer"].restarts,
                             "consecutive_failures": t["consumer"].failures},
                "sidecar": {"pid": self.sidecar.pid, "restarts": t["sidecar"].restarts,
                            "stale_restarts": t["sidecar"].stale_restarts,
                            "consecutive_failures": t["sidecar"].failures},
                "flap_alerts": self.flaps.episodes, "alerts": self.alerter.sent if self.alerter else 0,
                "gave_up": self.gave_up}

    def write_state(self, live: bool = True) -> None:
        text = json.dumps(self.state(), indent=1) + "\n"
        targets = [self.path("supervisor.json")] + ([self.s.state_file] if live else [])
        for target in targets:
            tmp = target.with_name(target.name + ".tmp")
            try:
                tmp.write_text(text)
                tmp.replace(target)
            except OSError as e:
                self.log(f"error: cannot write {target} ({e.strerror or e})")

    def alert_context(self) -> dict[str, Any]:
        return {"mode": self.s.mode, "ts": local_ts(),
                "restarts": {n: self.track[n].restarts for n in ("consumer", "sidecar")}, "run_dir": str(self.run_dir)}

    def background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ start-up
    def prepare_dirs(self) -> None:
        s = self.s
        today = dt.datetime.now(display.NY).strftime("%Y-%m-%d")
        run_dir = s.runs_dir / today
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError:
            raise Fatal(ExitCode.CONFIG, f"cannot create the run directory {run_dir} (or it is not writable).",
                        "choose a writable place with --run-dir DIR (or RUNS_DIR)") from None
        try:
            runtime.prepare_private_dir(s.runtime_dir)
        except ConfigError as e:
            raise Fatal(ExitCode.CONFIG, e.sentence, e.fix) from None
        rt_lock = runtime.InstanceLock(s.runtime_dir / "launcher.lock")
        try:
            rt_lock.acquire()
        except runtime.LockTaken as e:
            raise Fatal(ExitCode.CONFIG, f"another launcher (pid {e.pid}) is already running on {s.runtime_dir}.",
                        "stop it first, or give a second instance its own BARBRIDGE_RUNTIME_DIR and --run-dir") from None
        self.locks.append(rt_lock)
        runs_lock = runtime.InstanceLock(s.runs_dir / "launcher.lock")
        try:
            runs_lock.acquire()
        except runtime.LockTaken as e:
            raise Fatal(ExitCode.CONFIG, f"the run directory {s.runs_dir} is in use by another launcher (pid {e.pid}); "
                           "its journal and logs would mix with this one's.",
                        "give this instance its own --run-dir (or RUNS_DIR)") from None
        self.locks.append(runs_lock)
        s.live_symbols_file.unlink(missing_ok=True)  # a live change of an earlier launcher run ends with it
        left = runtime.leftover_children(s.runtime_dir, s.fifo)
        if left:
            names = " and ".join(f"{n} (pid {p})" for n, p in left.items())
            raise Fatal(ExitCode.CONFIG, f"the {names} of an earlier launcher still run{'s' if len(left) == 1 else ''} on "
                           f"{s.fifo}; a second pair would split the bars between them.",
                        f"stop {'it' if len(left) == 1 else 'them'} (kill {' '.join(map(str, left.values()))}), then rerun")
        self.run_dir = run_dir
        self.log.file = self.path("launcher.log")
        self.consumer.log_file = self.path("consumer.log")
        self.nats.log_file = self.path("nats.log")
        self.sidecar.log_file = self.path("sidecar.log")
        self.path("bars.jsonl").touch()
        self.alerter = Alerter(s.alert_cmd, s.alert_timeout, self.path("launcher.log"), self.log, self.alert_context)

    async def preflight(self) -> None:
        """``bridge.preflight`` in this process (a worker thread: its checks block on the network),
        with the launcher's settings; its lines go to launcher.log, the failing one to the terminal."""
        from bridge import preflight

        s = self.s
        lines = [f"preflight ({s.mode} mode):", f"  ok    python: {sys.version.split()[0]} in .venv/",
                 f"  ok    consumer: {s.consumer_bin}"]
        rc = await asyncio.to_thread(preflight.run, s.mode, s.fifo, self.env.get("ALPACA_STREAM_URL") or None,
                                     self.env.get("ALPACA_TRADING_URL") or None, s.feed, preflight.TIMEOUT,
                                     environ=dict(self.env), say=lines.append)
        sup_log = self.path("launcher.log")
        with open(sup_log, "a") as f:
            f.write("".join(line + "\n" for line in lines))
        if rc != 0:
            sys.stderr.write(lines[-1] + "\n")
            raise Fatal(ExitCode.CONFIG, f"preflight failed (details above; full list in {sup_log}).",
                        "fix it, then check with scripts/launch_live_trading.sh --check")

    async def follow_schedule(self) -> Optional[tuple[int, int, str, str]]:
        """Today's (EOD instant, close instant, EOD and close New York times), after waiting for the
        open; raises :class:`Stopped` when there is nothing to do today."""
        s = self.s
        from bridge import schedule  # the extension's session table: loaded only when the schedule is followed
        now = schedule._parse_now(s.schedule_now) if s.schedule_now else dt.datetime.now(dt.timezone.utc)
        try:
            sched = await asyncio.to_thread(schedule.compute, now, schedule.parse_hhmm("OPEN_TIME", s.open_time),
                                            schedule.parse_hhmm("EOD_TIME", s.eod_time),
                                            schedule.parse_hhmm("CLOSE_TIME", s.close_time))
        except schedule.ScheduleError as e:
            raise Fatal(ExitCode.CONFIG, str(e), f"fix OPEN_TIME/EOD_TIME/CLOSE_TIME in {s.config_file}") from None
        if not sched["TRADING_DAY"]:
            self.log(f"today ({sched['SESSION_DATE']}, New York) is not a NYSE trading day (weekend or holiday); "
                     f"next session {sched['NEXT_SESSION']}. Nothing to do.")
            raise Stopped()
        if sched["PHASE"] == "after_close":
            self.log(f"the session of {sched['SESSION_DATE']} is over (close {sched['CLOSE_NY']} New York); next "
                     f"session {sched['NEXT_SESSION']}. Nothing to do.")
            raise Stopped()
        self.log(f"session {sched['SESSION_DATE']}: start {sched['OPEN_NY']}, EOD hook {sched['EOD_NY']}, shutdown "
                 f"{sched['CLOSE_NY']} New York" + (" (early close)" if sched["EARLY_CLOSE"] else ""))
        if sched["PHASE"] == "before_open" and s.wait_for_open:
            self.log(f"waiting for {sched['OPEN_NY']} New York ({sched['OPEN_EPOCH'] - int(time.time())} s)")
            while time.time() < sched["OPEN_EPOCH"]:
                await self.nap(min(30.0, sched["OPEN_EPOCH"] - time.time()))
        return sched["EOD_EPOCH"], sched["CLOSE_EPOCH"], sched["EOD_NY"], sched["CLOSE_NY"]

    # ------------------------------------------------------------------ children
    async def start_consumer(self) -> None:
        s = self.s
        journal = self.journal_dir()
        if s.consumer_cmd:
            await self.start_own_consumer(journal)
            return
        argv = [str(s.consumer_bin), "run", "--fifo", str(s.fifo), "--status-file", str(s.status_file),
                "--journal", str(journal), "--stale-after", f"{s.stale_after:g}", "--echo"]
        # no --symbols filter: the sidecar sends only what it subscribed, and a live --subscribe must
        # reach the consumer without restarting it
        # --publish's URL and credentials go in the environment (BARBRIDGE_PUBLISH, BARBRIDGE_NATS_*):
        # a password in NATS_URL must not be on a command line that `ps` shows
        env = natslocal.client_env(self.env, s.runtime_dir, self.nats_port, s.nats_local, s.nats_url)
        if self.env.get("METRICS_ADDR", "").strip():  # /metrics, /status.json and the live page
            argv += ["--metrics-addr", self.env["METRICS_ADDR"].strip()]
        if self.env.get("LOG_FORMAT", "").strip():
            argv = argv[:1] + ["--log-format", self.env["LOG_FORMAT"].strip()] + argv[1:]
        env = {**env, "RUST_LOG": self.env.get("RUST_LOG") or "info"}
        pid = await self.consumer.start(argv, env=env, cwd=s.repo, stdout=self.path("bars.jsonl"))
        self.log(f"consumer started (pid {pid}; log {self.consumer.log_file})")

    def journal_dir(self) -> Path:
        return self.s.runs_dir / "journal" if self.s.mode == "live" else self.path("demo-journal")

    async def start_own_consumer(self, journal: Path) -> None:
        """``CONSUMER_CMD``: the user's program reads the FIFO; where things are is in its environment."""
        s = self.s
        env = {**self.env, "RUST_LOG": self.env.get("RUST_LOG") or "info", "BARBRIDGE_FIFO": str(s.fifo),
               "BARBRIDGE_JOURNAL": str(journal), "BARBRIDGE_STATUS_FILE": str(s.status_file),
               "BARBRIDGE_SYMBOLS": ",".join(current_symbols(s))}
        try:
            pid = await self.consumer.start(s.consumer_cmd, env=env, cwd=s.repo, stdout=self.path("bars.jsonl"))
        except OSError as e:
            raise Fatal(ExitCode.CONFIG, f"CONSUMER_CMD cannot be started: {s.consumer_cmd[0]}: {e.strerror or e}.",
                        "set CONSUMER_CMD to an executable program (an absolute path, or one on PATH)") from None
        self.log(f"consumer started: CONSUMER_CMD {s.consumer_cmd[0]} (pid {pid}; log {self.consumer.log_file})")

    def nats_store(self) -> Path:
        """JetStream's files: beside the journal the publisher reads (kept across days when live)."""
        return self.s.runs_dir / "nats" if self.s.mode == "live" else self.path("demo-nats")

    async def start_nats(self) -> None:
        """``NATS=local``: start nats-server (the same port and credentials on every restart) and wait
        until it accepts. Its config, with this run's generated credentials, is written at the first
        start."""
        server = natslocal.binary()
        if server is None:
            raise Fatal(ExitCode.CONFIG, "NATS=local needs nats-server, which is not installed.", natslocal.INSTALL_HINT)
        first = self.track["nats"].restarts == 0
        store = self.nats_store()
        if first:
            if self.nats_port == 0:
                self.nats_port = natslocal.free_port()
            elif natslocal.accepts(self.nats_port):
                raise Fatal(ExitCode.CONFIG, f"NATS_PORT {self.nats_port} on 127.0.0.1 is already in use (another nats-server or "
                               "program listens there), so NATS=local cannot start its server.",
                            "stop what listens there, or set NATS_PORT to a free port in config.env (0 picks one at start)")
            store.mkdir(parents=True, exist_ok=True)
            self.nats_config = natslocal.write_config(self.s.runtime_dir, self.nats_port, store)
        store.mkdir(parents=True, exist_ok=True)
        pid = await self.nats.start(natslocal.argv(server, self.nats_config), env=self.env, cwd=self.s.repo,
                                    stdout=self.nats.log_file, new_session=True)  # Ctrl-C: stopped last, not first
        assert self.nats.proc is not None
        why = await natslocal.wait_ready(self.nats_port, self.nats.proc)
        if why:
            raise Fatal(ExitCode.FAILURE, f"{why}: {self.nats.last_message()}", f"see {self.nats.log_file}")
        self.log(f"nats-server started (pid {pid}, {natslocal.url(self.nats_port)}, JetStream files in {store}; "
                 f"log {self.nats.log_file})")
        if first:
            where = natslocal.nats_dir(self.s.runtime_dir) / "url"
            self.log(f"NATS=local: clients need credentials (made for this run; URL in {where}); "
                     f"a subscriber here: {natslocal.subscriber_hint(self.s.runtime_dir, self.nats_port)}")

    async def start_sidecar(self) -> None:
        s = self.s
        argv = [s.python, "-m", "bridge", "--fifo", str(s.fifo), "--symbols", ",".join(s.symbols),
                "--asset", s.asset, "--heartbeat", f"{s.heartbeat:g}", "--stats-interval", "60",
                "--control", str(s.control_socket), "--symbols-state", str(s.live_symbols_file)]
        if s.mode == "demo":
            argv += ["--source", "synthetic", "--interval", f"{s.demo_interval:g}",
                     "--halt-every", str(s.demo_halt_every)]
            last = await self.last_demo_bar_ms()
            if s.demo_start_ms is not None and s.demo_start_ms > last:  # DEMO_START, unless journaled already
                argv += ["--start-ms", str(s.demo_start_ms)]
            elif last > 0:  # continue after the last bar the consumer holds (no repeated minutes)
                argv += ["--start-ms", str(last + _minute_ms())]
            what = "synthetic"
        else:
            argv += ["--source", "alpaca", "--feed", s.feed, "--stale-after", f"{s.sidecar_stale_after:g}",
                     "--no-preflight"]
            what = f"alpaca {s.feed}" if s.asset == "stock" else "alpaca crypto"
        pid = await self.sidecar.start(argv, env=self.env, cwd=s.repo, stdout=self.sidecar.log_file)
        live = current_symbols(s)
        changed = f", symbols {','.join(live)} as changed live" if live != s.symbols else ""
        self.log(f"sidecar started (pid {pid}, source {what}{changed}; log {self.sidecar.log_file})")

    async def last_demo_bar_ms(self) -> int:
        """The newest bar of the demo's own symbols in the running consumer (it loads today's journal
        before it opens the FIFO; its status file says what it holds): 0 when it holds none. Not the
        terminal's bars.jsonl, which may hold an engine's output or another run's crypto bars. A
        journal ahead of the clock (written by an older demo whose clock ran ahead) is not followed:
        the demo stays in the present, and the overlap shows as conflicts, said once here."""
        s = self.s
        status = await self.own_status()
        if status is None:
            return 0
        wanted = set(current_symbols(s))
        held = status["health"]["symbols"]
        last = max((v["last_bar_ts_ms"] for sym, v in held.items() if sym in wanted), default=0)
        if last + _minute_ms() > time.time() * 1000:
            self.log(f"warning: the demo journal {self.journal_dir()} holds bars up to "
                     f"{time.strftime('%H:%M', time.localtime(last / 1000))}, ahead of the clock (an older demo ran "
                     "ahead of it); the demo starts in the present, so those minutes show as conflicts. Fix: move "
                     "that directory aside to start afresh.")
            return 0
        return last

    async def show_page_address(self) -> None:
        """METRICS_ADDR: print where the live page is, as the consumer bound it (port 0: any)."""
        if not self.env.get("METRICS_ADDR", "").strip() or self.s.consumer_cmd:
            return
        status = await self.own_status(lambda st: bool(st.get("sections", {}).get("http", {}).get("addr")))
        if status is not None:
            base = f"http://{status['sections']['http']['addr']}/"
            self.log(f"live page: {base} (metrics: {base}metrics)")

    async def own_status(self, ready: Callable[[StatusReport], bool] = lambda _: True) -> Optional[StatusReport]:
        """The running consumer's own status report (not its predecessor's: the pid says whose)
        once ``ready`` holds for it; None when it does not within CONSUMER_FIFO_TIMEOUT or the
        consumer is gone."""
        deadline = time.monotonic() + CONSUMER_FIFO_TIMEOUT
        while True:
            status = display.read_status(self.s.status_file)
            if status is not None and status["pid"] == self.consumer.pid and ready(status):
                return status
            if time.monotonic() >= deadline or not self.consumer.running:
                return None
            await self.nap(0.05)

    async def wait_for_fifo(self) -> None:
        deadline = time.monotonic() + CONSUMER_FIFO_TIMEOUT
        while not self.s.fifo.exists():
            rc = self.consumer.reap()
            if rc is not None:
                raise Fatal(ExitCode.CONFIG, f"the consumer exited at start (exit {rc}): {self.consumer.last_message()}",
                            f"see {self.consumer.log_file}")
            if time.monotonic() >= deadline:
                raise Fatal(ExitCode.FAILURE, f"the consumer did not create {self.s.fifo} within {CONSUMER_FIFO_TIMEOUT:g} s.",
                            f"see {self.consumer.log_file}")
            await self.nap(0.05)

    async def warm_up(self) -> None:
        s = self.s
        if s.mode != "live":
            self.log("warm-up skipped in demo mode")
            return
        out = self.path("warmup.jsonl")
        sup_log = self.path("launcher.log")
        self.log(f"warm-up: fetching {s.warmup_days} sessions of minute bars over REST into the consumer")
        rc = await run_to_end([s.python, "-m", "bridge.warmup", "--symbols", ",".join(s.symbols), "--days",
                               str(s.warmup_days), "--out", str(out)], env=self.env, cwd=s.repo, stdout=sup_log,
                              stderr=sup_log)
        if rc == 0:
            rc = await run_to_end([s.python, "-m", "bridge", "--source", "replay", "--replay-file", str(out),
                                   "--fifo", str(s.fifo), "--symbols", ",".join(s.symbols), "--stats-interval", "0"],
                                  env=self.env, cwd=s.repo, stdout=self.sidecar.log_file, stderr=self.sidecar.log_file)
        if rc == 0:
            self.log(f"warm-up: bars from {out} delivered to the consumer")
        else:
            self.log(f"error: warm-up failed (see {sup_log}); continuing without it")

    # ------------------------------------------------------------------ supervision
    async def check_child(self, child: Child) -> None:
        t = self.track[child.name]
        if not child.running and child.proc is None:
            if t.restart_at is not None and time.monotonic() >= t.restart_at:
                t.restart_at = None
                t.restarts += 1
                await {"consumer": self.start_consumer, "sidecar": self.start_sidecar, "nats": self.start_nats}[child.name]()
                assert self.alerter is not None
                await self.alerter.send("restart", child.name,
                                        f"the {child.name} was restarted (restart #{t.failures} in a row)")
                await self.note_restart(child.name)
                self.write_state()
            return
        pid = child.pid
        rc = child.reap()
        if rc is None:
            return
        uptime = time.monotonic() - child.started
        why = child.last_message() or "no error message"
        verdict = self.policy.on_exit(t, rc, uptime, why.split("error: ", 1)[-1])
        if verdict.give_up:
            await self.give_up(child.name, verdict.give_up)
        t.restart_at = time.monotonic() + verdict.delay
        self.log(f"error: the {child.name} (pid {pid}) exited with code {rc} after {uptime:.0f} s; restart "
                 f"#{t.failures} in {verdict.delay:.1f} s")
        self.write_state()

    async def note_restart(self, name: str) -> None:
        n = self.flaps.note(time.monotonic())
        if n:
            assert self.alerter is not None
            await self.alerter.send("flap", name, f"{n} restarts within {self.s.flap_window:.0f} s: the pipeline is flapping")

    async def give_up(self, name: str, sentence: str) -> None:
        self.gave_up = True
        assert self.alerter is not None
        await self.alerter.send("give_up", name, sentence)
        self.write_state()
        raise Fatal(ExitCode.FAILURE, sentence, f"see {self.run_dir}/{name}.log; fix the cause and rerun")

    async def check_health(self) -> None:
        s = self.s
        if not self.consumer.running:
            return
        status = display.read_status(s.status_file)
        if status is None:
            return
        now_ms = time.time() * 1000
        updated = status["updated_ms"]
        state = status["health"]["state"]
        assert self.alerter is not None
        if (now_ms - updated > s.hung_after * 1000
                and time.monotonic() - self.consumer.started > s.hung_after):
            age = (now_ms - updated) / 1000
            self.log(f"error: the consumer's status file was last written {age:.0f} s ago: the consumer is hung; "
                     "restarting it")
            await self.alerter.send("stale", "consumer", f"consumer status not updated for {age:.0f} s (hung)")
            await self.consumer.stop(s.stop_timeout, self.log)
            self.track["consumer"].failures += 1
            self.track["consumer"].restart_at = time.monotonic()
            return
        if state == "stale" and self.sidecar.running and time.monotonic() - self.sidecar.started >= s.stale_grace:
            if status["health"]["stale_reason"] == "only_conflicts":
                reason = (f"the consumer reports the feed stale (for {s.stale_after:g} s only bars conflicting with "
                          "stored minutes, none delivered)")
            else:
                reason = f"the consumer reports the feed stale (nothing received for {s.stale_after:g} s)"
            self.log(f"error: {reason}: restarting the sidecar (pid {self.sidecar.pid})")
            await self.alerter.send("stale", "sidecar", reason)
            await self.sidecar.stop(s.stop_timeout, self.log)
            t = self.track["sidecar"]
            t.restarts += 1
            t.stale_restarts += 1
            await self.start_sidecar()
            await self.alerter.send("restart", "sidecar", "the sidecar was restarted because the feed was stale")
            await self.note_restart("sidecar")
            self.write_state()

    async def status_screen(self) -> None:
        s = self.s
        proc = await asyncio.create_subprocess_exec(str(s.consumer_bin), "status", "--status-file", str(s.status_file),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        text, _ = await proc.communicate()
        t = self.track
        self.out(f"{'-' * 64} status {local_ts()}\n{text.decode(errors='replace').rstrip()}\n"
                 f"supervisor: consumer restarts {t['consumer'].restarts}, sidecar restarts {t['sidecar'].restarts} "
                 f"({t['sidecar'].stale_restarts} for a stale feed), flap alerts {self.flaps.episodes}, "
                 f"symbols {','.join(current_symbols(s))}   "
                 f"(Ctrl-C to stop; logs in {self.run_dir})\n{'-' * 64}")

    async def eod_hook(self, eod_ny: str) -> None:
        s = self.s
        self.log(f"EOD: {eod_ny} New York reached" + (", running EOD_CMD" if s.eod_cmd else ""))
        if s.eod_cmd:
            try:
                rc = await run_to_end(["bash", "-c", s.eod_cmd], env=self.env, cwd=s.repo,
                                      stdout=self.path("launcher.log"), stderr=self.path("launcher.log"), timeout=120)
            except asyncio.TimeoutError:
                rc = 124
            if rc:
                self.log(f"error: EOD_CMD failed (exit {rc})")

    async def supervise(self, sched: Optional[tuple[int, int, str, str]]) -> None:
        s = self.s
        bars = display.BarTail(self.path("bars.jsonl"), s.status_file, symbols=lambda: current_symbols(s))
        eod_done = False
        symbols = current_symbols(s)
        next_status = time.monotonic() + min(s.status_every, 3.0)
        while True:
            if self.stop_event.is_set():
                raise Stopped()
            if sched:
                eod_epoch, close_epoch, eod_ny, close_ny = sched
                if not eod_done and time.time() >= eod_epoch:
                    eod_done = True
                    self.background(self.eod_hook(eod_ny))
                if time.time() >= close_epoch:
                    self.log(f"market close ({close_ny} New York): shutting down")
                    return
            if s.nats_local:
                await self.check_child(self.nats)
            await self.check_child(self.consumer)
            await self.check_child(self.sidecar)
            await self.check_health()
            if current_symbols(s) != symbols:  # a live --subscribe/--unsubscribe (the sidecar logs the details)
                symbols = current_symbols(s)
                self.log(f"symbols changed live: now {','.join(symbols)} (until this launcher stops)")
                self.write_state()
            for line in bars.lines():
                if not s.quiet:
                    self.out(line)
            if s.status_every > 0 and time.monotonic() >= next_status:
                next_status = time.monotonic() + s.status_every
                await self.status_screen()
                self.write_state()
            await self.nap(s.tick)

    async def main(self) -> int:
        s = self.s
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        rc = 0
        try:
            self.prepare_dirs()
            self.write_state()
            self.log(f"barbridge launcher: {s.mode} mode, symbols {','.join(s.symbols)}, run dir {self.run_dir}, "
                     f"FIFO {s.fifo}")
            if s.creds and s.mode == "live":
                self.log(f"credentials: key {mask(s.creds.api_key)}, secret {mask(s.creds.secret_key)}")
            if not s.creds and s.mode == "demo":
                self.log(f"no Alpaca credentials (none in the environment or {s.config_file}): running the offline "
                         "DEMO (synthetic bars). For live data: cp config.env.example config.env and fill in your "
                         "Alpaca keys.")
            await self.preflight()
            sched = await self.follow_schedule() if s.schedule else None
            if s.nats_local:
                await self.start_nats()
            await self.start_consumer()
            await self.wait_for_fifo()
            await self.show_page_address()
            if s.warmup:
                await self.warm_up()
            await self.start_sidecar()
            self.write_state()
            if s.mode == "demo":
                self.log(f"DEMO: bars below are synthetic: the last {DEMO_HISTORY_MINUTES} minutes at "
                         f"{s.demo_interval:g} s per minute bar, then one bar per minute as the clock goes (never "
                         f"ahead of it); status every {s.status_every:g}s; Ctrl-C to stop")
            await self.supervise(sched)
        except Stopped:
            if self.stop_signal:
                self.log(f"{self.stop_signal} received: shutting down")
        except Fatal as e:
            self.log(f"error: {e}")
            rc = e.code
        finally:
            await self.cleanup()
        if self.run_dir:
            self.log(f"stopped (exit {rc})")
        return rc

    async def cleanup(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)  # the cleanup itself is not interrupted
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.sidecar.running:
            self.log(f"stopping the sidecar (pid {self.sidecar.pid})")
        await self.sidecar.stop(self.s.stop_timeout, self.log)
        if self.consumer.running:
            self.log(f"stopping the consumer (pid {self.consumer.pid}; it flushes its journal)")
        await self.consumer.stop(self.s.stop_timeout, self.log)
        if self.nats.running:
            self.log(f"stopping nats-server (pid {self.nats.pid})")
        await self.nats.stop(self.s.stop_timeout, self.log)
        if self.locks and self.locks[0].held:  # this instance owns the runtime dir: leave it empty
            s = self.s
            for f in (s.fifo, s.status_file, s.state_file, s.runtime_dir / "consumer.pid", s.runtime_dir / "sidecar.pid",
                      s.runtime_dir / "nats.pid", s.control_socket, s.live_symbols_file):
                f.unlink(missing_ok=True)
            if self.run_dir:
                self.write_state(live=False)
            natslocal.remove_config(s.runtime_dir)
            for lock in reversed(self.locks):
                lock.release()
            try:
                s.runtime_dir.rmdir()
            except OSError:
                pass
