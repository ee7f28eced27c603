//! `run`'s NATS flags: `--publish nats://…` and `--source nats://…` (cargo feature `nats`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
#[cfg(feature = "nats")]
use std::sync::atomic::Ordering;
use std::sync::Arc;
#[cfg(feature = "nats")]
use std::sync::Mutex;

/// How to authenticate to NATS and whether to use TLS, for `run` and `nats-check`. Secrets are
/// given as files (or in the environment: BARBRIDGE_NATS_PASSWORD, BARBRIDGE_NATS_TOKEN,
/// BARBRIDGE_NATS_NKEY), never as values on the command line, where `ps` shows them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NatsAuthArgs {
    /// NATS user name, with --nats-password-file (or BARBRIDGE_NATS_PASSWORD) [env: BARBRIDGE_NATS_USER].
    #[arg(long, value_name = "NAME")]
    pub nats_user: Option<String>,
    /// File holding the NATS user's password (mode 0600) [env: BARBRIDGE_NATS_PASSWORD_FILE].
    #[arg(long, value_name = "FILE")]
    pub nats_password_file: Option<PathBuf>,
    /// File holding a NATS token (mode 0600) [env: BARBRIDGE_NATS_TOKEN_FILE, or the token in BARBRIDGE_NATS_TOKEN].
    #[arg(long, value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// File holding an nkey seed, SU... (mode 0600) [env: BARBRIDGE_NATS_NKEY_FILE, or the seed in BARBRIDGE_NATS_NKEY].
    #[arg(long, value_name = "FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// A NATS .creds file, user JWT and seed (mode 0600) [env: BARBRIDGE_NATS_CREDS].
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// Require TLS (implied by tls:// URLs, --nats-ca and --nats-cert) [env: BARBRIDGE_NATS_TLS=1].
    #[arg(long)]
    pub nats_tls: bool,
    /// Trust the root certificates in this PEM file instead of the system's [env: BARBRIDGE_NATS_CA].
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --nats-key [env: BARBRIDGE_NATS_CERT].
    #[arg(long, value_name = "FILE")]
    pub nats_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, mode 0600) [env: BARBRIDGE_NATS_KEY].
    #[arg(long, value_name = "FILE")]
    pub nats_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// The connection settings for `url`: these flags over the BARBRIDGE_NATS_* environment.
    /// A URL with a password or token typed on the command line is refused (`ps` shows it).
    #[cfg(feature = "nats")]
    pub fn connect(&self, url: &str, env_name: &str) -> Result<barbridge::nats::NatsConnect, String> {
        let masked = barbridge::nats::mask_url(url);
        if masked != url && std::env::args_os().any(|a| a.to_string_lossy().contains(url)) {
            return Err(format!(
                "the NATS URL {masked} holds a password or token on the command line, where every local user sees it (ps); pass the URL in {env_name} instead, or the password with --nats-user and --nats-password-file"
            ));
        }
        let mut b = barbridge::nats::NatsConnect::builder(url);
        if let Some(user) = &self.nats_user {
            b = b.user(user);
        }
        if let Some(f) = &self.nats_password_file {
            b = b.password_file(f);
        }
        if let Some(f) = &self.nats_token_file {
            b = b.token_file(f);
        }
        if let Some(f) = &self.nats_nkey_file {
            b = b.nkey_file(f);
        }
        if let Some(f) = &self.nats_creds {
            b = b.creds_file(f);
        }
        if let Some(f) = &self.nats_ca {
            b = b.root_ca(f);
        }
        match (&self.nats_cert, &self.nats_key) {
            (Some(c), Some(k)) => b = b.client_cert(c, k),
            (None, None) => {}
            _ => return Err("a NATS client certificate needs both --nats-cert and --nats-key".into()),
        }
        b.require_tls(self.nats_tls).from_env().build().map_err(|e| e.to_string())
    }
}

