//! Wire format: one JSON object per `\n`-terminated line, at most [`MAX_LINE_BYTES`] bytes
//! including the newline. [`validate`] holds the rules a bar must meet (README, "Wire protocol").
//!
//! ```
//! use barbridge::wire::{parse_line, Line};
//! let line = br#"{"symbol":"SPY","timestamp_ms":1759930080000,"open":671.2,"high":671.5,"low":671.1,"close":671.4,"volume":18234,"vwap":671.33,"trade_count":212}"#;
//! match parse_line(line).unwrap() {
//!     Line::Bar(b) => assert_eq!((&*b.symbol, b.bar.close), ("SPY", 671.4)),
//!     other => panic!("expected a bar, got {other:?}"),
//! }
//! ```

mod encode;
mod error;
pub mod minute;
mod rules;
mod scan;
pub mod trading;

use std::borrow::Cow;

use serde::Deserialize;

use crate::bar::{Bar, BarKind, Source};
pub use encode::{encode_bar, write_bar_line, write_connection_state_line, write_heartbeat_line, write_trading_status_line, Envelope, HeartbeatOut};
pub use error::{RejectReason, WireError};
pub use rules::{validate, validate_symbol, validate_writer};
use scan::scan_flat;
use trading::{TradingState, TradingStatus, TRADING_STATUS_VERSION};

/// Longest accepted line, newline included (PIPE_BUF: one `write()` of it is atomic).
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest accepted symbol.
pub const MAX_SYMBOL_BYTES: usize = 32;

/// Earliest accepted `timestamp_ms`: 1990-01-01T00:00:00Z. No minute bars of interest are
/// older, and a time in seconds instead of milliseconds (`1759930080` is 1970-01-21 as
/// milliseconds) falls far below it for any date up to the year 2100.
pub const MIN_TIMESTAMP_MS: i64 = 631_152_000_000;

/// First rejected `timestamp_ms`: 2100-01-01T00:00:00Z. A time in microseconds or nanoseconds
/// lies far beyond it.
pub const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// Every bar is a minute bar: `timestamp_ms` is the start of its minute, a multiple of this.
pub const MINUTE_MS: i64 = 60_000;

/// Longest accepted writer id (`writer`), in bytes: printable ASCII, as a writer's own rule.
pub const MAX_WRITER_BYTES: usize = 64;

/// The most a line's `seq` may lie beyond the highest seq of its writer seen so far (or beyond 0
/// for a writer not seen yet), and the most a heartbeat's `sent` may lie beyond its own `seq`:
/// 2^32 lines, about 1,000 days of a 10,000-symbol market. A claim beyond it is no writer's
/// (`impossible_seq`): a forged or corrupt line must not open a gap of 2^64 lines.
pub const MAX_SEQ_GAP: u64 = 1 << 32;

/// A bar line, decoded and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct BarLine<'a> {
    /// The symbol (borrowed from the line unless it had escapes).
    pub symbol: Cow<'a, str>,
    /// The validated bar.
    pub bar: Bar,
    /// First report or correction.
    pub kind: BarKind,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// Where the sidecar says the bar came from.
    pub source: Option<Source>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
    /// When the sidecar received the bar's websocket frame (its clock, UTC epoch ms), if stamped.
    pub received_ms: Option<i64>,
}

/// `{"type":"heartbeat",...}`: the sidecar is alive.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat<'a> {
    /// When the sidecar sent it (its clock, UTC epoch ms).
    pub ts_ms: Option<i64>,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
    /// The oldest seq the writer can still re-send (see [`crate::consumer::cursor`]).
    pub retained_from: Option<u64>,
    /// The highest seq the writer has written when it wrote this heartbeat (at least `seq`).
    /// Absent from older writers: unknown.
    pub sent: Option<u64>,
    /// The highest seq a consumer has acknowledged to the writer (its lines up to it were
    /// processed by a consumer of this FIFO, this one or an earlier one). Absent: unknown.
    pub acked: Option<u64>,
}

/// `{"type":"status",...}`: the sidecar's connection state changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionStateLine<'a> {
    /// When the sidecar sent it (its clock, UTC epoch ms).
    pub ts_ms: Option<i64>,
    /// The new state (`connected`, `disconnected`, `reconnecting`, `stale`, ...).
    pub state: Cow<'a, str>,
    /// The sidecar's words about it.
    pub detail: Option<Cow<'a, str>>,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
}

/// `{"type":"trading_status",...}`: a symbol stopped or resumed trading (see [`crate::trading`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TradingStatusLine<'a> {
    /// The status, validated.
    pub status: TradingStatus,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
}

