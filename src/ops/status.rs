//! Status file: a JSON snapshot of a running consumer, rewritten atomically every second, and
//! its human rendering for `barbridge status`.
//!
//! The per-symbol detail is capped ([`DEFAULT_MAX_SYMBOLS`]): with more symbols, the file lists
//! the ones updated least recently (the first to look at when something is stale) and counts
//! the others in `symbols_omitted`; the counters always cover every symbol. The file is rewritten
//! every period even when only the clock moved: `updated_ms` is how `barbridge status` and the
//! launcher tell a live consumer from a hung one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::consumer::health::{FeedState, HealthSnapshot, StaleReason};
use crate::consumer::journal::JournalStatus;
use crate::consumer::{Consumer, SubscriberStatus};
use crate::private::{ensure_private_dir, Durability, PrivateError};

/// Why a status file cannot be read or written. Each message is one sentence a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The file cannot be read (usually: no consumer writes it).
    #[error("cannot read status file {path}: {source}; is `barbridge run --status-file {path}` running?")]
    Read {
        /// The status file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a status report (or a report could not be encoded).
    #[error("status file {path} is not a valid status report: {source}")]
    Invalid {
        /// The status file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The file or its directory is not private, or the write failed.
    #[error(transparent)]
    Write(#[from] PrivateError),
    /// Another process writes this status file.
    #[error("status file {path} is written by another consumer{holder}; give this one its own --status-file (each consumer holds its status file alone, or `status` would show two processes in turn)")]
    InUse {
        /// The status file.
        path: PathBuf,
        /// ` (pid N)` when the lock file names the holder, else empty.
        holder: String,
    },
    /// The status file's lock (`<status>.lock`) cannot be taken.
    #[error("cannot lock status file {path}: {detail}")]
    Lock {
        /// The status file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Version of the status file layout.
pub const STATUS_VERSION: u32 = 1;

/// Symbols whose detail (health, bars stored, session holes) the status file lists.
pub const DEFAULT_MAX_SYMBOLS: usize = 2_000;

/// The status file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Format version of this file.
    pub version: u32,
    /// Process id of the consumer that wrote it.
    pub pid: u32,
    /// The FIFO read, when there is one.
    pub fifo: Option<String>,
    /// When the file was written, UTC epoch milliseconds.
    pub updated_ms: i64,
    /// Feed health and counters.
    pub health: HealthSnapshot,
    /// Bars held in the store per symbol.
    pub stored: BTreeMap<String, usize>,
    /// Every subscriber's drops and queue.
    pub subscribers: Vec<SubscriberStatus>,
    /// The journal's state, when one is attached.
    #[serde(default)]
    pub journal: Option<JournalStatus>,
    /// Per symbol: missing minutes between its first and last bar in today's regular session
    /// (empty outside session days). `barbridge gaps` gives the detail.
    #[serde(default)]
    pub session_holes: BTreeMap<String, i64>,
    /// Per symbol: minutes of today's regular session without a bar because the symbol was
    /// halted (not in `session_holes`; only symbols with any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session_halted: BTreeMap<String, i64>,
    /// Per symbol: minutes of today's session without a bar that REST confirmed quiet (no
    /// trade; not in `session_holes`; only symbols with any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session_quiet: BTreeMap<String, i64>,
    /// How late bars and minutes were since the start ([`crate::consumer::latency`]).
    #[serde(default)]
    pub latency: crate::consumer::latency::LatencySnapshot,
    /// Symbols not trading now (halted, paused, quoting), with since when and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub halted: BTreeMap<String, crate::trading::SymbolTrading>,
    /// Symbols left out of the per-symbol detail above (over [`DEFAULT_MAX_SYMBOLS`]).
    #[serde(default)]
    pub symbols_omitted: usize,
    /// How often the writer rewrites this file (ms); `None` for a report not written by a
    /// [`StatusWriter`]. A file older than [`NOT_RUNNING_AFTER_PERIODS`] of these is stale.
    #[serde(default)]
    pub refresh_ms: Option<u64>,
    /// Sections added by other parts of the process ([`Consumer::add_status_section`]), e.g.
    /// `publish`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// A status file not rewritten for this many of its refresh periods belongs to a consumer that
/// is not running (or is hung): the margin covers a slow write on a loaded machine.
pub const NOT_RUNNING_AFTER_PERIODS: u64 = 5;

/// The refresh period assumed for a file that does not state one.
const DEFAULT_REFRESH_MS: u64 = 1_000;

/// What `barbridge status` concludes from a status file, and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The consumer runs and bars are arriving: exit 0.
    Live,
    /// The consumer runs but has received nothing yet: exit 1.
    Waiting,
    /// The consumer runs but the feed is stale: exit 1.
    Stale,
    /// The consumer's process is gone: exit 2.
    Exited,
    /// The file was not rewritten for [`NOT_RUNNING_AFTER_PERIODS`] refresh periods (the
    /// consumer died without a trace or is hung): exit 2.
    NotUpdated,
}

impl Liveness {
    /// The words `barbridge status --check` prints.
    pub fn label(self) -> &'static str {
        match self {
            Liveness::Live => "LIVE",
            Liveness::Waiting => "WAITING",
            Liveness::Stale => "STALE",
            Liveness::Exited | Liveness::NotUpdated => "NOT RUNNING",
        }
    }

    /// The exit code of `barbridge status`: 0 live, 1 stale or waiting, 2 not running (an
    /// unreadable file is 2 as well).
    pub fn exit_code(self) -> u8 {
        match self {
            Liveness::Live => 0,
            Liveness::Waiting | Liveness::Stale => 1,
            Liveness::Exited | Liveness::NotUpdated => 2,
        }
    }
}

/// True when a process with this pid exists (of any user).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

impl StatusReport {
    /// Snapshot `consumer`, with the detail of at most [`DEFAULT_MAX_SYMBOLS`] symbols.
    pub fn collect(consumer: &Consumer, fifo: Option<&Path>) -> StatusReport {
        Self::collect_capped(consumer, fifo, DEFAULT_MAX_SYMBOLS)
    }

    /// Snapshot `consumer`, with the detail of the `max_symbols` symbols updated least recently
    /// (ties by name); the rest are counted in `symbols_omitted`.
    pub fn collect_capped(consumer: &Consumer, fifo: Option<&Path>, max_symbols: usize) -> StatusReport {
        // Journal, then store, then health: each part is at least as new as the one before, so
        // a reader that sees a bar in the journal also sees it counted.
        let journal = consumer.journal().map(|j| j.status());
        let store = consumer.store();
        let (symbols, symbols_omitted) = store.symbol_health_least_recent(max_symbols);
        let health = consumer.health().snapshot(symbols);
        let stored = health.symbols.keys().map(|s| (s.clone(), store.len(s))).collect();
        // Each symbol's own session: a stock's NYSE session, a crypto pair's UTC day (crate::asset).
        let mut session_halted = BTreeMap::new();
        let mut session_quiet = BTreeMap::new();
        let session_holes = health
            .symbols
            .keys()
            .filter_map(|sym| {
                let g = consumer.session_gaps(sym, health.now_ms)?;
                if g.halted_minutes > 0 {
                    session_halted.insert(sym.clone(), g.halted_minutes);
                }
                if g.quiet_minutes > 0 {
                    session_quiet.insert(sym.clone(), g.quiet_minutes);
                }
                Some((sym.clone(), g.hole_minutes()))
            })
            .collect();
        StatusReport {
            session_halted,
            session_quiet,
            latency: consumer.latency(),
            halted: consumer.halted_now(),
            symbols_omitted,
            session_holes,
            version: STATUS_VERSION,
            pid: std::process::id(),
            fifo: fifo.map(|p| p.display().to_string()),
            updated_ms: health.now_ms,
            stored,
            subscribers: consumer.subscriber_status(),
            journal,
            health,
            refresh_ms: None,
            sections: consumer.status_sections(),
        }
    }

    /// Whether the consumer that wrote this report is running, and its feed's state, at `now_ms`.
    pub fn liveness(&self, now_ms: i64) -> Liveness {
        let refresh = self.refresh_ms.unwrap_or(DEFAULT_REFRESH_MS).max(1);
        let limit = refresh.saturating_mul(NOT_RUNNING_AFTER_PERIODS);
        if !pid_alive(self.pid) {
            return Liveness::Exited;
        }
        if now_ms.saturating_sub(self.updated_ms) > i64::try_from(limit).unwrap_or(i64::MAX) {
            return Liveness::NotUpdated;
        }
        match self.health.state {
            FeedState::Live => Liveness::Live,
            FeedState::Waiting => Liveness::Waiting,
            FeedState::Stale => Liveness::Stale,
        }
    }

    /// Write atomically into a private directory (created 0700 if absent; one another user
    /// could write in is refused): a fresh temporary file, then rename (see
    /// [`crate::private::write_atomic`]).
    ///
    /// # Errors
    /// [`StatusError::Write`]: what [`ensure_private_dir`] finds wrong with the directory, a
    /// path without a file name, or the write's I/O error.
    pub fn write_atomic(&self, path: &Path) -> Result<(), StatusError> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| PrivateError::WrongType { path: path.to_path_buf(), what: "not a file name" })?;
        ensure_private_dir(dir)?;
        let mut bytes = serde_json::to_vec(self).map_err(|source| StatusError::Invalid { path: path.to_path_buf(), source })?;
        bytes.push(b'\n');
        Ok(crate::private::write_atomic(dir, name, &bytes, Durability::Cached)?)
    }

    /// Read a status file written by [`StatusWriter`].
    ///
    /// # Errors
    /// [`StatusError::Read`] when the file cannot be read, [`StatusError::Invalid`] when it is not
    /// a status report.
    pub fn read(path: &Path) -> Result<StatusReport, StatusError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatusError::Read { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| StatusError::Invalid { path: path.to_path_buf(), source })
    }

    /// A person's view, ages measured against `now_ms`; `liveness` is [`StatusReport::liveness`].
    /// Times of day are New York time, with the zone.
    pub fn render(&self, now_ms: i64, liveness: Liveness) -> String {
        let h = &self.health;
        let c = &h.counters;
        let mut out = String::new();
        let age = |ms: i64| fmt_age(now_ms - ms);
        let file_age = fmt_age(now_ms - self.updated_ms);
        let feed_state = match h.state {
            FeedState::Live => "LIVE",
            FeedState::Waiting => "WAITING (nothing received yet)",
            FeedState::Stale => "STALE",
        };
        let state = match liveness {
            Liveness::Exited => {
                out.push_str(&format!("WARNING: the consumer (pid {}) is not running; this status is from {file_age} ago\n", self.pid));
                format!("NOT RUNNING (last reported {feed_state})")
            }
            Liveness::NotUpdated => {
                out.push_str(&format!("WARNING: status last written {file_age} ago: the consumer (pid {}) is not running or is hung\n", self.pid));
                format!("NOT RUNNING (last reported {feed_state})")
            }
            Liveness::Live | Liveness::Waiting | Liveness::Stale => feed_state.to_owned(),
        };
        out.push_str(&format!("barbridge consumer pid {}  state {state}", self.pid));
        if let Some(since) = h.stale_since_ms {
            out.push_str(&format!(" for {}", age(since)));
        }
        match h.stale_reason.filter(|_| h.state == FeedState::Stale) {
            Some(StaleReason::NothingReceived) => out.push_str(" (nothing received)"),
            Some(StaleReason::OnlyConflicts) => out.push_str(&format!(
                " (only conflicts: {} bar(s) for stored minutes with different values, none delivered; a source restarted inside minutes it already sent? send corrections as updated_bar)",
                h.conflicts_since_delivered
            )),
            None => {}
        }
        if !h.symbols.is_empty() && h.symbols.keys().all(|s| self.halted.contains_key(s)) {
            out.push_str("  (every symbol halted: no bars expected, the link is watched by heartbeats)");
        }
        out.push('\n');
        if let Some(fifo) = &self.fifo {
            out.push_str(&format!("fifo      {fifo}\n"));
        }
        out.push_str(&format!(
            "up        {}   last message {}   stale after {}\n",
            age(h.started_ms),
            h.last_message_ms.map_or("never".to_owned(), |t| format!("{} ago", age(t))),
            fmt_age(h.stale_after_ms)
        ));
        if let Some(s) = &h.sidecar {
            out.push_str(&format!(
                "sidecar   {}{} ({} ago)\n",
                s.state,
                s.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
                age(s.received_ms)
            ));
        }
        out.push_str(&format!(
            "bars      {} accepted, {} corrections, {} duplicates, {} conflicts, {} filtered\n",
            c.bars_accepted, c.corrections, c.duplicates, c.conflicts, c.filtered
        ));
        if c.symbol_bound_refused > 0 {
            out.push_str(&format!(
                "refused   {} bars/statuses of new symbols past the store's symbol bound (--max-symbols)\n",
                c.symbol_bound_refused
            ));
        }
        let rejects =
            if c.rejects.is_empty() { "0".to_owned() } else { c.rejects.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ") };
        out.push_str(&format!("rejects   {rejects}\n"));
        out.push_str(&format!(
            "link      {} heartbeats, {} reconnects, {} disconnects, {} seq gaps ({} lines lost), {} stale episodes, {} delivery drops\n",
            c.heartbeats, c.reconnects, c.disconnects, c.seq_gaps, c.lines_lost, c.stale_episodes, c.delivery_drops
        ));
        if c.fifo_open_errors > 0 {
            out.push_str(&format!(
                "fifo      {} failed reopen(s) for want of a file descriptor (EMFILE/ENFILE; old descriptor kept, nothing lost)\n",
                c.fifo_open_errors
            ));
        }
        if let Some(j) = &self.journal {
            out.push_str(&format!(
                "journal   {}: {} written, {} pending, {} dropped{}\n",
                j.dir,
                j.records_written,
                j.pending_records,
                j.dropped_records,
                j.error.as_deref().map(|e| format!("  ERROR: {e}")).unwrap_or_default()
            ));
        }
        if c.trading_statuses > 0 || !self.halted.is_empty() {
            out.push_str(&format!("trading   {} statuses, {} halts, {} symbol(s) halted now\n", c.trading_statuses, c.halts, self.halted.len()));
        }
        // A halt's time is the data's (the status's own time). On a data clock that is not this
        // host's (a demo's runs a minute a second ahead, a test's or a replay's in the past), an
        // age on the host's clock means nothing ("0.0s ago" for ever, or a year): it is then
        // measured on the data's clock, the end of the newest bar's minute, and said so.
        let data_now = h.symbols.values().map(|s| s.last_bar_ts_ms.saturating_add(crate::wire::MINUTE_MS)).max();
        // A halt after that clock's now (a journal of a run whose clock ran ahead) says so.
        let halt_age = |since: i64| {
            let (clock, on) = match data_now {
                Some(d) if (d - now_ms).abs() > 2 * crate::wire::MINUTE_MS => (d, " on the data's clock"),
                _ => (now_ms, ""),
            };
            match clock - since {
                age if age < -crate::wire::MINUTE_MS => format!("{} in the future{on}", fmt_age(-age)),
                age => format!("{} ago{on}", fmt_age(age)),
            }
        };
        for (symbol, t) in &self.halted {
            let why = [t.code.as_str(), t.reason.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
            out.push_str(&format!(
                "HALTED    {symbol} {} since {} ({}){}\n",
                t.state.as_str(),
                crate::calendar::fmt_ny_time(t.since_ms),
                halt_age(t.since_ms),
                if why.is_empty() { String::new() } else { format!(": {why}") }
            ));
        }
        out.push_str(&format!(
            "\n{:<10} {:>8} {:>8}  {:<20} {:>10} {:>6} {:>7}\n",
            "SYMBOL", "BARS", "STORED", "LAST BAR (NEW YORK)", "RECEIVED", "HOLES", "HALTED"
        ));
        for (symbol, s) in &h.symbols {
            let halted = match (self.halted.get(symbol), self.session_halted.get(symbol)) {
                (Some(_), Some(n)) => format!("{n} now"),
                (Some(_), None) => "now".to_owned(),
                (None, Some(n)) => n.to_string(),
                (None, None) => "-".to_owned(),
            };
            out.push_str(&format!(
                "{:<10} {:>8} {:>8}  {:<20} {:>10} {:>6} {:>7}\n",
                symbol,
                s.bars,
                self.stored.get(symbol).copied().unwrap_or(0),
                crate::calendar::fmt_ny(s.last_bar_ts_ms),
                format!("{} ago", age(s.last_received_ms)),
                self.session_holes.get(symbol).map_or("-".to_owned(), |n| n.to_string()),
                halted
            ));
        }
        if self.symbols_omitted > 0 {
            out.push_str(&format!(
                "... and {} more symbols not shown (only the {} updated least recently are listed; the counters cover all)\n",
                self.symbols_omitted,
                h.symbols.len()
            ));
        } else if h.symbols.is_empty() {
            out.push_str("(no bars yet)\n");
        }
        for sub in &self.subscribers {
            if sub.dropped > 0 {
                out.push_str(&format!("subscriber {:?}: {} dropped, {} queued\n", sub.name, sub.dropped, sub.queued));
            }
        }
        out
    }
}

fn fmt_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{}.{}s", s, (ms.max(0) % 1000) / 100),
        120..=7199 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Rewrites the status file every `period` until stopped; writes once more on stop.
#[derive(Debug)]
pub struct StatusWriter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    _lock: crate::consumer::reader::ReaderLock,
}

