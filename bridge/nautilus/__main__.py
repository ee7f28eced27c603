"""``python -m bridge.nautilus export``: a journal day (or range) → a NautilusTrader Parquet
data catalog. Bad input: one sentence on stderr, exit 2."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.nautilus")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write journal bars to a ParquetDataCatalog (the live node's sequence)")
    ex.add_argument("--journal", required=True, type=Path)
    ex.add_argument("--day", type=dt.date.fromisoformat, help="YYYY-MM-DD (New York trading day; crypto: UTC day)")
    ex.add_argument("--from", dest="first", type=dt.date.fromisoformat)
    ex.add_argument("--to", dest="last", type=dt.date.fromisoformat)
    ex.add_argument("--catalog", required=True, type=Path)
    ex.add_argument("--symbols", help="A,B,... (default: every symbol of the journal); their asset class picks the day files")
    ex.add_argument("--venue", default="ALPACA")
    ex.add_argument("--equity-price-precision", type=int)
    ex.add_argument("--crypto-price-precision", type=int)
    ex.add_argument("--crypto-size-precision", type=int)
    a = ap.parse_args(argv)
    try:
        from .common import MappingError, Precisions, symbols_of
        from .history import days_between, export
    except ImportError as e:
        print(f"python -m bridge.nautilus needs NautilusTrader: pip install 'barbridge[nautilus]' ({e})", file=sys.stderr)
        return 2
    if (a.day is None) == (a.first is None and a.last is None) or (a.first is None) != (a.last is None):
        print("give either --day YYYY-MM-DD or both --from and --to", file=sys.stderr)
        return 2
    d = Precisions()
    precisions = Precisions(a.equity_price_precision if a.equity_price_precision is not None else d.equity_price,
                            a.crypto_price_precision if a.crypto_price_precision is not None else d.crypto_price,
                            a.crypto_size_precision if a.crypto_size_precision is not None else d.crypto_size)
    try:
        symbols = symbols_of(a.symbols) if a.symbols else None
        days = [a.day] if a.day else days_between(a.first, a.last)
        r = export(a.journal, days, a.catalog, symbols, a.venue, precisions)
    except (MappingError, ValueError) as e:
        print(str(e), file=sys.stderr)
        return 2
    skipped = ""
    if r.skipped_symbols:
        skipped = f"; skipped {sum(r.skipped_symbols.values())} bar(s) of {','.join(sorted(r.skipped_symbols))}"
    print(f"exported {r.bars} bar(s) ({r.revisions} revision(s)) and {len(r.statuses)} status event(s) of "
          f"{len(r.instruments)} instrument(s) "
          f"({','.join(sorted(r.instruments))}) for {days[0]}..{days[-1]} to {a.catalog}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
