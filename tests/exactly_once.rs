//! Exactly once through any restart: the sidecar's writer (`FifoWriter`) into the real
//! `barbridge run --journal` process, which is hung, stopped, killed and restarted while a
//! full-market minute (10,000 symbols) or a flood is on its way. The journal must end with every
//! bar the writer sent exactly once, and the counters must say nothing was lost.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use barbridge::calendar::ny_date;
use barbridge::consumer::journal::day_path;
use barbridge::sidecar::writer::{FifoWriter, WriterOptions};
use barbridge::wire::{parse_line, Line};
use barbridge::{Bar, BarKind};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BASE_MS: i64 = 1_759_930_080_000; // 2025-10-08 13:28 UTC

fn bar(minute: i64, i: usize) -> Bar {
    let close = 100.0 + (i % 1000) as f64 * 0.25;
    Bar {
        timestamp_ms: BASE_MS + minute * 60_000,
        open: close,
        high: close + 0.5,
        low: close - 0.5,
        close,
        volume: 1_000.0 + minute as f64,
        vwap: Some(close),
        trade_count: Some(42),
    }
}

fn symbol(i: usize) -> String {
    format!("S{i:05}")
}

struct Setup {
    _dir: tempfile::TempDir,
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
        Setup { fifo, journal, status, _dir: dir }
    }

    fn consumer(&self) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
            .args(["run", "--fifo"])
            .arg(&self.fifo)
            .arg("--journal")
            .arg(&self.journal)
            .arg("--status-file")
            .arg(&self.status)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Proc(Some(child))
    }

    fn writer(&self) -> FifoWriter {
        self.writer_polling_acks_every(WriterOptions::default().ack_poll)
    }

    fn writer_polling_acks_every(&self, ack_poll: Duration) -> FifoWriter {
        let options =
            WriterOptions { writer: "sidecar-test".into(), heartbeat: Some(Duration::from_millis(200)), ack_poll, ..WriterOptions::default() };
        let writer = FifoWriter::new(&self.fifo, options);
        writer.start().unwrap();
        writer
    }

    /// Bar records per (symbol, timestamp) in the journal's day file.
    fn journaled(&self) -> HashMap<(String, i64), u32> {
        let path = day_path(&self.journal, ny_date(BASE_MS));
        let text = std::fs::read(&path).unwrap_or_default();
        let mut seen = HashMap::new();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(Line::Bar(b)) = parse_line(line) {
                assert_eq!(b.kind, BarKind::Bar, "no correction was sent, none may be journaled");
                *seen.entry((b.symbol.into_owned(), b.bar.timestamp_ms)).or_insert(0) += 1;
            }
        }
        seen
    }

    fn counters(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.status).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["health"]["counters"].clone()
    }
}

fn signal(proc: &Proc, sig: Signal) {
    let child = proc.0.as_ref().expect("running");
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Stop as the launcher stops a consumer: SIGTERM (and SIGCONT for a stopped one), then wait.
fn terminate(mut proc: Proc) {
    signal(&proc, Signal::SIGTERM);
    signal(&proc, Signal::SIGCONT);
    let status = proc.0.take().expect("running").wait().unwrap();
    assert!(status.success(), "consumer exits 0 on SIGTERM: {status:?}");
}

fn sigkill(proc: Proc) {
    drop(proc);
}

fn send_minute(writer: &FifoWriter, minute: i64, symbols: usize) {
    for i in 0..symbols {
        writer.submit_bar(&symbol(i), bar(minute, i), BarKind::Bar, None).unwrap();
    }
}

/// Wait until the journal holds `expected` distinct bars, then check that it holds exactly the
/// expected ones, once each.
fn assert_journal_exact(setup: &Setup, minutes: std::ops::Range<i64>, symbols: usize) {
    let expected = (minutes.end - minutes.start) as usize * symbols;
    let complete = wait_until(Duration::from_secs(120), || setup.journaled().len() >= expected);
    let seen = setup.journaled();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(doubled.is_empty(), "bars journaled more than once, e.g. {doubled:?}");
    let missing: Vec<_> =
        minutes.clone().flat_map(|m| (0..symbols).map(move |i| (symbol(i), BASE_MS + m * 60_000))).filter(|k| !seen.contains_key(k)).collect();
    assert!(complete && missing.is_empty(), "{} bar(s) never journaled, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(seen.len(), expected, "nothing but the bars sent");
}

/// The consumer hangs (SIGSTOP) while a 10,000-symbol minute is on its way, then is stopped the
/// way `stop` is given (SIGTERM + SIGCONT, or SIGKILL) and restarted on the same journal.
fn hang_then_stop(kill_it: bool) {
    const SYMBOLS: usize = 10_000;
    let setup = Setup::new();
    let consumer = setup.consumer();
    let writer = setup.writer();
    send_minute(&writer, 0, SYMBOLS);
    assert!(wait_until(Duration::from_secs(60), || setup.journaled().len() == SYMBOLS), "first minute journaled");
    signal(&consumer, Signal::SIGSTOP);
    send_minute(&writer, 1, SYMBOLS);
    // The pipe fills up behind the hung consumer; the rest waits in the writer's backlog.
    assert!(wait_until(LONG, || writer.stats().pipe_full > 0), "pipe full behind the hung consumer");
    if kill_it {
        sigkill(consumer);
    } else {
        terminate(consumer);
    }
    let consumer = setup.consumer();
    send_minute(&writer, 2, SYMBOLS);
    assert_journal_exact(&setup, 0..3, SYMBOLS);
    terminate(consumer);
    let c = setup.counters();
    assert_eq!((c["lines_lost"].as_u64(), c["rejects_total"].as_u64()), (Some(0), Some(0)), "{c}");
    let w = writer.stats();
    assert_eq!((w.dropped_overflow, w.unacked_evicted), (0, 0), "{w:?}");
    writer.close(Duration::from_secs(2));
}

#[test]
fn a_hung_consumer_stopped_with_sigterm_loses_no_bar_of_a_full_market_minute() {
    hang_then_stop(false);
}

#[test]
fn a_hung_consumer_killed_with_sigkill_loses_no_bar_of_a_full_market_minute() {
    hang_then_stop(true);
}

/// 20 SIGKILLs of the consumer, each followed by a restart, while a writer floods it.
#[test]
fn twenty_kills_during_a_flood_lose_and_double_nothing() {
    const SYMBOLS: usize = 2_000;
    const MINUTES: i64 = 100;
    let setup = Setup::new();
    let mut consumer = setup.consumer();
    let writer = std::sync::Arc::new(setup.writer());
    let producer = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            for minute in 0..MINUTES {
                // Stay within the writer's backlog bound: past it, lines would be dropped (counted).
                while writer.backlog() > 50_000 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                send_minute(&writer, minute, SYMBOLS);
            }
        })
    };
    // A different kill pattern each run (printed, to replay a failure with BARBRIDGE_KILL_SEED).
    let mut rng = std::env::var("BARBRIDGE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("kill pattern: BARBRIDGE_KILL_SEED={rng}");
    for _ in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let started = Instant::now();
        // Let the restarted consumer get going (or the flood end), then kill it mid-stream.
        wait_until(Duration::from_millis(rng % 300), || false);
        sigkill(consumer);
        consumer = setup.consumer();
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    producer.join().unwrap();
    assert_journal_exact(&setup, 0..MINUTES, SYMBOLS);
    terminate(consumer);
    let c = setup.counters();
    assert_eq!(c["lines_lost"].as_u64(), Some(0), "{c}");
    let w = writer.stats();
    assert_eq!((w.dropped_overflow, w.unacked_evicted), (0, 0), "{w:?}");
    assert!(w.replayed > 0, "kills mid-stream made the writer re-send: {w:?}");
}