/// NATS JetStream fan-out (needs a build with `--features nats`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NatsArgs {
    /// Publish every journaled bar and correction to this NATS server's JetStream
    /// (nats://HOST:PORT; several comma-separated for a cluster). Needs --journal.
    #[arg(long, env = "BARBRIDGE_PUBLISH", value_name = "URL")]
    pub publish: Option<String>,
    /// Read bars from this NATS server's JetStream stream instead of the FIFO
    /// (nats://HOST:PORT or tls://HOST:PORT; several comma-separated for a cluster).
    #[arg(long, env = "BARBRIDGE_SOURCE", value_name = "URL")]
    pub source: Option<String>,
    /// With --source: the durable consumer's name (the server remembers its position); default:
    /// barbridge-<host>-<hash of the status file path>.
    #[arg(long)]
    pub durable: Option<String>,
    /// With --source, for a new durable: replay the stream from this time (RFC 3339 or
    /// YYYY-MM-DD); default: everything the stream holds.
    #[arg(long)]
    pub since: Option<String>,
    /// JetStream stream name.
    #[arg(long, default_value = "BARS")]
    pub stream: String,
    /// The <feed> token of the subjects bars.<feed>.<SYMBOL>.
    #[arg(long, default_value = "iex")]
    pub feed: String,
    /// With --publish: replicas of the stream when the publisher creates it (a cluster). A
    /// subscriber never creates the stream: it waits for the publisher to.
    #[arg(long, default_value_t = 1)]
    pub stream_replicas: usize,
    /// With --publish: keep the stream in memory instead of files when it is created.
    #[arg(long)]
    pub stream_memory: bool,
    /// With --publish: hours a message is kept, when the stream is created.
    #[arg(long, default_value_t = 168.0)]
    pub stream_max_age_hours: f64,
    /// With --publish: minutes in which the server drops a message id it has seen, when the
    /// stream is created (covers a publisher restart and the sidecar's backfill look-back).
    #[arg(long, default_value_t = 120.0)]
    pub stream_duplicate_window_minutes: f64,
    #[command(flatten)]
    pub auth: NatsAuthArgs,
}

/// What `run` reads from.
pub enum Feed {
    Fifo(barbridge::FifoFeed),
    #[cfg(feature = "nats")]
    Nats(barbridge::nats::NatsFeed),
}

impl Feed {
    /// Ask the feed to stop.
    pub fn stop(&self) {
        match self {
            Feed::Fifo(f) => f.stop(),
            #[cfg(feature = "nats")]
            Feed::Nats(f) => f.stop(),
        }
    }

    /// Wait for the feed to end; `Err((2, sentence))` for a setting to fix (another subscriber
    /// on the same --durable), `Err((1, sentence))` for any other failure.
    pub fn join(self) -> Result<(), (u8, String)> {
        match self {
            Feed::Fifo(f) => f.join().map_err(|e| (1, e.to_string())),
            #[cfg(feature = "nats")]
            Feed::Nats(f) => f.join().map_err(|e| (nats_exit_code(&e), e.to_string())),
        }
    }
}

/// 2 for what a setting must fix (a refusal by the server, another subscriber on the durable),
/// 1 otherwise.
#[cfg(feature = "nats")]
fn nats_exit_code(e: &barbridge::nats::NatsError) -> u8 {
    use barbridge::nats::NatsError;
    if matches!(e, NatsError::DurableInUse { .. } | NatsError::Refused { .. } | NatsError::Config(_) | NatsError::BadUrl { .. }) {
        2
    } else {
        1
    }
}

/// A running publisher (or nothing).
pub struct Publishing {
    #[cfg(feature = "nats")]
    publisher: Arc<Mutex<Option<barbridge::nats::NatsPublisher>>>,
}

impl Publishing {
    /// Stop the publisher; `Err((code, sentence))` when it had ended on its own with an error
    /// (e.g. the server refused it), which is then the run's exit.
    pub fn stop(self) -> Result<(), (u8, String)> {
        #[cfg(feature = "nats")]
        if let Some(p) = self.publisher.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let failed = p.is_finished();
            p.stop();
            // An acknowledgement in flight waits at most a few seconds; what is not acknowledged
            // is published again by the next start (and dropped by the server if it had it).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !p.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if !p.is_finished() {
                log::warn!("the publisher did not stop within 5 s; its position is saved up to the last acknowledged record");
            } else if let Err(e) = p.join() {
                if failed {
                    return Err((nats_exit_code(&e), e.to_string()));
                }
                log::error!("{e}");
            }
        }
        Ok(())
    }
}

