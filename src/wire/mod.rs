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

use std::borrow::Cow;

use serde::Deserialize;
use thiserror::Error;

use crate::bar::{Bar, BarKind, Source};
use crate::trading::{TradingState, TradingStatus, TRADING_STATUS_VERSION};

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
pub struct StatusLine<'a> {
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
    Status(StatusLine<'a>),
    /// A symbol stopped or resumed trading.
    TradingStatus(TradingStatusLine<'a>),
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
            Line::Status(s) => (&s.writer, s.seq),
            Line::TradingStatus(t) => (&t.writer, t.seq),
            Line::Unknown { writer, seq, .. } => (writer, *seq),
            Line::Empty => return None,
        };
        seq.map(|s| (writer.as_deref().unwrap_or(""), s))
    }
}

/// Why a line was rejected. Each reason has a stable snake_case code (used in counters,
/// the status file and the shared test vectors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not UTF-8.
    InvalidUtf8,
    /// Longer than [`MAX_LINE_BYTES`].
    Oversize,
    /// Not a JSON object.
    MalformedJson,
    /// A required bar field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A price or volume is NaN or infinite.
    NonFinite,
    /// `high` below `low`.
    HighBelowLow,
    /// `open` outside `[low, high]`.
    OpenOutsideRange,
    /// `close` outside `[low, high]`.
    CloseOutsideRange,
    /// `volume` below zero.
    NegativeVolume,
    /// The symbol breaks the symbol rule.
    InvalidSymbol,
    /// `timestamp_ms` is not epoch milliseconds in range.
    InvalidTimestamp,
    /// `timestamp_ms` is not the start of a minute.
    OffMinute,
    /// `writer` is not 1-[`MAX_WRITER_BYTES`] printable ASCII characters.
    InvalidWriter,
    /// A `seq`, or a heartbeat's claim about seqs, that no writer can have made.
    ImpossibleSeq,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 15] = [
        RejectReason::InvalidUtf8,
        RejectReason::Oversize,
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::NonFinite,
        RejectReason::HighBelowLow,
        RejectReason::OpenOutsideRange,
        RejectReason::CloseOutsideRange,
        RejectReason::NegativeVolume,
        RejectReason::InvalidSymbol,
        RejectReason::InvalidTimestamp,
        RejectReason::OffMinute,
        RejectReason::InvalidWriter,
        RejectReason::ImpossibleSeq,
    ];

    /// The stable snake_case code (counters, status file, test vectors).
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::Oversize => "oversize",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::NonFinite => "non_finite",
            RejectReason::HighBelowLow => "high_below_low",
            RejectReason::OpenOutsideRange => "open_outside_range",
            RejectReason::CloseOutsideRange => "close_outside_range",
            RejectReason::NegativeVolume => "negative_volume",
            RejectReason::InvalidSymbol => "invalid_symbol",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::OffMinute => "off_minute",
            RejectReason::InvalidWriter => "invalid_writer",
            RejectReason::ImpossibleSeq => "impossible_seq",
        }
    }

    /// Position in [`RejectReason::ALL`] (for counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A rejected line: what was wrong, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not UTF-8.
    #[error("line is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    InvalidUtf8 {
        /// Bytes before the first invalid sequence.
        valid_up_to: usize,
    },
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit")]
    Oversize {
        /// The line's length so far, bytes.
        len: usize,
    },
    /// Not a JSON object.
    #[error("line is not a JSON object: {detail}")]
    MalformedJson {
        /// What the JSON parser said.
        detail: String,
    },
    /// A required bar field is absent.
    #[error("bar is missing field `{field}`")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field has the wrong type: {detail}")]
    WrongType {
        /// Which field, and what it was.
        detail: String,
    },
    /// A price or volume is NaN or infinite.
    #[error("field `{field}` is not a finite number")]
    NonFinite {
        /// The field concerned.
        field: &'static str,
    },
    /// `high` below `low`.
    #[error("high {high} is below low {low}")]
    HighBelowLow {
        /// The bar's high.
        high: f64,
        /// The bar's low.
        low: f64,
    },
    /// `open` outside `[low, high]`.
    #[error("open {open} is outside [low {low}, high {high}]")]
    OpenOutsideRange {
        /// The bar's open.
        open: f64,
        /// The bar's low.
        low: f64,
        /// The bar's high.
        high: f64,
    },
    /// `close` outside `[low, high]`.
    #[error("close {close} is outside [low {low}, high {high}]")]
    CloseOutsideRange {
        /// The bar's close.
        close: f64,
        /// The bar's low.
        low: f64,
        /// The bar's high.
        high: f64,
    },
    /// `volume` below zero.
    #[error("volume {volume} is negative")]
    NegativeVolume {
        /// The bar's volume.
        volume: f64,
    },
    /// The symbol breaks the symbol rule.
    #[error("symbol {symbol:?} is not 1-{MAX_SYMBOL_BYTES} printable ASCII characters without spaces or lower-case letters (with a `/`: a crypto pair BASE/QUOTE)")]
    InvalidSymbol {
        /// The symbol given.
        symbol: String,
    },
    /// `timestamp_ms` is not epoch milliseconds in range.
    #[error("timestamp_ms {timestamp_ms} is not UTC epoch milliseconds between 1990-01-01 and 2100-01-01 (seconds or microseconds?)")]
    InvalidTimestamp {
        /// The value given.
        timestamp_ms: i64,
    },
    /// `timestamp_ms` is not the start of a minute.
    #[error("timestamp_ms {timestamp_ms} is not the start of a minute (a multiple of 60000): bars are minute bars")]
    OffMinute {
        /// The value given.
        timestamp_ms: i64,
    },
    /// The writer id breaks the writer id rule.
    #[error("writer id {shown:?} ({len} bytes) is not 1-{MAX_WRITER_BYTES} printable ASCII characters")]
    InvalidWriter {
        /// The id given, cut to 80 characters.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A seq, or a heartbeat's claim about seqs, that no writer can have made.
    #[error("impossible seq claim: {detail}")]
    ImpossibleSeq {
        /// What was claimed, and the rule it breaks.
        detail: String,
    },
}

