"""The fake Alpaca server's data clock stays in the present: a consumer refuses bars from the
future (`rejects{future_bar}`, issue 23), so no accelerated test clock may run ahead of the wall."""
from __future__ import annotations

import time

from fake_alpaca import FakeAlpacaServer
from fake_alpaca.server import MINUTE_MS, default_epoch_ms


def test_an_accelerated_data_clock_never_passes_the_wall_clock() -> None:
    # 6,000 data minutes per wall minute: it catches up with the wall clock within seconds.
    srv = FakeAlpacaServer(symbols=("SPY", "BTC/USD"), interval=0.01, prefill=3).start_in_thread()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            wall_ms = time.time() * 1000
            assert srv.produced_until + MINUTE_MS <= wall_ms, "a minute was produced before it ended"
            time.sleep(0.05)
        # It ran (accelerated, from its origin in the past) up to the present, and waits there.
        assert srv.produced_until + 3 * MINUTE_MS >= time.time() * 1000, srv.produced_until
    finally:
        srv.stop()


def test_the_default_origin_lies_in_the_past() -> None:
    now = time.time()
    for interval in (0.01, 0.25, 1.0, 60.0):
        epoch = default_epoch_ms(("SPY",), interval, 5, now)
        assert epoch <= now * 1000
        assert epoch % MINUTE_MS == 0
