//! `barbridge` CLI: run the consumer on a FIFO, or show a running consumer's status.
//!
//! Output to a closed stdout (`barbridge status | head -3`) ends that output quietly; the
//! command still finishes its work and exits with its own code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use barbridge::asset::{AssetClass, JournalDay};
use barbridge::calendar::{fmt_ny_time, ny_date, session_on};
use barbridge::consumer::journal::{day_path, FsyncPolicy, Journal};
use barbridge::{Clock, Consumer, FeedOptions, StatusReport, StatusWriter, SystemClock};
use clap::{Parser, Subcommand, ValueEnum};

mod cli;
use cli::nats::NatsArgs;

#[derive(Clone, Copy, ValueEnum)]
enum Fsync {
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

#[derive(Parser)]
#[command(name = "barbridge", version, about = "Market-data bridge consumer: Alpaca bars from the sidecar's FIFO into a per-symbol store")]
struct Cli {
    /// Log lines on stderr: text for a person, json (one object a line: ts, level, target,
    /// message, pid) for log shippers.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text, env = "BARBRIDGE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// Rewrite this JSON status file every second [default: status.json beside the FIFO].
        #[arg(long)]
        status_file: Option<PathBuf>,
        /// Seconds without any line before the feed is declared stale.
        #[arg(long, default_value = "120", value_parser = seconds)]
        stale_after: Duration,
        /// Print every accepted bar (after dedupe; corrections again) to stdout as a wire line.
        #[arg(long)]
        echo: bool,
        /// Bars kept per symbol.
        #[arg(long, default_value_t = 10_000)]
        capacity: usize,
        /// Symbols kept at most (1 to 10,000,000); bars of further symbols are refused and counted
        /// (`symbol_bound_refused`).
        #[arg(long, default_value_t = barbridge::consumer::store::DEFAULT_MAX_SYMBOLS)]
        max_symbols: usize,
        /// Exit when the first writer session ends (benchmarks, batch loads).
        #[arg(long)]
        once: bool,
        /// Attach one channel subscriber that discards what it receives (measures delivery cost).
        #[arg(long)]
        drain_subscriber: bool,
        /// Journal every accepted bar into DIR/bars-YYYY-MM-DD.jsonl and reload today's on start.
        #[arg(long, env = "BARBRIDGE_JOURNAL")]
        journal: Option<PathBuf>,
        /// When to fsync the journal: always (every read batch), interval (once a second), never.
        #[arg(long, value_enum, default_value_t = Fsync::Interval)]
        fsync: Fsync,
        #[command(flatten)]
        nats: NatsArgs,
        /// Serve /metrics (Prometheus), /status.json and a live page (/) on HOST:PORT, e.g.
        /// 127.0.0.1:9464, or PORT on 127.0.0.1 (0 picks a free port; the address is logged).
        /// Off by default.
        #[arg(long, env = "BARBRIDGE_METRICS_ADDR")]
        metrics_addr: Option<String>,
        /// Symbols given their own `symbol` label in /metrics (the least recently updated).
        #[arg(long, default_value_t = barbridge::ops::metrics::DEFAULT_MAX_SYMBOL_LABELS)]
        metrics_max_symbols: usize,
    },
    /// List, per symbol, the regular-session minutes without a bar in a journal (times of day
    /// in New York time).
    Gaps {
        #[arg(long, env = "BARBRIDGE_JOURNAL")]
        journal: PathBuf,
        /// Session date (YYYY-MM-DD, New York; crypto pairs: the UTC day); default: today in New York (UTC for crypto).
        #[arg(long)]
        date: Option<String>,
        /// Only these symbols (comma-separated); default: every symbol in the journal.
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Feed recorded bars (a journal or any wire-format JSONL file) through the consumer path.
    Replay {
        /// Files to replay, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_delimiter = ',')]
        symbols: Vec<String>,
        /// Print every accepted bar to stdout as a wire line.
        #[arg(long)]
        echo: bool,
        /// Journal what is accepted.
        #[arg(long)]
        journal: Option<PathBuf>,
    },
    /// Check a NATS server for `run --publish`/`--source`: reachable, JetStream enabled, the
    /// stream usable (nothing is created). One line per check; exit 0 all good, 2 otherwise.
    NatsCheck(cli::nats::NatsCheckArgs),
    /// Show a running consumer's status. Times of day are New York time.
    ///
    /// Exit code: 0 live; 1 stale or waiting for the first line; 2 not running (its process is
    /// gone, or the file was not rewritten for 5 of its refresh periods) or the file is
    /// unreadable.
    Status {
        #[arg(long, default_value_os_t = barbridge::default_status_path())]
        status_file: PathBuf,
        /// Print the raw JSON instead.
        #[arg(long, conflicts_with = "check")]
        json: bool,
        /// For health checks (systemd, docker, monitors): print one line (LIVE, WAITING, STALE
        /// or NOT RUNNING) and exit with the code above.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run {
            fifo,
            symbols,
            status_file,
            stale_after,
            echo,
            capacity,
            max_symbols,
            once,
            drain_subscriber,
            journal,
            fsync,
            nats,
            metrics_addr,
            metrics_max_symbols,
        } => {
            if let Err(e) = nats.check(journal.is_some()) {
                return config_error(e);
            }
            let journal = match journal.map(|dir| Journal::open(dir, fsync.policy())).transpose() {
                Ok(j) => j,
                Err(e) => return config_error(e),
            };
            let metrics = barbridge::ops::metrics::MetricsOptions { max_symbol_labels: metrics_max_symbols };
            let outputs = Outputs { echo, drain_subscriber, metrics_addr, metrics };
            // Each FIFO's consumer has its own status file: two instances never share one.
            let status_file = status_file.unwrap_or_else(|| fifo.with_file_name("status.json"));
            run(fifo, symbols, status_file, stale_after, outputs, (capacity, max_symbols), once, journal, &nats)
        }
        Command::Gaps { journal, date, symbols, json } => match check_symbols(&symbols) {
            Ok(()) => gaps(&journal, date.as_deref(), &symbols, json),
            Err(e) => e,
        },
        Command::Replay { files, symbols, echo, journal } => {
            let journal = match journal.map(|dir| Journal::open(dir, FsyncPolicy::default())).transpose() {
                Ok(j) => j,
                Err(e) => return config_error(e),
            };
            replay(&files, symbols, echo, journal)
        }
        Command::Status { status_file, json, check } => status(&status_file, json, check),
        Command::NatsCheck(args) => args.run(),
    }
}

