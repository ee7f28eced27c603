//! [`ConsumerBuilder`]: a consumer's settings, checked at once, and [`ConfigError`].

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Consumer;
use crate::capacity::CapacityError;
use crate::consumer::health::{Clock, Health, RateLimitedLog, SystemClock};
use crate::consumer::journal::Journal;
use crate::consumer::store::{BarStore, DEFAULT_CAPACITY_PER_SYMBOL, DEFAULT_MAX_SYMBOLS};
use crate::trading::TradingBook;
use crate::wire::WireError;

/// A [`ConsumerBuilder`] or [`super::Subscription`] setting the library cannot honour. Each message is
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
    /// A clock skew beyond [`MAX_CLOCK_SKEW`].
    #[error("max_clock_skew must be at most 86400 s (one day), got {0} s")]
    ClockSkew(u64),
}

/// Default of [`ConsumerBuilder::max_clock_skew`]: 5 minutes. A minute bar's time is its minute's
/// START, and it is sent after the minute ends, so a true bar is never ahead of a true clock; NTP
/// keeps hosts within milliseconds, so 5 minutes covers a host whose clock is badly off and
/// still refuses a writer that is off by hours (or forges the year 2095).
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Largest [`ConsumerBuilder::max_clock_skew`]: one day (a journal day file per day ahead at most).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);

/// `symbols` as a set, each checked by the wire protocol's symbol rule.
pub(super) fn checked_symbols<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I) -> Result<HashSet<String>, ConfigError> {
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
    max_clock_skew: Duration,
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
    /// How far ahead of this consumer's clock a bar's minute (a trading status's time, a closed
    /// minute, a quiet mark) may lie (default [`DEFAULT_MAX_CLOCK_SKEW`], 5 minutes; 0 to
    /// [`MAX_CLOCK_SKEW`], one day, whole seconds). Further ahead: refused on every path (lines,
    /// pushed bars, NATS messages, a journal being restored), counted `rejects{future_bar}`,
    /// logged rate-limited; no journal day file is made for it.
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.max_clock_skew = d;
        self
    }
    /// The clock for health and the clock-skew check (tests inject a [`crate::ManualClock`]).
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
    /// range, [`ConfigError::ZeroStaleAfter`], [`ConfigError::ClockSkew`] past one day,
    /// [`ConfigError::Symbol`] for a symbol that breaks the wire protocol's symbol rule.
    pub fn build(self) -> Result<Arc<Consumer>, ConfigError> {
        let capacity = crate::consumer::store::check_capacity_per_symbol(self.capacity_per_symbol)?;
        let max_symbols = crate::consumer::store::check_max_symbols(self.max_symbols)?;
        if self.stale_after.is_zero() {
            return Err(ConfigError::ZeroStaleAfter);
        }
        let symbols = checked_symbols(self.symbols)?;
        if self.max_clock_skew > MAX_CLOCK_SKEW {
            return Err(ConfigError::ClockSkew(self.max_clock_skew.as_secs()));
        }
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
            minutes: super::minutes::MinuteBook::default(),
            latency: super::latency::Latency::default(),
            max_skew_ms: i64::try_from(self.max_clock_skew.as_secs()).unwrap_or(i64::MAX).saturating_mul(1000),
        }))
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
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}
