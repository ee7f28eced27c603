//! `cargo bench --bench minute`: the minute barrier at a 10,000-symbol universe, through a real
//! FIFO (issue 26). Per minute, the writer side (the sidecar's `FifoWriter` and the same
//! `minute::Barrier` the extension's `Publisher` runs) sends 10,000 bars, 20 % of the symbols
//! quiet (no bar); the last bar closes nothing (the quiet ones are missing) until the deadline,
//! so the barrier is polled right after the last bar as past its deadline, and the time is taken
//! from the last bar's hand-over to the writer to the consumer's `on_minute_closed` callback
//! (goal: ≤ 5 ms). A complete minute (no quiet symbol) is measured the same way. Then the REST
//! requests a minute the confirmation needs (≤ 500 symbols each).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barbridge::sidecar::barrier::Barrier;
use barbridge::sidecar::writer::{FifoWriter, WriterOptions};
use barbridge::trading::TradingBook;
use barbridge::wire::minute::MinuteClosed;
use barbridge::{Bar, BarKind, Consumer, FeedOptions, FifoFeed, Source};

const SYMBOLS: usize = 10_000;
const MINUTES: usize = 12;
const T0: i64 = 1_759_930_080_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/bars.fifo");
    let consumer = Consumer::builder().build().unwrap();
    let closed_at: Arc<Mutex<Vec<(i64, Instant, usize)>>> = Arc::default();
    let sink = closed_at.clone();
    consumer.on_minute_closed(move |m: &MinuteClosed| sink.lock().unwrap().push((m.minute_ms, Instant::now(), m.none.len())));
    // When the consumer stored the newest bar (ns since `base`): the close's own cost is measured from it.
    let base = Instant::now();
    let last_stored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stored = last_stored.clone();
    consumer.on_bar(&[], move |_| stored.store(base.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed));
    let closed_after_bar: Arc<Mutex<Vec<f64>>> = Arc::default();
    let after = closed_after_bar.clone();
    let stored = last_stored.clone();
    consumer.on_minute_closed(move |_| {
        let ns = base.elapsed().as_nanos() as u64 - stored.load(std::sync::atomic::Ordering::Relaxed);
        after.lock().unwrap().push(ns as f64 / 1e6);
    });
    let feed = FifoFeed::start(consumer.clone(), &path, FeedOptions::default()).unwrap();
    let writer = FifoWriter::new(&path, WriterOptions { writer: "bench-minute".into(), ..WriterOptions::default() });
    writer.start().unwrap();
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("B{i:05}")).collect();
    let trading = TradingBook::default();
    let mut barrier = Barrier::new(symbols.iter().cloned(), 0, true);
    let mut sent_last: Vec<(i64, Instant, bool)> = Vec::new();
    let mut requests = Vec::new();
    for m in 0..MINUTES {
        let minute = T0 + m as i64 * 60_000;
        let quiet_share = if m % 2 == 0 { 5 } else { 0 }; // every other minute: 1 in 5 quiet
        let mut t = Instant::now();
        for (i, s) in symbols.iter().enumerate() {
            if quiet_share > 0 && i % quiet_share == 0 {
                continue;
            }
            let bar = Bar { timestamp_ms: minute, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0, vwap: None, trade_count: Some(i as u64) };
            t = Instant::now(); // the last bar's hand-over
            writer.submit_bar_received(s, bar, BarKind::Bar, Some(Source::Stream), Some(minute + 60_050)).unwrap();
            barrier.note(s, minute, true);
        }
        // Right after the last bar, as the extension's Publisher does: a complete minute closes;
        // with 20 % quiet, the deadline (0 here: it has passed) closes it.
        for c in barrier.poll(&trading, 0) {
            writer.submit_minute_closed(&c);
            sent_last.push((c.minute_ms, t, c.none.is_empty()));
        }
        for (_, quiet) in barrier.take_unconfirmed() {
            requests.push(quiet.len().div_ceil(500));
        }
        // Wait for the consumer to close it before the next minute (one minute at a time).
        let deadline = Instant::now() + Duration::from_secs(30);
        while closed_at.lock().unwrap().iter().all(|(mm, _, _)| *mm != minute) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let closed = closed_at.lock().unwrap().clone();
    let mut with_quiet = Vec::new();
    let mut complete = Vec::new();
    for (minute, t, was_complete) in &sent_last {
        if let Some((_, at, _)) = closed.iter().find(|(m, _, _)| m == minute) {
            let us = at.duration_since(*t).as_micros() as f64 / 1000.0;
            if *was_complete { &mut complete } else { &mut with_quiet }.push(us);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v.first().copied().unwrap_or(f64::NAN), v.get(v.len() / 2).copied().unwrap_or(f64::NAN), v.last().copied().unwrap_or(f64::NAN))
    };
    let (qmin, qmed, qmax) = stats(&mut with_quiet);
    let (cmin, cmed, cmax) = stats(&mut complete);
    println!("minute barrier, {SYMBOLS} symbols, {MINUTES} minutes through a real FIFO (goal: last bar → minute_closed in the consumer ≤ 5 ms)");
    println!(
        "  (from the last bar's hand-over to the writer, the time includes the consumer draining the minute's 8,000-10,000 bars queued before it)"
    );
    println!("  20% quiet (closed by the deadline): last bar → minute_closed delivered: min {qmin:.2} ms, median {qmed:.2} ms, max {qmax:.2} ms ({} minutes)", with_quiet.len());
    println!("  complete minutes:                     last bar → minute_closed delivered: min {cmin:.2} ms, median {cmed:.2} ms, max {cmax:.2} ms ({} minutes)", complete.len());
    let (bmin, bmed, bmax) = stats(&mut closed_after_bar.lock().unwrap().clone());
    println!("  all minutes: last bar stored in the consumer → minute_closed delivered (the barrier's own cost): min {bmin:.2} ms, median {bmed:.2} ms, max {bmax:.2} ms");
    let per_minute = requests.iter().sum::<usize>() as f64 / requests.len().max(1) as f64;
    println!("  REST confirmation: {per_minute:.1} request(s) a minute for 2,000 quiet of {SYMBOLS} symbols (≤ 500 symbols a request; Alpaca allows 200 a minute)");
    println!("  consumer: {:?}", consumer.health().counters.snapshot());
    writer.close(Duration::from_secs(2));
    feed.stop();
    let _ = feed.join();
}
