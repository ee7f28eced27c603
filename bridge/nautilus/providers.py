"""Instruments for the configured symbols: ``Equity`` for US stocks, ``CurrencyPair`` for crypto."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import InstrumentProviderConfig
from nautilus_trader.model.identifiers import InstrumentId

from .common import DEFAULT_VENUE, Precisions, make_instrument


class BarbridgeInstrumentProvider(InstrumentProvider):
    """Makes one instrument per configured symbol (no venue lookup: Alpaca's bars say nothing
    about tick sizes, so the precisions are this adapter's, see :mod:`bridge.nautilus.common`).
    A symbol NautilusTrader cannot represent raises :class:`~bridge.nautilus.common.MappingError`
    at construction, before the node starts."""

    def __init__(self, symbols: Sequence[str], venue: str = DEFAULT_VENUE, precisions: Optional[Precisions] = None,
                 config: InstrumentProviderConfig | None = None) -> None:
        super().__init__(config=config)
        precisions = precisions or Precisions()
        precisions.check()
        self.venue = venue
        self.precisions = precisions
        self.by_symbol = {s: make_instrument(s, venue, precisions) for s in symbols}

    async def load_all_async(self, filters: dict[str, Any] | None = None) -> None:
        for inst in self.by_symbol.values():
            self.add(inst)

    async def load_ids_async(self, instrument_ids: list[InstrumentId], filters: dict[str, Any] | None = None) -> None:
        wanted = set(instrument_ids)
        for inst in self.by_symbol.values():
            if inst.id in wanted:
                self.add(inst)

    async def load_async(self, instrument_id: InstrumentId, filters: dict[str, Any] | None = None) -> None:
        await self.load_ids_async([instrument_id], filters)
