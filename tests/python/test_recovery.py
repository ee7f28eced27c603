"""Issue 7 item 5: every recovery is idempotent, proven on the journal.

The full pipe (fake Alpaca server process → sidecar → FIFO → `barbridge run --journal`); the
consumer, the sidecar and the fake server are each SIGKILLed at a different moment and restarted
(the server on the same port with the same data clock, so it serves the same history). Then the
server's production is paused, everything drains, and the union of the journal files must hold
exactly the server's bars: every (symbol, minute) with its final value (last line per key wins,
so corrections count), nothing missing, nothing the server never produced; and `barbridge gaps`
reports exactly the holes the server's own history has (minutes without trades).

The data clock is placed in the most recent completed NYSE session before today (4 data minutes
per wall second), so `barbridge gaps` judges real session minutes on any day of the week.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
from typing import Optional
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo


from bridge.protocol import _ts_to_ms
from conftest import KEY, PY, REPO, SECRET, Proc, sidecar_env, wait_for

sys.path.insert(0, str(REPO / "scripts"))
from chaos_check import read_journal, read_quiet  # noqa: E402  (the same check scripts/chaos_demo.sh runs)

SYMS = ("SPY", "SH")
MINUTE = 60_000
INTERVAL = 0.25  # wall seconds per data minute
NY = ZoneInfo("America/New_York")


# ---------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_completed_session_before_today() -> tuple[str, int, int]:
    """(date, open_ms, close_ms) of the newest NYSE session dated before today in New York."""
    today = dt.datetime.now(NY).date().isoformat()
    best = None
    with open(REPO / "data" / "xnys_sessions.csv") as f:
        for row in csv.reader(line for line in f if not line.startswith("#")):
            if row[0] == "date":
                continue
            if row[0] < today:
                best = (row[0], int(row[1]), int(row[2]))
    assert best, "no NYSE session before today in data/xnys_sessions.csv"
    return best


def bar_values(b: dict) -> tuple:
    return (float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]), float(b["v"]), float(b["vw"]), int(b["n"]))


def holes_of(minutes, open_ms: int, close_ms: int) -> list[tuple[int, int]]:
    """(start_ms, minutes) of every run of missing minutes between the first and last bar of the
    session — the same definition as `barbridge gaps`."""
    m = sorted({t for t in minutes if open_ms <= t < close_ms})
    return [(a + MINUTE, (b - a) // MINUTE - 1) for a, b in zip(m, m[1:], strict=False) if b - a > MINUTE]


class FakeServerProc:
    """The fake Alpaca server as a process that can be SIGKILLed and restarted on the same
    port with the same data clock (identical deterministic history)."""

    def __init__(self, procs: list, workdir: Path, *, epoch_ms: int, epoch_wall: float) -> None:
        self.procs, self.workdir = procs, workdir
        self.port = free_port()
        self.epoch_ms, self.epoch_wall = epoch_ms, epoch_wall
        self.proc: Optional[Proc] = None
        self.starts = 0

    def data_minute(self) -> int:
        return self.epoch_ms + int((time.time() - self.epoch_wall) // INTERVAL) * MINUTE

    def start(self, prefill: int) -> None:
        self.starts += 1
        name = f"fake{self.starts}"
        p = Proc([PY, "-m", "fake_alpaca", "--port", str(self.port), "--interval", str(INTERVAL),
                  "--symbols", ",".join(SYMS), "--key", KEY, "--secret", SECRET, "--epoch-ms", str(self.epoch_ms),
                  "--epoch-wall", repr(self.epoch_wall), "--prefill", str(prefill), "--updated-every", "3",
                  "--no-trade-prob", "0.1"], self.workdir, name, env=sidecar_env())
        self.procs.append(p)
        self.proc = p
        wait_for(lambda: "FAKE_ALPACA_DATA_URL=" in p.stdout() or not p.alive(), timeout=30, what=f"{name} up")
        assert p.alive(), f"{name} failed to start:\n{p.stderr()[-2000:]}"

    def kill(self) -> None:
        assert self.proc is not None, "the fake server was never started"
        self.proc.signal(signal.SIGKILL)
        self.proc.wait(5)

    def _get(self, path: str, auth: bool = False):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET} if auth else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def fault(self, action: str) -> None:
        self._get(f"/_fake/fault?action={action}")

    def stats(self) -> dict:
        return self._get("/_fake/stats")

    def history(self) -> dict:
        """(symbol, ts) → values of every bar the server holds now (its final versions)."""
        out, token = {}, None
        while True:
            q = f"/v2/stocks/bars?symbols={','.join(SYMS)}&limit=10000" + (f"&page_token={token}" if token else "")
            body = self._get(q, auth=True)
            for sym, bars in body["bars"].items():
                for b in bars:
                    out[(sym, _ts_to_ms(b["t"]))] = bar_values(b)
            token = body.get("next_page_token")
            if not token:
                return out


def streamed(side: Proc) -> int:
    st = side.stats()
    return st[-1].get("received_stream", 0) if st else 0


def journal_keys(jdir: Path) -> int:
    return len(read_journal(jdir)[0])


# ---------------------------------------------------------------------------- the test

def test_kill_everything_journal_ends_exact(start_sidecar, start_consumer, fifo_path, procs, tmp_path, consumer_bin):
    t_start = time.monotonic()
    date, open_ms, close_ms = last_completed_session_before_today()
    epoch_ms = open_ms + 30 * MINUTE
    srv = FakeServerProc(procs, tmp_path, epoch_ms=epoch_ms, epoch_wall=time.time())
    jdir = tmp_path / "journal"
    backfill_from = dt.datetime.fromtimestamp(open_ms / 1000, dt.timezone.utc).isoformat()

    def sidecar(name: str) -> Proc:
        return start_sidecar(fifo_path, "--symbols", ",".join(SYMS), "--stream-url", f"ws://127.0.0.1:{srv.port}/v2/iex",
                             "--data-url", f"http://127.0.0.1:{srv.port}", "--backfill-from", backfill_from, name=name)

    srv.start(prefill=10)
    first_min = min(ts for _, ts in srv.history())
    c1 = start_consumer(fifo_path, "--journal", str(jdir))
    s1 = sidecar("sidecar1")
    wait_for(lambda: streamed(s1) >= 8 and journal_keys(jdir) >= 30, what="bars streamed and journaled")

    # 1. consumer SIGKILL; the stream goes on while it is dead; restart (the sidecar re-sends after EPIPE)
    c1.signal(signal.SIGKILL)
    c1.wait(5)
    n = streamed(s1)
    wait_for(lambda: streamed(s1) >= n + 8, what="bars streamed while the consumer is dead")
    c2 = start_consumer(fifo_path, "--journal", str(jdir))
    n = journal_keys(jdir)
    wait_for(lambda: journal_keys(jdir) >= n + 8, what="second consumer journals")

    # 2. sidecar SIGKILL: its backlog and socket die with it; the server keeps producing
    s1.signal(signal.SIGKILL)
    s1.wait(5)
    m = srv.data_minute()
    wait_for(lambda: srv.data_minute() >= m + 8 * MINUTE, what="minutes produced while no sidecar runs")
    s2 = sidecar("sidecar2")
    wait_for(lambda: "status subscribed" in s2.stderr(), what="second sidecar subscribed")
    wait_for(lambda: streamed(s2) >= 8, what="second sidecar streams")

    # 3. server SIGKILL (outage), restart on the same port/clock; its prefill covers the outage
    before = srv.history()
    subs = s2.stderr().count("status subscribed")
    srv.kill()
    wait_for(lambda: s2.stderr().count("status disconnected") >= 1, what="sidecar notices the dead server")
    m = srv.data_minute()
    wait_for(lambda: srv.data_minute() >= m + 6 * MINUTE, what="a few minutes of outage")
    srv.start(prefill=(srv.data_minute() - first_min) // MINUTE + 3)
    wait_for(lambda: s2.stderr().count("status subscribed") > subs, timeout=30, what="resubscribed to the new server")
    n = streamed(s2)
    wait_for(lambda: streamed(s2) >= n + 8, what="streaming from the restarted server")

    # 4. the consumer again, this time killed while bars are in flight and restarted at once
    c2.signal(signal.SIGKILL)
    c2.wait(5)
    c3 = start_consumer(fifo_path, "--journal", str(jdir))
    n = streamed(s2)
    wait_for(lambda: streamed(s2) >= n + 8, what="bars after the last consumer restart")

    # stop production, let everything drain
    srv.fault("pause")
    after = srv.history()
    assert set(before) <= set(after), "the restarted server serves the same minutes"
    # The restarted server's prefill reaches further back than the first server ever did:
    # minutes before the first server's first minute were never published, so they are not owed.
    expected = {k: v for k, v in after.items() if k[1] >= first_min}
    try:
        wait_for(lambda: all(read_journal(jdir)[0].get(k) == v for k, v in expected.items()), timeout=20,
                 what=f"the journal to hold all {len(expected)} bars the server produced")
    except AssertionError:
        pass  # the exact difference is asserted (and explained) below
    time.sleep(1.0)  # anything still in flight lands now (not an assertion: checked below)
    final, lines = read_journal(jdir)
    for k in sorted(k for k in expected if final.get(k) != expected[k])[:5]:
        print(f"DIFF {k} minute#{k[1] // MINUTE % 3} journal={final.get(k)} server={expected[k]} "
              f"first_server={before.get(k)}")

    missing = sorted(k for k in expected if k not in final)
    wrong = sorted(k for k in expected if k in final and final[k] != expected[k])
    extra = sorted(k for k in final if k not in expected)
    assert not missing, f"{len(missing)} bar(s) missing from the journal, e.g. {missing[:5]}"
    assert not wrong, f"{len(wrong)} bar(s) with a wrong final value, e.g. {[(k, final[k], expected[k]) for k in wrong[:3]]}"
    assert not extra, f"journal holds bar(s) the server never produced: {extra[:5]}"
    # every stale version in the journal is superseded (by position) — implied by `final` above;
    # and no bar version is written twice (a restarted consumer recognises re-sent bars):
    doubled = {k: n for k, n in lines.items() if n > 1}
    print(f"journal: {sum(lines.values())} lines, {len(final)} keys, {len(doubled)} bar version(s) written more than once")
    assert not doubled, f"{len(doubled)} bar version(s) journaled more than once, e.g. {list(doubled.items())[:3]}"

    # the gap report shows exactly the holes the source has (minutes without trades), no others
    r = subprocess.run([str(consumer_bin), "gaps", "--journal", str(jdir), "--date", date, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    report = {g["symbol"]: g for g in json.loads(r.stdout)["symbols"]}
    assert set(report) == set(SYMS)
    n_holes = 0
    # A minute the sidecar's REST confirmation marked quiet is no hole; a quiet mark never hides a
    # bar the server had (README, "Every minute accounted for").
    quiet = read_quiet(jdir)
    assert not [k for k in quiet if k in expected], "a quiet mark on a minute with a bar"
    for sym in SYMS:
        src_minutes = [ts for (s, ts) in expected if s == sym]
        want = holes_of(src_minutes + [t for (s, t) in quiet if s == sym], open_ms, close_ms)
        got = [(h["start_ms"], h["minutes"]) for h in report[sym]["holes"]]
        assert got == want, f"{sym}: gaps reports holes {got}, the server's history has {want}"
        assert report[sym]["bars"] == len({t for t in src_minutes if open_ms <= t < close_ms})
        n_holes += len(holes_of(src_minutes, open_ms, close_ms))  # the source's own (some confirmed quiet)
    assert n_holes > 0, "the source should have minutes without trades (no_trade_prob), else this check is vacuous"

    # each piece really was killed and restarted, and the sidecar backfilled after reconnecting
    assert srv.starts == 2 and not c1.alive() and not s1.alive()
    assert any(s.get("backfills", 0) >= 2 for s in s2.stats())
    assert c3.alive() and s2.alive()
    print(f"recovery test: {len(expected)} bars, {n_holes} source holes, {time.monotonic() - t_start:.1f} s")


def consumer_counters(c: Proc) -> dict:
    path = c.argv[c.argv.index("--status-file") + 1]
    try:
        return json.loads(Path(path).read_text())["health"]["counters"]
    except (OSError, ValueError, KeyError):
        return {}


def test_restarted_consumer_does_not_journal_a_known_bar_twice(start_consumer, fifo_path, tmp_path):
    """A consumer restarted on another New York day than its bars must not append them to that
    day's journal again. Real sequences: (a) consumer restarted after midnight while the sidecar
    still runs: after EPIPE the sidecar re-sends its last 4096 lines (yesterday's bars); (b) the
    sidecar (re)started before today's open backfills from the last session open = yesterday's
    session. Either way bars-YESTERDAY.jsonl gets every one of those bars twice."""
    date, open_ms, _ = last_completed_session_before_today()
    jdir = tmp_path / "journal"
    day_file = jdir / f"bars-{date}.jsonl"
    payload = "".join(json.dumps({"symbol": "SPY", "timestamp_ms": open_ms + i * MINUTE, "open": 1.0, "high": 1.2,
                                  "low": 0.9, "close": 1.1, "volume": 100, "vwap": 1.05, "trade_count": 3}) + "\n"
                      for i in range(5)).encode()

    def feed(c: Proc) -> None:
        wait_for(lambda: fifo_path.exists(), what="FIFO created")
        fd = os.open(fifo_path, os.O_WRONLY)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        wait_for(lambda: consumer_counters(c).get("bars_accepted", 0) + consumer_counters(c).get("duplicates", 0) >= 5,
                 what="the 5 bars taken (accepted or deduplicated)")

    c1 = start_consumer(fifo_path, "--journal", str(jdir), "--fsync", "always")
    feed(c1)
    assert day_file.read_text().count("\n") == 5
    c1.signal(signal.SIGKILL)
    c1.wait(5)
    c2 = start_consumer(fifo_path, "--journal", str(jdir), "--fsync", "always")
    feed(c2)
    assert day_file.read_text().count("\n") == 5, \
        f"{day_file.name} has {day_file.read_text().count(chr(10))} lines for 5 bars: the restart re-journaled them"


def test_backfill_answer_older_than_a_stream_correction_is_not_sent():
    """Sequence seen in test_e2e (paginated start-up backfill): REST page fetched with minute m
    original → stream delivers updatedBar m → backfill publishes its stale m, which the
    consumer applies as a correction: the final value went back to the uncorrected bar."""
    import barbridge

    consumer = barbridge.Consumer()
    pub = barbridge.Publisher(consumer)
    rest = lambda close: {"t": "2025-10-08T13:28:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": close, "v": 10, "vw": 1.0,
                          "n": 1}
    stream = lambda close: {"T": "b", "S": "SPY", **rest(close)}
    mark = pub.mark()  # REST request starts
    assert pub.submit_alpaca(stream(1.0))
    assert pub.submit_alpaca({**stream(1.5), "T": "u"})  # the stream's correction
    assert not pub.submit_backfill("SPY", rest(1.0), mark)  # the REST answer predates it
    assert consumer.latest("SPY").close == 1.5
    assert pub.submit_backfill("SPY", rest(1.7), pub.mark())  # a REST answer after the stream's bar
