//! Durable journal of every accepted bar and correction.
//!
//! ## Format
//! One file per New York trading day, `DIR/bars-YYYY-MM-DD.jsonl`, one wire-format line per
//! accepted bar (`"type":"updated_bar"` marks corrections, which supersede the earlier line of the
//! same symbol and minute). Read it with `grep`, `jq`, `wc -l`, or `barbridge replay`.
//!
//! ## Durability (fsync policy)
//! Records are written with `write()` at the end of every read batch (and every Python push), so
//! a crash or `SIGKILL` of the consumer loses nothing it has acknowledged to the store. `fsync`
//! runs at most once per [`FsyncPolicy::Interval`] (default 1 s): a power loss can cost up to that
//! much. [`FsyncPolicy::Always`] syncs every batch; `Never` leaves it to the OS.
//!
//! ## Trouble
//! An unwritable or full disk never stops the live store or subscribers: records wait in memory
//! (bounded; overflow is counted and logged), the error is logged once per episode and shown in
//! the status, and the write is retried on every flush.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bar::{Bar, BarKind};
use crate::calendar::{ny_date, ny_day_bounds};
use crate::wire::{encode_bar, parse_line, Line};

/// When to `fsync` the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// Most bytes held in memory while the disk refuses writes (then the oldest are dropped, counted).
const MAX_PENDING_BYTES: usize = 256 << 20;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal directory {dir} cannot be used: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("cannot read journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// What loading a journal file found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub records: u64,
    /// Lines that did not decode (reported, skipped).
    pub corrupt: u64,
    /// A last record cut short by a crash or power loss (reported, cut off the file).
    pub torn_tail: bool,
}

/// Journal state for the status file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalStatus {
    pub dir: String,
    pub records_written: u64,
    pub pending_records: u64,
    pub dropped_records: u64,
    pub error: Option<String>,
}

#[derive(Debug)]
struct DayFile {
    date: NaiveDate,
    day_start_ms: i64,
    day_end_ms: i64,
    file: Option<File>,
}

#[derive(Debug)]
struct State {
    /// Encoded records not yet written, grouped by day (usually one group).
    pending: VecDeque<(NaiveDate, Vec<u8>, u64)>,
    pending_bytes: usize,
    day: Option<DayFile>,
    last_sync: Instant,
    dirty: bool,
    error: Option<String>,
}

/// An append-only, per-day journal. Thread-safe.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    policy: FsyncPolicy,
    state: Mutex<State>,
    records_written: AtomicU64,
    dropped: AtomicU64,
    /// Days whose file this process has loaded (or found absent) before journaling into it.
    claimed_days: Mutex<HashSet<NaiveDate>>,
    /// `[start, end)` of the most recently claimed day: the per-bar check is two loads.
    claimed_start_ms: AtomicI64,
    claimed_end_ms: AtomicI64,
}

/// Path of the journal file for `date`.
pub fn day_path(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join(format!("bars-{date}.jsonl"))
}

