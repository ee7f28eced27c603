//! Wire format (★ contract): one JSON object per `\n`-terminated line, at most
//! [`MAX_LINE_BYTES`] bytes including the newline.
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
use std::fmt::Write as _;

use serde::Deserialize;
use thiserror::Error;

use crate::bar::{Bar, BarKind, Source};

/// Longest accepted line, newline included (PIPE_BUF: one `write()` of it is atomic).
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest accepted symbol.
pub const MAX_SYMBOL_BYTES: usize = 32;

/// Timestamps at or after year 3000 are rejected as garbage.
const MAX_TIMESTAMP_MS: i64 = 32_503_680_000_000;

/// A bar line, decoded and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct BarLine<'a> {
    pub symbol: Cow<'a, str>,
    pub bar: Bar,
    pub kind: BarKind,
    pub seq: Option<u64>,
    pub source: Option<Source>,
    pub writer: Option<Cow<'a, str>>,
}

/// `{"type":"heartbeat",...}`: the sidecar is alive.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat<'a> {
    pub ts_ms: Option<i64>,
    pub seq: Option<u64>,
    pub writer: Option<Cow<'a, str>>,
}

/// `{"type":"status",...}`: the sidecar's connection state changed.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusLine<'a> {
    pub ts_ms: Option<i64>,
    pub state: Cow<'a, str>,
    pub detail: Option<Cow<'a, str>>,
    pub seq: Option<u64>,
    pub writer: Option<Cow<'a, str>>,
}

/// One decoded line.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a> {
    Bar(BarLine<'a>),
    Heartbeat(Heartbeat<'a>),
    Status(StatusLine<'a>),
    /// A `type` this version does not know: counted and ignored (forward compatibility).
    Unknown { type_name: String, seq: Option<u64>, writer: Option<Cow<'a, str>> },
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
    InvalidUtf8,
    Oversize,
    MalformedJson,
    MissingField,
    WrongType,
    NonFinite,
    HighBelowLow,
    OpenOutsideRange,
    CloseOutsideRange,
    NegativeVolume,
    InvalidSymbol,
    InvalidTimestamp,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
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
    ];

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
        }
    }

    /// Position in [`RejectReason::ALL`] (for counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A rejected line: what was wrong, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum WireError {
    #[error("line is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit")]
    Oversize { len: usize },
    #[error("line is not a JSON object: {detail}")]
    MalformedJson { detail: String },
    #[error("bar is missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("field has the wrong type: {detail}")]
    WrongType { detail: String },
    #[error("field `{field}` is not a finite number")]
    NonFinite { field: &'static str },
    #[error("high {high} is below low {low}")]
    HighBelowLow { high: f64, low: f64 },
    #[error("open {open} is outside [low {low}, high {high}]")]
    OpenOutsideRange { open: f64, low: f64, high: f64 },
    #[error("close {close} is outside [low {low}, high {high}]")]
    CloseOutsideRange { close: f64, low: f64, high: f64 },
    #[error("volume {volume} is negative")]
    NegativeVolume { volume: f64 },
    #[error("symbol {symbol:?} is not 1-{MAX_SYMBOL_BYTES} printable ASCII characters without spaces")]
    InvalidSymbol { symbol: String },
    #[error("timestamp_ms {timestamp_ms} is not a plausible epoch-milliseconds time")]
    InvalidTimestamp { timestamp_ms: i64 },
}

impl WireError {
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
        }
    }
}

/// Every field any line may carry; all optional so that a missing field gets a precise error.
#[derive(Deserialize)]
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
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<Cow<'a, str>>,
}

