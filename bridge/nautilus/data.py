"""``BarbridgeDataClient``: a NautilusTrader ``LiveMarketDataClient`` fed by barbridge.

A Rust reader (``barbridge.FifoReader``, or a ``Consumer`` fed by ``barbridge.NatsFeed``) stores
and journals every bar; one daemon thread of this client waits on it with the GIL released,
maps each bar (:mod:`bridge.nautilus.common`) and hands batches to the node's event loop with
``call_soon_threadsafe``: the loop never waits on barbridge. Trading statuses come from the
consumer's trading book (``Consumer.halted()``), polled every ``status_poll_secs``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import barbridge
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.data.messages import (RequestBars, SubscribeBars, SubscribeInstrumentStatus, UnsubscribeBars,
                                           UnsubscribeInstrumentStatus)
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.model.data import Bar, InstrumentStatus
from nautilus_trader.model.enums import AggregationSource, BarAggregation, PriceType
from nautilus_trader.model.identifiers import ClientId, InstrumentId

from .common import BARBRIDGE, MINUTE_NS, MappingError, PrecisionError, Sequencer, status_event, to_bar
from .config import BarbridgeDataClientConfig
from .backfill import fill, rest_bars
from .history import stored_bars
from .providers import BarbridgeInstrumentProvider

# One sentence per data client that could not open its source (read by programs that run a node,
# e.g. examples/nautilus/sma_strategy.py, to exit non-zero).
CONNECT_ERRORS: list[str] = []
BATCH = 4096  # bars handed to the loop in one callback at most
MAX_PENDING = 64  # batches handed to the loop and not yet delivered; beyond, the client thread waits


class BarbridgeDataClient(LiveMarketDataClient):
    """Minute bars and trading statuses from barbridge (see README, "NautilusTrader").

    Counters (``counters``, also logged at disconnect): ``bars`` delivered, ``revisions`` among
    them, ``refused_precision`` (a value beyond the instrument's precision: one error each),
    ``unconfigured`` (bars of symbols without an instrument), ``statuses`` delivered.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, msgbus: MessageBus, cache: Cache, clock: LiveClock,
                 instrument_provider: BarbridgeInstrumentProvider, config: BarbridgeDataClientConfig,
                 name: Optional[str] = None) -> None:
        super().__init__(loop=loop, client_id=ClientId(name or BARBRIDGE), venue=None, msgbus=msgbus, cache=cache,
                         clock=clock, instrument_provider=instrument_provider, config=config)
        if (config.fifo is None) == (config.nats_url is None):
            raise MappingError("the barbridge data client needs exactly one source: fifo (FIFO path) or nats_url")
        if config.nats_url is not None and not config.nats_durable:
            raise MappingError("nats_url needs nats_durable, this subscriber's durable consumer name")
        self._config = config
        self._provider = instrument_provider
        self._instruments = instrument_provider.by_symbol  # read-only after construction
        self._reader: Any = None  # barbridge.FifoReader
        self._consumer: Any = None  # barbridge.Consumer (the reader's, or the NATS feed's)
        self._feed: Any = None  # barbridge.NatsFeed
        self._sub: Any = None  # barbridge.Subscription (NATS)
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)  # a slow loop makes the reader's buffer fill (counted)
        self._bar_subs: set[InstrumentId] = set()
        self._status_subs: set[InstrumentId] = set()
        self._seq = Sequencer()
        self.counters = {"bars": 0, "revisions": 0, "refused_precision": 0, "unconfigured": 0, "statuses": 0,
                         "delivery_drops": 0}
        self._unconfigured_logged: set[str] = set()

    # ------------------------------------------------------------------ connection
    async def _connect(self) -> None:
        await self._provider.load_all_async()  # the configured symbols (no venue to ask)
        for inst in self._provider.list_all():
            self._handle_data(inst)
        try:
            self._open_source()
        except (OSError, ValueError) as e:  # a FIFO with a reader already, a refused journal, a bad NATS URL ...
            msg = f"the barbridge data client cannot start: {e}"
            self._log.error(msg)
            CONNECT_ERRORS.append(msg)
            if self._config.stop_node_on_error:  # the node's own signal handler stops it
                os.kill(os.getpid(), signal.SIGTERM)
            return
        # A restarted node: the store holds today's journal again; a bar at or before its latest
        # minute is a revision, as it was for the node before (and for the export).
        for sym in self._instruments:
            latest = self._consumer.latest(sym)
            if latest is not None:
                self._seq.is_revision(sym, latest.timestamp_ms)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._pump, name="barbridge-nautilus", daemon=True)
        self._thread.start()

    def _open_source(self) -> None:
        """The reader stores and journals every symbol the writer sends (the journal stays
        complete, e.g. after the launcher's --subscribe); bars of symbols without an instrument
        are counted and skipped in :meth:`_map`."""
        cfg = self._config
        if cfg.fifo is not None:
            self._reader = barbridge.FifoReader(cfg.fifo, stale_after=cfg.stale_after_secs,
                                                status_file=cfg.status_file, journal=cfg.journal)
            self._consumer = self._reader.consumer
            self._log.info(f"reading barbridge FIFO {cfg.fifo} (journal {cfg.journal}, status {cfg.status_file})")
            return
        assert cfg.nats_url is not None and cfg.nats_durable is not None  # checked in __init__
        self._consumer = barbridge.Consumer(stale_after=cfg.stale_after_secs, status_file=cfg.status_file,
                                            journal=cfg.journal)
        self._sub = self._consumer.subscribe()
        self._feed = barbridge.NatsFeed(self._consumer, cfg.nats_url, cfg.nats_durable, stream=cfg.nats_stream,
                                        feed=cfg.nats_feed, user=cfg.nats_user, password_file=cfg.nats_password_file,
                                        creds=cfg.nats_creds, tls=cfg.nats_tls, ca=cfg.nats_ca)
        self._log.info(f"subscribed to barbridge on {cfg.nats_url} as {cfg.nats_durable}")

    async def _disconnect(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)
        for obj in (self._feed, self._sub, self._reader):
            if obj is not None:
                obj.close()
        if self._consumer is not None and self._reader is None:
            self._consumer.close()
        self._feed = self._sub = self._reader = self._consumer = None
        self._log.info(f"barbridge client stopped: {self.counters}")

    # ------------------------------------------------------------------ the reader thread
    def _next(self, timeout: float) -> Any:
        src = self._reader if self._reader is not None else self._sub
        return src.get(timeout)

    def _pump(self) -> None:
        """Wait for bars (GIL released in Rust), map them, hand each batch to the loop."""
        halted: dict[str, tuple[str, int]] = {}
        next_poll = 0.0
        loop = self._loop
        while not self._stopping.is_set():
            out: list[Any] = []
            b = self._next(0.2)
            while b is not None and len(out) < BATCH:
                ev = self._map(b)
                if ev is not None:
                    out.append(ev)
                b = self._next(0.0) if len(out) < BATCH else None
            now = self._clock.timestamp()
            if now >= next_poll:
                next_poll = now + self._config.status_poll_secs
                out.extend(self._statuses(halted))
                self._check_drops()
            if out:
                while not self._pending.acquire(timeout=0.2):
                    if self._stopping.is_set():
                        return
                loop.call_soon_threadsafe(self._deliver, out)

    def _map(self, b: Any) -> Optional[Bar]:
        inst = self._instruments.get(b.symbol)
        if inst is None:
            self.counters["unconfigured"] += 1
            if b.symbol not in self._unconfigured_logged:
                self._unconfigured_logged.add(b.symbol)
                self._log.warning(f"bars of {b.symbol} are not delivered: it is not among the configured symbols")
            return None
        rev = self._seq.is_revision(b.symbol, b.timestamp_ms)
        try:
            bar = to_bar(b.to_dict(), inst, self._clock.timestamp_ns(), rev)
        except PrecisionError as e:
            self.counters["refused_precision"] += 1
            self._log.error(str(e))
            return None
        self.counters["bars"] += 1
        self.counters["revisions"] += rev
        return bar

    def _check_drops(self) -> None:
        """Bars the reader's buffer dropped while this node fell behind: loud, never silent."""
        drops = int(self._consumer.stats().get("delivery_drops", 0))
        if drops > self.counters["delivery_drops"]:
            self._log.error(f"{drops - self.counters['delivery_drops']} bar(s) dropped before reaching the node "
                            f"(it fell behind; {drops} in all): the journal has them, request_bars returns them")
            self.counters["delivery_drops"] = drops

    def _statuses(self, halted: dict[str, tuple[str, int]]) -> list[InstrumentStatus]:
        """Changes of the consumer's trading book since the last poll, as status events."""
        now_halted = self._consumer.halted()
        out = []
        ts = self._clock.timestamp_ns()
        for sym, st in now_halted.items():
            inst = self._instruments.get(sym)
            key = (str(st.get("state")), int(st.get("since_ms") or 0))
            if inst is None or halted.get(sym) == key:
                continue
            halted[sym] = key
            out.append(status_event(inst.id, key[0], key[1], st.get("code"), st.get("reason"), ts))
        for sym in [s for s in halted if s not in now_halted]:
            del halted[sym]
            ended = [h.get("end_ms") for h in self._consumer.halts(sym) if h.get("end_ms") is not None]
            out.append(status_event(self._instruments[sym].id, "trading", int(ended[-1]) if ended else ts // 1_000_000,
                                    None, None, ts))
        self.counters["statuses"] += len(out)
        return out

    def _deliver(self, events: list[Any]) -> None:
        """On the node's event loop."""
        try:
            for ev in events:
                self._handle_data(ev)
        finally:
            self._pending.release()

    # ------------------------------------------------------------------ subscriptions
    async def _subscribe_bars(self, command: SubscribeBars) -> None:
        bt = command.bar_type
        spec = bt.spec
        if (bt.aggregation_source != AggregationSource.EXTERNAL or spec.step != 1
                or spec.aggregation != BarAggregation.MINUTE or spec.price_type != PriceType.LAST):
            self._log.error(f"cannot subscribe {bt}: barbridge has 1-MINUTE-LAST-EXTERNAL bars only")
            return
        if bt.instrument_id.symbol.value not in self._instruments:
            self._log.error(f"cannot subscribe {bt}: {bt.instrument_id.symbol} is not among the configured symbols")
            return
        self._bar_subs.add(bt.instrument_id)

    async def _unsubscribe_bars(self, command: UnsubscribeBars) -> None:
        self._bar_subs.discard(command.bar_type.instrument_id)

    async def _subscribe_instrument_status(self, command: SubscribeInstrumentStatus) -> None:
        self._status_subs.add(command.instrument_id)

    async def _unsubscribe_instrument_status(self, command: UnsubscribeInstrumentStatus) -> None:
        self._status_subs.discard(command.instrument_id)

    # ------------------------------------------------------------------ history
    async def _request_bars(self, request: RequestBars) -> None:
        bt = request.bar_type
        sym = bt.instrument_id.symbol.value
        inst = self._instruments.get(sym)
        if inst is None or bt.spec.aggregation != BarAggregation.MINUTE or bt.spec.step != 1:
            self._log.error(f"cannot answer a request for {bt}: barbridge has 1-minute bars of the configured symbols")
            return
        now_ms = self._clock.timestamp_ns() // 1_000_000
        end_ms = int(request.end.timestamp() * 1000) if request.end is not None else now_ms
        start_ms = int(request.start.timestamp() * 1000) if request.start is not None else end_ms - 86_400_000
        # ts_event is the close: a bar closing in [start, end] started one minute earlier
        from_ms, to_ms = start_ms - 60_000, end_ms - 60_000 + 1
        if self._config.journal:
            rows = await asyncio.get_running_loop().run_in_executor(
                None, stored_bars, Path(self._config.journal), sym, from_ms, to_ms)
        else:
            rows = [b.to_dict() for b in self._consumer.range(sym, from_ms, to_ms)]
        if self._config.backfill_rest:
            try:
                rest = await asyncio.get_running_loop().run_in_executor(
                    None, rest_bars, sym, from_ms, to_ms, self._config.alpaca_data_url, self._config.alpaca_feed)
                rows, filled = fill(rows, rest)
                self._log.info(f"request for {bt}: {filled} minute(s) the journal lacks from Alpaca's REST history")
            except Exception as e:  # the journal's answer still goes out, with the reason
                self._log.error(f"request for {bt}: REST history failed, answering from the journal only: {e}")
        bars = []
        for r in rows:
            try:
                bars.append(to_bar(r, inst, int(r["timestamp_ms"]) * 1_000_000 + MINUTE_NS, False))
            except PrecisionError as e:
                self.counters["refused_precision"] += 1
                self._log.error(str(e))
        if request.limit:
            bars = bars[-request.limit:]
        start = request.start or dt.datetime.fromtimestamp(from_ms / 1000, dt.timezone.utc)
        end = request.end or dt.datetime.fromtimestamp(end_ms / 1000, dt.timezone.utc)
        self._handle_bars(bt, bars, request.id, start, end, request.params)
