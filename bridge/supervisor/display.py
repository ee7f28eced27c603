"""What the supervisor reads back and shows: bar lines from the consumer's echo file, the
consumer's status file, and its own state rendered for a person (``--status``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from barbridge import StatusReport

NY = ZoneInfo("America/New_York")


class BarTail:
    """Follows the consumer's ``--echo`` output (one wire line per accepted bar) from its current
    end, and turns new bars into one terminal line per minute:
    ``2026-11-23 10:41 NY   SPY      671.4  SH       36.52  SDS HALTED since 10:38 (T1)``: a symbol
    the consumer's status file (``status_file``) lists as ``halted`` and without a bar that minute
    is shown halted, not dropped, while it is subscribed (``symbols``, the launcher's live list:
    a symbol unsubscribed during its halt is no ghost). Other lines (a ``CONSUMER_CMD`` program's
    output) are shown unchanged."""

    def __init__(self, path: Path, status_file: Optional[Path] = None,
                 symbols: Optional[Callable[[], list[str]]] = None) -> None:
        self.path = path
        self.status_file = status_file
        self.symbols = symbols
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""
        self.seen = 0

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()
        out: list[str] = []
        group, group_ts = "", None
        group_syms: set[str] = set()
        halted = halted_now(read_status(self.status_file)) if self.status_file and chunks else {}
        if halted and self.symbols is not None:
            subscribed = set(self.symbols())
            halted = {sym: h for sym, h in halted.items() if sym in subscribed}

        import barbridge  # type: ignore[import-not-found]  # loaded when a consumer runs
        minute_ms: int = barbridge.MINUTE_MS

        def close_group() -> str:
            return f"{_ny_minute(group_ts)} NY {group}" + "".join(
                f"  {sym:<5} {text}" for sym, (since, text) in halted.items()
                if sym not in group_syms and since < (group_ts or 0) + minute_ms)
        for raw in chunks:
            try:
                bar = json.loads(raw)
                if isinstance(bar, dict) and bar.get("type") == "minute_closed":
                    continue  # the minute barrier's line: the group of bars already shows that minute
                sym, ts = str(bar["symbol"]), int(bar["timestamp_ms"])
            except (ValueError, KeyError, TypeError):
                text = raw.decode(errors="replace").rstrip()
                if text:  # a CONSUMER_CMD program's own output: shown as it is, in order
                    if group:
                        out.append(close_group())
                        group, group_syms = "", set()
                    out.append(text)
                continue
            self.seen += 1
            if group and ts != group_ts:
                out.append(close_group())
                group, group_syms = "", set()
            group_ts = ts
            group_syms.add(sym)
            group += f"  {sym:<5} {bar.get('close', '?')!s:>9}" + ("(upd)" if bar.get("type") == "updated_bar" else "")
        if group:
            out.append(f"{close_group()}   [{self.seen} bars received]")
        return out


def halted_now(status: Optional[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    """The symbols a consumer's status file lists as not trading now (``halted``): symbol →
    (since, UTC epoch ms; ``HALTED since 10:31 (T1)``)."""
    out: dict[str, tuple[int, str]] = {}
    for sym, entry in ((status or {}).get("halted") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("since_ms"), int):
            continue
        since = entry["since_ms"]
        hhmm = dt.datetime.fromtimestamp(since / 1000, NY).strftime("%H:%M")
        code = f" ({entry['code']})" if entry.get("code") else ""
        out[str(sym)] = (since, f"{str(entry.get('state', 'halted')).upper()} since {hhmm}{code}")
    return out


def _ny_minute(ts_ms: Optional[int]) -> str:
    return dt.datetime.fromtimestamp((ts_ms or 0) / 1000, NY).strftime("%Y-%m-%d %H:%M")


def read_status(path: Path) -> Optional[StatusReport]:
    """The consumer's status file through the extension's typed reader (``barbridge.read_status``:
    checked against the Rust ``StatusReport``, with ``liveness``); None while there is none, or
    what is there is not a status report (each a one-sentence OSError/ValueError of the reader)."""
    import barbridge  # type: ignore[import-not-found]  # loaded when a consumer runs

    try:
        report: StatusReport = barbridge.read_status(path)
    except (OSError, ValueError):
        return None
    return report


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def render_state(state: dict[str, Any], alive: bool) -> str:
    """The supervisor's state file for a person."""
    def proc(name: str) -> str:
        p = state.get(name) or {}
        extra = f" ({p.get('stale_restarts', 0)} for a stale feed)" if "stale_restarts" in p else ""
        pid = p.get("pid") or "-"
        return (f"  {name:<9} pid {pid:<8} restarts {p.get('restarts', 0)}{extra}, "
                f"consecutive failures {p.get('consecutive_failures', 0)}")
    head = (f"supervisor: launcher pid {state.get('launcher_pid')} ({'running' if alive else 'NOT RUNNING'}), "
            f"{state.get('mode')} mode, symbols {state.get('symbols')}"
            + (f" (changed live; configured {state['configured_symbols']})" if state.get("configured_symbols") else ""))
    return "\n".join([
        head,
        f"  run dir {state.get('run_dir')}; updated {state.get('updated')}",
        proc("consumer"),
        proc("sidecar"),
        *([f"  nats      pid {state['nats'].get('pid') or '-':<8} restarts {state['nats'].get('restarts', 0)}, "
           f"{state['nats'].get('url')}"] if state.get("nats") else []),
        f"  flap alerts {state.get('flap_alerts', 0)}, alerts sent {state.get('alerts', 0)}"
        + (", GAVE UP" if state.get("gave_up") else ""),
    ])