impl WireError {
    /// The reject reason this error counts under.
    pub fn reason(&self) -> RejectReason {
        match self {
            WireError::InvalidUtf8 { .. } => RejectReason::InvalidUtf8,
            WireError::Oversize { .. } => RejectReason::Oversize,
            WireError::MalformedJson { .. } => RejectReason::MalformedJson,
            WireError::MissingField { .. } => RejectReason::MissingField,
            WireError::WrongType { .. } => RejectReason::WrongType,
            WireError::NonFinite { .. } => RejectReason::NonFinite,
            WireError::HighBelowLow { .. } => RejectReason::HighBelowLow,
            WireError::OpenOutsideRange { .. } => RejectReason::OpenOutsideRange,
            WireError::CloseOutsideRange { .. } => RejectReason::CloseOutsideRange,
            WireError::NegativeVolume { .. } => RejectReason::NegativeVolume,
            WireError::InvalidSymbol { .. } => RejectReason::InvalidSymbol,
            WireError::InvalidTimestamp { .. } => RejectReason::InvalidTimestamp,
            WireError::OffMinute { .. } => RejectReason::OffMinute,
            WireError::InvalidWriter { .. } => RejectReason::InvalidWriter,
            WireError::ImpossibleSeq { .. } => RejectReason::ImpossibleSeq,
        }
    }
}

/// Every field any line may carry; all optional so that a missing field gets a precise error.
#[derive(Deserialize, Default, Debug, PartialEq)]
struct RawLine<'a> {
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
            return Ok(Line::Status(StatusLine { ts_ms: raw.ts_ms, state, detail: raw.detail, seq: raw.seq, writer: raw.writer }));
        }
        Some("trading_status") if raw.v.unwrap_or(1) <= TRADING_STATUS_VERSION => return trading_status_line(raw),
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
    let line = BarLine { symbol, bar, kind, seq: raw.seq, source, writer: raw.writer };
    validate(&line.symbol, &line.bar)?;
    Ok(Line::Bar(line))
}

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

