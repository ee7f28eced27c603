//! A minimal Rust trading engine on barbridge: subscribes to symbols, keeps a moving average
//! from the store, prints a signal per bar, and once per minute — when the sidecar's minute
//! barrier closes it — evaluates the whole cross-section it trades (which symbols have their
//! bar, which are halted, which none), without guessing how long to wait. Stops on Ctrl-C or
//! SIGTERM.
//!
//! ```text
//! cargo run --example engine -- /path/to/bars.fifo SPY,SPXL
//! ```
//!
//! Run by the launcher (`CONSUMER_CMD` in config.env) it takes everything from the environment
//! the launcher gives it; an argument beats the variable:
//!
//! * `BARBRIDGE_FIFO`: the FIFO to read (default: [`barbridge::default_fifo_path`]);
//! * `BARBRIDGE_SYMBOLS`: comma-separated symbols (default `SPY,SPXL`);
//! * `BARBRIDGE_JOURNAL`: journal directory; today's bars are reloaded at start (optional);
//! * `BARBRIDGE_STATUS_FILE`: status file rewritten every second, read by `barbridge status` and by
//!   the launcher's health checks (optional).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use barbridge::consumer::journal::{FsyncPolicy, Journal};
use barbridge::{Clock, Consumer, FeedOptions, FifoFeed, StatusWriter, Subscription, SystemClock};

/// `name`'s value when set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let fifo: PathBuf = args.next().or_else(|| var("BARBRIDGE_FIFO")).map_or_else(barbridge::default_fifo_path, Into::into);
    let symbols: Vec<String> =
        args.next().or_else(|| var("BARBRIDGE_SYMBOLS")).unwrap_or_else(|| "SPY,SPXL".into()).split(',').map(str::to_owned).collect();

    let mut builder = Consumer::builder().stale_after(Duration::from_secs(120));
    if let Some(dir) = var("BARBRIDGE_JOURNAL") {
        builder = builder.journal(Journal::open(dir, FsyncPolicy::default())?);
    }
    let consumer = builder.build()?;
    consumer.resume_from_journal(SystemClock.now_ms());
    let bars = consumer.subscribe(Subscription::symbols(symbols.clone())?.name("engine").capacity(4096)?);
    let minutes = consumer.subscribe_minutes(64);
    let feed = FifoFeed::start(consumer.clone(), &fifo, FeedOptions::default())?;
    let status = var("BARBRIDGE_STATUS_FILE")
        .map(|path| StatusWriter::start(consumer.clone(), path.into(), Some(fifo.clone()), Duration::from_secs(1)))
        .transpose()?;
    let stop = feed.stop_flag();
    ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    println!("engine: waiting for {symbols:?} on {}", fifo.display());

    while !feed.is_finished() {
        let mut ready = crossbeam_channel::Select::new();
        ready.recv(&bars);
        ready.recv(&minutes);
        if ready.ready_timeout(Duration::from_millis(200)).is_err() {
            continue;
        }
        if bars.is_empty() {
            // A closed minute comes after the bars it covers: with none queued, act on it.
            if let Ok(minute) = minutes.try_recv() {
                let ours = |list: &[String]| list.iter().filter(|s| symbols.contains(s)).cloned().collect::<Vec<_>>();
                let (have, halted, none) = (ours(&minute.bars), ours(&minute.halted), ours(&minute.none));
                let closes: Vec<String> = have
                    .iter()
                    .filter_map(|s| consumer.store().latest(s).filter(|b| b.timestamp_ms == minute.minute_ms).map(|b| format!("{s} {:.2}", b.close)))
                    .collect();
                println!(
                    "{} minute closed ({}): {}{}{}",
                    barbridge::calendar::fmt_ny(minute.minute_ms),
                    if minute.complete { "complete" } else { "deadline" },
                    closes.join(", "),
                    if halted.is_empty() { String::new() } else { format!("; halted {halted:?}") },
                    if none.is_empty() { String::new() } else { format!("; no bar {none:?}") },
                );
            }
            continue;
        }
        let Ok(event) = bars.try_recv() else { continue };
        let window = consumer.store().last_n(&event.symbol, 20);
        let sma = window.iter().map(|b| b.close).sum::<f64>() / window.len() as f64;
        let signal = if event.bar.close > sma { "above" } else { "below" };
        println!(
            "{} {} close {:.2} sma{} {:.2} -> {signal}{}",
            barbridge::calendar::fmt_ny(event.bar.timestamp_ms),
            event.symbol,
            event.bar.close,
            window.len(),
            sma,
            if event.correction { " (correction)" } else { "" }
        );
    }
    let result = feed.join();
    if let Some(status) = status {
        status.stop();
    }
    consumer.flush();
    result?;
    Ok(())
}
