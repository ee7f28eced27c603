//! The consumer: the [`Consumer`] pipeline (wire → health → store → subscribers) and what it is
//! made of: [`store`], [`journal`], [`cursor`] (acknowledged delivery), [`health`], [`gaps`] (the
//! per-symbol session view), [`reader`] (FIFO framing), delivery to subscribers
//! ([`Subscription`]), `--echo` ([`Echo`]) and the [`FifoFeed`] that runs a reader thread into it.
//!
//! Every way a bar enters (the FIFO, a Python `push`, a replay) goes through
//! [`Consumer::ingest_line`] or [`Consumer::ingest_bar`], so validation, dedupe, counters and
//! delivery are the same everywhere. The overflow policy of channel subscribers is in
//! [`delivery`].

mod builder;
pub mod cursor;
pub mod delivery;
mod echo;
mod fifo_feed;
pub mod gaps;
pub mod health;
pub mod journal;
pub mod latency;
pub mod minutes;
pub mod reader;
pub mod store;

pub use builder::{ConfigError, ConsumerBuilder, DEFAULT_MAX_CLOCK_SKEW, MAX_CLOCK_SKEW};
use delivery::Subscriber;
pub use delivery::{BarEvent, BarReceiver, Overflow, SubscriberStatus, Subscription};
pub use echo::Echo;
pub use fifo_feed::{FeedOptions, FifoFeed};

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::asset::AssetClass;
use crate::bar::{Bar, BarKind, Source};
use crate::consumer::cursor::{SeqVerdict, MAX_SEQ_GAP};
use crate::consumer::health::{Health, HealthSnapshot, RateLimitedLog};
use crate::consumer::journal::{read_journal_with_minutes, Journal, JournalError, LoadReport, MinuteRecord};
use crate::consumer::store::{BarStore, InsertMode, Inserted};
use crate::trading::{Applied, TradingBook};
use crate::wire::trading::TradingStatus;
use crate::wire::{parse_line, validate, Line, WireError};

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
    ConnectionState,
    /// A trading status (halt, resumption): new, or already known (then nothing changed).
    TradingStatus(Applied),
    /// A part of a closed minute, taken (see [`crate::wire::minute`]).
    MinuteClosed,
    /// A blank line or a `type` this version does not know.
    Ignored,
    /// A writer re-sent a line this consumer had processed already: skipped.
    Resent,
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
    /// Closed minutes: parts assembled, delivered once (docs/ARCHITECTURE.md, "Minute barrier").
    pub(crate) minutes: minutes::MinuteBook,
    /// How late the bars and minutes are ([`latency`]).
    latency: latency::Latency,
    /// How far ahead of the clock a line's time may lie, ms ([`ConsumerBuilder::max_clock_skew`]).
    max_skew_ms: i64,
}

type StatusSection = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("symbols", &self.symbols).finish_non_exhaustive()
    }
}