/// A status file held by this process alone (an exclusive lock on `<path>.lock`, released when
/// dropped or the process ends): [`StatusLock::take`] it before anything else starts, so that a
/// second consumer on the same file is refused before it touches anything, then hand it to
/// [`StatusWriter::start_locked`].
#[derive(Debug)]
pub struct StatusLock {
    path: PathBuf,
    lock: crate::consumer::reader::ReaderLock,
}

impl StatusLock {
    /// Hold `path` alone (its directory is created, mode 0700, if absent).
    ///
    /// # Errors
    /// [`StatusError::InUse`] when another process writes `path`, [`StatusError::Lock`] or
    /// [`StatusError::Write`] when its lock file cannot be created (a directory that is not
    /// private, a symlink).
    pub fn take(path: PathBuf) -> Result<StatusLock, StatusError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::ensure_private_dir(dir)?;
        }
        let lock = crate::consumer::reader::lock_reader(&path).map_err(|e| match e {
            crate::FifoError::Busy { holder, .. } => StatusError::InUse { path: path.clone(), holder },
            other => StatusError::Lock { path: path.clone(), detail: other.to_string() },
        })?;
        Ok(StatusLock { path, lock })
    }
}

impl StatusWriter {
    /// Hold `path` alone ([`StatusLock::take`]) and start writing it (a directory that is not
    /// private is refused on every write, logged once).
    ///
    /// # Errors
    /// Those of [`StatusLock::take`].
    pub fn start(consumer: Arc<Consumer>, path: PathBuf, fifo: Option<PathBuf>, period: Duration) -> Result<StatusWriter, StatusError> {
        Ok(Self::start_locked(consumer, StatusLock::take(path)?, fifo, period))
    }

