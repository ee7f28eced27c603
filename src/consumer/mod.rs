//! Delivery: the [`Consumer`] pipeline (wire → health → store → subscribers) and the
//! [`FifoFeed`] that runs a FIFO reader thread into it.
//!
//! Every way a bar enters (the FIFO, a Python `push`, a replay) goes through
//! [`Consumer::ingest_line`] or [`Consumer::ingest_bar`], so validation, dedupe, counters and
//! delivery are the same everywhere.
//!
//! ## Overflow policy
//! Channel subscribers get a bounded channel. When it is full the reader never waits: with
//! [`Overflow::DropOldest`] (the default) the oldest undelivered bar is discarded to make room
//! for the new one (a trading engine wants the freshest data); with [`Overflow::DropNewest`] the
//! new bar is discarded. Either way the drop is counted (per subscriber and in
//! `delivery_drops`) and logged at warn level, rate-limited. The store always has every bar, so a
//! subscriber that fell behind can catch up with a query. Callbacks run on the reader thread:
//! keep them short. Bars read from the FIFO reach channel subscribers at the end of each read
//! batch (at most 16 reads, about 1 MiB), so a subscriber wakes once per batch, not once per bar.

pub mod cursor;
pub mod gaps;
pub mod health;
pub mod journal;
pub mod reader;
pub mod store;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::asset::AssetClass;
use crate::bar::{Bar, BarKind, Source, Symbol};
use crate::capacity::CapacityError;
use crate::consumer::cursor::{AckPublisher, SeqVerdict, MAX_SEQ_GAP};
use crate::consumer::health::{Clock, Health, HealthSnapshot, RateLimitedLog, SystemClock};
use crate::consumer::journal::{read_journal, Journal, JournalError, LoadReport};
use crate::consumer::reader::{lock_reader, read_fifo, Flow, FrameSink, ReaderOptions};
use crate::consumer::store::{BarStore, InsertMode, Inserted, DEFAULT_CAPACITY_PER_SYMBOL, DEFAULT_MAX_SYMBOLS};
use crate::fifo::{prepare_fifo, FifoError};
use crate::trading::{Applied, TradingBook};
use crate::wire::trading::TradingStatus;
use crate::wire::{parse_line, validate, Line, WireError};

/// A bar delivered to subscribers: a new minute, or a correction of a stored one.
#[derive(Clone, Debug, PartialEq)]
pub struct BarEvent {
    /// The bar's symbol.
    pub symbol: Symbol,
    /// The bar as stored.
    pub bar: Bar,
    /// True when this replaces a bar delivered earlier for the same minute.
    pub correction: bool,
    /// Where the sidecar says the bar came from, when the line said so.
    pub source: Option<Source>,
}

/// What a full subscriber channel does with the next bar. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest queued bar to make room: the subscriber sees the newest (the default).
    DropOldest,
    /// Drop the new bar: the subscriber keeps what is queued.
    DropNewest,
}

/// What to subscribe to.
#[derive(Clone, Debug)]
pub struct Subscription {
    name: String,
    symbols: Option<HashSet<String>>,
    capacity: usize,
    overflow: Overflow,
}

impl Subscription {
    /// Every symbol, capacity 65,536, drop-oldest.
    pub fn all() -> Subscription {
        Subscription { name: "subscriber".into(), symbols: None, capacity: 1 << 16, overflow: Overflow::DropOldest }
    }
    /// Only these symbols.
    ///
    /// # Errors
    /// [`ConfigError::Symbol`] for a symbol that breaks the wire protocol's symbol rule (it could
    /// never arrive, so the subscription would silently get nothing).
    pub fn symbols<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I) -> Result<Subscription, ConfigError> {
        Ok(Subscription { symbols: Some(checked_symbols(symbols)?), ..Subscription::all() })
    }
    /// A name for logs and status.
    pub fn name(mut self, name: impl Into<String>) -> Subscription {
        self.name = name.into();
        self
    }
    /// Bars buffered for a subscriber that falls behind (default 65,536).
    ///
    /// # Errors
    /// [`CapacityError`] for 0, or more than [`crate::capacity::MAX_SUBSCRIPTION_CAPACITY`] (the
    /// buffer is allocated up front).
    pub fn capacity(mut self, capacity: usize) -> Result<Subscription, CapacityError> {
        let max = crate::capacity::MAX_SUBSCRIPTION_CAPACITY;
        self.capacity = crate::capacity::check("a subscription's capacity", capacity, max)?.get();
        Ok(self)
    }
    /// What a full channel does with the next bar (see [`Overflow`]).
    pub fn overflow(mut self, overflow: Overflow) -> Subscription {
        self.overflow = overflow;
        self
    }
}

/// The receiving end of a channel subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct BarReceiver {
    rx: Receiver<BarEvent>,
    alive: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl BarReceiver {
    /// Bars discarded for this subscriber because its channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for BarReceiver {
    type Target = Receiver<BarEvent>;
    fn deref(&self) -> &Receiver<BarEvent> {
        &self.rx
    }
}

impl Drop for BarReceiver {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

type Callback = Box<dyn Fn(&BarEvent) + Send + Sync>;

enum Target {
    Channel { tx: Sender<BarEvent>, rx: Receiver<BarEvent>, overflow: Overflow, alive: Arc<AtomicBool> },
    Callback(Callback),
}

struct Subscriber {
    name: String,
    symbols: Option<HashSet<String>>,
    target: Target,
    dropped: Arc<AtomicU64>,
}

impl Subscriber {
    fn wants(&self, event: &BarEvent) -> bool {
        self.symbols.as_ref().is_none_or(|s| s.contains(&*event.symbol))
    }
}

/// Subscriber report for the status file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubscriberStatus {
    /// The name given with [`Subscription::name`].
    pub name: String,
    /// Bars dropped because its channel was full.
    pub dropped: u64,
    /// Bars waiting in its channel.
    pub queued: usize,
}