impl Journal {
    /// Open (creating with mode 0700) the journal directory.
    pub fn open(dir: impl Into<PathBuf>, policy: FsyncPolicy) -> Result<Journal, JournalError> {
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| JournalError::Dir { dir: dir.clone(), source })?;
        if !dir.is_dir() {
            return Err(JournalError::Dir { dir, source: io::Error::other("not a directory") });
        }
        Ok(Journal {
            dir,
            policy,
            state: Mutex::new(State {
                pending: VecDeque::new(),
                pending_bytes: 0,
                day: None,
                last_sync: Instant::now(),
                dirty: false,
                error: None,
            }),
            records_written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            claimed_days: Mutex::new(HashSet::new()),
            claimed_start_ms: AtomicI64::new(0),
            claimed_end_ms: AtomicI64::new(0),
        })
    }

    /// The first time a bar of a New York day is seen, returns that day's file so the caller can
    /// load it into the store before storing (and journaling) the bar: a restarted process then
    /// recognises bars it journaled before its restart instead of writing them twice.
    pub fn claim_day(&self, ts_ms: i64) -> Option<PathBuf> {
        let (start, end) = (self.claimed_start_ms.load(Ordering::Relaxed), self.claimed_end_ms.load(Ordering::Relaxed));
        if (start..end).contains(&ts_ms) {
            return None;
        }
        let (start, end) = ny_day_bounds(ts_ms);
        let first_time = self.claimed_days.lock().unwrap_or_else(|e| e.into_inner()).insert(ny_date(ts_ms));
        self.claimed_start_ms.store(start, Ordering::Relaxed);
        self.claimed_end_ms.store(end, Ordering::Relaxed);
        first_time.then(|| day_path(&self.dir, ny_date(ts_ms)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue one accepted bar; written at the next [`Journal::flush`].
    pub fn record(&self, symbol: &str, bar: &Bar, kind: BarKind) {
        let mut st = self.lock();
        let date = match &st.day {
            Some(d) if (d.day_start_ms..d.day_end_ms).contains(&bar.timestamp_ms) => d.date,
            _ => ny_date(bar.timestamp_ms),
        };
        let line = encode_bar(symbol, bar, kind);
        match st.pending.back_mut() {
            Some((d, buf, n)) if *d == date => {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                *n += 1;
            }
            _ => {
                let mut buf = Vec::with_capacity(4096);
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
                st.pending.push_back((date, buf, 1));
            }
        }
        st.pending_bytes += line.len() + 1;
        while st.pending_bytes > MAX_PENDING_BYTES && st.pending.len() > 1 {
            if let Some((_, buf, n)) = st.pending.pop_front() {
                st.pending_bytes -= buf.len();
                let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
                log::error!("journal backlog over {} MiB while the disk refuses writes: {n} records dropped ({total} in all)", MAX_PENDING_BYTES >> 20);
            }
        }
    }

    /// Write what is queued; fsync per policy. Errors are logged once per episode and retried
    /// on the next call; they never propagate to the live path.
    pub fn flush(&self) {
        let mut st = self.lock();
        loop {
            let Some((date, n)) = st.pending.front().map(|(d, _, n)| (*d, *n)) else { break };
            let result = self.write_front(&mut st, date);
            match result {
                Ok(()) => {
                    let (_, buf, _) = st.pending.pop_front().expect("checked");
                    st.pending_bytes -= buf.len();
                    st.dirty = true;
                    self.records_written.fetch_add(n, Ordering::Relaxed);
                    if let Some(err) = st.error.take() {
                        log::warn!("journal writable again (after: {err}); backlog written");
                    }
                }
                Err(e) => {
                    // A partial write may have left half a line: start the next try on a fresh
                    // line by reopening (the loader treats a torn line as corrupt and skips it).
                    if let Some(day) = st.day.as_mut() {
                        day.file = None;
                    }
                    let msg = format!("cannot write journal {}: {e}", day_path(&self.dir, date).display());
                    if st.error.is_none() {
                        log::error!("{msg}; bars stay in memory and the write is retried");
                    }
                    st.error = Some(msg);
                    return;
                }
            }
        }
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(d) => st.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due && st.dirty {
            if let Some(Some(f)) = st.day.as_ref().map(|d| d.file.as_ref()) {
                if let Err(e) = f.sync_data() {
                    log::error!("fsync of journal failed: {e}");
                }
            }
            st.dirty = false;
            st.last_sync = Instant::now();
        }
    }

    fn write_front(&self, st: &mut State, date: NaiveDate) -> io::Result<()> {
        self.open_day(st, date)?;
        let State { pending, day, .. } = st;
        let file = day.as_mut().and_then(|d| d.file.as_mut()).expect("opened by open_day");
        file.write_all(&pending.front().expect("caller checked").1)
    }

    fn open_day(&self, st: &mut State, date: NaiveDate) -> io::Result<()> {
        let reuse = matches!(&st.day, Some(d) if d.date == date && d.file.is_some());
        if !reuse {
            if let Some(Some(old)) = st.day.as_ref().map(|d| d.file.as_ref()) {
                let _ = old.sync_data();
            }
            let path = day_path(&self.dir, date);
            let mut file = OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(&path)?;
            ensure_ends_with_newline(&mut file)?;
            let probe = date.and_hms_opt(12, 0, 0).expect("noon").and_utc().timestamp_millis();
            let (day_start_ms, day_end_ms) = ny_day_bounds(probe);
            st.day = Some(DayFile { date, day_start_ms, day_end_ms, file: Some(file) });
        }
        Ok(())
    }

    pub fn status(&self) -> JournalStatus {
        let st = self.lock();
        JournalStatus {
            dir: self.dir.display().to_string(),
            records_written: self.records_written.load(Ordering::Relaxed),
            pending_records: st.pending.iter().map(|(_, _, n)| *n).sum(),
            dropped_records: self.dropped.load(Ordering::Relaxed),
            error: st.error.clone(),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.flush();
        let st = self.lock();
        if let Some(Some(f)) = st.day.as_ref().map(|d| d.file.as_ref()) {
            let _ = f.sync_data();
        }
        if !st.pending.is_empty() {
            log::error!("journal closing with {} records it could not write", st.pending.iter().map(|(_, _, n)| n).sum::<u64>());
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

/// Read a journal (or any wire-format JSONL file), calling `f` for each bar line in order.
/// Corrupt lines are reported and skipped; a torn last line is reported.
pub fn read_records(path: &Path, mut f: impl FnMut(&str, Bar, BarKind)) -> Result<LoadReport, JournalError> {
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
mod tests {
    use super::*;

    fn bar(ts: i64) -> Bar {
        Bar { timestamp_ms: ts, open: 1.0, high: 2.0, low: 0.5, close: 1.5, volume: 10.0, vwap: Some(1.25), trade_count: Some(3) }
    }

    #[test]
    fn writes_one_file_per_new_york_day_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), FsyncPolicy::Always).unwrap();
        // 2025-10-08 13:28 UTC and 2025-10-09 03:00 UTC (still 10-08 in New York) and 10-09 14:00.
        for ts in [1_759_930_080_000, 1_759_978_800_000, 1_760_018_400_000] {
            j.record("SPY", &bar(ts), BarKind::Bar);
        }
        j.record("SPY", &bar(1_759_930_080_000), BarKind::UpdatedBar);
        j.flush();
        assert_eq!(j.status().records_written, 4);
        let mut seen = Vec::new();
        let r = read_records(&day_path(dir.path(), ny_date(1_759_930_080_000)), |s, b, k| seen.push((s.to_owned(), b.timestamp_ms, k)))
            .unwrap();
        assert_eq!(r, LoadReport { records: 3, corrupt: 0, torn_tail: false });
        assert_eq!(seen[2], ("SPY".to_owned(), 1_759_930_080_000, BarKind::UpdatedBar), "the correction is in its bar's day");
        let day2 = day_path(dir.path(), NaiveDate::from_ymd_opt(2025, 10, 9).unwrap());
        let r = read_records(&day2, |_, _, _| {}).unwrap();
        assert_eq!(r.records, 1);
    }

    #[test]
    fn torn_tail_is_reported_skipped_and_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let date = ny_date(1_759_930_080_000);
        let path = day_path(dir.path(), date);
        let good = encode_bar("SPY", &bar(1_759_930_080_000), BarKind::Bar);
        std::fs::write(&path, format!("{good}\n{{\"symbol\":\"SP")).unwrap();
        let r = read_records(&path, |_, _, _| {}).unwrap();
        assert_eq!(r, LoadReport { records: 1, corrupt: 0, torn_tail: true });
        let j = Journal::open(dir.path(), FsyncPolicy::Never).unwrap();
        j.record("SPY", &bar(1_759_930_140_000), BarKind::Bar);
        j.flush();
        let r = read_records(&path, |_, _, _| {}).unwrap();
        assert_eq!(r, LoadReport { records: 2, corrupt: 0, torn_tail: false });
    }

    #[test]
    fn unwritable_directory_keeps_records_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path().join("j"), FsyncPolicy::Never).unwrap();
        // Make the day file impossible to create: a directory with its name.
        let date = ny_date(1_759_930_080_000);
        std::fs::create_dir(day_path(&dir.path().join("j"), date)).unwrap();
        j.record("SPY", &bar(1_759_930_080_000), BarKind::Bar);
        j.flush();
        let s = j.status();
        assert_eq!(s.pending_records, 1);
        assert!(s.error.as_deref().unwrap_or("").contains("cannot write journal"), "{s:?}");
        std::fs::remove_dir(day_path(&dir.path().join("j"), date)).unwrap();
        j.flush();
        let s = j.status();
        assert_eq!((s.pending_records, s.records_written, s.error), (0, 1, None));
    }
}
