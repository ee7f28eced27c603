//! The minute barrier (docs/ARCHITECTURE.md, "Minute barrier"): for each minute, one
//! `minute_closed` event saying which subscribed symbols have a bar, which are halted and which
//! have none yet.
//!
//! * The sidecar decides ([`Barrier`]): it knows the subscription and sees the stream first. A
//!   minute closes as soon as every subscribed, non-halted symbol has its bar, or at a deadline
//!   after the minute's end ([`DEFAULT_DEADLINE_MS`]), whichever is first.
//! * On the wire it is one or more numbered lines (`part` of `parts`, each ≤ 4096 bytes: a
//!   10,000-symbol minute needs about 20), written after the minute's bars
//!   ([`split`], [`write_part_line`], [`parse_part`]).
//! * The consumer ([`MinuteBook`]) assembles the parts of a minute, journals each part (a replay
//!   and a restarted consumer rebuild the same minutes), and delivers the whole minute once to
//!   its minute subscribers ([`crate::Consumer::subscribe_minutes`],
//!   [`crate::Consumer::on_minute_closed`]) after the bars of the same read batch.
//!
//! ```
//! use barbridge::minute::{parse_part, split, write_part_line, MinuteClosed};
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
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::trading::TradingBook;
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

/// Closed (writer, minute) pairs remembered to recognise a minute closed twice.
const CLOSED_REMEMBERED: usize = 4096;

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
    if raw.v.unwrap_or(1) > MINUTE_CLOSED_VERSION {
        return Ok(None);
    }
    if let Some(w) = raw.writer.as_deref() {
        validate_writer(w)?;
    }
    let minute_ms = raw.minute_ms.ok_or(WireError::MissingField { field: "minute_ms" })?;
    if !(MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&minute_ms) {
        return Err(WireError::InvalidTimestamp { timestamp_ms: minute_ms });
    }
    if minute_ms % MINUTE_MS != 0 {
        return Err(WireError::OffMinute { timestamp_ms: minute_ms });
    }
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
    if raw.v.unwrap_or(1) > MINUTE_CLOSED_VERSION {
        return Ok(None);
    }
    if let Some(w) = raw.writer.as_deref() {
        validate_writer(w)?;
    }
    let minute_ms = raw.minute_ms.ok_or(WireError::MissingField { field: "minute_ms" })?;
    if !(MIN_TIMESTAMP_MS..MAX_TIMESTAMP_MS).contains(&minute_ms) {
        return Err(WireError::InvalidTimestamp { timestamp_ms: minute_ms });
    }
    if minute_ms % MINUTE_MS != 0 {
        return Err(WireError::OffMinute { timestamp_ms: minute_ms });
    }
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

// ------------------------------------------------------------------------------ the sidecar

/// The sidecar's barrier: which subscribed symbols have a bar of each open minute, and when a
/// minute closes. Not thread-safe by itself: the extension's `Publisher` keeps it under a lock
/// held across a bar's hand-over to the sink and its note here, so a minute's `minute_closed`
/// always follows the bars it lists.
///
/// Its clock is the data's: a bar of minute M says the data clock is at least M's end; between
/// bars it runs with the wall clock. (On Alpaca both agree; a replay or the fake server's fast
/// clock are measured in their own time.)
#[derive(Debug)]
pub struct Barrier {
    deadline_ms: i64,
    every_minute: bool,
    subscribed: HashSet<String>,
    open: BTreeMap<i64, HashSet<String>>,
    /// The first minute not closed yet (None until the first live bar).
    next_minute: Option<i64>,
    /// (data time, when it was seen).
    data_clock: Option<(i64, Instant)>,
    closed: u64,
    /// Closed minutes with symbols still without a bar, for the REST confirmation to take.
    unconfirmed: VecDeque<(i64, Vec<String>)>,
}

