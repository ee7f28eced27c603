#!/usr/bin/env python3
"""barbridge sidecar: market data (Alpaca / replay / synthetic) → wire lines → FIFO or in-process.

    .venv/bin/python bridge/alpaca_websocket_bridge.py --fifo "$XDG_RUNTIME_DIR/barbridge/bars.fifo"
    .venv/bin/python -m bridge --source synthetic --interval 1 --count 10 --fifo /tmp/me/bars.fifo

Exit codes: 0 normal stop (SIGINT/SIGTERM or source finished), 2 configuration/TLS error,
3 authentication refused, 4 insufficient subscription, 5 connection limit persisted, 6 internal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a script: make `import bridge` work
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bridge import config  # noqa: E402
from bridge.config import ConfigError  # noqa: E402
from bridge.exitcodes import ExitCode  # noqa: E402
from bridge import jsonlog  # noqa: E402
from bridge.gate import BarGate  # noqa: E402
from bridge.sinks import FifoSink, InProcessSink, Sink, SinkError  # noqa: E402
from bridge.sources import FiniteSource, LiveSource, Source  # noqa: E402

log = logging.getLogger("bridge")
PROG = "barbridge-sidecar"


class _ScrubFilter(logging.Filter):
    """Masks secrets in every log record (ours, the SDK's, websockets') before it is written,
    and drops the SDK's per-retry tracebacks unless --verbose."""

    def __init__(self, secrets: list[str], keep_tracebacks: bool) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self.keep_tb = keep_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not self.keep_tb and record.name.startswith(("alpaca", "websockets")):
            record.exc_info = None
            record.exc_text = None
        msg = record.getMessage()
        if record.exc_info and self.secrets:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = config.scrub(msg, self.secrets), ()
        return True


