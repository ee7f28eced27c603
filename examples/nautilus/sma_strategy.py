"""A small NautilusTrader strategy fed by barbridge, live or as a backtest on an exported catalog.

Per instrument it keeps the last ``window`` closes by minute; at each new bar (not a revision) it
decides ``above`` / ``below`` / ``flat`` (close against the mean of the window) and writes that
decision as one JSON line; a revision (Alpaca's updated bar) replaces its minute's close in the
window and is written as a ``revision`` line; trading statuses are written as ``status`` lines.
It places no orders: the decisions are what the parity test compares.

    # live, as the launcher's engine (CONSUMER_CMD) or by hand next to a sidecar:
    .venv/bin/python examples/nautilus/sma_strategy.py live --fifo PATH --journal DIR --symbols SPY,SH --decisions live.jsonl
    # after stopping it: export the journal's day and run the same strategy on it
    .venv/bin/python -m bridge.nautilus export --journal DIR --day YYYY-MM-DD --catalog CAT
    .venv/bin/python examples/nautilus/sma_strategy.py backtest --catalog CAT --symbols SPY,SH --decisions backtest.jsonl

``live`` takes its defaults from the launcher's ``BARBRIDGE_FIFO``, ``BARBRIDGE_JOURNAL``,
``BARBRIDGE_STATUS_FILE`` and ``BARBRIDGE_SYMBOLS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Any, Optional

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType, InstrumentStatus
from nautilus_trader.trading.strategy import Strategy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's bridge/ when run as a script


class SmaSignalConfig(StrategyConfig, frozen=True):  # type: ignore[call-arg]  # msgspec Struct option
    bar_types: tuple[str, ...]
    window: int = 3
    decisions_path: Optional[str] = None
    history_from: Optional[str] = None  # ISO time: request_bars from then on start (answered from the journal)


class SmaSignal(Strategy):
    """Close against the mean of the last ``window`` closes, per instrument, at each new minute."""

    def __init__(self, config: SmaSignalConfig) -> None:
        super().__init__(config)
        self.window = config.window
        self.closes: dict[str, dict[int, float]] = {}
        self.records: list[dict[str, Any]] = []
        self._out: Optional[IO[str]] = None

    def on_start(self) -> None:
        cfg: SmaSignalConfig = self.config  # type: ignore[assignment]
        if cfg.decisions_path == "-":
            self._out = sys.stdout
        elif cfg.decisions_path:
            self._out = open(cfg.decisions_path, "a", encoding="utf-8")
        for s in cfg.bar_types:
            bt = BarType.from_str(s)
            self.subscribe_bars(bt)
            self.subscribe_instrument_status(bt.instrument_id)
            if cfg.history_from:
                import pandas as pd
                from nautilus_trader.model.identifiers import ClientId

                self.request_bars(bt, start=pd.Timestamp(cfg.history_from).to_pydatetime(), client_id=ClientId("BARBRIDGE"))

    def on_stop(self) -> None:
        if self._out is not None and self._out is not sys.stdout:
            self._out.close()
        self._out = None

    def _record(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if self._out is not None:
            self._out.write(json.dumps(rec) + "\n")
            self._out.flush()

    def on_bar(self, bar: Bar) -> None:
        key = str(bar.bar_type.instrument_id)
        closes = self.closes.setdefault(key, {})
        minute = bar.ts_event
        if bar.is_revision:
            if minute in closes:
                closes[minute] = float(bar.close)
            self._record({"kind": "revision", "instrument": key, "minute": minute, "close": float(bar.close)})
            return
        closes[minute] = float(bar.close)
        for old in sorted(closes)[:-self.window]:
            del closes[old]
        if len(closes) < self.window:
            return
        sma = sum(closes.values()) / len(closes)
        close = float(bar.close)
        decision = "above" if close > sma + 1e-9 else "below" if close < sma - 1e-9 else "flat"
        self._record({"kind": "decision", "instrument": key, "minute": minute, "decision": decision,
                      "close": close, "sma": round(sma, 6)})

    def on_historical_data(self, data: Any) -> None:
        if isinstance(data, Bar):
            self._record({"kind": "history", "instrument": str(data.bar_type.instrument_id), "minute": data.ts_event,
                          "close": float(data.close)})

    def on_instrument_status(self, data: InstrumentStatus) -> None:
        self._record({"kind": "status", "instrument": str(data.instrument_id), "action": data.action.name,
                      "minute": data.ts_event, "reason": data.reason})


def _bar_types(symbols: list[str], venue: str) -> tuple[str, ...]:
    from bridge.nautilus.common import bar_type, instrument_id

    return tuple(str(bar_type(instrument_id(s, venue))) for s in symbols)


def run_live(a: argparse.Namespace) -> int:
    from nautilus_trader.config import LoggingConfig, TradingNodeConfig
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.identifiers import TraderId

    from bridge.nautilus import BARBRIDGE, BarbridgeDataClientConfig, BarbridgeLiveDataClientFactory
    from bridge.nautilus.data import CONNECT_ERRORS

    symbols = [s for s in a.symbols.split(",") if s]
    client = BarbridgeDataClientConfig(symbols=tuple(symbols), venue=a.venue, fifo=a.fifo, journal=a.journal,
                                       status_file=a.status_file, nats_url=a.nats_url, nats_durable=a.nats_durable,
                                       nats_user=a.nats_user, nats_password_file=a.nats_password_file,
                                       backfill_rest=a.backfill_rest, alpaca_data_url=a.alpaca_data_url)
    node = TradingNode(TradingNodeConfig(trader_id=TraderId("BARBRIDGE-001"), logging=LoggingConfig(log_level=a.log_level),
                                         data_clients={BARBRIDGE: client}))
    node.trader.add_strategy(SmaSignal(SmaSignalConfig(bar_types=_bar_types(symbols, a.venue), window=a.window,
                                                       decisions_path=a.decisions, history_from=a.history_from)))
    node.add_data_client_factory(BARBRIDGE, BarbridgeLiveDataClientFactory)
    node.build()
    try:
        node.run()  # until SIGINT/SIGTERM
    finally:
        node.dispose()
    if CONNECT_ERRORS:
        print(f"sma_strategy: {CONNECT_ERRORS[0]}", file=sys.stderr)
        return 2
    return 0


def run_backtest(a: argparse.Namespace) -> int:
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    from bridge.nautilus.history import catalog_bars

    symbols = [s for s in a.symbols.split(",") if s]
    bar_types = _bar_types(symbols, a.venue)
    cat = ParquetDataCatalog(a.catalog)
    engine = BacktestEngine(BacktestEngineConfig(trader_id=TraderId("BACKTESTER-001"),
                                                 logging=LoggingConfig(log_level=a.log_level)))
    engine.add_venue(Venue(a.venue), oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                     starting_balances=[Money(1_000_000, USD)], base_currency=None)  # multi-currency: pairs too
    wanted = {BarType.from_str(b).instrument_id for b in bar_types}
    for inst in cat.instruments():
        if inst.id in wanted:
            engine.add_instrument(inst)
    engine.add_data(catalog_bars(Path(a.catalog), [BarType.from_str(b) for b in bar_types]), sort=False)
    statuses = [s for s in cat.query(InstrumentStatus) if s.instrument_id in wanted]
    if statuses:
        engine.add_data(statuses)
    strategy = SmaSignal(SmaSignalConfig(bar_types=bar_types, window=a.window, decisions_path=a.decisions))
    engine.add_strategy(strategy)
    engine.run()
    engine.dispose()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="mode", required=True)
    live = sub.add_parser("live", help="run on a TradingNode fed by barbridge")
    live.add_argument("--fifo", default=env("BARBRIDGE_FIFO"))
    live.add_argument("--journal", default=env("BARBRIDGE_JOURNAL"))
    live.add_argument("--status-file", default=env("BARBRIDGE_STATUS_FILE"))
    live.add_argument("--nats-url")
    live.add_argument("--nats-durable")
    live.add_argument("--nats-user")
    live.add_argument("--nats-password-file")
    live.add_argument("--history-from", help="ISO time: request_bars from then at start (the journal answers)")
    live.add_argument("--backfill-rest", action="store_true", help="request_bars: minutes the journal lacks from REST")
    live.add_argument("--alpaca-data-url", default=env("ALPACA_DATA_URL"))
    bt = sub.add_parser("backtest", help="run on a BacktestEngine over an exported catalog")
    bt.add_argument("--catalog", required=True)
    for p in (live, bt):
        p.add_argument("--symbols", default=env("BARBRIDGE_SYMBOLS", "SPY"))
        p.add_argument("--venue", default="ALPACA")
        p.add_argument("--window", type=int, default=3)
        p.add_argument("--decisions", default="-", help="append each decision as a JSON line to this file (default: stdout)")
        p.add_argument("--log-level", default="WARNING")
    a = ap.parse_args(argv)
    from bridge.nautilus.common import MappingError

    try:
        return run_live(a) if a.mode == "live" else run_backtest(a)
    except (MappingError, ValueError) as e:  # a symbol, precision or source NautilusTrader cannot take
        print(f"sma_strategy: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
