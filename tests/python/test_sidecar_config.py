"""The sidecar's configuration: config.env parsed by the one parser, its precedence, the one CA
bundle for every connection (a private CA in front of the fake Alpaca server), the websocket
keepalive, and what it says while no consumer reads the FIFO."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import KEY, PY, REPO, SECRET, sidecar_env, truth, wait_for
from bridge import config


# ---------------------------------------------------------------- the parser
def parse(tmp_path: Path, text: str) -> dict:
    f = tmp_path / "config.env"
    f.write_text(text)
    return config.parse_env_file(f)


def test_values_parse_like_dotenv(tmp_path):
    got = parse(tmp_path, "\n".join([
        "ALPACA_STREAM_URL=ws://h/a#b",                       # a '#' inside a value is kept
        "ALPACA_FEED=iex # a comment",                        # a space then '#' starts a comment
        "ALERT_CMD=curl -H 'Content-Type: application/json' -d \"$1\" https://x/y  # note",
        "ALPACA_SECRET_KEY='s p#c\"'",                        # single quotes: literal
        'EOD_CMD="say \\"hi\\" \\\\o/" # done',               # double quotes: \" and \\ escapes
        "export SYMBOLS=SPY SPXL",
        "RUST_LOG=",
    ]) + "\n")
    assert got == {"ALPACA_STREAM_URL": "ws://h/a#b", "ALPACA_FEED": "iex",
                   "ALERT_CMD": "curl -H 'Content-Type: application/json' -d \"$1\" https://x/y",
                   "ALPACA_SECRET_KEY": 's p#c"', "EOD_CMD": 'say "hi" \\o/', "SYMBOLS": "SPY SPXL", "RUST_LOG": ""}
    assert config.parse_symbols(got["SYMBOLS"]) == ["SPY", "SPXL"]


def test_the_parser_is_python_dotenv_without_expansion(tmp_path):
    """python-dotenv's parser: double quotes know its escapes (\\n is a newline, where the hand-written
    parser kept it as two characters), a quoted value may span lines, ``$X`` is never expanded."""
    got = parse(tmp_path, 'EOD_CMD="a\\nb"\nALERT_CMD="line1\nline2"\nRUST_LOG=${HOME}\n')
    assert got == {"EOD_CMD": "a\nb", "ALERT_CMD": "line1\nline2", "RUST_LOG": "${HOME}"}


@pytest.mark.parametrize("text,message", [
    ("SYMBOL=SPY\n", "config.env:1: unknown key SYMBOL; did you mean SYMBOLS?"),
    ("# c\nALPACA_APIKEY=x\n", "config.env:2: unknown key ALPACA_APIKEY; did you mean ALPACA_API_KEY?"),
    ("PATH=/tmp\n", "unknown key PATH (config.env.example lists every key)"),
    ("ALPACA_FEED='iex\n", "unbalanced ' quote in the value of ALPACA_FEED"),
    ("ALPACA_FEED='iex' sip\n", "text after the closing quote of ALPACA_FEED's value"),
    ("just words\n", "config.env:1 is not a KEY=value line"),
])
def test_bad_lines_are_one_sentence_naming_the_line(tmp_path, text, message):
    with pytest.raises(config.ConfigError) as e:
        parse(tmp_path, text)
    assert message in str(e.value) and "Fix:" in str(e.value)


def test_every_key_of_the_example_is_known():
    keys = set()
    for line in (REPO / "config.env.example").read_text().splitlines():
        line = line.lstrip("#").strip()
        if "=" in line and line.split("=", 1)[0].isupper() and " " not in line.split("=", 1)[0]:
            keys.add(line.split("=", 1)[0])
    assert keys and keys <= set(config.KNOWN_KEYS), keys - set(config.KNOWN_KEYS)


def test_sidecar_refuses_an_unknown_key(tmp_path):
    (tmp_path / "config.env").write_text("SYMBOL=SPY\n")
    r = subprocess.run([PY, "-m", "bridge", "--source", "synthetic", "--count", "1", "--config",
                        str(tmp_path / "config.env"), "--fifo", str(tmp_path / "run" / "bars.fifo")],
                       env=sidecar_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown key SYMBOL; did you mean SYMBOLS?" in r.stderr, r.stderr


# ---------------------------------------------------------------- precedence
def test_stream_url_only_in_config_file_is_used(tmp_path, fake_server, fifo_path, start_consumer, start_sidecar):
    (tmp_path / "config.env").write_text(f"ALPACA_STREAM_URL={fake_server.ws_url}\nSYMBOLS=SPY SH\n")
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, "--config", str(tmp_path / "config.env"), "--symbols", "SPY,SH,SDS")
    wait_for(lambda: len({b["symbol"] for b in consumer.bars()}) == 3, timeout=60, what="bars from the fake server")
    assert fake_server.ws_url in side.stderr()
    # status details are lists for a person, not Python reprs
    ours = [x for x in side.stderr().splitlines() if " bridge INFO status " in x]
    assert "status subscribed: bars SDS,SH,SPY; updated bars SDS,SH,SPY" in "\n".join(ours), ours
    assert not [x for x in ours if "['" in x], ours


def test_keepalive_does_not_cut_a_busy_connection(tmp_path):
    from bridge.alpaca_websocket_bridge import build_parser
    from bridge.gate import BarGate
    from bridge.sources.alpaca import AlpacaSource

    args = build_parser().parse_args([])
    assert args.ping_timeout == 180
    src = AlpacaSource(BarGate(_NullSink(), ["SPY"]), ["SPY"], config.Credentials(KEY, SECRET, "test"))
    assert src.stream._websocket_params["ping_timeout"] == 180  # what the SDK passes to websockets.connect
    os.environ["WS_PING_TIMEOUT"] = "45"
    try:
        assert build_parser().parse_args([]).ping_timeout == 45
    finally:
        del os.environ["WS_PING_TIMEOUT"]


class _NullSink:
    def __init__(self) -> None:
        import barbridge
        self.native = barbridge.Consumer()  # what the publisher sends into

    def submit_bar(self, bar: dict) -> bool:
        return True

    def submit_status(self, state: str, detail: str = "") -> None:
        pass


# ---------------------------------------------------------------- one CA bundle for every connection
def _private_ca(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost/127.0.0.1 signed by it: (ca.pem, cert, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=barbridge test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "server.pem", d / "server.key"


class TlsProxy:
    """TLS on 127.0.0.1 in front of a plain TCP port (the fake server's websocket and REST)."""

    def __init__(self, cert: Path, key: Path, upstream_port: int) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.upstream = upstream_port
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                w.close()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                w.close()
                return
            await asyncio.gather(pipe(r, uw), pipe(ur, w))

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ctx)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def tls_front(tmp_path, fake_server):
    ca, cert, key = _private_ca(tmp_path)
    proxy = TlsProxy(cert, key, int(fake_server.data_url.rsplit(":", 1)[1]))
    yield ca, proxy.port
    proxy.stop()


