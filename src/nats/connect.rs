//! [`NatsConnect`]: which NATS server(s), as whom and over what. The one options type of every
//! NATS entry point (`run --publish`/`--source`, `nats-check`, [`super::NatsPublisher`],
//! [`super::NatsFeed`], Python's `NatsFeed`), built and checked by [`NatsConnectBuilder`].
//!
//! * Credentials: user and password, a token, an nkey seed or a `.creds` file (the client
//!   library's own mechanisms, async-nats `ConnectOptions`). Also in the URL:
//!   `nats://USER:PASSWORD@HOST:PORT` or `nats://TOKEN@HOST:PORT`.
//! * TLS: `tls://` URLs or [`NatsConnectBuilder::require_tls`], a root CA of one's own, a client
//!   certificate and key.
//! * Secrets come from files or the environment ([`NatsConnectBuilder::from_env`]), never from a
//!   command line. A secret file is read again at every (re)connection, so a rotated password
//!   (e.g. the launcher's `NATS=local`, new every run) is picked up; it must not be readable by
//!   other users. Secrets appear in no log line, status or error: [`NatsConnect::shown`] and
//!   [`mask_url`] give the URL with its password or token written `***`.
//! * A server that refuses us (wrong credentials, an untrusted certificate, a permission
//!   denied) ends the publisher or subscriber with [`NatsError::Refused`], one sentence naming
//!   the server and what it refused; an unreachable server is waited for, as before.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::NatsError;

/// Environment variable: the NATS user name.
pub const ENV_USER: &str = "BARBRIDGE_NATS_USER";
/// Environment variable: the user's password (the value).
pub const ENV_PASSWORD: &str = "BARBRIDGE_NATS_PASSWORD";
/// Environment variable: a file holding the password.
pub const ENV_PASSWORD_FILE: &str = "BARBRIDGE_NATS_PASSWORD_FILE";
/// Environment variable: an authentication token (the value).
pub const ENV_TOKEN: &str = "BARBRIDGE_NATS_TOKEN";
/// Environment variable: a file holding the token.
pub const ENV_TOKEN_FILE: &str = "BARBRIDGE_NATS_TOKEN_FILE";
/// Environment variable: an nkey seed (the value, `SU…`).
pub const ENV_NKEY: &str = "BARBRIDGE_NATS_NKEY";
/// Environment variable: a file holding an nkey seed.
pub const ENV_NKEY_FILE: &str = "BARBRIDGE_NATS_NKEY_FILE";
/// Environment variable: a `.creds` file (user JWT and seed).
pub const ENV_CREDS: &str = "BARBRIDGE_NATS_CREDS";
/// Environment variable: `1` to require TLS.
pub const ENV_TLS: &str = "BARBRIDGE_NATS_TLS";
/// Environment variable: a PEM file of root certificates to trust (instead of the system's).
pub const ENV_CA: &str = "BARBRIDGE_NATS_CA";
/// Environment variable: a PEM client certificate (with [`ENV_KEY`]).
pub const ENV_CERT: &str = "BARBRIDGE_NATS_CERT";
/// Environment variable: the client certificate's PEM private key.
pub const ENV_KEY: &str = "BARBRIDGE_NATS_KEY";

/// A secret: a value (from the environment or an API caller), or a file read at each use.
#[derive(Clone)]
enum Secret {
    Value(String),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Value(***)"),
            Secret::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

impl Secret {
    /// The secret, trimmed; one sentence when it cannot be read or is empty.
    fn read(&self, what: &str) -> Result<String, String> {
        let text = match self {
            Secret::Value(v) => v.clone(),
            Secret::File(path) => read_secret_file(path, what)?,
        };
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(match self {
                Secret::Value(_) => format!("the NATS {what} is empty"),
                Secret::File(path) => format!("the NATS {what} file {} is empty", path.display()),
            });
        }
        Ok(text)
    }
}