/// The symbol rule: 1-[`MAX_SYMBOL_BYTES`] printable ASCII characters without spaces and without
/// lower-case letters. Symbols are written as the exchange lists them (`SPY`, `BRK.B`,
/// `BTC/USD`); a lower-case one is a writer's mistake, rejected rather than silently merged with
/// its upper-case twin, so that what is stored, echoed and journaled is what was sent.
/// A `/` makes a crypto pair, which must have the pair's shape (`BASE/QUOTE`, see
/// [`crate::asset::is_crypto_pair`]); a stock symbol has no `/`.
/// Symbol filters given by a user (`--symbols`, `symbols=`) are checked by the same rule.
///
/// # Errors
/// [`WireError::InvalidSymbol`].
pub fn validate_symbol(symbol: &str) -> Result<(), WireError> {
    let valid = !symbol.is_empty() && symbol.len() <= MAX_SYMBOL_BYTES && symbol.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase());
    let valid = valid && (!symbol.as_bytes().contains(&b'/') || crate::asset::is_crypto_pair(symbol));
    if valid {
        Ok(())
    } else {
        Err(WireError::InvalidSymbol { symbol: symbol.to_owned() })
    }
}

/// Fast path for what every writer sends: a flat object of known fields holding printable-ASCII
/// strings and non-negative numbers. Returns `None` for anything else — escapes, non-ASCII,
/// nesting, `null`, unknown, duplicate or mistyped fields, negative numbers — and the caller falls
/// back to serde_json, which decides and words any error. When it returns `Some`, the line is
/// ASCII (so valid UTF-8) and the result equals serde_json's (with `float_roundtrip`, both round
/// correctly); a differential test checks this over mutated lines and random numbers.
///
/// Per byte it costs about one compare: a key is found by a perfect hash of its first 4 bytes and
/// checked with two masked 8-byte compares, and digits are read 8 at a time (SWAR).
fn scan_flat(b: &[u8]) -> Option<RawLine<'_>> {
    let mut strs: [&str; 6] = [""; 6];
    let mut ints = [0u64; 4];
    let mut nums = [0f64; 6];
    let mut seen = 0u32;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        let (field, after_key) = known_key(b, i)?;
        i = skip_ws(b, after_key);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if seen & (1 << field) != 0 {
            return None; // a duplicate field is an error for serde
        }
        seen |= 1 << field;
        let end = match field {
            F_SYMBOL..=F_DETAIL => {
                let (value, end) = plain_string(b, i)?;
                strs[field as usize] = value;
                end
            }
            F_TIMESTAMP_MS..=F_TRADE_COUNT => {
                let (value, end) = plain_integer(b, i)?;
                ints[field as usize - F_TIMESTAMP_MS as usize] = value;
                end
            }
            _ => {
                let (value, end) = plain_decimal(b, i)?;
                nums[field as usize - F_OPEN as usize] = value;
                end
            }
        };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') if skip_ws(b, i + 1) == b.len() => break,
            _ => return None,
        }
    }
    let str_at = |f: u32| (seen & (1 << f) != 0).then(|| Cow::Borrowed(strs[f as usize]));
    let int_at = |f: u32| (seen & (1 << f) != 0).then_some(ints[(f - F_TIMESTAMP_MS) as usize]);
    let num_at = |f: u32| (seen & (1 << f) != 0).then_some(nums[(f - F_OPEN) as usize]);
    let signed = |v: Option<u64>| v.map(i64::try_from).transpose().ok();
    Some(RawLine {
        symbol: str_at(F_SYMBOL),
        kind: str_at(F_TYPE),
        source: str_at(F_SOURCE),
        writer: str_at(F_WRITER),
        state: str_at(F_STATE),
        detail: str_at(F_DETAIL),
        timestamp_ms: signed(int_at(F_TIMESTAMP_MS))?,
        ts_ms: signed(int_at(F_TS_MS))?,
        seq: int_at(F_SEQ),
        trade_count: int_at(F_TRADE_COUNT),
        open: num_at(F_OPEN),
        high: num_at(F_HIGH),
        low: num_at(F_LOW),
        close: num_at(F_CLOSE),
        volume: num_at(F_VOLUME),
        vwap: num_at(F_VWAP),
        retained_from: None,
        sent: None,
        acked: None,
        v: None,
        status: None,
        code: None,
        reason: None,
    })
}

