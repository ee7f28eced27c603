//! [`NatsPublisher`]: the journal's day files, in order, into a JetStream stream.
//!
//! The journal is the log: the publisher reads the complete lines the consumer has written to
//! `bars-YYYY-MM-DD.jsonl` (and `crypto-YYYY-MM-DD.jsonl`, see [`crate::asset`]) and publishes them in file order, at most 4,096 awaiting their
//! acknowledgement. Its position per day file (and the file's inode, so a replaced file starts
//! over) is kept in `publish-cursor.json` beside the journal's `cursor.json`, moved only past
//! lines the server acknowledged. After a crash the lines after that position are sent again
//! with the same `Nats-Msg-Id` and the server drops them as duplicates.
//!
//! On the first start (no cursor file) the day files already there from before today (New York
//! date; UTC date for crypto files) are taken as published: history journaled before publishing was turned on. Today's file
//! and every file that appears later are published from their start, including a correction
//! written into an earlier day's file. Positions are kept for a week before the newest file.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;

use super::{connect, ensure_stream, msg_id, runtime, NatsConnect, NatsError, StreamOptions};
use crate::asset::JournalDay;
use crate::bar::BarKind;
use crate::private::{write_atomic, Durability};
use crate::wire::{parse_line, Line};

/// The publisher's durable position, in the journal directory.
pub const PUBLISH_CURSOR_FILE: &str = "publish-cursor.json";

/// Messages awaiting their acknowledgement at most (256 held a 3-subscriber flood to ~10k bars/s,
/// 4,096 to ~15k: README, Performance). A day file that grows while it is published is read on
/// without waiting for these acks first.
const IN_FLIGHT: usize = 4096;
/// Bytes of a day file read at a time.
const READ_CHUNK: usize = 1 << 20;
/// Day files before the newest one whose position is kept.
const KEEP_DAYS: i64 = 7;
/// With nothing new, the journal is read again when [`NatsPublisher::waker`] is called (the consumer
/// wires it to the journal's writes) or after this long at the latest.
const IDLE_RECHECK: Duration = Duration::from_millis(500);

/// What the publisher is doing, for the status file and logs.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishStatus {
    /// The NATS server URL (its password or token masked).
    pub url: String,
    /// The JetStream stream published to.
    pub stream: String,
    /// Connected, and the stream accepted the last message.
    pub connected: bool,
    /// Records the server stored.
    pub published: u64,
    /// Records the server had already (sent again after a restart): dropped by its dedupe.
    pub duplicates: u64,
    /// Journal bytes not yet acknowledged by the server (the backlog, on disk).
    pub backlog_bytes: u64,
    /// The last error, while it lasts.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct FilePos {
    ino: u64,
    offset: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Day files before this date are not published.
    from: String,
    files: BTreeMap<String, FilePos>,
}

/// Publishes the journal to JetStream from a thread of its own. See the module docs.
#[derive(Debug)]
pub struct NatsPublisher {
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    status: Arc<Mutex<PublishStatus>>,
    thread: JoinHandle<Result<(), NatsError>>,
}

impl NatsPublisher {
    /// Start publishing the journal in `journal_dir` to the server(s) of `target`. An
    /// unreachable server is waited for, never an error; a server that refuses us ends the
    /// thread with [`NatsError::Refused`] ([`NatsPublisher::join`]).
    ///
    /// # Errors
    /// [`NatsError::Thread`] when the thread cannot start.
    pub fn start(target: NatsConnect, journal_dir: &Path, stream: StreamOptions) -> Result<NatsPublisher, NatsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let status = Arc::new(Mutex::new(PublishStatus { url: target.shown().into(), stream: stream.name.clone(), ..PublishStatus::default() }));
        let mut task = Task {
            url: target.shown().into(),
            target,
            dir: journal_dir.to_path_buf(),
            stream,
            stop: stop.clone(),
            wake: wake.clone(),
            status: status.clone(),
            cursor: Cursor::default(),
            saved_at: Instant::now(),
            dirty: false,
            last_outage_log: None,
        };
        // A first start's decision (what history is not published) is saved before anything
        // else, so a restart keeps it.
        let (cursor, fresh) = load_cursor(journal_dir);
        task.cursor = cursor;
        task.dirty = fresh;
        task.save_cursor();
        let thread = std::thread::Builder::new()
            .name("barbridge-publish".into())
            .spawn(move || {
                let rt = runtime().map_err(NatsError::Thread)?;
                let result = rt.block_on(task.run());
                task.save_cursor();
                if let Err(e) = &result {
                    task.set_status(|s| {
                        s.connected = false;
                        s.error = Some(e.to_string());
                    });
                    log::error!("the publisher stopped: {e}");
                }
                result
            })
            .map_err(NatsError::Thread)?;
        Ok(NatsPublisher { stop, wake, status, thread })
    }

    /// What the publisher is doing now.
    pub fn status(&self) -> PublishStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A handle on the live status (for a status file writer).
    pub fn status_handle(&self) -> Arc<Mutex<PublishStatus>> {
        self.status.clone()
    }

    /// Ask the thread to stop (it saves its cursor first).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// A callback that makes an idle publisher read the journal now. Give it to
    /// [`crate::consumer::journal::Journal::on_written`] of the journal being published: a bar is then published as
    /// soon as its line is in the day file, never before (without it, the journal is read every
    /// half second when idle).
    pub fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let wake = self.wake.clone();
        move || wake.notify_one()
    }

    /// True once the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the thread.
    ///
    /// # Errors
    /// What ended it: [`NatsError::Refused`] when the server refused us, [`NatsError::Journal`]
    /// when the journal directory cannot be listed, [`NatsError::Thread`], or
    /// [`NatsError::Panicked`].
    pub fn join(self) -> Result<(), NatsError> {
        self.thread.join().unwrap_or(Err(NatsError::Panicked))
    }
}

