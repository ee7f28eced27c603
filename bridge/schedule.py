"""Today's market-day schedule for the launcher, computed fresh from the current instant.

    python -m bridge.schedule --open 09:30 --eod 15:58 --close 16:00 [--now 2026-11-27T14:00:00Z]

prints shell assignments (``KEY=value``, one a line) that ``scripts/launch_live_trading.sh`` evals:

    SESSION_DATE    the New York calendar date of "now" (never a remembered date: a restart must not trade on yesterday's)
    TRADING_DAY     1 if NYSE has a regular session that day (the extension's session table), else 0
    EARLY_CLOSE     1 on early-close days (e.g. 13:00 the day after Thanksgiving)
    OPEN_EPOCH      start instant (epoch seconds): the configured open time, New York, that day
    EOD_EPOCH       end-of-day hook instant; moved before an early close, keeping its distance
    CLOSE_EPOCH     shutdown instant: the configured close, or the exchange's close if earlier
    PHASE           before_open | open | after_close | no_session
    NEXT_SESSION    the next session date (today's if it is still to come)

All wall-clock times are New York times; DST is zoneinfo's. Exit 2 with one sentence on a bad time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Optional
from zoneinfo import ZoneInfo

from bridge import config

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc


class ScheduleError(Exception):
    pass


def parse_hhmm(name: str, text: str) -> dt.time:
    """:func:`bridge.config.parse_hhmm` (the one HH:MM parser), its error as a ScheduleError."""
    try:
        return config.parse_hhmm(name, text)
    except config.ConfigError as e:
        raise ScheduleError(str(e)) from None


def session(day: dt.date) -> Optional[tuple[dt.datetime, dt.datetime]]:
    """The NYSE regular session (open, close) of a New York date, as aware datetimes, or None.
    The calendar is the extension's (``src/calendar.rs``, the consumer's own session table)."""
    import barbridge  # type: ignore[import-not-found]
    first, last = barbridge.calendar_coverage()
    if not first <= day.isoformat() <= last:
        print(f"schedule: warning: {day} is outside the exchange calendar; assuming Mon-Fri 09:30-16:00",
              file=sys.stderr)
    s = barbridge.session(day.isoformat())
    if s is None:
        return None
    return (dt.datetime.fromtimestamp(s[0] / 1000, NY), dt.datetime.fromtimestamp(s[1] / 1000, NY))


def compute(now: dt.datetime, open_t: dt.time, eod_t: dt.time, close_t: dt.time) -> dict:
    if not (open_t < close_t):
        raise ScheduleError(f"OPEN_TIME {open_t:%H:%M} must be before CLOSE_TIME {close_t:%H:%M}.")
    if not (open_t < eod_t <= close_t):
        raise ScheduleError(f"EOD_TIME {eod_t:%H:%M} must be after OPEN_TIME {open_t:%H:%M} and not after "
                            f"CLOSE_TIME {close_t:%H:%M}.")
    now_ny = now.astimezone(NY)
    day = now_ny.date()
    out: dict[str, object] = {"SESSION_DATE": day.isoformat(), "NOW_NY": now_ny.strftime("%Y-%m-%dT%H:%M:%S%z")}
    s = session(day)
    nxt = day if s else None
    d = day
    while nxt is None:
        d += dt.timedelta(days=1)
        if session(d):
            nxt = d
    if s is None:
        out.update(TRADING_DAY=0, EARLY_CLOSE=0, OPEN_EPOCH=0, EOD_EPOCH=0, CLOSE_EPOCH=0, PHASE="no_session",
                   NEXT_SESSION=nxt.isoformat(), EXCHANGE_CLOSE="")
        return out
    ex_open, ex_close = s
    start = dt.datetime.combine(day, open_t, NY)
    close = min(dt.datetime.combine(day, close_t, NY), ex_close)
    eod = dt.datetime.combine(day, eod_t, NY)
    if eod >= close and close < dt.datetime.combine(day, close_t, NY):
        # early close: keep the EOD hook the same distance before the (earlier) close
        eod = close - (dt.datetime.combine(day, close_t, NY) - dt.datetime.combine(day, eod_t, NY))
    eod = min(eod, close)
    if now < start:
        phase = "before_open"
    elif now < close:
        phase = "open"
    else:
        phase = "after_close"
    if phase == "after_close":
        d = day
        while True:
            d += dt.timedelta(days=1)
            if session(d):
                nxt = d
                break
    early = ex_close.astimezone(NY).time() < dt.time(16, 0)
    out.update(TRADING_DAY=1, EARLY_CLOSE=int(early), OPEN_EPOCH=int(start.timestamp()),
               EOD_EPOCH=int(eod.timestamp()), CLOSE_EPOCH=int(close.timestamp()), PHASE=phase,
               NEXT_SESSION=nxt.isoformat(), EXCHANGE_CLOSE=ex_close.astimezone(NY).strftime("%H:%M"),
               OPEN_NY=start.strftime("%H:%M"), EOD_NY=eod.strftime("%H:%M"), CLOSE_NY=close.strftime("%H:%M"))
    return out


def _parse_now(text: Optional[str]) -> dt.datetime:
    if not text:
        return dt.datetime.now(UTC)
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=NY)  # a naive --now is a New York wall time
    return d


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.schedule", description=__doc__.split("\n\n")[0])
    ap.add_argument("--open", default="09:30", help="start time, New York (HH:MM)")
    ap.add_argument("--eod", default="15:58", help="end-of-day hook time, New York (HH:MM)")
    ap.add_argument("--close", default="16:00", help="shutdown time, New York (HH:MM); an early close wins")
    ap.add_argument("--now", default=None, help="ISO instant to compute for (tests); default: the current time")
    a = ap.parse_args(argv)
    try:
        out = compute(_parse_now(a.now), parse_hhmm("OPEN_TIME", a.open), parse_hhmm("EOD_TIME", a.eod),
                      parse_hhmm("CLOSE_TIME", a.close))
    except ScheduleError as e:
        print(f"schedule: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"schedule: error: --now {a.now!r} is not an ISO time ({e}).", file=sys.stderr)
        return 2
    for k, v in out.items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
