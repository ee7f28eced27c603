//! The minute barrier's wire lines (docs/ARCHITECTURE.md, "Minute barrier"): `minute_closed`
//! parts and `minute_quiet` marks, their rules, parser and encoder, and the barrier's bounds.
//! The sidecar decides ([`crate::sidecar::barrier::Barrier`]); the consumer assembles and
//! delivers ([`crate::consumer::minutes::MinuteBook`]).
//!
//! ```
//! use barbridge::wire::minute::{parse_part, split, write_part_line, MinuteClosed};
//! let m = MinuteClosed { minute_ms: 1_759_930_080_000, closed_ms: 1_759_930_140_050, complete: false,
//!     bars: vec!["SPY".into()], halted: vec!["SDS".into()], none: vec!["SH".into()], writer: None };
//! let mut line = Vec::new();
//! for part in split(&m) {
//!     write_part_line(&mut line, &part, Some(7), Some("w1"));
//! }
//! let part = parse_part(&line[..line.len() - 1]).unwrap().unwrap();
//! assert_eq!((part.part.parts, &part.part.none[..]), (1, &["SH".to_string()][..]));
//! ```

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::wire::{validate_symbol, validate_writer, WireError, MAX_LINE_BYTES, MAX_TIMESTAMP_MS, MINUTE_MS, MIN_TIMESTAMP_MS};

/// The `v` of the `minute_closed` lines this version writes and reads; a higher one is counted
/// and ignored like an unknown line type.
pub const MINUTE_CLOSED_VERSION: u64 = 1;

/// Most parts one minute may have: 1,024 lines hold far more than the consumer's symbol bound.
pub const MAX_PARTS: u32 = 1024;

/// The default deadline after a minute's end: 10 s. Alpaca sends a minute's bars 20-100 ms after
/// its end (seconds at the open); exchanges have 10 s to report a trade, and a late trade makes
/// an `updated_bar` about 30 s after the minute (forum.alpaca.markets/t/8947, "Alpaca Market Data
/// Update: Bars"). A bar not there 10 s after its minute is late, lost or quiet; the updated bar
/// at :30 stays a correction.
pub const DEFAULT_DEADLINE_MS: i64 = 10_000;

/// Minutes whose parts a consumer assembles at once (per writer); the oldest incomplete one is
/// dropped beyond it, counted (`minute_parts_evicted`).
pub const MAX_PENDING_MINUTES: usize = 64;

/// Closed minutes waiting for the sidecar's REST confirmation, at most.
pub const MAX_UNCONFIRMED_MINUTES: usize = 256;

/// Closed minutes whose symbols without a bar a consumer remembers (to check quiet marks and
/// count late bars): two hours.
pub const NONE_REMEMBERED_MINUTES: usize = 120;

/// Quiet minutes remembered per symbol (more than a session's 390 and a crypto day's 1,440).
pub const MAX_QUIET_PER_SYMBOL: usize = 2048;

/// Bytes of a part line kept free for its envelope (`seq`, `writer`) and header.
const HEADER_RESERVE: usize = 400;

/// One minute, closed: what the sidecar knew when it decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteClosed {
    /// Start of the minute (UTC epoch ms).
    pub minute_ms: i64,
    /// When the sidecar closed it (its clock, UTC epoch ms).
    pub closed_ms: i64,
    /// True when every subscribed, non-halted symbol had its bar; false: closed by the deadline.
    pub complete: bool,
    /// Subscribed symbols with a bar of this minute.
    pub bars: Vec<String>,
    /// Subscribed symbols without a bar that were halted during the minute.
    pub halted: Vec<String>,
    /// Subscribed symbols without a bar yet (late, lost, or quiet: no trade).
    pub none: Vec<String>,
    /// The writer (sidecar) that closed it, when known.
    pub writer: Option<String>,
}

/// One `minute_closed` line: a part of a [`MinuteClosed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinuteClosedPart {
    /// Start of the minute (UTC epoch ms).
    pub minute_ms: i64,
    /// When the sidecar closed it.
    pub closed_ms: i64,
    /// Closed because complete (not by the deadline).
    pub complete: bool,
    /// This part's number, 1-based.
    pub part: u32,
    /// How many parts the minute has.
    pub parts: u32,
    /// Symbols with a bar, in this part.
    pub bars: Vec<String>,
    /// Halted symbols, in this part.
    pub halted: Vec<String>,
    /// Symbols without a bar yet, in this part.
    pub none: Vec<String>,
}

/// A decoded `minute_closed` line with its envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct MinuteClosedLine<'a> {
    /// The part.
    pub part: MinuteClosedPart,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawPart<'a> {
    v: Option<u64>,
    minute_ms: Option<i64>,
    closed_ms: Option<i64>,
    #[serde(borrow)]
    by: Option<Cow<'a, str>>,
    part: Option<u32>,
    parts: Option<u32>,
    #[serde(default, borrow)]
    bars: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    halted: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    none: Vec<Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    writer: Option<Cow<'a, str>>,
}