impl Barrier {
    /// A barrier over `symbols`, closing a minute `deadline_ms` after its end at the latest.
    /// `every_minute`: close every minute (crypto, `--market-hours always`); otherwise only
    /// minutes of the NYSE regular session and minutes with a bar.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I, deadline_ms: i64, every_minute: bool) -> Barrier {
        Barrier {
            deadline_ms: deadline_ms.max(0),
            every_minute,
            subscribed: symbols.into_iter().map(Into::into).collect(),
            open: BTreeMap::new(),
            next_minute: None,
            data_clock: None,
            closed: 0,
            unconfirmed: VecDeque::new(),
        }
    }

    /// The subscription changed (`--subscribe` / `--unsubscribe`): minutes still open are
    /// decided against the new list.
    pub fn set_symbols<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, symbols: I) {
        self.subscribed = symbols.into_iter().map(Into::into).collect();
        for have in self.open.values_mut() {
            have.retain(|s| self.subscribed.contains(s)); // an unsubscribed symbol counts no more
        }
    }

    /// The subscribed symbols.
    pub fn symbols(&self) -> &HashSet<String> {
        &self.subscribed
    }

    /// Minutes closed so far.
    pub fn closed(&self) -> u64 {
        self.closed
    }

    /// The closed minutes with symbols still without a bar (oldest first), taken: the sidecar's
    /// REST confirmation asks about them (bounded: the oldest beyond
    /// [`MAX_UNCONFIRMED_MINUTES`] stay unknown).
    pub fn take_unconfirmed(&mut self) -> Vec<(i64, Vec<String>)> {
        self.unconfirmed.drain(..).collect()
    }

    /// A bar of `symbol` for `minute_ms` went to the sink. `live`: from the stream (or a
    /// synthetic source): it moves the data clock. True when the data clock moved to a later
    /// minute (time to [`Barrier::poll`]: earlier minutes may be due).
    pub fn note(&mut self, symbol: &str, minute_ms: i64, live: bool) -> bool {
        let mut advanced = false;
        if live {
            let end = minute_ms + MINUTE_MS;
            if self.data_clock.is_none_or(|(t, _)| end > t) {
                advanced = self.data_clock.is_some();
                self.data_clock = Some((end, Instant::now()));
            }
            if self.next_minute.is_none() {
                self.next_minute = Some(minute_ms);
            }
        }
        let Some(next) = self.next_minute else { return advanced };
        if minute_ms >= next && self.subscribed.contains(symbol) {
            self.open.entry(minute_ms).or_default().insert(symbol.to_owned());
        } // else: closed already (a late bar), or not subscribed
        advanced
    }

    /// The data clock now (ms), if any live bar was seen.
    pub fn now_ms(&self) -> Option<i64> {
        self.data_clock.map(|(t, at)| t + i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX / 2))
    }

    /// Close every minute that is complete or past its deadline, oldest first; `wall_ms` stamps
    /// `closed_ms`. Halts come from `trading` (the sidecar's own book of the stream's statuses).
    pub fn poll(&mut self, trading: &TradingBook, wall_ms: i64) -> Vec<MinuteClosed> {
        let mut out = Vec::new();
        let (Some(now), Some(mut next)) = (self.now_ms(), self.next_minute) else { return out };
        // After a long silence (a night, a dead stream), do not walk every minute since.
        if now - next > 24 * 3_600_000 {
            next = (now - 24 * 3_600_000) / MINUTE_MS * MINUTE_MS;
            self.open.retain(|m, _| *m >= next);
        }
        if next + MINUTE_MS > now {
            return out; // nothing can be due yet (the common case: no lock taken below)
        }
        let halted_now = trading.halted_now();
        loop {
            let end = next + MINUTE_MS;
            if end > now {
                break; // the data has not reached the minute's end
            }
            let have = self.open.get(&next);
            let with_bar = have.map_or(0, HashSet::len);
            let missing_halted = halted_now.keys().filter(|s| self.subscribed.contains(*s) && have.is_none_or(|h| !h.contains(*s))).count();
            let complete = with_bar + missing_halted >= self.subscribed.len() && !self.subscribed.is_empty();
            let due = now >= end + self.deadline_ms;
            if !complete && !due {
                break;
            }
            let have = self.open.remove(&next).unwrap_or_default();
            if have.is_empty() && !self.every_minute && !crate::calendar::in_session(next) {
                next += MINUTE_MS; // outside the session with no bar: nothing to close
                continue;
            }
            let mut bars: Vec<String> = have.iter().cloned().collect();
            let mut halted = Vec::new();
            let mut none = Vec::new();
            for s in self.subscribed.iter().filter(|s| !have.contains(*s)) {
                let was_halted = halted_now.contains_key(s) || trading.halts(s).iter().any(|h| h.start_ms < end && h.end_ms.is_none_or(|e| e > next));
                if was_halted { &mut halted } else { &mut none }.push(s.clone());
            }
            bars.sort_unstable();
            halted.sort_unstable();
            none.sort_unstable();
            if !none.is_empty() {
                if self.unconfirmed.len() >= MAX_UNCONFIRMED_MINUTES {
                    self.unconfirmed.pop_front();
                }
                self.unconfirmed.push_back((next, none.clone()));
            }
            out.push(MinuteClosed { minute_ms: next, closed_ms: wall_ms, complete: none.is_empty(), bars, halted, none, writer: None });
            self.closed += 1;
            next += MINUTE_MS;
        }
        self.next_minute = Some(next);
        out
    }
}

