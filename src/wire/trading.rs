//! The `trading_status` line's content: is a symbol trading, halted, paused? (docs/ARCHITECTURE.md,
//! "Trading statuses"). What the consumer keeps of them is [`crate::trading::TradingBook`].

use serde::{Deserialize, Serialize};

use super::{validate_symbol, WireError, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};

/// Version of the `trading_status` line this build writes and reads; a line with a higher `v` is
/// counted as an unknown type and ignored (an older consumer does the same with any
/// `trading_status` line).
pub const TRADING_STATUS_VERSION: u64 = 1;

/// Longest `code` kept (Alpaca's are a few characters).
pub const MAX_CODE_CHARS: usize = 16;

/// Longest `reason` kept: the line must fit one atomic write.
pub const MAX_REASON_CHARS: usize = 200;

/// What a symbol is doing. Every state but [`TradingState::Trading`] means no trades, so no
/// bars: its minutes are halted, not missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingState {
    /// Trading (Alpaca `sc` T: trading resumption).
    Trading,
    /// Halted (Alpaca `sc` H), e.g. news pending or a market-wide circuit breaker.
    Halted,
    /// A volatility trading pause (Alpaca `sc` P; LULD).
    Paused,
    /// Quoting again, trading not yet (Alpaca `sc` Q: quote resumption).
    Quoting,
}

impl TradingState {
    /// The wire name (`trading`, `halted`, `paused`, `quoting`).
    pub fn as_str(self) -> &'static str {
        match self {
            TradingState::Trading => "trading",
            TradingState::Halted => "halted",
            TradingState::Paused => "paused",
            TradingState::Quoting => "quoting",
        }
    }

    /// The state of a wire name.
    pub fn parse(s: &str) -> Option<TradingState> {
        Some(match s {
            "trading" => TradingState::Trading,
            "halted" => TradingState::Halted,
            "paused" => TradingState::Paused,
            "quoting" => TradingState::Quoting,
            _ => return None,
        })
    }

    /// The state of an Alpaca status code (`sc`).
    pub fn from_alpaca(code: &str) -> Option<TradingState> {
        Some(match code {
            "T" => TradingState::Trading,
            "H" => TradingState::Halted,
            "P" => TradingState::Paused,
            "Q" => TradingState::Quoting,
            _ => return None,
        })
    }

    /// True when the symbol does not trade (no bars expected).
    pub fn is_halted(self) -> bool {
        self != TradingState::Trading
    }
}

/// One trading status of one symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStatus {
    /// The symbol.
    pub symbol: String,
    /// When the status took effect (the exchange's time, UTC epoch ms).
    pub ts_ms: i64,
    /// What the symbol does from then on.
    pub state: TradingState,
    /// The reason code (`T1`, `LUDP`, `MWC1`, ...); may be empty.
    pub code: String,
    /// The reason in words; may be empty.
    pub reason: String,
}

fn cut(s: &str, max_chars: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max_chars).collect()
}

impl TradingStatus {
    /// A status; `code` and `reason` are cut to [`MAX_CODE_CHARS`] and [`MAX_REASON_CHARS`]
    /// (control characters dropped).
    pub fn new(symbol: &str, ts_ms: i64, state: TradingState, code: &str, reason: &str) -> TradingStatus {
        TradingStatus { symbol: symbol.to_owned(), ts_ms, state, code: cut(code, MAX_CODE_CHARS), reason: cut(reason, MAX_REASON_CHARS) }
    }

    /// The status an Alpaca message says (`S`, `t` as epoch ms, `sc`, `rc`, `rm`), validated.
    ///
    /// # Errors
    /// [`WireError::WrongType`] for a status code this build does not know; the errors of
    /// [`TradingStatus::validate`].
    pub fn from_alpaca(symbol: &str, ts_ms: i64, status_code: &str, reason_code: &str, reason: &str) -> Result<TradingStatus, WireError> {
        let state = TradingState::from_alpaca(status_code)
            .ok_or_else(|| WireError::WrongType { detail: format!("trading status code `sc` {status_code:?} is not one of H, P, Q, T") })?;
        let status = TradingStatus::new(symbol, ts_ms, state, reason_code, reason);
        status.validate()?;
        Ok(status)
    }

    /// The rules a status line meets: the symbol rule, and `ts_ms` epoch milliseconds between
    /// 1990 and 2100 (any millisecond: a halt starts when it starts).
    ///
    /// # Errors
    /// [`WireError::InvalidSymbol`], [`WireError::InvalidTimestamp`].
    pub fn validate(&self) -> Result<(), WireError> {
        validate_symbol(&self.symbol)?;
        if !(MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&self.ts_ms) {
            return Err(WireError::InvalidTimestamp { timestamp_ms: self.ts_ms });
        }
        Ok(())
    }
}