/// The rules both minute lines share: `None` for a newer `v` (ignored like an unknown type),
/// else the writer id checked and `minute_ms` present, in range and on a minute.
fn check_header(v: Option<u64>, writer: Option<&str>, minute_ms: Option<i64>) -> Result<Option<i64>, WireError> {
    if v.unwrap_or(1) > MINUTE_CLOSED_VERSION {
        return Ok(None);
    }
    if let Some(w) = writer {
        validate_writer(w)?;
    }
    let minute_ms = minute_ms.ok_or(WireError::MissingField { field: "minute_ms" })?;
    if !(MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&minute_ms) {
        return Err(WireError::InvalidTimestamp { timestamp_ms: minute_ms });
    }
    if minute_ms % MINUTE_MS != 0 {
        return Err(WireError::OffMinute { timestamp_ms: minute_ms });
    }
    Ok(Some(minute_ms))
}

/// Decode a `minute_closed` line (already known to have that `type`). `Ok(None)`: a `v` above
/// [`MINUTE_CLOSED_VERSION`] (a newer writer's: ignored like an unknown type).
///
/// # Errors
/// The [`WireError`] of the first rule the line breaks: `minute_ms` missing or not a minute
/// (`invalid_timestamp`, `off_minute`), `part`/`parts` missing or out of `1..=parts ≤ 1024`
/// (`wrong_type`), a symbol breaking the symbol rule or listed twice (`invalid_symbol`).
pub fn parse_part(bytes: &[u8]) -> Result<Option<MinuteClosedLine<'_>>, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|e| WireError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
    let raw: RawPart<'_> = serde_json::from_str(text).map_err(|e| WireError::WrongType { detail: format!("minute_closed: {e}") })?;
    let Some(minute_ms) = check_header(raw.v, raw.writer.as_deref(), raw.minute_ms)? else {
        return Ok(None);
    };
    let closed_ms = raw.closed_ms.unwrap_or(minute_ms + MINUTE_MS);
    let part = raw.part.unwrap_or(1);
    let parts = raw.parts.unwrap_or(1);
    if part == 0 || parts == 0 || part > parts || parts > MAX_PARTS {
        return Err(WireError::WrongType { detail: format!("minute_closed part {part} of {parts}: must be 1 ≤ part ≤ parts ≤ {MAX_PARTS}") });
    }
    let complete = match raw.by.as_deref() {
        None | Some("all") => true,
        Some("deadline") => false,
        Some(other) => return Err(WireError::WrongType { detail: format!("minute_closed `by` {other:?} is not all or deadline") }),
    };
    let mut seen = HashSet::new();
    let mut list = |v: Vec<Cow<'_, str>>| -> Result<Vec<String>, WireError> {
        v.into_iter()
            .map(|s| {
                validate_symbol(&s)?;
                if !seen.insert(s.clone().into_owned()) {
                    return Err(WireError::InvalidSymbol { symbol: s.into_owned() });
                }
                Ok(s.into_owned())
            })
            .collect()
    };
    let part =
        MinuteClosedPart { minute_ms, closed_ms, complete, part, parts, bars: list(raw.bars)?, halted: list(raw.halted)?, none: list(raw.none)? };
    Ok(Some(MinuteClosedLine { part, seq: raw.seq, writer: raw.writer }))
}

/// A decoded `minute_quiet` line: REST confirmed these symbols had no bar in the minute (no
/// trade), so their missing bar is no hole.
#[derive(Clone, Debug, PartialEq)]
pub struct MinuteQuietLine<'a> {
    /// Start of the minute (UTC epoch ms).
    pub minute_ms: i64,
    /// The symbols confirmed quiet.
    pub quiet: Vec<String>,
    /// The writer's sequence number, if the line had one.
    pub seq: Option<u64>,
    /// The writer's id, if the line had one.
    pub writer: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawQuiet<'a> {
    v: Option<u64>,
    minute_ms: Option<i64>,
    #[serde(default, borrow)]
    quiet: Vec<Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    writer: Option<Cow<'a, str>>,
}