// ------------------------------------------------------------------------------ the consumer

/// The minute counters (status file `minutes`, `/metrics`).
#[derive(Debug, Default)]
pub struct MinuteCounters {
    /// Minutes closed and delivered.
    pub minutes_closed: AtomicU64,
    /// Of those, closed by the deadline with symbols still without a bar.
    pub minutes_incomplete: AtomicU64,
    /// `minute_closed` lines (parts) accepted.
    pub minute_parts: AtomicU64,
    /// A minute (or part) closed again by the same writer: not delivered twice.
    pub minute_duplicates: AtomicU64,
    /// Parts that contradict the parts before them: rejected.
    pub minute_rejected: AtomicU64,
    /// Incomplete minutes dropped past [`MAX_PENDING_MINUTES`].
    pub minute_parts_evicted: AtomicU64,
    /// Minute events dropped because a minute subscriber's channel was full.
    pub minute_delivery_drops: AtomicU64,
    /// Bars that arrived after their minute closed without them (the stream lost or delayed
    /// them; the sidecar's REST confirmation recovers them): stored, delivered, counted.
    pub late_bars: AtomicU64,
    /// (symbol, minute) pairs marked quiet (REST has no bar: no trade): never a hole.
    pub quiet_marks: AtomicU64,
    /// Quiet marks refused: the symbol was not without a bar in that closed minute (not
    /// subscribed, or the minute unknown).
    pub quiet_rejected: AtomicU64,
}

/// A snapshot of [`MinuteCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteStats {
    /// See [`MinuteCounters::minutes_closed`].
    pub minutes_closed: u64,
    /// See [`MinuteCounters::minutes_incomplete`].
    pub minutes_incomplete: u64,
    /// See [`MinuteCounters::minute_parts`].
    pub minute_parts: u64,
    /// See [`MinuteCounters::minute_duplicates`].
    pub minute_duplicates: u64,
    /// See [`MinuteCounters::minute_rejected`].
    pub minute_rejected: u64,
    /// See [`MinuteCounters::minute_parts_evicted`].
    pub minute_parts_evicted: u64,
    /// See [`MinuteCounters::minute_delivery_drops`].
    pub minute_delivery_drops: u64,
    /// See [`MinuteCounters::late_bars`].
    pub late_bars: u64,
    /// See [`MinuteCounters::quiet_marks`].
    pub quiet_marks: u64,
    /// See [`MinuteCounters::quiet_rejected`].
    pub quiet_rejected: u64,
    /// The last minute closed (UTC epoch ms), 0 before the first.
    pub last_minute_ms: i64,
}

struct Pending {
    parts: u32,
    got: Vec<bool>,
    acc: MinuteClosed,
}

#[derive(Default)]
struct BookState {
    pending: HashMap<(String, i64), Pending>,
    closed: HashSet<(String, i64)>,
    closed_order: VecDeque<(String, i64)>,
    held: Vec<Arc<MinuteClosed>>,
    last_minute_ms: i64,
    /// minute → writer → symbols without a bar when it closed (bar or quiet mark removes one).
    none: BTreeMap<i64, HashMap<String, HashSet<String>>>,
    /// symbol → minutes confirmed quiet.
    quiet: HashMap<String, std::collections::BTreeSet<i64>>,
}