/// Read a file holding a secret: it must not be readable by other users, nor writable by anyone
/// but its owner (who could swap the credentials we present).
fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the NATS {what} file {}: {e}", path.display()))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o026 != 0 {
        return Err(format!(
            "the NATS {what} file {} is open to other users (mode {mode:03o}); make it private with `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    if meta.len() > 64 * 1024 {
        return Err(format!("the NATS {what} file {} is larger than 64 KiB; it is not a {what}", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the NATS {what} file {}: {e}", path.display()))
}

/// How we authenticate.
#[derive(Clone, Debug)]
enum Auth {
    None,
    UserPassword { user: String, password: Secret },
    Token(Secret),
    NKey(Secret),
    Creds(PathBuf),
}

impl Auth {
    /// Who we are, for a sentence: `user "x"`, `a token`, `nkey UAB…`, …
    fn describe(&self) -> String {
        match self {
            Auth::None => "no credentials".into(),
            Auth::UserPassword { user, .. } => format!("user {user:?}"),
            Auth::Token(_) => "a token".into(),
            Auth::NKey(seed) => match seed.read("nkey seed").ok().and_then(|s| nkeys::KeyPair::from_seed(&s).ok()) {
                Some(pair) => format!("nkey {}", pair.public_key()),
                None => "an nkey".into(),
            },
            Auth::Creds(path) => format!("the credentials in {}", path.display()),
        }
    }
}

/// Where and how to connect. Built by [`NatsConnect::builder`] (or [`NatsConnect::new`] for a
/// plain URL); cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsConnect {
    servers: Vec<String>,
    shown: String,
    auth: Auth,
    tls: bool,
    ca: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    timeout: Duration,
}

/// Builds a [`NatsConnect`]; [`NatsConnectBuilder::build`] checks everything at once.
#[derive(Clone, Debug, Default)]
pub struct NatsConnectBuilder {
    url: String,
    user: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    nkey: Option<Secret>,
    creds: Option<PathBuf>,
    tls: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    timeout: Option<Duration>,
    /// Credentials from the environment: used only when neither the URL nor a setter gives any.
    env_auth: Option<Credentials>,
}

/// One source's credentials, before they are checked.
#[derive(Clone, Debug, Default)]
struct Credentials {
    user: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    nkey: Option<Secret>,
    creds: Option<PathBuf>,
}

impl Credentials {
    /// The ways to authenticate given, each named for a sentence.
    fn methods(self, from: &str) -> Result<Vec<(String, Auth)>, NatsError> {
        let mut methods = Vec::new();
        match (self.user, self.password) {
            (Some(user), Some(password)) => methods.push((format!("a user and password{from}"), Auth::UserPassword { user, password })),
            (Some(user), None) => {
                return Err(NatsError::Config(format!(
                    "NATS user {user:?} has no password; give it in a file (--nats-password-file) or {ENV_PASSWORD}"
                )))
            }
            (None, Some(_)) => return Err(NatsError::Config(format!("a NATS password is given without a user; add --nats-user or {ENV_USER}"))),
            (None, None) => {}
        }
        if let Some(token) = self.token {
            methods.push((format!("a token{from}"), Auth::Token(token)));
        }
        if let Some(seed) = self.nkey {
            methods.push((format!("an nkey seed{from}"), Auth::NKey(seed)));
        }
        if let Some(creds) = self.creds {
            methods.push((format!("a credentials file{from}"), Auth::Creds(creds)));
        }
        Ok(methods)
    }
}

impl NatsConnect {
    /// A builder for `url`: `nats://HOST:PORT` or `tls://HOST:PORT`, several comma-separated for
    /// a cluster, optionally `nats://USER:PASSWORD@HOST:PORT` or `nats://TOKEN@HOST:PORT`.
    pub fn builder(url: impl Into<String>) -> NatsConnectBuilder {
        NatsConnectBuilder { url: url.into(), ..NatsConnectBuilder::default() }
    }

    /// `url` with nothing else (no credentials beyond what the URL holds, no TLS beyond `tls://`).
    ///
    /// # Errors
    /// [`NatsError::BadUrl`] or [`NatsError::Config`], as [`NatsConnectBuilder::build`].
    pub fn new(url: &str) -> Result<NatsConnect, NatsError> {
        NatsConnect::builder(url).build()
    }

    /// The server URL(s) for logs, status and errors: a password or token written `***`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Who we connect as, for a sentence (`user "x"`, `a token`, `nkey U…`, …; never a secret).
    pub fn identity(&self) -> String {
        self.auth.describe()
    }

    /// True when the connection must use TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The client library's options for one connection attempt. Secrets in files are read now
    /// (and again at every reconnection, through the auth callback).
    fn options(&self, name: String, refusal: &Refusal, role: &'static str) -> Result<async_nats::ConnectOptions, String> {
        let mut options = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::Creds(path) => {
                let text = read_secret_file(path, "credentials")?;
                async_nats::ConnectOptions::new().credentials(&text).map_err(|e| format!("{} is not a NATS .creds file ({e})", path.display()))?
            }
            auth => {
                // Checked now, so that an unreadable file is one sentence rather than a refusal.
                auth_for(auth, b"")?;
                let auth = auth.clone();
                async_nats::ConnectOptions::with_auth_callback(move |nonce| {
                    let result = auth_for(&auth, &nonce).map_err(async_nats::AuthError::new);
                    async move { result }
                })
            }
        };
        if self.tls {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let shown = self.shown.clone();
        let refusal = refusal.clone();
        Ok(options.name(name).connection_timeout(self.timeout).max_reconnects(None).event_callback(move |event| {
            let shown = shown.clone();
            let refusal = refusal.clone();
            async move {
                match event {
                    async_nats::Event::Connected => log::info!("{role}: connected to NATS {shown}"),
                    async_nats::Event::Disconnected => {
                        log::warn!("{role}: disconnected from NATS {shown}; reconnecting (nothing is lost meanwhile)")
                    }
                    async_nats::Event::ServerError(async_nats::ServerError::AuthorizationViolation) => {
                        refusal.set("our credentials (authorization violation)".into());
                    }
                    async_nats::Event::ServerError(async_nats::ServerError::Other(text)) if text.to_lowercase().contains("permissions violation") => {
                        refusal.set(format!("a request: {}", text.trim_matches(|c| c == '\'' || c == ' ')));
                    }
                    async_nats::Event::ClientError(async_nats::ClientError::Other(text)) if text.contains("authorization violation") => {
                        refusal.set("our credentials on reconnecting (authorization violation)".into());
                    }
                    other => log::debug!("{role}: NATS event {other}"),
                }
            }
        }))
    }

    /// What a failed first connection means: `Some(error)` when the server refused us or our
    /// TLS settings cannot work (ends the caller, exit 2), `None` for an outage (retried).
    fn refused(&self, error: &async_nats::ConnectError) -> Option<NatsError> {
        use async_nats::ConnectErrorKind as Kind;
        let chain = error_chain(error);
        let who = self.identity();
        let refused = |what: String| Some(NatsError::Refused { server: self.shown.clone(), what });
        match error.kind() {
            Kind::AuthorizationViolation => refused(format!("the connection as {who} (authorization violation: wrong or missing credentials)")),
            Kind::Authentication => refused(format!("the connection as {who}: {chain}")),
            Kind::Tls => Some(NatsError::Config(format!(
                "cannot set up TLS for NATS {} ({chain}); check the CA, client certificate and key files (PEM, X.509 v3)",
                self.shown
            ))),
            _ if is_tls_failure(&chain) => refused(format!("the TLS handshake ({chain})")),
            _ => None,
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// A handshake refusal rather than an outage: an untrusted or expired certificate, a TLS alert.
fn is_tls_failure(chain: &str) -> bool {
    let lower = chain.to_lowercase();
    ["certificate", "alert", "handshake", "tls"].iter().any(|w| lower.contains(w))
}

/// The [`async_nats::Auth`] for `auth`, signing `nonce` with an nkey.
fn auth_for(auth: &Auth, nonce: &[u8]) -> Result<async_nats::Auth, String> {
    let mut out = async_nats::Auth::new();
    match auth {
        Auth::None | Auth::Creds(_) => {}
        Auth::UserPassword { user, password } => {
            out.username = Some(user.clone());
            out.password = Some(password.read("password")?);
        }
        Auth::Token(token) => out.token = Some(token.read("token")?),
        Auth::NKey(seed) => {
            let pair = nkey_pair(&seed.read("nkey seed")?)?;
            out.nkey = Some(pair.public_key());
            out.signature = Some(pair.sign(nonce).map_err(|e| format!("cannot sign with the nkey ({e})"))?);
        }
    }
    Ok(out)
}

fn nkey_pair(seed: &str) -> Result<nkeys::KeyPair, String> {
    nkeys::KeyPair::from_seed(seed)
        .map_err(|_| "the NATS nkey seed is not a seed (expected one line starting with SU, e.g. from `nk -gen user`)".to_string())
}

impl NatsConnectBuilder {
    /// Take from the environment what is not set otherwise: credentials ([`ENV_USER`] with
    /// [`ENV_PASSWORD`] or [`ENV_PASSWORD_FILE`], [`ENV_TOKEN`] or [`ENV_TOKEN_FILE`], [`ENV_NKEY`]
    /// or [`ENV_NKEY_FILE`], [`ENV_CREDS`]) only when neither the URL nor a setter gives any;
    /// TLS ([`ENV_TLS`], [`ENV_CA`], [`ENV_CERT`], [`ENV_KEY`]) where not set. Empty variables
    /// count as unset.
    pub fn from_env(mut self) -> NatsConnectBuilder {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let secret = |value: &str, file: &str| var(value).map(Secret::Value).or_else(|| var(file).map(|f| Secret::File(f.into())));
        self.env_auth = Some(Credentials {
            user: var(ENV_USER),
            password: secret(ENV_PASSWORD, ENV_PASSWORD_FILE),
            token: secret(ENV_TOKEN, ENV_TOKEN_FILE),
            nkey: secret(ENV_NKEY, ENV_NKEY_FILE),
            creds: var(ENV_CREDS).map(PathBuf::from),
        });
        self.tls |= var(ENV_TLS).is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        self.ca = self.ca.or_else(|| var(ENV_CA).map(PathBuf::from));
        self.cert = self.cert.or_else(|| var(ENV_CERT).map(PathBuf::from));
        self.key = self.key.or_else(|| var(ENV_KEY).map(PathBuf::from));
        self
    }

    /// The user name (with a password).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    /// The password, as a value.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::Value(password.into()));
        self
    }
    /// The password, in a file only this user can read (read at every connection).
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password = Some(Secret::File(path.into()));
        self
    }
    /// A token, as a value.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::Value(token.into()));
        self
    }
    /// A token, in a file only this user can read.
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token = Some(Secret::File(path.into()));
        self
    }
    /// An nkey seed (`SU…`), as a value.
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.nkey = Some(Secret::Value(seed.into()));
        self
    }
    /// An nkey seed, in a file only this user can read.
    pub fn nkey_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.nkey = Some(Secret::File(path.into()));
        self
    }
    /// A `.creds` file (user JWT and nkey seed, e.g. from `nsc` or Synadia Cloud).
    pub fn creds_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }
    /// Require TLS (implied by a `tls://` URL, a CA or a client certificate).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.tls |= required;
        self
    }
    /// Trust the root certificates in this PEM file (instead of the system's).
    pub fn root_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(path.into());
        self
    }
    /// Present this client certificate and key (PEM files).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }
    /// How long one connection attempt may take (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Check everything and build: the URL(s), exactly one way to authenticate (or none), every
    /// secret readable (and its file private), the TLS files present.
    ///
    /// # Errors
    /// [`NatsError::BadUrl`] for a URL that is not `nats://` or `tls://` `HOST:PORT`;
    /// [`NatsError::Config`] with one sentence for anything else.
    pub fn build(self) -> Result<NatsConnect, NatsError> {
        let bad_url = || NatsError::BadUrl { url: mask_url(&self.url) };
        let config = NatsError::Config;
        let mut servers = Vec::new();
        let mut shown = Vec::new();
        let mut tls = self.tls;
        let mut in_url: Option<(String, Option<String>)> = None;
        for part in self.url.split(',') {
            let part = part.trim();
            let parsed = url::Url::parse(part).map_err(|_| bad_url())?;
            let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(bad_url)?;
            if !matches!(parsed.scheme(), "nats" | "tls")
                || !matches!(parsed.path(), "" | "/")
                || parsed.query().is_some()
                || parsed.fragment().is_some()
            {
                return Err(bad_url());
            }
            tls |= parsed.scheme() == "tls";
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            let userinfo = (!parsed.username().is_empty()).then(|| (decode(parsed.username()), parsed.password().map(decode)));
            if userinfo.is_some() {
                if in_url.is_some() && in_url != userinfo {
                    return Err(config("the NATS URLs carry different credentials; give one set (or use --nats-user and a password file)".into()));
                }
                in_url = userinfo;
            }
            let port = parsed.port().map_or_else(String::new, |p| format!(":{p}"));
            servers.push(format!("{}://{host}{port}", parsed.scheme()));
            shown.push(mask_url(part));
        }
        // Exactly one way to authenticate: the URL's and the setters', else the environment's.
        let mut methods: Vec<(String, Auth)> = Vec::new();
        match in_url {
            Some((user, Some(password))) => {
                methods.push(("a user and password in the URL".into(), Auth::UserPassword { user, password: Secret::Value(password) }))
            }
            Some((token, None)) => methods.push(("a token in the URL".into(), Auth::Token(Secret::Value(token)))),
            None => {}
        }
        let given = Credentials { user: self.user, password: self.password, token: self.token, nkey: self.nkey, creds: self.creds };
        methods.extend(given.methods("")?);
        if methods.is_empty() {
            if let Some(env) = self.env_auth {
                methods = env.methods(" (environment)")?;
            }
        }
        if methods.len() > 1 {
            let names: Vec<&str> = methods.iter().map(|(n, _)| n.as_str()).collect();
            return Err(config(format!("more than one way to authenticate to NATS is given ({}); give one", names.join(", "))));
        }
        let auth = methods.pop().map_or(Auth::None, |(_, a)| a);
        // Every secret readable now: one sentence at start rather than a refusal later.
        match &auth {
            Auth::None => {}
            Auth::Creds(path) => {
                let text = read_secret_file(path, "credentials").map_err(config)?;
                async_nats::ConnectOptions::new()
                    .credentials(&text)
                    .map_err(|e| config(format!("{} is not a NATS .creds file ({e})", path.display())))?;
            }
            other => {
                auth_for(other, b"").map_err(config)?;
            }
        }
        let client_cert = match (self.cert, self.key) {
            (Some(cert), Some(key)) => {
                readable(&cert, "client certificate")?;
                read_secret_file(&key, "client key").map_err(config)?;
                Some((cert, key))
            }
            (None, None) => None,
            _ => return Err(config("a NATS client certificate needs both --nats-cert and --nats-key".into())),
        };
        if let Some(ca) = &self.ca {
            readable(ca, "CA")?;
        }
        tls |= self.ca.is_some() || client_cert.is_some();
        Ok(NatsConnect {
            servers,
            shown: shown.join(","),
            auth,
            tls,
            ca: self.ca,
            client_cert,
            timeout: self.timeout.unwrap_or(Duration::from_secs(2)),
        })
    }
}

