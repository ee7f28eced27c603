//! Fan-out over NATS JetStream (cargo feature `nats`): one sidecar, any number of engines on
//! any number of hosts.
//!
//! ```text
//! FIFO ─▶ barbridge run --journal J --publish nats://…   (NatsPublisher: journal day files, in order,
//!                                                          from J/publish-cursor.json)
//!                 ▼
//!         JetStream stream BARS, subjects bars.<feed>.<SYMBOL>, payload = the journal's wire line
//!                 ▼
//! barbridge run --source nats://… --durable NAME   (NatsFeed: a durable pull consumer; a message
//!                                                   is acknowledged once its bar is journaled)
//! ```
//!
//! * [`NatsPublisher`] never sits in the ingest path: it reads what the journal already wrote, so a
//!   NATS outage only grows a backlog on disk (shown in the status and the logs) that drains
//!   when NATS returns. Every message carries `Nats-Msg-Id` [`msg_id`]: the server drops what a
//!   restarted publisher sends again within the stream's duplicate window.
//! * [`NatsFeed`] has the shape of [`crate::FifoFeed`]: it feeds the same [`crate::Consumer`]
//!   (store, journal, status, subscribers, echo).
//!
//! Each runs one small current-thread tokio runtime on a thread of its own; the rest of the
//! crate stays thread-based.

mod check;
mod connect;
mod lease;
mod options;
mod publish;
mod subscribe;

pub use check::{check_server, CheckFailed, CheckReport};
pub use connect::{
    mask_url, NatsConnect, NatsConnectBuilder, ENV_CA, ENV_CERT, ENV_CREDS, ENV_KEY, ENV_NKEY, ENV_NKEY_FILE, ENV_PASSWORD, ENV_PASSWORD_FILE,
    ENV_TLS, ENV_TOKEN, ENV_TOKEN_FILE, ENV_USER,
};
pub use lease::{lease_subject, LEASE_STREAM, RENEW_EVERY, STALE_AFTER};
pub use options::{validate_feed, StreamOptionsError};

pub use publish::{NatsPublisher, PublishStatus, PUBLISH_CURSOR_FILE};
pub use subscribe::{NatsFeed, SubscribeOptions};

use std::time::Duration;

use connect::{connect, Link};

/// Errors of the NATS fan-out that end a [`NatsPublisher`] or [`NatsFeed`] (or stop them starting).
/// Unreachable servers are not errors: both wait and retry, logging the outage. A server that
/// refuses us is ([`NatsError::Refused`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// Not a `nats://HOST:PORT` or `tls://HOST:PORT` URL (or a comma-separated list of them).
    #[error("{url:?} is not a NATS URL (expected nats://HOST:PORT or tls://HOST:PORT)")]
    BadUrl {
        /// The URL given, its password or token masked.
        url: String,
    },
    /// A connection setting that cannot work (two ways to authenticate, an unreadable or
    /// world-readable secret file, a certificate without its key, …): one sentence.
    #[error("{0}")]
    Config(String),
    /// The server refused us: wrong credentials, an untrusted certificate, a permission denied
    /// on a subject or the stream. Never retried.
    #[error("NATS {server} refused {what}")]
    Refused {
        /// The server URL(s), password masked.
        server: String,
        /// What was refused, and why.
        what: String,
    },
    /// The thread or its tokio runtime could not start.
    #[error("cannot start the NATS thread: {0}")]
    Thread(std::io::Error),
    /// The journal directory the publisher reads cannot be listed.
    #[error("cannot read the journal {dir} for publishing: {source}")]
    Journal {
        /// The journal directory.
        dir: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A `--since` time that is neither RFC 3339 nor a date.
    #[error("--since {0:?} is not a time (expected RFC 3339, e.g. 2026-12-02T14:30:00Z, or a date YYYY-MM-DD)")]
    BadSince(String),
    /// The thread panicked (a bug; its message went to the log).
    #[error("the NATS thread panicked")]
    Panicked,
    /// Another live subscriber holds the lease on this durable name (module `lease`).
    #[error("durable consumer {durable:?} is in use by another live subscriber ({holder}); give this one its own --durable NAME (two subscribers on one durable would split the bars between them)")]
    DurableInUse {
        /// The durable consumer's name.
        durable: String,
        /// Who holds it: `host pid nonce`.
        holder: String,
    },
}

/// The JetStream stream the bars go to, and how it is created when absent.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Stream name (default `BARS`).
    pub name: String,
    /// The `<feed>` token of the subjects `bars.<feed>.<SYMBOL>` (default `iex`).
    pub feed: String,
    /// Replicas in a cluster (default 1).
    pub replicas: usize,
    /// File storage (default) or memory.
    pub memory: bool,
    /// How long a message is kept (default 7 days).
    pub max_age: Duration,
    /// Window in which the server drops a message whose `Nats-Msg-Id` it has seen (default 2 h:
    /// a publisher restart plus the sidecar's backfill look-back).
    pub duplicate_window: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            name: "BARS".into(),
            feed: "iex".into(),
            replicas: 1,
            memory: false,
            max_age: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(2 * 3_600),
        }
    }
}

impl StreamOptions {
    /// The subject of the minute barrier's lines (`minute_closed`, `minute_quiet`):
    /// `bars.<feed>._minute` (lower case: no symbol's token can be it).
    pub fn minute_subject(&self) -> String {
        format!("bars.{}._minute", self.feed)
    }

