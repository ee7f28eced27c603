//! [`FifoFeed`]: a reader thread feeding a FIFO into a [`Consumer`], acknowledging what is durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{BarEvent, Consumer};
use crate::consumer::cursor::AckPublisher;
use crate::consumer::reader::{lock_reader, read_fifo, Flow, FrameSink, ReaderOptions};
use crate::fifo::{prepare_fifo, FifoError};
use crate::wire::WireError;

/// Adapts the consumer to the FIFO reader, and acknowledges what is durable.
struct FifoSinkAdapter<'a> {
    consumer: &'a Consumer,
    stop_when_writers_gone: bool,
    /// The current read batch's arrival is stamped (once per batch, not per line).
    stamped: bool,
    acks: AckPublisher,
    /// Channel deliveries of the current read batch, sent at its end (one wake-up per batch).
    held: Vec<BarEvent>,
}

impl FifoSinkAdapter<'_> {
    fn release_held(&mut self) {
        if !self.held.is_empty() {
            self.consumer.send_to_channels(&self.held);
            self.held.clear();
        }
        self.consumer.minutes.release(&self.consumer.health.counters); // after the bars they cover
    }

    /// Publish the writers' positions if every line processed so far is durable.
    fn acknowledge(&mut self, force: bool) {
        if (force || self.acks.due()) && self.consumer.durable() {
            self.acks.publish(self.consumer.health.cursors(), force);
        }
    }
}

impl FrameSink for FifoSinkAdapter<'_> {
    fn line(&mut self, line: &[u8]) {
        if !self.stamped {
            self.consumer.health.on_message();
            self.stamped = true;
        }
        let _ = self.consumer.ingest_received_line(line, Some(&mut self.held));
    }
    fn oversize(&mut self, len: usize) {
        self.consumer.ingest_rejected(&WireError::Oversize { len }, b"");
    }
    fn writers_gone(&mut self) -> Flow {
        if self.stop_when_writers_gone {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
    fn batch_end(&mut self) {
        self.stamped = false;
        self.consumer.flush();
        self.release_held();
        self.acknowledge(false);
    }
    fn open_failed(&mut self) {
        self.consumer.health.counters.fifo_open_errors.fetch_add(1, Ordering::Relaxed);
    }
    fn idle(&mut self) {
        self.consumer.health.tick();
        self.consumer.flush();
        self.acknowledge(false);
    }
}

/// Options of a [`FifoFeed`].
#[derive(Clone, Debug, Default)]
pub struct FeedOptions {
    /// The FIFO reader's tuning.
    pub reader: ReaderOptions,
    /// End the feed when the first writer session ends (benchmarks, batch loads).
    pub stop_when_writers_gone: bool,
    /// Use this stop flag (e.g. one a signal handler already sets) instead of a fresh one.
    pub stop_flag: Option<Arc<AtomicBool>>,
}

/// A reader thread feeding a FIFO into a [`Consumer`].
///
/// ```no_run
/// use barbridge::{Consumer, FifoFeed, FeedOptions, Subscription};
/// let consumer = Consumer::builder().build()?;
/// let bars = consumer.subscribe(Subscription::symbols(["SPY", "QQQ"])?);
/// let feed = FifoFeed::start(consumer.clone(), "/run/user/1000/barbridge/bars.fifo", FeedOptions::default())?;
/// for event in bars.iter().take(10) {
///     println!("{} {:?}", event.symbol, event.bar);
/// }
/// feed.stop();
/// feed.join()?;
/// # Ok::<(), barbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct FifoFeed {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), FifoError>>,
}

impl FifoFeed {
    /// Check (or create) the FIFO, then start the reader thread. Errors about the path come back
    /// here, before any thread runs.
    ///
    /// The feed takes the FIFO's reader lock (a second reader is refused with
    /// [`FifoError::Busy`]) and, before it opens the FIFO, publishes the writers' positions
    /// under a new consumer id, so that writers re-send what this consumer has not made durable
    /// (see [`crate::consumer::cursor`]). Call [`Consumer::resume_from_journal`] first.
    ///
    /// # Errors
    /// [`FifoError::InvalidOption`] for reader options out of range, the FIFO path is unusable
    /// ([`FifoError`]), or another reader holds it ([`FifoError::Busy`]).
    pub fn start(consumer: Arc<Consumer>, path: impl AsRef<Path>, options: FeedOptions) -> Result<FifoFeed, FifoError> {
        options.reader.validate()?;
        let path = path.as_ref().to_path_buf();
        prepare_fifo(&path)?;
        let reader_lock = lock_reader(&path)?;
        let journal = consumer.journal();
        let sync = journal.is_some_and(|j| j.policy() == crate::consumer::journal::FsyncPolicy::Always);
        let mut acks = AckPublisher::new(&path, journal.map(|j| j.dir()), sync);
        acks.publish(consumer.health.cursors(), true);
        log::info!("consumer instance {} (delivery cursor {})", acks.instance(), crate::consumer::cursor::ack_path(&path).display());
        let stop = options.stop_flag.clone().unwrap_or_default();
        let thread = {
            let (reader_path, stop) = (path.clone(), stop.clone());
            std::thread::Builder::new()
                .name("barbridge-fifo".into())
                .spawn(move || {
                    let _reader_lock = reader_lock;
                    let mut sink = FifoSinkAdapter {
                        consumer: &consumer,
                        stop_when_writers_gone: options.stop_when_writers_gone,
                        stamped: false,
                        acks,
                        held: Vec::new(),
                    };
                    let result = read_fifo(&reader_path, &options.reader, &stop, &mut sink);
                    consumer.flush();
                    sink.release_held();
                    sink.acknowledge(true);
                    // The durable cursor stays in the journal; the next consumer publishes anew.
                    let _ = std::fs::remove_file(crate::consumer::cursor::ack_path(&reader_path));
                    if let Err(e) = &result {
                        log::error!("FIFO reader stopped: {e}");
                    }
                    stop.store(true, Ordering::Relaxed);
                    result
                })
                .map_err(|source| FifoError::Open { path: path.clone(), source })?
        };
        Ok(FifoFeed { path, stop, thread })
    }

    /// The FIFO being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ask the reader to stop; it notices within one poll interval.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The flag that stops the reader (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// True once the reader thread has ended (stopped, or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the reader thread.
    ///
    /// # Errors
    /// The [`FifoError`] that ended the reader thread (the FIFO became unusable or unreadable), or [`FifoError::Read`] if the thread panicked.
    pub fn join(self) -> Result<(), FifoError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(FifoError::Read { path: self.path.clone(), source: std::io::Error::other("reader thread panicked") }))
    }
}
