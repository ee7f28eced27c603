use super::*;
use crate::calendar::ny_date;
use crate::wire::encode_bar;

fn bar(ts: i64) -> Bar {
    Bar { timestamp_ms: ts, open: 1.0, high: 2.0, low: 0.5, close: 1.5, volume: 10.0, vwap: Some(1.25), trade_count: Some(3) }
}

#[test]
fn writes_one_file_per_new_york_day_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), FsyncPolicy::Always).unwrap();
    // 2025-10-08 13:28 UTC and 2025-10-09 03:00 UTC (still 10-08 in New York) and 10-09 14:00.
    for ts in [1_759_930_080_000, 1_759_978_800_000, 1_760_018_400_000] {
        j.record("SPY", &bar(ts), BarKind::Bar);
    }
    j.record("SPY", &bar(1_759_930_080_000), BarKind::UpdatedBar);
    j.flush();
    assert_eq!(j.status().records_written, 4);
    let mut seen = Vec::new();
    let r = read_records(&day_path(dir.path(), ny_date(1_759_930_080_000)), |s, b, k| seen.push((s.to_owned(), b.timestamp_ms, k))).unwrap();
    assert_eq!(r, LoadReport { records: 3, corrupt: 0, torn_tail: false });
    assert_eq!(seen[2], ("SPY".to_owned(), 1_759_930_080_000, BarKind::UpdatedBar), "the correction is in its bar's day");
    let day2 = day_path(dir.path(), NaiveDate::from_ymd_opt(2025, 10, 9).unwrap());
    let r = read_records(&day2, |_, _, _| {}).unwrap();
    assert_eq!(r.records, 1);
}

#[test]
fn written_hooks_run_after_a_flush_that_wrote_with_the_record_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), FsyncPolicy::Never).unwrap();
    let path = day_path(dir.path(), ny_date(1_759_930_080_000));
    // What the hook sees: the day file's line count at the moment it is called.
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let hook_path = path.clone();
    j.on_written(move || {
        let lines = std::fs::read_to_string(&hook_path).map_or(0, |t| t.lines().count());
        hook_seen.lock().unwrap().push(lines);
    });
    j.flush(); // nothing queued: no call
    j.record("SPY", &bar(1_759_930_080_000), BarKind::Bar);
    j.record("SPY", &bar(1_759_930_140_000), BarKind::Bar);
    j.flush();
    j.flush(); // nothing new: no call
    j.record("SPY", &bar(1_759_930_200_000), BarKind::Bar);
    j.flush();
    assert_eq!(*seen.lock().unwrap(), vec![2, 3]);
}

#[test]
fn crypto_bars_go_to_utc_days_beside_the_stock_days() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), FsyncPolicy::Always).unwrap();
    // 2025-10-08 23:59 UTC and 2025-10-09 00:00 UTC: one New York day, two UTC days. Stock and
    // crypto bars interleave, as from two sidecars writing into one FIFO.
    let (before, after) = (1_759_967_940_000, 1_759_968_000_000);
    for ts in [before, after] {
        j.record("BTC/USD", &bar(ts), BarKind::Bar);
        j.record("SPY", &bar(ts), BarKind::Bar);
    }
    j.record("BTC/USD", &bar(before), BarKind::UpdatedBar);
    j.flush();
    let read = |name: &str| {
        let mut seen = Vec::new();
        read_records(&dir.path().join(name), |s, b, k| seen.push((s.to_owned(), b.timestamp_ms, k))).unwrap();
        seen
    };
    let btc = |ts, k| ("BTC/USD".to_owned(), ts, k);
    assert_eq!(read("crypto-2025-10-08.jsonl"), [btc(before, BarKind::Bar), btc(before, BarKind::UpdatedBar)]);
    assert_eq!(read("crypto-2025-10-09.jsonl"), [btc(after, BarKind::Bar)]);
    assert_eq!(read("bars-2025-10-08.jsonl").len(), 2, "both stock bars are in the New York day");
    assert_eq!(j.claim_day(AssetClass::Crypto, after).unwrap(), dir.path().join("crypto-2025-10-09.jsonl"));
    assert_eq!(j.claim_day(AssetClass::Crypto, after + 60_000), None, "claimed once");
    assert_eq!(j.claim_day(AssetClass::Stock, after).unwrap(), dir.path().join("bars-2025-10-08.jsonl"));
}

