//! [`NatsFeed`]: a JetStream durable consumer feeding a [`Consumer`], like [`crate::FifoFeed`].
//!
//! A prefetching pull: requests of 1,000 messages, the next one sent when half of the last is
//! left, so messages arrive while a chunk is ingested. Everything that has arrived (up to 1,000)
//! is ingested as one chunk. Each payload must be one bar or `updated_bar` (or trading status)
//! wire line on exactly its symbol's subject `bars.<feed>.<SYMBOL>` ([`StreamOptions::subject`]);
//! anything else (`bars.iex.EVIL.SPY` carrying SPY, a bar of QQQ on SPY's subject) is rejected
//! and counted like a bad FIFO line, and acknowledged (it would never get better). After a
//! chunk the journal is flushed, and the chunk's messages are acknowledged only once everything
//! is on disk (or at once without a journal), each ack sent without waiting for a reply: a
//! subscriber killed at any point resumes at the first message it had not journaled, and what
//! it gets again is recognised as a duplicate by the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;

use super::lease::Lease;

/// Messages per pull request, and at most per chunk ingested between two journal flushes.
const BATCH: usize = 1_000;
use super::{connect, runtime, wait_for_stream, NatsConnect, NatsError, StreamOptions};
use crate::consumer::Consumer;
use crate::wire::{parse_line, Line, WireError};

/// Options of a [`NatsFeed`].
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// The stream to read (created if absent, as the publisher would).
    pub stream: StreamOptions,
    /// The durable consumer's name: the server remembers its position across restarts. Two
    /// programs must not share one (they would split the bars between them).
    pub durable: String,
    /// For a durable created now: start at messages stored from this time (UTC epoch ms);
    /// default: everything the stream holds. An existing durable resumes where it stopped.
    pub since_ms: Option<i64>,
    /// Use this stop flag (e.g. one a signal handler sets) instead of a fresh one.
    pub stop_flag: Option<Arc<AtomicBool>>,
}

impl SubscribeOptions {
    /// The default stream, read through the durable consumer `durable`.
    pub fn new(durable: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions { stream: StreamOptions::default(), durable: durable.into(), since_ms: None, stop_flag: None }
    }
}

/// A thread feeding a JetStream stream into a [`Consumer`].
///
/// ```no_run
/// use barbridge::{Consumer, Subscription};
/// use barbridge::nats::{NatsConnect, NatsFeed, SubscribeOptions};
/// let consumer = Consumer::builder().build()?;
/// let bars = consumer.subscribe(Subscription::symbols(["SPY"])?);
/// // credentials from BARBRIDGE_NATS_* (e.g. BARBRIDGE_NATS_USER and BARBRIDGE_NATS_PASSWORD_FILE)
/// let server = NatsConnect::builder("nats://127.0.0.1:4222").from_env().build()?;
/// let feed = NatsFeed::start(consumer.clone(), server, SubscribeOptions::new("my-engine"))?;
/// for event in bars.iter().take(10) {
///     println!("{} {:?}", event.symbol, event.bar);
/// }
/// feed.stop();
/// feed.join()?;
/// # Ok::<(), barbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct NatsFeed {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), NatsError>>,
}

