//! The sidecar's end of the pipe (FIFO writer), in Rust so that a full-market minute costs the
//! sidecar microseconds, not milliseconds.
//!
//! Producers call [`FifoWriter::submit_bar`] / [`FifoWriter::submit_status`] from any thread: the
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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use thiserror::Error;

use crate::bar::{Bar, BarKind, Source};
use crate::fifo::{check_opened, prepare_fifo, FifoError, PIPE_BUF};
use crate::wire::trading::TradingStatus;
use crate::wire::{self, Envelope, WireError};

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
}

#[derive(Debug)]
enum Item {
    Bar(BarItem),
    Status { ts_ms: i64, state: &'static str, detail: String },
    TradingStatus(Box<TradingStatus>),
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
        if let Err(e) = wire::validate(symbol, &bar) {
            self.reject(symbol, &e);
            return Err(e);
        }
        self.shared.enqueue(Item::Bar(BarItem { symbol: symbol.into(), bar, kind, source }));
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
    pub fn submit_status(&self, state: &str, detail: &str) -> Result<(), UnknownState> {
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
        self.shared.enqueue(Item::Status { ts_ms: now_ms(), state, detail });
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

/// Lines written in one `write()`, kept until the consumer acknowledges them.
struct Chunk {
    first: u64,
    last: u64,
    /// The bytes written; empty for a heartbeat, which is written anew when re-sent.
    bytes: Box<[u8]>,
    heartbeat: bool,
    /// The last time it was re-sent, and the writer's highest seq then (a consumer whose
    /// highest seq of ours is beyond it has read past that re-send).
    resent: Option<(Instant, u64)>,
    /// Waiting in the hole queue.
    queued: bool,
}

/// What one `write()` of at most `PIPE_BUF` bytes did.
enum Wrote {
    All,
    /// The pipe is full (`EAGAIN`): try again when it has room.
    Full,
    /// The reader is gone (`EPIPE`).
    ReaderGone,
}

/// The writer thread's side: the open FIFO, the sequence number and the unacknowledged lines.
struct Connection<'a> {
    s: &'a Shared,
    fd: Option<File>,
    seq: u64,
    /// Written lines not yet acknowledged by the consumer, oldest first.
    unacked: VecDeque<Chunk>,
    unacked_bytes: usize,
    /// Everything up to this seq is durable at the consumer.
    acked: u64,
    /// The consumer instance the ack file last named.
    consumer: Option<String>,
    /// Re-send the unacknowledged lines after this seq before anything new.
    resend_after: Option<u64>,
    /// Chunks to re-send for the consumer's holes: (the chunk's first seq, the hole's lines in it).
    hole_queue: VecDeque<(u64, u64)>,
    /// The consumer instance whose ack put this writer beyond what it has sent (reported once).
    ahead_reported: Option<String>,
    next_ack_check: Instant,
    /// An acknowledging consumer has been seen (without one, forgetting old lines is normal).
    acks_seen: bool,
    ack_error_reported: bool,
    evictions_reported: u64,
    lost: bool,
    overflow_reported: u64,
    /// Lines that go before the backlog's: given back after a failed write, and the overflow
    /// notice.
    front: VecDeque<Item>,
    batch: Vec<Item>,
    buf: Vec<u8>,
}

/// What [`encode`] puts into a heartbeat besides the envelope.
#[derive(Clone, Copy)]
struct HeartbeatInfo {
    backlog: usize,
    dropped: u64,
    retained_from: u64,
    /// The highest seq written, this heartbeat included.
    sent: u64,
    acked: u64,
}

impl<'a> Connection<'a> {
    fn new(s: &'a Shared) -> Connection<'a> {
        Connection {
            s,
            fd: None,
            seq: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            acked: 0,
            consumer: None,
            resend_after: None,
            hole_queue: VecDeque::new(),
            ahead_reported: None,
            next_ack_check: Instant::now(),
            acks_seen: false,
            ack_error_reported: false,
            evictions_reported: 0,
            lost: false,
            overflow_reported: 0,
            front: VecDeque::new(),
            batch: Vec::with_capacity(WRITE_BATCH),
            buf: Vec::with_capacity(PIPE_BUF + 512),
        }
    }

    fn say(&self, level: log::Level, message: String) {
        (self.s.report)(level, message)
    }

    fn run(&mut self) -> Result<(), WriterError> {
        let mut backoff = Duration::from_millis(10);
        let heartbeat = self.s.options.heartbeat.filter(|d| !d.is_zero());
        let mut next_heartbeat = heartbeat.map(|d| Instant::now() + d);
        let result = loop {
            // A re-send in progress is finished before stopping, unless the flush time is up.
            if self.s.stopping_and_done() && (self.resend_after.is_none() || self.s.flush_time_up()) {
                break Ok(());
            }
            if self.fd.is_none() {
                match self.open() {
                    Err(e) => break Err(e),
                    Ok(true) => {
                        backoff = Duration::from_millis(10);
                        self.check_acks(true);
                        if self.lost && self.resend_after.is_none() {
                            // The reader came back and published no new instance (it does not
                            // acknowledge): re-send everything not acknowledged.
                            self.start_resend(self.acked, "a reader returned");
                        }
                        self.lost = false;
                        next_heartbeat = heartbeat.map(|_| Instant::now()); // introduce ourselves
                    }
                    Ok(false) => {
                        // No reader yet (when stopping: until the flush deadline, checked above).
                        let wait = if self.s.stop_requested() { backoff.min(Duration::from_millis(50)) } else { backoff };
                        let _ = self.s.wake.1.recv_timeout(wait);
                        backoff = (backoff * 2).min(self.s.options.open_backoff_max.max(Duration::from_millis(10)));
                        continue;
                    }
                }
            }
            self.check_acks(false);
            if self.resend_after.is_some() {
                if let Err(e) = self.resend_next() {
                    break Err(e);
                }
                continue;
            }
            if !self.hole_queue.is_empty() {
                if let Err(e) = self.resend_hole() {
                    break Err(e);
                }
                continue;
            }
            self.report_overflow();
            let now = Instant::now();
            if let (Some(due), Some(every)) = (next_heartbeat, heartbeat) {
                if now >= due {
                    next_heartbeat = Some(now + every);
                    // Not subject to the backlog's bound: it must not push out a bar.
                    self.s.queued.fetch_add(1, Ordering::Relaxed);
                    let _ = self.s.lines.0.send(Item::Heartbeat);
                }
            }
            let backlog = self.s.queued.load(Ordering::Relaxed);
            while self.batch.len() < WRITE_BATCH {
                let Some(item) = self.front.pop_front().or_else(|| self.s.lines.1.try_recv().ok()) else { break };
                self.batch.push(item);
            }
            if self.batch.is_empty() {
                if self.s.stop_requested() {
                    break Ok(());
                }
                let wait = next_heartbeat
                    .map_or(Duration::from_millis(500), |due| due.saturating_duration_since(now))
                    .min(self.s.options.ack_poll.max(Duration::from_millis(1)));
                crossbeam_channel::select! {
                    recv(self.s.lines.1) -> item => self.front.extend(item.ok()),
                    recv(self.s.wake.1) -> _ => {}
                    default(wait) => {}
                }
                continue;
            }
            if let Err(e) = self.write_batch(backlog) {
                break Err(e);
            }
        };
        self.fd = None;
        result
    }

    /// One `write()` of `self.buf` (at most `PIPE_BUF` bytes: atomic).
    fn write_buf(&mut self) -> Result<Wrote, WriterError> {
        let fd = self.fd.as_mut().expect("writes happen with the FIFO open");
        let written = loop {
            match fd.write(&self.buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == self.buf.len() => Ok(Wrote::All),
            Ok(n) => {
                // Cannot happen for at most PIPE_BUF bytes; never silent if it does.
                let source = io::Error::other(format!("short write of {n} of {} bytes", self.buf.len()));
                Err(WriterError::Write { path: self.s.path.clone(), source })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bump(&self.s.counters.pipe_full, 1);
                let fd = self.fd.as_ref().expect("open");
                let _ = poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)], PollTimeout::from(100u16));
                Ok(Wrote::Full)
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                bump(&self.s.counters.reader_lost, 1);
                self.fd = None;
                self.s.reader_present.store(false, Ordering::Relaxed);
                self.lost = true;
                let (pending, unacked) = (self.s.queued.load(Ordering::Relaxed), self.unacked_lines());
                self.say(
                    log::Level::Warn,
                    format!("consumer went away (EPIPE); keeping {pending} queued and {unacked} unacknowledged line(s) until it returns"),
                );
                Ok(Wrote::ReaderGone)
            }
            Err(source) => Err(WriterError::Write { path: self.s.path.clone(), source }),
        }
    }

    /// Encode the front of the batch into at most `PIPE_BUF` bytes and write it in one call;
    /// whatever was not written goes back to the front of the backlog.
    fn write_batch(&mut self, backlog: usize) -> Result<(), WriterError> {
        self.buf.clear();
        let writer = self.s.options.writer.as_str();
        let info = self.heartbeat_info(backlog, self.seq + 1);
        let mut taken = 0;
        let mut heartbeat = false;
        for item in &self.batch {
            // A heartbeat goes alone, so that it can be re-sent written anew.
            heartbeat = matches!(item, Item::Heartbeat);
            if heartbeat && taken > 0 {
                heartbeat = false;
                break;
            }
            let start = self.buf.len();
            let seq = self.seq + 1 + taken as u64;
            encode(&mut self.buf, item, seq, writer, info);
            if taken > 0 && self.buf.len() > PIPE_BUF {
                self.buf.truncate(start);
                break;
            }
            taken += 1;
            if heartbeat {
                break;
            }
        }
        match self.write_buf()? {
            Wrote::All => {
                let first = self.seq + 1;
                self.seq += taken as u64;
                bump(&self.s.counters.lines_written, taken as u64);
                self.s.queued.fetch_sub(taken, Ordering::Relaxed);
                let rest = self.batch.split_off(taken);
                let bars = self.batch.drain(..).filter(|item| matches!(item, Item::Bar(_))).count();
                bump(&self.s.counters.bars_written, bars as u64);
                self.give_back(rest);
                let bytes = if heartbeat { Box::default() } else { self.buf.as_slice().into() };
                self.keep_unacked(Chunk { first, last: self.seq, bytes, heartbeat, resent: None, queued: false });
            }
            Wrote::Full | Wrote::ReaderGone => {
                let rest = std::mem::take(&mut self.batch);
                self.give_back(rest);
            }
        }
        Ok(())
    }

    /// Keep a written chunk until it is acknowledged; forget the oldest past the bound.
    fn keep_unacked(&mut self, chunk: Chunk) {
        self.unacked_bytes += chunk.bytes.len();
        self.unacked.push_back(chunk);
        let mut evicted = 0;
        while self.unacked_bytes > self.s.options.unacked_bytes && self.unacked.len() > 1 {
            let old = self.unacked.pop_front().expect("len > 1");
            self.unacked_bytes -= old.bytes.len();
            if old.last > self.acked {
                evicted += old.last - old.first.max(self.acked + 1) + 1;
            }
        }
        self.s.counters.unacked.store(self.unacked_lines(), Ordering::Relaxed);
        if evicted > 0 {
            let total = bump(&self.s.counters.unacked_evicted, evicted);
            // Without an acknowledging consumer the kept lines are only a ring of recent ones.
            if self.acks_seen && total >= self.evictions_reported.saturating_mul(2).max(1) {
                self.evictions_reported = total;
                let mib = self.s.options.unacked_bytes >> 20;
                self.say(
                    log::Level::Error,
                    format!("the consumer has not acknowledged {} line(s) and the re-send buffer ({mib} MiB) is full: {total} unacknowledged line(s) forgotten so far; a consumer restart now would lose them (is the consumer stuck, or its journal failing?)", self.unacked_lines()),
                );
            }
        }
    }

    fn unacked_lines(&self) -> u64 {
        match (self.unacked.front(), self.unacked.back()) {
            (Some(first), Some(last)) => last.last + 1 - first.first.max(self.acked + 1).min(last.last + 1),
            _ => 0,
        }
    }

    /// Read the consumer's ack file (every `ack_poll`, or now with `force`): drop what it
    /// acknowledges, and re-send when it names a new consumer instance.
    fn check_acks(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.next_ack_check {
            return;
        }
        self.next_ack_check = now + self.s.options.ack_poll;
        let ack = match crate::consumer::cursor::read_ack_file(&crate::consumer::cursor::ack_path(&self.s.path)) {
            Ok(Some(ack)) => ack,
            Ok(None) => return,
            Err(e) => {
                if !self.ack_error_reported {
                    self.ack_error_reported = true;
                    self.say(log::Level::Warn, format!("{e}; acknowledgements ignored until it is readable"));
                }
                return;
            }
        };
        self.ack_error_reported = false;
        self.acks_seen = true;
        let mut entry = ack.writers.get(&self.s.options.writer);
        let ahead = entry.is_some_and(|c| c.high > self.seq);
        if let Some(c) = entry.filter(|_| ahead) {
            // No consumer can have processed what was never sent: its cursor is not ours (a
            // backup, a copied journal). A heartbeat now tells it how far we have sent; it then
            // lists the truth as a hole, which the hole re-sends fill.
            if self.ahead_reported.as_deref() != Some(ack.consumer.as_str()) {
                self.ahead_reported = Some(ack.consumer.clone());
                self.say(
                    log::Level::Warn,
                    format!(
                        "the consumer's cursor puts this writer at seq {} but it has sent {}: sending a heartbeat so that the consumer corrects it",
                        c.high, self.seq
                    ),
                );
                self.s.queued.fetch_add(1, Ordering::Relaxed);
                self.front.push_front(Item::Heartbeat);
            }
            entry = None;
        }
        let mine = entry.map(|c| c.prefix);
        let new_instance = self.consumer.as_deref() != Some(ack.consumer.as_str());
        if new_instance {
            let first_contact = self.consumer.is_none() && !self.lost;
            self.consumer = Some(ack.consumer.clone());
            // A cursor ahead of us first hears the truth (the heartbeat above), then asks.
            if !first_contact && !ahead {
                let from = mine.unwrap_or(self.acked);
                self.start_resend(from, "a new consumer instance started");
            }
        } else if self.resend_after.is_none() {
            if let Some(c) = entry {
                self.ask_holes(&c.holes, c.high);
            }
        }
        if let Some(prefix) = mine.filter(|p| *p > self.acked && *p <= self.seq) {
            self.acked = prefix;
            self.s.counters.acked.store(prefix, Ordering::Relaxed);
            while self.unacked.front().is_some_and(|c| c.last <= prefix) {
                let done = self.unacked.pop_front().expect("checked");
                self.unacked_bytes -= done.bytes.len();
            }
            self.s.counters.unacked.store(self.unacked_lines(), Ordering::Relaxed);
        }
    }

    /// Queue a re-send of every kept line after `after`.
    fn start_resend(&mut self, after: u64, why: &str) {
        let from = after.max(self.unacked.front().map_or(u64::MAX, |c| c.first.saturating_sub(1)));
        if self.unacked.back().is_none_or(|c| c.last <= from) {
            return;
        }
        let n = self.unacked.back().map_or(0, |c| c.last - from);
        if from > after {
            self.say(
                log::Level::Error,
                format!("{why}: it lacks seq {}..={from}, which the re-send buffer no longer holds; re-sending the {n} line(s) after it", after + 1),
            );
        } else {
            self.say(log::Level::Info, format!("{why}: re-sending the {n} line(s) after seq {from} it has not acknowledged"));
        }
        self.resend_after = Some(from);
        self.clear_hole_queue(); // the re-send covers every hole
    }

    /// Queue the kept chunks covering the consumer's `holes` in our lines for re-sending: at
    /// once the first time, again only when the consumer (`high`: its highest seq of ours) has
    /// read past the last re-send of that chunk and still lacks it, or after
    /// [`HOLE_RESEND_RETRY`] when nothing was written since.
    fn ask_holes(&mut self, holes: &[(u64, u64)], high: u64) {
        let now = Instant::now();
        for &(a, b) in holes.iter().filter(|(a, b)| a <= b && *a <= self.seq) {
            let b = b.min(self.seq);
            let mut i = self.unacked.partition_point(|c| c.last < a);
            while let Some(chunk) = self.unacked.get_mut(i).filter(|c| c.first <= b) {
                i += 1;
                let due = match chunk.resent {
                    None => true,
                    Some((at, seq)) => {
                        let waited = now.duration_since(at);
                        (high > seq && waited >= self.s.options.ack_poll) || (high >= seq && waited >= HOLE_RESEND_RETRY)
                    }
                };
                if due && !chunk.queued {
                    chunk.queued = true;
                    chunk.resent = Some((now, self.seq));
                    let lines = chunk.last.min(b) - chunk.first.max(a) + 1;
                    self.hole_queue.push_back((chunk.first, lines));
                }
            }
        }
    }

    /// Write the next chunk queued for a hole; one no longer kept is skipped.
    fn resend_hole(&mut self) -> Result<(), WriterError> {
        let Some(&(first, lines)) = self.hole_queue.front() else { return Ok(()) };
        let i = self.unacked.partition_point(|c| c.last < first);
        if self.unacked.get(i).is_none_or(|c| c.first != first) {
            self.hole_queue.pop_front(); // acknowledged or forgotten meanwhile
            return Ok(());
        }
        self.fill_buf_with_chunk(i);
        match self.write_buf()? {
            Wrote::All => {
                self.hole_queue.pop_front();
                let seq = self.seq;
                let chunk = &mut self.unacked[i];
                chunk.resent = Some((Instant::now(), seq));
                chunk.queued = false;
                let total = bump(&self.s.counters.hole_resends, lines);
                let before = total - lines;
                if before == 0 || before.ilog2() != total.ilog2() {
                    self.say(log::Level::Info, format!("re-sent line(s) the consumer lacks (seq {first}..); {total} hole line(s) re-sent so far"));
                }
            }
            Wrote::Full => {}
            Wrote::ReaderGone => self.clear_hole_queue(), // the returning reader gets a full re-send
        }
        Ok(())
    }

    fn clear_hole_queue(&mut self) {
        self.hole_queue.clear();
        self.unacked.iter_mut().for_each(|c| c.queued = false);
    }

    /// What a heartbeat written now with `seq` says.
    fn heartbeat_info(&self, backlog: usize, seq: u64) -> HeartbeatInfo {
        HeartbeatInfo {
            backlog,
            dropped: self.s.counters.dropped_overflow.load(Ordering::Relaxed),
            retained_from: self.unacked.front().map_or(self.seq + 1, |c| c.first),
            sent: self.seq.max(seq),
            acked: self.acked,
        }
    }

    /// Put the kept chunk `i` into `self.buf` as it is re-sent: its bytes as first written, or
    /// for a heartbeat, a heartbeat with its `seq` written now.
    fn fill_buf_with_chunk(&mut self, i: usize) {
        self.buf.clear();
        let chunk = &self.unacked[i];
        if chunk.heartbeat {
            let seq = chunk.first;
            let info = self.heartbeat_info(self.s.queued.load(Ordering::Relaxed), seq);
            encode(&mut self.buf, &Item::Heartbeat, seq, &self.s.options.writer, info);
        } else {
            self.buf.extend_from_slice(&chunk.bytes);
        }
    }

    /// Write the next kept chunk of a re-send (its bytes as first written: original `seq`s).
    fn resend_next(&mut self) -> Result<(), WriterError> {
        let after = self.resend_after.expect("resending");
        let i = self.unacked.partition_point(|c| c.last <= after);
        let Some(chunk) = self.unacked.get(i) else {
            self.resend_after = None;
            return Ok(());
        };
        let (first, last) = (chunk.first, chunk.last);
        self.fill_buf_with_chunk(i);
        if let Wrote::All = self.write_buf()? {
            bump(&self.s.counters.replayed, last - first.max(after + 1) + 1);
            self.resend_after = Some(last);
            let seq = self.seq;
            self.unacked[i].resent = Some((Instant::now(), seq));
        }
        if self.fd.is_none() {
            self.resend_after = None; // gone again: the next reader decides anew
        }
        Ok(())
    }

    /// Put what was not written back at the front of the backlog, in order.
    fn give_back(&mut self, rest: Vec<Item>) {
        for item in rest.into_iter().rev() {
            self.front.push_front(item);
        }
    }

    /// Open the FIFO if a reader is there: `Ok(false)` when there is none yet.
    fn open(&mut self) -> Result<bool, WriterError> {
        let path = &self.s.path;
        let opened = OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path);
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::ENXIO) => Ok(false), // no reader yet
                    Some(libc::ENOENT) => {
                        // Removed behind our back: recreate it (the consumer may too).
                        prepare_fifo(path)?;
                        Ok(false)
                    }
                    Some(libc::ELOOP) => Err(FifoError::Symlink { path: path.clone() }.into()),
                    _ => Err(FifoError::Open { path: path.clone(), source: e }.into()),
                };
            }
        };
        check_opened(path, &file)?;
        let mut size = self.s.options.pipe_size;
        while size >= 4096 && fcntl(&file, FcntlArg::F_SETPIPE_SZ(size as libc::c_int)).is_err() {
            size /= 2;
        }
        let actual = fcntl(&file, FcntlArg::F_GETPIPE_SZ).map_or_else(|_| "?".to_owned(), |n| n.to_string());
        self.fd = Some(file);
        self.s.reader_present.store(true, Ordering::Relaxed);
        bump(&self.s.counters.reader_opens, 1);
        self.say(log::Level::Info, format!("consumer connected to {} (pipe buffer {actual} bytes)", path.display()));
        Ok(true)
    }

    /// Tell the log and the consumer (a `disconnected` status first in line) about new drops.
    fn report_overflow(&mut self) {
        let dropped = self.s.counters.dropped_overflow.load(Ordering::Relaxed);
        if dropped <= self.overflow_reported {
            return;
        }
        self.overflow_reported = dropped;
        let limit = self.s.options.backlog;
        self.say(log::Level::Error, format!("backlog overflow: {dropped} line(s) dropped in total (backlog limit {limit})"));
        let detail = format!("sidecar backlog overflow: {dropped} line(s) dropped while the consumer was away or slow; they will be backfilled");
        self.s.queued.fetch_add(1, Ordering::Relaxed);
        self.front.push_front(Item::Status { ts_ms: now_ms(), state: "disconnected", detail });
    }
}

