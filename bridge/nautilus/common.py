"""What a barbridge bar becomes in NautilusTrader: instrument ids, the bar type, instruments,
the precision rule and the per-instrument delivery order. One implementation, used by the live
data client (``data.py``) and by the journal export (``history.py``), so a backtest on an
exported catalog sees exactly the sequence the live node saw.

Mapping (README, "NautilusTrader"):

* a symbol becomes ``InstrumentId(SYMBOL, venue)`` (venue ``ALPACA`` by default); a symbol with
  ``/`` is a crypto pair (``CurrencyPair``, as in the consumer's ``src/asset.rs``), else a US
  equity (``Equity``, USD);
* a minute bar becomes a ``Bar`` of ``SYMBOL.ALPACA-1-MINUTE-LAST-EXTERNAL``; ``ts_event`` is the
  minute's **close** (the bar's ``timestamp_ms`` + 60 s: NautilusTrader stamps bars at their close,
  as its Databento adapter does), ``ts_init`` when the node received it;
* a bar for a minute at or before the latest minute already delivered for that instrument (an
  Alpaca updated bar, or a minute backfilled after a newer one arrived) is a ``Bar`` with
  ``is_revision=True``; every other bar has ``is_revision=False``, so the non-revision bars of an
  instrument come in strictly increasing minute order, each minute once;
* prices and volumes are never rounded: a value with more decimals than the instrument's
  precision is refused with one sentence (:class:`PrecisionError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarSpecification, BarType, InstrumentStatus
from nautilus_trader.model.enums import AggregationSource, BarAggregation, CurrencyType, MarketStatusAction, PriceType
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import CurrencyPair, Equity, Instrument
from nautilus_trader.model.objects import FIXED_PRECISION, Currency, Price, Quantity

BARBRIDGE = "BARBRIDGE"  # the data client's id
DEFAULT_VENUE = "ALPACA"
MINUTE_NS = 60_000_000_000
# Alpaca's stock trade prices: whole cents above $1, hundredths of a cent below (Reg NMS rule 612),
# and sub-penny midpoint executions at any price (e.g. 671.125): four decimals hold them all.
EQUITY_PRICE_PRECISION = 4
# Alpaca's crypto orders and quantities go to nine decimals; prices of small coins (SHIB/USD) need as
# many. Nine holds both without rounding (this build of NautilusTrader holds up to FIXED_PRECISION).
CRYPTO_PRICE_PRECISION = 9
CRYPTO_SIZE_PRECISION = 9

ONE_MINUTE_LAST = BarSpecification(1, BarAggregation.MINUTE, PriceType.LAST)

# The consumer's trading states (README, "Wire protocol": trading_status) as NautilusTrader actions.
STATUS_ACTIONS = {
    "halted": MarketStatusAction.HALT,
    "paused": MarketStatusAction.PAUSE,
    "quoting": MarketStatusAction.QUOTING,
    "trading": MarketStatusAction.TRADING,
}


class MappingError(ValueError):
    """A symbol, bar or journal NautilusTrader cannot take as it is; the message is one sentence."""


class PrecisionError(MappingError):
    """A bar value with more decimals than its instrument's precision (never rounded)."""


def is_crypto(symbol: str) -> bool:
    """``BTC/USD`` → True: the shape the consumer goes by (``src/asset.rs``)."""
    return "/" in symbol


def asset_class(symbol: str) -> str:
    return "crypto" if is_crypto(symbol) else "us_equity"


def instrument_id(symbol: str, venue: str = DEFAULT_VENUE) -> InstrumentId:
    """The instrument id of ``symbol``; :class:`MappingError` when NautilusTrader cannot represent it
    (its id or bar type would not read back as the same symbol)."""
    try:
        iid = InstrumentId(Symbol(symbol), Venue(venue))
        bt = bar_type(iid)
        if InstrumentId.from_str(str(iid)) != iid or BarType.from_str(str(bt)) != bt:
            raise ValueError("it does not read back as the same id")
    except (ValueError, TypeError) as e:
        raise MappingError(f"symbol {symbol!r} cannot be a NautilusTrader instrument on venue {venue!r}: {e}") from None
    return iid


def bar_type(iid: InstrumentId) -> BarType:
    """``SYMBOL.VENUE-1-MINUTE-LAST-EXTERNAL``."""
    return BarType(iid, ONE_MINUTE_LAST, AggregationSource.EXTERNAL)


@dataclass(frozen=True)
class Precisions:
    """Decimals of the instruments made for each asset class (README, "NautilusTrader")."""

    equity_price: int = EQUITY_PRICE_PRECISION
    crypto_price: int = CRYPTO_PRICE_PRECISION
    crypto_size: int = CRYPTO_SIZE_PRECISION

    def check(self) -> None:
        for name, p in (("equity_price", self.equity_price), ("crypto_price", self.crypto_price),
                        ("crypto_size", self.crypto_size)):
            if not 0 <= p <= FIXED_PRECISION:
                raise MappingError(f"precision {name}={p} is outside 0..{FIXED_PRECISION}, what this NautilusTrader holds")


