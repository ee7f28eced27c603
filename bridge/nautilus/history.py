"""Bars from the journal: ``request_bars`` answers and the export to a NautilusTrader
``ParquetDataCatalog`` (``python -m bridge.nautilus export``).

The journal's day files are read in the order they were written (the order the live node
received the bars); each line is decoded by the extension (the wire rule is Rust's) and mapped
by :mod:`bridge.nautilus.common`, with the same :class:`~bridge.nautilus.common.Sequencer` the
live data client uses, so the catalog holds the live node's sequence: every bar version it saw,
corrections as revisions, ``ts_init`` increasing per instrument in arrival order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import barbridge
from nautilus_trader.model.data import Bar, BarType, InstrumentStatus
from nautilus_trader.model.instruments import Instrument

from .common import (MINUTE_NS, DEFAULT_VENUE, MappingError, Precisions, Sequencer, asset_class, make_instrument,
                     status_event, to_bar)

DAY_FILE = {"us_equity": "bars-{}.jsonl", "crypto": "crypto-{}.jsonl"}
MAX_DAY_FILE = 4 << 30  # read at most 4 GiB of one day file (a full-market SIP day is about 1 GiB)


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    if last < first:
        raise MappingError(f"--to {last} is before --from {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def read_day(journal: Path, day: dt.date, cls: str) -> Optional[bytes]:
    """The day file's bytes (opened by the extension's private-file rule: no symlink, ours, not
    writable by others), or None when there is none."""
    path = journal / DAY_FILE[cls].format(day.isoformat())
    try:
        return barbridge.read_private_file(str(path), MAX_DAY_FILE)
    except OSError as e:
        raise MappingError(f"cannot read journal file {path}: {e}") from None


def journal_bars(journal: Path, days: Sequence[dt.date], classes: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Every bar line (``kind`` ``bar`` or ``updated_bar``) of those days and asset classes, in
    written order; trading statuses and heartbeats are skipped; a line that is not valid wire
    format raises :class:`MappingError` naming file and line (a torn last line is skipped, as the
    consumer does)."""
    for day in days:
        for cls in classes:
            data = read_day(journal, day, cls)
            if data is None:
                continue
            lines = data.split(b"\n")
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    bar = barbridge.decode_line(line)
                except ValueError as e:
                    if n == len(lines) and not data.endswith(b"\n"):
                        continue  # torn last record of a journal being written
                    raise MappingError(f"{journal / DAY_FILE[cls].format(day)} line {n} is not a bar line: {e}") from None
                if bar is not None:
                    yield dict(bar)


def classes_present(journal: Path, days: Sequence[dt.date]) -> set[str]:
    return {cls for cls, pat in DAY_FILE.items() for d in days if (journal / pat.format(d.isoformat())).exists()}


@dataclass
class Export:
    """What an export wrote."""

    bars: int = 0
    revisions: int = 0
    skipped_symbols: dict[str, int] = field(default_factory=dict)
    instruments: dict[str, Instrument] = field(default_factory=dict)
    out: list[Bar] = field(default_factory=list)
    statuses: list[InstrumentStatus] = field(default_factory=list)


def sequence(journal: Path, days: Sequence[dt.date], symbols: Optional[Sequence[str]] = None,
             venue: str = DEFAULT_VENUE, precisions: Optional[Precisions] = None) -> Export:
    """The live node's bar sequence for ``days`` from the journal (see the module docstring).
    ``symbols`` None: every symbol of the journal. :class:`MappingError` (one sentence) for a
    journal of another asset class than the symbols, a symbol NautilusTrader cannot represent, a
    value beyond its precision."""
    precisions = precisions or Precisions()
    precisions.check()
    wanted = sorted({asset_class(s) for s in symbols}) if symbols else sorted(DAY_FILE)
    present = classes_present(journal, days)
    span = f"{days[0]}" if len(days) == 1 else f"{days[0]}..{days[-1]}"
    if not present & set(wanted):
        if present:
            raise MappingError(f"journal {journal} holds {' and '.join(sorted(present))} bars for {span}, not "
                               f"{' and '.join(wanted)} as configured (symbols {','.join(symbols or [])})")
        raise MappingError(f"journal {journal} has no day file for {span} (bars-DAY.jsonl / crypto-DAY.jsonl)")
    ex = Export()
    seq = Sequencer()
    last_init: dict[str, int] = {}
    keep = set(symbols) if symbols else None
    for b in journal_bars(journal, days, wanted):
        sym = b["symbol"]
        if keep is not None and sym not in keep:
            ex.skipped_symbols[sym] = ex.skipped_symbols.get(sym, 0) + 1
            continue
        inst = ex.instruments.get(sym)
        if inst is None:
            inst = ex.instruments[sym] = make_instrument(sym, venue, precisions)
        ts_event = int(b["timestamp_ms"]) * 1_000_000 + MINUTE_NS
        ts_init = max(ts_event, last_init.get(sym, 0) + 1)  # arrival order, per instrument
        last_init[sym] = ts_init
        rev = seq.is_revision(sym, int(b["timestamp_ms"]))
        ex.out.append(to_bar(b, inst, ts_init, rev))
        ex.bars += 1
        ex.revisions += rev
    ex.statuses = journal_statuses(journal, days, wanted, list(ex.instruments.values()))
    return ex


