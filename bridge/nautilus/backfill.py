"""``request_bars``' REST fallback: the minutes the journal lacks, from Alpaca's REST history
(``backfill_rest=True``), through the sidecar's own backfill path: the same alpaca-py request
(``StockBarsRequest`` / ``CryptoBarsRequest``, raw data) and ``barbridge.Publisher.submit_backfill``
(the Rust normaliser, validation and dedupe) into a throwaway ``Consumer``. The bars answer the
request only: they are not journaled (the journal stays what the live feed delivered) and not
delivered as live bars."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Optional

import barbridge

from bridge.config import credentials_from_env

from .common import MappingError, is_crypto


def rest_bars(symbol: str, from_ms: int, to_ms: int, data_url: Optional[str], feed: str = "iex") -> list[dict[str, Any]]:
    """``symbol``'s REST minute bars with ``from_ms <= timestamp_ms < to_ms`` (wire field names).
    Credentials: the sidecar's variables (``ALPACA_API_KEY``/``ALPACA_SECRET_KEY``, ...)."""
    from alpaca.data.enums import CryptoFeed, DataFeed
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
    from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    creds = credentials_from_env(os.environ)
    start = dt.datetime.fromtimestamp(from_ms / 1000, dt.timezone.utc)
    end = dt.datetime.fromtimestamp((to_ms - 1) / 1000, dt.timezone.utc)
    raw: Any
    if is_crypto(symbol):
        key, secret = (creds.api_key, creds.secret_key) if creds else (None, None)
        cc = CryptoHistoricalDataClient(key, secret, raw_data=True, url_override=data_url)
        raw = cc.get_crypto_bars(CryptoBarsRequest(symbol_or_symbols=[symbol], timeframe=TimeFrame.Minute, start=start,
                                                   end=end), feed=CryptoFeed.US)
    else:
        if creds is None:
            raise MappingError("REST history for request_bars needs Alpaca credentials (ALPACA_API_KEY and ALPACA_SECRET_KEY)")
        sc = StockHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True, url_override=data_url)
        raw = sc.get_stock_bars(StockBarsRequest(symbol_or_symbols=[symbol], timeframe=TimeFrame.Minute,
                                                 feed=DataFeed(feed), start=start, end=end))
    c = barbridge.Consumer(capacity_per_symbol=1 << 20, symbols=[symbol])
    try:
        pub = barbridge.Publisher(c)
        mark = pub.mark()
        for b in (raw or {}).get(symbol, []):
            pub.submit_backfill(symbol, b, mark)
        return [dict(b.to_dict()) for b in c.range(symbol, from_ms, to_ms)]
    finally:
        c.close()


def fill(rows: list[dict[str, Any]], rest: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The journal's bars, and REST bars only for minutes the journal lacks; (bars in minute
    order, how many came from REST)."""
    have = {int(r["timestamp_ms"]) for r in rows}
    extra = [r for r in rest if int(r["timestamp_ms"]) not in have]
    return sorted(rows + extra, key=lambda r: int(r["timestamp_ms"])), len(extra)
