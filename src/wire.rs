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
    let raw = match scan_flat(text) {
        Some(raw) => raw,
        None => serde_json::from_str(text).map_err(|e| classify_json_error(text, &e))?,
    };
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

/// Fast path for what every writer sends: a flat object of known fields holding plain strings
/// and non-negative numbers. Returns `None` for anything else — escapes, nesting, `null`, unknown,
/// duplicate or mistyped fields, negative numbers — and the caller falls back to serde_json,
/// which decides and words any error. When it returns `Some`, the result equals serde_json's
/// (with `float_roundtrip`, both round correctly); a differential test checks this over mutated
/// lines and random numbers.
fn scan_flat(text: &str) -> Option<RawLine<'_>> {
    let b = text.as_bytes();
    let mut raw = RawLine::default();
    let mut seen = 0u32;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        let (key, after_key) = plain_string(text, i)?;
        i = skip_ws(b, after_key);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let (bit, end) = match key {
            "symbol" | "type" | "source" | "writer" | "state" | "detail" => {
                let (value, end) = plain_string(text, i)?;
                let (slot, bit) = match key {
                    "symbol" => (&mut raw.symbol, 0),
                    "type" => (&mut raw.kind, 1),
                    "source" => (&mut raw.source, 2),
                    "writer" => (&mut raw.writer, 3),
                    "state" => (&mut raw.state, 4),
                    _ => (&mut raw.detail, 5),
                };
                *slot = Some(Cow::Borrowed(value));
                (bit, end)
            }
            "timestamp_ms" | "ts_ms" | "seq" | "trade_count" => {
                let (value, end) = plain_integer(b, i)?;
                let bit = match key {
                    "timestamp_ms" => {
                        raw.timestamp_ms = Some(i64::try_from(value).ok()?);
                        6
                    }
                    "ts_ms" => {
                        raw.ts_ms = Some(i64::try_from(value).ok()?);
                        7
                    }
                    "seq" => {
                        raw.seq = Some(value);
                        8
                    }
                    _ => {
                        raw.trade_count = Some(value);
                        9
                    }
                };
                (bit, end)
            }
            "open" | "high" | "low" | "close" | "volume" | "vwap" => {
                let (value, end) = plain_decimal(b, i)?;
                let (slot, bit) = match key {
                    "open" => (&mut raw.open, 10),
                    "high" => (&mut raw.high, 11),
                    "low" => (&mut raw.low, 12),
                    "close" => (&mut raw.close, 13),
                    "volume" => (&mut raw.volume, 14),
                    _ => (&mut raw.vwap, 15),
                };
                *slot = Some(value);
                (bit, end)
            }
            _ => return None, // an unknown field: serde skips it (whatever its value)
        };
        seen_bit(&mut seen, bit)?;
        i = skip_ws(b, end);
        if !next_member(b, &mut i)? {
            return Some(raw);
        }
    }
}

/// Duplicate fields are an error for serde: decline them.
fn seen_bit(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & (1 << bit) != 0 {
        return None;
    }
    *seen |= 1 << bit;
    Some(())
}

/// After a member: `,` → Some(true) (another follows), `}` at the very end → Some(false).
fn next_member(b: &[u8], i: &mut usize) -> Option<bool> {
    match b.get(*i) {
        Some(b',') => {
            *i = skip_ws(b, *i + 1);
            Some(true)
        }
        Some(b'}') => (skip_ws(b, *i + 1) == b.len()).then_some(false),
        _ => None,
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A string without escapes or control characters, starting at its opening quote. (Keys and
/// values are short: one plain byte loop beats a vectorised search here.)
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    loop {
        match *b.get(end)? {
            b'"' => return Some((&text[start..end], end + 1)),
            b'\\' | 0..=0x1f => return None,
            _ => end += 1,
        }
    }
}

/// Digits starting at `i`: (how many, their value; `None` value past 19 digits).
fn digits(b: &[u8], mut i: usize) -> (usize, Option<u64>) {
    let start = i;
    let mut value = Some(0u64);
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        value = value.and_then(|v| v.checked_mul(10)?.checked_add(u64::from(c - b'0')));
        i += 1;
    }
    (i - start, value)
}

/// A non-negative JSON integer (no leading zeros) that fits in u64.
fn plain_integer(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let (n, value) = digits(b, i);
    if n == 0 || (n > 1 && b[i] == b'0') || matches!(b.get(i + n), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((value?, i + n))
}

/// A non-negative number in strict JSON grammar, converted with correct rounding: short
/// decimals (at most 15 digits, no exponent) exactly by division, anything longer by the
/// standard library's correctly rounded parser (serde_json's `float_roundtrip` matches both).
fn plain_decimal(b: &[u8], i: usize) -> Option<(f64, usize)> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (int_digits, int_value) = digits(b, i);
    if int_digits == 0 || (int_digits > 1 && b[i] == b'0') {
        return None;
    }
    let mut end = i + int_digits;
    let (mut frac_digits, mut frac_value) = (0, Some(0));
    if b.get(end) == Some(&b'.') {
        (frac_digits, frac_value) = digits(b, end + 1);
        if frac_digits == 0 {
            return None;
        }
        end += 1 + frac_digits;
    }
    let mut exponent = false;
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        let (exp_digits, _) = digits(b, end + 1 + sign);
        if exp_digits == 0 {
            return None;
        }
        end += 1 + sign + exp_digits;
        exponent = true;
    }
    if exponent || int_digits + frac_digits > 15 {
        let v: f64 = std::str::from_utf8(&b[i..end]).ok()?.parse().ok()?;
        return v.is_finite().then_some((v, end));
    }
    // At most 15 digits in all: no overflow, and the mantissa is exact in an f64.
    let mantissa = int_value? * 10u64.pow(frac_digits as u32) + frac_value?;
    Some((mantissa as f64 / POW10[frac_digits], end))
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
            let Ok(text) = std::str::from_utf8(&line) else { continue };
            if let Some(fast) = scan_flat(text) {
                fast_hits += 1;
                let slow: RawLine<'_> = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("fast path accepted what serde rejects ({e}): {text}"));
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
            let fast = scan_flat(&text).unwrap_or_else(|| panic!("declined {text}"));
            assert_eq!(fast, serde_json::from_str::<RawLine<'_>>(&text).unwrap(), "{text}");
        }
        for seed in seeds.iter().take(4) {
            assert_eq!(scan_flat(seed), Some(serde_json::from_str(seed).unwrap()), "{seed}");
        }
        assert!(fast_hits > 10_000, "the fast path should take most near-canonical lines ({fast_hits})");
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