def _currency(code: str, precision: int) -> Currency:
    known = Currency.from_str(code, strict=True)
    if known is not None:
        return known
    return Currency(code, precision, 0, code, CurrencyType.CRYPTO)


def make_instrument(symbol: str, venue: str = DEFAULT_VENUE, precisions: Precisions = Precisions(), ts: int = 0) -> Instrument:
    """An ``Equity`` (USD, lot 1) or, for ``BASE/QUOTE``, a ``CurrencyPair``."""
    iid = instrument_id(symbol, venue)
    if not is_crypto(symbol):
        p = precisions.equity_price
        return Equity(instrument_id=iid, raw_symbol=Symbol(symbol), currency=USD, price_precision=p,
                      price_increment=Price(10.0 ** -p, p), lot_size=Quantity.from_int(1), ts_event=ts, ts_init=ts)
    base, _, quote = symbol.partition("/")
    if not base or not quote or "/" in quote:
        raise MappingError(f"crypto symbol {symbol!r} is not BASE/QUOTE, so it cannot be a NautilusTrader currency pair")
    try:
        base_ccy = _currency(base, precisions.crypto_size)
        quote_ccy = _currency(quote, precisions.crypto_price)
    except (ValueError, TypeError) as e:
        raise MappingError(f"crypto symbol {symbol!r} cannot be a NautilusTrader currency pair: {e}") from None
    pp, sp = precisions.crypto_price, precisions.crypto_size
    return CurrencyPair(instrument_id=iid, raw_symbol=Symbol(symbol), base_currency=base_ccy, quote_currency=quote_ccy,
                        price_precision=pp, size_precision=sp, price_increment=Price(10.0 ** -pp, pp),
                        size_increment=Quantity(10.0 ** -sp, sp), ts_event=ts, ts_init=ts)


def decimals(value: float) -> int:
    """Decimals of the shortest text that reads back as ``value`` (what the source sent)."""
    exp = Decimal(repr(float(value))).normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 99


def to_bar(bar: Mapping[str, Any], instrument: Instrument, ts_init: int, is_revision: bool) -> Bar:
    """A NautilusTrader ``Bar`` from a barbridge bar (wire field names); :class:`PrecisionError`
    when a price or the volume has more decimals than ``instrument`` holds."""
    pp, sp = instrument.price_precision, instrument.size_precision
    sym, ts = bar["symbol"], int(bar["timestamp_ms"])
    for name, p in (("open", pp), ("high", pp), ("low", pp), ("close", pp), ("volume", sp)):
        v = float(bar[name])
        if decimals(v) > p:
            raise PrecisionError(
                f"{sym} bar of minute {ts} has {name} {v!r}, more decimals than {instrument.id}'s precision {p}: "
                f"refused, not rounded (raise the precision in the data client's config or the export's options)")
    ts_event = ts * 1_000_000 + MINUTE_NS
    return Bar(bar_type(instrument.id), Price(float(bar["open"]), pp), Price(float(bar["high"]), pp),
               Price(float(bar["low"]), pp), Price(float(bar["close"]), pp), Quantity(float(bar["volume"]), sp),
               ts_event, max(ts_init, 0), is_revision)


@dataclass
class Sequencer:
    """Per instrument, whether a bar is new or a revision (see the module's docstring). Keeps one
    integer per symbol."""

    last: dict[str, int] = field(default_factory=dict)

    def is_revision(self, symbol: str, timestamp_ms: int) -> bool:
        prev = self.last.get(symbol)
        if prev is not None and timestamp_ms <= prev:
            return True
        self.last[symbol] = timestamp_ms
        return False


def status_event(iid: InstrumentId, state: str, since_ms: int, code: str | None, reason: str | None,
                 ts_init: int) -> InstrumentStatus:
    """A consumer trading state (``halted``, ``paused``, ``quoting``, ``trading``) as an
    ``InstrumentStatus``."""
    action = STATUS_ACTIONS.get(state, MarketStatusAction.NOT_AVAILABLE_FOR_TRADING)
    return InstrumentStatus(iid, action, max(since_ms, 0) * 1_000_000, ts_init, reason=reason or None,
                            trading_event=code or None, is_trading=action == MarketStatusAction.TRADING)


def symbols_of(value: str | Sequence[str]) -> list[str]:
    """``"SPY,BTC/USD"`` or a list → the symbols, each checked by the wire's rule (the extension)."""
    import barbridge

    items = [s.strip() for s in (value.split(",") if isinstance(value, str) else value) if s.strip()]
    for s in items:
        barbridge.validate_symbol(s)
    return items