/// A consumer killed before it ever published its cursor: the restarted one does not know the
/// writer, and the writer, not yet aware of the restart, sends new lines first. The re-send that
/// follows fills the gap: nothing lost, nothing doubled, and `lines_lost` back to 0.
#[test]
fn a_consumer_killed_before_its_first_cursor_loses_nothing_and_reports_no_loss() {
    const SYMBOLS: usize = 1_000;
    // The scenario needs a kill that lands before the writer has read any ack. Its ack file is read
    // every 2 s here (not 100 ms), and the run is repeated in the rare case a loaded machine let
    // the writer read one first: then the lines were acknowledged and legitimately forgotten.
    let ack_poll = Duration::from_secs(2);
    let (setup, writer, first) = (0..5)
        .find_map(|_| {
            let setup = Setup::new();
            let consumer = setup.consumer();
            let writer = setup.writer_polling_acks_every(ack_poll);
            send_minute(&writer, 0, SYMBOLS);
            assert!(wait_until(LONG, || setup.journaled().len() == SYMBOLS));
            let ack = barbridge::consumer::cursor::ack_path(&setup.fifo);
            let first = barbridge::consumer::cursor::read_ack_file(&ack).ok().flatten().map(|a| a.consumer);
            sigkill(consumer);
            // As if the kill came before the first cursor was written (and so before any ack).
            std::fs::remove_file(setup.journal.join(barbridge::consumer::cursor::DURABLE_FILE)).unwrap();
            std::fs::remove_file(&ack).unwrap();
            (writer.stats().acked == 0).then(|| (setup, writer, first.expect("the first consumer published its ack file")))
        })
        .expect("in 5 tries, a consumer was killed before the writer read its ack");
    let ack = barbridge::consumer::cursor::ack_path(&setup.fifo);
    let instance = || barbridge::consumer::cursor::read_ack_file(&ack).ok().flatten().map(|a| a.consumer);
    let consumer = setup.consumer();
    // The new consumer has the FIFO open (its ack file is written just before): the writer's
    // next lines go to it without an EPIPE, before the writer's next look at the ack file.
    assert!(wait_until(LONG, || instance().is_some_and(|i| i != first)));
    send_minute(&writer, 1, SYMBOLS);
    assert_journal_exact(&setup, 0..2, SYMBOLS);
    // A status file written after everything was journaled says nothing is lost.
    let journaled_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let lost = || {
        let text = std::fs::read_to_string(&setup.status).ok()?;
        let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
        (v["updated_ms"].as_i64()? > journaled_ms + 1_000).then(|| v["health"]["counters"]["lines_lost"].as_u64())?
    };
    assert!(wait_until(LONG, || lost() == Some(0)), "lines_lost settles at 0: {:?}", lost());
    terminate(consumer);
    assert_eq!(setup.counters()["lines_lost"].as_u64(), Some(0));
    writer.close(Duration::from_secs(2));
}