    /// The subject of `symbol`'s bars: `bars.<feed>.<SYMBOL>`.
    pub fn subject(&self, symbol: &str) -> String {
        format!("bars.{}.{}", self.feed, subject_token(symbol))
    }

    fn config(&self) -> async_nats::jetstream::stream::Config {
        use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
        Config {
            name: self.name.clone(),
            subjects: vec![format!("bars.{}.>", self.feed)],
            storage: if self.memory { StorageType::Memory } else { StorageType::File },
            num_replicas: self.replicas,
            retention: RetentionPolicy::Limits,
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }
}

/// A symbol as one subject token: `.`, `*`, `>`, `%` and control or space characters (never in
/// a valid symbol, but a token must not contain them) are written `%XX`, so `BRK.B` is
/// `BRK%2EB`.
pub fn subject_token(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len());
    for c in symbol.chars() {
        if matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() || c.is_control() {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `Nats-Msg-Id` of a journal record: `SYMBOL:timestamp_ms:revision`. The first report of a
/// minute has revision 0; a correction's revision is its byte offset in the day file, so every
/// correction is a message of its own while a record published again keeps its id.
pub fn msg_id(symbol: &str, timestamp_ms: i64, revision: u64) -> String {
    format!("{symbol}:{timestamp_ms}:{revision}")
}

/// Create the stream if absent (or find it), retrying while JetStream is unavailable.
async fn ensure_stream(
    js: &async_nats::jetstream::Context,
    options: &StreamOptions,
    link: &Link,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<async_nats::jetstream::stream::Stream>, NatsError> {
    let not_usable = |e: &async_nats::jetstream::context::CreateStreamError| format!("is not usable yet ({e}); retrying every second");
    // The lease stream first: a subscriber may then find it instead of having to create it
    // (which the launcher's NATS=local subscriber identity may not do).
    let leases = lease::stream_config(options.replicas);
    if retry_stream(lease::LEASE_STREAM, link, stop, || js.get_or_create_stream(leases.clone()), not_usable, "is usable again").await?.is_none() {
        return Ok(None);
    }
    retry_stream(&options.name, link, stop, || js.get_or_create_stream(options.config()), not_usable, "is usable again").await
}

/// Wait for the stream to exist (the publisher creates it; a subscriber never does, so the
/// stream's settings are the publisher's alone). Logs once while waiting.
async fn wait_for_stream(
    js: &async_nats::jetstream::Context,
    options: &StreamOptions,
    link: &Link,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<async_nats::jetstream::stream::Stream>, NatsError> {
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    let waiting = |e: &GetStreamError| match e.kind() {
        GetStreamErrorKind::JetStream(j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND => {
            "does not exist yet: waiting for the publisher (barbridge run --publish) to create it".to_string()
        }
        _ => format!("is not usable yet ({e}); retrying every second"),
    };
    retry_stream(&options.name, link, stop, || js.get_stream(&options.name), waiting, "is there: subscribing").await
}

/// Try `attempt` every second until it gives the stream (`Ok(Some)`) or `stop` is set
/// (`Ok(None)`). The first failure is logged once (`waiting` says why), and a success after it
/// once (`ready`). A refusal by the server (a permission denied) ends the wait with
/// [`NatsError::Refused`].
async fn retry_stream<E, Fut>(
    name: &str,
    link: &Link,
    stop: &std::sync::atomic::AtomicBool,
    mut attempt: impl FnMut() -> Fut,
    waiting: impl Fn(&E) -> String,
    ready: &str,
) -> Result<Option<async_nats::jetstream::stream::Stream>, NatsError>
where
    Fut: std::future::Future<Output = Result<async_nats::jetstream::stream::Stream, E>>,
{
    let mut logged = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let result = attempt().await;
        link.check()?;
        match result {
            Ok(stream) => {
                if logged {
                    log::info!("JetStream stream {name} {ready}");
                }
                return Ok(Some(stream));
            }
            Err(e) => {
                if !logged {
                    log::warn!("JetStream stream {name} {}", waiting(&e));
                    logged = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                link.check()?;
            }
        }
    }
    Ok(None)
}

/// A current-thread runtime for one NATS thread.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Parse `--since`: RFC 3339, or a date (its midnight UTC).
///
/// # Errors
/// [`NatsError::BadSince`].
pub fn parse_since(text: &str) -> Result<i64, NatsError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| NatsError::BadSince(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_become_single_subject_tokens() {
        assert_eq!(subject_token("SPY"), "SPY");
        assert_eq!(subject_token("BRK.B"), "BRK%2EB");
        assert_eq!(subject_token("BTC/USD"), "BTC/USD");
        assert_eq!(StreamOptions::default().subject("A*>"), "bars.iex.A%2A%3E");
    }

    #[test]
    fn urls_and_since() {
        assert!(NatsConnect::new("nats://127.0.0.1:4222").is_ok());
        assert!(NatsConnect::new("nats://a:1,nats://b:2").is_ok());
        assert!(NatsConnect::new("http://x").is_err());
        assert_eq!(parse_since("2025-10-08T13:28:00Z").unwrap(), 1_759_930_080_000);
        assert_eq!(parse_since("2025-10-08").unwrap(), 1_759_881_600_000);
        assert!(parse_since("yesterday").is_err());
    }
}