#[test]
fn torn_tail_is_reported_skipped_and_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let date = ny_date(1_759_930_080_000);
    let path = day_path(dir.path(), date);
    let good = encode_bar("SPY", &bar(1_759_930_080_000), BarKind::Bar);
    std::fs::write(&path, format!("{good}\n{{\"symbol\":\"SP")).unwrap();
    let r = read_records(&path, |_, _, _| {}).unwrap();
    assert_eq!(r, LoadReport { records: 1, corrupt: 0, torn_tail: true });
    let j = Journal::open(dir.path(), FsyncPolicy::Never).unwrap();
    j.record("SPY", &bar(1_759_930_140_000), BarKind::Bar);
    j.flush();
    let r = read_records(&path, |_, _, _| {}).unwrap();
    assert_eq!(r, LoadReport { records: 2, corrupt: 0, torn_tail: false });
}

#[test]
fn unwritable_directory_keeps_records_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path().join("j"), FsyncPolicy::Never).unwrap();
    // Make the day file impossible to create: a directory with its name.
    let date = ny_date(1_759_930_080_000);
    std::fs::create_dir(day_path(&dir.path().join("j"), date)).unwrap();
    j.record("SPY", &bar(1_759_930_080_000), BarKind::Bar);
    j.flush();
    let s = j.status();
    assert_eq!(s.pending_records, 1);
    assert!(s.error.as_deref().unwrap_or("").contains("cannot write journal"), "{s:?}");
    std::fs::remove_dir(day_path(&dir.path().join("j"), date)).unwrap();
    j.flush();
    let s = j.status();
    assert_eq!((s.pending_records, s.records_written, s.error), (0, 1, None));
}

#[test]
fn pending_is_bounded_within_one_day_dropping_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("j");
    let j = Journal::open(&jdir, FsyncPolicy::Never).unwrap().with_max_pending_bytes(16 << 10).unwrap();
    let date = ny_date(1_759_930_080_000);
    std::fs::create_dir(day_path(&jdir, date)).unwrap(); // the day file cannot be created
    let n = 600; // 09:28 to 19:27 New York: all in one day
    for i in 0..n {
        j.record("SPY", &bar(1_759_930_080_000 + 60_000 * i), BarKind::Bar);
        j.flush();
    }
    let s = j.status();
    assert!(s.dropped_records > 0, "nothing dropped: {s:?}");
    assert_eq!(s.pending_records + s.dropped_records, n as u64, "{s:?}");
    let line = encode_bar("SPY", &bar(1_759_930_080_000), BarKind::Bar).len() as u64 + 1;
    assert!(s.pending_records * line <= 16 << 10, "{} records ({} bytes) pending over a 16 KiB bound", s.pending_records, s.pending_records * line);
    assert!(!j.is_clean());
    std::fs::remove_dir(day_path(&jdir, date)).unwrap();
    j.flush();
    assert!(j.is_clean());
    let mut kept = Vec::new();
    read_records(&day_path(&jdir, date), |_, b, _| kept.push(b.timestamp_ms)).unwrap();
    assert_eq!(kept.len() as u64, s.pending_records);
    let newest: Vec<i64> = (n - kept.len() as i64..n).map(|i| 1_759_930_080_000 + 60_000 * i).collect();
    assert_eq!(kept, newest, "the oldest records are the ones dropped");
}

#[test]
fn a_day_file_swapped_for_a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("j");
    let j = Journal::open(&jdir, FsyncPolicy::Never).unwrap();
    let target = dir.path().join("not-ours");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, day_path(&jdir, ny_date(1_759_930_080_000))).unwrap();
    j.record("SPY", &bar(1_759_930_080_000), BarKind::Bar);
    j.flush();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let s = j.status();
    assert_eq!(s.pending_records, 1, "{s:?}");
    assert!(s.error.as_deref().unwrap_or("").contains("symbolic link"), "{s:?}");
    drop(j);
    let err = Journal::open(&jdir, FsyncPolicy::Never).unwrap_err().to_string();
    assert!(err.contains("is a symbolic link"), "a prepared day file is refused at open: {err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}
