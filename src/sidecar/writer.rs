//! The sidecar's end of the pipe (FIFO writer), in Rust so that a full-market minute costs the
//! sidecar microseconds, not milliseconds.
//!
//! Producers call [`FifoWriter::submit_bar`] / [`FifoWriter::submit_connection_state`] from any thread: the
//! bar is validated, appended to a bounded backlog under a short lock, and the call returns. The
//! writer's own thread encodes and writes. Nothing a producer calls waits for the consumer.
//!
//! - The FIFO is opened `O_WRONLY|O_NONBLOCK|O_NOFOLLOW`; no reader yet (`ENXIO`) means retry with
//!   backoff, and what was opened is checked (a FIFO this user owns) before anything is written.
//! - `F_SETPIPE_SZ` raises the pipe buffer so a slow consumer absorbs bursts.
//! - Whole lines are packed into writes of at most `PIPE_BUF` (4096) bytes: atomic, so lines never
//!   interleave with another writer's.
//! - Pipe full (`EAGAIN`): the lines stay first in the backlog; the thread polls for room.
//! - Every line written is kept until the consumer acknowledges it (the ack file beside the FIFO,
//!   read every 100 ms; see [`crate::consumer::cursor`]), up to [`WriterOptions::unacked_bytes`]. When the
//!   ack file names a new consumer instance, or a reader returns after `EPIPE`, everything after
//!   the consumer's acknowledged position is re-sent first, byte for byte with its original
//!   `seq`: lines a dead consumer read but never journaled, or that died in its pipe, arrive
//!   exactly once. Past the bound the oldest unacknowledged lines are forgotten, counted and
//!   reported (a consumer restart would then report them as a gap).
//! - The ack file also lists the consumer's holes in this writer's lines (a line lost on the way,
//!   e.g. merged with a foreign process's unfinished line). The kept chunks covering a hole are
//!   re-sent, byte for byte, at once; again only once the consumer has read past that re-send
//!   and still lists the hole (or, with nothing written since, after 5 s): no storm when the
//!   consumer is slow. Counted in `hole_resends`.
//! - A heartbeat is written alone and re-sent written anew (same `seq`), so what it says is
//!   always current: `sent` (the highest seq written), `acked`, `retained_from`. The consumer
//!   trusts no position of this writer beyond `sent` (docs/ARCHITECTURE.md, "Delivery").
//! - Backlog full: the oldest line is dropped, counted, and a `disconnected` status line tells the
//!   consumer (the sidecar backfills the gap over REST). Heartbeats carry the backlog and the drop
//!   count.
//!
//! ```no_run
//! use barbridge::sidecar::writer::{FifoWriter, WriterOptions};
//! use barbridge::{Bar, BarKind};
//! let writer = FifoWriter::new("/run/user/1000/barbridge/bars.fifo", WriterOptions::default());
//! writer.start()?;
//! let bar = Bar { timestamp_ms: 1_759_930_080_000, open: 1.0, high: 2.0, low: 0.5, close: 1.5,
//!                 volume: 10.0, vwap: Some(1.2), trade_count: Some(3) };
//! writer.submit_bar("SPY", bar, BarKind::Bar, None)?;
//! writer.close(std::time::Duration::from_secs(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A process that has not ignored `SIGPIPE` is killed by a write to a pipe without reader; Rust
//! binaries and Python ignore it by default.

mod connection;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use thiserror::Error;

use crate::bar::{Bar, BarKind, Source};
use crate::fifo::{prepare_fifo, FifoError};
use crate::wire::trading::TradingStatus;
use crate::wire::{self, WireError};
use connection::Connection;

/// Lines taken from the backlog per `write()` (at most `PIPE_BUF` bytes of them are written).
const WRITE_BATCH: usize = 64;
/// A hole's chunks are re-sent again after this long even if the consumer has not read past
/// the last re-send (only when nothing was written since: heartbeats off and no bars).
const HOLE_RESEND_RETRY: Duration = Duration::from_secs(5);
/// The longest a status line's detail may be, in characters.
const MAX_DETAIL_CHARS: usize = 1000;
/// ... and in bytes, so that a status line always fits one atomic write of `PIPE_BUF`.
const MAX_DETAIL_BYTES: usize = 3000;
/// Status states the consumer knows (the wire contract, docs/ARCHITECTURE.md).
pub const STATES: [&str; 6] = ["connected", "subscribed", "disconnected", "reconnecting", "auth_failed", "stale"];

