"""The fake server's crypto side: Alpaca's crypto endpoints and what makes a crypto bar.

* websocket ``/v1beta3/crypto/us`` (alpaca-py's ``CryptoDataStream``, ``CryptoFeed.US``): the same
  msgpack protocol, auth and faults as the stock paths;
* REST ``GET /v1beta3/crypto/us/bars?symbols=BTC/USD,...`` (``CryptoHistoricalDataClient``): the
  same answer shape as ``/v2/stocks/bars``; keys optional (Alpaca serves crypto bars without
  them), but wrong keys are refused.

A symbol with ``/`` is a crypto pair, as in the consumer (``src/asset.rs``). Pairs trade around
the clock: the server has no session, so every data minute has a bar (unless ``no_trade_prob``),
with a fractional volume, on whatever day the data clock (``--epoch-ms``/``--epoch-wall``) shows,
across midnight UTC too.
"""

from __future__ import annotations

CRYPTO_STREAM_PATH = "/v1beta3/crypto/us"
CRYPTO_BARS_PATH = "/v1beta3/crypto/us/bars"
DEFAULT_CRYPTO_SYMBOLS = ("BTC/USD", "ETH/USD")
BASE_PRICES = {"BTC/USD": 97_000.0, "ETH/USD": 3_600.0}


def is_pair(symbol: str) -> bool:
    """``BTC/USD`` → True (the shape the consumer goes by)."""
    return "/" in symbol


def fractional_volume(volume: float) -> float:
    """A crypto volume from the stock generator's whole-share count: coins traded, with six
    decimals (deterministic)."""
    return round(volume * 0.000731, 6)