/// What happened to an ingested line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// A bar: what the store did with it.
    Bar(Inserted),
    /// Not in the `--symbols` filter.
    Filtered,
    /// A heartbeat line: the sidecar is alive.
    Heartbeat,
    /// A status line: the sidecar's connection state.
    Status,
    /// A trading status (halt, resumption): new, or already known (then nothing changed).
    TradingStatus(Applied),
    /// A blank line or a `type` this version does not know.
    Ignored,
    /// A writer re-sent a line this consumer had processed already: skipped.
    Resent,
}

/// A [`ConsumerBuilder`] or [`Subscription`] setting the library cannot honour. Each message is
/// one sentence; the CLI prints it (exit 2) and the Python bindings raise it as a ValueError.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A capacity of 0 or beyond its bound.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// A staleness limit of zero: the feed would be stale at every instant.
    #[error("stale_after must be more than 0 seconds, got 0")]
    ZeroStaleAfter,
    /// A symbol that breaks the wire protocol's symbol rule.
    #[error("symbols: {0}")]
    Symbol(WireError),
}

/// `symbols` as a set, each checked by the wire protocol's symbol rule.
fn checked_symbols<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I) -> Result<HashSet<String>, ConfigError> {
    symbols
        .into_iter()
        .map(|s| {
            let s = s.into();
            crate::wire::validate_symbol(&s).map_err(ConfigError::Symbol)?;
            Ok(s)
        })
        .collect()
}

/// Configures a [`Consumer`]. The setters only record; [`ConsumerBuilder::build`] checks
/// everything at once.
#[derive(Debug)]
pub struct ConsumerBuilder {
    capacity_per_symbol: usize,
    max_symbols: usize,
    stale_after: Duration,
    clock: Arc<dyn Clock>,
    symbols: Vec<String>,
    journal: Option<Journal>,
}

impl ConsumerBuilder {
    /// Append every accepted bar and correction to this journal (see [`crate::consumer::journal`]).
    pub fn journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }
    /// Bound of the store per symbol (default 10,000; at least 1).
    pub fn capacity_per_symbol(mut self, n: usize) -> Self {
        self.capacity_per_symbol = n;
        self
    }
    /// Symbols the store keeps at most (default 20,000, twice the full US market; 1 to
    /// 10,000,000). A bar or trading status of a further symbol is refused, counted
    /// (`symbol_bound_refused`) and logged (rate-limited); the symbols already kept go on.
    pub fn max_symbols(mut self, n: usize) -> Self {
        self.max_symbols = n;
        self
    }
    /// No line for this long → state `stale` (default 120 s; more than 0).
    pub fn stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }
    /// The clock for health (tests inject a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Accept only these symbols (each valid by the wire protocol's symbol rule); others are
    /// counted as `filtered`. Empty = all.
    pub fn symbols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, symbols: I) -> Self {
        self.symbols = symbols.into_iter().map(Into::into).collect();
        self
    }
    /// The consumer, ready to ingest: `Arc` because its feed thread, subscribers and bindings share it.
    ///
    /// # Errors
    /// [`ConfigError::Capacity`] for a capacity per symbol of 0 or a `max_symbols` out of
    /// range, [`ConfigError::ZeroStaleAfter`],
    /// [`ConfigError::Symbol`] for a symbol that breaks the wire protocol's symbol rule.
    pub fn build(self) -> Result<Arc<Consumer>, ConfigError> {
        let capacity = crate::consumer::store::check_capacity_per_symbol(self.capacity_per_symbol)?;
        let max_symbols = crate::consumer::store::check_max_symbols(self.max_symbols)?;
        if self.stale_after.is_zero() {
            return Err(ConfigError::ZeroStaleAfter);
        }
        let symbols = checked_symbols(self.symbols)?;
        Ok(Arc::new(Consumer {
            store: Arc::new(BarStore::with_bounds(capacity, max_symbols)),
            health: Arc::new(Health::new(self.clock, self.stale_after)),
            symbols: (!symbols.is_empty()).then_some(symbols),
            journal: self.journal,
            subscribers: RwLock::new(Vec::new()),
            callbacks: AtomicUsize::new(0),
            log_limiter: RateLimitedLog::new(Duration::from_secs(10), 5),
            status_sections: RwLock::new(Vec::new()),
            trading: TradingBook::with_max_symbols(max_symbols.get()),
        }))
    }
}

