"""barbridge as NautilusTrader's Alpaca market-data client (the optional extra ``nautilus``:
``pip install barbridge[nautilus]``; README, "NautilusTrader").

Layout as NautilusTrader's own adapters: ``config`` (:class:`BarbridgeDataClientConfig`),
``providers`` (:class:`BarbridgeInstrumentProvider`), ``data`` (:class:`BarbridgeDataClient`, a
``LiveMarketDataClient``), ``factories`` (:class:`BarbridgeLiveDataClientFactory`), ``common`` (the
mapping), ``history`` (journal → ``request_bars`` and the Parquet catalog export; the command
``python -m bridge.nautilus export``).
"""

from .common import BARBRIDGE, MappingError, PrecisionError
from .config import BarbridgeDataClientConfig
from .data import BarbridgeDataClient
from .factories import BarbridgeLiveDataClientFactory
from .providers import BarbridgeInstrumentProvider

__all__ = ["BARBRIDGE", "BarbridgeDataClient", "BarbridgeDataClientConfig", "BarbridgeInstrumentProvider",
           "BarbridgeLiveDataClientFactory", "MappingError", "PrecisionError"]
