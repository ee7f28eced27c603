//! One subscriber per durable name: a lease in the JetStream stream [`LEASE_STREAM`] (one
//! message per subject `barbridge.lease.<stream>.<durable>`, payload `host pid nonce`),
//! written only over the sequence it replaces (`Nats-Expected-Last-Subject-Sequence`) and
//! renewed every second.
//!
//! Two programs pulling from one durable consumer would each get a share of the messages and
//! neither would see every bar, silently (the FIFO's reader lock exists for the same reason).
//! A [`NatsFeed`](super::NatsFeed) therefore takes the lease before it pulls and ends with
//! [`NatsError::DurableInUse`] when another live holder renews it. A holder is dead when it ran
//! on this host and its pid is gone, or when its lease was not renewed for [`STALE_AFTER`]
//! (a SIGKILLed subscriber on another host): then the lease is taken over. A holder that stops
//! normally deletes its lease.

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

/// `host pid nonce` of this process.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{} {} {nonce:x}", host.trim(), std::process::id())
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

/// True when `holder` names a process on this host that is gone.
fn dead_here(holder: &str) -> bool {
    let mine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut parts = holder.split(' ');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<i32>().ok())) else { return false };
    host == mine.trim() && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
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
        let me = holder_id();
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
    fn a_missing_pid_on_this_host_is_dead() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        assert!(!dead_here(&holder_id()));
        assert!(dead_here(&format!("{} {} 0", host.trim(), i32::MAX)));
        assert!(!dead_here(&format!("another-host-{} {} 0", host.trim(), i32::MAX)));
    }
}
