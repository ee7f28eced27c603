"""Configuration: ``config.env`` loading, credentials, symbol lists, secret masking."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, MutableMapping, Optional

DEFAULT_SYMBOLS = ("SPY", "SPXL", "SH", "SDS")

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


class ConfigError(Exception):
    """A configuration problem; the message is one sentence for the user (exit 2)."""


def mask(secret: Optional[str]) -> str:
    """Show only the last 4 characters of a secret."""
    if not secret:
        return "<unset>"
    return "****" + secret[-4:] if len(secret) > 4 else "****"


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` / ``export KEY=value`` lines (comments and blanks skipped,
    shell-style quotes honoured). Never echoes values in errors."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ConfigError(f"{path}:{n} is not a KEY=value line.")
        key, value = m.group(1), m.group(2)
        try:
            parts = shlex.split(value, comments=True)
        except ValueError:
            raise ConfigError(f"{path}:{n} has unbalanced quotes in the value of {key}.") from None
        out[key] = " ".join(parts)
    return out


def load_config_env(path: Optional[str], environ: MutableMapping[str, str], *, required: bool) -> Optional[Path]:
    """Load ``config.env`` into ``environ`` without overriding variables already set.

    ``path`` None → ``./config.env`` if it exists. Returns the file loaded (or None)."""
    p = Path(path) if path else Path("config.env")
    if not p.exists():
        if required and path:
            raise ConfigError(f"config file {p} does not exist.")
        return None
    for k, v in parse_env_file(p).items():
        environ.setdefault(k, v)
    return p


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret_key: str
    origin: str  # which variables they came from

    def __repr__(self) -> str:  # never leak secrets through repr/logging
        return f"Credentials(api_key={mask(self.api_key)}, secret_key={mask(self.secret_key)}, origin={self.origin})"

    __str__ = __repr__


def credentials_from_env(environ: Mapping[str, str]) -> Optional[Credentials]:
    for key_var, secret_var in (("ALPACA_API_KEY", "ALPACA_SECRET_KEY"),
                                ("ALPACA_PAPER_API_KEY", "ALPACA_PAPER_SECRET_KEY"),
                                ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")):
        k, s = environ.get(key_var, "").strip(), environ.get(secret_var, "").strip()
        if k and s:
            return Credentials(k, s, f"{key_var}/{secret_var}")
    return None


def parse_symbols(text: Optional[str]) -> list[str]:
    """``"spy, SH"`` → ``["SPY", "SH"]`` (deduplicated, order kept). Empty → ConfigError."""
    if text is None:
        return list(DEFAULT_SYMBOLS)
    seen: list[str] = []
    for part in re.split(r"[,\s]+", text):
        s = part.strip().upper()
        if not s:
            continue
        if len(s) > 32 or not all(0x21 <= ord(ch) <= 0x7E for ch in s) or "," in s:
            raise ConfigError(f"symbol {s!r} is not a valid ticker.")
        if s not in seen:
            seen.append(s)
    if not seen:
        raise ConfigError("the symbol list is empty: pass --symbols SPY,SH (or leave --symbols out for the default SPY,SPXL,SH,SDS).")
    return seen


def scrub(text: str, secrets: Iterable[Optional[str]]) -> str:
    """Replace any occurrence of the given secrets in ``text`` by their masked form."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, mask(s))
    return text


def env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    v = environ.get(name)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"{name}={v!r} is not a number.") from None


def default_fifo_path() -> str:
    """A private per-user location (never world-writable /tmp directly)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/barbridge-{os.getuid()}"
    return os.path.join(base, "barbridge", "bars.fifo") if os.environ.get("XDG_RUNTIME_DIR") else os.path.join(base, "bars.fifo")