/// The ingest pipeline: validates, stores, tracks health and delivers. Thread-safe; usually
/// shared as `Arc<Consumer>` between a reader thread and queriers.
///
/// ```
/// use barbridge::{Consumer, Subscription};
/// let consumer = Consumer::builder().build()?;
/// let spy = consumer.subscribe(Subscription::symbols(["SPY"])?.name("engine"));
/// consumer.ingest_line(br#"{"symbol":"SPY","timestamp_ms":1759930080000,"open":671.2,"high":671.5,"low":671.1,"close":671.4,"volume":18234,"vwap":671.33,"trade_count":212}"#).unwrap();
/// assert_eq!(spy.try_recv().unwrap().bar.close, 671.4);
/// assert_eq!(consumer.store().latest("SPY").unwrap().volume, 18234.0);
/// # Ok::<(), barbridge::Error>(())
/// ```
pub struct Consumer {
    store: Arc<BarStore>,
    health: Arc<Health>,
    symbols: Option<HashSet<String>>,
    journal: Option<Journal>,
    subscribers: RwLock<Vec<Subscriber>>,
    /// How many subscribers are callbacks: without any, a bar takes no subscriber lock.
    callbacks: AtomicUsize,
    log_limiter: RateLimitedLog,
    /// Sections other parts add to the status file (e.g. `publish`), by name.
    status_sections: RwLock<Vec<(String, StatusSection)>>,
    /// Each symbol's trading state (docs/ARCHITECTURE.md, "Trading statuses").
    trading: TradingBook,
}

type StatusSection = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("symbols", &self.symbols).finish_non_exhaustive()
    }
}

