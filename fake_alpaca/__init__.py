"""A local stand-in for Alpaca's market-data stream and REST bars, for tests, demos and benchmarks.

Not part of the sidecar: it lives outside ``bridge/`` and is not packaged into the wheel. Run it with
``python -m fake_alpaca`` from the checkout; see :mod:`fake_alpaca.server` for the protocol and faults.
"""

from fake_alpaca.server import FakeAlpacaServer, burst_symbols

__all__ = ["FakeAlpacaServer", "burst_symbols"]
