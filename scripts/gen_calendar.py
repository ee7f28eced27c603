#!/usr/bin/env python3
"""Regenerate data/xnys_sessions.csv, the NYSE session table the Rust side embeds.

Source: the maintained `exchange_calendars` package (holidays, early closes, DST). It sets no
upper bound for XNYS (its holiday rules project forward), so the table reaches YEARS_AHEAD
calendar years past the year it is generated in. Dates the exchange announces later (a new
holiday, as Juneteenth in 2022) reach the table only when it is regenerated with a newer
package, so regenerate after upgrading exchange_calendars and whenever `barbridge gaps` warns
that the table nears its end:

    .venv/bin/python scripts/gen_calendar.py
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import exchange_calendars as xc

START = "2015-01-01"
YEARS_AHEAD = 10


def main() -> int:
    today = dt.date.today()
    end = dt.date(today.year + YEARS_AHEAD, 12, 31)
    cal = xc.get_calendar("XNYS", start=START, end=end.isoformat())
    out = Path(__file__).resolve().parent.parent / "data" / "xnys_sessions.csv"
    lines = [f"# NYSE regular sessions from exchange_calendars {xc.__version__}, generated {today.isoformat()}; "
             "regenerate: scripts/gen_calendar.py",
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