#[cfg(feature = "nats")]
/// The default durable name: stable for one status file on one host.
fn default_durable(status_file: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let path = std::path::absolute(status_file).unwrap_or_else(|_| status_file.to_path_buf());
    // FNV-1a: stable across builds and runs.
    let hash = path.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("barbridge-{host}-{:08x}", hash as u32)
}

impl NatsArgs {
    /// Check the flags before anything starts: one sentence on error.
    pub fn check(&self, journal: bool) -> Result<(), String> {
        if self.publish.is_none() && self.source.is_none() {
            if self.durable.is_some() || self.since.is_some() {
                return Err("--durable and --since go with --source nats://HOST:PORT".into());
            }
            return Ok(());
        }
        if !cfg!(feature = "nats") {
            return Err("this barbridge was built without NATS support; rebuild it with `cargo build --release --features nats`".into());
        }
        if self.publish.is_some() && !journal {
            return Err("--publish needs --journal DIR: the journal is the publisher's durable backlog".into());
        }
        #[cfg(feature = "nats")]
        {
            // false for NaN too, which no Duration holds; the bound keeps from_secs_f64 from overflowing
            let positive = |v: f64| v > 0.0 && v <= 1_000_000.0;
            if !positive(self.stream_max_age_hours) || !positive(self.stream_duplicate_window_minutes) {
                return Err(barbridge::nats::StreamOptionsError::NotPositive.to_string());
            }
            // The stream's own rules live in the library (barbridge::nats::StreamOptions::validate).
            self.stream_options().validate().map_err(|e| e.to_string())?;
            if let Some(url) = &self.publish {
                self.auth.connect(url, "BARBRIDGE_PUBLISH")?;
            }
            if let Some(url) = &self.source {
                self.auth.connect(url, "BARBRIDGE_SOURCE")?;
            }
            if let Some(since) = &self.since {
                barbridge::nats::parse_since(since).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    #[cfg(feature = "nats")]
    fn stream_options(&self) -> barbridge::nats::StreamOptions {
        barbridge::nats::StreamOptions {
            name: self.stream.clone(),
            feed: self.feed.clone(),
            replicas: self.stream_replicas,
            memory: self.stream_memory,
            max_age: std::time::Duration::from_secs_f64(self.stream_max_age_hours * 3600.0),
            duplicate_window: std::time::Duration::from_secs_f64(self.stream_duplicate_window_minutes * 60.0),
        }
    }

    /// Start the feed: the FIFO, or with --source the stream. (The status file's lock, which
    /// keeps two subscribers off one status file, is the status writer's: `StatusWriter::start`.)
    pub fn start_feed(
        &self,
        consumer: &Arc<barbridge::Consumer>,
        fifo: &Path,
        status_file: &Path,
        options: barbridge::FeedOptions,
    ) -> Result<(Feed, Option<PathBuf>), String> {
        #[cfg(feature = "nats")]
        if let Some(url) = &self.source {
            let subscribe = barbridge::nats::SubscribeOptions {
                stream: self.stream_options(),
                durable: self.durable.clone().unwrap_or_else(|| default_durable(status_file)),
                since_ms: self.since.as_deref().map(barbridge::nats::parse_since).transpose().map_err(|e| e.to_string())?,
                stop_flag: options.stop_flag.clone(),
            };
            let target = self.auth.connect(url, "BARBRIDGE_SOURCE")?;
            log::info!("reading stream {} from {} as durable {:?}", subscribe.stream.name, target.shown(), subscribe.durable);
            let feed = barbridge::nats::NatsFeed::start(consumer.clone(), target, subscribe).map_err(|e| e.to_string())?;
            return Ok((Feed::Nats(feed), None));
        }
        let _ = status_file;
        let feed = barbridge::FifoFeed::start(consumer.clone(), fifo, options).map_err(|e| e.to_string())?;
        Ok((Feed::Fifo(feed), Some(fifo.to_path_buf())))
    }

    /// Start publishing the journal when --publish is given; its state goes into the status
    /// file's `sections.publish`. When the publisher ends on its own (the server refused it),
    /// `stop` is set so that the run ends too, with the publisher's error.
    pub fn start_publishing(
        &self,
        consumer: &Arc<barbridge::Consumer>,
        journal_dir: Option<&Path>,
        stop: Arc<AtomicBool>,
    ) -> Result<Publishing, String> {
        #[cfg(feature = "nats")]
        if let (Some(url), Some(dir)) = (&self.publish, journal_dir) {
            let target = self.auth.connect(url, "BARBRIDGE_PUBLISH")?;
            let publisher = barbridge::nats::NatsPublisher::start(target, dir, self.stream_options()).map_err(|e| e.to_string())?;
            // Woken by each journal write instead of polling (docs/ARCHITECTURE.md, NATS).
            if let Some(journal) = consumer.journal() {
                journal.on_written(publisher.waker());
            }
            let status = publisher.status_handle();
            consumer
                .add_status_section("publish", move || serde_json::to_value(&*status.lock().unwrap_or_else(|e| e.into_inner())).unwrap_or_default());
            let publisher = Arc::new(Mutex::new(Some(publisher)));
            let watched = Arc::downgrade(&publisher);
            std::thread::Builder::new()
                .name("barbridge-publish-watch".into())
                .spawn(move || {
                    while let Some(p) = watched.upgrade() {
                        let ended = p.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|p| p.is_finished());
                        if ended {
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                        drop(p);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
            return Ok(Publishing { publisher });
        }
        let _ = (consumer, journal_dir, stop);
        Ok(Publishing {
            #[cfg(feature = "nats")]
            publisher: Arc::default(),
        })
    }

    /// The URL `run` reads from, for its log line (password masked).
    pub fn source_shown(&self) -> Option<String> {
        #[cfg(feature = "nats")]
        return self.source.as_deref().map(barbridge::nats::mask_url);
        #[cfg(not(feature = "nats"))]
        self.source.clone()
    }
}

/// `barbridge nats-check URL`.
#[derive(clap::Args, Clone, Debug)]
pub struct NatsCheckArgs {
    /// nats://HOST:PORT or tls://HOST:PORT (several comma-separated for a cluster).
    #[arg(env = "BARBRIDGE_NATS_URL")]
    pub url: String,
    /// JetStream stream name.
    #[arg(long, default_value = "BARS")]
    pub stream: String,
    /// The <feed> token of the subjects bars.<feed>.<SYMBOL>.
    #[arg(long, default_value = "iex")]
    pub feed: String,
    /// Seconds to wait for the server.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub auth: NatsAuthArgs,
}

impl NatsCheckArgs {
    /// Print `  ok    <sentence>` per passed check, or `  FAIL  <sentence>` and exit 2.
    pub fn run(self) -> std::process::ExitCode {
        #[cfg(feature = "nats")]
        {
            let target = match self.auth.connect(&self.url, "BARBRIDGE_NATS_URL") {
                Ok(t) => t,
                Err(e) => {
                    println!("  FAIL  {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            let stream = barbridge::nats::StreamOptions { name: self.stream, feed: self.feed, ..Default::default() };
            let timeout = std::time::Duration::from_secs_f64(self.timeout.clamp(0.1, 60.0));
            match barbridge::nats::check_server(&target, &stream, timeout) {
                Ok(report) => {
                    for line in report.lines {
                        println!("  ok    {line}");
                    }
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    let fix = if e.0.contains(" refused ") {
                        "give the credentials, CA and client certificate the server expects (NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY, NATS_CREDS, NATS_CA, NATS_CERT/NATS_KEY), or the permissions it lacks"
                    } else {
                        "start nats-server with JetStream (-js) there, or correct NATS_URL"
                    };
                    println!("  FAIL  {e}. Fix: {fix}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        #[cfg(not(feature = "nats"))]
        {
            let _ = self;
            eprintln!("barbridge: this barbridge was built without NATS support; rebuild it with `cargo build --release --features nats`");
            std::process::ExitCode::from(2)
        }
    }
}