/// `gaps --symbols` (a report, no consumer) by the wire protocol's symbol rule, worded as the
/// consumer's own [`barbridge::ConfigError`]; the error exit otherwise.
fn check_symbols(symbols: &[String]) -> Result<(), ExitCode> {
    match symbols.iter().find_map(|s| barbridge::wire::validate_symbol(s).err()) {
        Some(e) => Err(config_error(barbridge::ConfigError::Symbol(e))),
        None => Ok(()),
    }
}

/// A number of seconds (`--stale-after`) as a duration; 0 is left to the builder to refuse.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text} is not a number of seconds from 0 to about 5.8e11"))
}

/// Write `text` to stdout. A closed stdout (the reader of a pipe went away) is not an error:
/// nobody is left to read, so the output just ends. Any other write error is reported.
fn emit(text: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("barbridge: cannot write to stdout: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// `n word` or `n words`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// env_logger on stderr, as text or one JSON object a line.
fn init_logging(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
                "pid": std::process::id(),
            });
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

fn status(path: &std::path::Path, json: bool, check: bool) -> ExitCode {
    let report = match StatusReport::read(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("barbridge: {e}");
            if check {
                let _ = emit("NOT RUNNING\n");
            }
            return ExitCode::from(2);
        }
    };
    let now = SystemClock.now_ms();
    let liveness = report.liveness(now);
    let text = if check {
        format!("{}\n", liveness.label())
    } else if json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("barbridge: cannot show status file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    } else {
        report.render(now, liveness)
    };
    match emit(&text) {
        Ok(()) => ExitCode::from(liveness.exit_code()),
        Err(code) => code,
    }
}

