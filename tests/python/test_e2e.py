"""End to end: the real alpaca-py client (inside the sidecar) against the fake Alpaca server,
the real FIFO, and the real Rust consumer (`barbridge run --echo`)."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import pytest

from fake_alpaca import FakeAlpacaServer
from fake_alpaca.server import default_epoch_ms
from conftest import (KEY, PY, SECRET, Proc, check_delivery, delivered, sidecar_env, truth, values,
                      wait_for)

SYMS = ("SPY", "SH")
SYM_ARG = ["--symbols", ",".join(SYMS)]


def assert_no_secrets(*procs: Proc) -> None:
    for p in procs:
        for text in (p.stdout(), p.stderr()):
            assert SECRET not in text, f"secret leaked in {p.name} output"
            assert KEY not in text, f"full API key leaked in {p.name} output"


def stream_bars_seen(sidecar: Proc) -> int:
    st = sidecar.stats()
    return st[-1].get("received_stream", 0) if st else 0


def finish_and_check(server: FakeAlpacaServer, consumer, *, allow_repeats: bool = False, timeout: float = 25):
    server.inject("pause")
    expected = truth(server, SYMS)
    wait_for(lambda: delivered(consumer, expected), timeout=timeout,
             what=f"consumer to hold all {len(expected)} bars the server produced")
    check_delivery(consumer.bars(), expected, allow_repeats=allow_repeats)
    return expected


def test_pipe_end_to_end_with_corrections(start_sidecar, start_consumer, fifo_path, procs, tmp_path):
    srv = FakeAlpacaServer(symbols=SYMS, interval=0.25, key=KEY, secret=SECRET, prefill=5, page_size=3,
                           updated_every=3).start_in_thread()
    try:
        consumer = start_consumer(fifo_path)
        side = start_sidecar(fifo_path, *SYM_ARG, server=srv)
        wait_for(lambda: "status subscribed" in side.stderr(), what="sidecar subscribed")
        wait_for(lambda: srv.stats["updated_sent"] >= 4 and stream_bars_seen(side) >= 16, what="bars and updated bars")
        expected = finish_and_check(srv, consumer)
        # start-up backfill brought the history before the stream started (paginated REST)
        assert any(ts < srv._start_minute for (_, ts) in expected)
        assert srv.stats["rest_requests"] >= 2
        side.signal(signal.SIGTERM)
        assert side.wait(5) == 0
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(5) == 0
        assert " 0 seq gaps" in consumer.stderr(), consumer.stderr()[-500:]
        assert_no_secrets(side, consumer)
    finally:
        srv.stop()


FAULTS = {
    "close1000": (["close1000"], []),
    "close1011": (["close1011"], []),
    "tcp_drop": (["drop"], []),
    "mute_but_alive": (["mute:2.5"], ["--stale-after", "1"]),
    "http429_at_handshake": (["http429:2", "drop"], []),
    "limit406_for_a_while": (["limit406:2"], []),
    "auth402_once": (["auth402:1", "drop"], []),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_recovery(fault, fake_server, start_sidecar, start_consumer, fifo_path):
    actions, extra = FAULTS[fault]
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, *extra, server=fake_server)
    wait_for(lambda: "status subscribed" in side.stderr(), what="sidecar subscribed")
    wait_for(lambda: stream_bars_seen(side) >= 6, what="stream bars before the fault")
    subs_before = fake_server.stats["subscribes"]
    for a in actions:
        fake_server.inject(a)
    wait_for(lambda: fake_server.stats["subscribes"] > subs_before and fake_server.authenticated_clients() == 1,
             timeout=30, what="sidecar reconnected and resubscribed")
    produced = fake_server.stats["bars_sent"]
    wait_for(lambda: fake_server.stats["bars_sent"] >= produced + 6, what="bars after recovery")
    finish_and_check(fake_server, consumer)
    err = side.stderr()
    assert "status disconnected" in err or "status stale" in err
    if fault == "mute_but_alive":
        assert "status stale" in err
    if fault == "auth402_once":
        assert "status auth_failed" in err
    if fault == "limit406_for_a_while":
        assert "406 connection limit exceeded" in err
    if fault == "http429_at_handshake":
        assert "HTTP 429" in err
    wait_for(lambda: any(s.get("backfills", 0) >= 2 for s in side.stats()), what="backfill after reconnect")
    assert side.alive()
    assert_no_secrets(side, consumer)


def test_wrong_credentials_exit_3_with_one_sentence(fake_server, start_sidecar, fifo_path):
    side = start_sidecar(fifo_path, *SYM_ARG, server=fake_server,
                         env={"ALPACA_SECRET_KEY": "WRONG" + SECRET})
    assert side.wait(20) == 3
    last = side.stderr().strip().splitlines()[-1]
    assert last.startswith("barbridge-sidecar: error: Alpaca rejected the API key ****") and "402" in last
    assert "WRONG" + SECRET not in side.stderr() + side.stdout()
    assert_no_secrets(side)


def test_insufficient_subscription_exits_4(fake_server, start_sidecar, fifo_path):
    fake_server.inject("sub409")
    side = start_sidecar(fifo_path, *SYM_ARG, "--feed", "sip", server=fake_server)
    assert side.wait(20) == 4
    assert "409 insufficient subscription" in side.stderr().strip().splitlines()[-1]


def test_consumer_absent_at_start_then_appears(fake_server, start_sidecar, start_consumer, fifo_path):
    # without backfill the consumer must see exactly the streamed bars, in stream order
    side = start_sidecar(fifo_path, *SYM_ARG, "--no-backfill", server=fake_server)
    wait_for(lambda: stream_bars_seen(side) >= 10, what="bars streamed while no consumer exists")
    assert side.stats()[-1]["backlog"] > 0 and side.stats()[-1]["lines_written"] == 0
    consumer = start_consumer(fifo_path)
    wait_for(lambda: len(consumer.bars()) >= 12, what="backlog delivered")
    fake_server.inject("pause")
    first = min(b["timestamp_ms"] for b in consumer.bars())
    expected = {k: v for k, v in truth(fake_server, SYMS).items() if k[1] >= first}
    wait_for(lambda: delivered(consumer, expected), what="every streamed bar")
    check_delivery(consumer.bars(), expected)
    for sym in SYMS:
        ts = [b["timestamp_ms"] for b in consumer.bars() if b["symbol"] == sym]
        assert ts == sorted(ts), f"{sym} bars out of order"


def test_consumer_killed_and_restarted(fake_server, start_sidecar, start_consumer, fifo_path):
    c1 = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, server=fake_server)
    wait_for(lambda: len(c1.bars()) >= 20, what="first consumer receives bars")
    c1.signal(signal.SIGKILL)
    c1.wait(5)
    n = stream_bars_seen(side)
    wait_for(lambda: stream_bars_seen(side) >= n + 8, what="bars while the consumer is dead")
    c2 = start_consumer(fifo_path)
    fake_server.inject("pause")
    expected = truth(fake_server, SYMS)
    got = lambda: {(b["symbol"], b["timestamp_ms"]): values(b) for b in c1.bars() + c2.bars()}
    wait_for(lambda: all(got().get(k) == v for k, v in expected.items()), what="nothing lost across the restart")
    check_delivery(c1.bars() + c2.bars(), expected, allow_repeats=True)
    check_delivery([b for b in c2.bars()], {k: v for k, v in expected.items()
                                            if k in {(b["symbol"], b["timestamp_ms"]) for b in c2.bars()}})


def test_full_pipe_does_not_stall_the_stream(fake_server, start_sidecar, start_consumer, fifo_path):
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, "--pipe-size", "4096", server=fake_server)
    wait_for(lambda: len(consumer.bars()) >= 6, what="bars flowing")
    consumer.signal(signal.SIGSTOP)  # a consumer that stops reading
    # The 4 KiB pipe may have been full for a moment before the stop and drained since: wait for lines
    # to back up in the writer (the pipe full now), then for the stream to go on regardless.
    wait_for(lambda: side.stats() and side.stats()[-1]["pipe_full"] > 0 and side.stats()[-1]["backlog"] > 0,
             what="the pipe fills up and lines wait in the writer's backlog")
    n = stream_bars_seen(side)
    wait_for(lambda: stream_bars_seen(side) >= n + 12, what="the stream keeps receiving while the pipe is full")
    assert side.stats()[-1]["backlog"] > 0
    assert fake_server.stats["connections"] == 1, "no reconnect: pings were answered the whole time"
    consumer.signal(signal.SIGCONT)
    finish_and_check(fake_server, consumer)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("with_consumer", [True, False], ids=["consumer", "no-consumer"])
def test_signal_stops_within_5s(sig, with_consumer, fake_server, start_sidecar, start_consumer, fifo_path):
    if with_consumer:
        start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, server=fake_server)
    wait_for(lambda: stream_bars_seen(side) >= 2, what="streaming")
    t0 = time.monotonic()
    side.signal(sig)
    assert side.wait(5) == 0
    assert time.monotonic() - t0 < 5
    assert_no_secrets(side)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fake_server_killed_and_restarted_loses_nothing(start_sidecar, start_consumer, fifo_path, procs, tmp_path):
    port = _free_port()
    # Both servers serve the same history: the same data clock, behind the wall clock (a consumer
    # refuses bars from the future).
    epoch_wall = time.time()
    epoch = default_epoch_ms(SYMS, 0.25, 5, epoch_wall)

    def server(name: str, prefill: int) -> Proc:
        p = Proc([PY, "-m", "fake_alpaca", "--port", str(port), "--interval", "0.25",
                  "--symbols", ",".join(SYMS), "--key", KEY, "--secret", SECRET, "--epoch-ms", str(epoch),
                  "--epoch-wall", repr(epoch_wall), "--prefill", str(prefill)], tmp_path, name, env=sidecar_env())
        procs.append(p)
        wait_for(lambda: "FAKE_ALPACA_DATA_URL=" in p.stdout(), what=f"{name} up")
        return p

    def history() -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/stocks/bars?symbols={','.join(SYMS)}&limit=10000",
                                     headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
        import json
        body = json.load(urllib.request.urlopen(req, timeout=5))
        from bridge.protocol import _ts_to_ms
        return {(s, _ts_to_ms(b["t"])):
                (float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]), float(b["v"]), float(b["vw"]), int(b["n"]))
                for s, bars in body["bars"].items() for b in bars}

    s1 = server("fake1", 5)
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, "--stream-url", f"ws://127.0.0.1:{port}/v2/iex",
                         "--data-url", f"http://127.0.0.1:{port}")
    wait_for(lambda: stream_bars_seen(side) >= 8, what="streaming from the first server")
    before = history()
    s1.signal(signal.SIGKILL)
    s1.wait(5)
    time.sleep(1.0)  # a real outage: the sidecar retries meanwhile (not an assertion)
    s2 = server("fake2", 400)  # the restarted server's history covers the outage
    wait_for(lambda: side.stderr().count("status subscribed") >= 2, timeout=30, what="resubscribed to the new server")
    wait_for(lambda: stream_bars_seen(side) >= 20, what="streaming from the second server")
    urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/fault?action=pause", timeout=5).read()
    after = history()
    first_seen = min(ts for (_, ts) in before)
    expected = {**{k: v for k, v in after.items() if k[1] >= first_seen}, **before}
    assert all(after.get(k, v) == v for k, v in before.items()), "restarted server serves identical history"
    wait_for(lambda: delivered(consumer, expected), timeout=25, what="every bar of both servers delivered")
    got = {(b["symbol"], b["timestamp_ms"]) for b in consumer.bars()}
    assert got >= set(expected)
    assert_no_secrets(side, consumer, s2)


def test_connection_limit_that_persists_exits_5(fake_server, start_sidecar, fifo_path):
    fake_server.inject("limit406:600")
    side = start_sidecar(fifo_path, *SYM_ARG, "--conn-limit-timeout", "1.5", server=fake_server)
    assert side.wait(20) == 5
    assert "406 connection limit exceeded" in side.stderr().strip().splitlines()[-1]
    assert side.stderr().count("Alpaca refused the connection (406") == 1, "one clear line, not one per retry"


def test_flapping_is_reported(fake_server, start_sidecar, start_consumer, fifo_path):
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, *SYM_ARG, "--stream-url", fake_server.ws_url)  # data URL derived from it
    wait_for(lambda: "status subscribed" in side.stderr(), what="subscribed")
    for i in range(4):
        subs = fake_server.stats["subscribes"]
        fake_server.inject("drop")
        wait_for(lambda subs=subs: fake_server.stats["subscribes"] > subs, what=f"reconnect {i + 1}")
    wait_for(lambda: "flapping: 4 reconnects" in side.stderr(), what="flap detection")
    finish_and_check(fake_server, consumer)
