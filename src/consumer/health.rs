//! Health: is the feed alive, what did the sidecar say, what was lost or rejected.
//!
//! Time comes from an injectable [`Clock`] so tests drive staleness without sleeping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::consumer::cursor::{SeqBook, SeqVerdict, WriterCursor};

mod clock;
mod counters;
mod ratelimit;

pub use clock::{Clock, ManualClock, SystemClock};
pub use counters::{CounterSnapshot, Counters, Exported};
pub use ratelimit::RateLimitedLog;

/// Is the feed alive?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Started; nothing has arrived yet (and `stale_after` has not passed).
    Waiting,
    /// Lines are arriving.
    Live,
    /// Nothing arrived for `stale_after`, or only conflicting bars did (see [`StaleReason`]).
    Stale,
}

/// Why the feed is [`FeedState::Stale`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// No line of any kind arrived for `stale_after`.
    NothingReceived,
    /// Bars kept arriving for `stale_after`, but every one was a conflict (a stored minute with
    /// different values, the first report kept) and none was delivered: a source that restarted
    /// inside minutes it had already sent, and sends its new values as first reports. Heartbeats
    /// and more conflicts do not end it; the next delivered bar does.
    OnlyConflicts,
}

impl StaleReason {
    /// The reason's name in the status file and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::NothingReceived => "nothing_received",
            StaleReason::OnlyConflicts => "only_conflicts",
        }
    }
}

/// Per-symbol liveness.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SymbolHealth {
    /// Bars accepted for this symbol (new minutes and corrections).
    pub bars: u64,
    /// Start of the newest bar's minute (from the data).
    pub last_bar_ts_ms: i64,
    /// When the newest bar arrived (consumer clock).
    pub last_received_ms: i64,
}

/// The sidecar's last `status` line.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SidecarState {
    /// The state the sidecar reported (`connected`, `disconnected`, `stale`, ...).
    pub state: String,
    /// The sidecar's words about it, if any.
    pub detail: Option<String>,
    /// When the line arrived (consumer clock, UTC epoch ms).
    pub received_ms: i64,
}

/// `last_message_ms` before any message.
const NEVER: i64 = i64::MIN;

impl FeedState {
    fn from_u8(v: u8) -> FeedState {
        match v {
            1 => FeedState::Live,
            2 => FeedState::Stale,
            _ => FeedState::Waiting,
        }
    }
}

/// Conflicting bars since the last delivered one (see [`StaleReason::OnlyConflicts`]).
#[derive(Clone, Copy, Debug)]
struct ConflictRun {
    /// When the first of them arrived.
    since_ms: i64,
    /// When the newest arrived.
    last_ms: i64,
    /// How many.
    count: u64,
}

#[derive(Debug)]
struct Inner {
    started_ms: i64,
    stale_since_ms: Option<i64>,
    stale_reason: Option<StaleReason>,
    /// Conflicts arriving with no bar delivered; ended by a delivered bar, or restarted by a
    /// conflict after `stale_after` without one.
    conflicts: Option<ConflictRun>,
    sidecar: Option<SidecarState>,
    /// What was processed of each writer's numbered lines.
    seqs: SeqBook,
}

/// Health of one consumer. Shared between the reader thread and anyone reporting.
#[derive(Debug)]
pub struct Health {
    clock: Arc<dyn Clock>,
    stale_after_ms: i64,
    /// The counters, bumped by the reader thread.
    pub counters: Counters,
    /// Hot-path state as atomics: a line costs no lock unless the state changes.
    last_message_ms: AtomicI64,
    state: AtomicU8,
    /// True while `Inner::conflicts` holds a run: a delivered bar then takes the lock to end it.
    conflict_run: AtomicBool,
    inner: Mutex<Inner>,
    /// Log lines any writer can trigger (sessions, gaps, claims) are rate-limited by kind.
    log_limiter: RateLimitedLog,
}