def build_parser() -> argparse.ArgumentParser:
    """The sidecar's options. Defaults named after a key (``ALPACA_FEED``, ...) come from the
    environment, into which :func:`main` has loaded ``config.env`` first (without overriding it):
    an option beats the environment beats ``config.env`` beats the built-in default."""
    env = os.environ.get
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", choices=("alpaca", "replay", "synthetic"), default="alpaca")
    p.add_argument("--asset", choices=config.ASSETS, default=env("ASSET") or "stock",
                   help="stock, or crypto: Alpaca's crypto stream and REST bars (pairs such as BTC/USD), staleness "
                        "around the clock (env ASSET)")
    p.add_argument("--sink", choices=("fifo", "inprocess"), default="fifo")
    p.add_argument("--status-file", default=None,
                   help="--sink inprocess: the Rust consumer rewrites this JSON status file every second")
    p.add_argument("--echo", action="store_true",
                   help="--sink inprocess: print every accepted bar to stdout as a wire line (like barbridge run --echo)")
    p.add_argument("--consumer-stale-after", type=float, default=120.0, metavar="SECS",
                   help="--sink inprocess: the consumer's feed is stale after this long without any line; the "
                        "sink's heartbeats (--heartbeat) count, as on the FIFO path, so a halt is not stale "
                        "(like barbridge run --stale-after)")
    p.add_argument("--journal", default=None, metavar="DIR",
                   help="--sink inprocess: the Rust consumer journals every accepted bar in DIR (like barbridge run --journal)")
    p.add_argument("--fifo", default=env("BARBRIDGE_FIFO") or config.default_fifo_path(),
                   help="FIFO path (created 0600 in a 0700 directory if absent)")
    p.add_argument("--symbols", default=None,
                   help="comma-separated symbols (default SPY,SPXL,SH,SDS; --asset crypto: BTC/USD,ETH/USD)")
    p.add_argument("--control", default=None, metavar="SOCKET",
                   help="serve the control endpoint (subscribe/unsubscribe symbols while running) on this Unix "
                        "socket, created 0600 in a private directory (--source alpaca or synthetic)")
    p.add_argument("--symbols-state", default=None, metavar="FILE",
                   help="with --control: every live change writes the symbol list here, and a sidecar started "
                        "while FILE exists subscribes its list instead of --symbols (the launcher's restarts)")
    p.add_argument("--feed", choices=("iex", "sip"), default=env("ALPACA_FEED") or "iex")
    p.add_argument("--stream-url", default=env("ALPACA_STREAM_URL"), help="websocket URL (env ALPACA_STREAM_URL)")
    p.add_argument("--data-url", default=env("ALPACA_DATA_URL"), help="REST base URL for backfill (env ALPACA_DATA_URL)")
    p.add_argument("--config", default=None,
                   help="config.env with KEY=value lines (default $BARBRIDGE_CONFIG, else ./config.env if present)")
    p.add_argument("--stale-after", type=float, default=90.0,
                   help="seconds without a bar in session → stale + reconnect (0 = off)")
    p.add_argument("--market-hours", choices=("regular", "always"), default="regular",
                   help="when staleness counts: the NYSE regular session, or always (tests, 24h feeds)")
    p.add_argument("--replay-file", help="CSV or JSONL of bars (--source replay)")
    p.add_argument("--speed", type=float, default=0.0, help="replay speed factor (0 = as fast as possible)")
    p.add_argument("--interval", type=float, default=60.0, help="synthetic: wall seconds between minutes")
    p.add_argument("--count", type=int, default=None, help="synthetic: minutes to produce, then exit")
    p.add_argument("--seed", type=int, default=None, help="synthetic: random seed")
    p.add_argument("--halt-every", type=int, default=0, metavar="MINUTES",
                   help="synthetic: halt the last symbol for 5 minutes every MINUTES minutes, with trading "
                        "statuses (the launcher's demo: 30, so it shows a halt; default 0 = never)")
    p.add_argument("--start-ms", type=int, default=None,
                   help="synthetic: timestamp (epoch ms) of the first minute, e.g. to continue after a restart (default: now)")
    p.add_argument("--minute-deadline", type=float, default=_env_seconds_or_off("MINUTE_DEADLINE", 10.0),
                   metavar="SECS",
                   help="the minute barrier: a minute_closed line per minute, as soon as every subscribed, non-halted "
                        "symbol has its bar, else SECS after the minute's end (Alpaca sends bars 20-100 ms after the "
                        "minute, late trades may take 10 s; 0 = no barrier; env MINUTE_DEADLINE)")
    p.add_argument("--no-confirm-quiet", action="store_true",
                   help="--source alpaca: do not ask REST about the symbols a minute closed without (by default a bar "
                        "REST has is delivered late, counted; none makes the minute quiet, not a hole)")
    p.add_argument("--confirm-rate", type=float, default=150.0, metavar="N",
                   help="REST requests a minute at most for the quiet/lost confirmation (Alpaca's basic plan allows "
                        "200 for all of a key's REST calls)")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeat lines")
    p.add_argument("--backlog", type=int, default=100_000, help="max lines kept while the consumer is away")
    p.add_argument("--pipe-size", type=int, default=1 << 20, help="F_SETPIPE_SZ request in bytes")
    p.add_argument("--unacked-mib", type=int, default=64, metavar="MIB",
                   help="MiB of written lines kept until the consumer acknowledges them, re-sent to a "
                        "restarted consumer (default 64, about 380,000 lines)")
    p.add_argument("--reconnect-min", type=float, default=1.0)
    p.add_argument("--reconnect-max", type=float, default=30.0)
    p.add_argument("--ping-interval", type=float, default=_env_seconds("WS_PING_INTERVAL", 10.0),
                   help="seconds between websocket keepalive pings (env WS_PING_INTERVAL)")
    p.add_argument("--ping-timeout", type=float, default=_env_seconds("WS_PING_TIMEOUT", 180.0),
                   help="seconds a ping may wait for its pong before the socket is dropped (env WS_PING_TIMEOUT); "
                        "long, so a busy healthy connection is never cut: --stale-after catches a mute socket")
    p.add_argument("--auth-retries", type=int, default=2, help="consecutive 402s before giving up (exit 3)")
    p.add_argument("--conn-limit-timeout", type=float, default=300.0, help="seconds of 406 before giving up (exit 5)")
    p.add_argument("--no-backfill", action="store_true")
    p.add_argument("--no-trading-statuses", action="store_true",
                   default=(env("TRADING_STATUSES") or "1").strip().lower() in ("0", "false", "no", "off"),
                   help="do not subscribe to trading statuses (halts, resumptions; env TRADING_STATUSES=0): "
                        "a halt then looks like lost bars and a market-wide one forces reconnects")
    p.add_argument("--per-message", action="store_true",
                   help="hand bars to Rust one message at a time after the SDK's dispatch, instead of whole "
                        "bar frames before it (for comparison; see the README's performance section)")
    p.add_argument("--backfill-from", default=None, help="ISO time for the start-up backfill (default: session open)")
    p.add_argument("--no-preflight", action="store_true")
    p.add_argument("--flush-timeout", type=float, default=2.0, help="seconds to deliver pending lines on SIGINT/SIGTERM")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to deliver pending lines when a finite source ends")
    p.add_argument("--stats-interval", type=float, default=60.0, help="seconds between stats lines on stderr (0 = off)")
    p.add_argument("--log-level", default=env("BARBRIDGE_LOG") or "INFO")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging with SDK tracebacks")
    p.add_argument("--log-format", choices=("text", "json"), default=env("LOG_FORMAT") or "text",
                   help="stderr log lines: text, or json (one object a line) for log shippers (env LOG_FORMAT)")
    p.add_argument("--metrics-addr", default=env("SIDECAR_METRICS_ADDR") or None, metavar="HOST:PORT",
                   help="serve the sidecar's Prometheus metrics on http://HOST:PORT/metrics "
                        "(port 0: any free port, logged; env SIDECAR_METRICS_ADDR)")
    p.add_argument("--consumer-metrics-addr", default=env("METRICS_ADDR") or None, metavar="HOST:PORT",
                   help="--sink inprocess: the in-process consumer serves /metrics, /status.json and the live page "
                        "here, like `barbridge run --metrics-addr` (env METRICS_ADDR)")
    return p


