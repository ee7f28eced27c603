"""Symbols changed while running: the real alpaca-py client (in the sidecar) against the fake
Alpaca server, the real FIFO and the real Rust consumer; and the launcher's --subscribe /
--unsubscribe against a running launcher."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from fake_alpaca import FakeAlpacaServer
from conftest import KEY, SECRET, wait_for
from test_scripts import LAUNCH, base_env, contiguous

from bridge import control_endpoint

MINUTE = 60_000


def by_symbol(bars: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for b in bars:
        out.setdefault(b["symbol"], {})[b["timestamp_ms"]] = b
    return out


def test_subscribe_and_unsubscribe_mid_stream(start_sidecar, start_consumer, fifo_path, tmp_path):
    srv = FakeAlpacaServer(symbols=("SPY", "SH", "QQQ"), interval=0.25, key=KEY, secret=SECRET, prefill=5,
                           page_size=7).start_in_thread()
    try:
        sock, state = fifo_path.parent / "control.sock", fifo_path.parent / "symbols.json"
        first = srv.epoch_ms - 5 * MINUTE  # the server's history starts here: the configured backfill start
        backfill_from = dt.datetime.fromtimestamp(first / 1000, dt.timezone.utc).isoformat()
        args = ["--symbols", "SPY,SH", "--control", str(sock), "--symbols-state", str(state),
                "--backfill-from", backfill_from]
        consumer = start_consumer(fifo_path)
        side = start_sidecar(fifo_path, *args, server=srv)
        wait_for(lambda: "status subscribed" in side.stderr() and sock.exists(), what="sidecar subscribed")
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        wait_for(lambda: len(by_symbol(consumer.bars()).get("SPY", {})) >= 12, what="SPY bars")
        assert "QQQ" not in by_symbol(consumer.bars())

        # refused requests change nothing and say why in one sentence
        bad = control_endpoint.request(sock, "subscribe", ["qqq"])
        assert not bad["ok"] and "'qqq' has lower-case letters" in bad["error"], bad
        bad = control_endpoint.request(sock, "unsubscribe", ["IWM"])
        assert not bad["ok"] and "IWM is not subscribed" in bad["error"], bad
        bad = control_endpoint.request(sock, "unsubscribe", ["SPY", "SH"])
        assert not bad["ok"] and "at least one" in bad["error"], bad
        assert not state.exists()

        # subscribe QQQ mid-stream: its history from the backfill start, then the stream, no hole
        ok = control_endpoint.request(sock, "subscribe", ["QQQ"])
        assert ok["ok"] and ok["added"] == ["QQQ"] and ok["symbols"] == ["SPY", "SH", "QQQ"], ok
        assert json.loads(state.read_text()) == {"symbols": ["SPY", "SH", "QQQ"]}
        subscribed_at = srv.data_minute()
        wait_for(lambda: max(by_symbol(consumer.bars()).get("QQQ", {0: None})) >= subscribed_at + 4 * MINUTE,
                 what="QQQ stream bars after the subscribe")
        assert "symbols changed live: +QQQ" in side.stderr()

        # unsubscribe SH: its bars stop
        ok = control_endpoint.request(sock, "unsubscribe", ["SH"])
        assert ok["ok"] and ok["removed"] == ["SH"] and ok["symbols"] == ["SPY", "QQQ"], ok
        unsubscribed_at = srv.data_minute()
        wait_for(lambda: max(by_symbol(consumer.bars())["SPY"]) >= unsubscribed_at + 12 * MINUTE,
                 what="12 more minutes of SPY")
        srv.inject("pause")
        hist = srv.snapshot_history()
        wait_for(lambda: by_symbol(consumer.bars())["SPY"].keys() >= hist["SPY"].keys(), what="every SPY bar")
        got = by_symbol(consumer.bars())
        counts: dict = {}
        for b in consumer.bars():
            counts[(b["symbol"], b["timestamp_ms"])] = counts.get((b["symbol"], b["timestamp_ms"]), 0) + 1
        assert [k for k, n in counts.items() if n > 1] == [], "a bar reached the consumer twice"
        # the others lost nothing: every SPY minute the server made, with its values
        assert sorted(got["SPY"]) == sorted(hist["SPY"])
        assert all(got["SPY"][t]["close"] == hist["SPY"][t]["c"] for t in hist["SPY"])
        # QQQ: every minute from the backfill start to the pause (backfill + stream, no hole)
        assert sorted(got["QQQ"]) == sorted(hist["QQQ"]) and min(got["QQQ"]) == first
        assert all(got["QQQ"][t]["close"] == hist["QQQ"][t]["c"] for t in hist["QQQ"])
        # SH: complete up to the unsubscribe, nothing long after it (a minute in flight may still come)
        last_sh = max(got["SH"])
        assert last_sh <= unsubscribed_at + 4 * MINUTE, (last_sh, unsubscribed_at)
        assert sorted(got["SH"]) == sorted(t for t in hist["SH"] if t <= last_sh)
        assert max(hist["SH"]) >= unsubscribed_at + 11 * MINUTE  # the server kept making SH bars

        # a restarted sidecar keeps the change (the supervisor's restarts pass the same state file)
        side.signal(15)
        assert side.wait(10) == 0
        srv.inject("resume")
        side2 = start_sidecar(fifo_path, *args, server=srv, name="sidecar2")
        wait_for(lambda: "status subscribed" in side2.stderr(), what="restarted sidecar subscribed")
        assert "symbols SPY,QQQ from" in side2.stderr()
        assert control_endpoint.request(sock, "symbols")["symbols"] == ["SPY", "QQQ"]
    finally:
        srv.stop()


def test_launcher_subscribe_reaches_the_running_launcher(tmp_path, consumer_bin):
    env = base_env(tmp_path, consumer_bin)
    cfg = tmp_path / "config.env"
    cfg.write_text("# empty: demo\n")

    def launch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(LAUNCH), "--config", str(cfg), "--run-dir", str(tmp_path / "runs"), *args],
                              env=env, capture_output=True, text=True, timeout=timeout)

    none = launch("--subscribe", "QQQ")
    assert none.returncode == 1 and "no launcher is running" in none.stderr, none.stderr

    out = open(tmp_path / "launcher.out", "wb")
    err = open(tmp_path / "launcher.err", "wb")
    lc = subprocess.Popen(["bash", str(LAUNCH), "--config", str(cfg), "--run-dir", str(tmp_path / "runs"),
                           "--symbols", "SPY,SH"], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                          start_new_session=True)
    try:
        def bars() -> list[dict]:
            files = sorted((tmp_path / "runs").glob("*/bars.jsonl"))
            lines = [json.loads(x) for x in files[-1].read_text().splitlines() if x.startswith("{")] if files else []
            return [b for b in lines if b.get("type") != "minute_closed"]

        wait_for(lambda: len(bars()) >= 6 and (tmp_path / "rt" / "control.sock").exists(), timeout=60,
                 what="demo bars and the control socket")
        r = launch("--subscribe", "QQQ,IWM")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "subscribed QQQ,IWM; symbols now SPY,SH,QQQ,IWM" in r.stdout, r.stdout
        at = max(b["timestamp_ms"] for b in bars())
        wait_for(lambda: sum(b["symbol"] == "QQQ" for b in bars()) >= 3, timeout=30, what="QQQ bars")
        bad = launch("--unsubscribe", "NOPE")
        assert bad.returncode == 2 and "NOPE is not subscribed" in bad.stderr, bad.stderr
        r = launch("--unsubscribe", "SH")
        assert r.returncode == 0 and "unsubscribed SH" in r.stdout, r.stdout + r.stderr
        gone = max(b["timestamp_ms"] for b in bars())
        wait_for(lambda: max(b["timestamp_ms"] for b in bars()) >= gone + 12 * MINUTE, timeout=30,
                 what="12 more minutes")
        got = bars()  # SH stops (a minute or two in flight through the FIFO may still come)
        assert max(b["timestamp_ms"] for b in got if b["symbol"] == "SH") <= gone + 5 * MINUTE
        assert contiguous(got)["SPY"] == [] and contiguous(got)["QQQ"] == []  # no hole, none for the others
        assert min(b["timestamp_ms"] for b in got if b["symbol"] == "QQQ") <= at + 6 * MINUTE
        st = launch("--status")
        assert "symbols SPY,QQQ,IWM (changed live; configured SPY,SH)" in st.stdout, st.stdout
        wait_for(lambda: "symbols changed live: now SPY,QQQ,IWM" in (tmp_path / "launcher.err").read_text(),
                 timeout=10, what="the launcher's log line")
        lc.terminate()
        assert lc.wait(30) == 0
        assert not (tmp_path / "rt" / "symbols.live.json").exists()
    finally:
        if lc.poll() is None:
            lc.kill()
            lc.wait(10)
        out.close()
        err.close()
