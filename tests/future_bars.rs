//! A bar (trading status, closed minute, quiet mark) from the future is refused on every path:
//! wire lines, pushed bars and statuses, minute parts, a journal being restored. Counted as
//! `rejects{future_bar}`, and no journal day file is made for it (issue 23, "Bad input").

use std::time::Duration;

use barbridge::bar::{Bar, BarKind};
use barbridge::consumer::journal::{FsyncPolicy, Journal};
use barbridge::wire::trading::{TradingState, TradingStatus};
use barbridge::{Consumer, ConsumerBuilder, ManualClock, RejectReason};

/// 2025-10-08 14:00 UTC, a minute start: "now" for these tests.
const NOW_MS: i64 = 1_759_932_000_000;
const MIN: i64 = 60_000;
/// 2095-01-03 15:00 UTC, a minute start.
const Y2095_MS: i64 = 3_944_905_200_000;
/// The default clock skew, ms.
const SKEW_MS: i64 = 300_000;

fn line(symbol: &str, ts: i64) -> String {
    format!(r#"{{"symbol":"{symbol}","timestamp_ms":{ts},"open":1,"high":2,"low":1,"close":2,"volume":5}}"#)
}

fn bar(ts: i64) -> Bar {
    Bar { timestamp_ms: ts, open: 1.0, high: 2.0, low: 1.0, close: 2.0, volume: 5.0, vwap: None, trade_count: None }
}

fn future(c: &Consumer) -> u64 {
    c.health().counters.rejected(RejectReason::FutureBar)
}

fn day_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().filter(|n| n.ends_with(".jsonl")).collect()
}

fn consumer_at(now_ms: i64, journal: Option<&std::path::Path>) -> std::sync::Arc<Consumer> {
    let mut b: ConsumerBuilder = Consumer::builder().clock(ManualClock::new(now_ms));
    if let Some(dir) = journal {
        b = b.journal(Journal::open(dir, FsyncPolicy::Never).unwrap());
    }
    b.build().unwrap()
}

#[test]
fn a_wire_line_from_the_future_is_refused_counted_and_gets_no_day_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = consumer_at(NOW_MS, Some(dir.path()));
    let err = c.ingest_line(line("SPY", Y2095_MS).as_bytes()).unwrap_err();
    assert_eq!(err.reason(), RejectReason::FutureBar);
    assert!(err.to_string().contains("ahead of this consumer's clock"), "{err}");
    // Just beyond the skew: the next minute after now + skew.
    let err = c.ingest_line(line("SPY", NOW_MS + SKEW_MS + MIN).as_bytes()).unwrap_err();
    assert_eq!(err.reason(), RejectReason::FutureBar);
    // Just inside: now + skew exactly; and the minute that just ended.
    c.ingest_line(line("SPY", NOW_MS + SKEW_MS).as_bytes()).unwrap();
    c.ingest_line(line("SPY", NOW_MS - MIN).as_bytes()).unwrap();
    assert_eq!(future(&c), 2);
    assert_eq!(c.health().counters.snapshot().rejects.get("future_bar"), Some(&2));
    assert_eq!(c.store().timestamps("SPY", 0, i64::MAX).len(), 2);
    c.flush();
    // Only today's file: no file for 2095, none for the day after.
    assert_eq!(day_files(dir.path()), vec!["bars-2025-10-08.jsonl".to_owned()], "{:?}", day_files(dir.path()));
    // The clock moves on: the bar refused a while ago is taken now.
    let clock = ManualClock::new(NOW_MS + 2 * MIN);
    let later = Consumer::builder().clock(clock).build().unwrap();
    later.ingest_line(line("SPY", NOW_MS + SKEW_MS + MIN).as_bytes()).unwrap();
}

