#!/usr/bin/env python3
"""Regenerate data/xnys_sessions.csv, the NYSE session table the Rust side embeds.

Source: the maintained `exchange_calendars` package (holidays, early closes, DST). Run it from
the project venv when the table nears its end (`barbridge gaps` says so):

    .venv/bin/python scripts/gen_calendar.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import exchange_calendars as xc

START = "2015-01-01"


def main() -> int:
    cal = xc.get_calendar("XNYS", start=START)
    out = Path(__file__).resolve().parent.parent / "data" / "xnys_sessions.csv"
    lines = ["# NYSE regular sessions from exchange_calendars " + xc.__version__ + "; regenerate: scripts/gen_calendar.py",
             "date,open_utc_ms,close_utc_ms"]
    for date, row in cal.schedule.iterrows():
        open_ms = int(row["open"].timestamp() * 1000)
        close_ms = int(row["close"].timestamp() * 1000)
        lines.append(f"{date.date().isoformat()},{open_ms},{close_ms}")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} sessions {cal.first_session.date()}..{cal.last_session.date()} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