/// How a [`FifoWriter`] behaves.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// This writer's id on every line (`"writer"`), so the consumer tracks its `seq` separately.
    pub writer: String,
    /// Lines kept while the consumer is away or slow; beyond it the oldest are dropped.
    pub backlog: usize,
    /// Interval of heartbeat lines; `None` sends none.
    pub heartbeat: Option<Duration>,
    /// Pipe buffer to ask for (`F_SETPIPE_SZ`; halved until the kernel accepts it).
    pub pipe_size: usize,
    /// Bytes of written lines kept until the consumer acknowledges them, for re-sending after a
    /// consumer restart. The default (64 MiB, about 380,000 lines) covers a full 1 MiB pipe, the
    /// consumer's 1 MiB read batch and more than a second of a 300,000 lines/s flood.
    pub unacked_bytes: usize,
    /// How often the consumer's ack file is read.
    pub ack_poll: Duration,
    /// Longest wait between attempts to open a FIFO that has no reader.
    pub open_backoff_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            writer: default_writer_id(),
            backlog: 100_000,
            heartbeat: Some(Duration::from_secs(5)),
            pipe_size: 1 << 20,
            unacked_bytes: 64 << 20,
            ack_poll: Duration::from_millis(100),
            open_backoff_max: Duration::from_secs(1),
        }
    }
}

impl WriterOptions {
    /// Check every option: a backlog of 0 would drop every line, a pipe below one page cannot be
    /// asked for, a zero ack poll would spin.
    ///
    /// # Errors
    /// [`WriterError::InvalidOption`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), WriterError> {
        let bad = |name, value: String, rule| Err(WriterError::InvalidOption { name, value, rule });
        if self.backlog == 0 {
            return bad("backlog", "0".into(), "at least 1 line");
        }
        if !(4096..=1 << 30).contains(&self.pipe_size) {
            return bad("pipe_size", self.pipe_size.to_string(), "between 4096 and 2^30 bytes");
        }
        if self.ack_poll.is_zero() {
            return bad("ack_poll", format!("{:?}", self.ack_poll), "longer than zero");
        }
        Ok(())
    }
}

/// A writer id unique to this process: the pid and the start time (base 36 milliseconds), so
/// that a restarted writer never continues an earlier one's sequence.
pub fn default_writer_id() -> String {
    let mut t = now_ms().max(0) as u64;
    let mut digits = Vec::new();
    while t > 0 {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(t % 36) as usize]);
        t /= 36;
    }
    digits.reverse();
    format!("{}-{}", std::process::id(), String::from_utf8(digits).expect("ASCII"))
}

/// Counters of a [`FifoWriter`] (monotonic unless said otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Lines written for the first time (re-sends are counted in `replayed`).
    pub lines_written: u64,
    /// Bar lines written.
    pub bars_written: u64,
    /// Lines dropped because the backlog was full.
    pub dropped_overflow: u64,
    /// Bars refused by the protocol's rules (never queued).
    pub dropped_invalid: u64,
    /// Times a reader was found and the FIFO opened.
    pub reader_opens: u64,
    /// Times the reader went away (`EPIPE`).
    pub reader_lost: u64,
    /// Writes that found the pipe full (`EAGAIN`).
    pub pipe_full: u64,
    /// Lines re-sent to a new consumer instance (or a reader back after `EPIPE`).
    pub replayed: u64,
    /// Lines re-sent because the consumer's ack listed them in a hole (the chunks holding them
    /// were re-sent whole; this counts the hole's lines).
    pub hole_resends: u64,
    /// Highest seq the consumer has acknowledged (0: none yet, or no acknowledging consumer).
    pub acked: u64,
    /// Lines written and not yet acknowledged (a gauge).
    pub unacked: u64,
    /// Unacknowledged lines forgotten because [`WriterOptions::unacked_bytes`] was full.
    pub unacked_evicted: u64,
}

