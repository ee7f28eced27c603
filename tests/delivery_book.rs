//! The acknowledged-delivery book against what other processes do to it (issue 22): a foreign
//! process's unfinished line that swallows the writer's line (the hole is asked for and filled
//! without a consumer restart), a `cursor.json` ahead of what the writer has sent (nothing
//! skipped), an unreadable `cursor.json` (no false loss), forged heartbeats (bounded claims) and a
//! flood of writer ids (the log stays small). Real `barbridge run --journal` processes, the real
//! `FifoWriter`, real FIFOs and a real foreign process.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use barbridge::calendar::ny_date;
use barbridge::consumer::journal::day_path;
use barbridge::sidecar::writer::{FifoWriter, WriterOptions};
use barbridge::wire::{parse_line, Line};
use barbridge::{Bar, BarKind};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BASE_MS: i64 = 1_759_930_080_000; // 2025-10-08 13:28 UTC
const WRITER: &str = "sidecar-book";

fn bar(minute: i64, i: usize) -> Bar {
    let close = 100.0 + (i % 1000) as f64 * 0.25;
    Bar {
        timestamp_ms: BASE_MS + minute * 60_000,
        open: close,
        high: close + 0.5,
        low: close - 0.5,
        close,
        volume: 7.0,
        vwap: None,
        trade_count: None,
    }
}

fn symbol(i: usize) -> String {
    format!("S{i:05}")
}

struct Setup {
    dir: tempfile::TempDir,
    fifo: PathBuf,
    journal: PathBuf,
    status: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
        let journal = dir.path().join("journal");
        let status = dir.path().join("run").join("status.json");
        Setup { fifo, journal, status, dir }
    }

    /// `barbridge run --journal`, its log (RUST_LOG=info) to `log` when given.
    fn consumer_logging_to(&self, log: Option<&Path>) -> Proc {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
            .args(["run", "--fifo"])
            .arg(&self.fifo)
            .arg("--journal")
            .arg(&self.journal)
            .arg("--status-file")
            .arg(&self.status)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Proc(Some(child))
    }

    fn consumer(&self) -> Proc {
        self.consumer_logging_to(None)
    }

    fn writer(&self) -> FifoWriter {
        let options = WriterOptions { writer: WRITER.into(), heartbeat: Some(Duration::from_millis(200)), ..WriterOptions::default() };
        FifoWriter::new(&self.fifo, options)
    }

    /// Bar records per (symbol, timestamp) in the journal's day file.
    fn journaled(&self) -> HashMap<(String, i64), u32> {
        let text = std::fs::read(day_path(&self.journal, ny_date(BASE_MS))).unwrap_or_default();
        let mut seen = HashMap::new();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(Line::Bar(b)) = parse_line(line) {
                *seen.entry((b.symbol.into_owned(), b.bar.timestamp_ms)).or_insert(0) += 1;
            }
        }
        seen
    }

    /// The consumer's counters from a status file written after `after_ms` (wall clock).
    fn counters_after(&self, after_ms: i64) -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.status).ok()?).ok()?;
        (v["updated_ms"].as_i64()? > after_ms).then(|| v["health"]["counters"].clone())
    }

    /// Wait for a status file written after now + 1 s and return its counters.
    fn fresh_counters(&self) -> serde_json::Value {
        let after = now_ms() + 1_000;
        let mut got = None;
        assert!(wait_until(LONG, || {
            got = self.counters_after(after);
            got.is_some()
        }));
        got.unwrap()
    }

    /// The counters once `lines_lost` is 0 (it is live: a hole open at one instant, e.g. a line
    /// the old consumer processed but the writer never saw acknowledged before the ack file went,
    /// is filled by the writer's re-send a moment later), or the last ones read.
    fn settled_counters(&self) -> serde_json::Value {
        let mut got = self.fresh_counters();
        wait_until(LONG, || {
            got = self.fresh_counters();
            got["lines_lost"] == 0
        });
        got
    }

    /// Write `text` as `cursor.json` (a private file of ours, as the consumer writes it).
    fn plant_cursor(&self, text: &str) {
        let path = self.journal.join(barbridge::consumer::cursor::DURABLE_FILE);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// SIGTERM, as the launcher stops a consumer, and wait for a clean exit.
fn terminate(mut proc: Proc) {
    let child = proc.0.take().expect("running");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut child = child;
    assert!(child.wait().unwrap().success(), "consumer exits 0 on SIGTERM");
}

fn send_minute(writer: &FifoWriter, minute: i64, symbols: usize) {
    for i in 0..symbols {
        writer.submit_bar(&symbol(i), bar(minute, i), BarKind::Bar, None).unwrap();
    }
}

/// Every bar of `minutes` × `symbols` journaled exactly once, nothing else.
fn assert_journal_exact(setup: &Setup, minutes: std::ops::Range<i64>, symbols: usize) {
    let expected = (minutes.end - minutes.start) as usize * symbols;
    let complete = wait_until(Duration::from_secs(60), || setup.journaled().len() >= expected);
    let seen = setup.journaled();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "bars journaled more than once, e.g. {doubled:?}");
    assert!(complete, "{} of {expected} bar(s) journaled", seen.len());
    assert_eq!(seen.len(), expected, "nothing but the bars sent");
}

