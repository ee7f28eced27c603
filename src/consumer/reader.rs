//! The consumer's end of the pipe: frames `\n`-terminated lines, survives writers coming and
//! going, never blocks shutdown, and is the FIFO's only reader ([`lock_reader`]).
//!
//! How it avoids the defects of a naive FIFO reader:
//! - `open()` is non-blocking (`O_NONBLOCK`), and waiting is `poll()` with a timeout, so a stop
//!   request is seen within one poll interval even when no writer ever came.
//! - When every writer has closed (EOF), the reader opens a *new* read descriptor before closing
//!   the old one: the pipe always has a reader, so a writer that opens, writes and closes in that
//!   moment loses nothing, and the fresh descriptor does not report the old hang-up, so there is
//!   no busy loop while waiting for the next writer.
//! - When that new descriptor cannot be opened because the process has no descriptor left
//!   (`EMFILE`/`ENFILE`, something else in the process used them up), the old one is kept:
//!   writers can still connect, what they write is read through it, and the open is retried
//!   with backoff (counted through [`FrameSink::open_failed`], logged rate-limited) until a
//!   descriptor is free again. The old descriptor is never closed before a new one is open.
//! - Lines longer than the limit are discarded up to their newline and reported; the line after
//!   them is intact.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::fifo::{check_opened, prepare_fifo, FifoError};
use crate::wire::MAX_LINE_BYTES;

/// Held for a reader's life: an exclusive `flock` on `<fifo>.lock` beside the FIFO (holding the
/// reader's pid), so that a second reader of the same FIFO is refused instead of silently
/// taking part of the bars.
/// The lock file is removed when the reader ends (still holding the lock), so that a clean stop
/// leaves nothing behind.
#[derive(Debug)]
pub struct ReaderLock {
    path: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl Drop for ReaderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Take the FIFO's reader lock (call [`prepare_fifo`] first: the directory is private).
///
/// # Errors
/// [`FifoError::Busy`] when another reader holds the lock; [`FifoError::Symlink`], [`FifoError::NotAFifo`] or [`FifoError::ForeignOwner`] for a lock file that is not a regular file of this user's; [`FifoError::Open`] when it cannot be opened or written.
pub fn lock_reader(path: &Path) -> Result<ReaderLock, FifoError> {
    use std::io::{Seek, Write};
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    // Created 0600, never through a symlink, and checked after opening: a regular file of ours.
    let file = crate::private::open_private_file(&lock_path, OpenOptions::new().read(true).write(true).create(true).truncate(false))?;
    let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(FifoError::Busy { path: path.to_path_buf(), holder });
        }
        Err((_, errno)) => return Err(FifoError::Open { path: lock_path, source: errno.into() }),
    };
    let pid = format!("{}\n", std::process::id());
    let written = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| lock.write_all(pid.as_bytes()));
    if let Err(source) = written {
        return Err(FifoError::Open { path: lock_path, source });
    }
    Ok(ReaderLock { path: lock_path, _lock: lock })
}

/// Reads per batch before [`FrameSink::batch_end`] (about 1 MiB with the default buffer).
const MAX_READS_PER_BATCH: usize = 16;
/// On a stop request, the longest time spent reading what the pipe still holds.
const DRAIN_ON_STOP: Duration = Duration::from_secs(2);
/// First wait before retrying an open that failed for want of a file descriptor; it doubles
/// with each failure up to [`FD_RETRY_MAX`].
const FD_RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between two such retries.
const FD_RETRY_MAX: Duration = Duration::from_secs(1);
/// While waiting to retry, the kept descriptor is looked at this often (no writer: it reports
/// a hang-up at once, so `poll()` cannot do the waiting), so a writer's lines wait at most this.
const FD_WAIT_TICK: Duration = Duration::from_millis(20);
/// While the open keeps failing, at most one log line per this period.
const FD_LOG_EVERY: Duration = Duration::from_secs(10);

