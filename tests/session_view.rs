//! One per-symbol session view: a stock and a crypto pair, each halted for a while and with a
//! hole, as the status file, `/metrics`, the live page (`/session.json`) and `gaps` (JSON and
//! text, read back from the journal) show them. All four must agree on the holes and the
//! halted minutes: none of them computes the view on its own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use barbridge::consumer::journal::{FsyncPolicy, Journal};
use barbridge::ops::http::{HttpOptions, HttpServer};
use barbridge::wire::trading::{TradingState, TradingStatus};
use barbridge::{Consumer, ManualClock, StatusReport};

/// 2025-10-08, a Wednesday: the NYSE opens 13:30 UTC, closes 20:00 UTC.
const OPEN_MS: i64 = 1_759_930_200_000;
/// 2025-10-08 00:00 UTC: the crypto pair's day.
const UTC_DAY_MS: i64 = 1_759_881_600_000;
const MIN: i64 = 60_000;

fn bar(symbol: &str, ts_ms: i64) -> String {
    format!(r#"{{"symbol":"{symbol}","timestamp_ms":{ts_ms},"open":1,"high":2,"low":1,"close":1.5,"volume":10}}"#)
}

/// Bars at `start + m` for each minute `m` in `minutes`, a halt over [10, 20) and a hole at
/// [30, 35): 10 halted minutes and one hole of 5 minutes.
fn feed(consumer: &Consumer, symbol: &str, start: i64) {
    for m in (0..10).chain(20..30).chain(35..40) {
        consumer.ingest_line(bar(symbol, start + m * MIN).as_bytes()).unwrap();
    }
    consumer.ingest_trading_status(TradingStatus::new(symbol, start + 10 * MIN, TradingState::Halted, "T1", "Halt News Pending")).unwrap();
    consumer.ingest_trading_status(TradingStatus::new(symbol, start + 20 * MIN, TradingState::Trading, "T1", "")).unwrap();
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_owned()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// (hole minutes, halted minutes) of `symbol` in a `gaps` JSON symbol list.
fn from_gaps_json(list: &serde_json::Value, symbol: &str) -> (i64, i64) {
    let g = list.as_array().unwrap().iter().find(|g| g["symbol"] == symbol).unwrap_or_else(|| panic!("{symbol} in {list}"));
    let holes = g["holes"].as_array().unwrap().iter().map(|h| h["minutes"].as_i64().unwrap()).sum();
    (holes, g["halted_minutes"].as_i64().unwrap())
}

#[test]
fn status_metrics_page_and_gaps_show_the_same_session_view() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    // 21:00 UTC: the stock session is over, the pair's UTC day still runs.
    let clock = ManualClock::new(OPEN_MS + 450 * MIN);
    let consumer = Consumer::builder().clock(clock).journal(Journal::open(&journal, FsyncPolicy::Always).unwrap()).build().unwrap();
    feed(&consumer, "SPY", OPEN_MS);
    feed(&consumer, "BTC/USD", UTC_DAY_MS + 60 * MIN);
    consumer.flush();
    let expected = (5, 10);

    // The status file.
    let report = StatusReport::collect(&consumer, None);
    for sym in ["SPY", "BTC/USD"] {
        assert_eq!((report.session_holes[sym], report.session_halted[sym]), expected, "status file, {sym}");
    }

    // /metrics and the page, from the consumer's own HTTP endpoint.
    let http = HttpServer::start(consumer.clone(), "127.0.0.1:0", HttpOptions::default()).unwrap();
    let metrics = get(http.local_addr(), "/metrics");
    let page: serde_json::Value = serde_json::from_str(&get(http.local_addr(), "/session.json")).unwrap();
    http.stop();
    for sym in ["SPY", "BTC/USD"] {
        let holes = metric(&metrics, &format!("barbridge_symbol_session_holes_seconds{{symbol=\"{sym}\"}}"));
        let halted = metric(&metrics, &format!("barbridge_symbol_session_halted_seconds{{symbol=\"{sym}\"}}"));
        assert_eq!((holes, halted), (Some(expected.0 as f64 * 60.0), Some(expected.1 as f64 * 60.0)), "/metrics, {sym}");
        let view = page["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == sym).unwrap();
        let holes: i64 = view["holes"].as_array().unwrap().iter().map(|h| h["minutes"].as_i64().unwrap()).sum();
        assert_eq!((holes, view["halted_minutes"].as_i64().unwrap()), expected, "page, {sym}");
    }

    // `gaps`, read back from the journal: JSON, then text.
    let gaps = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barbridge"));
        cmd.args(["gaps", "--date", "2025-10-08", "--symbols", "SPY,BTC/USD", "--journal"]).arg(&journal);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let doc: serde_json::Value = serde_json::from_str(&gaps(true)).unwrap();
    assert_eq!(from_gaps_json(&doc["symbols"], "SPY"), expected, "gaps --json, SPY");
    assert_eq!(from_gaps_json(&doc["crypto"]["symbols"], "BTC/USD"), expected, "gaps --json, BTC/USD");
    let text = gaps(false);
    assert!(text.contains("    hole at 10:00"), "gaps text, SPY hole (New York time): {text}");
    let spy_row = text.lines().find(|l| l.starts_with("SPY ")).unwrap();
    let cols: Vec<&str> = spy_row.split_whitespace().collect();
    assert_eq!((cols[5], cols[6]), ("5", "10"), "gaps text, SPY: {spy_row}");
    assert!(text.contains("    hole at 01:30 UTC: 5 minute(s)"), "gaps text, BTC/USD hole: {text}");
    assert!(text.contains("    halted 01:10-01:20 UTC: 10 minute(s) without bars, code T1"), "gaps text, BTC/USD halt: {text}");
}