/// A point-in-time copy of the health, for the status file and APIs.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct HealthSnapshot {
    /// Waiting, live or stale.
    pub state: FeedState,
    /// When the snapshot was taken (UTC epoch ms).
    pub now_ms: i64,
    /// When the consumer started (UTC epoch ms).
    pub started_ms: i64,
    /// Input-free time after which the feed is stale, ms.
    pub stale_after_ms: i64,
    /// When the last line of any kind arrived, `None` before the first.
    pub last_message_ms: Option<i64>,
    /// When the feed turned stale, while it is.
    pub stale_since_ms: Option<i64>,
    /// Why the feed is stale, while it is.
    #[serde(default)]
    pub stale_reason: Option<StaleReason>,
    /// Conflicting bars since the last delivered one, while they keep arriving (0 otherwise).
    #[serde(default)]
    pub conflicts_since_delivered: u64,
    /// The sidecar's last status line, if any.
    pub sidecar: Option<SidecarState>,
    /// Every counter.
    pub counters: CounterSnapshot,
    /// Per-symbol freshness.
    pub symbols: BTreeMap<String, SymbolHealth>,
}

// FeedState needs Deserialize for status files read back by `barbridge status`.
impl<'de> serde::Deserialize<'de> for FeedState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "live" => FeedState::Live,
            "stale" => FeedState::Stale,
            _ => FeedState::Waiting,
        })
    }
}

impl Health {
    /// Health of a consumer started now by `clock`; stale after `stale_after` without input.
    pub fn new(clock: Arc<dyn Clock>, stale_after: Duration) -> Health {
        let now = clock.now_ms();
        Health {
            clock,
            stale_after_ms: stale_after.as_millis() as i64,
            counters: Counters::default(),
            last_message_ms: AtomicI64::new(NEVER),
            state: AtomicU8::new(FeedState::Waiting as u8),
            conflict_run: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                started_ms: now,
                stale_since_ms: None,
                stale_reason: None,
                conflicts: None,
                sidecar: None,
                seqs: SeqBook::default(),
            }),
            log_limiter: RateLimitedLog::new(Duration::from_secs(10), 5),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, by the health's clock (UTC epoch ms).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The feed's state (updated by every line and by the periodic check).
    pub fn state(&self) -> FeedState {
        FeedState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn last_message(&self) -> Option<i64> {
        Some(self.last_message_ms.load(Ordering::Acquire)).filter(|t| *t != NEVER)
    }

    /// Any line arrived (bar, heartbeat, status, even a reject: the writer is alive). Ends a
    /// stale episode, unless only conflicting bars caused it ([`StaleReason::OnlyConflicts`]:
    /// only a delivered bar ends that one, see [`Health::on_delivered`]).
    pub fn on_message(&self) {
        let now = self.clock.now_ms();
        self.last_message_ms.store(now, Ordering::Release);
        if self.state.load(Ordering::Acquire) == FeedState::Live as u8 {
            return;
        }
        let mut inner = self.lock();
        if self.state() == FeedState::Stale {
            if inner.stale_reason == Some(StaleReason::OnlyConflicts) {
                return;
            }
            let since = inner.stale_since_ms.unwrap_or(now);
            log::warn!("feed recovered: data arriving again after {:.1} s stale", (now - since) as f64 / 1000.0);
        }
        inner.stale_since_ms = None;
        inner.stale_reason = None;
        self.state.store(FeedState::Live as u8, Ordering::Release);
    }

    /// A bar was delivered (a new minute or a correction): ends a run of conflicts, and a stale
    /// episode they caused. Costs no lock unless such a run is open or the feed is stale.
    pub fn on_delivered(&self) {
        if !self.conflict_run.load(Ordering::Acquire) && self.state.load(Ordering::Acquire) != FeedState::Stale as u8 {
            return;
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let run = inner.conflicts.take();
        self.conflict_run.store(false, Ordering::Release);
        if self.state() == FeedState::Stale {
            let since = inner.stale_since_ms.unwrap_or(now);
            let conflicts = run.map_or(0, |r| r.count);
            log::warn!(
                "feed recovered: a bar was delivered again after {:.1} s stale ({conflicts} conflicting bar(s) since the last delivered one)",
                (now - since) as f64 / 1000.0
            );
            inner.stale_since_ms = None;
            inner.stale_reason = None;
            self.state.store(FeedState::Live as u8, Ordering::Release);
        }
    }

    /// A bar arrived for a stored minute with different values and was not a correction (the
    /// first report is kept, [`crate::Inserted::Conflict`]). When conflicts keep arriving for
    /// `stale_after` with no bar delivered, the feed is stale ([`StaleReason::OnlyConflicts`]).
    /// Identical re-sends (duplicates) are not conflicts and do not come here.
    pub fn on_conflict(&self) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        // A run ends when conflicts stop for `stale_after`: this one then starts a new run.
        let run = match inner.conflicts {
            Some(run) if now - run.last_ms < self.stale_after_ms => run,
            _ => ConflictRun { since_ms: now, last_ms: now, count: 0 },
        };
        inner.conflicts = Some(ConflictRun { last_ms: now, count: run.count + 1, ..run });
        self.conflict_run.store(true, Ordering::Release);
        self.check_conflicts(&mut inner, now);
    }

    /// Enter [`StaleReason::OnlyConflicts`] when conflicts have arrived for `stale_after`, the
    /// newest within `stale_after`, and no bar was delivered since the first.
    fn check_conflicts(&self, inner: &mut Inner, now: i64) {
        if self.state() == FeedState::Stale {
            return;
        }
        let Some(run) = inner.conflicts else { return };
        if now - run.since_ms < self.stale_after_ms || now - run.last_ms >= self.stale_after_ms {
            return;
        }
        self.state.store(FeedState::Stale as u8, Ordering::Release);
        inner.stale_since_ms = Some(now);
        inner.stale_reason = Some(StaleReason::OnlyConflicts);
        self.counters.stale_episodes.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "feed stale: bars keep arriving but for {:.0} s (threshold {:.0} s) every one was a conflict ({} bar(s) for stored minutes with different values, the first report kept) and none was delivered; a source restarted inside minutes it already sent? send corrections as updated_bar",
            (now - run.since_ms) as f64 / 1000.0,
            self.stale_after_ms as f64 / 1000.0,
            run.count
        );
    }

