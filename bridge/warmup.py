"""Warm-up: fetch recent minute bars over Alpaca's REST API into a wire-format JSONL file, which the
launcher then feeds to the running consumer (``python -m bridge --source replay``), so indicators
start warm (20 sessions are about 7,800 minute bars per symbol).

    python -m bridge.warmup --symbols SPY,SH --days 20 --out runs/2026-11-23/warmup.jsonl

Credentials and URLs come from the environment (``ALPACA_API_KEY``/..., ``ALPACA_DATA_URL``,
``ALPACA_FEED``). Regular-session bars only (09:30-16:00 New York, early closes respected).
Exit 0 with the number of bars on stdout, 2 on a configuration problem, 1 on a REST failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import barbridge  # type: ignore[import-not-found]  # noqa: E402

from bridge import config  # noqa: E402
from bridge.schedule import NY, UTC, session  # noqa: E402



def _bars_by_symbol(result: object) -> dict:
    """alpaca-py answers a ``BarSet`` (``.data``: symbol → bars), or the raw dict with ``raw_data``."""
    if result is None:
        return {}
    return result if isinstance(result, dict) else result.data  # type: ignore[attr-defined]

def sessions_back(now: dt.datetime, days: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """The last ``days`` NYSE sessions that have started by ``now`` (oldest first)."""
    out = []
    d = now.astimezone(NY).date()
    for _ in range(days * 3 + 15):
        s = session(d)
        if s and s[0] <= now:
            out.append(s)
            if len(out) == days:
                break
        d -= dt.timedelta(days=1)
    return out[::-1]


def fetch(symbols: list[str], days: int, out: Path, now: Optional[dt.datetime] = None, all_hours: bool = False) -> int:
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    creds = config.credentials_from_env(os.environ)
    if creds is None:
        raise config.ConfigError("warm-up needs Alpaca credentials (ALPACA_API_KEY/ALPACA_SECRET_KEY).")
    now = now or dt.datetime.now(UTC)
    sess = sessions_back(now, days)
    if not sess:
        return 0
    if all_hours:  # every bar since the first session's open (24h feeds, the fake server)
        sess = [(sess[0][0], now)]
    client = StockHistoricalDataClient(creds.api_key, creds.secret_key, raw_data=True,
                                       url_override=os.environ.get("ALPACA_DATA_URL") or None)
    req = StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Minute,
                           feed=DataFeed(os.environ.get("ALPACA_FEED") or "iex"),
                           start=sess[0][0].astimezone(UTC), end=now)
    raw = _bars_by_symbol(client.get_stock_bars(req))
    windows = [(int(o.timestamp() * 1000), int(c.timestamp() * 1000)) for o, c in sess]
    n = 0
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        rows = []
        for sym, bars in raw.items():
            for b in bars:
                try:
                    bar = barbridge.normalise_alpaca(b, source="backfill", symbol=sym)
                except barbridge.WireError:
                    continue
                ts = bar["timestamp_ms"]
                if all_hours or any(o <= ts < c for o, c in windows):
                    rows.append(bar)
        rows.sort(key=lambda b: (b["timestamp_ms"], b["symbol"]))
        for bar in rows:
            f.write(barbridge.encode_bar(bar))
            n += 1
    tmp.replace(out)
    return n


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.warmup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", default=None)
    ap.add_argument("--days", type=int, default=20, help="sessions to fetch (the current one included)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--all-hours", action="store_true", default=os.environ.get("WARMUP_HOURS") == "all",
                    help="keep bars outside the regular session too (env WARMUP_HOURS=all)")
    a = ap.parse_args(argv)
    try:
        symbols = config.parse_symbols(a.symbols)
        config.apply_ca_bundle(os.environ)  # alpaca-py's REST client (requests) uses the sidecar's CA bundle
        if a.days < 1:
            raise config.ConfigError("--days must be at least 1.")
        n = fetch(symbols, a.days, Path(a.out), all_hours=a.all_hours)
    except config.ConfigError as e:
        print(f"warmup: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # REST/TLS/network: one line, secrets masked
        creds = config.credentials_from_env(os.environ)
        msg = config.scrub(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                           [creds.api_key, creds.secret_key] if creds else [])
        print(f"warmup: error: fetching bars failed ({msg[:300]}).", file=sys.stderr)
        return 1
    print(f"warmup: {n} bars for {','.join(symbols)} over the last {a.days} session(s) → {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
