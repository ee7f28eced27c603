"""The sidecar's command line: configuration errors, offline sources into the real consumer."""

from __future__ import annotations

import signal
import subprocess

from conftest import KEY, PY, REPO, SECRET, check_delivery, sidecar_env, values, wait_for


def run(args, env=None, timeout=30):
    return subprocess.run([PY, "-m", "bridge", *args], capture_output=True, text=True, timeout=timeout,
                          env=sidecar_env(env), cwd=REPO)


def one_sentence(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.startswith("barbridge-sidecar: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_empty_symbol_list_is_a_clear_error(fifo_path):
    r = run(["--symbols", " , ", "--fifo", str(fifo_path)])
    assert r.returncode == 2
    assert "symbol list is empty" in one_sentence(r.stderr)


def test_missing_credentials(fifo_path, tmp_path):
    env = {k: "" for k in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY")}
    r = run(["--fifo", str(fifo_path), "--config", str(tmp_path / "missing.env")], env=env)
    assert r.returncode == 2 and "does not exist" in one_sentence(r.stderr)
    r = subprocess.run([PY, "bridge/alpaca_websocket_bridge.py", "--fifo", str(fifo_path)], capture_output=True,
                       text=True, timeout=30, env=sidecar_env(env), cwd=tmp_path if False else REPO)
    assert r.returncode == 2 and "no Alpaca credentials" in one_sentence(r.stderr)


def test_credentials_from_config_env_and_never_printed(fifo_path, tmp_path, fake_server):
    cfg = tmp_path / "config.env"
    cfg.write_text(f"export ALPACA_PAPER_API_KEY={KEY}\nexport ALPACA_PAPER_SECRET_KEY=bad{SECRET}\n")
    env = {"ALPACA_API_KEY": "", "ALPACA_SECRET_KEY": ""}
    r = run(["--config", str(cfg), "--fifo", str(fifo_path), "--stream-url", fake_server.ws_url,
             "--data-url", fake_server.data_url, "--auth-retries", "1", "--reconnect-max", "0.3", "-v"], env=env)
    assert r.returncode == 3, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert SECRET not in out and KEY not in out and KEY[-4:] in out
    assert "preflight" not in out or "401" in out


def test_fifo_path_that_is_a_regular_file_is_refused(tmp_path):
    d = tmp_path / "p"
    d.mkdir(mode=0o700)
    f = d / "bars.fifo"
    f.write_text("")
    r = run(["--source", "synthetic", "--fifo", str(f), "--count", "1"])
    assert r.returncode == 2 and "not a FIFO" in one_sentence(r.stderr)


def test_synthetic_source_into_real_consumer(start_consumer, fifo_path, tmp_path):
    consumer = start_consumer(fifo_path)
    r = run(["--source", "synthetic", "--fifo", str(fifo_path), "--interval", "0.02", "--count", "25",
             "--seed", "7", "--symbols", "SPY,SPXL,SH,SDS", "--heartbeat", "0.2"])
    assert r.returncode == 0, r.stderr[-2000:]
    wait_for(lambda: len(consumer.bars()) == 100, what="100 synthetic bars")
    bars = consumer.bars()
    check_delivery(bars, {(b["symbol"], b["timestamp_ms"]): values(b) for b in bars})
    spy = [b for b in bars if b["symbol"] == "SPY"]
    assert all(b["low"] <= min(b["open"], b["close"]) and b["high"] >= max(b["open"], b["close"]) for b in spy)
    assert len({b["timestamp_ms"] for b in spy}) == 25
    assert all(b["timestamp_ms"] % 60000 == 0 for b in bars)


def test_replay_csv_and_jsonl_into_real_consumer(start_consumer, fifo_path, tmp_path):
    csv = tmp_path / "bars.csv"
    csv.write_text("symbol,timestamp,open,high,low,close,volume,vwap,trade_count\n"
                   "SPY,2025-10-08T13:28:00Z,671.2,671.5,671.1,671.4,18234,671.33,212\n"
                   "SPY,1759930140000,671.4,671.6,671.3,671.5,9000,671.45,100\n"
                   "SPY,1759930200000,671.4,671.0,671.3,671.5,9000,671.45,100\n"  # high < low: rejected
                   "SH,1759930080,36.1,36.2,36.0,36.1,500,36.1,5\n")
    jsonl = tmp_path / "bars.jsonl"
    jsonl.write_text('{"symbol":"SDS","timestamp_ms":1759930080000,"open":15,"high":15.1,"low":14.9,"close":15,"volume":7}\n'
                     "not json\n")
    consumer = start_consumer(fifo_path)
    for f in (csv, jsonl):
        r = run(["--source", "replay", "--replay-file", str(f), "--fifo", str(fifo_path), "--speed", "0"])
        assert r.returncode == 0, r.stderr[-2000:]
        assert "rejected" in r.stderr
    wait_for(lambda: len(consumer.bars()) == 4, what="4 valid replayed bars")
    got = {(b["symbol"], b["timestamp_ms"]) for b in consumer.bars()}
    assert got == {("SPY", 1759930080000), ("SPY", 1759930140000), ("SH", 1759930080000), ("SDS", 1759930080000)}


def test_fake_server_cli_prints_urls(tmp_path):
    p = subprocess.Popen([PY, "-m", "fake_alpaca", "--port", "0", "--interval", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=sidecar_env(), cwd=REPO)
    try:
        urls = dict(p.stdout.readline().strip().split("=", 1) for _ in range(3))
        port = urls["FAKE_ALPACA_DATA_URL"].removeprefix("http://127.0.0.1:")
        assert port.isdigit(), urls
        assert urls["FAKE_ALPACA_STREAM_URL"] == f"ws://127.0.0.1:{port}/v2/iex", urls
        assert urls["FAKE_ALPACA_CRYPTO_STREAM_URL"] == f"ws://127.0.0.1:{port}/v1beta3/crypto/us", urls
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 0
    finally:
        p.kill()
        p.wait()
