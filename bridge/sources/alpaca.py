"""Live source: Alpaca's market-data stream through the official alpaca-py SDK (0.44).

Threads (none of them ever blocks the SDK's event loop):

* ``alpaca-stream``: ``StockDataStream.run()`` (it owns an ``asyncio.run`` loop). Each bar
  message is one call into the extension (``barbridge.Publisher.submit_alpaca``: normalise,
  validate, dedupe, queue for the sink), made straight from ``_dispatch``.
* ``alpaca-watchdog``: market-hours-aware staleness (forces a reconnect), flap detection,
  give-up rules for 402/406.
* ``alpaca-backfill``: REST backfill (blocking ``requests``) after every (re)subscription.

How connection state is observed
--------------------------------
The SDK exposes no callbacks for connect/disconnect. We subclass ``StockDataStream`` and wrap
four of its methods, each calling ``super()`` unchanged and only *recording* what happened:
``_start_ws`` (connect+auth; its exception tells why a connect failed: 402/406/409 arrive as
``ValueError(msg)`` from ``_auth``, HTTP 429 as ``InvalidStatusCode``, TLS as ``SSLError``),
``_dispatch`` (subscription acks and in-stream errors; bar messages go to Rust from here, without
the SDK's per-symbol handler lookup and coroutine), and ``close`` (every disconnect goes
through it; ``_ws.close_code`` is read before the socket is dropped). Wrapping keeps the SDK's
own reconnect/backoff/resubscribe logic intact, and unlike watching its log messages it does
not depend on wording. These are private methods: the version is pinned (requirements.txt)
and ``tests/python`` exercises every hook against the real SDK.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import threading
import time
from typing import Any, Callable, Optional

from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.live.websocket import DataStream
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

import barbridge  # type: ignore[import-not-found]

from ..config import Credentials, ca_bundle, mask
from ..exitcodes import ExitCode
from ..flap import DEFAULT_THRESHOLD, DEFAULT_WINDOW, FlapDetector
from ..gate import BarGate

log = logging.getLogger("bridge.alpaca")
UTC = dt.timezone.utc

# A reconnect backfill starts this long before the last bar seen: a correction (updated bar) of a
# minute before it may have been published while the stream was down, and REST serves the
# corrected version. Re-fetched unchanged minutes are suppressed by the Publisher.
BACKFILL_LOOKBACK_MS = 5 * barbridge.MINUTE_MS
# Symbols per REST request: the symbols go into the URL, and servers refuse request lines much
# beyond 8 KiB (a full-market list is 60 KiB and more).
BACKFILL_SYMBOLS_PER_REQUEST = 500
# The minute barrier waits this long at most for the start-up backfill before closing minutes.
MINUTES_HOLD = 120.0


class _Observed(DataStream):
    """The hooks on alpaca-py's ``DataStream`` that report connection events to ``observer`` (see
    module doc); mixed into the stock stream here and the crypto stream in ``crypto.py`` (first in
    their bases, so ``super()`` is the asset's own stream class)."""

    observer: "AlpacaSource"
    submit: Callable[[Any], bool]  # barbridge.Publisher.submit_alpaca
    submit_frame: Optional[Callable[[bytes], Optional[bytes]]] = None  # barbridge.Publisher.submit_frame

    async def _start_ws(self) -> None:
        self.observer._on_connecting()
        try:
            await super()._start_ws()
        except BaseException as e:
            self.observer._on_connect_failed(e)
            raise
        if self.submit_frame is not None:
            self._route_frames()
        self.observer._on_connected()

    def _route_frames(self) -> None:
        """Hand each received frame to Rust first (``Publisher.submit_frame``): a frame of bars
        only (a minute's burst) is published there whole, and the SDK gets the frame with its last
        bar alone, which it dispatches as usual; any other frame reaches the SDK unchanged. Wraps
        ``recv`` of this connection's socket only (a reconnect makes a new socket, wrapped again
        here); if a future SDK stopped calling ``recv``, bars would still arrive, message by message."""
        ws: Any = self._ws  # the SDK's websocket client (typed None until connected)
        recv, submit = ws.recv, self.submit_frame
        assert submit is not None

        async def recv_frames(*args: Any, **kwargs: Any) -> Any:
            frame = await recv(*args, **kwargs)
            if type(frame) is bytes:
                rest = submit(frame)
                if rest is not None:
                    return rest
            return frame

        ws.recv = recv_frames

    async def _dispatch(self, msg) -> None:
        t = msg.get("T")
        if t == "b" or t == "u":  # a bar or an updated bar: one call into Rust, nothing else
            self.submit(msg)
            return
        if t == "s":  # a trading status (halt, resumption): Rust records and forwards it
            self.observer.pub.native.submit_trading_status(msg)
            return
        if t == "subscription":
            self.observer._on_subscribed(msg)
        elif t == "error":
            self.observer._on_stream_error(msg)
        await super()._dispatch(msg)

    async def close(self) -> None:
        ws = self._ws
        if ws is not None:
            code, reason = getattr(ws, "close_code", None), getattr(ws, "close_reason", "")
            await super().close()
            self.observer._on_disconnected(code, reason)
        else:
            await super().close()


class _ObservedStream(_Observed, StockDataStream):
    """StockDataStream that reports connection events to ``observer`` (see module doc)."""


class AlpacaSource:
    #: What is streamed, for logs and status details.
    asset = "stock"

    def __init__(self, publisher: BarGate, symbols: list[str], creds: Credentials, *,
                 feed: str = "iex", stream_url: Optional[str] = None, data_url: Optional[str] = None,
                 stale_after: float = 90.0, market_hours: str = "regular",
                 ping_interval: float = 10.0, ping_timeout: float = 180.0,
                 reconnect_min: float = 1.0, reconnect_max: float = 30.0,
                 auth_retries: int = 2, conn_limit_timeout: float = 300.0,
                 backfill: bool = True, backfill_from: Optional[int] = None, frames: bool = True,
                 trading_statuses: bool = True,
                 on_fatal: Optional[Callable[[int, str], None]] = None) -> None:
        self.pub = publisher
        self.symbols = symbols
        self.creds = creds
        self.feed: Any = self.parse_feed(feed)
        self.stream_url = stream_url
        self.data_url = data_url
        if market_hours not in ("regular", "always"):
            raise ValueError(f"market-hours mode must be regular or always, not {market_hours!r}")
        self.market_hours = market_hours
        self.stale_after = stale_after
        self.tracker = ReconnectTracker()
        #: Disconnects by websocket close code ("none": the connection was lost without one).
        self.close_codes: dict[str, int] = {}
        self.auth_retries = auth_retries
        self.conn_limit_timeout = conn_limit_timeout
        self.backfill_enabled = backfill
        self.backfill_from = backfill_from
        self.on_fatal = on_fatal
        self.fatal: Optional[tuple[int, str]] = None
        self.subscribed = False
        self.trading_statuses = trading_statuses
        #: Every subscribed symbol halted (trading statuses): silence is expected, the link is probed.
        self.all_halted = False
        self._probe: Any = None  # concurrent.futures.Future of the running link probe
        self._probe_started = 0.0
        self.stopping = threading.Event()
        self._backfill_wanted = threading.Event()
        self._starts_lock = threading.Lock()
        self._pending_starts: dict[str, Optional[int]] = {}
        self._auth_failures = 0
        self._limit_since: Optional[float] = None
        self._last_failure_kind: Optional[str] = None
        self.counts = {"connect_attempts": 0, "connect_failures": 0, "backfills": 0, "backfilled_bars": 0,
                       "stale_reconnects": 0, "dead_link_reconnects": 0}

        params: dict[str, Any] = {"ping_interval": ping_interval, "ping_timeout": ping_timeout, "max_queue": 1024,
                  "close_timeout": 3, "open_timeout": 10}  # replaces the SDK defaults entirely
        self.url = stream_url or self.default_stream_url()
        if self.url.startswith("wss://"):
            params["ssl"] = ssl.create_default_context(cafile=ca_bundle())
        self.stream = self.new_stream(params)
        self.stream.observer = self
        self.stream.submit = publisher.submit_alpaca
        if frames:
            self.stream.submit_frame = publisher.native.submit_frame
        self.stream._reconnect_min_backoff = reconnect_min
        self.stream._reconnect_max_backoff = reconnect_max
        # Subscribe BEFORE run(): subscribing from a handler deadlocks, and run() with
        # nothing subscribed busy-spins.
        for subscribe, handler in self.channels().values():
            subscribe(handler, *symbols)
        self.rest = self.new_rest_client()
        if backfill:
            # The minute barrier (if on) closes the minutes the start-up backfill covers, once its
            # bars are handed over: a restarted sidecar leaves none of its predecessor's unclosed.
            publisher.native.minutes_from(backfill_from or self.fresh_start_ms(), hold=MINUTES_HOLD)
        self._confirm_rest: Any = None  # fetch_minute's own client (no retries of its own)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ what differs per asset class (crypto.py)
    def parse_feed(self, feed: str) -> Any:
        return DataFeed(feed)

    def default_stream_url(self) -> str:
        return f"wss://stream.data.alpaca.markets/v2/{self.feed.value}"

    def new_stream(self, websocket_params: dict[str, Any]) -> Any:
        return _ObservedStream(self.creds.api_key, self.creds.secret_key, raw_data=True, feed=self.feed,
                               websocket_params=websocket_params, url_override=self.stream_url)

    def new_rest_client(self) -> Any:
        return StockHistoricalDataClient(self.creds.api_key, self.creds.secret_key, raw_data=True,
                                         url_override=self.data_url)

    def fetch_bars(self, symbols: list[str], start: dt.datetime, end: Optional[dt.datetime] = None,
                   rest: Any = None) -> Any:
        """REST minute bars of ``symbols`` from ``start`` (to ``end``): ``{symbol: [bar, ...]}`` (raw data)."""
        req = StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, feed=self.feed, start=start, end=end)
        return (rest or self.rest).get_stock_bars(req)

    def fetch_minute(self, symbols: list[str], minute_ms: int) -> Any:
        """The bars of one minute (the minute barrier's REST confirmation, ``bridge.confirm``), on a
        client of its own that does not retry by itself: a 429 comes back at once and the caller
        backs off."""
        if self._confirm_rest is None:
            self._confirm_rest = self.new_rest_client()
            self._confirm_rest._retry = 0
        start = dt.datetime.fromtimestamp(minute_ms / 1000, UTC)
        return self.fetch_bars(symbols, start, start + dt.timedelta(seconds=59), rest=self._confirm_rest)

    def fresh_start_ms(self) -> int:
        """Where a first backfill starts: today's session open (stocks)."""
        return barbridge.last_session_open()

    def channels(self) -> dict[str, tuple[Callable[..., None], Callable[[Any], Any]]]:
        """Every SDK channel each symbol is subscribed to: the SDK's handler table name →
        (its subscribe method, our handler). The start and every live change use this one list."""
        channels: dict[str, tuple[Callable[..., None], Callable[[Any], Any]]] = {
            "bars": (self.stream.subscribe_bars, self._on_bar),
            "updatedBars": (self.stream.subscribe_updated_bars, self._on_bar)}
        if self.trading_statuses:  # halts and resumptions (docs/ARCHITECTURE.md, "Trading statuses")
            channels["statuses"] = (self.stream.subscribe_trading_statuses, self._on_trading_status)
        return channels

    # ------------------------------------------------------------------ live symbol changes
    def change_symbols(self, add: list[str], remove: list[str], timeout: float = 10.0) -> None:
        """Subscribe ``add`` and unsubscribe ``remove`` while streaming. Called from the control
        thread, never from the SDK's loop: the change runs ON that loop (``_apply_symbols``), which
        alone touches the SDK's handler tables, and this thread waits for it. The symbol list
        changes first, so the subscription ack that follows backfills the new symbols from the
        session's open (or ``--backfill-from``), like a start (``_on_subscribed``)."""
        self.symbols = [s for s in self.symbols if s not in remove] + [s for s in add if s not in self.symbols]
        self.pub.symbols = list(self.symbols)
        loop = self.stream._loop
        if loop is None or not loop.is_running():  # not streaming yet: the connect subscribes them
            self._apply_tables(add, remove)
            return
        try:
            asyncio.run_coroutine_threadsafe(self._apply_symbols(add, remove), loop).result(timeout)
        except Exception as e:  # the tables hold the change: the SDK subscribes them at its next connect
            log.warning("symbol change not sent to Alpaca now (%s); it is sent when the stream reconnects", _short(e))

    def _apply_tables(self, add: list[str], remove: list[str]) -> None:
        handlers = self.stream._handlers
        for name, (_, handler) in self.channels().items():
            for sym in remove:
                handlers[name].pop(sym, None)
            for sym in add:
                handlers[name][sym] = handler

    async def _apply_symbols(self, add: list[str], remove: list[str]) -> None:
        """On the SDK's loop: change its handler tables, then (if connected) send the
        unsubscribe and subscribe messages with its own functions."""
        self._apply_tables(add, remove)
        if not self.stream._running:  # connecting: the SDK's own subscribe after connect sends the tables
            return
        if remove:
            for name in self.channels():
                await self.stream._send_unsubscribe_msg(name, remove)
        if add:
            await self.stream._send_subscribe_msg()

    # ------------------------------------------------------------------ SDK event loop side (only record/enqueue)
    async def _on_bar(self, msg: Any) -> None:
        """The SDK's handler (bars reach it only if ``_dispatch`` is bypassed)."""
        self.pub.submit_alpaca(msg)  # a malformed message is counted and reported, never raised

    async def _on_trading_status(self, msg: Any) -> None:
        """The SDK's handler (statuses reach it only if ``_dispatch`` is bypassed)."""
        self.pub.native.submit_trading_status(msg)

    def _on_connecting(self) -> None:
        self.counts["connect_attempts"] += 1

    def _on_connected(self) -> None:
        self.tracker.on_connected()
        self._auth_failures = 0
        self._limit_since = None
        self._last_failure_kind = None
        self.pub.status("connected", f"{self.url} ({self.asset} feed {self.feed.value}, key {mask(self.creds.api_key)})")

    def _on_subscribed(self, msg: dict) -> None:
        self.subscribed = True
        self.pub.native.reset_clock()
        # Where the gap starts, per symbol: the last bar seen BEFORE this session's first bar
        # (the ack precedes the session's bars). None = fresh start (session open).
        with self._starts_lock:
            for s in self.symbols:
                seen = self.pub.last_seen(s)
                prev = self._pending_starts.get(s, seen) if s in self._pending_starts else seen
                self._pending_starts[s] = None if (prev is None or seen is None) else min(prev, seen)
        self.pub.status("subscribed", f"bars {_names(msg.get('bars'))}; updated bars {_names(msg.get('updatedBars'))}")
        self._backfill_wanted.set()

    def _on_stream_error(self, msg: dict) -> None:
        log.error("Alpaca stream error %s: %s", msg.get("code"), msg.get("msg"))

    def _on_disconnected(self, code, reason) -> None:
        was = self.subscribed
        self.subscribed = False
        self.tracker.on_disconnected()
        key = str(code) if code else "none"
        self.close_codes[key] = self.close_codes.get(key, 0) + 1
        if self.stopping.is_set():
            return
        detail = (f"Alpaca closed the stream (close code {code}" + (f": {reason})" if reason else ")")
                  if code else "the connection to Alpaca was lost")
        self.pub.status("disconnected", detail, level=logging.WARNING)
        if was or code:
            self.pub.status("reconnecting", f"after {detail}; the SDK retries with backoff")

    def _on_connect_failed(self, e: BaseException) -> None:
        self.counts["connect_failures"] += 1
        text = str(e)
        low = text.lower()
        if self.stopping.is_set():
            return
        if "insufficient subscription" in low:
            self._fatal(ExitCode.SUBSCRIPTION, f"Alpaca refused the {self.feed.value} feed (409 insufficient subscription): "
                        "your plan does not include it; use --feed iex or upgrade the data plan.")
        elif "auth failed" in low or "not authenticated" in low or "failed to authenticate" in low:
            self._auth_failures += 1
            self.pub.status("auth_failed", f"Alpaca rejected API key {mask(self.creds.api_key)} (402 auth failed)",
                            level=logging.ERROR)
            if self._auth_failures >= self.auth_retries:
                self._fatal(ExitCode.AUTH, f"Alpaca rejected the API key {mask(self.creds.api_key)} {self._auth_failures} "
                            "time(s) (402 auth failed): check ALPACA_API_KEY/ALPACA_SECRET_KEY in config.env "
                            "(paper and live keys differ).")
        elif "connection limit exceeded" in low:
            now = time.monotonic()
            if self._limit_since is None:
                self._limit_since = now
                log.error("Alpaca refused the connection (406 connection limit exceeded): another session is using this "
                          "API key's only stream slot, or a dropped one is still being reaped (~90 s); retrying with backoff, "
                          "giving up after %.0f s.", self.conn_limit_timeout)
                self.pub.status("reconnecting", "406 connection limit exceeded", level=logging.WARNING)
            elif now - self._limit_since >= self.conn_limit_timeout:
                self._fatal(ExitCode.CONN_LIMIT, f"Alpaca kept refusing the stream for {now - self._limit_since:.0f} s "
                            "(406 connection limit exceeded): another process is using this API key's stream; stop it "
                            "or use a different key.")
        elif isinstance(e, ssl.SSLCertVerificationError) or "certificate verify failed" in low:
            self._fatal(ExitCode.CONFIG, f"TLS verification of {self.url} failed ({getattr(e, 'verify_message', text)}): "
                        "set SSL_CERT_FILE to a valid CA bundle (certifi's is used by default).")
        else:
            kind = type(e).__name__
            if "429" in text:
                kind, text = "http429", "HTTP 429 at the websocket handshake (too many connections/requests)"
            if kind != self._last_failure_kind:  # one line per kind of failure, not one per retry
                log.warning("cannot connect to %s: %s; retrying with backoff", self.url, text or kind)
                self.pub.status("reconnecting", f"connect failed: {text or kind}")
            self._last_failure_kind = kind

    def _fatal(self, code: int, message: str) -> None:
        if self.fatal is None:
            self.fatal = (code, message)
            log.error("%s", message)
            if self.on_fatal:
                self.on_fatal(code, message)

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        for name, target in (("alpaca-stream", self._run_stream), ("alpaca-watchdog", self._watchdog),
                             ("alpaca-backfill", self._backfill_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _run_stream(self) -> None:
        try:
            self.stream.run()
        except Exception as e:  # pragma: no cover - the SDK catches nearly everything itself
            log.exception("stream thread failed: %s", e)
        if not self.stopping.is_set() and self.fatal is None:
            self._fatal(ExitCode.SUBSCRIPTION, "the Alpaca stream stopped by itself (the SDK returned from run(), which it "
                        "does on 409 insufficient subscription); check the feed and data plan.")

    def _watchdog(self) -> None:
        while not self.stopping.wait(0.25):
            halted = self.trading_statuses and self.subscribed and self.pub.native.all_halted(self.symbols)
            if halted != self.all_halted:
                self.all_halted = halted
                if halted:
                    log.warning("every subscribed symbol is halted: no bars expected; the connection is probed "
                                "with websocket pings (a pong within %g s) instead of waiting for bars", self.stale_after)
                else:
                    log.info("trading resumed (not every symbol is halted): bar staleness counts again")
            if halted:
                self._check_link()
            elif self.stale_now():
                self.counts["stale_reconnects"] += 1
                self.pub.status("stale", f"no bar for {self.stale_after:g} s during "
                                f"{'market hours' if self.market_hours == 'regular' else 'the day'}; forcing a reconnect",
                                level=logging.WARNING)
                self.force_reconnect()
            n = self.tracker.check_flap()
            if n:
                log.error("stream is flapping: %d reconnects within %.0f s", n, self.tracker.flap_window)
                self.pub.status("reconnecting", f"flapping: {n} reconnects within {self.tracker.flap_window:.0f} s",
                                level=logging.ERROR)

    def stale_now(self) -> bool:
        """True exactly when the stream turns stale (the publisher's clock and the session table;
        never while every subscribed symbol is halted)."""
        return self.pub.native.check_stale(self.subscribed, self.stale_after, always=self.market_hours == "always",
                                           symbols=self.symbols if self.trading_statuses else None)

    def _check_link(self) -> None:
        """While every symbol is halted, silence is the truth, so the socket itself is asked: a
        ping every ``stale_after / 3`` s (at most 10 s) must get its pong within ``stale_after`` s,
        or the connection is dead (a halt is news on a live socket; silence is not) and is
        replaced like a stale one."""
        if self.stale_after <= 0:
            return
        probe = self._probe
        if probe is not None:
            if not probe.done():
                return
            self._probe = None
            if probe.result() is False and self.subscribed and not self.stopping.is_set():
                self.counts["dead_link_reconnects"] += 1
                self.pub.status("stale", f"every symbol is halted and a websocket ping got no pong within "
                                f"{self.stale_after:g} s: the connection is dead; forcing a reconnect",
                                level=logging.WARNING)
                self.force_reconnect("no pong")
                return
        if time.monotonic() - self._probe_started < min(self.stale_after / 3, 10.0):
            return
        loop, ws = self.stream._loop, self.stream._ws
        if loop is None or ws is None or not loop.is_running():
            return
        timeout = self.stale_after

        async def ping() -> bool:
            try:
                pong = await ws.ping()
                await asyncio.wait_for(pong, timeout)
                return True
            except asyncio.TimeoutError:
                return False
            except Exception:  # the socket closed meanwhile: the SDK reconnects by itself
                return True
        self._probe_started = time.monotonic()
        self._probe = asyncio.run_coroutine_threadsafe(ping(), loop)

    def force_reconnect(self, reason: str = "stale") -> None:
        """Close the current socket from outside; the SDK sees the closure and reconnects."""
        loop, ws = self.stream._loop, self.stream._ws
        if loop is None or ws is None or not loop.is_running():
            return

        async def close() -> None:
            try:
                await asyncio.wait_for(ws.close(code=1000, reason=reason), 2)
            except Exception:
                pass
            if not ws.closed:
                ws.transport.abort()
        asyncio.run_coroutine_threadsafe(close(), loop)

    # ------------------------------------------------------------------ backfill
    def _backfill_loop(self) -> None:
        # Runs after every (re)subscription; the start-up backfill also runs after 30 s if the
        # stream never comes up (REST may work while the stream is refused).
        deadline = time.monotonic() + 30
        first = True
        backfilled = False
        while not self.stopping.is_set():
            if not (self._backfill_wanted.wait(0.25) or (first and time.monotonic() >= deadline)):
                continue
            first = False
            self._backfill_wanted.clear()
            if not self.backfill_enabled:
                continue
            for attempt in range(3):
                if self.stopping.is_set():
                    return
                try:
                    self.backfill_once()
                    break
                except Exception as e:
                    log.warning("backfill failed (attempt %d/3): %s", attempt + 1, _short(e))
                    self.stopping.wait(2 * (attempt + 1))
            if not backfilled:  # the start-up backfill's bars are in (or it gave up): minutes close
                backfilled = True
                self.pub.native.minutes_backfilled()

    def backfill_once(self) -> int:
        fresh_start = self.backfill_from or self.fresh_start_ms()
        with self._starts_lock:
            starts, self._pending_starts = self._pending_starts, {}
        groups: dict[int, list[str]] = {}
        for s in self.symbols:
            seen = starts.get(s) if s in starts else self.pub.last_seen(s)
            groups.setdefault(seen - BACKFILL_LOOKBACK_MS if seen else fresh_start, []).append(s)
        n = 0
        try:
            for start_ms, syms in sorted(groups.items()):
                start = dt.datetime.fromtimestamp(start_ms / 1000, UTC)
                for i in range(0, len(syms), BACKFILL_SYMBOLS_PER_REQUEST):
                    mark = self.pub.mark()  # stream bars after this are newer than the REST answer
                    raw: Any = self.fetch_bars(syms[i:i + BACKFILL_SYMBOLS_PER_REQUEST], start)  # a dict: raw_data
                    for sym, bars in (raw or {}).items():
                        n += sum(self.pub.submit_backfill(sym, b, mark) for b in bars)
        except Exception:
            with self._starts_lock:  # keep the gap for the next attempt
                for s, v in starts.items():
                    cur = self._pending_starts.get(s, v)
                    self._pending_starts[s] = None if (v is None or cur is None) else min(v, cur)
            raise
        self.counts["backfills"] += 1
        self.counts["backfilled_bars"] += n
        log.info("backfill: %d new bar(s) for %s", n, _names(self.symbols[:10]) + (
            f" and {len(self.symbols) - 10} more symbols" if len(self.symbols) > 10 else ""))
        return n

    def stop(self) -> None:
        self.stopping.set()
        loop = self.stream._loop
        if loop is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.stream.stop_ws(), loop).result(2)
            except Exception:
                pass
            self.force_reconnect("sidecar stopping")  # wakes the consume loop (its recv waits up to 5 s)
        for t in self._threads:
            t.join(3 if t.name == "alpaca-stream" else 0.5)


class ReconnectTracker:
    """Counts (re)connects and detects flapping: more than ``flap_threshold`` reconnects within
    ``flap_window`` seconds (:class:`bridge.flap.FlapDetector`, the supervisor's too)."""

    def __init__(self, flap_threshold: int = DEFAULT_THRESHOLD, flap_window: float = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._flaps = FlapDetector(flap_threshold, flap_window)
        self._clock = clock
        self.connects = 0
        self.reconnects = 0
        self.disconnects = 0

    @property
    def flap_window(self) -> float:
        return self._flaps.window

    @property
    def flapping(self) -> bool:
        return self._flaps.flapping

    def on_connected(self) -> None:
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            self._flaps.record(self._clock())

    def on_disconnected(self) -> None:
        self.disconnects += 1

    def check_flap(self) -> Optional[int]:
        """Number of reconnects in the window when flapping starts (once per episode), else None."""
        return self._flaps.check(self._clock())


def _names(symbols: object) -> str:
    """``["SPY", "SH"]`` → ``SPY,SH`` (``-`` for none) for status details."""
    return ",".join(str(s) for s in symbols) if isinstance(symbols, (list, tuple)) and symbols else "-"


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0][:300]}" if s else type(e).__name__