/// Open the FIFO for reading without blocking and without following symlinks, then check what
/// was actually opened (no window between check and open).
fn open_read(path: &Path) -> Result<File, FifoError> {
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path).map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => FifoError::Symlink { path: path.to_path_buf() },
            _ => FifoError::Open { path: path.to_path_buf(), source },
        })?;
    check_opened(path, &file)?;
    Ok(file)
}

/// What the reader does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// End the reader.
    Stop,
}

/// Receives what the reader frames. Implemented by the consumer pipeline.
pub trait FrameSink {
    /// One complete line, without its `\n`.
    fn line(&mut self, line: &[u8]);
    /// A line longer than the limit was discarded (its length so far).
    fn oversize(&mut self, len: usize);
    /// Every writer has closed the FIFO. Return [`Flow::Stop`] to end the reader.
    fn writers_gone(&mut self) -> Flow {
        Flow::Continue
    }
    /// Called after each batch of reads, before waiting again (for flushing).
    fn batch_end(&mut self) {}
    /// Called whenever the reader is idle for one poll interval (for periodic checks).
    fn idle(&mut self) {}
    /// Reopening the FIFO failed because the process has no file descriptor left
    /// (`EMFILE`/`ENFILE`); the reader keeps its old descriptor (nothing is lost) and retries.
    /// Called once per failed attempt (for a counter; the reader logs, rate-limited).
    fn open_failed(&mut self) {}
}

/// Tuning of the reader.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// Longest line accepted, newline included.
    pub max_line_bytes: usize,
    /// Longest wait in `poll()`: bounds shutdown latency and the period of [`FrameSink::idle`].
    pub poll_interval: Duration,
    /// Bytes read per `read()`.
    pub read_buffer_bytes: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions { max_line_bytes: MAX_LINE_BYTES, poll_interval: Duration::from_millis(250), read_buffer_bytes: 1 << 16 }
    }
}

impl ReaderOptions {
    /// Check every option: a zero buffer or line limit would read nothing, a zero poll interval
    /// would spin, and `poll()` takes at most `i32::MAX` milliseconds.
    ///
    /// # Errors
    /// [`FifoError::InvalidOption`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), FifoError> {
        let bad = |name, value: String, rule| Err(FifoError::InvalidOption { name, value, rule });
        if self.max_line_bytes == 0 {
            return bad("max_line_bytes", "0".into(), "at least 1 byte");
        }
        if self.read_buffer_bytes == 0 {
            return bad("read_buffer_bytes", "0".into(), "at least 1 byte");
        }
        if self.poll_interval < Duration::from_millis(1) || PollTimeout::try_from(self.poll_interval).is_err() {
            return bad("poll_interval", format!("{:?}", self.poll_interval), "from 1 ms to about 24 days (i32::MAX ms)");
        }
        Ok(())
    }
}

/// Splits a byte stream into lines with a length limit.
#[derive(Debug)]
struct Framer {
    buf: Vec<u8>,
    filled: usize,
    /// Inside an oversize line: dropping bytes until the next newline; holds the length so far.
    discarding: Option<usize>,
    max_line: usize,
}

impl Framer {
    fn new(capacity: usize, max_line: usize) -> Framer {
        Framer { buf: vec![0; capacity.max(max_line * 2)], filled: 0, discarding: None, max_line }
    }

    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// `n` new bytes were written into `spare()`: emit every complete line.
    fn consume(&mut self, n: usize, sink: &mut impl FrameSink) {
        let start_new = self.filled;
        self.filled += n;
        let mut line_start = 0;
        let mut search_from = start_new;
        while let Some(pos) = memchr::memchr(b'\n', &self.buf[search_from..self.filled]) {
            let end = search_from + pos;
            if let Some(len) = self.discarding.take() {
                sink.oversize(len + end - line_start + 1);
            } else if end + 1 - line_start > self.max_line {
                sink.oversize(end + 1 - line_start);
            } else {
                sink.line(&self.buf[line_start..end]);
            }
            line_start = end + 1;
            search_from = line_start;
        }
        // Keep the unfinished tail at the front of the buffer.
        let tail = self.filled - line_start;
        if let Some(len) = self.discarding.as_mut() {
            *len += tail;
            self.filled = 0;
        } else if tail >= self.max_line {
            self.discarding = Some(tail);
            self.filled = 0;
        } else {
            self.buf.copy_within(line_start..self.filled, 0);
            self.filled = tail;
        }
    }