/// Decode and validate one line (without its `\n`; a trailing `\r` is tolerated).
pub fn parse_line(bytes: &[u8]) -> Result<Line<'_>, WireError> {
    if bytes.len() >= MAX_LINE_BYTES {
        return Err(WireError::Oversize { len: bytes.len() + 1 });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| WireError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Ok(Line::Empty);
    }
    if !trimmed.starts_with('{') {
        return Err(WireError::MalformedJson { detail: "expected a JSON object starting with '{'".into() });
    }
    let raw: RawLine<'_> = serde_json::from_str(text).map_err(|e| classify_json_error(text, &e))?;
    let kind = match raw.kind.as_deref() {
        None | Some("bar") => BarKind::Bar,
        Some("updated_bar") => BarKind::UpdatedBar,
        Some("heartbeat") => {
            return Ok(Line::Heartbeat(Heartbeat { ts_ms: raw.ts_ms, seq: raw.seq, writer: raw.writer }))
        }
        Some("status") => {
            let state = raw.state.ok_or(WireError::MissingField { field: "state" })?;
            return Ok(Line::Status(StatusLine {
                ts_ms: raw.ts_ms,
                state,
                detail: raw.detail,
                seq: raw.seq,
                writer: raw.writer,
            }));
        }
        Some(other) => {
            return Ok(Line::Unknown { type_name: other.to_owned(), seq: raw.seq, writer: raw.writer })
        }
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
        vwap: raw.vwap.unwrap_or(0.0),
        trade_count: raw.trade_count.unwrap_or(0),
    };
    let source = raw.source.as_deref().and_then(Source::parse);
    let line = BarLine { symbol, bar, kind, seq: raw.seq, source, writer: raw.writer };
    validate(&line.symbol, &line.bar)?;
    Ok(Line::Bar(line))
}

/// The validation rules of the wire protocol, shared by every way a bar enters
/// (FIFO, Python push, replay).
pub fn validate(symbol: &str, bar: &Bar) -> Result<(), WireError> {
    if symbol.is_empty()
        || symbol.len() > MAX_SYMBOL_BYTES
        || !symbol.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(WireError::InvalidSymbol { symbol: symbol.to_owned() });
    }
    if bar.timestamp_ms <= 0 || bar.timestamp_ms >= MAX_TIMESTAMP_MS {
        return Err(WireError::InvalidTimestamp { timestamp_ms: bar.timestamp_ms });
    }
    for (value, name) in [
        (bar.open, "open"),
        (bar.high, "high"),
        (bar.low, "low"),
        (bar.close, "close"),
        (bar.volume, "volume"),
        (bar.vwap, "vwap"),
    ] {
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

fn classify_json_error(text: &str, err: &serde_json::Error) -> WireError {
    let detail = err.to_string();
    let field = field_at(text, err.column());
    if detail.contains("number out of range")
        || text.contains("NaN")
        || text.contains("Infinity")
    {
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

/// Encode a bar as one wire line (without the newline), in the seed's field order.
/// Integral volumes are written as integers, as the seed sidecar does.
pub fn encode_bar(symbol: &str, bar: &Bar, kind: BarKind) -> String {
    let mut out = String::with_capacity(192);
    out.push('{');
    if kind == BarKind::UpdatedBar {
        out.push_str("\"type\":\"updated_bar\",");
    }
    out.push_str("\"symbol\":");
    out.push_str(&serde_json::to_string(symbol).expect("a str always serialises"));
    let _ = write!(out, ",\"timestamp_ms\":{}", bar.timestamp_ms);
    for (name, value) in [("open", bar.open), ("high", bar.high), ("low", bar.low), ("close", bar.close)] {
        let _ = write!(out, ",\"{name}\":{}", json_f64(value));
    }
    if bar.volume.fract() == 0.0 && bar.volume.abs() < 9.0e15 {
        let _ = write!(out, ",\"volume\":{}", bar.volume as i64);
    } else {
        let _ = write!(out, ",\"volume\":{}", json_f64(bar.volume));
    }
    let _ = write!(out, ",\"vwap\":{},\"trade_count\":{}}}", json_f64(bar.vwap), bar.trade_count);
    out
}

fn json_f64(v: f64) -> String {
    // serde_json prints the shortest representation that round-trips (as Python's repr does).
    serde_json::to_string(&v).expect("finite floats always serialise")
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
            vwap: 671.33,
            trade_count: 212,
        };
        for kind in [BarKind::Bar, BarKind::UpdatedBar] {
            let line = encode_bar("SPY", &bar, kind);
            match parse_line(line.as_bytes()).unwrap() {
                Line::Bar(b) => {
                    assert_eq!(b.bar, bar);
                    assert_eq!(b.kind, kind);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(encode_bar("SPY", &bar, BarKind::Bar).contains("\"volume\":18234,"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":1,"low":1,"volume":1}"#)
            .unwrap_err();
        assert_eq!(err.to_string(), "bar is missing field `close`");
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":"x","high":1,"low":1,"close":1,"volume":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("invalid type: string \"x\", expected f64"), "{err}");
        assert!(err.to_string().contains("`open`"), "{err}");
        let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":NaN,"low":1,"close":1,"volume":1}"#)
            .unwrap_err();
        assert_eq!(err.to_string(), "field `high` is not a finite number");
    }
}