impl Consumer {
    /// Settings for a new consumer: [`ConsumerBuilder::build`] makes it.
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder {
            capacity_per_symbol: DEFAULT_CAPACITY_PER_SYMBOL,
            max_symbols: DEFAULT_MAX_SYMBOLS,
            stale_after: Duration::from_secs(120),
            clock: Arc::new(SystemClock),
            symbols: Vec::new(),
            journal: None,
        }
    }

    /// The journal the accepted bars are appended to, if one is attached.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Make what was ingested so far durable (journal write; fsync per policy). The FIFO
    /// reader calls this after every read batch; other ingest paths call it after each push.
    pub fn flush(&self) {
        if let Some(j) = &self.journal {
            j.flush();
        }
    }

    /// Load today's journal (the New York date's stock file and the UTC date's crypto file at
    /// `now_ms`, see [`crate::asset`]) into the store: a restarted consumer resumes warm. Other days' files are loaded when their first bar arrives.
    ///
    /// Also takes up each writer's position from the journal's durable cursor (see
    /// [`crate::consumer::cursor`]), so that lines re-sent after the restart are recognised and real gaps
    /// are reported.
    pub fn resume_from_journal(&self, now_ms: i64) {
        for asset in AssetClass::ALL {
            self.load_journal_day_of(asset, now_ms);
        }
        let Some(journal) = &self.journal else { return };
        let path = journal.dir().join(crate::consumer::cursor::DURABLE_FILE);
        match crate::consumer::cursor::read_ack_file(&path) {
            Ok(Some(saved)) => {
                log::info!("resuming {} writer position(s) from {}", saved.writers.len(), path.display());
                self.health.restore_cursors(&saved.writers);
            }
            Ok(None) => {}
            Err(e) => {
                self.health.on_cursor_unreadable();
                log::error!(
                    "{e}; writers' positions are unknown: the lines they re-send are checked against the journal loaded into the store (a bar stored before is a duplicate, not stored twice), and the lines their heartbeats say an earlier consumer acknowledged are not counted lost"
                );
            }
        }
    }

    /// Nothing recorded is still waiting for the journal (always true without one).
    pub(crate) fn durable(&self) -> bool {
        self.journal.as_ref().is_none_or(|j| j.is_clean())
    }

    /// Load the journal day file of `asset` that `ts_ms` falls in, the first time that day is seen.
    fn load_journal_day_of(&self, asset: AssetClass, ts_ms: i64) {
        let Some(path) = self.journal.as_ref().and_then(|j| j.claim_day(asset, ts_ms)) else { return };
        if path.exists() {
            if let Err(e) = self.restore(&path) {
                log::error!("{e}; bars of that day already journaled may be journaled again");
            }
        }
    }

    /// Load a journal file into the store (not re-journalled, not delivered): a restarted
    /// consumer resumes warm. Corrupt and torn records are reported and skipped.
    ///
    /// # Errors
    /// [`JournalError::Read`] when the file cannot be read; [`JournalError::NotPrivate`] when it is not a private file of this user's.
    pub fn restore(&self, path: &Path) -> Result<LoadReport, JournalError> {
        let now = Some(self.health.now_ms());
        let wanted = |symbol: &str| self.symbols.as_ref().is_none_or(|f| f.contains(symbol));
        let refused = AtomicU64::new(0); // past the symbol bound (a journal of a consumer with a larger one)
        let report = read_journal(
            path,
            |symbol, bar, kind| {
                if wanted(symbol) {
                    let mode = if kind == BarKind::UpdatedBar { InsertMode::Correction } else { InsertMode::FirstReport };
                    if self.store.insert_received(symbol, bar, mode, now).1 == Inserted::SymbolBound {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            |status| {
                if wanted(&status.symbol) && self.trading.apply(&status) == Applied::SymbolBound {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            },
        )?;
        let refused = refused.into_inner();
        self.health.counters.symbol_bound_refused.fetch_add(refused, Ordering::Relaxed);
        log::info!(
            "restored {} records from {}{}{}{}",
            report.records,
            path.display(),
            if report.corrupt > 0 { format!(", {} corrupt skipped", report.corrupt) } else { String::new() },
            if report.torn_tail { ", torn last record skipped" } else { "" },
            if refused > 0 {
                format!(", {refused} not kept: their symbols are past the store's bound of {} symbols (--max-symbols)", self.store.max_symbols())
            } else {
                String::new()
            }
        );
        Ok(report)
    }

    /// The per-symbol bar store: history queries.
    pub fn store(&self) -> &Arc<BarStore> {
        &self.store
    }

    /// Each symbol's trading state and halted intervals (trading statuses received, and those
    /// in the journal days loaded).
    pub fn trading(&self) -> &TradingBook {
        &self.trading
    }

    /// `symbol`'s session today so far (a stock's NYSE session, a crypto pair's UTC day): bars,
    /// holes and halted minutes, a bar-less minute during a halt counting as halted, never as a
    /// hole. The one per-symbol session view the status file, `/metrics` and the page render.
    /// `None` when the symbol has no session today (a weekend or holiday for a stock).
    pub fn session_gaps(&self, symbol: &str, now_ms: i64) -> Option<crate::consumer::gaps::SymbolGaps> {
        let session = crate::asset::session_today(symbol, now_ms)?;
        let minutes = self.store.timestamps(symbol, session.open_ms, session.close_ms);
        Some(crate::consumer::gaps::session_gaps_halted(symbol, &session, now_ms, minutes, &self.trading.halts(symbol)))
    }

    /// Feed health and counters.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The health, with each symbol's liveness from the store.
    pub fn health_snapshot(&self) -> HealthSnapshot {
        self.health.snapshot(self.store.symbol_health())
    }

    /// Add a section to the status file: `f` is called at every rewrite and its value written
    /// under `name` in `sections`.
    pub fn add_status_section(&self, name: impl Into<String>, f: impl Fn() -> serde_json::Value + Send + Sync + 'static) {
        self.status_sections.write().unwrap_or_else(|e| e.into_inner()).push((name.into(), Box::new(f)));
    }

    /// The current value of every added status section.
    pub fn status_sections(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let sections = self.status_sections.read().unwrap_or_else(|e| e.into_inner());
        sections.iter().map(|(name, f)| (name.clone(), f())).collect()
    }

    /// Subscribe over a bounded channel.
    pub fn subscribe(&self, sub: Subscription) -> BarReceiver {
        let (tx, rx) = crossbeam_channel::bounded(sub.capacity);
        let alive = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let target = Target::Channel { tx, rx: rx.clone(), overflow: sub.overflow, alive: alive.clone() };
        self.add(Subscriber { name: sub.name, symbols: sub.symbols, target, dropped: dropped.clone() });
        BarReceiver { rx, alive, dropped }
    }

    /// Call `f` on the ingesting thread for each delivered bar of `symbols` (empty = all).
    pub fn on_bar<F>(&self, symbols: &[&str], f: F)
    where
        F: Fn(&BarEvent) + Send + Sync + 'static,
    {
        let symbols = (!symbols.is_empty()).then(|| symbols.iter().map(|s| s.to_string()).collect());
        self.add(Subscriber { name: "callback".into(), symbols, target: Target::Callback(Box::new(f)), dropped: Arc::new(AtomicU64::new(0)) });
        self.callbacks.fetch_add(1, Ordering::Release);
    }

    /// Print every delivered bar to stdout as one wire line (corrections as `updated_bar`),
    /// like `barbridge run --echo`, from a thread of its own: a stdout nobody reads never stalls
    /// ingest or shutdown. It is a channel subscriber named `echo` (65,536 bars; beyond, the
    /// oldest are dropped, counted and logged); a closed stdout ends the echo with one log line.
    /// Call [`Echo::finish`] before exiting so that what is queued gets printed.
    pub fn echo_to_stdout(&self) -> Echo {
        let rx = self.subscribe(Subscription::all().name("echo"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("barbridge-echo".into())
            .spawn(move || {
                use std::io::Write;
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                let mut line = Vec::with_capacity(256);
                loop {
                    let first = match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(event) => event,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) if !stopping.load(Ordering::Relaxed) => continue,
                        Err(_) => break,
                    };
                    let mut result = Ok(());
                    for event in std::iter::once(first).chain(rx.try_iter()) {
                        let kind = if event.correction { BarKind::UpdatedBar } else { BarKind::Bar };
                        line.clear();
                        crate::wire::write_bar_line(&mut line, &event.symbol, &event.bar, kind, &Default::default());
                        result = out.write_all(&line);
                        if result.is_err() {
                            break;
                        }
                    }
                    match result.and_then(|()| out.flush()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            log::info!("stdout was closed: --echo stops; the store, journal and subscribers still get every bar");
                            return;
                        }
                        Err(e) => {
                            log::warn!("writing to stdout failed ({e}): --echo stops; the store, journal and subscribers still get every bar");
                            return;
                        }
                    }
                }
            })
            .expect("spawning the echo thread");
        Echo { stop, thread }
    }

    fn add(&self, sub: Subscriber) {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(sub);
    }

    /// Every subscriber's name, drops and queue length, for the status file.
    pub fn subscriber_status(&self) -> Vec<SubscriberStatus> {
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        subs.iter()
            .map(|s| SubscriberStatus {
                name: s.name.clone(),
                dropped: s.dropped.load(Ordering::Relaxed),
                queued: match &s.target {
                    Target::Channel { rx, .. } => rx.len(),
                    Target::Callback(_) => 0,
                },
            })
            .collect()
    }

    /// Ingest one wire line (without its newline). Rejects are counted and logged (rate-limited)
    /// before the error is returned, so a caller may ignore it.
    ///
    /// # Errors
    /// The [`WireError`] of a line that breaks the wire protocol (already counted and logged).
    pub fn ingest_line(&self, bytes: &[u8]) -> Result<Ingested, WireError> {
        self.health.on_message();
        self.ingest_received_line(bytes, None)
    }

    /// [`Consumer::ingest_line`] for a line whose arrival was already stamped with
    /// `health.on_message()` (the FIFO reader stamps once per read batch: its lines arrived
    /// together). With `held`, channel deliveries are collected there for the caller to send at
    /// the end of its batch (one wake-up per batch); callbacks still run at once.
    fn ingest_received_line(&self, bytes: &[u8], held: Option<&mut Vec<BarEvent>>) -> Result<Ingested, WireError> {
        let c = &self.health.counters;
        c.lines.fetch_add(1, Ordering::Relaxed);
        let line = match parse_line(bytes) {
            Ok(line) => line,
            Err(e) => {
                self.reject(&e, bytes);
                return Err(e);
            }
        };
        let mut new = true;
        if let Some((writer, seq)) = line.seq_stamp() {
            let verdict = self.health.on_seq(writer, seq);
            if let SeqVerdict::Impossible { high } = verdict {
                let e = WireError::ImpossibleSeq {
                    detail: format!("seq {seq} lies more than {MAX_SEQ_GAP} beyond the highest seq {high} seen of writer {writer:?}"),
                };
                self.reject(&e, bytes);
                return Err(e);
            }
            new = verdict.is_new();
        }
        // A heartbeat's claims are as of its writing (a writer re-sends a heartbeat written
        // anew), so they count even when its seq was seen before.
        if let Line::Heartbeat(h) = &line {
            if let Some(writer) = h.writer.as_deref() {
                self.health.on_heartbeat(writer, h.sent, h.acked, h.retained_from);
            }
        }
        if !new {
            return Ok(Ingested::Resent);
        }
        Ok(match line {
            Line::Bar(b) => self.accept(&b.symbol, b.bar, b.kind, b.source, held),
            Line::Heartbeat(_) => {
                c.heartbeats.fetch_add(1, Ordering::Relaxed);
                Ingested::Heartbeat
            }
            Line::Status(s) => {
                self.health.on_sidecar_status(&s.state, s.detail.as_deref());
                Ingested::Status
            }
            Line::TradingStatus(t) => self.accept_trading_status(t.status),
            Line::Unknown { type_name, .. } => {
                c.unknown_types.fetch_add(1, Ordering::Relaxed);
                let mut suppressed = 0;
                if self.log_limiter.allow("unknown", self.health.now_ms(), &mut suppressed) {
                    log::info!("ignoring line of unknown type {type_name:?} (newer sidecar?)");
                }
                Ingested::Ignored
            }
            Line::Empty => Ingested::Ignored,
        })
    }

    /// Ingest an already-decoded bar (Python push, replay). Validated like a wire line.
    ///
    /// # Errors
    /// The [`WireError`] of a bar that breaks the protocol's rules (already counted and logged).
    pub fn ingest_bar(&self, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>) -> Result<Ingested, WireError> {
        self.health.counters.lines.fetch_add(1, Ordering::Relaxed);
        self.health.on_message();
        if let Err(e) = validate(symbol, &bar) {
            self.reject(&e, symbol.as_bytes());
            return Err(e);
        }
        Ok(self.accept(symbol, bar, kind, source, None))
    }

    /// Ingest an already-decoded trading status (Python push, a NATS message). Validated like a
    /// wire line.
    ///
    /// # Errors
    /// The [`WireError`] of a status that breaks the protocol's rules (already counted and logged).
    pub fn ingest_trading_status(&self, status: TradingStatus) -> Result<Ingested, WireError> {
        self.health.counters.lines.fetch_add(1, Ordering::Relaxed);
        self.health.on_message();
        if let Err(e) = status.validate() {
            self.reject(&e, status.symbol.as_bytes());
            return Err(e);
        }
        Ok(self.accept_trading_status(status))
    }

    /// Keep, journal and log a new trading status; one already known changes nothing.
    fn accept_trading_status(&self, status: TradingStatus) -> Ingested {
        if self.symbols.as_ref().is_some_and(|f| !f.contains(&status.symbol)) {
            self.health.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return Ingested::Filtered;
        }
        // The day's journal first: a status journaled before a restart is then known.
        self.load_journal_day_of(AssetClass::of(&status.symbol), status.ts_ms);
        let was_halted = self.trading.is_halted(&status.symbol);
        let applied = self.trading.apply(&status);
        if applied == Applied::SymbolBound {
            self.refuse_new_symbol(&status.symbol);
        }
        if applied == Applied::New {
            let c = &self.health.counters;
            c.trading_statuses.fetch_add(1, Ordering::Relaxed);
            let at = crate::calendar::fmt_ny(status.ts_ms);
            let why = [status.code.as_str(), status.reason.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
            // A writer decides how many: logged at a bounded rate (a market-wide halt is counted
            // in full in `halts` and listed by `barbridge status`).
            match (was_halted, status.state.is_halted()) {
                (false, true) => {
                    c.halts.fetch_add(1, Ordering::Relaxed);
                    if let Some(more) = self.log_allowed("halt") {
                        log::warn!("{} {} at {at} ({why}): no bars expected until it trades again{more}", status.symbol, status.state.as_str());
                    }
                }
                (true, false) => {
                    if let Some(more) = self.log_allowed("trading_again") {
                        log::info!("{} trading again at {at} ({why}){more}", status.symbol);
                    }
                }
                _ => {
                    if let Some(more) = self.log_allowed("trading_status") {
                        log::info!("{} {} at {at} ({why}){more}", status.symbol, status.state.as_str());
                    }
                }
            }
            if let Some(j) = &self.journal {
                j.record_trading_status(&status);
            }
        }
        Ingested::TradingStatus(applied)
    }

    /// An input rejected before it could be decoded (an oversize line, a Python object that is
    /// no bar): counted as a line from a live writer, then as a reject.
    pub fn ingest_rejected(&self, err: &WireError, bytes: &[u8]) {
        self.health.counters.lines.fetch_add(1, Ordering::Relaxed);
        self.health.on_message();
        self.reject(err, bytes);
    }

    /// Count and log (rate-limited) a rejected line.
    pub fn reject(&self, err: &WireError, bytes: &[u8]) {
        self.health.counters.reject(err.reason());
        if let Some(more) = self.log_allowed(err.reason().code()) {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
            log::warn!("rejected line ({}): {err}: {shown}{more}", err.reason().code());
        }
    }

    fn accept(&self, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>, held: Option<&mut Vec<BarEvent>>) -> Ingested {
        let c = &self.health.counters;
        if let Some(filter) = &self.symbols {
            if !filter.contains(symbol) {
                c.filtered.fetch_add(1, Ordering::Relaxed);
                return Ingested::Filtered;
            }
        }
        self.load_journal_day_of(AssetClass::of(symbol), bar.timestamp_ms);
        // REST backfill is authoritative history: it corrects a stream bar that differs.
        let mode = if kind == BarKind::UpdatedBar || source == Some(Source::Backfill) { InsertMode::Correction } else { InsertMode::FirstReport };
        let received_ms = self.health.last_message().unwrap_or_else(|| self.health.now_ms());
        let (name, outcome) = self.store.insert_received(symbol, bar, mode, Some(received_ms));
        match outcome {
            Inserted::Appended | Inserted::InsertedOutOfOrder => c.bars_accepted.fetch_add(1, Ordering::Relaxed),
            Inserted::Replaced => c.corrections.fetch_add(1, Ordering::Relaxed),
            Inserted::Duplicate => c.duplicates.fetch_add(1, Ordering::Relaxed),
            Inserted::TooOld => c.too_old.fetch_add(1, Ordering::Relaxed),
            Inserted::SymbolBound => {
                self.refuse_new_symbol(symbol);
                0
            }
            Inserted::Conflict => {
                let mut suppressed = 0;
                if self.log_limiter.allow("conflict", self.health.now_ms(), &mut suppressed) {
                    log::warn!(
                        "{symbol} bar at {} sent twice with different values; keeping the first (send it as updated_bar to correct)",
                        bar.timestamp_ms
                    );
                }
                self.health.on_conflict();
                c.conflicts.fetch_add(1, Ordering::Relaxed)
            }
        };
        if outcome.is_delivered() {
            self.health.on_delivered();
            c.last_bar_received_ms.store(u64::try_from(received_ms).unwrap_or(0), Ordering::Relaxed);
            if source == Some(Source::Backfill) {
                c.backfilled.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(j) = &self.journal {
                let kind = if outcome == Inserted::Replaced { BarKind::UpdatedBar } else { BarKind::Bar };
                j.record(&name, &bar, kind);
            }
            self.deliver(BarEvent { symbol: name, bar, correction: outcome == Inserted::Replaced, source }, held);
        }
        Ingested::Bar(outcome)
    }

    /// `Some(suffix)` when a line of kind `key` may be logged now (the suffix counts those that
    /// were not since the last one); `None` past the rate (5 per 10 s per kind).
    fn log_allowed(&self, key: &'static str) -> Option<String> {
        self.log_limiter.allow_noting(key, self.health.now_ms())
    }

    /// Count and log (rate-limited) a bar or status of a symbol past the store's symbol bound.
    fn refuse_new_symbol(&self, symbol: &str) {
        self.health.counters.symbol_bound_refused.fetch_add(1, Ordering::Relaxed);
        if let Some(more) = self.log_allowed("symbol_bound") {
            log::warn!(
                "refused a bar or status of the new symbol {symbol:?}: the store holds its bound of {} symbols (--max-symbols); \
                 the symbols it holds go on{more}",
                self.store.max_symbols()
            );
        }
    }

    fn deliver(&self, event: BarEvent, held: Option<&mut Vec<BarEvent>>) {
        if self.callbacks.load(Ordering::Acquire) > 0 {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for sub in subs.iter() {
                if let Target::Callback(f) = &sub.target {
                    if sub.wants(&event) {
                        f(&event);
                    }
                }
            }
        }
        match held {
            Some(held) => held.push(event),
            None => self.send_to_channels(std::slice::from_ref(&event)),
        }
    }

    fn send_to_channels(&self, events: &[BarEvent]) {
        let mut any_gone = false;
        {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for sub in subs.iter() {
                let Target::Channel { tx, rx, overflow, alive } = &sub.target else { continue };
                if !alive.load(Ordering::Relaxed) {
                    any_gone = true;
                    continue;
                }
                for event in events.iter().filter(|e| sub.wants(e)) {
                    if let Err(TrySendError::Full(ev)) = tx.try_send(event.clone()) {
                        if *overflow == Overflow::DropOldest {
                            let _ = rx.try_recv();
                            let _ = tx.try_send(ev);
                        }
                        self.count_drop(sub);
                    }
                }
            }
        }
        if any_gone {
            let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| match &s.target {
                Target::Channel { alive, .. } => alive.load(Ordering::Relaxed),
                Target::Callback(_) => true,
            });
        }
    }

    fn count_drop(&self, sub: &Subscriber) {
        let total = sub.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.health.counters.delivery_drops.fetch_add(1, Ordering::Relaxed);
        let mut suppressed = 0;
        if self.log_limiter.allow("delivery_drop", self.health.now_ms(), &mut suppressed) {
            log::warn!("subscriber {:?} is not keeping up: its channel is full, {total} bar(s) dropped so far", sub.name);
        }
    }
}

/// The `--echo` printer started by [`Consumer::echo_to_stdout`].
#[derive(Debug)]
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Echo {
    /// Print what is queued (waiting at most `timeout` for stdout), then stop.
    pub fn finish(self, timeout: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + timeout;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            log::warn!("--echo: stdout is not being read; bars still queued for it are not printed");
        }
    }
}

/// Adapts the consumer to the FIFO reader, and acknowledges what is durable.
struct FifoSinkAdapter<'a> {
    consumer: &'a Consumer,
    stop_when_writers_gone: bool,
    /// The current read batch's arrival is stamped (once per batch, not per line).
    stamped: bool,
    acks: AckPublisher,
    /// Channel deliveries of the current read batch, sent at its end (one wake-up per batch).
    held: Vec<BarEvent>,
}

impl FifoSinkAdapter<'_> {
    fn release_held(&mut self) {
        if !self.held.is_empty() {
            self.consumer.send_to_channels(&self.held);
            self.held.clear();
        }
    }

    /// Publish the writers' positions if every line processed so far is durable.
    fn acknowledge(&mut self, force: bool) {
        if (force || self.acks.due()) && self.consumer.durable() {
            self.acks.publish(self.consumer.health.cursors(), force);
        }
    }
}

