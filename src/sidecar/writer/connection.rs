//! The writer's thread: one connection to the FIFO at a time, its backlog, the unacknowledged
//! lines kept for a re-send, heartbeats and the write loop.

use super::{bump, now_ms, Item, Shared, WriterError, HOLE_RESEND_RETRY, WRITE_BATCH};
use crate::fifo::{check_opened, prepare_fifo, FifoError, PIPE_BUF};
use crate::wire::{self, Envelope};
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
pub(super) struct Connection<'a> {
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
pub(super) struct HeartbeatInfo {
    backlog: usize,
    dropped: u64,
    retained_from: u64,
    /// The highest seq written, this heartbeat included.
    sent: u64,
    acked: u64,
}

impl<'a> Connection<'a> {
    pub(super) fn new(s: &'a Shared) -> Connection<'a> {
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

    pub(super) fn run(&mut self) -> Result<(), WriterError> {
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
        self.front.push_front(Item::ConnectionState { ts_ms: now_ms(), state: "disconnected", detail });
    }
}

/// Append `item` as one wire line with its envelope (`seq`, `writer`).
pub(super) fn encode(out: &mut Vec<u8>, item: &Item, seq: u64, writer: &str, info: HeartbeatInfo) {
    match item {
        Item::Bar(b) => {
            let envelope = Envelope { source: b.source, seq: Some(seq), writer: Some(writer), received_ms: b.received_ms };
            wire::write_bar_line(out, &b.symbol, &b.bar, b.kind, &envelope);
        }
        Item::ConnectionState { ts_ms, state, detail } => wire::write_connection_state_line(out, *ts_ms, state, detail, seq, writer),
        Item::TradingStatus(status) => wire::write_trading_status_line(out, status, Some(seq), Some(writer)),
        Item::MinuteClosed(part) => wire::minute::write_part_line(out, part, Some(seq), Some(writer)),
        Item::MinuteQuiet(minute, quiet) => wire::minute::write_quiet_line(out, *minute, quiet, Some(seq), Some(writer)),
        Item::Heartbeat => {
            let HeartbeatInfo { backlog, dropped, retained_from, sent, acked } = info;
            wire::write_heartbeat_line(out, &wire::HeartbeatOut { ts_ms: now_ms(), seq, writer, backlog, dropped, retained_from, sent, acked });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::writer::{FifoWriter, WriterOptions};

    #[test]
    fn a_status_line_always_fits_one_atomic_write() {
        let writer = FifoWriter::new("/nonexistent/bars.fifo", WriterOptions::default());
        writer.submit_connection_state("reconnecting", &"𝄞".repeat(2_000)).unwrap(); // 4 bytes each
        let item = writer.shared.lines.1.try_recv().unwrap();
        let mut line = Vec::new();
        let info = HeartbeatInfo { backlog: usize::MAX, dropped: u64::MAX, retained_from: u64::MAX, sent: u64::MAX, acked: u64::MAX };
        encode(&mut line, &item, u64::MAX, &"w".repeat(64), info);
        assert!(line.len() <= PIPE_BUF, "{} bytes", line.len());
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["detail"].as_str().unwrap().chars().count(), 750);
        writer.submit_connection_state("stale", &"x".repeat(5_000)).unwrap();
        let Item::ConnectionState { detail, .. } = writer.shared.lines.1.try_recv().unwrap() else { panic!() };
        assert_eq!(detail.len(), 1_000);
    }
}
