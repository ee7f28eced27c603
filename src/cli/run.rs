//! `barbridge run`: the consumer on a FIFO (or a NATS stream) until SIGINT/SIGTERM, with its
//! status file, journal, echo, NATS publisher and HTTP endpoint.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use barbridge::consumer::journal::{FsyncPolicy, Journal};
use barbridge::{Clock, Consumer, FeedOptions, StatusWriter, SystemClock};
use clap::ValueEnum;

use super::nats::NatsArgs;
use super::output::{config_error, plural};

#[derive(Clone, Copy, ValueEnum)]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

impl Fsync {
    fn policy(self) -> FsyncPolicy {
        match self {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Interval => FsyncPolicy::default(),
            Fsync::Never => FsyncPolicy::Never,
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The FIFO (created if absent; its directory is made 0700).
    #[arg(long, default_value_os_t = barbridge::default_fifo_path())]
    pub fifo: PathBuf,
    /// Accept only these symbols (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Rewrite this JSON status file every second [default: status.json beside the FIFO].
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// Seconds without any line before the feed is declared stale.
    #[arg(long, default_value = "120", value_parser = seconds)]
    pub stale_after: Duration,
    /// Print every accepted bar (after dedupe; corrections again) to stdout as a wire line.
    #[arg(long)]
    pub echo: bool,
    /// Bars kept per symbol.
    #[arg(long, default_value_t = 10_000)]
    pub capacity: usize,
    /// Symbols kept at most (1 to 10,000,000); bars of further symbols are refused and counted
    /// (`symbol_bound_refused`).
    #[arg(long, default_value_t = barbridge::consumer::store::DEFAULT_MAX_SYMBOLS)]
    pub max_symbols: usize,
    /// Seconds a bar's minute (a trading status, a closed minute) may lie ahead of this host's
    /// clock (0 to 86400); further ahead it is refused and counted (`rejects{future_bar}`).
    #[arg(long, default_value = "300", value_parser = seconds)]
    pub max_clock_skew: Duration,
    /// Exit when the first writer session ends (benchmarks, batch loads).
    #[arg(long)]
    pub once: bool,
    /// Attach one channel subscriber that discards what it receives (measures delivery cost).
    #[arg(long)]
    pub drain_subscriber: bool,
    /// Journal every accepted bar into DIR/bars-YYYY-MM-DD.jsonl and reload today's on start.
    #[arg(long, env = "BARBRIDGE_JOURNAL")]
    pub journal: Option<PathBuf>,
    /// When to fsync the journal: always (every read batch), interval (once a second), never.
    #[arg(long, value_enum, default_value_t = Fsync::Interval)]
    pub fsync: Fsync,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Serve /metrics (Prometheus), /status.json and a live page (/) on HOST:PORT, e.g.
    /// 127.0.0.1:9464, or PORT on 127.0.0.1 (0 picks a free port; the address is logged).
    /// Off by default.
    #[arg(long, env = "BARBRIDGE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Symbols given their own `symbol` label in /metrics (the least recently updated).
    #[arg(long, default_value_t = barbridge::ops::metrics::DEFAULT_MAX_SYMBOL_LABELS)]
    pub metrics_max_symbols: usize,
}

/// A number of seconds (`--stale-after`) as a duration; 0 is left to the builder to refuse.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text} is not a number of seconds from 0 to about 5.8e11"))
}

impl RunArgs {
    /// Check the settings, start every part, wait for the end (a signal, `--once`, a refused
    /// publisher) and stop them in order.
    pub fn run(self) -> ExitCode {
        if let Err(e) = self.nats.check(self.journal.is_some()) {
            return config_error(e);
        }
        let journal = match self.journal.clone().map(|dir| Journal::open(dir, self.fsync.policy())).transpose() {
            Ok(j) => j,
            Err(e) => return config_error(e),
        };
        // Each FIFO's consumer has its own status file: two instances never share one.
        let status_file = self.status_file.clone().unwrap_or_else(|| self.fifo.with_file_name("status.json"));
        run(self, status_file, journal)
    }
}

fn run(args: RunArgs, status_file: PathBuf, journal: Option<Journal>) -> ExitCode {
    let RunArgs {
        fifo,
        symbols,
        stale_after,
        echo,
        capacity,
        max_symbols,
        max_clock_skew,
        once,
        drain_subscriber,
        nats,
        metrics_addr,
        metrics_max_symbols,
        ..
    } = args;
    let metrics = barbridge::ops::metrics::MetricsOptions { max_symbol_labels: metrics_max_symbols };
    let nats = &nats;
    let mut builder = Consumer::builder()
        .symbols(symbols)
        .stale_after(stale_after)
        .capacity_per_symbol(capacity)
        .max_symbols(max_symbols)
        .max_clock_skew(max_clock_skew);
    if let Some(j) = journal {
        builder = builder.journal(j);
    }
    let consumer = match builder.build() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    // Resume warm: today's bars are back in the store before the FIFO is read.
    consumer.resume_from_journal(SystemClock.now_ms());
    let echo = echo.then(|| consumer.echo_to_stdout());
    if drain_subscriber {
        let rx = consumer.subscribe(barbridge::Subscription::all().name("drain"));
        std::thread::spawn(move || rx.iter().count());
    }
    // The handler goes in before any thread starts, so a signal is never the default "die".
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_signal = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed)) {
        log::error!("cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::from(1);
    }
    // The status file first: it is this process's alone (a second consumer on it is refused
    // before it touches anything). Its writer starts once the sections it reports are there.
    let status_lock = match barbridge::ops::status::StatusLock::take(status_file.clone()) {
        Ok(lock) => lock,
        Err(e) => return config_error(e),
    };
    // Then the publisher: its first start decides which day files are history (not published)
    // before this run journals anything.
    let journal_dir = consumer.journal().map(|j| j.dir().to_path_buf());
    let publishing = match nats.start_publishing(&consumer, journal_dir.as_deref(), stop.clone()) {
        Ok(p) => p,
        Err(e) => return config_error(e),
    };
    let options = FeedOptions { stop_when_writers_gone: once, stop_flag: Some(stop), ..FeedOptions::default() };
    let (feed, read_fifo) = match nats.start_feed(&consumer, &fifo, &status_file, options) {
        Ok(started) => started,
        Err(e) => {
            let _ = publishing.stop();
            return config_error(e);
        }
    };
    let status = StatusWriter::start_locked(consumer.clone(), status_lock, read_fifo.clone(), Duration::from_secs(1));
    let http = match metrics_addr.as_deref() {
        Some(addr) => {
            let options = barbridge::ops::http::HttpOptions { metrics, fifo: read_fifo };
            match barbridge::ops::http::HttpServer::start(consumer.clone(), addr, options) {
                Ok(server) => {
                    log::info!("metrics on http://{}/metrics, live page on http://{}/", server.local_addr(), server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    feed.stop();
                    let _ = feed.join();
                    let _ = publishing.stop();
                    status.stop();
                    return config_error(e);
                }
            }
        }
        None => None,
    };
    log::info!("barbridge consumer running on {} (Ctrl-C to stop)", nats.source_shown().unwrap_or_else(|| fifo.display().to_string()));
    // A publisher refused by its server ends the run with its error (exit 2).
    let result = feed.join().and(publishing.stop());
    if let Some(http) = http {
        http.stop();
    }
    status.stop();
    if let Some(echo) = echo {
        echo.finish(Duration::from_secs(2));
    }
    let c = consumer.health().counters.snapshot();
    log::info!(
        "stopped: {} bars accepted, {} corrections, {} duplicates, {} rejected, {} seq gaps ({} lines lost), {}",
        c.bars_accepted,
        c.corrections,
        c.duplicates,
        c.rejects_total,
        c.seq_gaps,
        c.lines_lost,
        plural(consumer.store().symbols().len(), "symbol")
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("barbridge: {e}");
            ExitCode::from(code)
        }
    }
}