impl FrameSink for FifoSinkAdapter<'_> {
    fn line(&mut self, line: &[u8]) {
        if !self.stamped {
            self.consumer.health.on_message();
            self.stamped = true;
        }
        let _ = self.consumer.ingest_received_line(line, Some(&mut self.held));
    }
    fn oversize(&mut self, len: usize) {
        self.consumer.ingest_rejected(&WireError::Oversize { len }, b"");
    }
    fn writers_gone(&mut self) -> Flow {
        if self.stop_when_writers_gone {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
    fn batch_end(&mut self) {
        self.stamped = false;
        self.consumer.flush();
        self.release_held();
        self.acknowledge(false);
    }
    fn open_failed(&mut self) {
        self.consumer.health.counters.fifo_open_errors.fetch_add(1, Ordering::Relaxed);
    }
    fn idle(&mut self) {
        self.consumer.health.tick();
        self.consumer.flush();
        self.acknowledge(false);
    }
}

/// Options of a [`FifoFeed`].
#[derive(Clone, Debug, Default)]
pub struct FeedOptions {
    /// The FIFO reader's tuning.
    pub reader: ReaderOptions,
    /// End the feed when the first writer session ends (benchmarks, batch loads).
    pub stop_when_writers_gone: bool,
    /// Use this stop flag (e.g. one a signal handler already sets) instead of a fresh one.
    pub stop_flag: Option<Arc<AtomicBool>>,
}

/// A reader thread feeding a FIFO into a [`Consumer`].
///
/// ```no_run
/// use barbridge::{Consumer, FifoFeed, FeedOptions, Subscription};
/// let consumer = Consumer::builder().build()?;
/// let bars = consumer.subscribe(Subscription::symbols(["SPY", "QQQ"])?);
/// let feed = FifoFeed::start(consumer.clone(), "/run/user/1000/barbridge/bars.fifo", FeedOptions::default())?;
/// for event in bars.iter().take(10) {
///     println!("{} {:?}", event.symbol, event.bar);
/// }
/// feed.stop();
/// feed.join()?;
/// # Ok::<(), barbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct FifoFeed {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), FifoError>>,
}

