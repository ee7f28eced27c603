"""Preflight checks for ``scripts/launch_live_trading.sh --check`` (the launcher also runs them at start).

    python -m bridge.preflight --mode live|demo --fifo PATH [--stream-url URL] [--trading-url URL]

Checks, in order, stopping at the first failure with one sentence and a fix (exit 1):
credentials present (live), CA bundle usable (SSL_CERT_FILE or certifi: the one every connection uses), credentials
accepted by Alpaca (REST account call, live), stream host reachable over TCP/TLS (live), FIFO path
safe (private directory, no symlink, a FIFO we own). Demo mode runs only the offline checks.
Secrets are never printed: keys show as ``****WXYZ``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, MutableMapping, Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bridge import config  # noqa: E402

DEFAULT_STREAM = "wss://stream.data.alpaca.markets/v2/{feed}"
CRYPTO_STREAM = "wss://stream.data.alpaca.markets/v1beta3/crypto/us"
PAPER_TRADING = "https://paper-api.alpaca.markets"
LIVE_TRADING = "https://api.alpaca.markets"


#: Seconds each network check may take.
TIMEOUT = 8.0


class Fail(Exception):
    def __init__(self, sentence: str, fix: str) -> None:
        super().__init__(sentence)
        self.sentence, self.fix = sentence, fix


def _print(line: str) -> None:
    print(line, flush=True)


def ssl_context(environ: MutableMapping[str, str]) -> tuple[ssl.SSLContext, str]:
    """The context the checks use, and where its CA certificates come from."""
    try:
        cafile = config.apply_ca_bundle(environ)  # the same bundle the sidecar's connections use
    except config.ConfigError as e:
        raise Fail(e.sentence.rstrip("."), e.fix or "unset SSL_CERT_FILE") from None
    origin = f"SSL_CERT_FILE={cafile}" if environ.get("SSL_CERT_FILE") else f"certifi ({cafile})"
    try:
        ctx = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as e:
        raise Fail(f"the CA bundle {cafile} cannot be loaded ({e})",
                   "set SSL_CERT_FILE to a valid PEM CA bundle, e.g. `export SSL_CERT_FILE=$(.venv/bin/python -m certifi)`")
    if not ctx.get_ca_certs() and cafile:
        raise Fail(f"the CA bundle {cafile} holds no CA certificates",
                   "set SSL_CERT_FILE to a valid PEM CA bundle, e.g. `export SSL_CERT_FILE=$(.venv/bin/python -m certifi)`")
    return ctx, origin


def check_account(creds: config.Credentials, url: str, ctx: ssl.SSLContext, timeout: float) -> str:
    req = urllib.request.Request(url.rstrip("/") + "/v2/account",
                                 headers={"APCA-API-KEY-ID": creds.api_key, "APCA-API-SECRET-KEY": creds.secret_key,
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx if url.startswith("https") else None) as r:
            body = json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise Fail(f"Alpaca rejected API key {config.mask(creds.api_key)} (HTTP {e.code} from {url})",
                       "check ALPACA_API_KEY/ALPACA_SECRET_KEY in config.env, and ALPACA_PAPER (paper keys need "
                       "the paper endpoint)")
        raise Fail(f"the Alpaca account call to {url} answered HTTP {e.code}",
                   "check ALPACA_TRADING_URL, or retry later if Alpaca reports an outage")
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
            raise Fail(f"TLS certificate verification failed for {url} ({reason})",
                       "set SSL_CERT_FILE to a CA bundle that includes the public roots "
                       "(`export SSL_CERT_FILE=$(.venv/bin/python -m certifi)`)")
        raise Fail(f"cannot reach {url} ({reason})", "check the network, proxy settings and ALPACA_TRADING_URL")
    except (OSError, ValueError) as e:
        raise Fail(f"the Alpaca account call to {url} failed ({e})", "check the network and ALPACA_TRADING_URL")
    status = body.get("status", "?") if isinstance(body, dict) else "?"
    return f"credentials {config.mask(creds.api_key)} accepted by {url} (account status {status})"


def check_data_auth(creds: config.Credentials, url: str, ctx: ssl.SSLContext, timeout: float) -> str:
    """Credentials check against a custom market-data REST URL (no trading API configured)."""
    q = urllib.parse.urlencode({"symbols": "SPY", "timeframe": "1Min", "limit": "1"})
    req = urllib.request.Request(f"{url.rstrip('/')}/v2/stocks/bars?{q}",
                                 headers={"APCA-API-KEY-ID": creds.api_key, "APCA-API-SECRET-KEY": creds.secret_key})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx if url.startswith("https") else None):
            pass
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise Fail(f"the data API {url} rejected API key {config.mask(creds.api_key)} (HTTP {e.code})",
                       "check ALPACA_API_KEY/ALPACA_SECRET_KEY in config.env")
        raise Fail(f"the data API {url} answered HTTP {e.code}", "check ALPACA_DATA_URL")
    except (urllib.error.URLError, OSError) as e:
        raise Fail(f"cannot reach the data API {url} ({getattr(e, 'reason', e)})",
                   "check the network and ALPACA_DATA_URL")
    return f"credentials {config.mask(creds.api_key)} accepted by the data API {url}"


def check_stream(url: str, ctx: ssl.SSLContext, timeout: float) -> str:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "wss") or not u.hostname:
        raise Fail(f"stream URL {url!r} is not a ws:// or wss:// URL", "fix ALPACA_STREAM_URL in config.env or unset it")
    port = u.port or (443 if u.scheme == "wss" else 80)
    try:
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
    except OSError as e:
        raise Fail(f"cannot open a TCP connection to the stream {u.hostname}:{port} ({e.strerror or e})",
                   "check the network, firewall and proxy, or ALPACA_STREAM_URL")
    try:
        if u.scheme == "wss":
            try:
                with ctx.wrap_socket(sock, server_hostname=u.hostname) as tls:
                    version = tls.version()
            except ssl.SSLCertVerificationError as e:
                raise Fail(f"TLS certificate verification failed for the stream {u.hostname} ({e.verify_message})",
                           "set SSL_CERT_FILE to a CA bundle that includes the public roots "
                           "(`export SSL_CERT_FILE=$(.venv/bin/python -m certifi)`)")
            except (ssl.SSLError, OSError) as e:
                raise Fail(f"TLS handshake with the stream {u.hostname}:{port} failed ({e})",
                           "check for a TLS-intercepting proxy or firewall; SSL_CERT_FILE must include its CA")
            return f"stream {u.hostname}:{port} reachable ({version})"
        return f"stream {u.hostname}:{port} reachable (plain TCP)"
    finally:
        sock.close()


def check_fifo(path: Path) -> str:
    """The FIFO and its directory by the crate's rules (``src/private.rs``, ``src/pipe/mod.rs``,
    through the extension), changing nothing."""
    parent = path.parent
    try:
        os.lstat(parent)
    except FileNotFoundError:
        anc = parent
        while not anc.exists():
            anc = anc.parent
        if not os.access(anc, os.W_OK | os.X_OK):
            raise Fail(f"the FIFO directory {parent} does not exist and {anc} is not writable",
                       "set BARBRIDGE_RUNTIME_DIR to a directory you own")
        return f"FIFO {path} (its private directory will be created 0700)"
    import barbridge  # type: ignore[import-not-found]

    try:
        barbridge.ensure_private_dir(parent)  # it exists: checked (parents included), never changed
    except ValueError as e:
        raise Fail(f"the FIFO directory is refused: {e}", "set BARBRIDGE_RUNTIME_DIR to a private directory of yours")
    try:
        exists = barbridge.check_fifo(path)
    except ValueError as e:
        raise Fail(f"the FIFO is refused: {e}", f"remove {path} or choose another runtime dir")
    if not exists:
        return f"FIFO {path} (will be created 0600 in a private directory)"
    return f"FIFO {path} is a private FIFO you own"


def run(mode: str, fifo: Path, stream_url: Optional[str], trading_url: Optional[str], feed: str,
        timeout: float, *, environ: Optional[MutableMapping[str, str]] = None,
        say: Callable[[str], None] = _print) -> int:
    """The checks in order; each passed one is a line ``  ok    ...`` to ``say``, the first failure a
    line ``  FAIL  sentence. Fix: ...`` and 1 (0 when all pass). ``environ``: the settings (default
    ``os.environ``; the launcher passes its own, ``config.env`` included). Blocking (network)."""
    environ = os.environ if environ is None else environ

    def ok(msg: str) -> None:
        say(f"  ok    {msg}")

    creds = None
    try:
        creds = config.credentials_from_env(environ)
        if mode == "live":
            if creds is None:
                raise Fail("live mode needs Alpaca credentials and none are set",
                           "put ALPACA_API_KEY and ALPACA_SECRET_KEY in config.env (see config.env.example), "
                           "or run with --demo")
            ok(f"credentials present ({creds.origin}, key {config.mask(creds.api_key)})")
        else:
            ok("demo mode: offline, no credentials or network needed")
        ctx, origin = ssl_context(environ)
        ok(f"CA bundle usable: {origin} ({len(ctx.get_ca_certs())} CA certificates)")
        if mode == "live":
            assert creds is not None  # refused above without them
            paper = environ.get("ALPACA_PAPER", "true").strip().lower() not in ("0", "false", "no")
            data_url = environ.get("ALPACA_DATA_URL")
            if not trading_url and data_url:  # a custom data endpoint (proxy, test server): check keys there
                ok(check_data_auth(creds, data_url, ctx, timeout))
            else:
                url = trading_url or (PAPER_TRADING if paper else LIVE_TRADING)
                ok(check_account(creds, url, ctx, timeout))
            crypto = config.parse_asset(environ.get("ASSET")) == "crypto"  # the crypto stream: 24/7 pairs
            ok(check_stream(stream_url or (CRYPTO_STREAM if crypto else DEFAULT_STREAM.format(feed=feed)), ctx, timeout))
        ok(check_fifo(fifo))
    except Fail as f:
        text = config.scrub(f"{f.sentence}. Fix: {f.fix}.", [creds.api_key, creds.secret_key] if creds else [])
        say(f"  FAIL  {text}")
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bridge.preflight", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("live", "demo"), required=True)
    ap.add_argument("--fifo", required=True)
    ap.add_argument("--stream-url", default=os.environ.get("ALPACA_STREAM_URL") or None)
    ap.add_argument("--trading-url", default=os.environ.get("ALPACA_TRADING_URL") or None)
    ap.add_argument("--feed", default=os.environ.get("ALPACA_FEED") or "iex")
    ap.add_argument("--timeout", type=float, default=TIMEOUT)
    a = ap.parse_args(argv)
    return run(a.mode, Path(a.fifo), a.stream_url, a.trading_url, a.feed, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
