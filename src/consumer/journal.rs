//! Durable journal of every accepted bar and correction.
//!
//! ## Format
//! One file per New York trading day, `DIR/bars-YYYY-MM-DD.jsonl`, one wire-format line per
//! accepted bar (`"type":"updated_bar"` marks corrections, which supersede the earlier line of the
//! same symbol and minute), and one `trading_status` line per new trading status (halt,
//! resumption; in the file of the day it took effect, without `seq`/`writer`), which bar readers
//! skip. Read it with `grep`, `jq`, `wc -l`, or `barbridge replay`. Crypto pairs (`BTC/USD`) trade
//! around the clock and go to one file per UTC day, `DIR/crypto-YYYY-MM-DD.jsonl` (see
//! [`crate::asset`]), so one journal takes both.
//!
//! ## Durability (fsync policy)
//! Records are written with `write()` at the end of every read batch (and every Python push), so
//! a crash or `SIGKILL` of the consumer loses nothing it has acknowledged to the store. `fsync`
//! runs at most once per [`FsyncPolicy::Interval`] (default 1 s): a power loss can cost up to that
//! much. [`FsyncPolicy::Always`] syncs every batch; `Never` leaves it to the OS.
//!
//! ## Whose files
//! The directory must be private (see [`crate::private`]): ours, not writable by others, not a
//! symlink; it is created 0700. Day files are opened without following symlinks and must be
//! regular files of ours that others cannot write. [`Journal::open`] checks the directory and
//! every day file already in it, so a prepared journal is refused before anything is loaded.
//!
//! ## Trouble
//! An unwritable or full disk never stops the live store or subscribers: records wait in memory
//! in chunks of at most 1 MiB, 256 MiB in all (then the oldest chunk is dropped: counted, and
//! logged at most every 30 s). The write is retried on every flush and resumes at the first byte
//! not yet on disk, so a partial write neither loses nor repeats a record. The error is logged
//! once per episode, reminded every 30 s while it lasts, and its end is logged once.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::asset::{AssetClass, JournalDay};
use crate::bar::{Bar, BarKind};
use crate::private::{check_private_file, ensure_private_dir, open_private_file, PrivateError};
use crate::wire::trading::TradingStatus;
use crate::wire::write_trading_status_line;
use crate::wire::{parse_line, Line};

/// When to `fsync` the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every write: accepted bars survive a power loss, at the cost of a disk flush per write.
    Always,
    /// At most once per interval: a power loss loses at most about that much (the default, 1 s).
    Interval(Duration),
    /// Never: the OS writes back when it will.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// Most bytes held in memory while the disk refuses writes (then the oldest chunks are dropped).
pub const MAX_PENDING_BYTES: usize = 256 << 20;

/// Largest chunk of pending records: the unit in which the oldest are dropped.
const CHUNK_BYTES: usize = 1 << 20;