    /// Writers are gone: a final line without a newline is still a line.
    fn finish(&mut self, sink: &mut impl FrameSink) {
        if let Some(len) = self.discarding.take() {
            sink.oversize(len);
        } else if self.filled > 0 {
            log::debug!("writer closed the FIFO without a final newline; treating the last {} bytes as a line", self.filled);
            sink.line(&self.buf[..self.filled]);
        }
        self.filled = 0;
    }
}

/// Read `path` until `stop` is set (or the sink says stop), delivering lines to `sink`.
/// Call [`prepare_fifo`] first. Returns `Ok` on a requested stop.
///
/// # Errors
/// [`FifoError::InvalidOption`] for options [`ReaderOptions::validate`] refuses; another
/// [`FifoError`] when the FIFO cannot be opened, is not (or stops being) a FIFO of this user's,
/// or a read fails.
pub fn read_fifo(path: &Path, options: &ReaderOptions, stop: &AtomicBool, sink: &mut impl FrameSink) -> Result<(), FifoError> {
    options.validate()?;
    let timeout = PollTimeout::try_from(options.poll_interval).unwrap_or(PollTimeout::MAX); // validated: never the fallback
    let mut file = open_read(path)?;
    let mut framer = Framer::new(options.read_buffer_bytes, options.max_line_bytes);
    // Set while reopening fails for want of a file descriptor (see [`FdWait`]).
    let mut fd_wait: Option<FdWait> = None;
    let mut read_since_eof = false;
    let mut last_idle = Instant::now();
    log::info!("reading {}", path.display());
    while !stop.load(Ordering::Relaxed) {
        let revents = {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    last_idle = Instant::now();
                    sink.idle();
                    continue;
                }
                Ok(_) => fds[0].revents().unwrap_or(PollFlags::empty()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(FifoError::Read { path: path.to_path_buf(), source: e.into() }),
            }
        };
        let mut eof = !revents.contains(PollFlags::POLLIN) && revents.contains(PollFlags::POLLHUP);
        // Drain what is there, but end the batch after a bounded number of reads so a writer that
        // never lets the pipe run dry still gets its lines flushed and delivered.
        let mut reads = 0;
        while !eof && !stop.load(Ordering::Relaxed) && reads < MAX_READS_PER_BATCH {
            reads += 1;
            match file.read(framer.spare()) {
                Ok(0) => eof = true,
                Ok(n) => {
                    read_since_eof = true;
                    framer.consume(n, sink);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(FifoError::Read { path: path.to_path_buf(), source }),
            }
        }
        sink.batch_end();
        if eof {
            framer.finish(sink);
            sink.batch_end();
            // While waiting for a descriptor, the kept one reports the same hang-up again and
            // again: only one after lines were read is a new one.
            if fd_wait.is_none() || read_since_eof {
                log::debug!("all writers closed {}", path.display());
                if sink.writers_gone() == Flow::Stop {
                    break;
                }
            }
            read_since_eof = false;
            if let Some(wait) = &fd_wait {
                let now = Instant::now();
                if now < wait.next_try {
                    std::thread::sleep(FD_WAIT_TICK.min(wait.next_try - now));
                    if last_idle.elapsed() >= options.poll_interval {
                        last_idle = Instant::now();
                        sink.idle();
                    }
                    continue;
                }
            }
            match reopen(path, file, options, stop, sink) {
                Reopen::New(new) => {
                    file = new;
                    if let Some(wait) = fd_wait.take() {
                        log::warn!(
                            "reopened {} after {} failed attempt(s) over {:.1} s without a free file descriptor; nothing was lost",
                            path.display(),
                            wait.failures,
                            wait.since.elapsed().as_secs_f64()
                        );
                    }
                }
                Reopen::Kept(old, e) => {
                    file = old;
                    sink.open_failed();
                    fd_wait.get_or_insert_with(FdWait::new).failed(path, &e);
                }
                Reopen::Stopped => return Ok(()), // stopped while the FIFO was gone
            }
        }
    }
    drain(path, &mut file, &mut framer, sink)
}