def _env_seconds(name: str, default: float) -> float:
    v = config.env_float(os.environ, name, default)
    if v <= 0:
        raise ConfigError(f"{name}={v:g} must be more than 0 seconds.", f"set {name} to e.g. {default:g}")
    return v


def _env_seconds_or_off(name: str, default: float) -> float:
    v = config.env_float(os.environ, name, default)
    if v < 0:
        raise ConfigError(f"{name}={v:g} must be 0 (off) or more seconds.", f"set {name} to e.g. {default:g}")
    return v


def derive_data_url(stream_url: str) -> Optional[str]:
    """A non-Alpaca stream (e.g. the fake server) serves REST bars on the same host:port."""
    from urllib.parse import urlsplit
    u = urlsplit(stream_url)
    if not u.hostname or u.hostname.endswith("alpaca.markets"):
        return None
    return f"{'https' if u.scheme == 'wss' else 'http'}://{u.netloc}"


def _iso_ms(text: str) -> int:
    """An ISO 8601 time (``Z`` or an offset; none: UTC) → epoch milliseconds."""
    import datetime as dt
    try:
        d = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--backfill-from {text!r} is not an ISO time such as 2025-10-08T13:30:00Z.") from None
    return int((d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp() * 1000)


def _fail(code: int, sentence: str) -> int:
    print(f"{PROG}: error: {sentence}", file=sys.stderr, flush=True)
    return code


def main(argv: Optional[list[str]] = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    try:  # config.env first: the parser's defaults read the keys it sets
        config.load_config_env(pre.parse_known_args(argv)[0].config, os.environ, required=False)
        parser = build_parser()
    except ConfigError as e:
        return _fail(ExitCode.CONFIG, str(e))
    args = parser.parse_args(argv)
    try:
        if args.source == "alpaca":  # one CA bundle for the stream, REST backfill and preflight
            config.apply_ca_bundle(os.environ)
        asset = config.parse_asset(args.asset)
        symbols = config.parse_symbols(args.symbols, asset)
        if args.source == "alpaca":
            config.check_asset_symbols(asset, symbols)
        creds = config.credentials_from_env(os.environ)
        if args.source == "alpaca" and creds is None:
            raise ConfigError("no Alpaca credentials: set ALPACA_API_KEY and ALPACA_SECRET_KEY (or ALPACA_PAPER_API_KEY "
                              "and ALPACA_PAPER_SECRET_KEY) in the environment or in config.env.")
        if args.source == "replay" and not args.replay_file:
            raise ConfigError("--source replay needs --replay-file FILE (CSV or JSONL of bars).")
        if args.stream_url and not args.stream_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"--stream-url must start with ws:// or wss://, not {args.stream_url!r}.")
        if args.stream_url and not args.data_url:
            args.data_url = derive_data_url(args.stream_url)
        if (args.control or args.symbols_state) and args.source == "replay":
            raise ConfigError("--control and --symbols-state need --source alpaca or synthetic (a replay's symbols "
                              "are the file's).")
        if args.symbols_state and not args.control:
            raise ConfigError("--symbols-state needs --control SOCKET (the endpoint whose changes it keeps).")
        live_symbols = None
        if args.symbols_state:
            from bridge import control_endpoint
            try:
                live_symbols = control_endpoint.read_state(Path(args.symbols_state))
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if live_symbols is not None:
                symbols = live_symbols
    except ConfigError as e:
        return _fail(ExitCode.CONFIG, str(e))

    secrets = [creds.api_key, creds.secret_key] if creds else []
    level = logging.DEBUG if args.verbose else getattr(logging, str(args.log_level).upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(jsonlog.formatter(args.log_format))
    handler.addFilter(_ScrubFilter(secrets, args.verbose))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # websockets logs raw frames (the auth frame carries the secret, hex-encoded) at DEBUG: never
    logging.getLogger("websockets").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    if args.data_url and args.stream_url and not os.environ.get("ALPACA_DATA_URL"):
        log.info("REST backfill from %s (derived from --stream-url; set --data-url to change)", args.data_url)

    # ---- sink
    sink: Sink
    try:
        if args.sink == "fifo":
            sink = FifoSink(args.fifo, backlog=args.backlog, heartbeat=args.heartbeat, pipe_size=args.pipe_size,
                            unacked_bytes=args.unacked_mib << 20)
        else:
            sink = InProcessSink(heartbeat=args.heartbeat, status_file=args.status_file,
                                 echo=args.echo, journal=args.journal, stale_after=args.consumer_stale_after)
        sink.prepare()
    except SinkError as e:
        return _fail(ExitCode.CONFIG, str(e))
    except OSError as e:
        return _fail(ExitCode.CONFIG, f"cannot prepare the FIFO {args.fifo}: {e.strerror or e}.")

    pub = BarGate(sink, symbols)
    ticker = None
    if args.minute_deadline < 0 or args.minute_deadline > 3600:
        return _fail(ExitCode.CONFIG, f"--minute-deadline {args.minute_deadline:g} must be 0 (off) to 3600 seconds.")
    if args.minute_deadline > 0:
        from bridge.barrier import MinuteTicker
        pub.enable_minutes(args.minute_deadline, every_minute=asset == "crypto" or args.market_hours == "always")
        ticker = MinuteTicker(pub.native)
    done = threading.Event()
    failure: list[tuple[int, str]] = []  # the first fatal error: (exit code, one sentence)

    def fatal(code: int, sentence: str) -> None:
        if not failure:
            failure.append((code, sentence))
        done.set()

    sink.on_fatal = lambda e: fatal(ExitCode.CONFIG if isinstance(e, SinkError) else ExitCode.SINK, str(e))

    # ---- source
    source: Source
    live: Optional[LiveSource] = None
    finite: Optional[FiniteSource] = None
    try:
        if args.source == "alpaca":
            from bridge.sources import alpaca as alpaca_src
            backfill_from = None
            if args.backfill_from:
                backfill_from = _iso_ms(args.backfill_from)
            assert creds is not None  # refused above without them
            if not args.no_preflight and asset == "stock":
                problem = alpaca_src.preflight(creds, symbols, args.feed, args.data_url)
                if problem:
                    return _fail(*problem)
            source_class = alpaca_src.AlpacaSource
            if asset == "crypto":
                from bridge.sources.crypto import CryptoSource
                source_class = CryptoSource
            source = live = source_class(
                pub, symbols, creds, feed=args.feed, stream_url=args.stream_url, data_url=args.data_url,
                stale_after=args.stale_after, market_hours=args.market_hours,
                ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
                reconnect_min=args.reconnect_min, reconnect_max=args.reconnect_max,
                auth_retries=args.auth_retries, conn_limit_timeout=args.conn_limit_timeout,
                backfill=not args.no_backfill, backfill_from=backfill_from, frames=not args.per_message,
                trading_statuses=not args.no_trading_statuses,
                on_fatal=fatal)
        elif args.source == "replay":
            from bridge.sources.replay import ReplaySource
            source = finite = ReplaySource(pub, args.replay_file, speed=args.speed,
                                  symbols=symbols if args.symbols is not None else None)
        else:
            from bridge.sources.synthetic import SyntheticSource
            source = finite = SyntheticSource(pub, symbols, interval=args.interval, count=args.count, seed=args.seed,
                                     start_ms=args.start_ms, halt_every=args.halt_every)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return _fail(ExitCode.CONFIG, str(e))
    except Exception as e:
        if type(e).__name__ == "ReplayError":
            return _fail(ExitCode.CONFIG, str(e))
        raise

    def on_signal(signum, _frame) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if args.consumer_metrics_addr and isinstance(sink, InProcessSink):
        try:
            port = sink.consumer.serve_metrics(args.consumer_metrics_addr)
        except (ValueError, OSError) as e:
            return _fail(ExitCode.CONFIG, str(e))
        log.info("consumer metrics on http://%s:%d/metrics, live page on http://%s:%d/",
                 *(2 * (args.consumer_metrics_addr.rpartition(":")[0] or "127.0.0.1", port)))
    metrics_server = None
    if args.metrics_addr:
        from bridge import metrics
        try:
            metrics_server = metrics.serve(args.metrics_addr, pub, sink, source)
        except (ValueError, OSError) as e:
            return _fail(ExitCode.CONFIG, f"cannot serve metrics on {args.metrics_addr}: {e}")
        log.info("sidecar metrics on http://%s/metrics", metrics_server.addr)

    log.info("sidecar %s: source=%s asset=%s sink=%s symbols=%s writer=%s%s", PROG, args.source, asset, args.sink,
             ",".join(symbols),
             sink.writer, f" key={config.mask(creds.api_key)}" if creds and args.source == "alpaca" else "")
    if live_symbols is not None:
        log.info("symbols %s from %s (changed live in this launcher run)", ",".join(symbols), args.symbols_state)
    control_server = None
    if args.control:
        from bridge import control_endpoint
        control_server = control_endpoint.ControlServer(Path(args.control), source,  # type: ignore[arg-type]
                                               Path(args.symbols_state) if args.symbols_state else None, asset=asset)
        try:
            control_server.bind()
        except control_endpoint.ControlError as e:
            return _fail(ExitCode.CONFIG, str(e))
    sink.start()
    if ticker is not None:
        ticker.start()
    finished = threading.Event()
    confirmer = None
    if live is not None and ticker is not None and not args.no_confirm_quiet and hasattr(live, "fetch_minute"):
        from bridge.confirm import Confirmer
        try:
            confirmer = Confirmer(pub, live.fetch_minute, rate=args.confirm_rate)
        except ValueError as e:
            return _fail(2, f"--confirm-rate: {e}.")
        pub.confirmer = confirmer
        confirmer.start()
    if live is not None:
        live.start()
    else:
        assert finite is not None

        def run_finite() -> None:
            finite.run()
            finished.set()
            done.set()
        threading.Thread(target=run_finite, name=f"{args.source}-source", daemon=True).start()

    if control_server is not None:
        control_server.start()
    next_stats = time.monotonic() + args.stats_interval
    reader = _ReaderNotice(sink, args.fifo) if isinstance(sink, FifoSink) else None
    control_alarm = False
    while not done.wait(0.2):
        if reader:
            reader.check()
        if args.stats_interval > 0 and time.monotonic() >= next_stats:
            next_stats = time.monotonic() + args.stats_interval
            _log_stats(pub, sink, source, {**(control_server.stats() if control_server is not None else {}),
                                           **(confirmer.stats() if confirmer is not None else {})})
        if control_server is not None and not control_server.alive() and not control_alarm:
            control_alarm = True  # the endpoint's threads restart themselves: this is the last line of defence
            log.error("the control endpoint on %s stopped: --subscribe/--unsubscribe cannot reach this sidecar "
                      "until it restarts", args.control)

    # ---- shutdown: stop the source first, then flush what is pending
    if control_server is not None:
        control_server.stop()
    source.stop()
    if confirmer is not None:
        confirmer.stop()
    if ticker is not None:
        ticker.stop()
    if failure:
        pub.status("auth_failed" if failure[0][0] == 3 else "disconnected", failure[0][1])
    else:
        pub.status("disconnected", "sidecar stopping")
    flush = args.drain_timeout if finished.is_set() and not failure else args.flush_timeout
    sink.close(flush_timeout=flush)
    if sink.backlog():
        log.warning("%d line(s) not delivered at exit (no consumer reading)", sink.backlog())
    _log_stats(pub, sink, source, confirmer.stats() if confirmer is not None else None)
    if metrics_server is not None:
        metrics_server.stop()
    if failure:
        return _fail(*failure[0])
    return ExitCode.OK


class _ReaderNotice:
    """Says once that the sidecar waits for a reader (the consumer) on the FIFO, when none has
    opened it within ``grace`` seconds, and once when one arrives (or returns)."""

    def __init__(self, sink: FifoSink, path: str, grace: float = 2.0) -> None:
        self.sink, self.path = sink, path
        self.since = time.monotonic()
        self.grace = grace
        self.waiting_said = False

    def check(self) -> None:
        present = self.sink.reader_present
        if present:
            if self.waiting_said:
                log.info("a reader opened %s: delivering the bars kept meanwhile (%d line(s))", self.path,
                         self.sink.backlog())
                self.waiting_said = False
            self.since = time.monotonic()
        elif not self.waiting_said and time.monotonic() - self.since >= self.grace:
            log.warning("waiting for a reader on %s (is the consumer running? `barbridge run --fifo %s`); bars are "
                        "kept until one opens it", self.path, self.path)
            self.waiting_said = True


def _log_stats(pub: BarGate, sink, source, control: Optional[dict] = None) -> None:
    c = pub.counts
    st = {"state": pub.state, "published": c["published"], "duplicates": c["duplicates_suppressed"],
          "received_stream": c["received_stream"], "received_backfill": c["received_backfill"],
          "backfill_superseded": c["backfill_superseded"], "invalid": c["invalid"], "frames": c["frames"],
          "backlog": sink.backlog(), "minutes_closed": pub.native.minutes_closed,
          **{k: v for k, v in vars(sink.stats).items()}}
    if hasattr(source, "counts"):
        st.update(source.counts)
    if hasattr(source, "tracker"):
        st.update(connects=source.tracker.connects, reconnects=source.tracker.reconnects)
    st.update(control or {})
    log.info("stats %s", json.dumps(st, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
