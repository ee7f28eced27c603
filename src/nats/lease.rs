//! One subscriber per durable name: a lease in the JetStream stream [`LEASE_STREAM`] (one
//! message per subject `barbridge.lease.<stream>.<durable>`, payload [`Holder`]'s readable line
//! `barbridge-lease/2 host=<h> boot=<id> pidns=<n> pid=<p> start=<ticks> id=<random>`), written
//! only over the sequence it replaces (`Nats-Expected-Last-Subject-Sequence`) and renewed every
//! second.
//!
//! Two programs pulling from one durable consumer would each get a share of the messages and
//! neither would see every bar, silently (the FIFO's reader lock exists for the same reason).
//! A [`NatsFeed`](super::NatsFeed) therefore takes the lease before it pulls and ends with
//! [`NatsError::DurableInUse`] when another live holder renews it. A holder is dead when it ran
//! in this kernel's boot and this pid namespace and its pid is gone or now belongs to a process
//! started at another time; or when its lease was not renewed for [`STALE_AFTER`] (a SIGKILLed
//! subscriber on another host): then the lease is taken over. The hostname is only shown, never
//! trusted: two hosts (or containers) with one hostname each see only their own pids, so a pid
//! missing here says nothing about the other's holder. A lease of an older version (`host pid
//! nonce`) is never judged dead at once: it is taken over only when not renewed for
//! [`STALE_AFTER`]. A holder that stops normally deletes its lease.

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, LastRawMessageErrorKind, Stream};

use super::NatsError;

/// The stream holding the leases.
pub const LEASE_STREAM: &str = "BARBRIDGE_LEASES";
/// How often a holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A lease not renewed for this long belongs to a dead holder.
pub const STALE_AFTER: Duration = Duration::from_secs(4);

/// The lease stream's settings: one message per subject, kept an hour.
pub(super) fn stream_config(replicas: usize) -> Config {
    Config {
        name: LEASE_STREAM.into(),
        subjects: vec!["barbridge.lease.>".into()],
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(3_600),
        num_replicas: replicas,
        ..Default::default()
    }
}

/// A held lease: renewed by [`Lease::renew`], released by [`Lease::release`].
pub(super) struct Lease {
    js: async_nats::jetstream::Context,
    stream: Stream,
    subject: String,
    me: String,
    revision: u64,
    renewed: Instant,
}

/// The first word of a lease written by this version. An older version's lease (`host pid
/// nonce`) does not start with it; an older version reading this one finds no pid in its second
/// word and so never judges it dead at once either.
const FORMAT: &str = "barbridge-lease/2";

/// Who holds a lease: where it runs (boot id, pid namespace) and which process start it is
/// (pid, start time in clock ticks since boot), plus a random id made at start, so two processes
/// never share a holder even when host name and pid are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    host: String,
    boot: String,
    pidns: String,
    pid: i32,
    start: u64,
    id: String,
}

/// This kernel's boot id (empty when unknown).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_owned()
}

/// This process's pid namespace (the inode in `/proc/self/ns/pid`; empty when unknown).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| l.to_str().and_then(|s| s.strip_prefix("pid:[")).and_then(|s| s.strip_suffix(']')).map(str::to_owned))
        .unwrap_or_default()
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, clock ticks since boot), or none
/// when there is no such process.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces: count after its last ')'
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// 16 random hex digits from the kernel (time and pid when it cannot be read).
fn random_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            format!("{:016x}", (nanos as u64) ^ (u64::from(std::process::id()) << 40))
        }
    }
}

/// A word without spaces (a hostname is shown, never parsed for meaning).
fn word(text: &str) -> String {
    let w: String = text.trim().chars().map(|c| if c.is_whitespace() || c == '=' { '_' } else { c }).collect();
    if w.is_empty() {
        "-".into()
    } else {
        w
    }
}

impl Holder {
    /// This process, with a new random id.
    fn me() -> Holder {
        let pid = std::process::id() as i32;
        Holder {
            host: word(&std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()),
            boot: word(&boot_id()),
            pidns: word(&pid_namespace()),
            pid,
            start: start_time(pid).unwrap_or(0),
            id: random_id(),
        }
    }