    /// Log `message()` at `level` unless lines of `kind` exceed 20 per 10 s; the next line
    /// logged says how many were not.
    fn log_limited(&self, kind: &'static str, level: log::Level, message: impl FnOnce() -> String) {
        if let Some(more) = self.limited(kind) {
            log::log!(level, "{}{more}", message());
        }
    }

    /// A line carried `seq` from `writer`: decide whether it is new (see [`crate::consumer::cursor`]),
    /// and count and report gaps, re-sends that fill them, and new writer sessions. Every log
    /// line here is rate-limited: any process that can write to the FIFO can trigger them.
    /// [`SeqVerdict::Impossible`] is neither counted nor logged here: the caller rejects the line.
    pub fn on_seq(&self, writer: &str, seq: u64) -> SeqVerdict {
        let verdict = self.lock().seqs.observe(writer, seq);
        let c = &self.counters;
        let who = || if writer.is_empty() { "the writer".to_owned() } else { format!("writer {writer}") };
        match verdict {
            SeqVerdict::InOrder | SeqVerdict::Impossible { .. } => {}
            SeqVerdict::AlreadySeen => {
                c.resent_skipped.fetch_add(1, Ordering::Relaxed);
            }
            SeqVerdict::FirstSeen { missing } => {
                c.writer_sessions.fetch_add(1, Ordering::Relaxed);
                if missing == 0 {
                    self.log_limited("writer_session", log::Level::Info, || format!("{} connected (seq {seq})", who()));
                } else {
                    c.seq_gaps.fetch_add(1, Ordering::Relaxed);
                    c.lines_lost.fetch_add(missing, Ordering::Relaxed);
                    let why = if c.cursor_unreadable.load(Ordering::Relaxed) > 0 { " (the cursor was unreadable at start)" } else { "" };
                    self.log_limited("writer_session", log::Level::Warn, || {
                        format!(
                            "{} connected at seq {seq}: its {missing} earlier line(s) are not in this consumer's cursor{why} (missing until the writer re-sends them or says an earlier consumer acknowledged them)",
                            who()
                        )
                    });
                }
            }
            SeqVerdict::AfterGap { from, to } => {
                let lost = to - from + 1;
                c.seq_gaps.fetch_add(1, Ordering::Relaxed);
                c.lines_lost.fetch_add(lost, Ordering::Relaxed);
                self.log_limited("seq_gap", log::Level::Error, || {
                    format!(
                        "{} skipped seq {from}..={to}: {lost} line(s) missing between writer and consumer (the writer is asked to re-send them)",
                        who()
                    )
                });
            }
            SeqVerdict::FillsGap { closed } => {
                c.lines_recovered.fetch_add(1, Ordering::Relaxed);
                take_back(&c.lines_lost, 1);
                if let Some((from, to)) = closed {
                    self.log_limited("gap_filled", log::Level::Info, || format!("{}: re-sent lines filled the gap at seq {from}..={to}", who()));
                }
            }
            SeqVerdict::Restarted { after } => {
                c.writer_sessions.fetch_add(1, Ordering::Relaxed);
                self.log_limited("writer_session", log::Level::Info, || {
                    format!("{} restarted its sequence (seq {seq} after {after}): new writer session", who())
                });
            }
        }
        verdict
    }