fn readable(path: &Path, what: &str) -> Result<(), NatsError> {
    std::fs::File::open(path).map(drop).map_err(|e| NatsError::Config(format!("cannot read the NATS {what} file {}: {e}", path.display())))
}

/// `url` (one or several comma-separated) with any password or token written `***`:
/// `nats://bob:***@host:4222`, `nats://***@host:4222`. Safe on any text: whatever sits between
/// `://` and the last `@` before the host is treated as credentials.
pub fn mask_url(url: &str) -> String {
    url.split(',')
        .map(|part| {
            let Some(scheme_end) = part.find("://") else { return part.to_owned() };
            let rest = &part[scheme_end + 3..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            let Some(at) = authority.rfind('@') else { return part.to_owned() };
            let masked = match authority[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}{masked}{}", &part[..scheme_end + 3], &rest[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The first refusal a server sent on a live connection (a permission denied, credentials no
/// longer accepted), set from the client's event callback.
#[derive(Clone, Debug, Default)]
pub(super) struct Refusal(Arc<Mutex<Option<String>>>, Arc<AtomicBool>);

impl Refusal {
    fn set(&self, what: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(what);
            self.1.store(true, Ordering::Relaxed);
        }
    }

    /// What was refused, if anything.
    pub(super) fn get(&self) -> Option<String> {
        if !self.1.load(Ordering::Relaxed) {
            return None;
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A live connection and what its server may refuse on it.
pub(super) struct Link {
    /// The client.
    pub client: async_nats::Client,
    /// Set when the server refuses something on this connection.
    pub refusal: Refusal,
    target: NatsConnect,
    role: &'static str,
}

impl Link {
    /// [`NatsError::Refused`] when the server refused something on this connection.
    pub(super) fn check(&self) -> Result<(), NatsError> {
        match self.refusal.get() {
            Some(what) => Err(NatsError::Refused {
                server: self.target.shown.clone(),
                what: format!("{what} (as barbridge-{} with {})", self.role, self.target.identity()),
            }),
            None => Ok(()),
        }
    }
}

/// Connect, waiting out an unreachable server (logged when it starts and every 10 s), until
/// `stop` is set (`Ok(None)`). A server that refuses us ends the wait:
/// [`NatsError::Refused`].
pub(super) async fn connect(target: &NatsConnect, role: &'static str, stop: &AtomicBool) -> Result<Option<Link>, NatsError> {
    let refusal = Refusal::default();
    let mut last_log: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let options = target.options(format!("barbridge-{role}"), &refusal, role).map_err(NatsError::Config)?;
        match options.connect(target.servers.as_slice()).await {
            Ok(client) => return Ok(Some(Link { client, refusal, target: target.clone(), role })),
            Err(e) => {
                if let Some(refusal) = target.refused(&e) {
                    return Err(refusal);
                }
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    log::warn!("{role}: cannot connect to NATS {} ({}); retrying every second", target.shown, error_chain(&e));
                    last_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(None)
}

/// One connection attempt within `timeout` (for `nats-check`): the client, or one sentence.
pub(super) async fn connect_once(target: &NatsConnect, timeout: Duration) -> Result<Link, String> {
    let refusal = Refusal::default();
    let options = target.options("barbridge-check".into(), &refusal, "check")?.connection_timeout(timeout);
    match tokio::time::timeout(timeout + Duration::from_millis(500), options.connect(target.servers.as_slice())).await {
        Ok(Ok(client)) => Ok(Link { client, refusal, target: target.clone(), role: "check" }),
        Ok(Err(e)) => Err(match target.refused(&e) {
            Some(refusal) => refusal.to_string(),
            None => format!("NATS {} is not reachable ({})", target.shown, error_chain(&e)),
        }),
        Err(_) => Err(format!("NATS {} did not answer within {} s", target.shown, timeout.as_secs_f64())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_masked_in_urls() {
        assert_eq!(mask_url("nats://bob:s3cret@h:4222"), "nats://bob:***@h:4222");
        assert_eq!(mask_url("nats://t0k3n@h:4222,tls://a:b@g:1"), "nats://***@h:4222,tls://a:***@g:1");
        assert_eq!(mask_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(mask_url("nats://u:p@ss@h"), "nats://u:***@h");
    }

    #[test]
    fn urls_give_servers_credentials_and_tls() {
        let c = NatsConnect::new("nats://bob:p%40ss@127.0.0.1:4222").unwrap();
        assert_eq!(c.servers, vec!["nats://127.0.0.1:4222"]);
        assert_eq!(c.shown(), "nats://bob:***@127.0.0.1:4222");
        assert!(matches!(&c.auth, Auth::UserPassword { user, password: Secret::Value(p) } if user == "bob" && p == "p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"));
        let c = NatsConnect::new("tls://tok@a:1,tls://tok@b:2").unwrap();
        assert!(c.tls && matches!(c.auth, Auth::Token(_)) && c.servers.len() == 2);
        for bad in ["http://x:1", "nats://", "nats://h:1/path", "h:4222"] {
            assert!(matches!(NatsConnect::new(bad), Err(NatsError::BadUrl { .. })), "{bad}");
        }
        let err = NatsConnect::new("nats://a:secret@h:1").map(drop).and(NatsConnect::new("http://a:secret@h:1").map(drop)).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn one_way_to_authenticate_and_private_secret_files() {
        let two = NatsConnect::builder("nats://a:b@h:1").token("t").build().unwrap_err().to_string();
        assert!(two.contains("more than one way"), "{two}");
        assert!(NatsConnect::builder("nats://h:1").user("u").build().unwrap_err().to_string().contains("has no password"));
        let bad = NatsConnect::builder("nats://h:1").nkey_seed("SUnot-a-seed").build().unwrap_err().to_string();
        assert!(bad.contains("not a seed") && !bad.contains("SUnot"), "{bad}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let open = NatsConnect::builder("nats://h:1").user("u").password_file(&file).build().unwrap_err().to_string();
        assert!(open.contains("open to other users") && open.contains("chmod 600"), "{open}");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let c = NatsConnect::builder("nats://h:1").user("u").password_file(&file).build().unwrap();
        assert_eq!(auth_for(&c.auth, b"").unwrap().password.as_deref(), Some("hunter2"));
        assert_eq!(c.identity(), "user \"u\"");
        let pair = nkeys::KeyPair::new_user();
        let c = NatsConnect::builder("nats://h:1").nkey_seed(pair.seed().unwrap()).build().unwrap();
        let auth = auth_for(&c.auth, b"nonce").unwrap();
        assert_eq!(auth.nkey.as_deref(), Some(pair.public_key().as_str()));
        assert!(pair.verify(b"nonce", auth.signature.as_deref().unwrap()).is_ok());
        assert!(NatsConnect::builder("nats://h:1").client_cert(&file, dir.path().join("none")).build().is_err());
    }
}