/// The receiving end of [`crate::Consumer::subscribe_minutes`]. Dropping it unsubscribes.
#[derive(Debug)]
pub struct MinuteReceiver {
    rx: Receiver<Arc<MinuteClosed>>,
    alive: Arc<AtomicBool>,
}

impl std::ops::Deref for MinuteReceiver {
    type Target = Receiver<Arc<MinuteClosed>>;
    fn deref(&self) -> &Receiver<Arc<MinuteClosed>> {
        &self.rx
    }
}

impl Drop for MinuteReceiver {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

type MinuteCallback = Box<dyn Fn(&MinuteClosed) + Send + Sync>;

struct MinuteChannel {
    tx: Sender<Arc<MinuteClosed>>,
    rx: Receiver<Arc<MinuteClosed>>,
    alive: Arc<AtomicBool>,
}

/// The consumer's minutes: parts assembled per (writer, minute), each minute delivered once.
#[derive(Default)]
pub struct MinuteBook {
    state: Mutex<BookState>,
    /// The newest minute with symbols left without a bar (a bar of a later minute cannot be late:
    /// no lock taken for it).
    newest_none: std::sync::atomic::AtomicI64,
    channels: RwLock<Vec<MinuteChannel>>,
    callbacks: RwLock<Vec<MinuteCallback>>,
    /// The counters.
    pub counters: MinuteCounters,
}

impl std::fmt::Debug for MinuteBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinuteBook").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// What [`MinuteBook::add_part`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Kept; the minute waits for more parts.
    Waiting,
    /// The minute's last part: the minute, whole.
    Closed(Arc<MinuteClosed>),
    /// This part (or the minute) was seen before.
    Duplicate,
    /// Contradicts the earlier parts of its minute.
    Rejected(String),
}

