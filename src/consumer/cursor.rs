//! Acknowledged delivery: what the consumer has processed of each writer's numbered lines, kept
//! durable beside the journal and published to the writers beside the FIFO.
//!
//! The pipe is one-way, so a writer cannot see what a consumer that died had read and not yet
//! journaled, nor what still sat in the pipe. This module closes the loop:
//!
//! - Every writer numbers its lines (`seq`, from 1, under a writer id unique to its process).
//!   [`SeqBook`] keeps, per writer, the *prefix* (every line up to it was processed), the highest
//!   seq seen and the holes in between. A line at or below the prefix, or above it but not in a
//!   hole, was processed before: it is skipped ([`SeqVerdict::AlreadySeen`]). A line that skips
//!   ahead opens a hole, counted at once as lost; a re-sent line that falls in a hole fills it
//!   and is taken back off the loss count.
//! - After each read batch whose records are all in the journal, the consumer's [`AckPublisher`]
//!   writes the book (rate-limited) to `cursor.json` in the journal directory — so a restarted
//!   consumer knows each writer's position — and then to `<fifo>.ack`, which the writers read.
//!   What is published is therefore never ahead of what is durable.
//! - A writer keeps every line it wrote until the ack covers it (bounded; see
//!   [`crate::sidecar::writer::WriterOptions::unacked_bytes`]). When the ack file names a new consumer
//!   instance, or the FIFO's reader came back after `EPIPE`, it re-sends everything after the
//!   consumer's prefix; the book skips what was processed and fills the holes.
//! - The ack file lists each writer's holes too: a writer re-sends the kept chunks that cover a
//!   hole listed for it (rate-limited), so a line lost on the way (say, merged with a foreign
//!   process's unfinished line) is filled within about one acknowledgement period, without a
//!   consumer restart.
//! - Writers announce in each heartbeat the oldest seq they can still re-send (`retained_from`):
//!   holes below it can never be filled and are closed for good — as lost, except the lines up to
//!   the writer's `acked` (an earlier consumer acknowledged them: they were processed there).
//! - A heartbeat also says how far its writer has sent (`sent`). A position beyond it (a cursor
//!   restored from elsewhere, a copied journal) is impossible: it is counted (`cursor_ahead`),
//!   logged, and replaced by a hole up to `sent`, which the writer then fills: nothing is
//!   skipped as a re-send that was never sent.
//!
//! Without a journal nothing is durable, and the ack is what the store holds.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::private::PrivateError;
pub use crate::wire::MAX_SEQ_GAP;

/// Writers tracked at once; beyond it the one silent longest is forgotten (counted, logged).
pub const MAX_WRITERS: usize = 1024;
/// Open holes kept per writer; beyond it the oldest is closed for good (it stays counted lost).
pub const MAX_HOLES: usize = 64;
/// Name of the durable cursor file in the journal directory.
pub const DURABLE_FILE: &str = "cursor.json";

/// Where the ack file of the FIFO at `fifo` lives: beside it, `<name>.ack`.
pub fn ack_path(fifo: &Path) -> PathBuf {
    let mut name = fifo.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".ack");
    fifo.with_file_name(name)
}

/// One writer's position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterCursor {
    /// Every line up to this seq was processed (and, with a journal, is durable).
    pub prefix: u64,
    /// Highest seq processed.
    pub high: u64,
    /// Inclusive ranges in `(prefix, high]` never received, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holes: Vec<(u64, u64)>,
}

/// What the consumer publishes: its instance and every writer's position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckFile {
    /// Changes whenever a consumer starts: a writer that sees a new value re-sends.
    pub consumer: String,
    /// Process id of the consumer, for the writer's log lines.
    pub pid: u32,
    /// Each writer's position, by writer id.
    pub writers: BTreeMap<String, WriterCursor>,
}

