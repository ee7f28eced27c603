"""A local stand-in for Alpaca's market-data stream and REST bars, with scripted faults.

Speaks the protocol exactly as alpaca-py 0.44 expects it:

* websocket ``/v2/iex`` or ``/v2/sip``: msgpack frames; on connect
  ``[{"T":"success","msg":"connected"}]``; ``{"action":"auth","key","secret"}`` →
  ``[{"T":"success","msg":"authenticated"}]`` or ``[{"T":"error","code":402,"msg":"auth failed"}]``
  (406 ``connection limit exceeded``, 409 ``insufficient subscription``); subscribe/unsubscribe →
  ``[{"T":"subscription","bars":[...],"updatedBars":[...],...}]``; bars ``T:"b"`` and updated
  bars ``T:"u"`` with ``t`` as a ``msgpack.Timestamp``.
* REST ``GET /v2/stocks/bars`` (``symbols,start,end,limit,page_token``) →
  ``{"bars":{SYM:[{"t":RFC3339,"o","h","l","c","v","n","vw"}]},"next_page_token":...}``.
* crypto: websocket ``/v1beta3/crypto/us`` and REST ``/v1beta3/crypto/us/bars`` for pairs such as
  ``BTC/USD`` (fractional volumes, 24/7; ``crypto.py``).

Bars are deterministic functions of (seed, symbol, minute), and the data clock is
``epoch_ms`` + one minute per ``interval`` wall seconds counted from ``epoch_wall`` (default: now,
with ``epoch_ms`` far enough in the past that the accelerated clock stays behind the wall clock for
``BEHIND_FOR_S``, see ``default_epoch_ms``; it never produces a minute before the wall clock has
passed its end: a consumer refuses bars from the future), so a restarted server given the same
``--epoch-ms``, ``--epoch-wall`` and ``--seed`` serves identical history (``--prefill`` minutes
before its own start). ``--epoch-wall`` lets data minutes lie in a past trading session (e.g. to
check ``barbridge gaps`` on a weekend).

Faults (methods, ``--fault TICK:ACTION[:ARG]`` on the command line, or
``GET /_fake/fault?action=...&arg=...``): ``close1000``, ``close1011``, ``drop`` (abrupt TCP
reset), ``mute:SECS`` (connection alive, pings answered, no data), ``blackhole`` (every current
connection goes dead without closing: nothing sent, pings unanswered; its slot is free at once), ``auth402:N`` (next N
auths fail), ``limit406:SECS`` (auths answered 406 for that long), ``sub409`` (insufficient
subscription on every auth until cleared with ``sub409:0``), ``http429:N`` (next N websocket
handshakes get HTTP 429), ``rest429:N`` (the next N REST requests get 429).

The minute barrier's tape: ``no_trade_prob`` (quiet minutes: no bar anywhere), ``lost_prob`` (a bar
in REST history never sent on the stream), ``late_prob`` (a bar sent one data minute late, after
the next minute's bars); ``lost`` and ``late`` list what was done.

Trading statuses (``"T":"s"``, to clients subscribed to ``statuses``): ``halt:SYM[+SYM...]``
(status H, reason T1 "Halt News Pending"), ``halt_all`` (every symbol, reason MWC1: a market-wide
circuit breaker), ``unhalt:SYM[+SYM...]`` and ``unhalt_all`` (status T). A halted symbol gets no
bars while halted, in the stream or in REST history (nothing traded). The status's ``t`` is the
data clock's time.

Burst mode (``burst=True``, ``--burst N``: N symbols ``B00000``, ``B00001``, ...): every minute's
bars for all subscribed symbols go to each client in ONE websocket frame, as Alpaca's SIP feed
delivers the top of the minute; the wall time of each frame's send is kept per minute
(``burst_sent``, also in ``/_fake/stats``) for ``scripts/bench_burst.py``.

User tool::

    python -m fake_alpaca --port 0 --interval 1 --key K --secret S
    # prints FAKE_ALPACA_STREAM_URL=ws://127.0.0.1:PORT/v2/iex and FAKE_ALPACA_DATA_URL=http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Optional

import msgpack
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import crypto

log = logging.getLogger("fake_alpaca")
logging.getLogger("websockets.server").setLevel(logging.WARNING)  # REST answers log as "rejected"
MINUTE_MS = 60_000
BASE_PRICES = {"SPY": 671.0, "SPXL": 198.0, "SH": 36.5, "SDS": 15.2, "QQQ": 600.0, **crypto.BASE_PRICES}


#: Wall seconds an accelerated data clock started by default stays behind the wall clock for
#: (a test's run): a consumer refuses bars from the future (`rejects{future_bar}`).
BEHIND_FOR_S = 900


def default_epoch_ms(symbols: Any, interval: float, prefill: int, now: Optional[float] = None) -> int:
    """The data clock's default origin: far enough in the past that a clock running at one minute
    per ``interval`` wall seconds stays behind the wall clock for ``BEHIND_FOR_S``, but not before
    the first backfill's start (the last session open for stocks, the UTC day's start for crypto
    pairs) plus ``prefill`` minutes, so a sidecar's start-up backfill still finds the history.
    Where that leaves little room, the data clock is held at the wall clock (see ``_tick_loop``)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    anchors = []
    if any(not crypto.is_pair(s) for s in symbols):
        import barbridge  # the Rust calendar (one implementation)
        anchors.append(int(barbridge.last_session_open()))
    if any(crypto.is_pair(s) for s in symbols):
        anchors.append(now_ms - now_ms % 86_400_000)
    room = now_ms - max(anchors, default=0) - (prefill + 1) * MINUTE_MS
    wanted = int(BEHIND_FOR_S * max(0.0, 60.0 / interval - 1.0) * 1000) if interval > 0 else 0
    return (now_ms - max(0, min(wanted, room))) // MINUTE_MS * MINUTE_MS


