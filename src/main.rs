//! `barbridge` CLI: run the consumer on a FIFO, or show a running consumer's status.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use barbridge::{Consumer, FeedOptions, FifoFeed, StatusReport, StatusWriter, SystemClock, Clock};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "barbridge", version, about = "Market-data bridge consumer: Alpaca bars from the sidecar's FIFO into a per-symbol store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read bars from the FIFO until SIGINT/SIGTERM.
    Run {
        /// The FIFO (created if absent; its directory is made 0700).
        #[arg(long, default_value_os_t = barbridge::default_fifo_path())]
        fifo: PathBuf,
        /// Accept only these symbols (comma-separated); default: all.
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
        /// Rewrite this JSON status file every second.
        #[arg(long, default_value_os_t = barbridge::default_status_path())]
        status_file: PathBuf,
        /// Seconds without any line before the feed is declared stale.
        #[arg(long, default_value_t = 120.0)]
        stale_after: f64,
        /// Print every accepted bar (after dedupe; corrections again) to stdout as a wire line.
        #[arg(long)]
        echo: bool,
        /// Bars kept per symbol.
        #[arg(long, default_value_t = 10_000)]
        capacity: usize,
        /// Exit when the first writer session ends (benchmarks, batch loads).
        #[arg(long)]
        once: bool,
    },
    /// Show a running consumer's status.
    Status {
        #[arg(long, default_value_os_t = barbridge::default_status_path())]
        status_file: PathBuf,
        /// Print the raw JSON instead.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { fifo, symbols, status_file, stale_after, echo, capacity, once } => {
            if !(stale_after.is_finite() && stale_after > 0.0) {
                return config_error(format!("--stale-after must be a positive number of seconds, got {stale_after}"));
            }
            if capacity == 0 {
                return config_error("--capacity must be at least 1".into());
            }
            if let Some(bad) = symbols.iter().find(|s| barbridge::wire::validate(s, &valid_bar()).is_err()) {
                return config_error(format!("--symbols contains {bad:?}, which is not a valid symbol"));
            }
            run(fifo, symbols, status_file, Duration::from_secs_f64(stale_after), echo, capacity, once)
        }
        Command::Status { status_file, json } => match StatusReport::read(&status_file) {
            Ok(report) if json => {
                println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
                ExitCode::SUCCESS
            }
            Ok(report) => {
                print!("{}", report.render(SystemClock.now_ms()));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("barbridge: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn valid_bar() -> barbridge::Bar {
    barbridge::Bar { timestamp_ms: 1, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 0.0, vwap: 0.0, trade_count: 0 }
}

fn config_error(msg: String) -> ExitCode {
    eprintln!("barbridge: {msg}");
    ExitCode::from(2)
}

fn run(
    fifo: PathBuf,
    symbols: Vec<String>,
    status_file: PathBuf,
    stale_after: Duration,
    echo: bool,
    capacity: usize,
    once: bool,
) -> ExitCode {
    let consumer = Consumer::builder().symbols(symbols).stale_after(stale_after).capacity_per_symbol(capacity).build();
    if echo {
        consumer.on_bar(&[], |event| {
            let kind = if event.correction { barbridge::BarKind::UpdatedBar } else { barbridge::BarKind::Bar };
            let line = barbridge::wire::encode_bar(&event.symbol, &event.bar, kind);
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // stdout closed: nothing useful left to do with echo, the store still has the bar.
            }
        });
    }
    let options = FeedOptions { stop_when_writers_gone: once, ..FeedOptions::default() };
    let feed = match FifoFeed::start(consumer.clone(), &fifo, options) {
        Ok(feed) => feed,
        Err(e) => return config_error(e.to_string()),
    };
    let stop = feed.stop_flag();
    if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)) {
        log::error!("cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::from(1);
    }
    if let Some(dir) = status_file.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
        }
    }
    let status = StatusWriter::start(consumer.clone(), status_file, Some(fifo.clone()), Duration::from_secs(1));
    log::info!("barbridge consumer running on {} (Ctrl-C to stop)", fifo.display());
    let result = feed.join();
    status.stop();
    let c = consumer.health().counters.snapshot();
    log::info!(
        "stopped: {} bars accepted, {} corrections, {} duplicates, {} rejected, {} seq gaps ({} lines lost), {} symbols",
        c.bars_accepted,
        c.corrections,
        c.duplicates,
        c.rejects_total,
        c.seq_gaps,
        c.lines_lost,
        consumer.store().symbols().len()
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barbridge: {e}");
            ExitCode::from(1)
        }
    }
}