#[test]
fn a_status_a_closed_minute_and_a_quiet_mark_from_the_future_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = consumer_at(NOW_MS, Some(dir.path()));
    let status = |ts: i64| {
        format!(r#"{{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":{ts},"status":"halted","code":"T1","reason":"Halt News Pending"}}"#)
    };
    let closed = |m: i64| {
        format!(
            r#"{{"type":"minute_closed","v":1,"minute_ms":{m},"closed_ms":{m},"by":"all","part":1,"parts":1,"bars":["SPY"],"halted":[],"none":[],"writer":"w"}}"#
        )
    };
    let quiet = |m: i64| format!(r#"{{"type":"minute_quiet","v":1,"minute_ms":{m},"quiet":["SPY"],"writer":"w"}}"#);
    for l in [status(Y2095_MS), status(NOW_MS + SKEW_MS + 1), closed(Y2095_MS), closed(NOW_MS + SKEW_MS + MIN), quiet(Y2095_MS)] {
        assert_eq!(c.ingest_line(l.as_bytes()).unwrap_err().reason(), RejectReason::FutureBar, "{l}");
    }
    assert!(!c.trading().is_halted("SPY"));
    c.ingest_line(status(NOW_MS + SKEW_MS).as_bytes()).unwrap();
    assert!(c.trading().is_halted("SPY"));
    // The one-process paths (a NATS subscriber's, the Python push's).
    let t = TradingStatus { symbol: "SH".into(), ts_ms: Y2095_MS, state: TradingState::Halted, code: "T1".into(), reason: String::new() };
    assert_eq!(c.ingest_trading_status(t).unwrap_err().reason(), RejectReason::FutureBar);
    assert_eq!(c.ingest_minute_quiet("w", Y2095_MS, &["SPY".to_owned()]).unwrap_err().reason(), RejectReason::FutureBar);
    assert_eq!(future(&c), 7);
    c.flush();
    assert_eq!(day_files(dir.path()), vec!["bars-2025-10-08.jsonl".to_owned()]);
}

#[test]
fn a_pushed_bar_from_the_future_is_refused() {
    let c = consumer_at(NOW_MS, None);
    for ts in [Y2095_MS, NOW_MS + SKEW_MS + MIN] {
        assert_eq!(c.ingest_bar("SPY", bar(ts), BarKind::Bar, None).unwrap_err().reason(), RejectReason::FutureBar);
        assert_eq!(c.ingest_bar_received("SPY", bar(ts), BarKind::Bar, None, Some(ts)).unwrap_err().reason(), RejectReason::FutureBar);
    }
    c.ingest_bar("SPY", bar(NOW_MS + SKEW_MS), BarKind::Bar, None).unwrap();
    assert_eq!(future(&c), 4);
    assert_eq!(c.store().timestamps("SPY", 0, i64::MAX).len(), 1);
}

#[test]
fn a_journal_holding_bars_from_the_future_loads_without_them() {
    let dir = tempfile::tempdir().unwrap();
    // A consumer whose clock was an hour ahead journaled a bar of "now + 1 h" into today's file.
    {
        let ahead = consumer_at(NOW_MS + 60 * MIN, Some(dir.path()));
        ahead.ingest_line(line("SPY", NOW_MS - MIN).as_bytes()).unwrap();
        ahead.ingest_line(line("SPY", NOW_MS + 60 * MIN).as_bytes()).unwrap();
        ahead.flush();
    }
    let c = consumer_at(NOW_MS, Some(dir.path()));
    c.resume_from_journal(NOW_MS);
    assert_eq!(c.store().timestamps("SPY", 0, i64::MAX), vec![NOW_MS - MIN]);
    assert_eq!(future(&c), 1);
}

#[test]
fn the_skew_is_a_setting_bounded_to_a_day() {
    let c = Consumer::builder().clock(ManualClock::new(NOW_MS)).max_clock_skew(Duration::ZERO).build().unwrap();
    c.ingest_line(line("SPY", NOW_MS).as_bytes()).unwrap();
    assert_eq!(c.ingest_line(line("SPY", NOW_MS + MIN).as_bytes()).unwrap_err().reason(), RejectReason::FutureBar);
    let c = Consumer::builder().clock(ManualClock::new(NOW_MS)).max_clock_skew(Duration::from_secs(86_400)).build().unwrap();
    c.ingest_line(line("SPY", NOW_MS + 1440 * MIN).as_bytes()).unwrap();
    let err = Consumer::builder().max_clock_skew(Duration::from_secs(86_401)).build().unwrap_err();
    assert!(err.to_string().contains("max_clock_skew must be at most 86400 s"), "{err}");
}