impl MinuteBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, BookState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take one part of `writer`'s minute. Counts what happened (a restored part is counted as a
    /// part only).
    pub fn add_part(&self, writer: &str, p: &MinuteClosedPart) -> PartOutcome {
        let c = &self.counters;
        let key = (writer.to_owned(), p.minute_ms);
        let mut st = self.lock();
        if st.closed.contains(&key) {
            c.minute_duplicates.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Duplicate;
        }
        if !st.pending.contains_key(&key) && st.pending.len() >= MAX_PENDING_MINUTES {
            if let Some(oldest) = st.pending.keys().min_by_key(|(_, m)| *m).cloned() {
                st.pending.remove(&oldest);
                c.minute_parts_evicted.fetch_add(1, Ordering::Relaxed);
                log::warn!("minute {} of writer {:?} never got all its minute_closed parts: dropped", crate::calendar::fmt_ny(oldest.1), oldest.0);
            }
        }
        let entry = st.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: p.parts,
            got: vec![false; p.parts as usize],
            acc: MinuteClosed {
                minute_ms: p.minute_ms,
                closed_ms: p.closed_ms,
                complete: p.complete,
                bars: Vec::new(),
                halted: Vec::new(),
                none: Vec::new(),
                writer: (!writer.is_empty()).then(|| writer.to_owned()),
            },
        });
        if entry.parts != p.parts {
            c.minute_rejected.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Rejected(format!("part {} says {} parts, an earlier part said {}", p.part, p.parts, entry.parts));
        }
        let i = p.part as usize - 1;
        if entry.got[i] {
            c.minute_duplicates.fetch_add(1, Ordering::Relaxed);
            return PartOutcome::Duplicate;
        }
        entry.got[i] = true;
        entry.acc.bars.extend(p.bars.iter().cloned());
        entry.acc.halted.extend(p.halted.iter().cloned());
        entry.acc.none.extend(p.none.iter().cloned());
        c.minute_parts.fetch_add(1, Ordering::Relaxed);
        if !entry.got.iter().all(|g| *g) {
            return PartOutcome::Waiting;
        }
        let done = st.pending.remove(&key).expect("present").acc;
        if st.closed_order.len() >= CLOSED_REMEMBERED {
            if let Some(old) = st.closed_order.pop_front() {
                st.closed.remove(&old);
            }
        }
        st.closed.insert(key.clone());
        st.closed_order.push_back(key);
        st.last_minute_ms = st.last_minute_ms.max(done.minute_ms);
        if !done.none.is_empty() {
            st.none.entry(done.minute_ms).or_default().insert(writer.to_owned(), done.none.iter().cloned().collect());
            while st.none.len() > NONE_REMEMBERED_MINUTES {
                st.none.pop_first();
            }
            self.newest_none.fetch_max(done.minute_ms, Ordering::Relaxed);
        }
        c.minutes_closed.fetch_add(1, Ordering::Relaxed);
        if !done.none.is_empty() {
            c.minutes_incomplete.fetch_add(1, Ordering::Relaxed);
        }
        PartOutcome::Closed(Arc::new(done))
    }

    /// A bar of `symbol` for `minute_ms` was stored as a first report: if its minute closed
    /// without it, it is late (counted in `late_bars`). True when late.
    pub fn on_bar(&self, symbol: &str, minute_ms: i64) -> bool {
        if minute_ms > self.newest_none.load(Ordering::Relaxed) {
            return false;
        }
        let mut st = self.lock();
        let Some(writers) = st.none.get_mut(&minute_ms) else { return false };
        let mut late = false;
        for none in writers.values_mut() {
            late |= none.remove(symbol); // from every writer's close that listed it
        }
        if late {
            self.counters.late_bars.fetch_add(1, Ordering::Relaxed);
        }
        late
    }

    /// Quiet marks of `writer` for `minute_ms`: each symbol must be one the minute closed without
    /// (else refused, counted). Returns the symbols taken (to journal), or why none was.
    ///
    /// # Errors
    /// A sentence naming the first refused symbol (the others may have been taken).
    pub fn mark_quiet(&self, writer: &str, minute_ms: i64, symbols: &[String]) -> (Vec<String>, Option<String>) {
        let mut st = self.lock();
        let mut taken = Vec::new();
        let mut refused = None;
        for s in symbols {
            let ok = st.none.get_mut(&minute_ms).and_then(|w| w.get_mut(writer)).is_some_and(|none| none.remove(s));
            if ok {
                let minutes = st.quiet.entry(s.clone()).or_default();
                minutes.insert(minute_ms);
                while minutes.len() > MAX_QUIET_PER_SYMBOL {
                    minutes.pop_first();
                }
                taken.push(s.clone());
            } else {
                self.counters.quiet_rejected.fetch_add(1, Ordering::Relaxed);
                refused.get_or_insert_with(|| format!("{s:?} was not without a bar in that minute's close by writer {writer:?}"));
            }
        }
        self.counters.quiet_marks.fetch_add(taken.len() as u64, Ordering::Relaxed);
        (taken, refused)
    }

    /// The minutes marked quiet for `symbol` in `[from_ms, to_ms)`.
    pub fn quiet_minutes(&self, symbol: &str, from_ms: i64, to_ms: i64) -> Vec<i64> {
        self.lock().quiet.get(symbol).map(|m| m.range(from_ms..to_ms).copied().collect()).unwrap_or_default()
    }

    /// Deliver a closed minute: callbacks now; channels now, or (`hold`) at
    /// [`MinuteBook::release`] after the read batch's bars.
    pub fn deliver(&self, m: Arc<MinuteClosed>, hold: bool) {
        for f in self.callbacks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            f(&m);
        }
        if hold {
            self.lock().held.push(m);
        } else {
            self.send(std::slice::from_ref(&m));
        }
    }

    /// Send the held minutes to the channels (the FIFO reader calls it after the batch's bars).
    pub fn release(&self) {
        let held = std::mem::take(&mut self.lock().held);
        if !held.is_empty() {
            self.send(&held);
        }
    }

    fn send(&self, events: &[Arc<MinuteClosed>]) {
        let mut any_gone = false;
        for ch in self.channels.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if !ch.alive.load(Ordering::Relaxed) {
                any_gone = true;
                continue;
            }
            for m in events {
                if let Err(TrySendError::Full(m)) = ch.tx.try_send(m.clone()) {
                    let _ = ch.rx.try_recv();
                    let _ = ch.tx.try_send(m);
                    self.counters.minute_delivery_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if any_gone {
            self.channels.write().unwrap_or_else(|e| e.into_inner()).retain(|c| c.alive.load(Ordering::Relaxed));
        }
    }

    /// A bounded channel of closed minutes (full: the oldest dropped, counted).
    pub fn subscribe(&self, capacity: usize) -> MinuteReceiver {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        self.channels.write().unwrap_or_else(|e| e.into_inner()).push(MinuteChannel { tx, rx: rx.clone(), alive: alive.clone() });
        MinuteReceiver { rx, alive }
    }

    /// Call `f` on the ingesting thread for each closed minute.
    pub fn on_closed(&self, f: impl Fn(&MinuteClosed) + Send + Sync + 'static) {
        self.callbacks.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    }

    /// The counters now.
    pub fn stats(&self) -> MinuteStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MinuteStats {
            minutes_closed: l(&c.minutes_closed),
            minutes_incomplete: l(&c.minutes_incomplete),
            minute_parts: l(&c.minute_parts),
            minute_duplicates: l(&c.minute_duplicates),
            minute_rejected: l(&c.minute_rejected),
            minute_parts_evicted: l(&c.minute_parts_evicted),
            minute_delivery_drops: l(&c.minute_delivery_drops),
            late_bars: l(&c.late_bars),
            quiet_marks: l(&c.quiet_marks),
            quiet_rejected: l(&c.quiet_rejected),
            last_minute_ms: self.lock().last_minute_ms,
        }
    }
}