// The fields the fast path knows, numbered by kind: strings, then integers, then decimals.
const F_SYMBOL: u32 = 0;
const F_TYPE: u32 = 1;
const F_SOURCE: u32 = 2;
const F_WRITER: u32 = 3;
const F_STATE: u32 = 4;
const F_DETAIL: u32 = 5;
const F_TIMESTAMP_MS: u32 = 6;
const F_TS_MS: u32 = 7;
const F_SEQ: u32 = 8;
const F_TRADE_COUNT: u32 = 9;
const F_OPEN: u32 = 10;
const F_HIGH: u32 = 11;
const F_LOW: u32 = 12;
const F_CLOSE: u32 = 13;
const F_VOLUME: u32 = 14;
const F_VWAP: u32 = 15;

const FIELD_NAMES: [&str; 16] = [
    "symbol",
    "type",
    "source",
    "writer",
    "state",
    "detail",
    "timestamp_ms",
    "ts_ms",
    "seq",
    "trade_count",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
];

/// Multiplier of the perfect hash on a key's first 4 bytes (a 3-letter name's closing quote
/// included): `(prefix × KEY_HASH) >> 28` is different for each of the 16 names (found by
/// search; the `key_hash_is_perfect` test checks it).
const KEY_HASH: u32 = 0xb50e_272b;

/// A known name followed by its closing quote, as up to 16 bytes read little-endian:
/// `(first 8, mask, next 8, mask)`, so that checking a key is two masked compares.
#[derive(Clone, Copy)]
struct KeyPattern {
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
    /// Bytes from the key's first byte to just past its closing quote.
    len: usize,
    field: u32,
}

const fn key_pattern(field: u32) -> KeyPattern {
    let name = FIELD_NAMES[field as usize].as_bytes();
    let mut bytes = [0u8; 16];
    let mut mask = [0u8; 16];
    let mut j = 0;
    while j <= name.len() {
        bytes[j] = if j < name.len() { name[j] } else { b'"' };
        mask[j] = 0xff;
        j += 1;
    }
    let (bytes, mask) = (u128::from_le_bytes(bytes), u128::from_le_bytes(mask));
    KeyPattern { head: bytes as u64, head_mask: mask as u64, tail: (bytes >> 64) as u64, tail_mask: (mask >> 64) as u64, len: name.len() + 1, field }
}

const fn key_slot(prefix: u32) -> usize {
    (prefix.wrapping_mul(KEY_HASH) >> 28) as usize
}

/// Hash slot of a key's first 4 bytes → the one name that can start that way.
const KEY_TABLE: [KeyPattern; 16] = {
    let mut table = [KeyPattern { head: 0, head_mask: u64::MAX, tail: 0, tail_mask: 0, len: 0, field: 0 }; 16];
    let mut f = 0;
    while f < FIELD_NAMES.len() {
        let pattern = key_pattern(f as u32);
        table[key_slot(pattern.head as u32)] = pattern;
        f += 1;
    }
    table
};