/// The saved cursor, or a first start's (and `true`).
fn load_cursor(dir: &Path) -> (Cursor, bool) {
    let path = dir.join(PUBLISH_CURSOR_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Cursor>(&bytes) {
            Ok(c) => return (c, false),
            Err(e) => log::error!("{} is unreadable ({e}): publishing today's journal from its start (the server drops what it has)", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::error!("cannot read {}: {e}: publishing today's journal from its start", path.display()),
    }
    // First start: the history already in the journal before today is not published (it was
    // journaled before publishing was turned on); today's file and every file created from now
    // on are, from their start.
    let now = crate::consumer::health::Clock::now_ms(&crate::consumer::health::SystemClock);
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Today is the New York date for a stock file, the UTC date for a crypto file.
            let old = JournalDay::parse(&name).is_some_and(|d| d.date < d.asset.date(now));
            if let (true, Ok(meta)) = (old, std::fs::symlink_metadata(entry.path())) {
                files.insert(name, FilePos { ino: meta.ino(), offset: meta.len() });
            }
        }
    }
    if !files.is_empty() {
        log::info!("publishing starts with today's journal; {} earlier day file(s) are not published", files.len());
    }
    (Cursor { from: String::new(), files }, true)
}

/// `bars-YYYY-MM-DD.jsonl` or `crypto-YYYY-MM-DD.jsonl` (see [`crate::asset`]) → the date part.
fn day_of(name: &str) -> Option<&str> {
    JournalDay::parse(name)?;
    name.strip_suffix(".jsonl")?.split_once('-').map(|(_, date)| date)
}

struct Task {
    /// The server(s), password masked: for logs.
    url: String,
    target: NatsConnect,
    dir: PathBuf,
    stream: StreamOptions,
    stop: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    status: Arc<Mutex<PublishStatus>>,
    cursor: Cursor,
    saved_at: Instant,
    dirty: bool,
    last_outage_log: Option<Instant>,
}

/// One record sent and not yet acknowledged: where the file position goes once it is.
struct Sent {
    file: String,
    ino: u64,
    end: u64,
    ack: PublishAckFuture,
}