/// One sentence on stderr, exit 2: how every wrong setting ends.
fn config_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("barbridge: {msg}");
    ExitCode::from(2)
}

/// Where `run` sends accepted bars besides the store.
struct Outputs {
    echo: bool,
    drain_subscriber: bool,
    /// Where to serve /metrics, /status.json and the page.
    metrics_addr: Option<String>,
    metrics: barbridge::ops::metrics::MetricsOptions,
}

#[allow(clippy::too_many_arguments)]
fn run(
    fifo: PathBuf,
    symbols: Vec<String>,
    status_file: PathBuf,
    stale_after: Duration,
    outputs: Outputs,
    (capacity, max_symbols): (usize, usize),
    once: bool,
    journal: Option<Journal>,
    nats: &NatsArgs,
) -> ExitCode {
    let mut builder = Consumer::builder().symbols(symbols).stale_after(stale_after).capacity_per_symbol(capacity).max_symbols(max_symbols);
    if let Some(j) = journal {
        builder = builder.journal(j);
    }
    let consumer = match builder.build() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    // Resume warm: today's bars are back in the store before the FIFO is read.
    consumer.resume_from_journal(SystemClock.now_ms());
    let echo = outputs.echo.then(|| consumer.echo_to_stdout());
    if outputs.drain_subscriber {
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
    let http = match outputs.metrics_addr.as_deref() {
        Some(addr) => {
            let options = barbridge::ops::http::HttpOptions { metrics: outputs.metrics, fifo: read_fifo };
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

fn gaps(journal: &std::path::Path, date: Option<&str>, symbols: &[String], json: bool) -> ExitCode {
    let date = match date {
        Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => return config_error(format!("--date {d:?} is not a YYYY-MM-DD date")),
        },
        None => None,
    };
    // Crypto pairs have their own UTC days and no calendar (see crypto_gaps); the rest is stocks.
    let (crypto, stocks): (Vec<String>, Vec<String>) = symbols.iter().cloned().partition(|s| AssetClass::of(s) == AssetClass::Crypto);
    let crypto_part = match crypto_gaps(journal, date, &crypto, symbols.is_empty(), json) {
        Ok(part) => part,
        Err(code) => return code,
    };
    if !symbols.is_empty() && stocks.is_empty() {
        let text = crypto_part.map_or_else(String::new, |(text, _)| text);
        return emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS);
    }
    let symbols = &stocks;
    let date = date.unwrap_or_else(|| ny_date(SystemClock.now_ms()));
    if let Some(notice) = barbridge::calendar::expiry_notice(ny_date(SystemClock.now_ms())) {
        log::warn!("{notice}");
    }
    let session = match session_on(date) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let text = format!("{date} is not a NYSE trading day (weekend or holiday): no session, no gaps\n");
            let text = text + &crypto_part.map_or_else(String::new, |(text, _)| text);
            return emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS);
        }
        Err(e) => return config_error(e),
    };
    let path = day_path(journal, date);
    if !path.exists() && symbols.is_empty() {
        // A crypto-only journal has no stock day file: report what there is, or say what is missing.
        return match crypto_part {
            Some((text, value)) => emit(&if json { value.to_string() + "\n" } else { text }).map_or_else(|code| code, |()| ExitCode::SUCCESS),
            None => {
                eprintln!(
                    "barbridge: no journal for {date} in {}: neither {} nor {} exists (is --journal the directory `run --journal` writes, and --date a day it ran?)",
                    journal.display(),
                    path.display(),
                    JournalDay { asset: AssetClass::Crypto, date }.path(journal).display()
                );
                ExitCode::from(1)
            }
        };
    }
    let mut minutes: std::collections::BTreeMap<String, Vec<i64>> = symbols.iter().map(|s| (s.clone(), Vec::new())).collect();
    let wanted = |symbol: &str| symbols.is_empty() || symbols.iter().any(|s| s == symbol);
    let trading = barbridge::trading::TradingBook::default();
    let read = barbridge::consumer::journal::read_journal(
        &path,
        |symbol, bar, _| {
            if wanted(symbol) {
                minutes.entry(symbol.to_owned()).or_default().push(bar.timestamp_ms);
            }
        },
        |status| {
            if wanted(&status.symbol) {
                trading.apply(&status);
            }
        },
    );
    if let Err(e) = read {
        eprintln!("barbridge: {e}");
        return ExitCode::from(1);
    }
    for symbol in trading.all_halts().into_keys() {
        minutes.entry(symbol).or_default(); // a symbol halted all day has no bar, but halts
    }
    let until = SystemClock.now_ms();
    let report: Vec<_> = minutes
        .into_iter()
        .map(|(sym, ts)| barbridge::consumer::gaps::session_gaps_halted(&sym, &session, until, ts, &trading.halts(&sym)))
        .collect();
    let text = if json {
        let mut doc = serde_json::json!({"date": date.to_string(), "open_ms": session.open_ms, "close_ms": session.close_ms, "symbols": report});
        if let Some((_, crypto)) = crypto_part {
            doc["crypto"] = crypto;
        }
        doc.to_string() + "\n"
    } else {
        render_gaps(&session, until, &report, &path) + &crypto_part.map_or_else(String::new, |(text, _)| text)
    };
    emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS)
}

