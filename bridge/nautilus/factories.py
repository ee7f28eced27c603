"""``BarbridgeLiveDataClientFactory``: ``node.add_data_client_factory("BARBRIDGE", ...)``."""

from __future__ import annotations

import asyncio

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.live.factories import LiveDataClientFactory

from .common import Precisions, symbols_of
from .config import BarbridgeDataClientConfig
from .data import BarbridgeDataClient
from .providers import BarbridgeInstrumentProvider


def provider_for(config: BarbridgeDataClientConfig) -> BarbridgeInstrumentProvider:
    """The instrument provider of ``config``'s symbols (MappingError: one sentence)."""
    precisions = Precisions(config.equity_price_precision, config.crypto_price_precision, config.crypto_size_precision)
    return BarbridgeInstrumentProvider(symbols_of(list(config.symbols)), config.venue, precisions,
                                       config.instrument_provider)


class BarbridgeLiveDataClientFactory(LiveDataClientFactory):
    """Makes a :class:`BarbridgeDataClient` from a :class:`BarbridgeDataClientConfig`."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: BarbridgeDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> BarbridgeDataClient:
        return BarbridgeDataClient(loop=loop, msgbus=msgbus, cache=cache, clock=clock,
                                   instrument_provider=provider_for(config), config=config, name=name)
