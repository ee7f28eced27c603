#!/usr/bin/env python3
"""Helpers for scripts/test_bridge.sh (stdlib only).

    bridge_check.py stamp OUT PIDFILE          stdin lines → OUT as "<wall seconds> <line>"
    bridge_check.py fault URL ACTION[:ARG]     inject a fault into the fake Alpaca server
    bridge_check.py wait-minutes URL N TIMEOUT wait until the server produced N live minutes
    bridge_check.py report URL KEY SECRET SYMBOLS EPOCH_MS INTERVAL ECHO SIDECAR_LOG CONSUMER_STATUS DISCONNECTS PREFILL [WALL]
                                               pause the server, wait for delivery, print the report,
                                               exit 0 (pass) or 1 (fail); WALL: the data clock's
                                               wall origin (default: EPOCH_MS)
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
import urllib.request
from typing import Optional

MINUTE_MS = 60_000


def _get(url: str, headers: dict | None = None) -> dict:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def stamp(out: str, pidfile: str) -> int:
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    with open(out, "a", buffering=1) as f:
        for line in sys.stdin:
            f.write(f"{time.time():.6f} {line}")
    return 0


def fault(url: str, spec: str) -> int:
    action, _, arg = spec.partition(":")
    q = urllib.parse.urlencode({"action": action, **({"arg": arg} if arg else {})})
    print(_get(f"{url}/_fake/fault?{q}").get("ok", "?"))
    return 0


def wait_minutes(url: str, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        st = _get(f"{url}/_fake/stats")
        first = first if first is not None else st["produced_until"]
        if (st["produced_until"] - first) // MINUTE_MS >= n:
            return 0
        time.sleep(0.1)
    print(f"bridge_check: the fake server did not produce {n} minutes within {timeout:.0f} s", file=sys.stderr)
    return 1


def _history(url: str, key: str, secret: str, symbols: str) -> dict:
    """(symbol, ts_ms) → (o,h,l,c,v,vw,n) of everything the server produced (REST, paginated)."""
    out: dict = {}
    token = None
    while True:
        q = {"symbols": symbols, "timeframe": "1Min", "start": "1970-01-01T00:00:00Z", "limit": "10000"}
        if token:
            q["page_token"] = token
        body = _get(f"{url}/v2/stocks/bars?{urllib.parse.urlencode(q)}",
                    {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret})
        for sym, bars in (body.get("bars") or {}).items():
            for b in bars:
                t = b["t"].replace("Z", "+00:00")
                import datetime as dt
                ts = int(dt.datetime.fromisoformat(t).timestamp() * 1000)
                out[(sym, ts)] = (float(b["o"]), float(b["h"]), float(b["l"]), float(b["c"]), float(b["v"]),
                                  float(b["vw"]), int(b["n"]))
        token = body.get("next_page_token")
        if not token:
            return out


def _echoed(path: str) -> list[tuple[float, dict]]:
    rows = []
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        wall, _, js = line.partition(" ")
        try:
            row = json.loads(js)
            wall_s = float(wall)
        except ValueError:
            continue  # a line being written
        if isinstance(row, dict) and "symbol" in row:  # bars (not the minute barrier's lines)
            rows.append((wall_s, row))
    return rows


def _vals(b: dict) -> tuple:
    return (float(b["open"]), float(b["high"]), float(b["low"]), float(b["close"]), float(b["volume"]),
            float(b.get("vwap") or 0), int(b.get("trade_count") or 0))


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))]


def _last_stats(log_path: str) -> dict:
    st: dict = {}
    try:
        for line in open(log_path, encoding="utf-8", errors="replace"):
            i = line.find(" stats {")
            if i >= 0:
                try:
                    st = json.loads(line[i + 7:])
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return st


def report(url: str, key: str, secret: str, symbols: str, epoch_ms: int, interval: float, echo: str,
           sidecar_log: str, status_file: str, disconnects: int, prefill: int, timeout: float = 30.0,
           epoch_wall: Optional[float] = None) -> int:
    _get(f"{url}/_fake/fault?action=pause")
    stats = _get(f"{url}/_fake/stats")
    expected = _history(url, key, secret, symbols)
    deadline = time.monotonic() + timeout
    while True:
        rows = _echoed(echo)
        got = {(b["symbol"], b["timestamp_ms"]): _vals(b) for _, b in rows}
        if all(got.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    first_seen: dict = {}
    copies: dict = {}
    for wall, b in rows:
        k = (b["symbol"], b["timestamp_ms"])
        first_seen.setdefault(k, wall)
        copies[(k, _vals(b))] = copies.get((k, _vals(b)), 0) + 1
    final = {(b["symbol"], b["timestamp_ms"]): _vals(b) for _, b in rows}
    missing = sorted(k for k in expected if k not in final)
    wrong = sorted(k for k in expected if k in final and final[k] != expected[k])
    extra = sorted(k for k in final if k not in expected)
    dups = sum(n - 1 for n in copies.values() if n > 1)
    # latency: server emission of minute m (data clock) → line echoed by the consumer
    start_minute = min((ts for (_, ts) in expected), default=epoch_ms)
    live_from = start_minute + prefill * MINUTE_MS  # the prefill is history served over REST at start
    lat = []
    for k, wall in first_seen.items():
        ts = k[1]
        if ts >= live_from:
            emitted = (epoch_ms / 1000 if epoch_wall is None else epoch_wall) + (ts - epoch_ms) / MINUTE_MS * interval
            lat.append(max(0.0, wall - emitted) * 1000)
    side = _last_stats(sidecar_log)
    try:
        cons = json.load(open(status_file))["health"]["counters"]
    except (OSError, ValueError, KeyError):
        cons = {}
    per_sym: dict = {}
    for (s, _ts) in expected:
        per_sym[s] = per_sym.get(s, 0) + 1
    reconnects = side.get("reconnects", 0)
    ok = not missing and not wrong and not extra and dups == 0 and reconnects >= disconnects
    print("=" * 72)
    print(f"barbridge end-to-end check: fake Alpaca → sidecar (alpaca-py) → FIFO → consumer   "
          f"[{'PASS' if ok else 'FAIL'}]")
    print("=" * 72)
    print(f"symbols         {', '.join(f'{s} {n}' for s, n in sorted(per_sym.items()))}")
    print(f"sent            {len(expected)} bars ({stats['stats']['bars_sent']} streamed live, the rest via REST "
          f"history/backfill; {len(expected) // max(1, len(per_sym))} minutes from "
          f"{time.strftime('%H:%M', time.gmtime(start_minute / 1000))} UTC)")
    print(f"received        {len(final)} distinct bars, {len(rows)} echo lines")
    print(f"missing         {len(missing)}{'  e.g. ' + str(missing[:3]) if missing else ''}")
    print(f"wrong values    {len(wrong)}{'  e.g. ' + str(wrong[:3]) if wrong else ''}")
    print(f"unexpected      {len(extra)}{'  e.g. ' + str(extra[:3]) if extra else ''}")
    print(f"duplicates      {dups} (same bar echoed twice); consumer dropped {cons.get('duplicates', '?')} resent "
          f"copies by dedupe")
    print(f"disconnects     {disconnects} injected; sidecar reconnects {reconnects}, backfills "
          f"{side.get('backfills', '?')} ({side.get('backfilled_bars', '?')} bars)")
    print(f"latency         p50 {_pct(lat, 50):.1f} ms, p99 {_pct(lat, 99):.1f} ms, max {max(lat, default=0):.1f} ms "
          f"over {len(lat)} bars of the live period")
    print("                (server emission → consumer echo; the tail is the bars missed during the disconnects "
          "and recovered by backfill)")
    print(f"consumer        {cons.get('rejects_total', '?')} rejected, "
          f"{cons.get('seq_gaps', '?')} seq gaps, {cons.get('lines_lost', '?')} lines lost")
    print("=" * 72)
    if not ok:
        why = []
        if missing or wrong or extra:
            why.append("not every bar arrived exactly once with its final value")
        if dups:
            why.append("duplicates were delivered")
        if reconnects < disconnects:
            why.append(f"the sidecar reconnected {reconnects} time(s) for {disconnects} disconnect(s)")
        print("FAIL: " + "; ".join(why))
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    cmd, *a = argv
    if cmd == "stamp":
        return stamp(a[0], a[1])
    if cmd == "fault":
        return fault(a[0], a[1])
    if cmd == "wait-minutes":
        return wait_minutes(a[0], int(a[1]), float(a[2]))
    if cmd == "report":
        epoch_wall = float(a[11]) if len(a) > 11 else None  # the data clock's wall origin (default: EPOCH_MS)
        return report(a[0], a[1], a[2], a[3], int(a[4]), float(a[5]), a[6], a[7], a[8], int(a[9]), int(a[10]),
                      epoch_wall=epoch_wall)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