impl NatsFeed {
    /// Start the subscriber thread. Call [`Consumer::resume_from_journal`] first. An
    /// unreachable server is waited for (and logged), never an error; a server that refuses us
    /// ends the thread with [`NatsError::Refused`] ([`NatsFeed::join`]).
    ///
    /// # Errors
    /// [`NatsError::Thread`] when the thread cannot start.
    pub fn start(consumer: Arc<Consumer>, target: NatsConnect, options: SubscribeOptions) -> Result<NatsFeed, NatsError> {
        let stop = options.stop_flag.clone().unwrap_or_default();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("barbridge-nats".into())
                .spawn(move || {
                    let rt = runtime().map_err(NatsError::Thread)?;
                    let result = rt.block_on(subscribe(&consumer, &target, &options, &stop));
                    consumer.flush();
                    stop.store(true, Ordering::Relaxed);
                    if let Err(e) = &result {
                        log::error!("NATS subscriber stopped: {e}");
                    }
                    result
                })
                .map_err(NatsError::Thread)?
        };
        Ok(NatsFeed { stop, thread })
    }

    /// Ask the subscriber to stop; it notices within half a second.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The flag [`NatsFeed::stop`] sets (a signal handler can set it too).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// True once the subscriber thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the subscriber thread.
    ///
    /// # Errors
    /// What ended it: [`NatsError::Refused`] when the server refused us,
    /// [`NatsError::DurableInUse`], [`NatsError::BadSince`] for a start time out of range,
    /// [`NatsError::Thread`], or [`NatsError::Panicked`].
    pub fn join(self) -> Result<(), NatsError> {
        self.thread.join().unwrap_or(Err(NatsError::Panicked))
    }
}

fn pull_config(options: &SubscribeOptions) -> Result<pull::Config, NatsError> {
    let deliver_policy = match options.since_ms {
        None => DeliverPolicy::All,
        Some(ms) => {
            let start_time =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|_| NatsError::BadSince(ms.to_string()))?;
            DeliverPolicy::ByStartTime { start_time }
        }
    };
    Ok(pull::Config {
        durable_name: Some(options.durable.clone()),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 20_000,
        filter_subject: format!("bars.{}.>", options.stream.feed),
        ..Default::default()
    })
}