def preflight(creds: Credentials, symbols: list[str], feed: str, data_url: Optional[str]) -> Optional[tuple[int, str]]:
    """One REST call before streaming: explains TLS, credential and connectivity problems in one
    sentence each. Returns (exit code, sentence) for problems retrying cannot fix."""
    import requests
    from alpaca.common.exceptions import APIError
    client = StockHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=data_url)
    client._retry = 0  # fail fast here
    try:
        client.get_stock_bars(StockBarsRequest(symbol_or_symbols=symbols[:1], timeframe=TimeFrame.Minute,
                                               feed=DataFeed(feed), limit=1,
                                               start=dt.datetime.now(UTC) - dt.timedelta(days=5)))
    except requests.exceptions.SSLError as e:
        return ExitCode.CONFIG, (f"TLS verification of the Alpaca data API failed ({_short(e)[:120]}): set SSL_CERT_FILE to a "
                          "valid CA bundle (certifi's is used by default).")
    except APIError as e:
        code = getattr(e, "status_code", None)
        if code in (401, 403):
            return ExitCode.AUTH, (f"the Alpaca data API rejected API key {mask(creds.api_key)} (HTTP {code}): check "
                               "ALPACA_API_KEY/ALPACA_SECRET_KEY in config.env.")
        log.warning("preflight: the Alpaca data API answered HTTP %s; continuing", code)
    except requests.exceptions.RequestException as e:
        log.warning("preflight: cannot reach the Alpaca data API (%s); the stream will keep retrying", _short(e))
    return None