/// Decode a `minute_quiet` line. `Ok(None)`: a newer `v` (ignored like an unknown type).
///
/// # Errors
/// The [`WireError`] of the first rule it breaks (as [`parse_part`]).
pub fn parse_quiet(bytes: &[u8]) -> Result<Option<MinuteQuietLine<'_>>, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|e| WireError::InvalidUtf8 { valid_up_to: e.valid_up_to() })?;
    let raw: RawQuiet<'_> = serde_json::from_str(text).map_err(|e| WireError::WrongType { detail: format!("minute_quiet: {e}") })?;
    let Some(minute_ms) = check_header(raw.v, raw.writer.as_deref(), raw.minute_ms)? else {
        return Ok(None);
    };
    let quiet = raw
        .quiet
        .into_iter()
        .map(|s| {
            validate_symbol(&s)?;
            Ok(s.into_owned())
        })
        .collect::<Result<Vec<_>, WireError>>()?;
    Ok(Some(MinuteQuietLine { minute_ms, quiet, seq: raw.seq, writer: raw.writer }))
}

/// `quiet` cut into lists whose `minute_quiet` lines fit in [`MAX_LINE_BYTES`].
pub fn split_quiet(quiet: &[String]) -> Vec<Vec<String>> {
    let budget = MAX_LINE_BYTES - HEADER_RESERVE;
    let mut out = vec![Vec::new()];
    let mut used = 0;
    for s in quiet {
        let cost = json_str_len(s) + 1;
        if used + cost > budget {
            out.push(Vec::new());
            used = 0;
        }
        used += cost;
        out.last_mut().expect("one list at least").push(s.clone());
    }
    out
}

/// Append one `minute_quiet` line (newline included):
/// `{"type":"minute_quiet","v":1,"minute_ms":…,"quiet":[…],"seq":…,"writer":…}`.
pub fn write_quiet_line(out: &mut Vec<u8>, minute_ms: i64, quiet: &[String], seq: Option<u64>, writer: Option<&str>) {
    use std::io::Write;
    let _ = write!(out, r#"{{"type":"minute_quiet","v":{MINUTE_CLOSED_VERSION},"minute_ms":{minute_ms},"quiet":"#);
    serde_json::to_writer(&mut *out, quiet).expect("writing to a Vec cannot fail");
    if let Some(seq) = seq {
        let _ = write!(out, r#","seq":{seq}"#);
    }
    if let Some(writer) = writer {
        out.extend_from_slice(br#","writer":"#);
        serde_json::to_writer(&mut *out, writer).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"}\n");
}

fn json_str_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len() + 2, |j| j.len())
}

/// Cut a closed minute into parts whose lines fit in [`MAX_LINE_BYTES`] with any envelope.
pub fn split(m: &MinuteClosed) -> Vec<MinuteClosedPart> {
    let budget = MAX_LINE_BYTES - HEADER_RESERVE;
    let empty = |m: &MinuteClosed| MinuteClosedPart {
        minute_ms: m.minute_ms,
        closed_ms: m.closed_ms,
        complete: m.complete,
        part: 0,
        parts: 0,
        bars: Vec::new(),
        halted: Vec::new(),
        none: Vec::new(),
    };
    let mut parts = vec![empty(m)];
    let mut used = 0;
    for (list, symbols) in [(0, &m.bars), (1, &m.halted), (2, &m.none)] {
        for s in symbols {
            let cost = json_str_len(s) + 1;
            if used + cost > budget {
                parts.push(empty(m));
                used = 0;
            }
            used += cost;
            let p = parts.last_mut().expect("one part at least");
            [&mut p.bars, &mut p.halted, &mut p.none][list].push(s.clone());
        }
    }
    let n = parts.len() as u32;
    for (i, p) in parts.iter_mut().enumerate() {
        p.part = i as u32 + 1;
        p.parts = n;
    }
    parts
}

/// Append one part as a wire line (newline included):
/// `{"type":"minute_closed","v":1,"minute_ms":…,"closed_ms":…,"by":"all"|"deadline","part":1,"parts":1,"bars":[…],"halted":[…],"none":[…],"seq":…,"writer":…}`.
pub fn write_part_line(out: &mut Vec<u8>, p: &MinuteClosedPart, seq: Option<u64>, writer: Option<&str>) {
    use std::io::Write;
    let _ = write!(
        out,
        r#"{{"type":"minute_closed","v":{MINUTE_CLOSED_VERSION},"minute_ms":{},"closed_ms":{},"by":"{}","part":{},"parts":{}"#,
        p.minute_ms,
        p.closed_ms,
        if p.complete { "all" } else { "deadline" },
        p.part,
        p.parts
    );
    for (key, list) in [("bars", &p.bars), ("halted", &p.halted), ("none", &p.none)] {
        let _ = write!(out, r#","{key}":"#);
        serde_json::to_writer(&mut *out, list).expect("writing to a Vec cannot fail");
    }
    if let Some(seq) = seq {
        let _ = write!(out, r#","seq":{seq}"#);
    }
    if let Some(writer) = writer {
        out.extend_from_slice(br#","writer":"#);
        serde_json::to_writer(&mut *out, writer).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"}\n");
}