/// The process had no file descriptor left when the reader tried to reopen the FIFO: the old
/// descriptor is kept and the open retried with backoff.
#[derive(Debug)]
struct FdWait {
    /// Failed attempts in this episode.
    failures: u64,
    /// When the first one failed.
    since: Instant,
    /// The next attempt's earliest time.
    next_try: Instant,
    /// The wait before the attempt after the next failure.
    delay: Duration,
    /// When a failure was last logged, and how many were not logged since.
    logged: Option<Instant>,
    unlogged: u64,
}

impl FdWait {
    fn new() -> FdWait {
        let now = Instant::now();
        FdWait { failures: 0, since: now, next_try: now, delay: FD_RETRY_FIRST, logged: None, unlogged: 0 }
    }

    /// One more failed attempt: back off and log (the first at once, then one line per
    /// [`FD_LOG_EVERY`] saying how many failed meanwhile).
    fn failed(&mut self, path: &Path, e: &FifoError) {
        self.failures += 1;
        self.next_try = Instant::now() + self.delay;
        self.delay = (self.delay * 2).min(FD_RETRY_MAX);
        match self.logged {
            None => log::error!(
                "{e}: the process has no file descriptor left (raise `ulimit -n`, or find what holds them); keeping the old descriptor of {} so writers still connect and nothing is lost, retrying every {:?} at most",
                path.display(),
                FD_RETRY_MAX
            ),
            Some(at) if at.elapsed() >= FD_LOG_EVERY => log::error!(
                "still no file descriptor to reopen {}: {} more failed attempt(s), {} in all (still reading through the old descriptor)",
                path.display(),
                self.unlogged + 1,
                self.failures
            ),
            Some(_) => {
                self.unlogged += 1;
                return;
            }
        }
        self.logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

/// An open that failed because the process or the system has no file descriptor left.
fn out_of_descriptors(e: &FifoError) -> bool {
    matches!(e, FifoError::Open { source, .. } if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)))
}

/// Asked to stop: read what the pipe holds (for at most [`DRAIN_ON_STOP`]) so that it is
/// processed and acknowledged rather than left for the writer to re-send.
fn drain(path: &Path, file: &mut File, framer: &mut Framer, sink: &mut impl FrameSink) -> Result<(), FifoError> {
    let deadline = std::time::Instant::now() + DRAIN_ON_STOP;
    let mut total = 0usize;
    while std::time::Instant::now() < deadline {
        match file.read(framer.spare()) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                framer.consume(n, sink);
                if total % (1 << 20) < n {
                    sink.batch_end();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FifoError::Read { path: path.to_path_buf(), source }),
        }
    }
    sink.batch_end();
    if total > 0 {
        log::info!("stopping: read the {total} byte(s) still in {}", path.display());
    }
    Ok(())
}

/// What [`reopen`] did.
enum Reopen {
    /// A fresh descriptor (the old one is closed).
    New(File),
    /// No file descriptor was free: the old descriptor, still open, and the error.
    Kept(File, FifoError),
    /// A stop was requested while the FIFO could not be reopened.
    Stopped,
}

