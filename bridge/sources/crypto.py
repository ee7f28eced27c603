"""Live crypto source: Alpaca's crypto bars through alpaca-py's ``CryptoDataStream`` (0.44).

Everything but the endpoints is the stock source (``alpaca.py``): the same observed-stream hooks
(connect, subscription, disconnect, whole frames to Rust), watchdog, reconnect accounting and REST
backfill. What differs:

* stream ``wss://stream.data.alpaca.markets/v1beta3/crypto/us`` (``CryptoFeed.US``), REST
  ``GET /v1beta3/crypto/us/bars`` through ``CryptoHistoricalDataClient``; both overridable
  (``--stream-url``, ``--data-url``; the fake server serves both, docs/ARCHITECTURE.md "Crypto");
* symbols are pairs (``BTC/USD``) and volumes fractional: the Rust validator takes both
  (``src/asset.rs``); nothing here parses a bar;
* crypto trades around the clock: staleness always counts (market hours ``always``) and a first
  backfill starts at the top of the UTC day, the journal day of a crypto bar.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Optional

from alpaca.data.enums import CryptoFeed
from alpaca.data.historical.crypto import CryptoHistoricalDataClient
from alpaca.data.live.crypto import CryptoDataStream
from alpaca.data.requests import CryptoBarsRequest
from alpaca.data.timeframe import TimeFrame

from .alpaca import AlpacaSource, _Observed

#: The crypto feed's name (``CryptoFeed.US``): the only one alpaca-py 0.44 knows.
CRYPTO_FEED = "us"
DAY_MS = 86_400_000


class _ObservedCryptoStream(_Observed, CryptoDataStream):
    """CryptoDataStream with the stock stream's hooks (``alpaca._Observed``)."""


class CryptoSource(AlpacaSource):
    """The Alpaca source on the crypto endpoints; ``market_hours`` is always ``always``."""

    asset = "crypto"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["feed"] = CRYPTO_FEED
        kwargs["market_hours"] = "always"
        kwargs["trading_statuses"] = False  # a crypto pair is never halted: Alpaca's crypto stream has no statuses
        super().__init__(*args, **kwargs)

    def parse_feed(self, feed: str) -> Any:
        return CryptoFeed(feed)

    def default_stream_url(self) -> str:
        return f"wss://stream.data.alpaca.markets/v1beta3/crypto/{self.feed.value}"

    def new_stream(self, websocket_params: dict[str, Any]) -> Any:
        return _ObservedCryptoStream(self.creds.api_key, self.creds.secret_key, raw_data=True, feed=self.feed,
                                     websocket_params=websocket_params, url_override=self.stream_url)

    def new_rest_client(self) -> Any:
        return CryptoHistoricalDataClient(self.creds.api_key, self.creds.secret_key, raw_data=True,
                                          url_override=self.data_url)

    def fetch_bars(self, symbols: list[str], start: dt.datetime, end: Optional[dt.datetime] = None,
                   rest: Any = None) -> Any:
        req = CryptoBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Minute, start=start, end=end)
        return (rest or self.rest).get_crypto_bars(req, feed=self.feed)

    def fresh_start_ms(self) -> int:
        """The top of the current UTC day: the start of the crypto journal day."""
        now = int(time.time() * 1000)
        return now - now % DAY_MS