/// Append `item` as one wire line with its envelope (`seq`, `writer`).
fn encode(out: &mut Vec<u8>, item: &Item, seq: u64, writer: &str, info: HeartbeatInfo) {
    match item {
        Item::Bar(b) => {
            let envelope = Envelope { source: b.source, seq: Some(seq), writer: Some(writer) };
            wire::write_bar_line(out, &b.symbol, &b.bar, b.kind, &envelope);
        }
        Item::Status { ts_ms, state, detail } => wire::write_connection_state_line(out, *ts_ms, state, detail, seq, writer),
        Item::TradingStatus(status) => wire::write_trading_status_line(out, status, Some(seq), Some(writer)),
        Item::Heartbeat => {
            let HeartbeatInfo { backlog, dropped, retained_from, sent, acked } = info;
            wire::write_heartbeat_line(out, &wire::HeartbeatOut { ts_ms: now_ms(), seq, writer, backlog, dropped, retained_from, sent, acked });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_always_fits_one_atomic_write() {
        let writer = FifoWriter::new("/nonexistent/bars.fifo", WriterOptions::default());
        writer.submit_status("reconnecting", &"𝄞".repeat(2_000)).unwrap(); // 4 bytes each
        let item = writer.shared.lines.1.try_recv().unwrap();
        let mut line = Vec::new();
        let info = HeartbeatInfo { backlog: usize::MAX, dropped: u64::MAX, retained_from: u64::MAX, sent: u64::MAX, acked: u64::MAX };
        encode(&mut line, &item, u64::MAX, &"w".repeat(64), info);
        assert!(line.len() <= PIPE_BUF, "{} bytes", line.len());
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["detail"].as_str().unwrap().chars().count(), 750);
        writer.submit_status("stale", &"x".repeat(5_000)).unwrap();
        let Item::Status { detail, .. } = writer.shared.lines.1.try_recv().unwrap() else { panic!() };
        assert_eq!(detail.len(), 1_000);
    }
}
