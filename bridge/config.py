"""Configuration: the one ``config.env`` parser and list of keys, credentials, symbol lists, the CA
bundle, secret masking.

The launcher's supervisor (``bridge.supervisor``) and the sidecar (``python -m bridge``) both read
``config.env`` through :func:`load_config_env`, so a file means the same to both.

File format: python-dotenv's (its parser, ``dotenv.parser.parse_stream``), without variable
expansion (``$X`` and ``${X}`` stay as written)::

    # a comment line                     blank lines and comment lines are skipped
    KEY=value                            an optional leading ``export`` is accepted
    SYMBOLS=SPY SPXL                     spaces inside an unquoted value are kept ...
    A=a#b                                ... and so is a ``#`` not preceded by a space: ``a#b``
    A=a # note                           a space then ``#`` starts a comment: ``a``
    ALERT_CMD=curl -d "$1" 'https://x'   quotes inside an unquoted value are kept as written
    SECRET='a b#c'                       a value in single quotes is taken literally
    NOTE="say \\"hi\\""                  in double quotes, backslash escapes (``\\"``, ``\\\\``, ``\\n``...)

A line python-dotenv cannot parse, or a key without ``=``, is an error naming the line.
Every key must be one of :data:`KNOWN_KEYS`: a typo is an error naming the nearest known key.

Precedence, for every setting: a command-line option beats the environment, which beats
``config.env``, which beats the built-in default (so ``SYMBOLS=SPY scripts/launch_live_trading.sh``
overrides the file for one run).
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, MutableMapping, Optional

DEFAULT_SYMBOLS = ("SPY", "SPXL", "SH", "SDS")
#: ``ASSET=crypto``: Alpaca's crypto pairs, 24/7 (docs/ARCHITECTURE.md "Crypto").
DEFAULT_CRYPTO_SYMBOLS = ("BTC/USD", "ETH/USD")
ASSETS = ("stock", "crypto")

#: Every key ``config.env`` may set, with what it is for (``config.env.example`` documents each).
KNOWN_KEYS: dict[str, str] = {
    # credentials and endpoints (the sidecar, preflight, warm-up)
    "ALPACA_API_KEY": "Alpaca API key id",
    "ALPACA_SECRET_KEY": "Alpaca API secret",
    "ALPACA_PAPER_API_KEY": "Alpaca paper API key id (alternative name)",
    "ALPACA_PAPER_SECRET_KEY": "Alpaca paper API secret (alternative name)",
    "APCA_API_KEY_ID": "Alpaca API key id (alpaca-py's name)",
    "APCA_API_SECRET_KEY": "Alpaca API secret (alpaca-py's name)",
    "ALPACA_PAPER": "true: the preflight checks the keys against the paper trading endpoint",
    "ALPACA_FEED": "iex or sip",
    "ALPACA_STREAM_URL": "websocket stream URL override",
    "ALPACA_DATA_URL": "market-data REST URL override (backfill, warm-up)",
    "ALPACA_TRADING_URL": "trading REST URL override (preflight account check)",
    "SSL_CERT_FILE": "CA bundle for every TLS connection of the sidecar (default: certifi's)",
    "WS_PING_INTERVAL": "seconds between websocket keepalive pings",
    "WS_PING_TIMEOUT": "seconds a keepalive ping may wait for its pong before the socket is closed",
    "TRADING_STATUSES": "0: do not subscribe to trading statuses (halts are then indistinguishable from lost bars)",
    "MINUTE_DEADLINE": "seconds after a minute's end at which the sidecar closes it without the bars still missing (0 = off)",
    "BARBRIDGE_FIFO": "FIFO path of a sidecar started by hand",
    "BARBRIDGE_LOG": "sidecar log level",
    # monitoring
    "METRICS_ADDR": "HOST:PORT where the consumer serves /metrics, /status.json and the live page (off if empty)",
    "SIDECAR_METRICS_ADDR": "HOST:PORT where the sidecar serves its own /metrics (off if empty)",
    "LOG_FORMAT": "text or json (one JSON object a line) for the consumer's and the sidecar's logs",
    # what to stream
    "SYMBOLS": "symbols, separated by commas and/or spaces",
    "ASSET": "stock (default) or crypto: pairs such as BTC/USD, streamed 24/7, journaled per UTC day",
    # schedule
    "SCHEDULE": "1: follow the NYSE session",
    "WAIT_FOR_OPEN": "1: wait for OPEN_TIME before starting",
    "OPEN_TIME": "start time, New York",
    "EOD_TIME": "end-of-day hook time, New York",
    "EOD_CMD": "command run once at EOD_TIME",
    "CLOSE_TIME": "shutdown time, New York",
    # warm-up
    "WARMUP": "1: fetch recent minute bars over REST before streaming",
    "WARMUP_DAYS": "sessions the warm-up fetches",
    "WARMUP_HOURS": "all: the warm-up keeps bars outside the regular session too",
    # alerts and supervision
    "ALERT_CMD": "command run with the JSON alert payload as $1 and on stdin",
    "ALERT_TIMEOUT": "seconds ALERT_CMD may run",
    "STALE_AFTER": "seconds without any line before the consumer reports the feed stale",
    "STALE_GRACE": "seconds a new sidecar gets before a stale feed restarts it",
    "SIDECAR_STALE_AFTER": "seconds without a bar in session before the sidecar reconnects",
    "CONSUMER_HUNG_AFTER": "seconds without a status file update before the consumer is restarted",
    "BACKOFF_MIN": "first restart delay",
    "BACKOFF_MAX": "longest restart delay",
    "MAX_RESTARTS": "consecutive failed restarts of one process before giving up",
    "STABLE_AFTER": "uptime after which the backoff starts over",
    "FLAP_THRESHOLD": "restarts within FLAP_WINDOW above which a flap alert is sent",
    "FLAP_WINDOW": "seconds over which restarts are counted for the flap alert",
    "STATUS_EVERY": "seconds between status screens on the terminal (0 = off)",
    "TICK": "supervision period in seconds",
    "HEARTBEAT": "seconds between the sidecar's heartbeat lines",
    "STOP_TIMEOUT": "seconds a process gets to stop before it is killed",
    "DEMO_INTERVAL": "demo: wall seconds per synthetic minute bar",
    "DEMO_HALT_EVERY": "demo: halt the last symbol 5 minutes every this many minutes (0 = never)",
    "DEMO_START": "demo: the first synthetic minute (ISO time with zone, or epoch ms; default: continue, or 390 minutes ago)",
    # where things go
    "RUNS_DIR": "where dated run directories (logs) and the journal go",
    "BARBRIDGE_RUNTIME_DIR": "private directory for the FIFO, status, pid and lock files",
    "BARBRIDGE_BIN": "the consumer binary (default: target/release/barbridge, built when out of date)",
    "RUST_LOG": "consumer log level",
    # fan-out over NATS JetStream
    "NATS_URL": "nats://HOST:PORT: the consumer publishes every journaled bar to JetStream there",
    "NATS": "local: the launcher runs and supervises its own nats-server (JetStream) and publishes to it",
    "NATS_PORT": "port of the local nats-server (NATS=local) on 127.0.0.1; default 4222, 0: a free one picked at start",
    "NATS_USER": "NATS_URL: the user name (with NATS_PASSWORD or NATS_PASSWORD_FILE)",
    "NATS_PASSWORD": "NATS_URL: the user's password",
    "NATS_PASSWORD_FILE": "NATS_URL: a file (0600) holding the user's password",
    "NATS_TOKEN": "NATS_URL: an authentication token",
    "NATS_TOKEN_FILE": "NATS_URL: a file (0600) holding the token",
    "NATS_NKEY": "NATS_URL: an nkey seed (SU...)",
    "NATS_NKEY_FILE": "NATS_URL: a file (0600) holding an nkey seed",
    "NATS_CREDS": "NATS_URL: a .creds file (user JWT and seed, e.g. Synadia Cloud)",
    "NATS_TLS": "NATS_URL: 1 to require TLS (implied by tls:// and NATS_CA/NATS_CERT)",
    "NATS_CA": "NATS_URL: a PEM file of root certificates to trust instead of the system's",
    "NATS_CERT": "NATS_URL: a PEM client certificate (with NATS_KEY)",
    "NATS_KEY": "NATS_URL: the client certificate's PEM private key (0600)",
    # your engine as the consumer
    "CONSUMER_CMD": "your program, run by the launcher instead of barbridge run (BARBRIDGE_FIFO etc. in its environment)",
}

#: A line that starts a quoted value: its key, the quote, and the rest.
_QUOTED = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(['\"])(.*)", re.S)


class ConfigError(Exception):
    """A configuration problem: one sentence for the user, and how to fix it (exit 2)."""

    def __init__(self, sentence: str, fix: Optional[str] = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.sentence} Fix: {self.fix}." if self.fix else self.sentence


def mask(secret: Optional[str]) -> str:
    """Show only the last 4 characters of a secret."""
    if not secret:
        return "<unset>"
    return "****" + secret[-4:] if len(secret) > 4 else "****"


def unknown_key_error(key: str, where: str) -> ConfigError:
    near = difflib.get_close_matches(key.upper(), KNOWN_KEYS, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else " (config.env.example lists every key)."
    return ConfigError(f"{where}: unknown key {key}{hint}",
                       f"rename it to {near[0]}" if near else "remove that line or fix its name")


def _bad_line(where: str, text: str) -> ConfigError:
    """The sentence for a line python-dotenv could not parse (``text``: the line as written)."""
    m = _QUOTED.match(text)
    if m:
        key, quote, rest = m.group(1), m.group(2), m.group(3)
        if quote in rest.split("\n", 1)[0]:
            return ConfigError(f"{where} has text after the closing quote of {key}'s value.",
                               "quote the whole value or remove the text after the quote")
        return ConfigError(f"{where} has an unbalanced {quote} quote in the value of {key}.",
                           "close the quote, or leave the value unquoted")
    return ConfigError(f"{where} is not a KEY=value line.", "fix or comment out that line (see config.env.example)")


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse a ``config.env`` (format in the module doc). Never echoes values in errors."""
    from dotenv.parser import parse_stream  # python-dotenv; here so that --help needs no .venv/

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e.strerror or e}).", "check its permissions") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text.", "save it as UTF-8") from None
    out: dict[str, str] = {}
    for b in parse_stream(io.StringIO(text)):
        where = f"{path}:{b.original.line}"
        if b.error:
            raise _bad_line(where, b.original.string)
        if b.key is None:  # a blank or comment line
            continue
        if b.value is None:
            raise _bad_line(where, b.original.string)
        if b.key not in KNOWN_KEYS:
            raise unknown_key_error(b.key, where)
        out[b.key] = b.value
    return out