/// Least time between two log lines about the same trouble (still failing, records dropped).
const REMINDER_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
/// Why the journal cannot be opened or loaded. Each message is one sentence a user can act on.
#[non_exhaustive]
pub enum JournalError {
    /// The directory or a day file in it is not private.
    #[error(transparent)]
    NotPrivate(#[from] PrivateError),
    /// The journal directory cannot be created or listed.
    #[error("journal directory {dir} cannot be used: {source}")]
    Dir {
        /// The journal directory.
        dir: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A day file cannot be read.
    #[error("cannot read journal {path}: {source}")]
    Read {
        /// The day file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// What loading a journal file found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Bars loaded into the store.
    pub records: u64,
    /// Lines that did not decode (reported, skipped).
    pub corrupt: u64,
    /// A last record cut short by a crash or power loss (reported, cut off the file).
    pub torn_tail: bool,
}

/// Journal state for the status file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalStatus {
    /// The journal directory.
    pub dir: String,
    /// Records appended since start.
    pub records_written: u64,
    /// Records accepted but not yet written (the disk refused them; retried).
    pub pending_records: u64,
    /// Records dropped because more than [`MAX_PENDING_BYTES`] waited.
    pub dropped_records: u64,
    /// The disk's last error while records wait, `None` when writes succeed.
    pub error: Option<String>,
}

#[derive(Debug)]
struct DayFile {
    day: JournalDay,
    day_start_ms: i64,
    day_end_ms: i64,
    file: File,
}

/// Encoded records of one day, not yet (completely) on disk.
#[derive(Debug)]
struct Chunk {
    day: JournalDay,
    buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    /// Bytes of `buf` already on disk: a retry after a partial write starts here.
    written: usize,
}

/// A write or open failure in progress.
#[derive(Debug)]
struct Trouble {
    error: String,
    since: Instant,
    last_log: Instant,
}

#[derive(Debug)]
struct State {
    pending: VecDeque<Chunk>,
    pending_bytes: usize,
    pending_records: u64,
    /// An emptied chunk buffer kept for the next chunk (no allocation per batch).
    spare: Option<Vec<u8>>,
    /// The open day file of each asset class (a stock and a crypto day may be open at once).
    open: Vec<DayFile>,
    last_sync: Instant,
    dirty: bool,
    trouble: Option<Trouble>,
    /// Dropped records not yet logged, and when drops were last logged.
    unlogged_drops: u64,
    last_drop_log: Option<Instant>,
}

/// An append-only, per-day journal. Thread-safe.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    policy: FsyncPolicy,
    max_pending_bytes: usize,
    chunk_bytes: usize,
    state: Mutex<State>,
    records_written: AtomicU64,
    dropped: AtomicU64,
    /// Days whose file this process has loaded (or found absent) before journaling into it.
    claimed_days: Mutex<HashSet<JournalDay>>,
    /// `[start, end)` of the most recently claimed day of each asset class (indexed like
    /// [`AssetClass::ALL`]): the per-bar check is two loads.
    claimed_bounds: [(AtomicI64, AtomicI64); 2],
    /// Called after every flush that put records into the day files ([`Journal::on_written`]).
    on_written: Mutex<Vec<WrittenHook>>,
}

/// A callback of [`Journal::on_written`].
struct WrittenHook(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for WrittenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrittenHook")
    }
}

/// Path of the stock journal file for the New York trading date `date` (crypto days:
/// [`JournalDay::path`]).
pub fn day_path(dir: &Path, date: NaiveDate) -> PathBuf {
    JournalDay { asset: AssetClass::Stock, date }.path(dir)
}

fn is_day_file_name(name: &std::ffi::OsStr) -> bool {
    name.to_str().and_then(JournalDay::parse).is_some()
}

fn class_index(asset: AssetClass) -> usize {
    match asset {
        AssetClass::Stock => 0,
        AssetClass::Crypto => 1,
    }
}

impl Journal {
    /// Open (creating with mode 0700) the journal directory. Refuses a directory that is not
    /// private, or one holding a day file that is a symlink, not a regular file, another user's,
    /// or writable by others (see [`crate::private`]).
    ///
    /// # Errors
    /// [`JournalError::NotPrivate`] for a directory or day file that is not private; [`JournalError::Dir`] when the directory cannot be created or listed.
    pub fn open(dir: impl Into<PathBuf>, policy: FsyncPolicy) -> Result<Journal, JournalError> {
        let dir = dir.into();
        ensure_private_dir(&dir)?;
        let entries = std::fs::read_dir(&dir).map_err(|source| JournalError::Dir { dir: dir.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| JournalError::Dir { dir: dir.clone(), source })?;
            if is_day_file_name(&entry.file_name()) {
                let meta = entry.metadata().map_err(|source| JournalError::Dir { dir: dir.clone(), source })?;
                check_private_file(&entry.path(), &meta)?;
            }
        }
        Ok(Journal {
            dir,
            policy,
            max_pending_bytes: MAX_PENDING_BYTES,
            chunk_bytes: CHUNK_BYTES,
            state: Mutex::new(State {
                pending: VecDeque::new(),
                pending_bytes: 0,
                pending_records: 0,
                spare: None,
                open: Vec::new(),
                last_sync: Instant::now(),
                dirty: false,
                trouble: None,
                unlogged_drops: 0,
                last_drop_log: None,
            }),
            records_written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            on_written: Mutex::new(Vec::new()),
            claimed_days: Mutex::new(HashSet::new()),
            claimed_bounds: Default::default(),
        })
    }

    /// Hold at most `bytes` of records in memory while the disk refuses writes (default
    /// [`MAX_PENDING_BYTES`]); chunks are a sixteenth of that, at most 1 MiB.
    ///
    /// # Errors
    /// [`crate::CapacityError::Zero`] for 0.
    pub fn with_max_pending_bytes(mut self, bytes: usize) -> Result<Journal, crate::CapacityError> {
        self.max_pending_bytes = crate::capacity::check("the journal's bytes held in memory", bytes, usize::MAX)?.get();
        self.chunk_bytes = (bytes / 16).clamp(1, CHUNK_BYTES);
        Ok(self)
    }