    /// What a heartbeat of `writer` (already checked by [`crate::wire::Heartbeat::check_claims`])
    /// says: it has sent up to `sent`, a consumer acknowledged up to `acked`, and it can re-send
    /// nothing below `retained_from`.
    ///
    /// A position beyond `sent` is impossible (a cursor restored from elsewhere): it is counted
    /// (`cursor_ahead`), logged, and replaced by a hole up to `sent` that the writer fills.
    /// Holes below `retained_from` are final: their lines up to `acked` were processed by an
    /// earlier consumer (`lines_acked_before`, taken off `lines_lost`), the rest are lost.
    pub fn on_heartbeat(&self, writer: &str, sent: Option<u64>, acked: Option<u64>, retained_from: Option<u64>) {
        let c = &self.counters;
        if let Some(sent) = sent {
            let reset = self.lock().seqs.reset_if_ahead(writer, sent);
            if let Some(was) = reset {
                c.cursor_ahead.fetch_add(1, Ordering::Relaxed);
                // The new hole counts as missing until the writer fills or accounts for it.
                c.seq_gaps.fetch_add(1, Ordering::Relaxed);
                c.lines_lost.fetch_add(sent, Ordering::Relaxed);
                self.log_limited("cursor_ahead", log::Level::Warn, || {
                    format!(
                        "the cursor says writer {writer} is at seq {} (prefix {}), but the writer has sent only {sent} line(s): the cursor is not this writer's truth (restored from elsewhere?); treating seq 1..={sent} as missing so that nothing it sends is skipped (the writer re-sends them; lines already stored are duplicates)",
                        was.high, was.prefix
                    )
                });
            }
        }
        if let Some(from) = retained_from {
            let (known, lost) = self.lock().seqs.retained_from(writer, from, acked.unwrap_or(0));
            if known > 0 {
                c.lines_acked_before.fetch_add(known, Ordering::Relaxed);
                take_back(&c.lines_lost, known);
                self.log_limited("retained_from", log::Level::Info, || {
                    format!("writer {writer}: {known} line(s) missing from this consumer's cursor were acknowledged by an earlier consumer (up to seq {}): processed there, not lost", acked.unwrap_or(0))
                });
            }
            if lost > 0 {
                self.log_limited("retained_from", log::Level::Error, || {
                    format!("writer {writer} can no longer re-send {lost} missing line(s) below seq {from}: they are lost")
                });
            }
        }
    }

    /// The durable cursor could not be read at start: writers' positions are unknown.
    pub fn on_cursor_unreadable(&self) {
        self.counters.cursor_unreadable.fetch_add(1, Ordering::Relaxed);
    }

    /// Every writer's position (for the durable cursor and the ack file).
    pub fn cursors(&self) -> BTreeMap<String, WriterCursor> {
        self.lock().seqs.cursors()
    }