/// Wait until the writer's every line is acknowledged (nothing pinned), and return its stats.
fn assert_all_acked(writer: &FifoWriter) -> barbridge::sidecar::writer::WriterStats {
    let settled = wait_until(LONG, || {
        let w = writer.stats();
        w.acked == w.lines_written && w.unacked == 0
    });
    let w = writer.stats();
    assert!(settled, "the writer's lines are all acknowledged, nothing pinned: {w:?}");
    w
}

/// A foreign process leaves an unfinished line (no newline) in the FIFO; the sidecar writer's
/// first line completes it and is rejected with it. The ack lists the hole, the writer re-sends
/// the chunk holding that line, and the hole is filled without restarting the consumer: every
/// bar stored once, `lines_lost` 0, and the writer can forget every line (`acked == sent`).
#[test]
fn a_line_swallowed_by_a_foreign_unfinished_line_is_asked_for_and_re_sent() {
    const BARS: usize = 2_000;
    let setup = Setup::new();
    let _consumer = setup.consumer();
    // The foreign process (once the consumer has made the FIFO: its ack file comes first):
    // writes half a line and keeps the FIFO open (so that no EOF ends the line).
    assert!(wait_until(LONG, || barbridge::consumer::cursor::ack_path(&setup.fifo).exists()));
    let marker = setup.dir.path().join("foreign-wrote");
    let script = r#"exec 3>"$1"; printf '%s' '{"symbol":"JUNK","timestamp_ms":17599' >&3; : > "$2"; exec sleep 120"#;
    let _foreign = Proc(Some(Command::new("sh").arg("-c").arg(script).arg("sh").arg(&setup.fifo).arg(&marker).spawn().unwrap()));
    assert!(wait_until(LONG, || marker.exists()), "the foreign process wrote its unfinished line");
    let writer = setup.writer();
    send_minute(&writer, 0, BARS); // queued before the start: the first chunk is bars
    writer.start().unwrap();
    assert_journal_exact(&setup, 0..1, BARS);
    let w = assert_all_acked(&writer);
    assert!(w.hole_resends >= 1, "the swallowed line was re-sent for the hole: {w:?}");
    assert_eq!((w.replayed, w.reader_opens), (0, 1), "no consumer restart, no full re-send: {w:?}");
    let c = setup.fresh_counters();
    assert_eq!(c["lines_lost"], 0, "{c}");
    assert!(c["lines_recovered"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["rejects_total"], 1, "the merged line is the one reject: {c}");
    writer.close(Duration::from_secs(2));
}

/// A `cursor.json` that puts a live writer far beyond what it has sent (a restored backup)
/// made the restarted consumer skip all 4,000 new lines as re-sends, silently. The writer's
/// heartbeat says how far it has sent: the consumer counts `cursor_ahead`, takes the truth, and
/// stores every bar once.
#[test]
fn a_cursor_ahead_of_what_the_writer_sent_skips_nothing() {
    const BARS: usize = 4_000;
    let setup = Setup::new();
    let first = setup.consumer();
    let writer = setup.writer();
    writer.start().unwrap();
    send_minute(&writer, 0, BARS);
    assert_journal_exact(&setup, 0..1, BARS);
    assert_all_acked(&writer);
    terminate(first);
    setup.plant_cursor(&format!(r#"{{"consumer":"restored","pid":1,"writers":{{"{WRITER}":{{"prefix":1000000,"high":1000000}}}}}}"#));
    let _second = setup.consumer();
    send_minute(&writer, 1, BARS);
    assert_journal_exact(&setup, 0..2, BARS);
    assert_all_acked(&writer);
    let c = setup.fresh_counters();
    assert_eq!(c["cursor_ahead"], 1, "{c}");
    assert_eq!(c["lines_lost"], 0, "{c}");
    writer.close(Duration::from_secs(2));
}

/// An unreadable `cursor.json` (truncated, or a directory) once reported the ~2,000 lines
/// acknowledged before the restart as lost for good, though they are in the journal. The
/// writer's heartbeat says what an earlier consumer acknowledged: not lost.
fn an_unreadable_cursor_reports_no_false_loss(spoil: impl Fn(&Path)) {
    const BARS: usize = 2_000;
    let setup = Setup::new();
    let first = setup.consumer();
    let writer = setup.writer();
    writer.start().unwrap();
    send_minute(&writer, 0, BARS);
    assert_journal_exact(&setup, 0..1, BARS);
    let acked = assert_all_acked(&writer).acked;
    terminate(first);
    spoil(&setup.journal.join(barbridge::consumer::cursor::DURABLE_FILE));
    let _second = setup.consumer();
    send_minute(&writer, 1, BARS);
    assert_journal_exact(&setup, 0..2, BARS);
    let c = setup.settled_counters();
    assert_eq!(c["cursor_unreadable"], 1, "{c}");
    assert_eq!(c["lines_lost"], 0, "{c}");
    assert!(c["lines_acked_before"].as_u64().unwrap() >= acked, "the {acked} line(s) acknowledged before: {c}");
    writer.close(Duration::from_secs(2));
}

#[test]
fn a_truncated_cursor_reports_no_false_loss() {
    an_unreadable_cursor_reports_no_false_loss(|path| {
        let text = std::fs::read(path).unwrap();
        std::fs::write(path, &text[..text.len() / 2]).unwrap();
    });
}

#[test]
fn a_cursor_that_is_a_directory_reports_no_false_loss() {
    an_unreadable_cursor_reports_no_false_loss(|path| {
        std::fs::remove_file(path).unwrap();
        std::fs::create_dir(path).unwrap();
    });
}

/// Forged heartbeats (issue 22: one set `lines_lost` to 18,446,744,073,709,551,614) are
/// refused as `impossible_seq`; the feed carries on and nothing counts as lost.
#[test]
fn forged_heartbeats_cannot_claim_the_impossible() {
    let setup = Setup::new();
    let _consumer = setup.consumer();
    let mut fifo = open_writer(&setup.fifo);
    let forged = [
        r#"{"type":"heartbeat","ts_ms":1759930085000,"seq":18446744073709551615,"writer":"forged"}"#,
        r#"{"type":"heartbeat","seq":18446744073709551615,"writer":"forged","backlog":18446744073709551615,"dropped":18446744073709551615,"retained_from":1}"#,
        r#"{"type":"heartbeat","seq":1,"writer":"forged2","retained_from":18446744073709551615}"#,
        r#"{"type":"heartbeat","seq":5,"writer":"forged3","sent":18446744073709551615}"#,
        r#"{"type":"heartbeat","seq":5,"writer":"forged4","sent":4,"acked":5}"#,
    ];
    for line in forged {
        write_line(&mut fifo, &format!("{line}\n"));
    }
    write_line(&mut fifo, &seed_line("SPY", 0, 10.0));
    assert!(wait_until(LONG, || setup.journaled().len() == 1), "the feed carries on");
    let c = setup.fresh_counters();
    assert_eq!(c["lines_lost"], 0, "{c}");
    assert_eq!(c["seq_gaps"], 0, "{c}");
    assert_eq!(c["rejects"]["impossible_seq"], forged.len(), "{c}");
}

/// 20,000 writer ids (each connecting once) and 200 ids of 2 KB: every session is counted, the
/// long ids are refused (`invalid_writer`), and the log stays a few lines long.
#[test]
fn a_flood_of_writer_ids_is_counted_not_logged_line_by_line() {
    const IDS: usize = 20_000;
    let setup = Setup::new();
    let log = setup.dir.path().join("consumer.log");
    let _consumer = setup.consumer_logging_to(Some(&log));
    let mut fifo = open_writer(&setup.fifo);
    let mut text = String::new();
    for i in 0..IDS {
        text.push_str(&format!("{{\"type\":\"heartbeat\",\"seq\":1,\"writer\":\"{i:0>64}\"}}\n"));
        if text.len() > 3_500 {
            write_line(&mut fifo, &std::mem::take(&mut text));
        }
    }
    write_line(&mut fifo, &text);
    let long = format!("{{\"type\":\"heartbeat\",\"seq\":1,\"writer\":\"{}\"}}\n", "x".repeat(2_000));
    for _ in 0..200 {
        write_line(&mut fifo, &long);
    }
    assert!(wait_until(LONG, || setup.counters_after(0).is_some_and(|c| c["writer_sessions"] == IDS && c["rejects"]["invalid_writer"] == 200)));
    // One more session after the log's window: its line says how many were not logged.
    std::thread::sleep(Duration::from_secs(11));
    write_line(&mut fifo, "{\"type\":\"heartbeat\",\"seq\":1,\"writer\":\"late-writer\"}\n");
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(wait_until(LONG, || said().contains("late-writer connected")), "{}", said());
    let text = said();
    let connects = text.lines().filter(|l| l.contains("connected (seq 1)")).count();
    assert!(connects <= 50, "{connects} connect lines logged");
    assert!(text.contains("more like it not logged"), "the suppressed lines are counted");
    assert!(text.len() < 200_000, "the log stays small: {} bytes", text.len());
}

/// A consumer that lists a hole but reads slowly (its highest seq does not move) gets the hole
/// re-sent once, not at every look at its ack; once it has read past that re-send and still
/// lists the hole, it gets it again. The ack file here is written by hand, as a consumer writes it.
#[test]
fn a_hole_is_re_sent_once_per_read_past_not_once_per_poll() {
    let setup = Setup::new();
    let ack = barbridge::consumer::cursor::ack_path(&setup.fifo);
    let plant_ack = |high: u64| {
        let text = format!(r#"{{"consumer":"slow","pid":1,"writers":{{"{WRITER}":{{"prefix":0,"high":{high},"holes":[[1,5]]}}}}}}"#);
        let tmp = ack.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, &ack).unwrap();
    };
    let options = WriterOptions { writer: WRITER.into(), heartbeat: None, ack_poll: Duration::from_millis(20), ..WriterOptions::default() };
    let writer = FifoWriter::new(&setup.fifo, options);
    send_minute(&writer, 0, 100);
    writer.prepare().unwrap();
    // The slow consumer: holds the FIFO open for reading and reads nothing.
    let _reader = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(&setup.fifo).unwrap();
    writer.start().unwrap();
    assert!(wait_until(LONG, || writer.stats().lines_written == 100), "{:?}", writer.stats());
    plant_ack(10);
    assert!(wait_until(LONG, || writer.stats().hole_resends == 5), "{:?}", writer.stats());
    std::thread::sleep(Duration::from_secs(1)); // 50 looks at the ack
    assert_eq!(writer.stats().hole_resends, 5, "no storm while the consumer has not read past it");
    send_minute(&writer, 1, 10);
    assert!(wait_until(LONG, || writer.stats().lines_written == 110), "{:?}", writer.stats());
    plant_ack(110); // read past the re-send (and the lines after it); the hole is still there
    assert!(wait_until(LONG, || writer.stats().hole_resends == 10), "{:?}", writer.stats());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(writer.stats().hole_resends, 10);
    assert_eq!(writer.stats().replayed, 0, "first contact: no full re-send");
    writer.close(Duration::ZERO);
}
