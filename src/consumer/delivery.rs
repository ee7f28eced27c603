//! Delivery to subscribers: channel subscriptions with their overflow policy, callbacks, and
//! what the status file says of each.
//!
//! ## Overflow policy
//! Channel subscribers get a bounded channel. When it is full the reader never waits: with
//! [`Overflow::DropOldest`] (the default) the oldest undelivered bar is discarded to make room
//! for the new one (a trading engine wants the freshest data); with [`Overflow::DropNewest`] the
//! new bar is discarded. Either way the drop is counted (per subscriber and in
//! `delivery_drops`) and logged at warn level, rate-limited. The store always has every bar, so a
//! subscriber that fell behind can catch up with a query. Callbacks run on the reader thread:
//! keep them short. Bars read from the FIFO reach channel subscribers at the end of each read
//! batch (at most 16 reads, about 1 MiB), so a subscriber wakes once per batch, not once per bar.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{ConfigError, Consumer};
use crate::bar::{Bar, Source, Symbol};
use crate::capacity::CapacityError;

use super::builder::checked_symbols;

/// A bar delivered to subscribers: a new minute, or a correction of a stored one.
#[derive(Clone, Debug, PartialEq)]
pub struct BarEvent {
    /// The bar's symbol.
    pub symbol: Symbol,
    /// The bar as stored.
    pub bar: Bar,
    /// True when this replaces a bar delivered earlier for the same minute.
    pub correction: bool,
    /// Where the sidecar says the bar came from, when the line said so.
    pub source: Option<Source>,
}

/// What a full subscriber channel does with the next bar. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest queued bar to make room: the subscriber sees the newest (the default).
    DropOldest,
    /// Drop the new bar: the subscriber keeps what is queued.
    DropNewest,
}

/// What to subscribe to.
#[derive(Clone, Debug)]
pub struct Subscription {
    name: String,
    symbols: Option<HashSet<String>>,
    capacity: usize,
    overflow: Overflow,
}

impl Subscription {
    /// Every symbol, capacity 65,536, drop-oldest.
    pub fn all() -> Subscription {
        Subscription { name: "subscriber".into(), symbols: None, capacity: 1 << 16, overflow: Overflow::DropOldest }
    }
    /// Only these symbols.
    ///
    /// # Errors
    /// [`ConfigError::Symbol`] for a symbol that breaks the wire protocol's symbol rule (it could
    /// never arrive, so the subscription would silently get nothing).
    pub fn symbols<I: IntoIterator<Item = S>, S: Into<String>>(symbols: I) -> Result<Subscription, ConfigError> {
        Ok(Subscription { symbols: Some(checked_symbols(symbols)?), ..Subscription::all() })
    }
    /// A name for logs and status.
    pub fn name(mut self, name: impl Into<String>) -> Subscription {
        self.name = name.into();
        self
    }
    /// Bars buffered for a subscriber that falls behind (default 65,536).
    ///
    /// # Errors
    /// [`CapacityError`] for 0, or more than [`crate::capacity::MAX_SUBSCRIPTION_CAPACITY`] (the
    /// buffer is allocated up front).
    pub fn capacity(mut self, capacity: usize) -> Result<Subscription, CapacityError> {
        let max = crate::capacity::MAX_SUBSCRIPTION_CAPACITY;
        self.capacity = crate::capacity::check("a subscription's capacity", capacity, max)?.get();
        Ok(self)
    }
    /// What a full channel does with the next bar (see [`Overflow`]).
    pub fn overflow(mut self, overflow: Overflow) -> Subscription {
        self.overflow = overflow;
        self
    }
}

/// The receiving end of a channel subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct BarReceiver {
    rx: Receiver<BarEvent>,
    alive: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
}

impl BarReceiver {
    /// Bars discarded for this subscriber because its channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::ops::Deref for BarReceiver {
    type Target = Receiver<BarEvent>;
    fn deref(&self) -> &Receiver<BarEvent> {
        &self.rx
    }
}