/// 8 bytes from `at`, little-endian; zeros past the end of the line (a zero byte never matches
/// a name or its quote).
fn word_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..at + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
        None => {
            let mut w = [0u8; 8];
            let tail = b.get(at..).unwrap_or_default();
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// The field named by the key starting at `i` (its opening quote), and where the key ends.
/// `None` for a name the fast path does not know — including any escaped name, since the raw
/// bytes are compared; serde then decides.
fn known_key(b: &[u8], i: usize) -> Option<(u32, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let head = word_at(b, i + 1);
    let key = &KEY_TABLE[key_slot(head as u32)];
    if head & key.head_mask != key.head || (key.len > 8 && word_at(b, i + 9) & key.tail_mask != key.tail) {
        return None;
    }
    Some((key.field, i + 1 + key.len))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A string of printable ASCII without escapes, starting at its opening quote.
fn plain_string(b: &[u8], i: usize) -> Option<(&str, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    loop {
        match *b.get(end)? {
            b'"' => return Some((ascii_str(&b[start..end]), end + 1)),
            b'\\' | 0..=0x1f | 0x7f.. => return None,
            _ => end += 1,
        }
    }
}

/// Bytes the scanner has checked byte by byte to be ASCII (a string of printable characters, a
/// number's digits and signs), as a `str` without validating them a second time.
#[allow(unsafe_code)] // the crate's only unsafe: the scan's byte checks make a UTF-8 pass redundant
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller has checked that each byte is ASCII, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Digits starting at `i`, appended to `value`: (how many, the new value modulo 2^64 — exact
/// while the total stays within 19 digits). Reads 8 bytes at a time where the line allows.
fn digits(b: &[u8], mut i: usize, mut value: u64) -> (usize, u64) {
    const ONES: u64 = u64::MAX / 0xff;
    let start = i;
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let low = word.wrapping_sub(ONES * u64::from(b'0'));
        let high = word.wrapping_add(ONES * (0x7f - u64::from(b'9')));
        // Lowest set high bit: the first byte that is not '0'..='9'.
        let n = ((low | high | word) & (ONES << 7)).trailing_zeros() as usize / 8;
        if n == 0 {
            return (i - start, value);
        }
        // The n digits, most significant first, moved to the top bytes (the rest are zeros).
        let mut v = low << (8 * (8 - n));
        v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
        v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
        v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff;
        value = value.wrapping_mul(POW10_U64[n]).wrapping_add(v);
        i += n;
        if n < 8 {
            return (i - start, value);
        }
    }
    while let Some(&c) = b.get(i) {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        i += 1;
    }
    (i - start, value)
}

const POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// A non-negative JSON integer (no leading zeros) of at most 19 digits (so it fits in u64).
fn plain_integer(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let (n, value) = digits(b, i, 0);
    if n == 0 || n > 19 || (n > 1 && b[i] == b'0') || matches!(b.get(i + n), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((value, i + n))
}

/// A non-negative number in strict JSON grammar, converted with correct rounding. Without an
/// exponent, a mantissa of at most 2^53 and at most 22 decimals converts exactly by one division
/// (both operands are exact in an f64: Clinger's fast path); anything else goes to the standard
/// library's correctly rounded parser (serde_json's `float_roundtrip` agrees with both).
fn plain_decimal(b: &[u8], i: usize) -> Option<(f64, usize)> {
    const POW10: [f64; 23] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
    let (int_digits, mut mantissa) = digits(b, i, 0);
    if int_digits == 0 || (int_digits > 1 && b[i] == b'0') {
        return None;
    }
    let mut end = i + int_digits;
    let mut frac_digits = 0;
    if b.get(end) == Some(&b'.') {
        (frac_digits, mantissa) = digits(b, end + 1, mantissa);
        if frac_digits == 0 {
            return None;
        }
        end += 1 + frac_digits;
    }
    let mut exact = int_digits + frac_digits <= 19 && mantissa <= 1 << 53 && frac_digits < POW10.len();
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        let (exp_digits, _) = digits(b, end + 1 + sign, 0);
        if exp_digits == 0 {
            return None;
        }
        end += 1 + sign + exp_digits;
        exact = false;
    }
    if exact {
        return Some((mantissa as f64 / POW10[frac_digits], end));
    }
    let v: f64 = ascii_str(&b[i..end]).parse().ok()?;
    v.is_finite().then_some((v, end))
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

/// Encode a bar as one wire line (without the newline), fields in the order of the README's
/// example. Integral volumes are written as integers; an absent `vwap` or `trade_count` is left
/// out.
pub fn encode_bar(symbol: &str, bar: &Bar, kind: BarKind) -> String {
    let mut out = Vec::with_capacity(192);
    write_bar_line(&mut out, symbol, bar, kind, &Envelope::default());
    out.pop(); // the newline
    String::from_utf8(out).expect("the encoder writes ASCII")
}

/// What a writer adds to a bar line after the bar's fields: where the bar came from and the
/// writer's sequence number and id (README, "Wire protocol").
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// Where the bar came from (`source`).
    pub source: Option<Source>,
    /// The writer's sequence number (`seq`).
    pub seq: Option<u64>,
    /// The writer's id (`writer`).
    pub writer: Option<&'a str>,
}

/// Append one bar as a wire line, newline included, to `out`: the bar's fields in the order of
/// the README's example (an absent `vwap` or `trade_count` left out), then the envelope's.
/// Numbers use the shortest text that reads back to the same value.
pub fn write_bar_line(out: &mut Vec<u8>, symbol: &str, bar: &Bar, kind: BarKind, envelope: &Envelope<'_>) {
    let mut ints = itoa::Buffer::new();
    let mut floats = zmij::Buffer::new();
    out.extend_from_slice(if kind == BarKind::UpdatedBar { b"{\"type\":\"updated_bar\",\"symbol\":" } else { b"{\"symbol\":" });
    write_json_str(out, symbol);
    out.extend_from_slice(b",\"timestamp_ms\":");
    out.extend_from_slice(ints.format(bar.timestamp_ms).as_bytes());
    for (key, value) in [(&b",\"open\":"[..], bar.open), (b",\"high\":", bar.high), (b",\"low\":", bar.low), (b",\"close\":", bar.close)] {
        out.extend_from_slice(key);
        out.extend_from_slice(floats.format_finite(value).as_bytes());
    }
    out.extend_from_slice(b",\"volume\":");
    if bar.volume.fract() == 0.0 && bar.volume.abs() < 9.0e15 {
        out.extend_from_slice(ints.format(bar.volume as i64).as_bytes());
    } else {
        out.extend_from_slice(floats.format_finite(bar.volume).as_bytes());
    }
    if let Some(vwap) = bar.vwap {
        out.extend_from_slice(b",\"vwap\":");
        out.extend_from_slice(floats.format_finite(vwap).as_bytes());
    }
    if let Some(trade_count) = bar.trade_count {
        out.extend_from_slice(b",\"trade_count\":");
        out.extend_from_slice(ints.format(trade_count).as_bytes());
    }
    if let Some(source) = envelope.source {
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(source.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(seq) = envelope.seq {
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(ints.format(seq).as_bytes());
    }
    if let Some(writer) = envelope.writer {
        out.extend_from_slice(b",\"writer\":");
        write_json_str(out, writer);
    }
    out.extend_from_slice(b"}\n");
}

/// `s` as a JSON string (quoted and escaped).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_round_trips() {
        let bar = Bar {
            timestamp_ms: 1_759_930_080_000,
            open: 671.2,
            high: 671.5,
            low: 671.1,
            close: 671.4,
            volume: 18234.0,
            vwap: Some(671.33),
            trade_count: Some(212),
        };
        let bare = Bar { vwap: None, trade_count: None, ..bar };
        for (bar, kind) in [(bar, BarKind::Bar), (bar, BarKind::UpdatedBar), (bare, BarKind::Bar)] {
            let line = encode_bar("SPY", &bar, kind);
            match parse_line(line.as_bytes()).unwrap() {
                Line::Bar(b) => {
                    assert_eq!(b.bar, bar);
                    assert_eq!(b.kind, kind);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!encode_bar("SPY", &bare, BarKind::Bar).contains("vwap"));
        assert!(!encode_bar("SPY", &bare, BarKind::Bar).contains("trade_count"));
        assert!(encode_bar("SPY", &bar, BarKind::Bar).contains("\"volume\":18234,"));
    }

    /// The fast path either declines or agrees exactly with serde_json, over many mutated lines.
    #[test]
    fn fast_path_agrees_with_serde() {
        let seeds = [
            r#"{"symbol": "SPY", "timestamp_ms": 1759930080000, "open": 671.2, "high": 671.5, "low": 671.1, "close": 671.4, "volume": 18234, "vwap": 671.33, "trade_count": 212}"#,
            r#"{"type":"updated_bar","symbol":"SH","timestamp_ms":1759930080000,"open":10,"high":10.5,"low":9.99,"close":10.0,"volume":0.25,"seq":7,"source":"backfill","writer":"w1"}"#,
            r#"{"type":"heartbeat","ts_ms":1759930085000,"seq":412}"#,
            r#"{"type":"status","ts_ms":1,"state":"reconnecting","detail":"close 1000"}"#,
            r#"{"symbol":"Q","timestamp_ms":1,"open":0.1,"high":123456789012.345,"low":0.000001,"close":99999.99999,"volume":0,"vwap":7.0e-1}"#,
        ];
        let alphabet: &[u8] = b"{}[]\",:-+.eE0123456789 \tnultrfasyxSPYHopenhighlowclosevolumetypebar_ \\\x01\xc3\xa9";
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut fast_hits = 0;
        for round in 0..400_000 {
            let mut line = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + rand(3) {
                let pos = rand(line.len() + 1);
                match rand(3) {
                    0 if pos < line.len() => {
                        line.remove(pos);
                    }
                    1 if pos < line.len() => line[pos] = alphabet[rand(alphabet.len())],
                    _ => line.insert(pos, alphabet[rand(alphabet.len())]),
                }
            }
            let fast = scan_flat(&line);
            let Ok(text) = std::str::from_utf8(&line) else {
                assert!(fast.is_none(), "fast path accepted invalid UTF-8: {line:?}");
                continue;
            };
            if let Some(fast) = fast {
                fast_hits += 1;
                let slow: RawLine<'_> = serde_json::from_str(text).unwrap_or_else(|e| panic!("fast path accepted what serde rejects ({e}): {text}"));
                assert_eq!(fast, slow, "{text}");
            }
        }
        // Random decimals (short ones by division, long ones and exponents by the parser)
        // convert exactly like serde_json.
        for round in 0..200_000 {
            let digits = 1 + rand(19);
            let frac = rand(digits);
            let mut num: String = (0..digits).map(|_| char::from(b'0' + rand(10) as u8)).collect();
            num = num.trim_start_matches('0').to_owned();
            if num.len() <= frac {
                num = format!("{}{num}", "0".repeat(frac + 1 - num.len()));
            }
            if frac > 0 {
                num.insert(num.len() - frac, '.');
            }
            if round % 5 == 0 {
                num.push_str(&format!("e{}{}", ["", "+", "-"][rand(3)], rand(40)));
            }
            let text = format!(r#"{{"open":{num}}}"#);
            let fast = scan_flat(text.as_bytes()).unwrap_or_else(|| panic!("declined {text}"));
            assert_eq!(fast, serde_json::from_str::<RawLine<'_>>(&text).unwrap(), "{text}");
        }
        for seed in seeds.iter().take(4) {
            assert_eq!(scan_flat(seed.as_bytes()), Some(serde_json::from_str(seed).unwrap()), "{seed}");
        }
        assert!(fast_hits > 10_000, "the fast path should take most near-canonical lines ({fast_hits})");
    }

    #[test]
    fn key_hash_is_perfect() {
        for (f, name) in FIELD_NAMES.iter().enumerate() {
            assert_eq!(KEY_TABLE[key_slot(key_pattern(f as u32).head as u32)].field, f as u32, "{name}");
            assert_eq!(known_key(format!("\"{name}\": 1").as_bytes(), 0), Some((f as u32, name.len() + 2)), "{name}");
            assert_eq!(known_key(format!("\"{name}\"").as_bytes(), 0), Some((f as u32, name.len() + 2)), "{name}");
            // A prefix, an extension or a NUL-padded copy of a name is not that name.
            for other in [&name[..name.len() - 1], &format!("{name}x"), &format!("{name}\0")] {
                let field = known_key(format!("\"{other}\"").as_bytes(), 0).map(|(f, _)| FIELD_NAMES[f as usize]);
                assert!(field.is_none_or(|n| n == other), "{other:?} taken for {field:?}");
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":1,"low":1,"volume":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "bar is missing field `close`");
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":"x","high":1,"low":1,"close":1,"volume":1}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: string \"x\", expected f64"), "{err}");
        assert!(err.to_string().contains("`open`"), "{err}");
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":NaN,"low":1,"close":1,"volume":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "field `high` is not a finite number");
    }

    #[test]
    fn trading_status_lines_round_trip_and_a_newer_version_is_unknown() {
        let status = TradingStatus::new("SPY", 1_759_930_212_345, TradingState::Halted, "MWC1", "Market Wide Circuit Breaker");
        let mut out = Vec::new();
        crate::trading::write_status_line(&mut out, &status, Some(7), Some("w1"));
        match parse_line(&out[..out.len() - 1]).unwrap() {
            Line::TradingStatus(t) => assert_eq!((t.status, t.seq, t.writer.as_deref()), (status, Some(7), Some("w1"))),
            other => panic!("{other:?}"),
        }
        let v2 = br#"{"type":"trading_status","v":2,"symbol":"SPY","ts_ms":1759930212345,"status":"frozen","seq":3}"#;
        assert!(matches!(parse_line(v2).unwrap(), Line::Unknown { seq: Some(3), .. }));
        let bad = br#"{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":1759930212345,"status":"frozen"}"#;
        assert!(matches!(parse_line(bad), Err(WireError::WrongType { .. })));
        let no_status = br#"{"type":"trading_status","symbol":"SPY","ts_ms":1759930212345}"#;
        assert_eq!(parse_line(no_status), Err(WireError::MissingField { field: "status" }));
    }
}
