#!/usr/bin/env python3
"""Helper of scripts/chaos_demo.sh: compares a barbridge journal with the fake Alpaca server's history.

    chaos_check.py session                      # DATE OPEN_MS CLOSE_MS of the newest NYSE session before today (New York)
    chaos_check.py first-minute --data-url URL  # earliest minute (epoch ms) the server holds
    chaos_check.py verdict --journal DIR --data-url URL --since-ms MS --date D --barbridge BIN [--wait SECS]

``verdict`` waits (up to --wait s) for the journal to catch up, then prints one line and exits 0
when the union of DIR/bars-*.jsonl holds exactly the server's bars from --since-ms on (final
value per (symbol, minute), last line wins) and ``barbridge gaps --json`` reports exactly the
holes of the server's own history; otherwise 1, with the differences.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bar_values(bar: dict) -> tuple:
    """The values the consumer compares for dedupe/corrections (None: an absent optional field)."""
    vwap, count = bar.get("vwap"), bar.get("trade_count")
    return tuple(float(bar[f]) for f in ("open", "high", "low", "close", "volume")) + (
        None if vwap is None else float(vwap), None if count is None else int(count))


MINUTE = 60_000


def last_session_before_today() -> tuple[str, int, int]:
    today = dt.datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    best = None
    with open(REPO / "data" / "xnys_sessions.csv") as f:
        for row in csv.reader(line for line in f if not line.startswith("#")):
            if row[0] != "date" and row[0] < today:
                best = (row[0], int(row[1]), int(row[2]))
    if best is None:
        sys.exit("no NYSE session before today in data/xnys_sessions.csv")
    return best


def session_of(date: str) -> tuple[int, int]:
    with open(REPO / "data" / "xnys_sessions.csv") as f:
        for row in csv.reader(line for line in f if not line.startswith("#")):
            if row[0] == date:
                return int(row[1]), int(row[2])
    sys.exit(f"{date} is not a NYSE session day")


def server_history(data_url: str, symbols: str, key: str, secret: str) -> dict:
    out, token = {}, None
    while True:
        url = f"{data_url}/v2/stocks/bars?symbols={symbols}&limit=10000" + (f"&page_token={token}" if token else "")
        req = urllib.request.Request(url, headers={"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.load(r)
        for sym, bars in body["bars"].items():
            for b in bars:
                t = dt.datetime.fromisoformat(b["t"].replace("Z", "+00:00"))
                out[(sym, int(t.timestamp() * 1000))] = (float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]),
                                                         float(b["v"]), float(b["vw"]), int(b["n"]))
        token = body.get("next_page_token")
        if not token:
            return out


def read_journal(jdir) -> tuple[dict, dict]:
    """(final value per (symbol, minute): last line wins; {(key, value): times written})."""
    final: dict = {}
    versions: dict = {}
    for path in sorted(glob.glob(os.path.join(str(jdir), "bars-*.jsonl"))):
        with open(path, errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # being written right now
                try:
                    b = json.loads(line)
                except ValueError:
                    continue
                if b.get("type", "bar") not in ("bar", "updated_bar"):
                    continue
                key, v = (b["symbol"], int(b["timestamp_ms"])), bar_values(b)
                final[key] = v
                versions[(key, v)] = versions.get((key, v), 0) + 1
    return final, versions


def read_quiet(jdir) -> set:
    """(symbol, minute) pairs the sidecar's REST confirmation marked quiet (``minute_quiet``)."""
    out: set = set()
    for path in sorted(glob.glob(os.path.join(str(jdir), "bars-*.jsonl"))):
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("type") == "minute_quiet":
                    out |= {(s, int(r["minute_ms"])) for s in r.get("quiet", [])}
    return out


def holes_of(minutes, open_ms: int, close_ms: int) -> list:
    m = sorted({t for t in minutes if open_ms <= t < close_ms})
    return [[a + MINUTE, (b - a) // MINUTE - 1] for a, b in zip(m, m[1:], strict=False) if b - a > MINUTE]


def verdict(a) -> int:
    expected = {k: v for k, v in server_history(a.data_url, a.symbols, a.key, a.secret).items() if k[1] >= a.since_ms}
    deadline = time.monotonic() + a.wait
    while True:
        final, versions = read_journal(a.journal)
        lines, doubled = sum(versions.values()), sum(1 for n in versions.values() if n > 1)
        if all(final.get(k) == v for k, v in expected.items()) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    missing = sorted(k for k in expected if k not in final)
    wrong = sorted(k for k in expected if k in final and final[k] != expected[k])
    extra = sorted(k for k in final if k not in expected)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if wrong:
        problems.append(f"{len(wrong)} with a wrong final value (e.g. {wrong[:3]})")
    if extra:
        problems.append(f"{len(extra)} the server never produced (e.g. {extra[:3]})")
    open_ms, close_ms = session_of(a.date)
    r = subprocess.run([a.barbridge, "gaps", "--journal", a.journal, "--date", a.date, "--json"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        problems.append(f"barbridge gaps failed: {r.stderr.strip()}")
    else:
        report = json.loads(r.stdout)
        # A minute REST confirmed quiet is no hole (README, "Every minute accounted for"); a quiet
        # mark must never hide a bar the server had.
        quiet = read_quiet(a.journal)
        hiding = sorted(k for k in quiet if k in expected)
        if hiding:
            problems.append(f"{len(hiding)} quiet mark(s) on minutes the server has a bar for (e.g. {hiding[:3]})")
        for g in report["symbols"]:
            covered = [t for (s, t) in expected if s == g["symbol"]] + [t for (s, t) in quiet if s == g["symbol"]]
            want = holes_of(covered, open_ms, close_ms)
            got = [[h["start_ms"], h["minutes"]] for h in g["holes"]]
            if got != want:
                problems.append(f"{g['symbol']}: gaps reports holes {got}, the server's history has {want}")
    src_holes = sum(len(holes_of([t for (s, t) in expected if s == sym], open_ms, close_ms))
                    for sym in a.symbols.split(","))
    if problems:
        print(f"VERDICT: FAIL - journal vs server ({len(expected)} bars): " + "; ".join(problems))
        return 1
    print(f"VERDICT: OK - the journal holds exactly the {len(expected)} bars the server produced (final values, "
          f"corrections applied; {lines} lines, {doubled} bar version(s) written more than once), and gaps shows "
          f"only the source's own {src_holes} hole(s)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("session")
    for name in ("first-minute", "verdict"):
        p = sub.add_parser(name)
        p.add_argument("--data-url", required=True)
        p.add_argument("--symbols", default="SPY,SH")
        p.add_argument("--key", default=os.environ.get("ALPACA_API_KEY", "FAKEKEY0000"))
        p.add_argument("--secret", default=os.environ.get("ALPACA_SECRET_KEY", "FAKESECRET0000"))
    v = sub.choices["verdict"]
    v.add_argument("--journal", required=True)
    v.add_argument("--since-ms", type=int, required=True)
    v.add_argument("--date", required=True)
    v.add_argument("--barbridge", default=str(REPO / "target" / "release" / "barbridge"))
    v.add_argument("--wait", type=float, default=20.0)
    a = ap.parse_args()
    if a.cmd == "session":
        print(*last_session_before_today())
        return 0
    if a.cmd == "first-minute":
        print(min(ts for _, ts in server_history(a.data_url, a.symbols, a.key, a.secret)))
        return 0
    return verdict(a)


if __name__ == "__main__":
    sys.exit(main())