def _rng(seed: int, symbol: str, ts: int, salt: str = "") -> random.Random:
    h = hashlib.blake2b(f"{seed}|{symbol}|{ts}|{salt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "big"))


def make_bar(seed: int, symbol: str, ts: int, *, no_trade_prob: float = 0.0) -> Optional[dict]:
    """Deterministic minute bar (REST-style dict with ``t`` in ms), or None for a minute
    without trades."""
    r = _rng(seed, symbol, ts)
    if no_trade_prob and r.random() < no_trade_prob:
        return None
    base = BASE_PRICES.get(symbol) or 10 + _rng(seed, symbol, 0).random() * 490
    x = ts / MINUTE_MS
    mid = base * (1 + 0.004 * math.sin(2 * math.pi * x / 390) + 0.0015 * math.sin(2 * math.pi * x / 37))
    o = round(mid * (1 + r.gauss(0, 0.0004)), 2)
    c = round(mid * (1 + r.gauss(0, 0.0004)), 2)
    h = round(max(o, c) * (1 + abs(r.gauss(0, 0.0003))), 2)
    lo = round(min(o, c) * (1 - abs(r.gauss(0, 0.0003))), 2)
    h, lo = max(h, o, c), min(lo, o, c)
    n = r.randint(1, 400)
    v = n * r.randint(5, 120)
    vw = round(lo + (h - lo) * r.random(), 4)
    return {"t": ts, "o": o, "h": h, "l": lo, "c": c, "v": crypto.fractional_volume(v) if crypto.is_pair(symbol) else v,
            "n": n, "vw": vw}


def updated_version(bar: dict, seed: int, symbol: str) -> dict:
    """A late correction of ``bar`` (more volume, a close nudged within the range)."""
    r = _rng(seed, symbol, bar["t"], "upd")
    u = dict(bar)
    u["v"] = bar["v"] + r.randint(1, 500)
    u["n"] = bar["n"] + r.randint(1, 5)
    u["c"] = round(min(max(bar["c"] + r.choice((-0.01, 0.01)), bar["l"]), bar["h"]), 2)
    return u


def iso_ms(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(s: str) -> int:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp() * 1000)


@dataclass
class _Client:
    ws: ServerConnection
    path: str = ""  # the stream's path: Alpaca limits connections per key and stream (stocks, crypto)
    key: Optional[str] = None
    bars: set = field(default_factory=set)
    updated: set = field(default_factory=set)
    statuses: set = field(default_factory=set)
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    dead: bool = False  # blackholed: nothing is sent, nothing read (pings go unanswered)

    def wants(self, channel: str, symbol: str) -> bool:
        if self.dead:
            return False
        s = {"bars": self.bars, "updatedBars": self.updated, "statuses": self.statuses}[channel]
        return symbol in s or "*" in s


class FakeAlpacaServer:
    """Fake Alpaca data server. Use :meth:`start_in_thread` from tests (thread-safe fault
    methods), or ``await serve_forever()`` from the CLI."""

    def __init__(self, *, symbols=("SPY", "SPXL", "SH", "SDS"), interval: float = 1.0,
                 key: str = "FAKEKEY0000", secret: str = "FAKESECRET0000", host: str = "127.0.0.1",
                 port: int = 0, seed: int = 1, epoch_ms: Optional[int] = None,
                 epoch_wall: Optional[float] = None, prefill: int = 30,
                 updated_every: int = 0, no_trade_prob: float = 0.0, page_size: int = 10_000,
                 single_connection: bool = True, faults: Optional[list[tuple[int, str]]] = None,
                 burst: bool = False, lost_prob: float = 0.0, late_prob: float = 0.0) -> None:
        self.symbols = list(symbols)
        self.burst = burst
        self.burst_sent: dict[int, float] = {}  # minute → wall time its frame was sent (last client)
        self.interval = interval
        self.key, self.secret = key, secret
        self.host, self.port = host, port
        self.seed = seed
        now = time.time()
        given = epoch_ms is not None
        if epoch_ms is None:
            epoch_ms = default_epoch_ms(self.symbols, interval, prefill, now)
        self.epoch_ms = epoch_ms // MINUTE_MS * MINUTE_MS
        if epoch_wall is not None:
            self.epoch_wall = float(epoch_wall)
        else:
            self.epoch_wall = self.epoch_ms / 1000 if given else now
        self.prefill = prefill
        self.updated_every = updated_every
        self.no_trade_prob = no_trade_prob
        # The minute barrier's faults: a bar in REST history but never sent on the stream (lost), or
        # sent one data minute late, after the next minute's bars (late). Deterministic per
        # (seed, symbol, minute); `lost`/`late` list what was done.
        self.lost_prob = lost_prob
        self.late_prob = late_prob
        self.lost: list[tuple[str, int]] = []
        self.late: list[tuple[str, int]] = []
        self._late_queue: list[tuple[str, dict]] = []
        self.rest429 = 0  # the next N REST requests are refused with 429 (fault rest429:N)
        self.page_size = page_size
        self.single_connection = single_connection
        self.script = sorted(faults or [])
        # state (owned by the server's event loop)
        self.history: dict[str, dict[int, dict]] = {s: {} for s in self.symbols}
        self.clients: list[_Client] = []
        self.produced_until = 0  # last data minute produced (set when the server starts)
        self.paused = False
        self.muted_until = 0.0
        self.auth_fail = 0
        self.limit_until = 0.0
        self.insufficient = False
        self.http429 = 0
        self.halted: dict[str, int] = {}  # symbol → data time its halt began
        self.stats = {"connections": 0, "auth_ok": 0, "auth_failed": 0, "limit406": 0, "sub409": 0,
                      "http429": 0, "rest429": 0, "subscribes": 0, "bars_sent": 0, "updated_sent": 0, "rest_requests": 0,
                      "statuses_sent": 0}
        self.subscribe_log: list[dict] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Any = None  # the websockets server, once started
        self._thread: Optional[threading.Thread] = None
        self._stopped: Any = None  # asyncio.Event, made on the server's loop
        self._ready = threading.Event()
        self._held_logged = False  # the data clock was held at the wall clock (logged once)
        self._start_minute = self.data_minute(now)

    # ------------------------------------------------------------------ data clock
    def data_minute(self, wall: Optional[float] = None) -> int:
        wall = time.time() if wall is None else wall
        k = math.floor((wall - self.epoch_wall) / self.interval) if self.interval > 0 else 0
        return self.epoch_ms + k * MINUTE_MS

    def data_time_ms(self, wall: Optional[float] = None) -> int:
        """The data clock now, to the millisecond."""
        wall = time.time() if wall is None else wall
        return self.epoch_ms + int((wall - self.epoch_wall) / self.interval * MINUTE_MS) if self.interval > 0 else self.epoch_ms

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v2/iex"

    @property
    def crypto_ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{crypto.CRYPTO_STREAM_PATH}"

    @property
    def data_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for m in range(self.prefill, 0, -1):
            self._produce_minute(self._start_minute - m * MINUTE_MS, send=False)
        self.produced_until = self._start_minute - MINUTE_MS
        self._server = await serve(self._handler, self.host, self.port, process_request=self._process_request,
                                   ping_interval=20, ping_timeout=20, compression=None, max_size=2**20)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())
        self._ready.set()

    async def serve_forever(self) -> None:
        await self.start()
        await self._stopped.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._ticker.cancel()
        self._server.close()
        for c in list(self.clients):
            c.ws.transport.abort()
        await self._server.wait_closed()

    def start_in_thread(self) -> "FakeAlpacaServer":
        def run() -> None:
            asyncio.run(self.serve_forever())
        self._thread = threading.Thread(target=run, name="fake-alpaca", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Alpaca server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stopped:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread:
            self._thread.join(5)

    def call(self, fn, *args) -> Any:
        """Run ``fn(*args)`` on the server loop (thread-safe) and return its result."""
        async def wrap():
            r = fn(*args)
            if asyncio.iscoroutine(r):
                r = await r
            return r
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result(10)

    # ------------------------------------------------------------------ production
    def _produce_minute(self, ts: int, send: bool = True) -> None:
        frames: dict[int, list] = {}  # burst mode: client index → this minute's messages
        late, self._late_queue = self._late_queue, []
        for sym in self.symbols:
            b = None if sym in self.halted else make_bar(self.seed, sym, ts, no_trade_prob=self.no_trade_prob)
            if b is None:
                continue
            self.history[sym][ts] = b
            fate = _rng(self.seed, sym, ts, "fate").random() if send and (self.lost_prob or self.late_prob) else 1.0
            if fate < self.lost_prob:
                self.lost.append((sym, ts))
                continue
            if fate < self.lost_prob + self.late_prob:
                self.late.append((sym, ts))
                self._late_queue.append((sym, b))
                continue
            if send:
                self._broadcast("bars", "b", sym, b, frames if self.burst else None)
        for sym, b in late:  # last minute's late bars, after this minute's
            self._broadcast("bars", "b", sym, self.history[sym].get(b["t"], b), frames if self.burst else None)
            if self.updated_every and (ts // MINUTE_MS) % self.updated_every == 0:
                pass  # the correction of this minute is published two minutes later (below)
        if self.updated_every:
            uts = ts - 2 * MINUTE_MS
            if (uts // MINUTE_MS) % self.updated_every == 0:
                for sym in self.symbols:
                    old = self.history[sym].get(uts)
                    if old is None:
                        continue
                    u = updated_version(old, self.seed, sym)
                    self.history[sym][uts] = u
                    if send:
                        self._broadcast("updatedBars", "u", sym, u, frames if self.burst else None)
        for i, msgs in frames.items():
            self.clients[i].queue.put_nowait(("frame", ts, msgs))

    def _broadcast(self, channel: str, T: str, sym: str, b: dict, frames: Optional[dict] = None) -> None:
        """Queue ``b`` for every client subscribed to it (into ``frames`` in burst mode)."""
        if time.monotonic() < self.muted_until:
            return
        msg = {"T": T, "S": sym, "o": b["o"], "h": b["h"], "l": b["l"], "c": b["c"], "v": b["v"],
               "t": msgpack.Timestamp.from_unix_nano(b["t"] * 1_000_000), "n": b["n"], "vw": b["vw"]}
        for i, c in enumerate(self.clients):
            if c.key is not None and c.wants(channel, sym):
                if frames is None:
                    c.queue.put_nowait(msg)
                else:
                    frames.setdefault(i, []).append(msg)
                self.stats["bars_sent" if T == "b" else "updated_sent"] += 1

    def _trading_status(self, symbols: list[str], halt: bool, code: str, reason: str) -> str:
        """Halt or resume ``symbols`` now (data clock) and tell subscribed clients."""
        now = self.data_time_ms()
        changed = [s for s in symbols if (s in self.halted) != halt]
        for sym in changed:
            if halt:
                self.halted[sym] = now
            else:
                del self.halted[sym]
            msg = {"T": "s", "S": sym, "sc": "H" if halt else "T", "sm": "Trading Halt" if halt else "Trading Resumption",
                   "rc": code, "rm": reason, "t": msgpack.Timestamp.from_unix_nano(now * 1_000_000), "z": "C"}
            for c in self.clients:
                if c.key is not None and c.wants("statuses", sym):
                    c.queue.put_nowait(msg)
                    self.stats["statuses_sent"] += 1
        return f"{'halted' if halt else 'resumed'} {','.join(changed) or 'nothing'} ({code})"

    async def _tick_loop(self) -> None:
        tick = 0
        while True:
            # Never ahead of the wall clock: a minute is sent after it ends, as Alpaca does (a
            # consumer refuses a bar from the future). An accelerated clock that caught up waits.
            target = min(self.data_minute(), (int(time.time() * 1000) // MINUTE_MS - 1) * MINUTE_MS)
            if target < self.data_minute() and not self._held_logged:
                self._held_logged = True
                log.warning("the accelerated data clock reached the wall clock: from now on one minute per wall minute")
            while not self.paused and self.produced_until < target:
                self.produced_until += MINUTE_MS
                self._produce_minute(self.produced_until)
                tick += 1
                while self.script and self.script[0][0] <= tick:
                    _, action = self.script.pop(0)
                    log.info("scripted fault at tick %d: %s", tick, action)
                    await self.fault(action)
            if self.paused:
                # keep the data clock honest: a paused server produces nothing for those minutes
                self.produced_until = max(self.produced_until, target)
            nxt = self.epoch_wall + ((self.produced_until - self.epoch_ms) / MINUTE_MS + 1) * self.interval
            await asyncio.sleep(max(0.005, min(nxt - time.time(), 1.0)))

    # ------------------------------------------------------------------ faults
    async def fault(self, spec: str) -> str:
        """Apply one fault ``ACTION[:ARG]``; returns a description."""
        action, _, arg = spec.partition(":")
        action = action.strip().lower()
        if action in ("close1000", "close1011", "close"):
            code = int(arg) if arg else int(action[5:] or 1000)
            for c in list(self.clients):
                await c.ws.close(code, "going away" if code == 1000 else "internal error")
            return f"closed {code}"
        if action == "rest429":
            self.rest429 = int(arg or 1)
            return f"the next {self.rest429} REST request(s) get 429"
        if action == "drop":
            for c in list(self.clients):
                c.ws.transport.abort()
            return "dropped"
        if action == "mute":
            self.muted_until = time.monotonic() + float(arg or 1e9)
            return f"muted for {arg or 'ever'} s"
        if action == "unmute":
            self.muted_until = 0.0
            return "unmuted"
        if action == "auth402":
            self.auth_fail = int(arg or 1)
            return f"next {self.auth_fail} auth(s) fail"
        if action == "limit406":
            self.limit_until = time.monotonic() + float(arg or 5)
            for c in list(self.clients):  # a second session would now be refused
                c.ws.transport.abort()
            return f"406 for {arg or 5} s"
        if action == "sub409":
            self.insufficient = (arg or "1") != "0"
            return f"409 {'on' if self.insufficient else 'off'}"
        if action == "http429":
            self.http429 = int(arg or 1)
            return f"next {self.http429} handshake(s) get HTTP 429"
        if action in ("halt", "unhalt"):
            syms = [x.strip().upper() for x in arg.replace(",", "+").split("+") if x.strip()]
            if not syms:
                raise ValueError(f"{action} needs symbols: {action}:SYM[+SYM...]")
            return self._trading_status(syms, action == "halt", "T1", "Halt News Pending" if action == "halt" else "")
        if action in ("halt_all", "unhalt_all"):
            halt = action == "halt_all"
            return self._trading_status(self.symbols, halt, "MWC1", "Market Wide Circuit Breaker Halt - Level 1" if halt else "")
        if action == "blackhole":
            for c in list(self.clients):
                c.dead = True
                c.ws.transport.pause_reading()  # its pings are never read, so never answered
            return "blackholed"
        if action == "pause":
            self.paused = True
            return "paused"
        if action == "resume":
            self.paused = False
            return "resumed"
        raise ValueError(f"unknown fault {spec!r}")

    def inject(self, spec: str) -> str:
        """Thread-safe :meth:`fault`."""
        return self.call(self.fault, spec)

    # ------------------------------------------------------------------ observation (thread-safe)
    def snapshot_history(self) -> dict[str, dict[int, dict]]:
        return self.call(lambda: {s: dict(h) for s, h in self.history.items()})

    def authenticated_clients(self) -> int:
        return self.call(lambda: sum(1 for c in self.clients if c.key is not None and not c.dead))

    # ------------------------------------------------------------------ websocket
    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # set once the handshake is done, before the handler runs
        path = urllib.parse.urlsplit(ws.request.path).path
        if path not in ("/v2/iex", "/v2/sip", "/v2/test", "/v2/delayed_sip", crypto.CRYPTO_STREAM_PATH):
            await ws.close(1008, "unknown path")
            return
        self.stats["connections"] += 1
        client = _Client(ws, path)
        sender = None
        try:
            await ws.send(msgpack.packb([{"T": "success", "msg": "connected"}]))
            auth = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))
            if not isinstance(auth, dict) or auth.get("action") != "auth":
                await self._error(ws, 401, "not authenticated")
                return
            if self.auth_fail > 0 or auth.get("key") != self.key or auth.get("secret") != self.secret:
                self.auth_fail = max(0, self.auth_fail - 1)
                self.stats["auth_failed"] += 1
                await self._error(ws, 402, "auth failed")
                return
            if time.monotonic() < self.limit_until or (
                    self.single_connection and any(c.key == auth["key"] and c.path == path and not c.dead for c in self.clients)):
                self.stats["limit406"] += 1
                await self._error(ws, 406, "connection limit exceeded")
                return
            if self.insufficient:
                self.stats["sub409"] += 1
                await self._error(ws, 409, "insufficient subscription")
                return
            client.key = auth["key"]
            self.clients.append(client)
            self.stats["auth_ok"] += 1
            await ws.send(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
            sender = asyncio.create_task(self._sender(client))
            async for frame in ws:
                msg = msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)
                act = msg.get("action")
                if act in ("subscribe", "unsubscribe"):
                    self.stats["subscribes"] += act == "subscribe"
                    self.subscribe_log.append(dict(msg))
                    for ch, target in (("bars", client.bars), ("updatedBars", client.updated),
                                       ("statuses", client.statuses)):
                        for s in msg.get(ch, []) or []:
                            (target.add if act == "subscribe" else target.discard)(s)
                    await client.queue.put({"T": "subscription", "trades": [], "quotes": [],
                                            "bars": sorted(client.bars), "updatedBars": sorted(client.updated),
                                            "dailyBars": [], "statuses": sorted(client.statuses), "lulds": [],
                                            "corrections": [], "cancelErrors": []})
                else:
                    await client.queue.put({"T": "error", "code": 400, "msg": "invalid syntax"})
        except (ConnectionClosed, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            if client in self.clients:
                self.clients.remove(client)
            if sender:
                sender.cancel()

    async def _sender(self, client: _Client) -> None:
        try:
            while True:
                first = await client.queue.get()
                if client.dead:
                    continue
                if isinstance(first, tuple):  # burst mode: one minute, one frame
                    _, ts, msgs = first
                    data = msgpack.packb(msgs)
                    self.burst_sent[ts] = time.time()
                    await client.ws.send(data)
                    continue
                batch = [first]
                while not client.queue.empty() and len(batch) < 100 and not isinstance(client.queue._queue[0], tuple):  # type: ignore[attr-defined]  # peek
                    batch.append(client.queue.get_nowait())
                await client.ws.send(msgpack.packb(batch))
        except (ConnectionClosed, ConnectionError):
            pass

    @staticmethod
    async def _error(ws: ServerConnection, code: int, msg: str) -> None:
        await ws.send(msgpack.packb([{"T": "error", "code": code, "msg": msg}]))
        await ws.close(1000, msg)

    # ------------------------------------------------------------------ HTTP
    def _json(self, status: int, obj: Any) -> Response:
        body = json.dumps(obj).encode()
        h = Headers()
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
        h["Connection"] = "close"
        return Response(status, HTTPStatus(status).phrase, h, body)

    async def _process_request(self, conn: ServerConnection, req: Request) -> Optional[Response]:
        url = urllib.parse.urlsplit(req.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/v2/stocks/bars":
            return self._rest_bars(req, q)
        if url.path == crypto.CRYPTO_BARS_PATH:
            return self._rest_bars(req, q, pairs=True)
        if url.path == "/_fake/fault":
            try:
                return self._json(200, {"ok": await self.fault(q.get("action", "") + (":" + q["arg"] if q.get("arg") else ""))})
            except ValueError as e:
                return self._json(400, {"error": str(e)})
        if url.path == "/_fake/stats":
            return self._json(200, {"stats": self.stats, "clients": sum(1 for c in self.clients if c.key),
                                    "epoch_ms": self.epoch_ms, "produced_until": self.produced_until,
                                    "subscribes": self.subscribe_log[-20:],
                                    "burst_sent": {str(k): v for k, v in sorted(self.burst_sent.items())[-200:]}})
        if url.path.startswith(("/v2/", crypto.CRYPTO_STREAM_PATH)) and req.headers.get("Upgrade", "").lower() == "websocket":
            if self.http429 > 0:
                self.http429 -= 1
                self.stats["http429"] += 1
                return conn.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too Many Requests\n")
            return None
        return self._json(404, {"message": "not found"})

    def _rest_bars(self, req: Request, q: dict, pairs: bool = False) -> Response:
        """Stock bars, or (``pairs``) crypto bars, which need no keys (but refuse wrong ones)."""
        self.stats["rest_requests"] += 1
        if self.rest429 > 0:
            self.rest429 -= 1
            self.stats["rest429"] += 1
            return self._json(429, {"code": 42910000, "message": "rate limit exceeded"})
        keys = (req.headers.get("APCA-API-KEY-ID"), req.headers.get("APCA-API-SECRET-KEY"))
        if keys != (self.key, self.secret) and not (pairs and keys == (None, None)):
            return self._json(401, {"code": 40110000, "message": "request is not authorized"})
        syms = [s for s in q.get("symbols", "").split(",") if s and crypto.is_pair(s) == pairs]
        if not syms:
            return self._json(400, {"code": 42210000, "message": "missing symbols"})
        try:
            start = _parse_time(q["start"]) if q.get("start") else 0
            end = _parse_time(q["end"]) if q.get("end") else None
            limit = min(int(q.get("limit") or 1000), 10_000, self.page_size)
        except ValueError as e:
            return self._json(422, {"code": 42210000, "message": f"invalid parameter: {e}"})
        token = q.get("page_token")
        after = None
        if token:
            after_sym, _, after_ts = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
            after = (after_sym, int(after_ts))
        rows = []
        for sym in sorted(syms):
            for ts in sorted(self.history.get(sym, {})):
                if ts < start or (end is not None and ts > end):
                    continue
                if after and (sym, ts) <= after:
                    continue
                rows.append((sym, ts))
        page, rest = rows[:limit], rows[limit:]
        out: dict[str, list] = {}
        for sym, ts in page:
            b = self.history[sym][ts]
            out.setdefault(sym, []).append({**b, "t": iso_ms(b["t"])})
        nxt = base64.urlsafe_b64encode(f"{page[-1][0]}|{page[-1][1]}".encode()).decode() if rest else None
        return self._json(200, {"bars": out, "next_page_token": nxt})


def burst_symbols(n: int) -> list[str]:
    """The burst mode's symbols: ``B00000`` ... (valid exchange-style names, sorted)."""
    return [f"B{i:05d}" for i in range(n)]


def _parse_fault(s: str) -> tuple[int, str]:
    tick, _, action = s.partition(":")
    return int(tick), action


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fake_alpaca", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed)")
    ap.add_argument("--symbols", default="SPY,SPXL,SH,SDS")
    ap.add_argument("--crypto-symbols", default=",".join(crypto.DEFAULT_CRYPTO_SYMBOLS),
                    help=f"crypto pairs served on {crypto.CRYPTO_STREAM_PATH} (empty: none)")
    ap.add_argument("--burst", type=int, default=0, metavar="N",
                    help="burst mode: N symbols (B00000, B00001, ...), each minute's bars in one frame")
    ap.add_argument("--interval", type=float, default=60.0, help="wall seconds per data minute (60 = real time)")
    ap.add_argument("--key", default="FAKEKEY0000")
    ap.add_argument("--secret", default="FAKESECRET0000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epoch-ms", type=int, default=None, help="data clock origin (reuse it to restart with the same history)")
    ap.add_argument("--epoch-wall", type=float, default=None,
                    help="wall time (epoch seconds) at which the data clock reads --epoch-ms (default: --epoch-ms itself)")
    ap.add_argument("--prefill", type=int, default=30, help="minutes of history before start")
    ap.add_argument("--updated-every", type=int, default=0, help="publish an updated bar for every Nth minute (0 = never)")
    ap.add_argument("--no-trade-prob", type=float, default=0.0, help="share of minutes without trades: no bar anywhere (quiet)")
    ap.add_argument("--lost-prob", type=float, default=0.0, help="share of bars in REST history but never sent on the stream")
    ap.add_argument("--late-prob", type=float, default=0.0, help="share of bars sent one data minute late on the stream")
    ap.add_argument("--page-size", type=int, default=10_000)
    ap.add_argument("--fault", action="append", default=[], metavar="TICK:ACTION[:ARG]")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s fake-alpaca %(levelname)s %(message)s")
    symbols = burst_symbols(a.burst) if a.burst else [s.strip().upper() for s in a.symbols.split(",") if s.strip()]
    symbols += [s.strip().upper() for s in a.crypto_symbols.split(",") if s.strip() and not a.burst]
    srv = FakeAlpacaServer(symbols=symbols, burst=a.burst > 0,
                           interval=a.interval, key=a.key, secret=a.secret, host=a.host, port=a.port,
                           seed=a.seed, epoch_ms=a.epoch_ms, epoch_wall=a.epoch_wall, prefill=a.prefill,
                           updated_every=a.updated_every,
                           no_trade_prob=a.no_trade_prob, page_size=a.page_size,
                           lost_prob=a.lost_prob, late_prob=a.late_prob,
                           faults=[_parse_fault(f) for f in a.fault])

    async def run() -> None:
        await srv.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, srv._stopped.set)
        print(f"FAKE_ALPACA_STREAM_URL={srv.ws_url}", flush=True)
        print(f"FAKE_ALPACA_CRYPTO_STREAM_URL={srv.crypto_ws_url}", flush=True)
        print(f"FAKE_ALPACA_DATA_URL={srv.data_url}", flush=True)
        print(f"FAKE_ALPACA_EPOCH_MS={srv.epoch_ms}", flush=True)
        print(f"FAKE_ALPACA_EPOCH_WALL={srv.epoch_wall!r}", flush=True)
        await srv._stopped.wait()
        await srv._shutdown()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