impl FifoFeed {
    /// Check (or create) the FIFO, then start the reader thread. Errors about the path come back
    /// here, before any thread runs.
    ///
    /// The feed takes the FIFO's reader lock (a second reader is refused with
    /// [`FifoError::Busy`]) and, before it opens the FIFO, publishes the writers' positions
    /// under a new consumer id, so that writers re-send what this consumer has not made durable
    /// (see [`crate::consumer::cursor`]). Call [`Consumer::resume_from_journal`] first.
    ///
    /// # Errors
    /// [`FifoError::InvalidOption`] for reader options out of range, the FIFO path is unusable
    /// ([`FifoError`]), or another reader holds it ([`FifoError::Busy`]).
    pub fn start(consumer: Arc<Consumer>, path: impl AsRef<Path>, options: FeedOptions) -> Result<FifoFeed, FifoError> {
        options.reader.validate()?;
        let path = path.as_ref().to_path_buf();
        prepare_fifo(&path)?;
        let reader_lock = lock_reader(&path)?;
        let journal = consumer.journal();
        let sync = journal.is_some_and(|j| j.policy() == crate::consumer::journal::FsyncPolicy::Always);
        let mut acks = AckPublisher::new(&path, journal.map(|j| j.dir()), sync);
        acks.publish(consumer.health.cursors(), true);
        log::info!("consumer instance {} (delivery cursor {})", acks.instance(), crate::consumer::cursor::ack_path(&path).display());
        let stop = options.stop_flag.clone().unwrap_or_default();
        let thread = {
            let (reader_path, stop) = (path.clone(), stop.clone());
            std::thread::Builder::new()
                .name("barbridge-fifo".into())
                .spawn(move || {
                    let _reader_lock = reader_lock;
                    let mut sink = FifoSinkAdapter {
                        consumer: &consumer,
                        stop_when_writers_gone: options.stop_when_writers_gone,
                        stamped: false,
                        acks,
                        held: Vec::new(),
                    };
                    let result = read_fifo(&reader_path, &options.reader, &stop, &mut sink);
                    consumer.flush();
                    sink.release_held();
                    sink.acknowledge(true);
                    // The durable cursor stays in the journal; the next consumer publishes anew.
                    let _ = std::fs::remove_file(crate::consumer::cursor::ack_path(&reader_path));
                    if let Err(e) = &result {
                        log::error!("FIFO reader stopped: {e}");
                    }
                    stop.store(true, Ordering::Relaxed);
                    result
                })
                .map_err(|source| FifoError::Open { path: path.clone(), source })?
        };
        Ok(FifoFeed { path, stop, thread })
    }