    /// Take up the writers' positions an earlier consumer saved.
    pub fn restore_cursors(&self, cursors: &BTreeMap<String, WriterCursor>) {
        self.lock().seqs.restore(cursors);
    }

    /// The sidecar reported a connection state.
    pub fn on_sidecar_status(&self, state: &str, detail: Option<&str>) {
        let now = self.clock.now_ms();
        self.counters.status_lines.fetch_add(1, Ordering::Relaxed);
        // A writer chooses the state, the detail and how often: logged in part, at a bounded rate.
        let detail_text = detail.map(|d| format!(": {}", clip(d, 300))).unwrap_or_default();
        let (key, level): (&'static str, log::Level) = match state {
            "reconnecting" => {
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                ("status_reconnecting", log::Level::Warn)
            }
            "disconnected" => {
                self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                ("status_disconnected", log::Level::Warn)
            }
            "auth_failed" | "stale" | "error" => ("status_error", log::Level::Error),
            _ => ("status_other", log::Level::Info),
        };
        if let Some(more) = self.limited(key) {
            match level {
                log::Level::Info => log::info!("sidecar {}{detail_text}{more}", clip(state, 40)),
                log::Level::Error => log::error!("sidecar reports {state}{detail_text}{more}"),
                _ => log::warn!("sidecar {state}{detail_text}{more}"),
            }
        }
        self.lock().sidecar = Some(SidecarState { state: state.to_owned(), detail: detail.map(str::to_owned), received_ms: now });
    }

    /// `Some(suffix)` when a line of kind `key` may be logged now (the suffix counts those that
    /// were not since the last one); `None` past the rate (5 per 10 s per kind).
    fn limited(&self, key: &'static str) -> Option<String> {
        self.log_limiter.allow_noting(key, self.clock.now_ms())
    }

    /// Re-evaluate staleness; call periodically. Logs once when a stale episode starts.
    pub fn tick(&self) -> FeedState {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if self.state() != FeedState::Stale {
            let last = self.last_message();
            let since = last.unwrap_or(inner.started_ms);
            if now - since >= self.stale_after_ms {
                self.state.store(FeedState::Stale as u8, Ordering::Release);
                inner.stale_since_ms = Some(now);
                inner.stale_reason = Some(StaleReason::NothingReceived);
                self.counters.stale_episodes.fetch_add(1, Ordering::Relaxed);
                match last {
                    Some(_) => log::error!(
                        "feed stale: nothing received for {:.0} s (threshold {:.0} s); is the sidecar running and connected?",
                        (now - since) as f64 / 1000.0,
                        self.stale_after_ms as f64 / 1000.0
                    ),
                    None => log::error!(
                        "feed stale: nothing received in {:.0} s since start; is the sidecar running and writing to this FIFO?",
                        (now - since) as f64 / 1000.0
                    ),
                }
            }
        }
        self.check_conflicts(&mut inner, now);
        drop(inner);
        self.state()
    }

    /// A point-in-time copy; `symbols` is the per-symbol part, which the store keeps
    /// (see [`crate::BarStore::symbol_health`]; [`crate::Consumer::health_snapshot`] joins them).
    pub fn snapshot(&self, symbols: BTreeMap<String, SymbolHealth>) -> HealthSnapshot {
        let now = self.clock.now_ms();
        let inner = self.lock();
        HealthSnapshot {
            state: self.state(),
            now_ms: now,
            started_ms: inner.started_ms,
            stale_after_ms: self.stale_after_ms,
            last_message_ms: self.last_message(),
            stale_since_ms: inner.stale_since_ms,
            stale_reason: inner.stale_reason,
            conflicts_since_delivered: inner.conflicts.filter(|r| now - r.last_ms < self.stale_after_ms).map_or(0, |r| r.count),
            sidecar: inner.sidecar.clone(),
            counters: self.counters.snapshot(),
            symbols,
        }
    }
}

/// Subtract `n` from `counter`, stopping at 0.
fn take_back(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}

/// `text` cut to at most `max` characters (an ellipsis says it was cut).
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests;