    /// The first time a bar of a journal day is seen (a New York day for a stock, a UTC day for
    /// a crypto pair: [`AssetClass::of`] the bar's symbol), returns that day's file so the caller can load it into the store before
    /// storing (and journaling) the bar: a restarted process then recognises bars it journaled
    /// before its restart instead of writing them twice.
    pub fn claim_day(&self, asset: AssetClass, ts_ms: i64) -> Option<PathBuf> {
        let (start, end) = &self.claimed_bounds[class_index(asset)];
        if (start.load(Ordering::Relaxed)..end.load(Ordering::Relaxed)).contains(&ts_ms) {
            return None;
        }
        let day = JournalDay { asset, date: asset.date(ts_ms) };
        let first_time = self.claimed_days.lock().unwrap_or_else(|e| e.into_inner()).insert(day);
        let (s, e) = day.bounds();
        start.store(s, Ordering::Relaxed);
        end.store(e, Ordering::Relaxed);
        first_time.then(|| day.path(&self.dir))
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue one accepted bar; written at the next [`Journal::flush`].
    pub fn record(&self, symbol: &str, bar: &Bar, kind: BarKind) {
        self.record_received(symbol, bar, kind, None);
    }

    /// [`Journal::record`] keeping when the sidecar received the bar (`received_ms`), so the
    /// history has the latency too.
    pub fn record_received(&self, symbol: &str, bar: &Bar, kind: BarKind, received_ms: Option<i64>) {
        let mut line = Vec::with_capacity(200);
        crate::wire::write_bar_line(&mut line, symbol, bar, kind, &crate::wire::Envelope { received_ms, ..Default::default() });
        self.queue(AssetClass::of(symbol), bar.timestamp_ms, &line);
    }

    /// Queue one new trading status, as a `trading_status` line without envelope, into the file
    /// of its day (module docs: readers of bars skip it).
    pub fn record_trading_status(&self, status: &TradingStatus) {
        let mut line = Vec::with_capacity(160);
        write_trading_status_line(&mut line, status, None, None);
        self.queue(AssetClass::of(&status.symbol), status.ts_ms, &line);
    }

    /// Queue one record (`line`, newline included) for the day file of `asset` and `ts_ms`.
    pub(crate) fn queue(&self, asset: AssetClass, ts_ms: i64, line: &[u8]) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let day = match st.open.iter().find(|d| d.day.asset == asset) {
            Some(d) if (d.day_start_ms..d.day_end_ms).contains(&ts_ms) => d.day,
            _ => JournalDay { asset, date: asset.date(ts_ms) },
        };
        let need = line.len();
        let fits = matches!(st.pending.back(), Some(c) if c.day == day && c.buf.len() + need <= self.chunk_bytes);
        if !fits {
            let buf = st.spare.take().unwrap_or_else(|| Vec::with_capacity(self.chunk_bytes.min(64 << 10)));
            st.pending.push_back(Chunk { day, buf, records: 0, written: 0 });
        }
        let chunk = st.pending.back_mut().expect("pushed above");
        chunk.buf.extend_from_slice(line);
        chunk.records += 1;
        st.pending_bytes += need;
        st.pending_records += 1;
        while st.pending_bytes > self.max_pending_bytes && st.pending.len() > 1 {
            self.drop_oldest(st);
        }
    }

    /// Drop the oldest chunk not begun on disk (a chunk partly written is finished first, or its
    /// torn last line would run into the next record).
    fn drop_oldest(&self, st: &mut State) {
        let i = usize::from(st.pending[0].written > 0);
        let Some(chunk) = st.pending.remove(i) else { return };
        st.pending_bytes -= chunk.buf.len();
        st.pending_records -= chunk.records;
        let total = self.dropped.fetch_add(chunk.records, Ordering::Relaxed) + chunk.records;
        st.unlogged_drops += chunk.records;
        let now = Instant::now();
        if st.last_drop_log.is_none_or(|t| now.duration_since(t) >= REMINDER_INTERVAL) {
            log::error!(
                "journal backlog over {} MiB while the disk refuses writes: the oldest {} records dropped ({total} in all; the store still has them)",
                self.max_pending_bytes >> 20,
                st.unlogged_drops
            );
            st.unlogged_drops = 0;
            st.last_drop_log = Some(now);
        }
    }