impl Consumer {
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
        let future = AtomicU64::new(0); // from the future: refused as a line would be
        let in_future = |ts_ms: i64| {
            let ahead = self.check_not_ahead(ts_ms).is_err();
            if ahead {
                future.fetch_add(1, Ordering::Relaxed);
            }
            ahead
        };
        let minutes = &self.minutes;
        let report = read_journal_with_minutes(
            path,
            |symbol, bar, kind| {
                if wanted(symbol) && !in_future(bar.timestamp_ms) {
                    let mode = if kind == BarKind::UpdatedBar { InsertMode::Correction } else { InsertMode::FirstReport };
                    if self.store.insert_received(symbol, bar, mode, now).1 == Inserted::SymbolBound {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            |status| {
                if wanted(&status.symbol) && !in_future(status.ts_ms) && self.trading.apply(&status) == Applied::SymbolBound {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            },
            |record| match record {
                // Known, not delivered again: a restarted consumer sees each minute close once.
                MinuteRecord::Closed(writer, part) => {
                    if !in_future(part.minute_ms) {
                        let _ = minutes.add_part(&self.health.counters, &writer, &part);
                    }
                }
                MinuteRecord::Quiet(writer, minute, quiet) => {
                    if !in_future(minute) {
                        let _ = minutes.mark_quiet(&self.health.counters, &writer, minute, &quiet);
                    }
                }
            },
        )?;
        let refused = refused.into_inner();
        self.health.counters.symbol_bound_refused.fetch_add(refused, Ordering::Relaxed);
        let future = future.into_inner();
        self.health.counters.reject_many(crate::wire::RejectReason::FutureBar, future);
        if future > 0 {
            log::warn!(
                "{}: {future} record(s) not loaded: their time lies more than the allowed clock skew of {} s ahead of this consumer's clock (counted in rejects{{future_bar}})",
                path.display(),
                self.max_skew_ms / 1000
            );
        }
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

    /// The symbols not trading now that are subscribed (symbol → state, since when, why): the
    /// trading book's halted symbols, less those the minute barrier says no writer subscribes
    /// any more (not in the universe of its asset class's latest closed minute,
    /// [`MinuteBook::subscribed`](crate::consumer::minutes::MinuteBook::subscribed)). Without a
    /// barrier every halted symbol is listed. A symbol left out keeps its history
    /// ([`Consumer::trading`], the journal, [`Consumer::session_gaps`]). The one list the status
    /// file, `/metrics`, the page and Python's `Consumer.halted()` show.
    pub fn halted_now(&self) -> std::collections::BTreeMap<String, crate::trading::SymbolTrading> {
        let mut halted = self.trading.halted_now();
        halted.retain(|symbol, _| self.minutes.subscribed(symbol) != Some(false));
        halted
    }

    /// `symbol`'s session today so far (a stock's NYSE session, a crypto pair's UTC day): bars,
    /// holes and halted minutes, a bar-less minute during a halt counting as halted, never as a
    /// hole. The one per-symbol session view the status file, `/metrics` and the page render.
    /// `None` when the symbol has no session today (a weekend or holiday for a stock).
    pub fn session_gaps(&self, symbol: &str, now_ms: i64) -> Option<crate::consumer::gaps::SymbolGaps> {
        let session = crate::asset::session_today(symbol, now_ms)?;
        let minutes = self.store.timestamps(symbol, session.open_ms, session.close_ms);
        let quiet = self.minutes.quiet_minutes(symbol, session.open_ms, session.close_ms);
        Some(crate::consumer::gaps::session_gaps_quiet(symbol, &session, now_ms, minutes.into_iter().collect(), &self.trading.halts(symbol), &quiet))
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
        let time = match &line {
            Line::Bar(b) => Some(b.bar.timestamp_ms),
            Line::TradingStatus(t) => Some(t.status.ts_ms),
            Line::MinuteClosed(m) => Some(m.part.minute_ms),
            Line::MinuteQuiet(m) => Some(m.minute_ms),
            _ => None,
        };
        if let Err(e) = time.map_or(Ok(()), |t| self.check_not_ahead(t)) {
            self.reject(&e, bytes);
            return Err(e);
        }
        Ok(match line {
            Line::Bar(b) => self.accept(&b.symbol, b.bar, b.kind, b.source, held, b.received_ms),
            Line::Heartbeat(_) => {
                c.heartbeats.fetch_add(1, Ordering::Relaxed);
                Ingested::Heartbeat
            }
            Line::ConnectionState(s) => {
                self.health.on_sidecar_status(&s.state, s.detail.as_deref());
                Ingested::ConnectionState
            }
            Line::TradingStatus(t) => self.accept_trading_status(t.status),
            Line::MinuteClosed(m) => self.accept_minute_part(m.writer.as_deref().unwrap_or(""), m.part, held.is_some()),
            Line::MinuteQuiet(m) => self.accept_minute_quiet(m.writer.as_deref().unwrap_or(""), m.minute_ms, &m.quiet),
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
        self.ingest_bar_received(symbol, bar, kind, source, None)
    }

    /// [`Consumer::ingest_bar`] with the time the sidecar received the bar (UTC epoch ms), for
    /// the latency histograms and the journal ([`latency`]).
    ///
    /// # Errors
    /// The [`WireError`] of a bar that breaks the protocol's rules (already counted and logged).
    pub fn ingest_bar_received(
        &self,
        symbol: &str,
        bar: Bar,
        kind: BarKind,
        source: Option<Source>,
        received_ms: Option<i64>,
    ) -> Result<Ingested, WireError> {
        self.admit(validate(symbol, &bar).and_then(|()| self.check_not_ahead(bar.timestamp_ms)), symbol.as_bytes())?;
        Ok(self.accept(symbol, bar, kind, source, None, received_ms))
    }

    /// Ingest an already-decoded trading status (Python push, a NATS message). Validated like a
    /// wire line.
    ///
    /// # Errors
    /// The [`WireError`] of a status that breaks the protocol's rules (already counted and logged).
    pub fn ingest_trading_status(&self, status: TradingStatus) -> Result<Ingested, WireError> {
        self.admit(status.validate().and_then(|()| self.check_not_ahead(status.ts_ms)), status.symbol.as_bytes())?;
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

    /// [`WireError::FutureBar`] for a time further ahead of this consumer's clock than the
    /// allowed clock skew.
    pub(crate) fn check_not_ahead(&self, ts_ms: i64) -> Result<(), WireError> {
        let ahead = ts_ms.saturating_sub(self.health.now_ms());
        if ahead <= self.max_skew_ms {
            return Ok(());
        }
        Err(WireError::FutureBar {
            timestamp_ms: ts_ms,
            shown: crate::calendar::fmt_ny(ts_ms),
            ahead_secs: ahead / 1000,
            skew_secs: u64::try_from(self.max_skew_ms / 1000).unwrap_or(0),
        })
    }

    /// The entry of every push path (a decoded bar, status or minute line, not a FIFO line):
    /// count the line, note the feed alive, and count and log (rate-limited) `checked`'s error,
    /// `shown` standing for the line in the log.
    pub(crate) fn admit(&self, checked: Result<(), WireError>, shown: &[u8]) -> Result<(), WireError> {
        self.health.counters.lines.fetch_add(1, Ordering::Relaxed);
        self.health.on_message();
        checked.inspect_err(|e| self.reject(e, shown))
    }

    /// Count and log (rate-limited) a rejected line.
    pub fn reject(&self, err: &WireError, bytes: &[u8]) {
        self.health.counters.reject(err.reason());
        if let Some(more) = self.log_allowed(err.reason().code()) {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
            log::warn!("rejected line ({}): {err}: {shown}{more}", err.reason().code());
        }
    }

    fn accept(
        &self,
        symbol: &str,
        bar: Bar,
        kind: BarKind,
        source: Option<Source>,
        held: Option<&mut Vec<BarEvent>>,
        received: Option<i64>,
    ) -> Ingested {
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
            Inserted::Appended | Inserted::InsertedOutOfOrder => {
                self.minutes.on_bar(c, symbol, bar.timestamp_ms); // late: its minute closed without it
                if let Some(r) = received.filter(|_| source != Some(Source::Backfill)) {
                    self.latency.on_stored(bar.timestamp_ms, r, self.health.now_ms());
                }
                c.bars_accepted.fetch_add(1, Ordering::Relaxed)
            }
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
                j.record_received(&name, &bar, kind, received);
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
}

#[cfg(test)]
mod tests;