/// The crypto part of `gaps`: the UTC day `date` (default: today, UTC) of `crypto-DATE.jsonl`,
/// every minute in session (crypto trades around the clock, see barbridge::asset). `None` when
/// no crypto pair is asked for and the day has no crypto file. Alpaca sends no bar for a minute
/// without trades, and quiet minutes are common for crypto pairs: a hole here is a quiet minute or
/// a loss, which the journal alone cannot tell apart, and the report says so.
/// Returns (text for a person or one JSON line, the JSON value).
#[allow(clippy::type_complexity)]
fn crypto_gaps(
    journal: &std::path::Path,
    date: Option<chrono::NaiveDate>,
    pairs: &[String],
    all: bool,
    json: bool,
) -> Result<Option<(String, serde_json::Value)>, ExitCode> {
    let now = SystemClock.now_ms();
    let day = JournalDay { asset: AssetClass::Crypto, date: date.unwrap_or_else(|| AssetClass::Crypto.date(now)) };
    let path = day.path(journal);
    if pairs.is_empty() && !(all && path.exists()) {
        return Ok(None);
    }
    let session = barbridge::asset::crypto_session(day.date);
    let mut minutes: std::collections::BTreeMap<String, Vec<i64>> = pairs.iter().map(|s| (s.clone(), Vec::new())).collect();
    if path.exists() {
        if let Err(e) = barbridge::consumer::journal::read_records(&path, |symbol, bar, _| {
            if pairs.is_empty() || pairs.iter().any(|s| s == symbol) {
                minutes.entry(symbol.to_owned()).or_default().push(bar.timestamp_ms);
            }
        }) {
            eprintln!("barbridge: {e}");
            return Err(ExitCode::from(1));
        }
    }
    let report: Vec<_> = minutes.into_iter().map(|(sym, ts)| barbridge::consumer::gaps::session_gaps(&sym, &session, now, ts)).collect();
    const NOTE: &str = "crypto: every UTC minute counts; Alpaca sends no bar for a minute without trades, so a hole is a quiet minute or a loss (compare with REST bars to tell)";
    let value =
        serde_json::json!({"date": day.date.to_string(), "open_ms": session.open_ms, "close_ms": session.close_ms, "symbols": report, "note": NOTE});
    let text = if json {
        value.to_string() + "\n"
    } else {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "crypto day {} UTC: 00:00 - 24:00 UTC ({} minutes){}",
            day.date,
            session.minutes(),
            if now < session.close_ms { "  [in progress: counted up to now]" } else { "" }
        );
        let _ = writeln!(out, "{NOTE}");
        let _ = writeln!(out, "{:<12} {:>6} {:>13} {:>12} {:>7} {:>12}", "PAIR", "BARS", "BEFORE FIRST", "AFTER LAST", "HOLES", "HOLE MINUTES");
        for g in &report {
            let _ = writeln!(
                out,
                "{:<12} {:>6} {:>13} {:>12} {:>7} {:>12}",
                g.symbol,
                g.bars,
                g.before_first,
                g.after_last,
                g.holes.len(),
                g.hole_minutes()
            );
            for h in &g.holes {
                let _ = writeln!(
                    out,
                    "    hole at {} UTC: {} minute(s)",
                    chrono::DateTime::from_timestamp_millis(h.start_ms).unwrap_or_default().format("%H:%M"),
                    h.minutes
                );
            }
        }
        if report.is_empty() {
            let _ = writeln!(out, "(no crypto bars in {})", path.display());
        }
        out
    };
    Ok(Some((text, value)))
}

