//! The rules a line's content must meet: a bar, a symbol, a writer id.

use super::{WireError, MAX_SYMBOL_BYTES, MAX_TIMESTAMP_MS, MAX_WRITER_BYTES, MINUTE_MS, MIN_TIMESTAMP_MS};
use crate::bar::Bar;

/// The writer id rule: 1-[`MAX_WRITER_BYTES`] printable ASCII characters (no space), the rule a
/// [`crate::sidecar::writer::FifoWriter`] checks its own id by.
///
/// # Errors
/// [`WireError::InvalidWriter`] for an id that breaks it.
pub fn validate_writer(writer: &str) -> Result<(), WireError> {
    if writer.is_empty() || writer.len() > MAX_WRITER_BYTES || !writer.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::InvalidWriter { shown: writer.chars().take(80).collect(), len: writer.len() });
    }
    Ok(())
}

/// The validation rules of the wire protocol, shared by every way a bar enters
/// (FIFO, Python push, replay), checked in this order:
///
/// 1. symbol: 1-[`MAX_SYMBOL_BYTES`] printable ASCII characters, no space, no lower-case letter
///    ([`validate_symbol`]);
/// 2. `timestamp_ms` in `[MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)` (epoch milliseconds, 1990-2100),
///    then a multiple of [`MINUTE_MS`];
/// 3. every price, the volume and `vwap` (when present) finite;
/// 4. `low <= high`, open and close within `[low, high]`, volume `>= 0`.
///
/// # Errors
/// The [`WireError`] of the first rule, in the order above, that the bar breaks.
pub fn validate(symbol: &str, bar: &Bar) -> Result<(), WireError> {
    validate_symbol(symbol)?;
    if !(MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&bar.timestamp_ms) {
        return Err(WireError::InvalidTimestamp { timestamp_ms: bar.timestamp_ms });
    }
    if bar.timestamp_ms % MINUTE_MS != 0 {
        return Err(WireError::OffMinute { timestamp_ms: bar.timestamp_ms });
    }
    for (value, name) in
        [(bar.open, "open"), (bar.high, "high"), (bar.low, "low"), (bar.close, "close"), (bar.volume, "volume"), (bar.vwap.unwrap_or(0.0), "vwap")]
    {
        if !value.is_finite() {
            return Err(WireError::NonFinite { field: name });
        }
    }
    let (open, high, low, close) = (bar.open, bar.high, bar.low, bar.close);
    if high < low {
        return Err(WireError::HighBelowLow { high, low });
    }
    if open < low || open > high {
        return Err(WireError::OpenOutsideRange { open, low, high });
    }
    if close < low || close > high {
        return Err(WireError::CloseOutsideRange { close, low, high });
    }
    if bar.volume < 0.0 {
        return Err(WireError::NegativeVolume { volume: bar.volume });
    }
    Ok(())
}

/// The symbol rule: 1-[`MAX_SYMBOL_BYTES`] characters out of upper-case ASCII letters, digits,
/// `.`, `-`, `^` and `/` (what Alpaca lists: `BRK.B`, `BTC/USD`; nothing a shell, a page or a log
/// line would read as syntax, like `;`, `"` or `<`). Symbols are written as the exchange lists them (`SPY`, `BRK.B`,
/// `BTC/USD`); a lower-case one is a writer's mistake, rejected rather than silently merged with
/// its upper-case twin, so that what is stored, echoed and journaled is what was sent.
/// A `/` makes a crypto pair, which must have the pair's shape (`BASE/QUOTE`, see
/// [`crate::asset::is_crypto_pair`]); a stock symbol has no `/`.
/// Symbol filters given by a user (`--symbols`, `symbols=`) are checked by the same rule.
///
/// # Errors
/// [`WireError::InvalidSymbol`].
pub fn validate_symbol(symbol: &str) -> Result<(), WireError> {
    let valid = !symbol.is_empty()
        && symbol.len() <= MAX_SYMBOL_BYTES
        && symbol.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'^' | b'/'));
    let valid = valid && (!symbol.as_bytes().contains(&b'/') || crate::asset::is_crypto_pair(symbol));
    if valid {
        Ok(())
    } else {
        Err(WireError::InvalidSymbol { symbol: symbol.to_owned() })
    }
}
