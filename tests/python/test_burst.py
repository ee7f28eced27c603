"""A full-market minute: thousands of symbols' bars in one websocket frame per minute, through the
real sidecar (alpaca-py, the frame path) and FIFO into the real consumer, across a dropped
connection: every bar arrives exactly once, with its final value."""

from __future__ import annotations

import json

from fake_alpaca import FakeAlpacaServer, burst_symbols
from conftest import KEY, SECRET, check_delivery, delivered, truth, wait_for

N = 2_000


def stats_frames(sidecar) -> int:
    lines = [line for line in sidecar.stderr().splitlines() if " stats {" in line]
    return json.loads(lines[-1].split(" stats ", 1)[1])["frames"] if lines else 0


def test_burst_every_bar_exactly_once_through_a_reconnect(start_sidecar, start_consumer, fifo_path):
    symbols = burst_symbols(N)
    server = FakeAlpacaServer(symbols=symbols, interval=0.5, key=KEY, secret=SECRET, prefill=2, burst=True,
                              updated_every=3).start_in_thread()
    try:
        consumer = start_consumer(fifo_path)
        sidecar = start_sidecar(fifo_path, "--symbols", ",".join(symbols), server=server)

        def frames_sent() -> int:
            return server.call(lambda: len(server.burst_sent))

        wait_for(lambda: frames_sent() >= 3, timeout=60, what="three burst frames sent to the sidecar")
        server.inject("drop")  # the SDK reconnects and resubscribes; the sidecar backfills the gap
        before = frames_sent()
        wait_for(lambda: frames_sent() >= before + 3, timeout=60, what="three more burst frames after the reconnect")
        server.inject("pause")
        expected = truth(server, symbols)
        assert len(expected) >= 6 * N
        wait_for(lambda: delivered(consumer, expected), timeout=60, what="every bar in the consumer")
        check_delivery(consumer.bars(), expected)  # each bar version exactly once, none invented
        # and the minutes took the frame path (whole frames into Rust), before and after the reconnect
        wait_for(lambda: stats_frames(sidecar) >= 5, timeout=10, what="the sidecar's stats to count the frames")
    finally:
        server.stop()