/// The `gaps` table for a person; times of day in New York time, with the zone.
fn render_gaps(
    session: &barbridge::calendar::Session,
    until: i64,
    report: &[barbridge::consumer::gaps::SymbolGaps],
    path: &std::path::Path,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "session {}: {} - {} ({} minutes){}",
        session.date,
        fmt_ny_time(session.open_ms),
        fmt_ny_time(session.close_ms),
        session.minutes(),
        if until < session.close_ms { "  [in progress: counted up to now]" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>13} {:>12} {:>7} {:>12} {:>8}",
        "SYMBOL", "BARS", "BEFORE FIRST", "AFTER LAST", "HOLES", "HOLE MINUTES", "HALTED"
    );
    for g in report {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>13} {:>12} {:>7} {:>12} {:>8}",
            g.symbol,
            g.bars,
            g.before_first,
            g.after_last,
            g.holes.len(),
            g.hole_minutes(),
            g.halted_minutes
        );
        for h in &g.holes {
            let _ = writeln!(out, "    hole at {}: {} minute(s)", fmt_ny_time(h.start_ms), h.minutes);
        }
        for h in &g.halts {
            let end = h.end_ms.map_or_else(|| "(still halted)".to_owned(), fmt_ny_time);
            let code = if h.code.is_empty() { String::new() } else { format!(", code {}", h.code) };
            let _ = writeln!(out, "    halted {}-{end}: {} minute(s) without bars{code}", fmt_ny_time(h.start_ms), h.minutes);
        }
    }
    if report.is_empty() {
        let _ = writeln!(out, "(no bars in {})", path.display());
    }
    out
}

fn replay(files: &[PathBuf], symbols: Vec<String>, echo: bool, journal: Option<Journal>) -> ExitCode {
    // A file of the user's own: its symbols are bounded by its size, not by a live feed's bound.
    let mut builder = Consumer::builder().symbols(symbols).capacity_per_symbol(1 << 20).max_symbols(barbridge::consumer::store::MAX_MAX_SYMBOLS);
    if let Some(j) = journal {
        builder = builder.journal(j);
    }
    let consumer = match builder.build() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let echo = echo.then(|| consumer.echo_to_stdout());
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("barbridge: cannot read {}: {e}", file.display());
                return ExitCode::from(1);
            }
        };
        // One line per `\n`; a last line without one counts too, the empty piece after a
        // final `\n` does not.
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        if !body.is_empty() {
            for line in body.split(|b| *b == b'\n') {
                let _ = consumer.ingest_line(line);
            }
        }
        consumer.flush();
    }
    if let Some(echo) = echo {
        echo.finish(Duration::from_secs(10));
    }
    let c = consumer.health().counters.snapshot();
    log::info!(
        "replayed {}: {} accepted, {} corrections, {} duplicates, {} rejected, {}",
        plural(usize::try_from(c.lines).unwrap_or(usize::MAX), "line"),
        plural(usize::try_from(c.bars_accepted).unwrap_or(usize::MAX), "bar"),
        c.corrections,
        c.duplicates,
        c.rejects_total,
        plural(consumer.store().symbols().len(), "symbol")
    );
    ExitCode::SUCCESS
}