def journal_statuses(journal: Path, days: Sequence[dt.date], classes: Sequence[str],
                     instruments: Sequence[Instrument]) -> list[InstrumentStatus]:
    """The journal's halts of ``instruments`` as status events: ``HALT`` at a halt's start,
    ``TRADING`` at its end, read through the extension's trading book (``Consumer.halts``; the
    book keeps no state name, so a pause or a quoting-only span is a ``HALT`` here too)."""
    seen: dict[tuple[str, int], InstrumentStatus] = {}
    for day in days:
        for cls in classes:
            data = read_day(journal, day, cls)
            if data is None:
                continue
            c = barbridge.Consumer(capacity_per_symbol=1 << 20)
            try:
                c.push_batch(data)
                for inst in instruments:
                    sym = inst.raw_symbol.value
                    for h in c.halts(sym):
                        start, end = int(h["start_ms"]), h.get("end_ms")
                        seen[(sym, start)] = status_event(inst.id, "halted", start, h.get("code"), h.get("reason"),
                                                          start * 1_000_000)
                        if end is not None:
                            seen[(sym, int(end))] = status_event(inst.id, "trading", int(end), None, None,
                                                                 int(end) * 1_000_000)
            finally:
                c.close()
    return sorted(seen.values(), key=lambda s: s.ts_init)


def export(journal: Path, days: Sequence[dt.date], catalog: Path, symbols: Optional[Sequence[str]] = None,
           venue: str = DEFAULT_VENUE, precisions: Optional[Precisions] = None) -> Export:
    """Write :func:`sequence` to the ``ParquetDataCatalog`` at ``catalog`` (instruments, bars and
    the halts' status events)."""
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    ex = sequence(journal, days, symbols, venue, precisions)
    if not ex.out:
        raise MappingError(f"journal {journal} has no bar of {','.join(symbols or ['any symbol'])} for those days")
    cat = ParquetDataCatalog(str(catalog))
    try:
        cat.write_data(list(ex.instruments.values()))
        cat.write_data(sorted(ex.out, key=lambda b: b.ts_init))
        if ex.statuses:
            cat.write_data(ex.statuses)
    except (ValueError, AssertionError, OSError) as e:
        raise MappingError(f"cannot write catalog {catalog}: {e}") from None
    return ex


def catalog_bars(catalog: Path, bar_types: Optional[Sequence[BarType]] = None) -> list[Bar]:
    """The catalog's bars in ``ts_init`` order with ``is_revision`` restored: NautilusTrader's
    Parquet schema has no column for it, and by the mapping's rule a bar is a revision exactly
    when its minute is at or before its instrument's previous bar's (same :class:`Sequencer`)."""
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    cat = ParquetDataCatalog(str(catalog))
    raw = cat.bars(bar_types=[str(t) for t in bar_types] if bar_types else None)
    seq = Sequencer()
    out = []
    for b in sorted(raw, key=lambda x: x.ts_init):
        key = str(b.bar_type)
        rev = seq.is_revision(key, (b.ts_event - MINUTE_NS) // 1_000_000)
        out.append(Bar(b.bar_type, b.open, b.high, b.low, b.close, b.volume, b.ts_event, b.ts_init, rev) if rev else b)
    return out


def stored_bars(journal: Path, symbol: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    """``symbol``'s final bars (corrections applied) with ``from_ms <= timestamp_ms < to_ms``
    from the journal, through a throwaway extension ``Consumer`` (the store's rules are Rust's)."""
    first = dt.datetime.fromtimestamp(from_ms / 1000, dt.timezone.utc).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(max(from_ms, to_ms - 1) / 1000, dt.timezone.utc).date() + dt.timedelta(days=1)
    cls = asset_class(symbol)
    out: list[dict[str, Any]] = []
    for day in days_between(first, last):
        data = read_day(journal, day, cls)
        if data is None:
            continue
        c = barbridge.Consumer(capacity_per_symbol=1 << 20, symbols=[symbol])
        try:
            c.push_batch(data)
            out.extend(dict(b.to_dict()) for b in c.range(symbol, from_ms, to_ms))
        finally:
            c.close()
    seen: dict[int, dict[str, Any]] = {}
    for b in out:
        seen[int(b["timestamp_ms"])] = b
    return [seen[k] for k in sorted(seen)]