/// What [`SeqBook::observe`] decided about a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The next line in order.
    InOrder,
    /// The first line of a writer this consumer does not know; the `missing` lines before it
    /// (seq 1 up to it) are an open hole: counted lost until a re-send fills them.
    FirstSeen {
        /// How many lines before this one were never received.
        missing: u64,
    },
    /// A new line after a gap `from..=to` (now an open hole, counted lost).
    AfterGap {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// A re-sent line that fills a hole; `closed` is the hole's range when it is now complete.
    FillsGap {
        /// The hole's range `(from, to)` when this line completed it.
        closed: Option<(u64, u64)>,
    },
    /// A line processed before (a re-send): skip it.
    AlreadySeen,
    /// Seq 1 from a known writer whose numbering restarted: a new session.
    Restarted {
        /// The last seq of the writer's previous session.
        after: u64,
    },
    /// A seq more than [`MAX_SEQ_GAP`] beyond the writer's highest (or beyond 0 for a writer not
    /// seen yet): no writer sends that many lines, so the line is refused and nothing recorded.
    Impossible {
        /// The writer's highest seq before this line (0: not seen yet).
        high: u64,
    },
}

impl SeqVerdict {
    /// False for a line that must not be processed again.
    pub fn is_new(self) -> bool {
        !matches!(self, SeqVerdict::AlreadySeen | SeqVerdict::Impossible { .. })
    }
}

#[derive(Clone, Debug)]
struct Track {
    prefix: u64,
    high: u64,
    holes: VecDeque<(u64, u64)>,
    /// Order of last use, for eviction.
    touched: u64,
}

impl Track {
    fn recompute_prefix(&mut self) {
        self.prefix = self.holes.front().map_or(self.high, |h| h.0 - 1);
    }
}

/// Per-writer sequence tracking. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct SeqBook {
    writers: FxHashMap<Box<str>, Track>,
    clock: u64,
    evicted: u64,
}

impl SeqBook {
    /// Decide about the line `seq` of `writer` and record it.
    pub fn observe(&mut self, writer: &str, seq: u64) -> SeqVerdict {
        self.clock += 1;
        let touched = self.clock;
        let high = self.writers.get(writer).map_or(0, |t| t.high);
        if seq > high && seq - high > MAX_SEQ_GAP {
            return SeqVerdict::Impossible { high };
        }
        let Some(t) = self.writers.get_mut(writer) else {
            self.make_room();
            // Lines 1..seq-1 are a hole: a writer that has them still (it wrote them before it
            // noticed this consumer's restart) re-sends them; its heartbeat closes the rest.
            let holes = if seq > 1 { VecDeque::from([(1, seq - 1)]) } else { VecDeque::new() };
            let prefix = if seq > 1 { 0 } else { seq };
            self.writers.insert(writer.into(), Track { prefix, high: seq, holes, touched });
            return SeqVerdict::FirstSeen { missing: seq.saturating_sub(1) };
        };
        t.touched = touched;
        if seq == 1 && t.prefix >= 1 {
            let after = t.high;
            *t = Track { prefix: 1, high: 1, holes: VecDeque::new(), touched };
            return SeqVerdict::Restarted { after };
        }
        if seq <= t.prefix {
            return SeqVerdict::AlreadySeen;
        }
        if seq <= t.high {
            let Some(i) = t.holes.iter().position(|&(a, b)| (a..=b).contains(&seq)) else {
                return SeqVerdict::AlreadySeen;
            };
            let (a, b) = t.holes[i];
            let mut closed = None;
            match (seq == a, seq == b) {
                (true, true) => {
                    t.holes.remove(i);
                    closed = Some((a, b));
                }
                (true, false) => t.holes[i].0 = seq + 1,
                (false, true) => t.holes[i].1 = seq - 1,
                (false, false) => {
                    t.holes[i].1 = seq - 1;
                    t.holes.insert(i + 1, (seq + 1, b));
                }
            }
            t.recompute_prefix();
            return SeqVerdict::FillsGap { closed };
        }
        let from = t.high + 1; // cannot overflow: seq > high
        t.high = seq;
        if seq == from {
            if t.holes.is_empty() {
                t.prefix = seq;
            }
            return SeqVerdict::InOrder;
        }
        t.holes.push_back((from, seq - 1));
        if t.holes.len() > MAX_HOLES {
            t.holes.pop_front();
        }
        t.recompute_prefix();
        SeqVerdict::AfterGap { from, to: seq - 1 }
    }