    /// Start writing the status file `held` holds, every `period`, until stopped.
    pub fn start_locked(consumer: Arc<Consumer>, held: StatusLock, fifo: Option<PathBuf>, period: Duration) -> StatusWriter {
        let StatusLock { path, lock } = held;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("barbridge-status".into())
                .spawn(move || {
                    let mut failing = false;
                    loop {
                        // Read the flag before collecting: the write that follows a stop request
                        // then includes everything ingested before it (the final report).
                        let stopping = stop.load(Ordering::Acquire);
                        consumer.health().tick();
                        let mut report = StatusReport::collect(&consumer, fifo.as_deref());
                        report.refresh_ms = Some(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
                        match report.write_atomic(&path) {
                            Ok(()) if failing => {
                                log::info!("status file {} writable again", path.display());
                                failing = false;
                            }
                            Ok(()) => {}
                            Err(e) if !failing => {
                                log::error!("cannot write status file {}: {e} (will keep trying)", path.display());
                                failing = true;
                            }
                            Err(_) => {}
                        }
                        if stopping {
                            break;
                        }
                        // Sleep in small steps so stop is prompt.
                        let mut slept = Duration::ZERO;
                        while slept < period && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(250));
                            slept += Duration::from_millis(250);
                        }
                    }
                })
                .expect("spawning the status thread")
        };
        StatusWriter { stop, thread, _lock: lock }
    }

    /// Stop after one final write.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_and_renders() {
        let consumer = Consumer::builder().build().unwrap();
        consumer.ingest_line(br#"{"symbol":"SPY","timestamp_ms":1759930080000,"open":1,"high":1,"low":1,"close":1,"volume":1}"#).unwrap();
        let _ = consumer.ingest_line(b"garbage");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let report = StatusReport::collect(&consumer, None);
        report.write_atomic(&path).unwrap();
        let back = StatusReport::read(&path).unwrap();
        assert_eq!(back, report);
        let now = back.updated_ms;
        assert_eq!(back.liveness(now), Liveness::Live);
        let text = back.render(now, back.liveness(now));
        assert!(text.contains("state LIVE"), "{text}");
        assert!(text.contains("malformed_json=1"), "{text}");
        assert!(text.contains("SPY") && text.contains("2025-10-08 09:28 EDT"), "{text}");
        let later = now + 60_000;
        assert_eq!(back.liveness(later), Liveness::NotUpdated);
        let stale_text = back.render(later, back.liveness(later));
        assert!(stale_text.contains("not running"), "{stale_text}");
        assert!(!stale_text.contains("state LIVE"), "{stale_text}");
    }

    #[test]
    fn a_file_is_old_by_its_own_refresh_period_and_a_gone_pid_is_not_running() {
        let consumer = Consumer::builder().build().unwrap();
        let mut report = StatusReport::collect(&consumer, None);
        let now = report.updated_ms;
        assert_eq!(report.liveness(now), Liveness::Waiting);
        assert_eq!(report.liveness(now + 5_001), Liveness::NotUpdated, "default period: 1 s");
        report.refresh_ms = Some(10_000);
        assert_eq!(report.liveness(now + 49_000), Liveness::Waiting, "5 periods of 10 s");
        assert_eq!(report.liveness(now + 50_001), Liveness::NotUpdated);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        report.pid = child.id();
        assert_eq!(report.liveness(now), Liveness::Exited);
        let text = report.render(now, Liveness::Exited);
        assert!(text.contains("state NOT RUNNING (last reported WAITING"), "{text}");
        let codes: Vec<u8> =
            [Liveness::Live, Liveness::Waiting, Liveness::Stale, Liveness::Exited, Liveness::NotUpdated].iter().map(|l| l.exit_code()).collect();
        assert_eq!(codes, [0, 1, 1, 2, 2]);
    }

    #[test]
    fn per_symbol_detail_is_capped_least_recently_updated_first() {
        let clock = crate::consumer::health::ManualClock::new(1_759_930_100_000);
        let consumer = Consumer::builder().clock(clock.clone()).build().unwrap();
        let n = DEFAULT_MAX_SYMBOLS + 500;
        for i in 0..n {
            let line = format!(r#"{{"symbol":"S{i:05}","timestamp_ms":1759930080000,"open":1,"high":1,"low":1,"close":1,"volume":1}}"#);
            consumer.ingest_line(line.as_bytes()).unwrap();
            clock.advance(Duration::from_millis(1));
        }
        let report = StatusReport::collect(&consumer, None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["symbols_omitted"], serde_json::json!(500), "the count of symbols left out is in the file");
        assert_eq!(report.health.symbols.len(), DEFAULT_MAX_SYMBOLS);
        assert_eq!(report.stored.len(), DEFAULT_MAX_SYMBOLS);
        assert!(report.health.symbols.contains_key("S00000"), "the least recently updated symbol is shown");
        assert!(!report.health.symbols.contains_key(&format!("S{:05}", n - 1)), "the most recent is left out");
        assert_eq!(report.health.counters.bars_accepted, n as u64, "counters still cover every symbol");
        let text = report.render(report.updated_ms, Liveness::Live);
        assert!(text.contains("500 more symbols not shown"), "{}", &text[text.len().saturating_sub(300)..]);
    }

    /// Issue 24 item 5: a halt's age is on the data's clock when it is not the host's, and a
    /// halted symbol the barrier's latest minute no longer lists (unsubscribed) is not halted now.
    #[test]
    fn a_halt_is_aged_on_the_data_clock_and_an_unsubscribed_one_is_not_halted_now() {
        use crate::wire::minute::MinuteClosedPart;
        const D: i64 = 1_759_930_080_000; // the data's minutes: a day behind this host's clock
        let clock = crate::consumer::health::ManualClock::new(D + 86_400_000);
        let consumer = Consumer::builder().clock(clock.clone()).build().unwrap();
        let bar = |sym: &str, min: i64| {
            let line = format!(r#"{{"symbol":"{sym}","timestamp_ms":{},"open":1,"high":1,"low":1,"close":1,"volume":1}}"#, D + min * 60_000);
            consumer.ingest_line(line.as_bytes()).unwrap();
        };
        bar("SPY", 0);
        let halt =
            format!(r#"{{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":{},"status":"halted","code":"T1","reason":"news"}}"#, D + 60_000);
        consumer.ingest_line(halt.as_bytes()).unwrap();
        for min in 0..10 {
            bar("SH", min);
        }
        let report = StatusReport::collect(&consumer, None);
        let text = report.render(report.updated_ms, Liveness::Live);
        let line = text.lines().find(|l| l.starts_with("HALTED    SPY")).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("since 09:29 EDT (9m00s ago on the data's clock)"), "{line}");
        // A halt beyond that clock (a journal of a run whose clock ran ahead): not "0.0s ago".
        let ahead =
            format!(r#"{{"type":"trading_status","v":1,"symbol":"QQQ","ts_ms":{},"status":"halted","code":"T1","reason":""}}"#, D + 20 * 60_000);
        consumer.ingest_line(ahead.as_bytes()).unwrap();
        let report = StatusReport::collect(&consumer, None);
        let text = report.render(report.updated_ms, Liveness::Live);
        assert!(text.contains("HALTED    QQQ halted since 09:48 EDT (10m00s in the future on the data's clock): T1"), "{text}");
        // Without a barrier: halted. The barrier's minute lists SPY halted: halted.
        let part = |min: i64, halted: &[&str]| MinuteClosedPart {
            minute_ms: D + min * 60_000,
            closed_ms: D + min * 60_000 + 61_000,
            complete: true,
            part: 1,
            parts: 1,
            bars: vec!["SH".into()],
            halted: halted.iter().map(|s| s.to_string()).collect(),
            none: vec![],
        };
        consumer.ingest_minute_part("w1", part(8, &["SPY"])).unwrap();
        assert!(StatusReport::collect(&consumer, None).halted.contains_key("SPY"));
        // SPY unsubscribed: the next minute lists it nowhere. Not halted in the status file, its
        // text, /metrics; its halt stays in the history and the session's halted minutes.
        consumer.ingest_minute_part("w1", part(9, &[])).unwrap();
        let report = StatusReport::collect(&consumer, None);
        assert!(report.halted.is_empty(), "{:?}", report.halted);
        assert!(!report.render(report.updated_ms, Liveness::Live).contains("HALTED    SPY"));
        let metrics = crate::ops::metrics::render(report);
        assert!(metrics.contains("barbridge_symbols_halted 0.0\n") && metrics.contains("barbridge_symbol_halted{symbol=\"SPY\"} 0.0\n"), "{metrics}");
        assert_eq!(consumer.trading().halts("SPY").len(), 1, "the halt's history is kept");
        assert!(consumer.trading().is_halted("SPY"));
    }
}