def test_private_ca_governs_stream_rest_backfill_and_warmup(tmp_path, tls_front, fake_server, fifo_path,
                                                            start_consumer, start_sidecar):
    ca, port = tls_front
    env = {"SSL_CERT_FILE": str(ca)}
    consumer = start_consumer(fifo_path)
    side = start_sidecar(fifo_path, "--stream-url", f"wss://localhost:{port}/v2/iex", "--data-url",
                         f"https://localhost:{port}", "--symbols", "SPY,SH,SDS", env=env)
    # the prefilled minutes (before the sidecar connected) only come over REST: backfill worked
    wait_for(lambda: fake_server.produced_until is not None and len(consumer.bars()) >= 3 * 8, timeout=60,
             what="streamed and backfilled bars over TLS")
    side.signal(2)
    side.wait(20)
    expected = truth(fake_server, ("SPY", "SH", "SDS"))
    got = {(b["symbol"], b["timestamp_ms"]) for b in consumer.bars()}
    prefill = {k for k in expected if k[1] < fake_server._start_minute}
    assert prefill and prefill <= got, "the REST backfill over TLS did not deliver the history"
    assert "backfill failed" not in side.stderr() and "CERTIFICATE_VERIFY_FAILED" not in side.stderr(), side.stderr()
    # the warm-up's REST client trusts the same bundle
    out = tmp_path / "warm.jsonl"
    r = subprocess.run([PY, "-m", "bridge.warmup", "--symbols", "SPY", "--days", "1", "--all-hours", "--out", str(out)],
                       env=sidecar_env({**env, "ALPACA_DATA_URL": f"https://localhost:{port}"}), cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) >= 5


# ---------------------------------------------------------------- waiting for a reader
def test_sidecar_says_once_that_it_waits_for_a_reader_and_once_when_one_arrives(fifo_path, start_sidecar,
                                                                                 start_consumer):
    side = start_sidecar(fifo_path, "--source", "synthetic", "--interval", "0.2", "--symbols", "SPY")
    waiting = f"waiting for a reader on {fifo_path}"
    wait_for(lambda: waiting in side.stderr(), timeout=30, what="the waiting notice")
    consumer = start_consumer(fifo_path)
    wait_for(lambda: f"a reader opened {fifo_path}" in side.stderr(), timeout=30, what="the arrival notice")
    wait_for(lambda: len(consumer.bars()) >= 8, timeout=30, what="bars delivered")
    err = side.stderr()
    assert err.count(waiting) == 1 and err.count("a reader opened") == 1, err
    # the consumer's words for a synthetic source that stops, and for one symbol
    side.signal(2)
    assert side.wait(20) == 0
    wait_for(lambda: "sidecar disconnected: sidecar stopping" in consumer.stderr(), timeout=20, what="the status")
    consumer.signal(2)
    consumer.wait(20)
    assert "from Alpaca" not in consumer.stderr() and consumer.stderr().rstrip().endswith(" 1 symbol"), consumer.stderr()