    /// The lease's payload.
    fn line(&self) -> String {
        format!("{FORMAT} host={} boot={} pidns={} pid={} start={} id={}", self.host, self.boot, self.pidns, self.pid, self.start, self.id)
    }

    /// A lease payload of this version, or none (an older version's, or garbage).
    fn parse(line: &str) -> Option<Holder> {
        let mut words = line.split(' ');
        if words.next() != Some(FORMAT) {
            return None;
        }
        let mut field = |key: &str| words.next()?.strip_prefix(key)?.strip_prefix('=').map(str::to_owned);
        let (host, boot, pidns) = (field("host")?, field("boot")?, field("pidns")?);
        let (pid, start, id) = (field("pid")?.parse().ok()?, field("start")?.parse().ok()?, field("id")?);
        Some(Holder { host, boot, pidns, pid, start, id })
    }
}

/// A subject token: `[-_A-Za-z0-9]` kept, anything else `=XX`.
fn key_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The subject of the lease of `durable` on `stream`.
pub fn lease_subject(stream: &str, durable: &str) -> String {
    format!("barbridge.lease.{}.{}", key_token(stream), key_token(durable))
}

/// True when `holder` (a lease's payload) names a process that is gone, judged only when it
/// ran in this kernel's boot and this pid namespace (where its pid means the same process): its
/// pid is missing or belongs to a process started at another time. Anything else (another host,
/// another container with the same hostname, an older version's lease, an unknown boot id) is
/// left to [`STALE_AFTER`].
fn dead_here(holder: &str) -> bool {
    let Some(h) = Holder::parse(holder) else { return false };
    let boot = word(&boot_id());
    let pidns = word(&pid_namespace());
    if boot == "-" || pidns == "-" || h.boot != boot || h.pidns != pidns || h.pid <= 0 {
        return false;
    }
    match start_time(h.pid) {
        // start 0: the holder could not read its own, so only a missing pid says it is gone
        Some(start) if h.start != 0 => start != h.start,
        _ => nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid), None) == Err(nix::errno::Errno::ESRCH),
    }
}