    /// The writer can no longer re-send anything below `from`: close the holes under it.
    /// Returns the lines in holes closed this way: `.0` those up to `acked` (an earlier consumer
    /// acknowledged them to the writer, so they were processed there), `.1` the others (lost).
    pub fn retained_from(&mut self, writer: &str, from: u64, acked: u64) -> (u64, u64) {
        let Some(t) = self.writers.get_mut(writer) else { return (0, 0) };
        let (mut known, mut lost) = (0, 0);
        let mut close = |a: u64, b: u64| {
            let k = if a <= acked { b.min(acked) - a + 1 } else { 0 };
            known += k;
            lost += b - a + 1 - k;
        };
        while let Some(&(a, b)) = t.holes.front() {
            if a >= from {
                break;
            }
            if b < from {
                t.holes.pop_front();
                close(a, b);
            } else {
                t.holes[0].0 = from;
                close(a, from - 1);
            }
        }
        t.recompute_prefix();
        (known, lost)
    }

    /// `writer` has sent no line beyond `sent` (its heartbeat says so). A position beyond it
    /// cannot be true: it is replaced by a hole over `1..=sent` (nothing of it is known to be
    /// processed; what the writer re-sends fills it, re-sent lines already stored are
    /// duplicates to the store). Returns the position replaced, or `None` when it was possible.
    pub fn reset_if_ahead(&mut self, writer: &str, sent: u64) -> Option<WriterCursor> {
        let t = self.writers.get_mut(writer).filter(|t| t.high > sent)?;
        let was = WriterCursor { prefix: t.prefix, high: t.high, holes: t.holes.iter().copied().collect() };
        t.high = sent;
        t.holes = if sent > 0 { VecDeque::from([(1, sent)]) } else { VecDeque::new() };
        t.recompute_prefix();
        Some(was)
    }

    /// Writers forgotten to stay within [`MAX_WRITERS`].
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn make_room(&mut self) {
        if self.writers.len() < MAX_WRITERS {
            return;
        }
        if let Some(oldest) = self.writers.iter().min_by_key(|(_, t)| t.touched).map(|(w, _)| w.clone()) {
            self.writers.remove(&oldest);
            self.evicted += 1;
            if self.evicted == 1 || self.evicted % 1000 == 0 {
                log::warn!(
                    "more than {MAX_WRITERS} writer ids seen: forgetting the one silent longest ({oldest}; {} forgotten so far)",
                    self.evicted
                );
            }
        }
    }

    /// Every writer's position.
    pub fn cursors(&self) -> BTreeMap<String, WriterCursor> {
        self.writers
            .iter()
            .map(|(w, t)| (w.to_string(), WriterCursor { prefix: t.prefix, high: t.high, holes: t.holes.iter().copied().collect() }))
            .collect()
    }

    /// Take up positions saved by an earlier consumer (its durable cursor).
    pub fn restore(&mut self, cursors: &BTreeMap<String, WriterCursor>) {
        for (writer, c) in cursors.iter().take(MAX_WRITERS) {
            let mut holes: VecDeque<(u64, u64)> = c.holes.iter().copied().filter(|&(a, b)| a <= b && a > 0 && b <= c.high).take(MAX_HOLES).collect();
            holes.make_contiguous().sort_unstable();
            self.clock += 1;
            let mut t = Track { prefix: c.prefix.min(c.high), high: c.high, holes, touched: self.clock };
            t.recompute_prefix();
            self.writers.insert(writer.as_str().into(), t);
        }
    }
}