impl Task {
    fn set_status(&self, f: impl FnOnce(&mut PublishStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(&mut self) -> Result<(), NatsError> {
        let Some(link) = connect(&self.target, "publisher", &self.stop).await? else { return Ok(()) };
        let js = async_nats::jetstream::new(link.client.clone());
        let Some(_stream) = ensure_stream(&js, &self.stream, &link, &self.stop).await? else { return Ok(()) };
        log::info!("publishing the journal {} to stream {} on {}", self.dir.display(), self.stream.name, self.url);
        while !self.stop.load(Ordering::Relaxed) {
            let passed = self.pass(&js).await;
            // A permission denied on a subject or the stream: not an outage to wait out.
            link.check()?;
            let progressed = match passed {
                Ok(progressed) => {
                    if self.status.lock().unwrap_or_else(|e| e.into_inner()).error.is_some() {
                        log::info!("publishing to {} again", self.url);
                    }
                    self.set_status(|s| {
                        s.connected = true;
                        s.error = None;
                    });
                    progressed
                }
                Err(e) => {
                    self.outage(&e);
                    if e.contains("no stream found") {
                        // The stream is gone (deleted, or lost with the nodes that held it):
                        // create it again, as at start, before publishing on.
                        if ensure_stream(&js, &self.stream, &link, &self.stop).await?.is_none() {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            };
            self.update_backlog();
            if self.dirty && (self.saved_at.elapsed() >= Duration::from_millis(100) || !progressed) {
                self.save_cursor();
            }
            if !progressed {
                // A write during the pass left a permit: the wait then ends at once.
                let _ = tokio::time::timeout(IDLE_RECHECK, self.wake.notified()).await;
            }
        }
        Ok(())
    }

    /// Record an outage: status, and a log line when it starts and every 10 s while it lasts.
    fn outage(&mut self, error: &str) {
        let first = self.status.lock().unwrap_or_else(|e| e.into_inner()).error.is_none();
        self.set_status(|s| {
            s.connected = false;
            s.error = Some(error.to_owned());
        });
        self.update_backlog();
        let now = Instant::now();
        if first || self.last_outage_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            let backlog = self.status.lock().unwrap_or_else(|e| e.into_inner()).backlog_bytes;
            log::warn!("cannot publish to {}: {error}; {backlog} journal bytes wait on disk and will be published when it is back", self.url);
            self.last_outage_log = Some(now);
        }
    }

    /// The day files to publish, oldest first, with their metadata.
    fn day_files(&self) -> Result<Vec<(String, std::fs::Metadata)>, NatsError> {
        let mut files = Vec::new();
        let journal_error = |source| NatsError::Journal { dir: self.dir.clone(), source };
        for entry in std::fs::read_dir(&self.dir).map_err(journal_error)? {
            let entry = entry.map_err(journal_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if day_of(&name).is_some_and(|d| d >= self.cursor.from.as_str()) {
                // Not following symlinks: the journal itself refuses them.
                if let Ok(meta) = std::fs::symlink_metadata(entry.path()) {
                    if meta.is_file() {
                        files.push((name, meta));
                    }
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// Where publishing of `name` resumes: its saved offset, or 0 for a new or replaced file.
    fn position(&mut self, name: &str, meta: &std::fs::Metadata) -> u64 {
        match self.cursor.files.get(name) {
            Some(p) if p.ino == meta.ino() && p.offset <= meta.len() => p.offset,
            Some(p) => {
                log::warn!("journal file {name} was replaced or truncated (was {} bytes published): publishing it from its start", p.offset);
                0
            }
            None => 0,
        }
    }

    /// One pass over the day files: publish what is new. `Ok(true)` when something was.
    async fn pass(&mut self, js: &async_nats::jetstream::Context) -> Result<bool, String> {
        // Sending while disconnected would only fill the client's buffer (and could wait there
        // past a stop request): the backlog waits in the journal instead.
        if js.client().connection_state() != async_nats::connection::State::Connected {
            return Err("not connected".into());
        }
        let files = self.day_files().map_err(|e| e.to_string())?;
        let mut progressed = false;
        for (name, meta) in files {
            let mut offset = self.position(&name, &meta);
            if offset >= meta.len() {
                continue;
            }
            let mut file = std::fs::File::open(self.dir.join(&name)).map_err(|e| format!("{name}: {e}"))?;
            let mut in_flight = std::collections::VecDeque::new();
            let mut buf = Vec::with_capacity(READ_CHUNK);
            let mut len = meta.len(); // the file's length when last looked at
            let mut exhausted = false; // nothing complete left before `len`
            loop {
                if offset >= len || exhausted || self.stop.load(Ordering::Relaxed) {
                    // The consumer may have journaled more meanwhile (a flood arrives in many
                    // batches): go on with it while the acks are still coming, rather than
                    // waiting for them all and starting a new pass.
                    match std::fs::symlink_metadata(self.dir.join(&name)) {
                        Ok(now) if now.ino() == meta.ino() && now.len() > len && !self.stop.load(Ordering::Relaxed) => {
                            len = now.len();
                            exhausted = false;
                        }
                        _ => break,
                    }
                }
                buf.clear();
                file.seek(SeekFrom::Start(offset)).map_err(|e| format!("{name}: {e}"))?;
                (&mut file).take(READ_CHUNK as u64).read_to_end(&mut buf).map_err(|e| format!("{name}: {e}"))?;
                let Some(last_nl) = memchr::memrchr(b'\n', &buf) else {
                    // a record still being written: read again once the file has grown
                    exhausted = true;
                    continue;
                };
                let mut start = 0;
                for line in buf[..=last_nl].split_inclusive(|b| *b == b'\n') {
                    let at = offset + start as u64;
                    start += line.len();
                    let end = offset + start as u64;
                    let body = &line[..line.len() - 1];
                    let message = match parse_line(body) {
                        Ok(Line::Bar(b)) => {
                            let revision = if b.kind == BarKind::UpdatedBar { at } else { 0 };
                            Some((self.stream.subject(&b.symbol), msg_id(&b.symbol, b.bar.timestamp_ms, revision)))
                        }
                        // A halt or resumption goes to the symbol's subject too: a remote
                        // consumer learns it (docs/ARCHITECTURE.md, "Trading statuses").
                        Ok(Line::TradingStatus(t)) => {
                            let id = format!("{}:status:{}:{}", t.status.symbol, t.status.ts_ms, t.status.state.as_str());
                            Some((self.stream.subject(&t.status.symbol), id))
                        }
                        // The minute barrier's lines go to the feed's minute subject, once each
                        // (their place in the day file is their identity).
                        Ok(Line::MinuteClosed(m)) => {
                            Some((self.stream.minute_subject(), format!("_minute:{}:{}:{}", m.part.minute_ms, m.part.part, at)))
                        }
                        Ok(Line::MinuteQuiet(m)) => Some((self.stream.minute_subject(), format!("_quiet:{}:{at}", m.minute_ms))),
                        _ => None, // a corrupt record: the consumer's loader skips it too
                    };
                    match message {
                        Some((subject, id)) => {
                            let publish = PublishMessage::build().payload(body.to_vec().into()).message_id(id);
                            let ack = js.send_publish(subject, publish).await.map_err(|e| e.to_string())?;
                            in_flight.push_back(Sent { file: name.clone(), ino: meta.ino(), end, ack });
                            if in_flight.len() >= IN_FLIGHT {
                                self.settle(&mut in_flight, IN_FLIGHT / 2).await?;
                            }
                        }
                        None => {
                            if in_flight.is_empty() {
                                self.advance(&name, meta.ino(), end);
                            } else {
                                // Skipped once everything before it is acknowledged.
                                self.settle(&mut in_flight, 0).await?;
                                self.advance(&name, meta.ino(), end);
                            }
                        }
                    }
                    progressed = true;
                }
                offset += (last_nl + 1) as u64;
            }
            self.settle(&mut in_flight, 0).await?;
        }
        Ok(progressed)
    }

    /// Await acknowledgements, oldest first, until at most `keep` are outstanding.
    async fn settle(&mut self, in_flight: &mut std::collections::VecDeque<Sent>, keep: usize) -> Result<(), String> {
        while in_flight.len() > keep {
            let sent = in_flight.pop_front().expect("len checked");
            let ack = sent.ack.await.map_err(|e| e.to_string())?;
            self.set_status(|s| {
                if ack.duplicate {
                    s.duplicates += 1;
                } else {
                    s.published += 1;
                }
            });
            self.advance(&sent.file, sent.ino, sent.end);
        }
        Ok(())
    }

    fn advance(&mut self, file: &str, ino: u64, offset: u64) {
        self.cursor.files.insert(file.to_owned(), FilePos { ino, offset });
        self.dirty = true;
    }

    fn update_backlog(&mut self) {
        let Ok(files) = self.day_files() else { return };
        let mut backlog = 0;
        for (name, meta) in &files {
            backlog += meta.len().saturating_sub(self.position_quiet(name, meta));
        }
        self.set_status(|s| s.backlog_bytes = backlog);
    }

    fn position_quiet(&self, name: &str, meta: &std::fs::Metadata) -> u64 {
        match self.cursor.files.get(name) {
            Some(p) if p.ino == meta.ino() && p.offset <= meta.len() => p.offset,
            _ => 0,
        }
    }

    /// Write the cursor (atomically), dropping days more than a week before the newest.
    fn save_cursor(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(newest) = self.cursor.files.keys().filter_map(|n| JournalDay::parse(n)).map(|d| d.date).max() {
            let from = (newest - chrono::Duration::days(KEEP_DAYS)).to_string();
            self.cursor.files.retain(|name, _| day_of(name).is_some_and(|d| d >= from.as_str()));
            if from > self.cursor.from {
                self.cursor.from = from;
            }
        }
        let bytes = match serde_json::to_vec(&self.cursor) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot encode the publish cursor: {e}");
                return;
            }
        };
        match write_atomic(&self.dir, PUBLISH_CURSOR_FILE, &bytes, Durability::Cached) {
            Ok(()) => {
                self.dirty = false;
                self.saved_at = Instant::now();
            }
            Err(e) => log::error!("{e} (a restart will publish again what the server then drops)"),
        }
    }
}