    /// Call `hook` after every flush that wrote records into the day files (from the flushing
    /// thread, after the write, and after the fsync when one is due): the NATS publisher is woken
    /// by it instead of polling, and reads only what is in the files.
    pub fn on_written(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.on_written.lock().unwrap_or_else(|e| e.into_inner()).push(WrittenHook(Box::new(hook)));
    }

    /// Write what is queued; fsync per policy. Errors are logged once per episode (with a
    /// reminder every 30 s) and retried on the next call; they never propagate to the live path.
    pub fn flush(&self) {
        let wrote = self.flush_locked();
        if wrote {
            for hook in self.on_written.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                (hook.0)();
            }
        }
    }

    /// [`Journal::flush`] under the state lock; true when records went into the files.
    fn flush_locked(&self) -> bool {
        let mut guard = self.lock();
        let st = &mut *guard;
        let wrote = !st.pending.is_empty();
        while let Some(day) = st.pending.front().map(|c| c.day) {
            if let Err(e) = self.write_front(st, day) {
                self.failed(st, day, e);
                return wrote;
            }
            let mut chunk = st.pending.pop_front().expect("checked");
            st.pending_bytes -= chunk.buf.len();
            chunk.buf.clear();
            st.spare.get_or_insert(chunk.buf);
        }
        if let Some(t) = st.trouble.take() {
            log::warn!("journal writable again after {:.0} s (after: {}); backlog written", t.since.elapsed().as_secs_f64(), t.error);
        }
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(d) => st.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due && st.dirty {
            for d in &st.open {
                if let Err(e) = d.file.sync_data() {
                    log::error!("fsync of journal failed: {e}");
                }
            }
            st.dirty = false;
            st.last_sync = Instant::now();
        }
        wrote
    }

    fn failed(&self, st: &mut State, day: JournalDay, e: io::Error) {
        let error = format!("cannot write journal {}: {e}", day.path(&self.dir).display());
        let now = Instant::now();
        match &mut st.trouble {
            None => {
                log::error!("{error}; bars stay in memory ({} records pending) and the write is retried", st.pending_records);
                st.trouble = Some(Trouble { error, since: now, last_log: now });
            }
            Some(t) => {
                if now.duration_since(t.last_log) >= REMINDER_INTERVAL {
                    log::error!(
                        "journal still failing after {:.0} s: {error}; {} records pending, {} dropped",
                        now.duration_since(t.since).as_secs_f64(),
                        st.pending_records,
                        self.dropped.load(Ordering::Relaxed)
                    );
                    t.last_log = now;
                }
                t.error = error;
            }
        }
    }

    /// Write the rest of the front chunk, counting each complete record as it reaches the file.
    fn write_front(&self, st: &mut State, day: JournalDay) -> io::Result<()> {
        let i = self.open_day(st, day)?;
        let State { pending, pending_records, open, dirty, .. } = st;
        let file = &mut open[i].file;
        let chunk = pending.front_mut().expect("caller checked");
        while chunk.written < chunk.buf.len() {
            match file.write(&chunk.buf[chunk.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let done = memchr::memchr_iter(b'\n', &chunk.buf[chunk.written..chunk.written + n]).count() as u64;
                    chunk.written += n;
                    *pending_records -= done;
                    *dirty = true;
                    self.records_written.fetch_add(done, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Make `day`'s file the open one of its asset class; returns its index in `st.open`. A file
    /// stays open through write errors: the next try appends exactly the bytes not yet written.
    fn open_day(&self, st: &mut State, day: JournalDay) -> io::Result<usize> {
        let same_class = st.open.iter().position(|d| d.day.asset == day.asset);
        if let Some(i) = same_class.filter(|&i| st.open[i].day == day) {
            return Ok(i);
        }
        if let Some(old) = same_class.and_then(|i| st.open.get(i)) {
            let _ = old.file.sync_data();
        }
        let mut file = open_private_file(&day.path(&self.dir), OpenOptions::new().create(true).append(true).read(true)).map_err(io::Error::other)?;
        ensure_ends_with_newline(&mut file)?;
        let (day_start_ms, day_end_ms) = day.bounds();
        let opened = DayFile { day, day_start_ms, day_end_ms, file };
        Ok(match same_class {
            Some(i) => {
                st.open[i] = opened;
                i
            }
            None => {
                st.open.push(opened);
                st.open.len() - 1
            }
        })
    }

    /// Nothing pending and no error: everything recorded so far is in the file (fsync aside).
    pub fn is_clean(&self) -> bool {
        let st = self.lock();
        st.pending.is_empty() && st.trouble.is_none()
    }

    /// The fsync policy this journal was opened with.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// The journal's state for the status file.
    pub fn status(&self) -> JournalStatus {
        let st = self.lock();
        JournalStatus {
            dir: self.dir.display().to_string(),
            records_written: self.records_written.load(Ordering::Relaxed),
            pending_records: st.pending_records,
            dropped_records: self.dropped.load(Ordering::Relaxed),
            error: st.trouble.as_ref().map(|t| t.error.clone()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush();
        let st = self.lock();
        for d in &st.open {
            let _ = d.file.sync_data();
        }
        if st.pending_records > 0 {
            log::error!("journal closing with {} records it could not write", st.pending_records);
        }
    }
}

/// A file whose last byte is not `\n` ends in a torn record: cut it off so appends start clean.
fn ensure_ends_with_newline(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline and truncate after it.
    let mut reader = BufReader::new(file.try_clone()?);
    reader.seek(SeekFrom::Start(0))?;
    let mut keep = 0u64;
    let mut pos = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        pos += n;
        if line.last() == Some(&b'\n') {
            keep = pos;
        }
    }
    log::warn!("journal ends in a torn record ({} bytes after the last newline); cutting it off", len - keep);
    file.set_len(keep)
}

/// Read a journal (or any wire-format JSONL file), calling `f` for each bar line in order
/// (trading statuses and other control lines are skipped: [`read_journal`] reads them too).
/// Corrupt lines are reported and skipped; a torn last line is reported.
///
/// # Errors
/// [`JournalError::Read`] when the file cannot be opened or read.
pub fn read_records(path: &Path, f: impl FnMut(&str, Bar, BarKind)) -> Result<LoadReport, JournalError> {
    read_journal(path, f, |_| {})
}

/// [`read_records`], and `on_status` for each `trading_status` line, in file order.
///
/// # Errors
/// [`JournalError::Read`] when the file cannot be opened or read.
pub fn read_journal(path: &Path, f: impl FnMut(&str, Bar, BarKind), on_status: impl FnMut(TradingStatus)) -> Result<LoadReport, JournalError> {
    read_journal_with_minutes(path, f, on_status, |_| {})
}

/// A minute record of a journal: a `minute_closed` part or a `minute_quiet` mark, with its
/// writer ("" if none).
#[derive(Clone, Debug, PartialEq)]
pub enum MinuteRecord {
    /// A part of a closed minute.
    Closed(String, crate::wire::minute::MinuteClosedPart),
    /// Symbols confirmed quiet in a minute: (writer, minute, symbols).
    Quiet(String, i64, Vec<String>),
}

/// [`read_journal`], and `on_minute` for each minute record.
///
/// # Errors
/// [`JournalError::Read`] when the file cannot be opened or read.
pub fn read_journal_with_minutes(
    path: &Path,
    mut f: impl FnMut(&str, Bar, BarKind),
    mut on_status: impl FnMut(TradingStatus),
    mut on_minute: impl FnMut(MinuteRecord),
) -> Result<LoadReport, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
    let mut reader = BufReader::new(file);
    let mut report = LoadReport::default();
    let mut line = Vec::new();
    let mut lineno = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|source| JournalError::Read { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let complete = line.last() == Some(&b'\n');
        let body = if complete { &line[..line.len() - 1] } else { &line[..] };
        if !complete {
            report.torn_tail = true;
            log::warn!("{}: last record is torn ({} bytes, no newline): skipped", path.display(), body.len());
            break;
        }
        match parse_line(body) {
            Ok(Line::Bar(b)) => {
                report.records += 1;
                f(&b.symbol, b.bar, b.kind);
            }
            Ok(Line::TradingStatus(t)) => on_status(t.status),
            Ok(Line::MinuteClosed(m)) => on_minute(MinuteRecord::Closed(m.writer.unwrap_or_default().into_owned(), m.part)),
            Ok(Line::MinuteQuiet(m)) => on_minute(MinuteRecord::Quiet(m.writer.unwrap_or_default().into_owned(), m.minute_ms, m.quiet)),
            Ok(_) => {}
            Err(e) => {
                report.corrupt += 1;
                log::warn!("{}:{lineno}: corrupt record skipped: {e}", path.display());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