/// Why an ack or cursor file cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CursorFileError {
    /// Not a private file of this user's (a symlink, not a regular file, another user's,
    /// writable by others), or it cannot be opened or read.
    #[error(transparent)]
    Private(#[from] PrivateError),
    /// The content is not a cursor file.
    #[error("{path} is not a cursor file: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
}

/// Read an ack or cursor file: a regular file this user owns, not through a symlink.
/// `Ok(None)` when it does not exist.
///
/// # Errors
/// [`CursorFileError::Private`] when the file is not a private file of this user's or cannot be
/// read, [`CursorFileError::Invalid`] when it is not an ack file.
pub fn read_ack_file(path: &Path) -> Result<Option<AckFile>, CursorFileError> {
    let mut file = match crate::private::open_private_file(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(PrivateError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(|source| PrivateError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&text).map(Some).map_err(|source| CursorFileError::Invalid { path: path.to_path_buf(), source })
}

/// Replace the file at `path` with `bytes` atomically (see [`crate::private::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), PrivateError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| PrivateError::WrongType { path: path.to_path_buf(), what: "not a file name" })?;
    let durability = if sync { crate::private::Durability::Synced } else { crate::private::Durability::Cached };
    crate::private::write_atomic(dir, name, bytes, durability)
}

/// A random id for one consumer instance.
fn new_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    format!("{:016x}", h.finish())
}

/// The consumer's side: writes the durable cursor, then the ack file the writers read.
#[derive(Debug)]
pub struct AckPublisher {
    instance: String,
    ack: PathBuf,
    durable: Option<PathBuf>,
    sync: bool,
    min_interval: Duration,
    last_attempt: Option<Instant>,
    published: Option<BTreeMap<String, WriterCursor>>,
    failing: bool,
}

impl AckPublisher {
    /// Publish to [`ack_path`]`(fifo)`; with a journal directory, first to its
    /// [`DURABLE_FILE`] (`sync`: fsync it each time, for `--fsync always`).
    pub fn new(fifo: &Path, journal_dir: Option<&Path>, sync: bool) -> AckPublisher {
        AckPublisher {
            instance: new_instance_id(),
            ack: ack_path(fifo),
            durable: journal_dir.map(|d| d.join(DURABLE_FILE)),
            sync,
            min_interval: Duration::from_millis(50),
            last_attempt: None,
            published: None,
            failing: false,
        }
    }

    /// This consumer instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Publish `cursors` (which must describe only durable lines) when they changed and the last
    /// attempt is at least 50 ms old, or at once with `force`. The caller builds `cursors` only
    /// when [`AckPublisher::due`] says so.
    pub fn publish(&mut self, cursors: BTreeMap<String, WriterCursor>, force: bool) {
        if !force && !self.due() {
            return;
        }
        if self.published.as_ref() == Some(&cursors) && !self.failing {
            return;
        }
        self.last_attempt = Some(Instant::now());
        let file = AckFile { consumer: self.instance.clone(), pid: std::process::id(), writers: cursors };
        let bytes = serde_json::to_vec(&file).expect("serialisable");
        let durable = match &self.durable {
            Some(path) => write_atomic(path, &bytes, self.sync),
            None => Ok(()),
        };
        match durable.and_then(|()| write_atomic(&self.ack, &bytes, false)) {
            Ok(()) => {
                if self.failing {
                    log::warn!("delivery cursor written again to {}", self.ack.display());
                }
                self.failing = false;
                self.published = Some(file.writers);
            }
            Err(e) => {
                if !self.failing {
                    log::error!("delivery cursor: {e}; writers keep their lines until it can be written");
                }
                self.failing = true;
            }
        }
    }