/// The current lease on `subject`: (its sequence, its holder), or none.
async fn read(stream: &Stream, subject: &str) -> Result<Option<(u64, String)>, String> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => Ok(Some((m.sequence, String::from_utf8_lossy(&m.payload).into_owned()))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Write `me` as the lease if its current sequence is `expected` (0: none); the new sequence.
async fn write(js: &async_nats::jetstream::Context, subject: &str, me: &str, expected: u64) -> Result<u64, String> {
    let message = PublishMessage::build().payload(me.to_owned().into()).expected_last_subject_sequence(expected);
    let ack = js.send_publish(subject.to_owned(), message).await.map_err(|e| e.to_string())?;
    ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
}

impl Lease {
    /// Take the lease of `durable` on `stream`. `Ok(Err(why))`: JetStream is not usable right
    /// now (the caller retries); `Err(DurableInUse)`: a live holder has it.
    pub(super) async fn acquire(
        js: &async_nats::jetstream::Context,
        stream: &str,
        durable: &str,
        replicas: usize,
    ) -> Result<Result<Lease, String>, NatsError> {
        // The publisher creates it ([`super::ensure_stream`]); created here only for a stream
        // published by something else, on a server that lets subscribers create streams.
        let leases = match js.get_or_create_stream(stream_config(replicas)).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("stream {LEASE_STREAM}: {e}"))),
        };
        let subject = lease_subject(stream, durable);
        let me = Holder::me().line();
        let held =
            |revision| Lease { js: js.clone(), stream: leases.clone(), subject: subject.clone(), me: me.clone(), revision, renewed: Instant::now() };
        let mut watched: Option<(u64, Instant)> = None;
        loop {
            let current = match read(&leases, &subject).await {
                Ok(current) => current,
                Err(e) => return Ok(Err(format!("lease {subject}: {e}"))),
            };
            let Some((revision, holder)) = current else {
                if let Ok(revision) = write(js, &subject, &me, 0).await {
                    return Ok(Ok(held(revision)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue; // another subscriber was faster: look again
            };
            let stale = match watched {
                _ if dead_here(&holder) => true,
                Some((seen, since)) if seen == revision => since.elapsed() >= STALE_AFTER,
                Some(_) => return Err(NatsError::DurableInUse { durable: durable.into(), holder }),
                None => {
                    log::info!("durable {durable:?} is leased by {holder:?}: checking whether that subscriber is alive");
                    watched = Some((revision, Instant::now()));
                    false
                }
            };
            if stale {
                if let Ok(revision) = write(js, &subject, &me, revision).await {
                    log::warn!("durable {durable:?}: taking over the lease of {holder:?}, which is gone");
                    return Ok(Ok(held(revision)));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Renew the lease when [`RENEW_EVERY`] has passed. `Err(DurableInUse)` when another
    /// subscriber took it over (this one looked dead, e.g. cut off from NATS for longer than
    /// [`STALE_AFTER`]); a NATS error is logged at debug and retried at the next call.
    pub(super) async fn renew(&mut self, durable: &str) -> Result<(), NatsError> {
        if self.renewed.elapsed() < RENEW_EVERY {
            return Ok(());
        }
        self.renewed = Instant::now();
        match write(&self.js, &self.subject, &self.me, self.revision).await {
            Ok(revision) => self.revision = revision,
            Err(e) => match read(&self.stream, &self.subject).await {
                Ok(Some((_, holder))) if holder != self.me => return Err(NatsError::DurableInUse { durable: durable.into(), holder }),
                Ok(Some((revision, _))) => self.revision = revision,
                Ok(None) => self.revision = 0,
                Err(_) => log::debug!("lease {}: not renewed ({e}); retrying", self.subject),
            },
        }
        Ok(())
    }

    /// Give the lease up (a normal stop), so the next subscriber starts at once.
    pub(super) async fn release(self) {
        if let Err(e) = self.stream.delete_message(self.revision).await {
            log::debug!("lease {}: not released ({e}); it goes stale in {} s", self.subject, STALE_AFTER.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_single_tokens() {
        assert_eq!(key_token("engine-a_1"), "engine-a_1");
        assert_eq!(key_token("a.b c"), "a=2Eb=20c");
    }

    #[test]
    fn a_lease_names_its_holder_readably_and_parses_back() {
        let me = Holder::me();
        let line = me.line();
        assert!(line.starts_with("barbridge-lease/2 host="), "{line}");
        assert_eq!(Holder::parse(&line), Some(me.clone()));
        assert_ne!(Holder::me().id, me.id, "a random id per start");
        assert_eq!(Holder::parse("myhost 1234 18a3f"), None, "an older version's lease");
        assert_eq!(Holder::parse("barbridge-lease/2 host=a"), None);
    }

    #[test]
    fn only_a_gone_process_of_this_boot_and_pid_namespace_is_dead_at_once() {
        let me = Holder::me();
        assert!(!dead_here(&me.line()), "this process is alive");
        assert!(dead_here(&Holder { pid: i32::MAX, ..me.clone() }.line()), "no such pid here");
        assert!(dead_here(&Holder { start: me.start + 1, ..me.clone() }.line()), "the pid was reused");
        assert!(!dead_here(&Holder { start: 0, ..me.clone() }.line()), "an unknown start: the pid decides");
        // the same hostname and a missing pid, but another pid namespace or boot: another host
        assert!(!dead_here(&Holder { pid: i32::MAX, pidns: "1".into(), ..me.clone() }.line()));
        assert!(!dead_here(&Holder { pid: i32::MAX, boot: "another-boot".into(), ..me.clone() }.line()));
        // an older version's lease is left to STALE_AFTER, even when it names this host and a gone pid
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        assert!(!dead_here(&format!("{} {} 0", host.trim(), i32::MAX)));
    }
}
