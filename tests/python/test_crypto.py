"""Crypto, 24/7 (docs/ARCHITECTURE.md "Crypto"): the real alpaca-py crypto client inside the sidecar
(`--asset crypto`) against the fake server's crypto endpoints, side by side with a stock sidecar,
both writing into one FIFO read by one real `barbridge run --journal`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from fake_alpaca import FakeAlpacaServer
from conftest import KEY, SECRET, check_delivery, delivered, truth, wait_for

MIDNIGHT_MS = 1_759_968_000_000  # 2025-10-09 00:00 UTC (2025-10-08 20:00 in New York)
MINUTE_MS = 60_000
PAIRS = ("BTC/USD", "ETH/USD")


def journal_bars(path: Path) -> dict:
    """(symbol, timestamp_ms) → final volume in one journal day file; each version once."""
    final: dict = {}
    versions: set = set()
    for line in path.read_text().splitlines():
        b = json.loads(line)
        if b.get("type") == "minute_closed":
            continue
        key = (b["symbol"], b["timestamp_ms"], b["close"], b["volume"])
        assert key not in versions, f"{key} journaled twice in {path.name}"
        versions.add(key)
        final[(b["symbol"], b["timestamp_ms"])] = b["volume"]
    return final


def test_crypto_across_midnight_utc_beside_stocks_with_faults(start_sidecar, start_consumer, fifo_path, tmp_path,
                                                              consumer_bin):
    # Data minutes from 00:00 UTC minus 40 minutes, 4 a second: midnight comes about 10 s in. Faults
    # on every connection once both sidecars stream: a close 1000, then a TCP drop after midnight.
    srv = FakeAlpacaServer(symbols=("SPY", *PAIRS), interval=0.25, key=KEY, secret=SECRET, prefill=4, page_size=5,
                           updated_every=4, epoch_ms=MIDNIGHT_MS - 40 * MINUTE_MS, epoch_wall=time.time()
                           ).start_in_thread()
    try:
        journal = tmp_path / "journal"
        consumer = start_consumer(fifo_path, "--journal", str(journal))
        since = "2025-10-08T23:00:00Z"  # before the prefill: the start-up backfill brings it
        crypto = start_sidecar(fifo_path, "--asset", "crypto", "--symbols", ",".join(PAIRS), "--stream-url",
                               srv.crypto_ws_url, "--data-url", srv.data_url, "--backfill-from", since, name="crypto")
        stock = start_sidecar(fifo_path, "--symbols", "SPY", "--backfill-from", since, server=srv, name="stock")

        def subscribed(n: int) -> bool:
            return all(p.stderr().count("status subscribed") >= n for p in (crypto, stock))
        for n, fault, minute in ((1, "close1000", None), (2, "drop", MIDNIGHT_MS + 2 * MINUTE_MS),
                                 (3, None, MIDNIGHT_MS + 8 * MINUTE_MS)):
            wait_for(lambda n=n: subscribed(n), timeout=30, what=f"both sidecars subscribed ({n})")
            if minute is not None:
                wait_for(lambda m=minute: srv.produced_until >= m, timeout=30, what="the data clock")
            if fault:
                srv.inject(fault)
        srv.inject("pause")
        expected = truth(srv, ("SPY", *PAIRS))
        wait_for(lambda: delivered(consumer, expected), timeout=25,
                 what=f"consumer to hold all {len(expected)} bars the server produced")
        check_delivery(consumer.bars(), expected)
        assert any(k[1] < MIDNIGHT_MS for k in expected) and any(k[1] >= MIDNIGHT_MS for k in expected)
        assert any(b["volume"] != int(b["volume"]) for b in consumer.bars() if b["symbol"] in PAIRS), "fractional volumes"
        assert "/v1beta3/crypto/us" in crypto.stderr() and "crypto feed us" in crypto.stderr()
        for p in (crypto, stock):
            p.signal(signal.SIGTERM)
            assert p.wait(10) == 0, p.stderr()[-2000:]
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(10) == 0
        assert " 0 seq gaps" in consumer.stderr(), consumer.stderr()[-800:]

        # Journal: crypto per UTC day, stocks per New York day; every bar once, final versions.
        names = sorted(p.name for p in journal.glob("*.jsonl"))
        assert names == ["bars-2025-10-08.jsonl", "crypto-2025-10-08.jsonl", "crypto-2025-10-09.jsonl"], names
        before, after = (journal_bars(journal / f"crypto-2025-10-0{d}.jsonl") for d in (8, 9))
        want = {k: v[4] for k, v in expected.items() if k[0] in PAIRS}
        assert before == {k: v for k, v in want.items() if k[1] < MIDNIGHT_MS}
        assert after == {k: v for k, v in want.items() if k[1] >= MIDNIGHT_MS}
        assert journal_bars(journal / "bars-2025-10-08.jsonl") == {k: v[4] for k, v in expected.items() if k[0] == "SPY"}

        # gaps: the UTC day, every minute in session, no holes in what the server produced.
        out = subprocess.run([str(consumer_bin), "gaps", "--journal", str(journal), "--date", "2025-10-09",
                              "--symbols", ",".join(PAIRS), "--json"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["open_ms"] == MIDNIGHT_MS and "quiet minute" in report["note"]
        for g in report["symbols"]:
            assert g["holes"] == [] and g["before_first"] == 0, g
            assert g["bars"] == sum(1 for (s, ts) in want if s == g["symbol"] and ts >= MIDNIGHT_MS), g
    finally:
        srv.stop()


def test_crypto_asset_refuses_stock_symbols(start_sidecar, fifo_path):
    side = start_sidecar(fifo_path, "--asset", "crypto", "--symbols", "BTC/USD,SPY", fast=False)
    assert side.wait(20) == 2
    assert "ASSET=crypto streams pairs such as BTC/USD, not SPY" in side.stderr()


def test_asset_config_defaults_and_wrong_shapes():
    from bridge import config
    assert config.parse_asset(None) == "stock" and config.parse_asset(" Crypto ") == "crypto"
    assert config.parse_symbols(None, "crypto") == ["BTC/USD", "ETH/USD"]
    config.check_asset_symbols("crypto", ["BTC/USD", "ETH/USDT"])
    config.check_asset_symbols("stock", ["SPY", "BRK.B"])
    for asset, symbols, words in (("crypto", ["BTC/USD", "SPY"], "not SPY"), ("stock", ["BTC/USD"], "ASSET=crypto"),
                                  ("bonds", [], "must be stock or crypto")):
        try:
            config.check_asset_symbols(config.parse_asset(asset), symbols)
        except config.ConfigError as e:
            assert words in str(e)
        else:
            raise AssertionError(f"{asset} {symbols} accepted")