    /// True when a non-forced [`AckPublisher::publish`] would write.
    pub fn due(&self) -> bool {
        self.last_attempt.is_none_or(|t| t.elapsed() >= self.min_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gaps_fills_and_replays() {
        let mut b = SeqBook::default();
        assert_eq!(b.observe("w", 1), SeqVerdict::FirstSeen { missing: 0 });
        assert_eq!(b.observe("w", 2), SeqVerdict::InOrder);
        assert_eq!(b.observe("w", 6), SeqVerdict::AfterGap { from: 3, to: 5 });
        assert_eq!(b.observe("w", 2), SeqVerdict::AlreadySeen);
        assert_eq!(b.observe("w", 6), SeqVerdict::AlreadySeen);
        assert_eq!(b.observe("w", 4), SeqVerdict::FillsGap { closed: None });
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: 2, high: 6, holes: vec![(3, 3), (5, 5)] });
        assert_eq!(b.observe("w", 3), SeqVerdict::FillsGap { closed: Some((3, 3)) });
        assert_eq!(b.observe("w", 5), SeqVerdict::FillsGap { closed: Some((5, 5)) });
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: 6, high: 6, holes: vec![] });
        assert_eq!(b.observe("w", 7), SeqVerdict::InOrder);
        assert_eq!(b.observe("w", 1), SeqVerdict::Restarted { after: 7 });
        assert_eq!(b.observe("v", 10), SeqVerdict::FirstSeen { missing: 9 });
        // A writer that wrote on before noticing this consumer's restart re-sends from seq 1.
        assert_eq!(b.observe("v", 1), SeqVerdict::FillsGap { closed: None });
        assert_eq!(b.observe("v", 11), SeqVerdict::InOrder);
        assert_eq!(b.cursors()["v"], WriterCursor { prefix: 1, high: 11, holes: vec![(2, 9)] });
        assert_eq!(b.retained_from("v", 5, 0), (0, 3));
        assert_eq!(b.cursors()["v"], WriterCursor { prefix: 4, high: 11, holes: vec![(5, 9)] });
    }

    #[test]
    fn an_impossible_seq_is_refused_and_recorded_nowhere() {
        let mut b = SeqBook::default();
        // The forged heartbeat of issue 22: seq u64::MAX from a writer not seen yet.
        assert_eq!(b.observe("f", u64::MAX), SeqVerdict::Impossible { high: 0 });
        assert!(b.cursors().is_empty(), "nothing recorded");
        assert_eq!(b.observe("f", MAX_SEQ_GAP + 1), SeqVerdict::Impossible { high: 0 });
        assert_eq!(b.observe("f", MAX_SEQ_GAP), SeqVerdict::FirstSeen { missing: MAX_SEQ_GAP - 1 });
        b.observe("w", 1);
        assert_eq!(b.observe("w", MAX_SEQ_GAP + 2), SeqVerdict::Impossible { high: 1 });
        assert_eq!(b.observe("w", MAX_SEQ_GAP + 1), SeqVerdict::AfterGap { from: 2, to: MAX_SEQ_GAP });
        // Near the top of u64 nothing overflows either.
        let mut b = SeqBook::default();
        b.restore(&BTreeMap::from([("w".to_owned(), WriterCursor { prefix: u64::MAX - 10, high: u64::MAX - 10, holes: vec![] })]));
        assert_eq!(b.observe("w", u64::MAX), SeqVerdict::AfterGap { from: u64::MAX - 9, to: u64::MAX - 1 });
        assert_eq!(b.observe("w", u64::MAX), SeqVerdict::AlreadySeen, "a repeated u64::MAX is a re-send");
        assert_eq!(b.observe("w", u64::MAX - 1), SeqVerdict::FillsGap { closed: None });
        assert_eq!(b.retained_from("w", u64::MAX, 0), (0, 8));
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: u64::MAX, high: u64::MAX, holes: vec![] });
    }

    #[test]
    fn a_position_beyond_what_the_writer_sent_becomes_a_hole() {
        let mut b = SeqBook::default();
        b.restore(&BTreeMap::from([("w".to_owned(), WriterCursor { prefix: 10_000, high: 10_000, holes: vec![] })]));
        assert_eq!(b.observe("w", 50), SeqVerdict::AlreadySeen, "the cursor claims it");
        assert_eq!(b.reset_if_ahead("w", 10_000), None, "possible");
        assert_eq!(b.reset_if_ahead("w", 60).map(|c| c.high), Some(10_000));
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: 0, high: 60, holes: vec![(1, 60)] });
        assert_eq!(b.observe("w", 50), SeqVerdict::FillsGap { closed: None }, "a re-send is taken now");
        assert_eq!(b.observe("w", 61), SeqVerdict::InOrder);
        assert_eq!(b.reset_if_ahead("unknown", 1), None);
    }

    #[test]
    fn retained_from_closes_holes_below_it() {
        let mut b = SeqBook::default();
        b.observe("w", 1);
        b.observe("w", 5); // hole 2..=4
        b.observe("w", 10); // hole 6..=9
        assert_eq!(b.retained_from("w", 3, 0), (0, 1));
        assert_eq!(b.cursors()["w"].holes, vec![(3, 4), (6, 9)]);
        // Up to `acked` an earlier consumer acknowledged them: closed, not lost.
        assert_eq!(b.retained_from("w", 8, 6), (2 + 1, 1));
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: 7, high: 10, holes: vec![(8, 9)] });
        assert_eq!(b.retained_from("w", 11, 100), (2, 0));
        assert_eq!(b.cursors()["w"], WriterCursor { prefix: 10, high: 10, holes: vec![] });
    }

    #[test]
    fn restored_positions_skip_what_was_processed_and_fill_holes() {
        let mut b = SeqBook::default();
        let saved = BTreeMap::from([("w".to_owned(), WriterCursor { prefix: 100, high: 200, holes: vec![(101, 150)] })]);
        b.restore(&saved);
        assert_eq!(b.observe("w", 100), SeqVerdict::AlreadySeen);
        assert_eq!(b.observe("w", 120), SeqVerdict::FillsGap { closed: None });
        assert_eq!(b.observe("w", 151), SeqVerdict::AlreadySeen);
        assert_eq!(b.observe("w", 201), SeqVerdict::InOrder);
    }

    #[test]
    fn writers_and_holes_are_bounded() {
        let mut b = SeqBook::default();
        for i in 0..MAX_WRITERS + 10 {
            b.observe(&format!("w{i}"), 1);
        }
        assert_eq!(b.cursors().len(), MAX_WRITERS);
        assert_eq!(b.evicted(), 10);
        assert!(!b.cursors().contains_key("w0"), "the one silent longest goes first");
        for n in 0..(MAX_HOLES as u64 + 5) {
            b.observe("h", 1 + 2 * n);
        }
        assert_eq!(b.cursors()["h"].holes.len(), MAX_HOLES);
    }

    #[test]
    fn publish_writes_durable_then_ack_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("bars.fifo");
        let journal = dir.path().join("journal");
        std::fs::create_dir(&journal).unwrap();
        let mut p = AckPublisher::new(&fifo, Some(&journal), false);
        let mut b = SeqBook::default();
        b.observe("w", 1);
        p.publish(b.cursors(), true);
        let ack = read_ack_file(&ack_path(&fifo)).unwrap().unwrap();
        assert_eq!(ack.consumer, p.instance());
        assert_eq!(ack.writers["w"].prefix, 1);
        assert_eq!(read_ack_file(&journal.join(DURABLE_FILE)).unwrap().unwrap(), ack);
        std::fs::remove_file(ack_path(&fifo)).unwrap();
        p.publish(b.cursors(), true);
        assert!(!ack_path(&fifo).exists(), "unchanged cursors are not rewritten");
        // A symlink planted at the file's name is replaced, never followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, ack_path(&fifo)).unwrap();
        b.observe("w", 2);
        p.publish(b.cursors(), true);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(read_ack_file(&ack_path(&fifo)).unwrap().unwrap().writers["w"].prefix, 2);
    }
}