def config_path(arg: Optional[str], environ: Mapping[str, str], default_dir: Path) -> tuple[Path, bool]:
    """Which config file to read, and whether the user named it (then it must exist):
    ``--config`` beats ``BARBRIDGE_CONFIG`` beats ``<default_dir>/config.env``."""
    named = arg or environ.get("BARBRIDGE_CONFIG") or None
    p = Path(named) if named else default_dir / "config.env"
    return (p if p.is_absolute() else Path.cwd() / p), bool(named)


def load_config_env(path: Optional[str], environ: MutableMapping[str, str], *, required: bool) -> Optional[Path]:
    """Load ``config.env`` into ``environ`` without overriding variables already set.

    ``path`` None → ``$BARBRIDGE_CONFIG``, else ``./config.env`` if it exists. Returns the file loaded (or None)."""
    p, named = config_path(path, environ, Path.cwd())
    if not p.exists():
        if required or named:
            raise ConfigError(f"config file {p} does not exist.", "create it from config.env.example or drop --config")
        return None
    for k, v in parse_env_file(p).items():
        environ.setdefault(k, v)
    return p


# How long the synthetic source's scripted demo halt lasts (DEMO_HALT_EVERY must exceed it). Here,
# not in sources/synthetic.py, so the launcher's settings read it with the standard library only.
HALT_MINUTES = 5
# Accelerated, the synthetic source starts this many minutes ago (a regular session's length) and
# catches up, then keeps to the clock (never a bar of a minute that has not closed).
DEMO_HISTORY_MINUTES = 390