    /// The FIFO being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ask the reader to stop; it notices within one poll interval.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The flag that stops the reader (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// True once the reader thread has ended (stopped, or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the reader thread.
    ///
    /// # Errors
    /// The [`FifoError`] that ended the reader thread (the FIFO became unusable or unreadable), or [`FifoError::Read`] if the thread panicked.
    pub fn join(self) -> Result<(), FifoError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(FifoError::Read { path: self.path.clone(), source: std::io::Error::other("reader thread panicked") }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_every_setting_and_clamps_none() {
        let refused = |b: ConsumerBuilder| b.build().unwrap_err();
        assert_eq!(refused(Consumer::builder().capacity_per_symbol(0)), ConfigError::Capacity(CapacityError::Zero { what: "bars kept per symbol" }));
        assert_eq!(refused(Consumer::builder().stale_after(Duration::ZERO)), ConfigError::ZeroStaleAfter);
        let err = refused(Consumer::builder().symbols(["SPY", "spy"]));
        assert!(matches!(&err, ConfigError::Symbol(WireError::InvalidSymbol { symbol }) if symbol == "spy"), "{err}");
        assert!(err.to_string().starts_with("symbols: symbol \"spy\" is not"), "{err}");
        assert!(matches!(Subscription::symbols(["S P Y"]), Err(ConfigError::Symbol(_))));
        assert_eq!(Consumer::builder().capacity_per_symbol(1).build().unwrap().store().capacity_per_symbol(), 1);
    }

    /// Minute 0 of these tests (2025-10-08 13:28 UTC): a plausible, minute-aligned time.
    const T0: i64 = 1_759_930_080_000;

    /// A bar line `ts` ms after [`T0`].
    fn line(ts: i64, close: f64, kind: &str) -> String {
        format!(
            r#"{{"type":"{kind}","symbol":"SPY","timestamp_ms":{},"open":{close},"high":{close},"low":{close},"close":{close},"volume":1}}"#,
            T0 + ts
        )
    }

    #[test]
    fn subscribers_get_their_symbols_and_corrections() {
        let consumer = Consumer::builder().build().unwrap();
        let spy = consumer.subscribe(Subscription::symbols(["SPY"]).unwrap());
        let other = consumer.subscribe(Subscription::symbols(["QQQ"]).unwrap());
        consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
        consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
        consumer.ingest_line(line(60_000, 2.0, "updated_bar").as_bytes()).unwrap();
        let got: Vec<BarEvent> = spy.try_iter().collect();
        assert_eq!(got.len(), 2, "duplicate not delivered");
        assert!(!got[0].correction && got[1].correction);
        assert!(other.try_recv().is_err());
        let c = consumer.health().counters.snapshot();
        assert_eq!((c.bars_accepted, c.duplicates, c.corrections), (1, 1, 1));
    }

    #[test]
    fn full_channel_drops_oldest_and_counts() {
        let consumer = Consumer::builder().build().unwrap();
        let rx = consumer.subscribe(Subscription::all().capacity(2).unwrap());
        for i in 1..=5 {
            consumer.ingest_line(line(i * 60_000, 1.0, "bar").as_bytes()).unwrap();
        }
        let ts: Vec<i64> = rx.try_iter().map(|e| (e.bar.timestamp_ms - T0) / 60_000).collect();
        assert_eq!(ts, vec![4, 5]);
        assert_eq!(rx.dropped(), 3);
        assert_eq!(consumer.health().counters.snapshot().delivery_drops, 3);
        assert_eq!(consumer.store().len("SPY"), 5, "the store keeps everything");
    }

    #[test]
    fn full_channel_drop_newest() {
        let consumer = Consumer::builder().build().unwrap();
        let rx = consumer.subscribe(Subscription::all().capacity(2).unwrap().overflow(Overflow::DropNewest));
        for i in 1..=5 {
            consumer.ingest_line(line(i * 60_000, 1.0, "bar").as_bytes()).unwrap();
        }
        let ts: Vec<i64> = rx.try_iter().map(|e| (e.bar.timestamp_ms - T0) / 60_000).collect();
        assert_eq!(ts, vec![1, 2]);
    }

    #[test]
    fn dropped_receiver_unsubscribes() {
        let consumer = Consumer::builder().build().unwrap();
        let rx = consumer.subscribe(Subscription::all());
        assert_eq!(consumer.subscriber_status().len(), 1);
        drop(rx);
        consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
        assert!(consumer.subscriber_status().is_empty());
    }

    #[test]
    fn symbol_filter_counts_others() {
        let consumer = Consumer::builder().symbols(["QQQ"]).build().unwrap();
        assert_eq!(consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap(), Ingested::Filtered);
        assert_eq!(consumer.health().counters.snapshot().filtered, 1);
        assert!(consumer.store().symbols().is_empty());
    }
}