async fn subscribe(consumer: &Consumer, target: &NatsConnect, options: &SubscribeOptions, stop: &AtomicBool) -> Result<(), NatsError> {
    let config = pull_config(options)?;
    let Some(link) = connect(target, "subscriber", stop).await? else { return Ok(()) };
    let url = target.shown();
    let js = async_nats::jetstream::new(link.client.clone());
    let mut unacked: Vec<async_nats::jetstream::Message> = Vec::new();
    let mut failing = false;
    let mut lease: Option<Lease> = None;
    let mut result = Ok(());
    'attach: while !stop.load(Ordering::Relaxed) {
        // The publisher owns the stream and its settings: a subscriber waits for it.
        let stream = match wait_for_stream(&js, &options.stream, &link, stop).await {
            Ok(Some(stream)) => stream,
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if lease.is_none() {
            let replicas = stream.cached_info().config.num_replicas;
            match Lease::acquire(&js, &options.stream.name, &options.durable, replicas).await {
                Ok(Ok(held)) => lease = Some(held),
                Ok(Err(why)) => {
                    if let Err(e) = link.check() {
                        result = Err(e);
                        break;
                    }
                    if !failing {
                        log::warn!("cannot take the lease of durable {:?} yet ({why}); retrying", options.durable);
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let pull = match stream.get_or_create_consumer(&options.durable, config.clone()).await {
            Ok(c) => c,
            Err(e) => {
                if let Err(e) = link.check() {
                    result = Err(e);
                    break;
                }
                log::warn!("cannot attach durable consumer {:?} on stream {}: {e}; retrying", options.durable, options.stream.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        log::info!("subscribed to stream {} on {url} as durable {:?}", options.stream.name, options.durable);
        // A prefetching pull: the next messages are on their way while a chunk is ingested.
        // At most 1.5 × BATCH are requested ahead (the next request goes out when half of one
        // is left), far below the client's subscription buffer, so none is dropped there.
        let messages =
            match pull.stream().max_messages_per_batch(BATCH).expires(Duration::from_secs(30)).heartbeat(Duration::from_secs(5)).messages().await {
                Ok(m) => m,
                Err(e) => {
                    if let Err(e) = link.check() {
                        result = Err(e);
                        break;
                    }
                    log::warn!("cannot pull from durable consumer {:?} on stream {}: {e}; retrying", options.durable, options.stream.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
        let mut chunks = messages.ready_chunks(BATCH);
        let mut idle = tokio::time::interval(Duration::from_millis(250));
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = link.check() {
                result = Err(e);
                break 'attach;
            }
            if let Some(held) = lease.as_mut() {
                if let Err(e) = held.renew(&options.durable).await {
                    lease = None;
                    result = Err(e);
                    break 'attach;
                }
            }
            // Everything that has arrived, up to BATCH messages, or a tick when idle.
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                _ = idle.tick() => {
                    consumer.health().tick();
                    continue;
                }
            };
            let Some(chunk) = chunk else { continue 'attach };
            let mut broken = None;
            for message in chunk {
                match message {
                    Ok(m) => {
                        ingest_message(consumer, &options.stream, &m.subject, &m.payload);
                        unacked.push(m);
                    }
                    Err(e) => broken = Some(e),
                }
            }
            if !unacked.is_empty() {
                failing = false;
                consumer.health().on_message();
            }
            // On disk first, then acknowledged.
            consumer.flush();
            if consumer.durable() {
                ack(&mut unacked).await;
            }
            if let Some(e) = broken {
                if !failing {
                    log::warn!("receiving from stream {} failed: {e}; pulling again", options.stream.name);
                    failing = true;
                }
                continue 'attach;
            }
        }
    }
    consumer.flush();
    if consumer.durable() {
        // Bounded: with the server gone, a stop must not wait for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), ack(&mut unacked)).await;
    }
    if let Some(held) = lease {
        let _ = tokio::time::timeout(Duration::from_secs(2), held.release()).await;
    }
    result
}

/// Acknowledge each message of `unacked` (journaled already), without waiting for a reply: a
/// lost ack only means the message comes again and is recognised as a duplicate. Not
/// `AckPolicy::All` (one ack per chunk): the server applies such an ack to every message
/// delivered before it, including messages delivered to a subscriber killed before it journaled
/// them, or lost with a dropped connection, which would then never come again.
async fn ack(unacked: &mut Vec<async_nats::jetstream::Message>) {
    for message in unacked.drain(..) {
        if let Err(e) = message.ack().await {
            log::debug!("ack failed ({e}): the message comes again and is recognised as a duplicate");
        }
    }
}

/// Ingest one message: a bar or trading status line on exactly its symbol's subject, else a
/// counted reject.
fn ingest_message(consumer: &Consumer, stream: &StreamOptions, subject: &str, payload: &[u8]) {
    match parse_line(payload) {
        Ok(Line::Bar(b)) => {
            if subject != stream.subject(&b.symbol) {
                let detail = format!("a message on {subject} carries a bar of {}", b.symbol);
                consumer.ingest_rejected(&WireError::WrongType { detail }, payload);
                return;
            }
            // The sidecar's receipt time rides along; the store time is this subscriber's own.
            let _ = consumer.ingest_bar_received(&b.symbol, b.bar, b.kind, b.source, b.received_ms);
        }
        Ok(Line::TradingStatus(t)) => {
            if subject != stream.subject(&t.status.symbol) {
                let detail = format!("a message on {subject} carries a trading status of {}", t.status.symbol);
                consumer.ingest_rejected(&WireError::WrongType { detail }, payload);
                return;
            }
            let _ = consumer.ingest_trading_status(t.status);
        }
        // Closed minutes and quiet marks on the feed's minute subject (docs/ARCHITECTURE.md,
        // "Minute barrier").
        Ok(Line::MinuteClosed(m)) if subject == stream.minute_subject() => {
            let _ = consumer.ingest_minute_part(m.writer.as_deref().unwrap_or(""), m.part);
        }
        Ok(Line::MinuteQuiet(m)) if subject == stream.minute_subject() => {
            let _ = consumer.ingest_minute_quiet(m.writer.as_deref().unwrap_or(""), m.minute_ms, &m.quiet);
        }
        Ok(_) => {
            let detail = format!("a message on {subject} is not a bar line");
            consumer.ingest_rejected(&WireError::WrongType { detail }, payload);
        }
        Err(e) => consumer.ingest_rejected(&e, payload),
    }
}