/// The wire line(s) of a closed minute, without envelope except `writer` (the journal's and
/// `--echo`'s form).
pub fn lines_of(m: &MinuteClosed) -> Vec<u8> {
    let mut out = Vec::new();
    for p in split(m) {
        write_part_line(&mut out, &p, None, m.writer.as_deref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 1_759_930_080_000;

    fn closed(n: usize) -> MinuteClosed {
        MinuteClosed {
            minute_ms: M,
            closed_ms: M + 60_050,
            complete: false,
            bars: (0..n).map(|i| format!("B{i:05}")).collect(),
            halted: vec!["HALT".into()],
            none: (0..n / 5).map(|i| format!("Q{i:05}")).collect(),
            writer: Some("w1".into()),
        }
    }

    #[test]
    fn a_10000_symbol_minute_splits_into_lines_that_fit_and_reassembles() {
        let m = closed(10_000);
        let parts = split(&m);
        assert!(parts.len() > 10 && parts.len() < 40, "{}", parts.len());
        let book = MinuteBook::default();
        let mut last = None;
        // Out of order, with a duplicate: still one minute, whole.
        let mut order: Vec<usize> = (0..parts.len()).rev().collect();
        order.insert(1, order[0]);
        for i in order {
            let mut line = Vec::new();
            write_part_line(&mut line, &parts[i], Some(u64::MAX), Some(&"w".repeat(64)));
            assert!(line.len() <= MAX_LINE_BYTES, "{}", line.len());
            let parsed = parse_part(&line[..line.len() - 1]).unwrap().unwrap();
            assert_eq!(parsed.part, parts[i]);
            if let PartOutcome::Closed(m) = book.add_part("w1", &parsed.part) {
                assert!(last.is_none());
                last = Some(m);
            }
        }
        let got = last.expect("closed");
        let (mut a, mut b) = (got.bars.clone(), m.bars.clone());
        a.sort();
        b.sort();
        assert_eq!((a, got.halted.clone(), got.none.len()), (b, m.halted.clone(), m.none.len()));
        let s = book.stats();
        assert_eq!((s.minutes_closed, s.minute_duplicates, s.minute_parts as usize), (1, 1, parts.len()));
        // The same minute again from the same writer: a duplicate, not a second close.
        assert_eq!(book.add_part("w1", &parts[0]), PartOutcome::Duplicate);
    }

    #[test]
    fn bad_parts_are_refused_and_a_newer_version_is_ignored() {
        let bad = |s: &str| parse_part(s.as_bytes()).unwrap_err();
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080001}"#), WireError::OffMinute { .. }));
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"part":2,"parts":1}"#), WireError::WrongType { .. }));
        assert!(matches!(bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"bars":["spy"]}"#), WireError::InvalidSymbol { .. }));
        assert!(matches!(
            bad(r#"{"type":"minute_closed","minute_ms":1759930080000,"bars":["SPY"],"none":["SPY"]}"#),
            WireError::InvalidSymbol { .. }
        ));
        assert!(matches!(bad(r#"{"type":"minute_closed"}"#), WireError::MissingField { field: "minute_ms" }));
        assert_eq!(parse_part(br#"{"type":"minute_closed","v":2,"anything":[1]}"#).unwrap(), None);
    }

    fn bar_line(symbol: &str, seq: u64) -> String {
        format!(r#"{{"symbol":"{symbol}","timestamp_ms":{M},"open":1,"high":1,"low":1,"close":1,"volume":1,"seq":{seq},"writer":"w1"}}"#)
    }

    #[test]
    fn a_consumer_delivers_each_minute_once_after_its_bars_and_a_restart_does_not_repeat_it() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let journal = crate::journal::Journal::open(dir.path(), crate::journal::FsyncPolicy::Always).unwrap();
            let c = crate::Consumer::builder().journal(journal).build().unwrap();
            c.resume_from_journal(M);
            c
        };
        let c = open();
        let rx = c.subscribe_minutes(16);
        let seen = Arc::new(AtomicU64::new(0));
        let counted = seen.clone();
        c.on_minute_closed(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        c.ingest_line(bar_line("SPY", 1).as_bytes()).unwrap();
        let m = MinuteClosed { writer: None, ..closed(3) };
        let mut lines = Vec::new();
        for p in split(&MinuteClosed { bars: vec!["SPY".into()], halted: vec![], none: vec!["SH".into()], ..m.clone() }) {
            write_part_line(&mut lines, &p, Some(2), Some("w1"));
        }
        c.ingest_line(&lines[..lines.len() - 1]).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!((got.bars.clone(), got.none.clone(), got.writer.as_deref()), (vec!["SPY".to_string()], vec!["SH".to_string()], Some("w1")));
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        // A newer version is counted as an unknown line and ignored.
        c.ingest_line(br#"{"type":"minute_closed","v":2,"minute_ms":1759930140000,"seq":3,"writer":"w1"}"#).unwrap();
        assert_eq!(c.health().counters.snapshot().unknown_types, 1);
        c.flush();
        drop(c);
        // Restarted on the same journal without the cursor (the line comes again as new): known,
        // not delivered a second time.
        std::fs::remove_file(dir.path().join(crate::cursor::DURABLE_FILE)).ok();
        let c = open();
        let rx = c.subscribe_minutes(16);
        c.ingest_line(&lines[..lines.len() - 1]).unwrap();
        assert!(rx.try_recv().is_err(), "delivered twice");
        assert_eq!(c.minute_stats().minute_duplicates, 1);
        // A consumer limited to --symbols sees the minute with its own symbols only.
        let only = crate::Consumer::builder().symbols(["SH"]).build().unwrap();
        let rx = only.subscribe_minutes(4);
        only.ingest_line(&lines[..lines.len() - 1]).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!((got.bars.len(), got.none.clone()), (0, vec!["SH".to_string()]));
    }

    #[test]
    fn the_barrier_closes_when_complete_or_at_the_deadline_and_names_halts() {
        let trading = TradingBook::default();
        let mut b = Barrier::new(["SPY", "SH", "SDS"], 1_000, true);
        b.note("SPY", M, true);
        b.note("SH", M, true);
        assert!(b.poll(&trading, 0).is_empty(), "SDS may still come");
        b.note("SDS", M, true);
        let got = b.poll(&trading, 7);
        assert_eq!(got.len(), 1);
        assert!(got[0].complete && got[0].none.is_empty() && got[0].bars == ["SDS", "SH", "SPY"]);
        // Minute 2: SDS halted, SH never comes; SPY's bar closes nothing until the deadline.
        trading.apply(&crate::trading::TradingStatus::new("SDS", M + 61_000, crate::trading::TradingState::Halted, "T1", ""));
        b.note("SPY", M + 60_000, true);
        assert!(b.poll(&trading, 0).is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        let got = b.poll(&trading, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].bars.clone(), got[0].halted.clone(), got[0].none.clone()),
            (vec!["SPY".to_string()], vec!["SDS".to_string()], vec!["SH".to_string()])
        );
        assert!(!got[0].complete);
        // A late bar of a closed minute changes nothing.
        b.note("SH", M + 60_000, false);
        assert_eq!(b.closed(), 2);
    }
}