/// Why the writer stopped before it was asked to. One sentence a user can act on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriterError {
    /// The FIFO is not safe or not usable (symlink, not a FIFO, someone else's, cannot be created).
    #[error(transparent)]
    Unusable(#[from] FifoError),
    /// A write failed with an error other than a full pipe or a vanished reader.
    #[error("writing to {path} failed: {source}")]
    Write {
        /// The FIFO.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The writer id is not usable on the wire.
    #[error("writer id {writer:?} is not 1-64 printable ASCII characters")]
    InvalidWriterId {
        /// The id given.
        writer: String,
    },
    /// An option is out of range.
    #[error("writer option {name} is {value}; it must be {rule}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
    /// The writer thread panicked (a bug; the backlog is lost).
    #[error("the FIFO writer thread panicked")]
    Panicked,
}

/// Receives what the writer has to say (connections, losses, drops), with a level. The default
/// sends it to the `log` crate; the Python extension hands it to Python's `logging`.
pub type Reporter = Arc<dyn Fn(log::Level, String) + Send + Sync>;

#[derive(Debug)]
struct BarItem {
    symbol: Box<str>,
    bar: Bar,
    kind: BarKind,
    source: Option<Source>,
    received_ms: Option<i64>,
}

#[derive(Debug)]
enum Item {
    Bar(BarItem),
    ConnectionState { ts_ms: i64, state: &'static str, detail: String },
    TradingStatus(Box<TradingStatus>),
    MinuteClosed(Box<crate::wire::minute::MinuteClosedPart>),
    MinuteQuiet(i64, Box<[String]>),
    Heartbeat,
}

/// Set by [`FifoWriter::close`].
#[derive(Default)]
struct StopRequest {
    stop: bool,
    flush_deadline: Option<Instant>,
}

#[derive(Default)]
struct Counters {
    lines_written: AtomicU64,
    bars_written: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_invalid: AtomicU64,
    reader_opens: AtomicU64,
    reader_lost: AtomicU64,
    pipe_full: AtomicU64,
    replayed: AtomicU64,
    hole_resends: AtomicU64,
    acked: AtomicU64,
    unacked: AtomicU64,
    unacked_evicted: AtomicU64,
}

struct Shared {
    path: PathBuf,
    options: WriterOptions,
    /// The backlog. A channel, not a locked deque: a producer submitting bar after bar would
    /// otherwise starve the writer thread of the lock (measured: writes stalled for 100+ ms).
    /// Producers also receive from it, to drop the oldest line when the backlog is full.
    lines: (Sender<Item>, Receiver<Item>),
    /// Lines submitted and not yet written (or dropped): the backlog's size.
    queued: AtomicUsize,
    stop: Mutex<StopRequest>,
    /// Wakes the writer thread for a stop request.
    wake: (Sender<()>, Receiver<()>),
    counters: Counters,
    reader_present: AtomicBool,
    report: Reporter,
}

impl Shared {
    fn enqueue(&self, item: Item) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.options.backlog {
            // Keep the newest data: the oldest minutes can be backfilled over REST later.
            if self.lines.1.try_recv().is_ok() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                bump(&self.counters.dropped_overflow, 1);
            }
        }
        let _ = self.lines.0.send(item); // cannot fail: `self` holds a receiver
    }

    /// Asked to stop, and nothing left to write or no time left to write it.
    fn stopping_and_done(&self) -> bool {
        let request = lock(&self.stop);
        request.stop && (self.queued.load(Ordering::Relaxed) == 0 || request.flush_deadline.is_some_and(|d| Instant::now() >= d))
    }

    fn flush_time_up(&self) -> bool {
        lock(&self.stop).flush_deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn stop_requested(&self) -> bool {
        lock(&self.stop).stop
    }
}

/// The sidecar's FIFO writer. See the [module documentation](self).
pub struct FifoWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Result<(), WriterError>>>>,
    /// How the thread ended, once joined: shared by every later `join` (hence the `Arc`).
    outcome: Mutex<Option<Result<(), Arc<WriterError>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn bump(counter: &AtomicU64, by: u64) -> u64 {
    counter.fetch_add(by, Ordering::Relaxed) + by
}

impl FifoWriter {
    /// A writer for the FIFO at `path`. Nothing is opened until [`FifoWriter::start`]; bars
    /// submitted before it wait in the backlog.
    pub fn new(path: impl Into<PathBuf>, options: WriterOptions) -> FifoWriter {
        FifoWriter::with_reporter(path, options, Arc::new(|level, message| log::log!(level, "{message}")))
    }

    /// [`FifoWriter::new`], with what the writer reports going to `report` instead of `log`.
    pub fn with_reporter(path: impl Into<PathBuf>, options: WriterOptions, report: Reporter) -> FifoWriter {
        let shared = Shared {
            path: path.into(),
            options,
            lines: crossbeam_channel::unbounded(),
            queued: AtomicUsize::new(0),
            stop: Mutex::new(StopRequest::default()),
            wake: crossbeam_channel::bounded(1),
            counters: Counters::default(),
            reader_present: AtomicBool::new(false),
            report,
        };
        FifoWriter { shared: Arc::new(shared), thread: Mutex::new(None), outcome: Mutex::new(None) }
    }

    /// Create or check the FIFO now (a private directory, a FIFO this user owns), so that a
    /// configuration error surfaces at start-up rather than on the writer thread.
    ///
    /// # Errors
    /// [`WriterError::InvalidWriterId`] or [`WriterError::InvalidOption`] for bad options; [`WriterError::Unusable`] when the FIFO or its directory cannot be used.
    pub fn prepare(&self) -> Result<(), WriterError> {
        let writer = &self.shared.options.writer;
        if wire::validate_writer(writer).is_err() {
            return Err(WriterError::InvalidWriterId { writer: writer.clone() });
        }
        self.shared.options.validate()?;
        Ok(prepare_fifo(&self.shared.path)?)
    }

    /// Prepare the FIFO and start the writer thread (once; later calls do nothing).
    ///
    /// # Errors
    /// What [`FifoWriter::prepare`] returns, or [`WriterError::Write`] when the thread cannot be spawned.
    pub fn start(&self) -> Result<(), WriterError> {
        let mut thread = lock(&self.thread);
        if thread.is_some() || lock(&self.outcome).is_some() {
            return Ok(());
        }
        self.prepare()?;
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("fifo-writer".into())
            .spawn(move || {
                let result = Connection::new(&shared).run();
                shared.reader_present.store(false, Ordering::Relaxed);
                if let Err(e) = &result {
                    (shared.report)(log::Level::Error, format!("FIFO writer stopped: {e}"));
                }
                result
            })
            .map_err(|source| WriterError::Write { path: self.shared.path.clone(), source })?;
        *thread = Some(handle);
        Ok(())
    }

    /// Queue one bar. A bar the protocol's rules refuse is counted, reported and not queued.
    ///
    /// # Errors
    /// The [`WireError`] of a bar the protocol's rules refuse (counted and reported; nothing queued).
    pub fn submit_bar(&self, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>) -> Result<(), WireError> {
        self.submit_bar_received(symbol, bar, kind, source, None)
    }

    /// [`FifoWriter::submit_bar`] stamped with when the sidecar received it (`received_ms`, UTC
    /// epoch ms: the consumer's latency histograms, [`crate::consumer::latency`]).
    ///
    /// # Errors
    /// The [`WireError`] of a bar the protocol's rules refuse (counted and reported; nothing queued).
    pub fn submit_bar_received(
        &self,
        symbol: &str,
        bar: Bar,
        kind: BarKind,
        source: Option<Source>,
        received_ms: Option<i64>,
    ) -> Result<(), WireError> {
        if let Err(e) = wire::validate(symbol, &bar) {
            self.reject(symbol, &e);
            return Err(e);
        }
        self.shared.enqueue(Item::Bar(BarItem { symbol: symbol.into(), bar, kind, source, received_ms }));
        Ok(())
    }

    /// Count and report a bar that never became one (refused by the rules, or a producer could
    /// not even read it). Reported in full for the first 10, then every 1,000th, with the total.
    pub fn reject(&self, symbol: &str, error: &WireError) {
        let n = bump(&self.shared.counters.dropped_invalid, 1);
        if n <= 10 || n % 1000 == 0 {
            (self.shared.report)(log::Level::Warn, format!("dropping invalid bar {symbol:?}: {error} ({n} invalid bar(s) dropped so far)"));
        }
    }

    /// Queue a status line (`state` one of [`STATES`]; `detail` is cut to 1,000 characters and
    /// 3,000 bytes).
    ///
    /// # Errors
    /// [`UnknownState`] for a `state` not in [`STATES`].
    pub fn submit_connection_state(&self, state: &str, detail: &str) -> Result<(), UnknownState> {
        let state = *STATES.iter().find(|s| **s == state).ok_or_else(|| UnknownState(state.to_owned()))?;
        // At most 1,000 characters and 3,000 bytes: the line must fit one atomic write.
        let mut end = 0;
        for (n, (i, c)) in detail.char_indices().enumerate() {
            if n == MAX_DETAIL_CHARS || i + c.len_utf8() > MAX_DETAIL_BYTES {
                break;
            }
            end = i + c.len_utf8();
        }
        let detail = detail[..end].to_owned();
        self.shared.enqueue(Item::ConnectionState { ts_ms: now_ms(), state, detail });
        Ok(())
    }

    /// Queue a `trading_status` line (a halt, a resumption: [`crate::trading`]).
    ///
    /// # Errors
    /// The [`WireError`] of a status the protocol's rules refuse (counted and reported; nothing queued).
    pub fn submit_trading_status(&self, status: TradingStatus) -> Result<(), WireError> {
        if let Err(e) = status.validate() {
            self.reject(&status.symbol, &e);
            return Err(e);
        }
        self.shared.enqueue(Item::TradingStatus(Box::new(status)));
        Ok(())
    }

    /// Queue a closed minute as its `minute_closed` line(s) ([`crate::wire::minute`]), after every
    /// line queued before (the minute's bars).
    pub fn submit_minute_closed(&self, minute: &crate::wire::minute::MinuteClosed) {
        for part in crate::wire::minute::split(minute) {
            self.shared.enqueue(Item::MinuteClosed(Box::new(part)));
        }
    }

    /// Queue quiet marks of a closed minute as `minute_quiet` line(s) ([`crate::wire::minute`]).
    pub fn submit_minute_quiet(&self, minute_ms: i64, quiet: &[String]) {
        for list in crate::wire::minute::split_quiet(quiet) {
            self.shared.enqueue(Item::MinuteQuiet(minute_ms, list.into_boxed_slice()));
        }
    }

    /// Lines waiting to be written.
    pub fn backlog(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// True while the FIFO is open with a reader on the other end.
    pub fn reader_present(&self) -> bool {
        self.shared.reader_present.load(Ordering::Relaxed)
    }

    /// A copy of the writer's counters.
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            lines_written: get(&c.lines_written),
            bars_written: get(&c.bars_written),
            dropped_overflow: get(&c.dropped_overflow),
            dropped_invalid: get(&c.dropped_invalid),
            reader_opens: get(&c.reader_opens),
            reader_lost: get(&c.reader_lost),
            pipe_full: get(&c.pipe_full),
            replayed: get(&c.replayed),
            hole_resends: get(&c.hole_resends),
            acked: get(&c.acked),
            unacked: get(&c.unacked),
            unacked_evicted: get(&c.unacked_evicted),
        }
    }

    /// The FIFO written to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The id stamped on every line (`writer`), unique per writer process.
    pub fn writer_id(&self) -> &str {
        &self.shared.options.writer
    }

    /// True once the writer thread has ended (closed, or stopped by an error).
    pub fn finished(&self) -> bool {
        lock(&self.outcome).is_some() || lock(&self.thread).as_ref().is_some_and(|t| t.is_finished())
    }

    /// Wait for the writer thread to end and return why it ended: `Ok` when it was closed, the
    /// error when it stopped by itself ([`WriterError::Unusable`]: the FIFO itself, a problem the
    /// user must fix). `None` when it was never started.
    pub fn join(&self) -> Option<Result<(), Arc<WriterError>>> {
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let outcome = match handle.join() {
                Ok(result) => result.map_err(Arc::new),
                Err(_) => Err(Arc::new(WriterError::Panicked)),
            };
            *lock(&self.outcome) = Some(outcome);
        }
        lock(&self.outcome).clone()
    }

    /// Stop the writer, first trying for `flush_timeout` to deliver what is pending.
    /// Returns how it ended (see [`FifoWriter::join`]).
    pub fn close(&self, flush_timeout: Duration) -> Option<Result<(), Arc<WriterError>>> {
        {
            let mut request = lock(&self.shared.stop);
            if !request.stop {
                request.stop = true;
                request.flush_deadline = Some(Instant::now() + flush_timeout);
            }
        }
        let _ = self.shared.wake.0.try_send(());
        self.join()
    }
}

impl Drop for FifoWriter {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

/// A status state the protocol does not know.
#[derive(Debug, Error)]
#[error("unknown status state {0:?} (expected one of {STATES:?})")]
pub struct UnknownState(pub String);
