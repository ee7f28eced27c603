"""Configuration of the barbridge data client (NautilusTrader's ``LiveDataClientConfig``)."""

from __future__ import annotations

from nautilus_trader.config import LiveDataClientConfig

from .common import CRYPTO_PRICE_PRECISION, CRYPTO_SIZE_PRECISION, DEFAULT_VENUE, EQUITY_PRICE_PRECISION


class BarbridgeDataClientConfig(LiveDataClientConfig, frozen=True):  # type: ignore[call-arg]  # msgspec Struct option
    """Where the node reads barbridge, and what it makes of the symbols.

    Exactly one source:

    * ``fifo``: the node is the FIFO's consumer (the launcher's ``CONSUMER_CMD``): a Rust
      ``FifoReader`` with ``journal`` and ``status_file``, so the journal, cursor and
      acknowledgements keep every bar exactly once through restarts (README, "Exactly once");
    * ``nats_url``: a subscriber of the JetStream stream ``barbridge run --publish`` fills (a
      durable pull consumer, ``nats_durable``), on this host or another.

    ``symbols``: the US equities (``SPY``) and crypto pairs (``BTC/USD``) the instrument provider
    makes; bars of other symbols are stored and journaled (the journal stays complete) but not
    delivered (counted in ``unconfigured``, logged once per symbol).
    Precisions: see README, "NautilusTrader" (a bar with more decimals is refused, never rounded).
    ``backfill_rest``: ``request_bars`` takes the minutes the journal lacks from Alpaca's REST
    history (``alpaca_data_url``, ``alpaca_feed``; the sidecar's credential variables).
    """

    symbols: tuple[str, ...] = ()
    venue: str = DEFAULT_VENUE
    fifo: str | None = None
    journal: str | None = None
    status_file: str | None = None
    stale_after_secs: float = 120.0
    nats_url: str | None = None
    nats_durable: str | None = None
    nats_stream: str = "BARS"
    nats_feed: str = "iex"
    nats_user: str | None = None
    nats_password_file: str | None = None
    nats_creds: str | None = None
    nats_tls: bool = False
    nats_ca: str | None = None
    equity_price_precision: int = EQUITY_PRICE_PRECISION
    crypto_price_precision: int = CRYPTO_PRICE_PRECISION
    crypto_size_precision: int = CRYPTO_SIZE_PRECISION
    status_poll_secs: float = 0.5
    stop_node_on_error: bool = True  # a source that cannot be opened stops the node (SIGTERM to itself)
    backfill_rest: bool = False
    alpaca_data_url: str | None = None
    alpaca_feed: str = "iex"