/// One decoded line.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a> {
    /// A bar or a correction.
    Bar(BarLine<'a>),
    /// The sidecar is alive.
    Heartbeat(Heartbeat<'a>),
    /// The sidecar's connection state changed.
    ConnectionState(ConnectionStateLine<'a>),
    /// A symbol stopped or resumed trading.
    TradingStatus(TradingStatusLine<'a>),
    /// A part of a closed minute (see [`crate::wire::minute`]).
    MinuteClosed(crate::wire::minute::MinuteClosedLine<'a>),
    /// Symbols REST confirmed quiet in a closed minute (see [`crate::wire::minute`]).
    MinuteQuiet(crate::wire::minute::MinuteQuietLine<'a>),
    /// A `type` this version does not know: counted and ignored (forward compatibility).
    Unknown {
        /// The unknown `type`.
        type_name: String,
        /// The writer's sequence number, if the line had one.
        seq: Option<u64>,
        /// The writer's id, if the line had one.
        writer: Option<Cow<'a, str>>,
    },
    /// A blank line: ignored.
    Empty,
}

impl Line<'_> {
    /// The writer's `(writer, seq)` stamp, if the line carries a seq.
    pub fn seq_stamp(&self) -> Option<(&str, u64)> {
        let (writer, seq) = match self {
            Line::Bar(b) => (&b.writer, b.seq),
            Line::Heartbeat(h) => (&h.writer, h.seq),
            Line::ConnectionState(s) => (&s.writer, s.seq),
            Line::TradingStatus(t) => (&t.writer, t.seq),
            Line::MinuteClosed(m) => (&m.writer, m.seq),
            Line::MinuteQuiet(m) => (&m.writer, m.seq),
            Line::Unknown { writer, seq, .. } => (writer, *seq),
            Line::Empty => return None,
        };
        seq.map(|s| (writer.as_deref().unwrap_or(""), s))
    }
}

/// Every field any line may carry; all optional so that a missing field gets a precise error.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub(crate) struct RawLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    timestamp_ms: Option<i64>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    volume: Option<f64>,
    vwap: Option<f64>,
    trade_count: Option<u64>,
    received_ms: Option<i64>,
    seq: Option<u64>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    writer: Option<Cow<'a, str>>,
    ts_ms: Option<i64>,
    retained_from: Option<u64>,
    sent: Option<u64>,
    acked: Option<u64>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
    v: Option<u64>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

/// Decode and validate one line (without its `\n`; a trailing `\r` is tolerated).
///
/// # Errors
/// The [`WireError`] of the first rule the line breaks.
pub fn parse_line(bytes: &[u8]) -> Result<Line<'_>, WireError> {
    if bytes.len() >= MAX_LINE_BYTES {
        return Err(WireError::Oversize { len: bytes.len() + 1 });
    }
    let raw = match scan_flat(bytes) {
        Some(raw) => raw,
        None => {
            let text = std::str::from_utf8(bytes).map_err(|e| WireError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
            let trimmed = text.trim_ascii();
            if trimmed.is_empty() {
                return Ok(Line::Empty);
            }
            if !trimmed.starts_with('{') {
                return Err(WireError::MalformedJson { detail: "expected a JSON object starting with '{'".into() });
            }
            serde_json::from_str(text).map_err(|e| classify_json_error(text, &e))?
        }
    };
    if let Some(writer) = raw.writer.as_deref() {
        validate_writer(writer)?;
    }
    let kind = match raw.kind.as_deref() {
        None | Some("bar") => BarKind::Bar,
        Some("updated_bar") => BarKind::UpdatedBar,
        Some("heartbeat") => {
            let heartbeat =
                Heartbeat { ts_ms: raw.ts_ms, seq: raw.seq, writer: raw.writer, retained_from: raw.retained_from, sent: raw.sent, acked: raw.acked };
            heartbeat.check_claims()?;
            return Ok(Line::Heartbeat(heartbeat));
        }
        Some("status") => {
            let state = raw.state.ok_or(WireError::MissingField { field: "state" })?;
            return Ok(Line::ConnectionState(ConnectionStateLine { ts_ms: raw.ts_ms, state, detail: raw.detail, seq: raw.seq, writer: raw.writer }));
        }
        Some("trading_status") if raw.v.unwrap_or(1) <= TRADING_STATUS_VERSION => return trading_status_line(raw),
        Some("minute_closed") if raw.v.unwrap_or(1) <= crate::wire::minute::MINUTE_CLOSED_VERSION => {
            return crate::wire::minute::parse_part(bytes).map(|m| m.map_or(Line::Empty, Line::MinuteClosed));
        }
        Some("minute_quiet") if raw.v.unwrap_or(1) <= crate::wire::minute::MINUTE_CLOSED_VERSION => {
            return crate::wire::minute::parse_quiet(bytes).map(|m| m.map_or(Line::Empty, Line::MinuteQuiet));
        }
        Some(other) => return Ok(Line::Unknown { type_name: other.to_owned(), seq: raw.seq, writer: raw.writer }),
    };
    let field = |v: Option<f64>, name: &'static str| v.ok_or(WireError::MissingField { field: name });
    let symbol = raw.symbol.ok_or(WireError::MissingField { field: "symbol" })?;
    let timestamp_ms = raw.timestamp_ms.ok_or(WireError::MissingField { field: "timestamp_ms" })?;
    let bar = Bar {
        timestamp_ms,
        open: field(raw.open, "open")?,
        high: field(raw.high, "high")?,
        low: field(raw.low, "low")?,
        close: field(raw.close, "close")?,
        volume: field(raw.volume, "volume")?,
        vwap: raw.vwap,
        trade_count: raw.trade_count,
    };
    let source = raw.source.as_deref().and_then(Source::parse);
    let line = BarLine { symbol, bar, kind, seq: raw.seq, source, writer: raw.writer, received_ms: raw.received_ms };
    validate(&line.symbol, &line.bar)?;
    Ok(Line::Bar(line))
}

impl Heartbeat<'_> {
    /// What a heartbeat claims must be possible on its own: `sent` (the highest seq written) is
    /// at least the heartbeat's own `seq` and at most [`MAX_SEQ_GAP`] beyond it; `acked` is at
    /// most `sent`; `retained_from` (the oldest seq the writer still holds) at most `sent + 1`.
    /// Without `sent`, `acked` and `retained_from` are bounded by `seq` the same way.
    ///
    /// # Errors
    /// [`WireError::ImpossibleSeq`] naming the claim that breaks it.
    pub fn check_claims(&self) -> Result<(), WireError> {
        let bad = |detail: String| Err(WireError::ImpossibleSeq { detail });
        if self.sent.is_some() && self.seq.is_none() {
            return bad("a heartbeat's `sent` needs its `seq`".into());
        }
        if let (Some(seq), Some(sent)) = (self.seq, self.sent) {
            if sent < seq || sent - seq > MAX_SEQ_GAP {
                return bad(format!("heartbeat seq {seq} says `sent` {sent}; it must be between its seq and seq + {MAX_SEQ_GAP}"));
            }
        }
        if let Some(top) = self.sent.or(self.seq) {
            if let Some(acked) = self.acked.filter(|a| *a > top) {
                return bad(format!("heartbeat says `acked` {acked} beyond the {top} line(s) it has sent"));
            }
            if let Some(from) = self.retained_from.filter(|r| *r > top.saturating_add(1)) {
                return bad(format!("heartbeat says `retained_from` {from} beyond the {top} line(s) it has sent"));
            }
        }
        Ok(())
    }
}

/// A `trading_status` line (README, "Wire protocol"): `symbol`, `ts_ms` and `status` required,
/// `code` and `reason` optional, checked by [`TradingStatus::validate`].
fn trading_status_line(raw: RawLine<'_>) -> Result<Line<'_>, WireError> {
    let symbol = raw.symbol.ok_or(WireError::MissingField { field: "symbol" })?;
    let ts_ms = raw.ts_ms.ok_or(WireError::MissingField { field: "ts_ms" })?;
    let name = raw.status.ok_or(WireError::MissingField { field: "status" })?;
    let state = TradingState::parse(&name)
        .ok_or_else(|| WireError::WrongType { detail: format!("`status` {name:?} is not one of trading, halted, paused, quoting") })?;
    let status = TradingStatus::new(&symbol, ts_ms, state, raw.code.as_deref().unwrap_or(""), raw.reason.as_deref().unwrap_or(""));
    status.validate()?;
    Ok(Line::TradingStatus(TradingStatusLine { status, seq: raw.seq, writer: raw.writer }))
}

fn classify_json_error(text: &str, err: &serde_json::Error) -> WireError {
    let detail = err.to_string();
    let field = field_at(text, err.column());
    if detail.contains("number out of range") || text.contains("NaN") || text.contains("Infinity") {
        // JSON has no NaN/Infinity; Python's json.dumps writes them anyway.
        const NUMERIC: [&str; 6] = ["open", "high", "low", "close", "volume", "vwap"];
        let field = field.and_then(|f| NUMERIC.iter().copied().find(|n| *n == f)).unwrap_or("a price or volume");
        return WireError::NonFinite { field };
    }
    if err.is_data() {
        // serde's message does not say which field; name it so a user can act on it.
        let detail = match field {
            Some(f) => format!("`{f}` ({detail})"),
            None => detail,
        };
        return WireError::WrongType { detail };
    }
    WireError::MalformedJson { detail }
}

/// The key of the `"key": value` pair in which a serde error at (1-based) `column` occurred, if
/// it can be told from the text (used to name the field in error messages).
fn field_at(text: &str, column: usize) -> Option<&str> {
    let prefix = text.get(..column.min(text.len()))?;
    let before = prefix[..prefix.rfind(':')?].trim_end();
    let key_end = before.strip_suffix('"')?;
    let start = key_end.rfind('"')?;
    let key = &key_end[start + 1..];
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(key)
}

#[cfg(test)]
mod tests;