@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret_key: str
    origin: str  # which variables they came from

    def __repr__(self) -> str:  # never leak secrets through repr/logging
        return f"Credentials(api_key={mask(self.api_key)}, secret_key={mask(self.secret_key)}, origin={self.origin})"

    __str__ = __repr__


CREDENTIAL_PAIRS = (("ALPACA_API_KEY", "ALPACA_SECRET_KEY"),
                    ("ALPACA_PAPER_API_KEY", "ALPACA_PAPER_SECRET_KEY"),
                    ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"))


def credentials_from_env(environ: Mapping[str, str]) -> Optional[Credentials]:
    for key_var, secret_var in CREDENTIAL_PAIRS:
        k, s = environ.get(key_var, "").strip(), environ.get(secret_var, "").strip()
        if k and s:
            return Credentials(k, s, f"{key_var}/{secret_var}")
    return None


def partial_credentials(environ: Mapping[str, str]) -> Optional[str]:
    """``"KEY_VAR/SECRET_VAR"`` of a pair with only one half set (when no pair is complete)."""
    for key_var, secret_var in CREDENTIAL_PAIRS:
        if bool(environ.get(key_var, "").strip()) != bool(environ.get(secret_var, "").strip()):
            return f"{key_var}/{secret_var}"
    return None


def parse_asset(text: Optional[str]) -> str:
    """``ASSET`` / ``--asset``: ``stock`` (default) or ``crypto``."""
    asset = (text or "stock").strip().lower() or "stock"
    if asset not in ASSETS:
        raise ConfigError(f"ASSET={text} must be stock or crypto.", "set ASSET=stock or ASSET=crypto")
    return asset


def _extension() -> Any:
    """The extension ``barbridge``: the crate's rules (symbols, asset classes, paths, HH:MM times are
    not restated here). ConfigError saying how to build it when it is missing."""
    try:
        import barbridge  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("the Python extension barbridge (the crate's rules) is not built.",
                          "run scripts/ensure_extension.sh") from None
    return barbridge


def asset_class(symbol: str) -> str:
    """``"crypto"`` for a pair (``BTC/USD``), else ``"stock"``: the extension's rule (``src/asset.rs``)."""
    return str(_extension().asset_class(symbol))


def check_asset_symbols(asset: str, symbols: list[str]) -> None:
    """A crypto stream takes pairs (``BTC/USD``), a stock stream tickers without ``/``: the shape
    that tells the consumer which day a bar belongs to (``src/asset.rs``, through the extension).
    A mix → ConfigError."""
    wrong = [s for s in symbols if asset_class(s) != asset]
    if wrong:
        if asset == "crypto":
            raise ConfigError(f"ASSET=crypto streams pairs such as BTC/USD, not {', '.join(wrong)}.",
                              "use e.g. SYMBOLS=BTC/USD,ETH/USD, or run stocks in a second sidecar")
        raise ConfigError(f"{', '.join(wrong)} look like crypto pairs: set ASSET=crypto for them "
                          "(stocks and crypto run as two sidecars).", "set ASSET=crypto")


def check_symbol(symbol: str) -> str:
    """``symbol`` if the wire protocol's rule (``barbridge.validate_symbol``) takes it, else
    ConfigError with one sentence. A lower-case symbol is refused, never upper-cased: what is
    streamed, stored and journaled is what was written (README, "Wire protocol")."""
    try:
        _extension().validate_symbol(symbol)
    except ValueError:
        if symbol != symbol.upper() and _valid(symbol.upper()):
            raise ConfigError(f"symbol {symbol!r} has lower-case letters; symbols are written as the exchange "
                              f"lists them, so it is refused rather than changed.", f"write {symbol.upper()}") from None
        raise ConfigError(f"symbol {symbol!r} is not a valid symbol (1-32 printable characters, upper case, no "
                          "space; a crypto pair as BASE/QUOTE).", "use e.g. SPY, BRK.B or BTC/USD") from None
    return symbol


def _valid(symbol: str) -> bool:
    try:
        _extension().validate_symbol(symbol)
    except ValueError:
        return False
    return True


def parse_symbols(text: Optional[str], asset: str = "stock") -> list[str]:
    """``"SPY, SH"`` or ``"SPY SH"`` → ``["SPY", "SH"]`` (commas and spaces separate; deduplicated,
    order kept), each by the wire rule (:func:`check_symbol`). Empty or a bad symbol → ConfigError.
    ``None``: the asset's default symbols."""
    if text is None:
        return list(DEFAULT_CRYPTO_SYMBOLS if asset == "crypto" else DEFAULT_SYMBOLS)
    seen: list[str] = []
    for part in re.split(r"[,\s]+", text):
        s = part.strip()
        if s and check_symbol(s) not in seen:
            seen.append(s)
    if not seen:
        raise ConfigError("the symbol list is empty: pass --symbols SPY,SH "
                          "(or leave --symbols out for the default SPY,SPXL,SH,SDS).")
    return seen


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(name: str, text: str) -> dt.time:
    """``OPEN_TIME``/``EOD_TIME``/``CLOSE_TIME`` (and the schedule's ``--open`` ...): a 24-hour
    ``HH:MM`` New York time. The one parser of these; ConfigError otherwise."""
    m = _HHMM.match(text.strip())
    if not m:
        raise ConfigError(f"{name}={text} is not a HH:MM time (24-hour, New York).", f"use e.g. {name}=15:58")
    return dt.time(int(m.group(1)), int(m.group(2)))


def ca_bundle(environ: Mapping[str, str] = os.environ) -> str:
    """The CA bundle every TLS connection of the sidecar uses: ``SSL_CERT_FILE`` if set (it must
    exist), else certifi's."""
    path = environ.get("SSL_CERT_FILE")
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"SSL_CERT_FILE={path} does not exist or is not a file.",
                              "point it at a PEM CA bundle or unset it to use certifi's")
        return path
    import certifi
    return certifi.where()


def apply_ca_bundle(environ: MutableMapping[str, str] = os.environ) -> str:
    """Make :func:`ca_bundle` govern ``requests`` too (alpaca-py's REST client, used for backfill
    and warm-up, reads only ``REQUESTS_CA_BUNDLE`` or its own bundle). Returns the bundle."""
    path = ca_bundle(environ)
    environ["REQUESTS_CA_BUNDLE"] = path
    environ.pop("CURL_CA_BUNDLE", None)
    return path


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
    """The extension's default FIFO path: a private per-user location (``$XDG_RUNTIME_DIR/barbridge/``,
    else ``/tmp/barbridge-<uid>/``), never world-writable /tmp directly."""
    return str(_extension().default_fifo_path())