/// Open a fresh descriptor before dropping the old one, so the pipe never loses its last reader.
/// Out of file descriptors, the old one is handed back ([`Reopen::Kept`]) for the caller to
/// retry later; a FIFO removed or replaced under us is recreated (the old descriptor is kept
/// until the new one is open).
fn reopen(path: &Path, old: File, options: &ReaderOptions, stop: &AtomicBool, sink: &mut impl FrameSink) -> Reopen {
    match open_read(path) {
        Ok(new) => {
            drop(old);
            return Reopen::New(new);
        }
        Err(e) if out_of_descriptors(&e) => return Reopen::Kept(old, e),
        Err(e) => log::error!("{e}; recreating the FIFO"),
    }
    // The FIFO was removed or replaced under us: recreate it, retrying until stopped.
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        match prepare_fifo(path).and_then(|()| open_read(path)) {
            Ok(new) => {
                drop(old);
                log::info!("FIFO {} is back; reading again", path.display());
                return Reopen::New(new);
            }
            Err(e) => {
                if out_of_descriptors(&e) {
                    sink.open_failed();
                }
                if !warned {
                    log::error!("{e}; retrying every {:?}", options.poll_interval);
                    warned = true;
                }
            }
        }
        sink.idle();
        std::thread::sleep(options.poll_interval);
    }
    Reopen::Stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_refused_by_name() {
        assert!(ReaderOptions::default().validate().is_ok());
        let refused = |o: ReaderOptions| match o.validate() {
            Err(FifoError::InvalidOption { name, .. }) => name,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(ReaderOptions { read_buffer_bytes: 0, ..ReaderOptions::default() }), "read_buffer_bytes");
        assert_eq!(refused(ReaderOptions { max_line_bytes: 0, ..ReaderOptions::default() }), "max_line_bytes");
        assert_eq!(refused(ReaderOptions { poll_interval: Duration::ZERO, ..ReaderOptions::default() }), "poll_interval");
        assert_eq!(refused(ReaderOptions { poll_interval: Duration::from_secs(1 << 40), ..ReaderOptions::default() }), "poll_interval");
    }

    #[derive(Default)]
    struct Collect {
        lines: Vec<Vec<u8>>,
        oversize: Vec<usize>,
    }

    impl FrameSink for Collect {
        fn line(&mut self, line: &[u8]) {
            self.lines.push(line.to_vec());
        }
        fn oversize(&mut self, len: usize) {
            self.oversize.push(len);
        }
    }

    fn feed(framer: &mut Framer, sink: &mut Collect, mut data: &[u8], chunk: usize) {
        while !data.is_empty() {
            let n = chunk.min(data.len()).min(framer.spare().len());
            framer.spare()[..n].copy_from_slice(&data[..n]);
            framer.consume(n, sink);
            data = &data[n..];
        }
    }

    #[test]
    fn frames_lines_across_chunk_boundaries() {
        for chunk in [1, 3, 7, 64] {
            let mut f = Framer::new(16, 8);
            let mut c = Collect::default();
            feed(&mut f, &mut c, b"ab\ncdef\n\ng\n", chunk);
            assert_eq!(c.lines, vec![b"ab".to_vec(), b"cdef".to_vec(), b"".to_vec(), b"g".to_vec()], "chunk {chunk}");
        }
    }

    #[test]
    fn oversize_line_is_dropped_and_the_next_survives() {
        for chunk in [1, 5, 100] {
            let mut f = Framer::new(16, 8);
            let mut c = Collect::default();
            feed(&mut f, &mut c, b"ok\n0123456789abcdefghij\nnext\n1234567\n12345678\n", chunk);
            assert_eq!(c.lines, vec![b"ok".to_vec(), b"next".to_vec(), b"1234567".to_vec()], "chunk {chunk}");
            assert_eq!(c.oversize, vec![21, 9], "chunk {chunk}");
        }
    }

    #[test]
    fn final_line_without_newline_is_delivered_at_eof() {
        let mut f = Framer::new(16, 8);
        let mut c = Collect::default();
        feed(&mut f, &mut c, b"a\nbc", 100);
        f.finish(&mut c);
        assert_eq!(c.lines, vec![b"a".to_vec(), b"bc".to_vec()]);
    }
}