impl Drop for BarReceiver {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

pub(super) type Callback = Box<dyn Fn(&BarEvent) + Send + Sync>;

pub(super) enum Target {
    Channel { tx: Sender<BarEvent>, rx: Receiver<BarEvent>, overflow: Overflow, alive: Arc<AtomicBool> },
    Callback(Callback),
}

pub(super) struct Subscriber {
    pub(super) name: String,
    pub(super) symbols: Option<HashSet<String>>,
    pub(super) target: Target,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Subscriber {
    pub(super) fn wants(&self, event: &BarEvent) -> bool {
        self.symbols.as_ref().is_none_or(|s| s.contains(&*event.symbol))
    }
}

/// Subscriber report for the status file.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubscriberStatus {
    /// The name given with [`Subscription::name`].
    pub name: String,
    /// Bars dropped because its channel was full.
    pub dropped: u64,
    /// Bars waiting in its channel.
    pub queued: usize,
}

impl Consumer {
    /// Subscribe over a bounded channel.
    pub fn subscribe(&self, sub: Subscription) -> BarReceiver {
        let (tx, rx) = crossbeam_channel::bounded(sub.capacity);
        let alive = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let target = Target::Channel { tx, rx: rx.clone(), overflow: sub.overflow, alive: alive.clone() };
        self.add(Subscriber { name: sub.name, symbols: sub.symbols, target, dropped: dropped.clone() });
        BarReceiver { rx, alive, dropped }
    }

    /// Call `f` on the ingesting thread for each delivered bar of `symbols` (empty = all).
    pub fn on_bar<F>(&self, symbols: &[&str], f: F)
    where
        F: Fn(&BarEvent) + Send + Sync + 'static,
    {
        let symbols = (!symbols.is_empty()).then(|| symbols.iter().map(|s| s.to_string()).collect());
        self.add(Subscriber { name: "callback".into(), symbols, target: Target::Callback(Box::new(f)), dropped: Arc::new(AtomicU64::new(0)) });
        self.callbacks.fetch_add(1, Ordering::Release);
    }

    fn add(&self, sub: Subscriber) {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(sub);
    }

    /// Every subscriber's name, drops and queue length, for the status file.
    pub fn subscriber_status(&self) -> Vec<SubscriberStatus> {
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        subs.iter()
            .map(|s| SubscriberStatus {
                name: s.name.clone(),
                dropped: s.dropped.load(Ordering::Relaxed),
                queued: match &s.target {
                    Target::Channel { rx, .. } => rx.len(),
                    Target::Callback(_) => 0,
                },
            })
            .collect()
    }

    pub(super) fn deliver(&self, event: BarEvent, held: Option<&mut Vec<BarEvent>>) {
        if self.callbacks.load(Ordering::Acquire) > 0 {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for sub in subs.iter() {
                if let Target::Callback(f) = &sub.target {
                    if sub.wants(&event) {
                        f(&event);
                    }
                }
            }
        }
        match held {
            Some(held) => held.push(event),
            None => self.send_to_channels(std::slice::from_ref(&event)),
        }
    }

    pub(super) fn send_to_channels(&self, events: &[BarEvent]) {
        let mut any_gone = false;
        {
            let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
            for sub in subs.iter() {
                let Target::Channel { tx, rx, overflow, alive } = &sub.target else { continue };
                if !alive.load(Ordering::Relaxed) {
                    any_gone = true;
                    continue;
                }
                for event in events.iter().filter(|e| sub.wants(e)) {
                    if let Err(TrySendError::Full(ev)) = tx.try_send(event.clone()) {
                        if *overflow == Overflow::DropOldest {
                            let _ = rx.try_recv();
                            let _ = tx.try_send(ev);
                        }
                        self.count_drop(sub);
                    }
                }
            }
        }
        if any_gone {
            let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| match &s.target {
                Target::Channel { alive, .. } => alive.load(Ordering::Relaxed),
                Target::Callback(_) => true,
            });
        }
    }

    fn count_drop(&self, sub: &Subscriber) {
        let total = sub.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.health.counters.delivery_drops.fetch_add(1, Ordering::Relaxed);
        let mut suppressed = 0;
        if self.log_limiter.allow("delivery_drop", self.health.now_ms(), &mut suppressed) {
            log::warn!("subscriber {:?} is not keeping up: its channel is full, {total} bar(s) dropped so far", sub.name);
        }
    }
}
