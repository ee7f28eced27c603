"""Running barbridge like production software, with the real tools: promtool on the live
endpoints and the alert rules, a real Prometheus scraping a running consumer, the live page in
headless chromium through a stale episode, systemd-analyze on the units, JSON logs, the health
check, and a wheel installed into a fresh venv feeding a consumer.

Tools that are missing (Debian packages prometheus, chromium, systemd; scripts/test_all.sh
installs them) skip their test with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from conftest import PY, REPO, Proc, wait_for

DEPLOY = REPO / "deploy"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (scripts/test_all.sh installs it with apt-get)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def bound_addr(proc: Proc, pattern: str) -> str:
    """HOST:PORT a process logged it serves on (it was started with port 0)."""
    m = wait_for(lambda: re.search(pattern, proc.stderr()), timeout=30, what=f"{proc.name} to log its address")
    return m.group(1)


def metric(text: str, series: str) -> Optional[float]:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def start_pair(procs, tmp_path, consumer_bin, *, stale_after: str = "2", interval: str = "0.05",
               sidecar: Optional[list[str]] = None, extra: tuple[str, ...] = ()) -> tuple[Proc, Proc, str, str]:
    """A consumer with --metrics-addr and a synthetic sidecar with its own metrics, both logging
    JSON; returns them and their metrics addresses."""
    fifo = tmp_path / "run" / "bars.fifo"
    consumer = Proc([str(consumer_bin), "--log-format", "json", "run", "--fifo", str(fifo), "--metrics-addr",
                     "127.0.0.1:0", "--stale-after", stale_after, "--status-file", str(tmp_path / "status.json"),
                     "--journal", str(tmp_path / "journal")],
                    tmp_path, "consumer", env={**os.environ, "RUST_LOG": "info"})
    procs.append(consumer)
    caddr = bound_addr(consumer, r"metrics on http://(127\.0\.0\.1:\d+)/metrics")
    argv = sidecar or [PY, "-m", "bridge"]
    side = Proc(argv + ["--source", "synthetic", "--interval", interval, "--fifo", str(fifo), "--heartbeat", "0.5",
                        "--metrics-addr", "127.0.0.1:0", "--log-format", "json", *extra],
                tmp_path, "sidecar", env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    procs.append(side)
    saddr = bound_addr(side, r"sidecar metrics on http://(127\.0\.0\.1:\d+)/metrics")
    wait_for(lambda: (metric(get(f"http://{caddr}/metrics"), "barbridge_bars_accepted_total") or 0) >= 8,
             what="bars counted on the consumer's /metrics")
    return consumer, side, caddr, saddr


def json_log_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        obj = json.loads(line)  # every line is one JSON object
        assert {"ts", "level", "target", "message"} <= obj.keys(), obj
        out.append(obj)
    return out


# ---------------------------------------------------------------- metrics and logs
def test_live_metrics_pass_promtool_cover_the_deploy_files_and_logs_are_json(procs, tmp_path, consumer_bin):
    promtool = need("promtool")
    consumer, side, caddr, saddr = start_pair(procs, tmp_path, consumer_bin)
    exposed = {}
    for who, addr in (("consumer", caddr), ("sidecar", saddr)):
        text = get(f"http://{addr}/metrics")
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"promtool on the {who}'s metrics: {r.stdout}{r.stderr}"
        exposed[who] = text
    c, s = exposed["consumer"], exposed["sidecar"]
    assert metric(c, 'barbridge_feed_state{state="live"}') == 1.0
    assert metric(c, 'barbridge_rejects_total{reason="missing_field"}') == 0
    assert metric(c, 'barbridge_symbol_bars_total{symbol="SPY"}') >= 1
    assert metric(s, 'barbridge_sidecar_bars_received_total{source="synthetic"}') >= 8
    assert metric(s, "barbridge_sidecar_backlog_lines") is not None

    # Every barbridge_ name the alert rules and the dashboard use is one the programs expose.
    names = {line.split()[2] for line in (c + s).splitlines() if line.startswith("# TYPE ")}
    for f in (DEPLOY / "prometheus" / "alerts.yml", DEPLOY / "grafana" / "barbridge-dashboard.json"):
        used = set(re.findall(r"barbridge_[a-z_]+", f.read_text()))
        assert used and used <= names, f"{f.name} uses metrics nobody exposes: {sorted(used - names)}"

    side.signal(2)
    assert side.wait(30) == 0
    consumer.signal(2)
    assert consumer.wait(30) == 0
    for proc in (consumer, side):
        lines = json_log_lines(proc.stderr())
        assert any("metrics on http://127.0.0.1:" in line["message"] for line in lines), proc.name


def test_consumer_refuses_a_bad_metrics_address_in_one_sentence(consumer_bin, tmp_path):
    r = subprocess.run([str(consumer_bin), "run", "--fifo", str(tmp_path / "run" / "bars.fifo"),
                        "--metrics-addr", "localhost:notaport"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        'barbridge: --metrics-addr "localhost:notaport" is not an address (use HOST:PORT, e.g. 127.0.0.1:9464)')


# ---------------------------------------------------------------- a real Prometheus
def test_prometheus_scrapes_the_running_consumer_and_loads_the_rules(procs, tmp_path, consumer_bin):
    prometheus = need("prometheus")
    consumer, side, caddr, saddr = start_pair(procs, tmp_path, consumer_bin)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": "barbridge", "static_configs": [{"targets": [caddr]}]},
                           {"job_name": "barbridge-sidecar", "static_configs": [{"targets": [saddr]}]}],
    }))
    prom = Proc([prometheus, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}"], tmp_path, "prometheus")
    procs.append(prom)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(q: str) -> list:
        try:
            return json.loads(get(f"{api}/query?query={urllib.parse.quote(q)}"))["data"]["result"]
        except OSError:
            return []

    rows = wait_for(lambda: [r for r in query("barbridge_bars_accepted_total") if float(r["value"][1]) > 0],
                    timeout=60, what="Prometheus to hold a bar count scraped from the consumer")
    assert rows[0]["metric"]["job"] == "barbridge"
    wait_for(lambda: query('barbridge_sidecar_bars_received_total{source="synthetic"} > 0'), timeout=60,
             what="Prometheus to hold the sidecar's bar count")
    rules = json.loads(get(f"{api}/rules"))["data"]["groups"]
    loaded = {r["name"] for g in rules for r in g["rules"]}
    assert {"BarbridgeNoBarInSession", "BarbridgeFeedStale", "BarbridgeLinesLost", "BarbridgeReconnectFlapping"} <= loaded


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    promtool = need("promtool")
    for argv in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        r = subprocess.run([promtool, *argv], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = need("promtool")
    dash = json.loads((DEPLOY / "grafana" / "barbridge-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    # Each query as a recording rule: promtool parses it (Grafana's $instance becomes a regex).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$instance", ".*")} for i, e in enumerate(exprs)]}]}
    (tmp_path / "q.yml").write_text(json.dumps(rules))
    r = subprocess.run([promtool, "check", "rules", str(tmp_path / "q.yml")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- the page
def chromium(url: str, *args: str) -> str:
    exe = need("chromium")
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,800", "--virtual-time-budget=4000", *args, url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_page_in_headless_chromium_shows_the_symbols_and_turns_stale(procs, tmp_path, consumer_bin):
    need("chromium")
    consumer, side, caddr, _ = start_pair(procs, tmp_path, consumer_bin, stale_after="2")
    page = f"http://{caddr}/"
    dom = chromium(page, "--dump-dom")
    assert 'data-state="live"' in dom, dom[:3000]
    for symbol in ("SPY", "SPXL", "SH", "SDS"):
        assert f'data-symbol="{symbol}"' in dom
    assert "<polyline" in dom, "no sparkline drawn"
    chromium(page, f"--screenshot={tmp_path / 'page-live.png'}")

    side.kill()  # the sidecar dies: within --stale-after the page says so
    wait_for(lambda: json.loads(get(f"http://{caddr}/status.json"))["health"]["state"] == "stale", timeout=30,
             what="the consumer to declare the feed stale")
    dom = chromium(page, "--dump-dom")
    assert 'data-state="stale"' in dom, dom[:3000]
    assert 'class="stale-band"' in dom, "the stale episode is not marked on the timeline"
    shot = tmp_path / "page-stale.png"
    chromium(page, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'page-live.png'} {shot}")


def test_page_shows_a_halt_the_last_bar_the_market_and_the_scale(procs, tmp_path, consumer_bin):
    """A trader's page: a halted symbol says HALTED with its code (its bar-less minutes are halted,
    not holes), each symbol its last bar's OHLCV, the change and the sparkline's scale, and the
    header the market's session and New York's clock. The synthetic source starts 10 minutes ago
    and halts SDS 5 minutes in every 6: it is halted from the 7th minute until after the 12th, so
    for at least a minute after catching up."""
    need("chromium")
    start = (int(time.time()) // 60 - 10) * 60_000
    _, _, caddr, _ = start_pair(procs, tmp_path, consumer_bin, stale_after="30",
                                extra=("--halt-every", "6", "--start-ms", str(start)))
    wait_for(lambda: "SDS" in json.loads(get(f"http://{caddr}/status.json")).get("halted", {}), timeout=30,
             what="SDS halted in the status file")
    session = json.loads(get(f"http://{caddr}/session.json"))
    sds = next(s for s in session["symbols"] if s["symbol"] == "SDS")
    assert sds["halted"]["code"] == "T1" and sds["holes"] == [], sds
    assert session["market"] in ("pre_open", "open", "closed", "no_session") and session["symbols_halted"] == 1
    dom = chromium(f"http://{caddr}/", "--dump-dom")
    row = re.search(r'<tr[^>]*data-symbol="SDS"[^>]*>.*?</tr>', dom, re.S)
    assert row and 'data-trading="halted"' in row.group(0) and "HALTED" in row.group(0) and "(T1)" in row.group(0), \
        dom[:4000]
    spy = re.search(r'<tr[^>]*data-symbol="SPY"[^>]*>.*?</tr>', dom, re.S)
    assert spy and 'class="scale"' in spy.group(0) and re.search(r"[+-]\d+\.\d\d \([+-]\d+\.\d\d%\)", spy.group(0)), \
        spy.group(0) if spy else dom[:4000]
    assert re.search(r'id="market"[^>]*>(market|no session)', dom) and "New York " in dom, dom[:3000]
    chromium(f"http://{caddr}/", f"--screenshot={tmp_path / 'page-halt.png'}")


def test_page_and_endpoints_serve_nothing_else(procs, tmp_path, consumer_bin):
    fifo = tmp_path / "run" / "bars.fifo"
    consumer = Proc([str(consumer_bin), "run", "--fifo", str(fifo), "--metrics-addr", "127.0.0.1:0"], tmp_path,
                    "consumer")
    procs.append(consumer)
    addr = bound_addr(consumer, r"metrics on http://(127\.0\.0\.1:\d+)/metrics")
    page = get(f"http://{addr}/")
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/", ""), \
        "the page must work offline: no external script, style or font"
    status = json.loads(get(f"http://{addr}/status.json"))
    assert status["health"]["state"] == "waiting" and status["fifo"] == str(fifo)
    with pytest.raises(urllib.error.HTTPError) as e:
        get(f"http://{addr}/../../etc/passwd")
    assert e.value.code == 404


# ---------------------------------------------------------------- health check
def test_status_check_prints_one_word_and_exits_with_the_state(procs, tmp_path, consumer_bin):
    status_file = tmp_path / "status.json"

    def check() -> tuple[int, str]:
        r = subprocess.run([str(consumer_bin), "status", "--check", "--status-file", str(status_file)],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout

    assert check() == (2, "NOT RUNNING\n")  # no consumer, no file
    consumer, side, _, _ = start_pair(procs, tmp_path, consumer_bin, stale_after="2")
    assert wait_for(lambda: check() == (0, "LIVE\n"), timeout=30, what="status --check to say LIVE")  # file: every 1 s
    side.kill()
    assert wait_for(lambda: check() == (1, "STALE\n"), timeout=30, what="status --check to say STALE")
    consumer.kill()
    assert wait_for(lambda: check() == (2, "NOT RUNNING\n"), timeout=30, what="status --check to say NOT RUNNING")


# ---------------------------------------------------------------- systemd
def test_systemd_units_pass_systemd_analyze_verify(tmp_path, consumer_bin):
    analyze = need("systemd-analyze")
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".config" / "barbridge").mkdir(parents=True)
    runtime = tmp_path / "xdg-run"
    runtime.mkdir(mode=0o700)
    # The units run the installed programs: stand-ins at the install paths (verify checks they
    # exist and are executable).
    (home / ".local" / "bin" / "barbridge").symlink_to(consumer_bin)
    (home / ".local" / "bin" / "barbridge-sidecar").symlink_to(Path(PY))
    units = sorted(str(p) for p in (DEPLOY / "systemd").iterdir() if p.suffix in (".service", ".timer", ".target"))
    assert len(units) >= 5
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_RUNTIME_DIR": str(runtime)}
    r = subprocess.run([analyze, "--user", "verify", "--man=no", *units], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr


# ---------------------------------------------------------------- packaging
def test_wheel_in_a_fresh_venv_feeds_a_consumer(procs, tmp_path, consumer_bin):
    maturin = REPO / ".venv" / "bin" / "maturin"
    if not maturin.exists():
        pytest.skip("maturin is not in .venv (scripts/test_all.sh installs it)")
    dist = tmp_path / "dist"
    r = subprocess.run([str(maturin), "build", "--release", "--locked", "-o", str(dist)], cwd=REPO,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(dist.glob("barbridge-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sidecar = venv / "bin" / "barbridge-sidecar"
    assert sidecar.exists()
    # Outside the checkout: no PYTHONPATH, run from an empty directory.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fifo = tmp_path / "run" / "bars.fifo"
    consumer = Proc([str(consumer_bin), "run", "--fifo", str(fifo), "--echo", "--status-file",
                     str(tmp_path / "status.json")], tmp_path, "consumer")
    procs.append(consumer)
    wait_for(fifo.exists, what="the FIFO")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    side = Proc([str(sidecar), "--source", "synthetic", "--interval", "0.05", "--count", "5", "--fifo", str(fifo)],
                outside, "sidecar", env=env)
    procs.append(side)
    assert side.wait(60) == 0, side.stderr()
    wait_for(lambda: consumer.stdout().count("\n") >= 5 * 4, what="20 bars echoed by the consumer")
    assert str(venv) in subprocess.run([str(venv / "bin" / "python"), "-c", "import bridge; print(bridge.__file__)"],
                                       capture_output=True, text=True, cwd=outside, env=env, timeout=60).stdout


def test_one_process_mode_serves_the_consumer_metrics(procs, tmp_path):
    side = Proc([PY, "-m", "bridge", "--source", "synthetic", "--sink", "inprocess", "--interval", "0.05",
                 "--heartbeat", "0.5", "--consumer-metrics-addr", "127.0.0.1:0",
                 "--status-file", str(tmp_path / "run" / "status.json")],
                tmp_path, "sidecar", env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    procs.append(side)
    addr = bound_addr(side, r"consumer metrics on http://(127\.0\.0\.1:\d+)/metrics")
    text = wait_for(lambda: (t := get(f"http://{addr}/metrics")) and (metric(t, "barbridge_bars_accepted_total") or 0) >= 8
                    and t, what="bars counted by the in-process consumer")
    assert metric(text, 'barbridge_feed_state{state="live"}') == 1.0
    assert 'data-state' in get(f"http://{addr}/")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    side.signal(2)
    assert side.wait(30) == 0, side.stderr()


def test_sidecar_metrics_count_a_close_code_a_reconnect_and_the_backfill(fake_server, start_sidecar,
                                                                          start_consumer, fifo_path):
    start_consumer(fifo_path)
    side = start_sidecar(fifo_path, "--symbols", "SPY,SH", "--metrics-addr", "127.0.0.1:0", server=fake_server)
    addr = bound_addr(side, r"sidecar metrics on http://(127\.0\.0\.1:\d+)/metrics")
    scrape = lambda: get(f"http://{addr}/metrics")  # noqa: E731
    wait_for(lambda: (metric(scrape(), 'barbridge_sidecar_bars_received_total{source="stream"}') or 0) >= 4,
             what="stream bars counted")
    fake_server.inject("close1011")
    text = wait_for(lambda: (t := scrape()) and (metric(t, "barbridge_sidecar_reconnects_total") or 0) >= 1 and t,
                    timeout=30, what="the reconnect counted")
    assert metric(text, 'barbridge_sidecar_disconnects_total{code="1011"}') == 1
    assert metric(text, "barbridge_sidecar_connects_total") == 2
    wait_for(lambda: (metric(scrape(), 'barbridge_sidecar_bars_received_total{source="backfill"}') or 0) >= 1,
             timeout=30, what="backfilled bars counted")


# ---------------------------------------------------------------- the launcher
def test_launcher_with_metrics_addr_serves_the_session_and_a_killed_sidecar_turns_it_stale(procs, tmp_path,
                                                                                           consumer_bin):
    port = free_port()
    cfg = tmp_path / "config.env"
    cfg.write_text(f"METRICS_ADDR=127.0.0.1:{port}\nLOG_FORMAT=json\n")
    cfg.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "APCA_", "BARBRIDGE_"))}
    # STALE_AFTER 2 s; the killed sidecar is restarted only after BACKOFF_MIN, long after that.
    env.update({"BARBRIDGE_RUNTIME_DIR": str(tmp_path / "rt"), "BARBRIDGE_BIN": str(consumer_bin),
                "STALE_AFTER": "2", "STALE_GRACE": "60", "BACKOFF_MIN": "60", "BACKOFF_MAX": "60",
                "DEMO_INTERVAL": "0.1", "HEARTBEAT": "0.3", "TICK": "0.2", "STATUS_EVERY": "0"})
    launcher = Proc(["bash", str(REPO / "scripts" / "launch_live_trading.sh"), "--demo", "--config", str(cfg),
                     "--run-dir", str(tmp_path / "runs")], tmp_path, "launcher", env=env)
    procs.append(launcher)
    base = f"http://127.0.0.1:{port}"

    def scrape() -> str:
        try:
            return get(f"{base}/metrics")
        except OSError:
            return ""

    wait_for(lambda: (metric(scrape(), "barbridge_bars_accepted_total") or 0) >= 8, timeout=300,
             what="the launcher's consumer to serve a bar count")
    assert metric(scrape(), 'barbridge_feed_state{state="live"}') == 1.0
    sidecar_pid = int((tmp_path / "rt" / "sidecar.pid").read_text().split()[0])
    os.kill(sidecar_pid, 9)
    wait_for(lambda: metric(scrape(), 'barbridge_feed_state{state="stale"}') == 1.0, timeout=30,
             what="the metrics to say stale")
    assert json.loads(get(f"{base}/session.json"))["state"] == "stale"
    assert f"live page: {base}/ (metrics: {base}/metrics)" in launcher.stderr() + launcher.stdout()
    # The launcher keeps each process's log apart, and the consumer's and sidecar's are JSON.
    logs = next((tmp_path / "runs").glob("*/consumer.log")).parent
    for name in ("consumer.log", "sidecar.log"):
        assert json_log_lines((logs / name).read_text()), name
    launcher.signal(15)
    assert launcher.wait(60) == 0, launcher.stdout()[-3000:]


def test_json_log_lines_carry_level_target_message_and_fields():
    import logging

    from bridge import jsonlog
    record = logging.LogRecord("bridge.sources", logging.WARNING, __file__, 1, "reconnect %d", (3,), None)
    record.close_code = 1011  # as passed with extra={"close_code": 1011}
    line = json.loads(jsonlog.JsonFormatter().format(record))
    assert (line["level"], line["target"], line["message"], line["fields"]) == (
        "WARNING", "bridge.sources", "reconnect 3", {"close_code": 1011})
