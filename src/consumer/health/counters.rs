//! The consumer's counters, declared once: the table at the end of this file makes the atomics
//! ([`Counters`]), the snapshot and the status file's `counters` ([`CounterSnapshot`]) and
//! says how each is exported to Prometheus ([`Exported`], rendered by [`crate::ops::metrics`]).
//! A new counter is one entry of the table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::wire::RejectReason;

/// How a counter appears in `/metrics` (prefix `barbridge_`; a counter gets `_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exported {
    /// A Prometheus counter of this name and help.
    Counter(&'static str, &'static str),
    /// A Prometheus gauge of this name and help (a count that can go down).
    Gauge(&'static str, &'static str),
    /// Not a metric of its own (rendered from other values, or status file only).
    No,
}

/// Declares the counters: each entry is `doc, field => export`. The reject counters, one per
/// [`RejectReason`], sit between the two lists (their place in the status file).
macro_rules! counters {
    (
        $( $(#[doc = $doc:literal])* $name:ident => $export:expr, )*
        ; rejects ;
        $( $(#[doc = $doc2:literal])* $name2:ident => $export2:expr, )*
    ) => {
        /// Monotonic counters, cheap to bump from the reader thread.
        #[derive(Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
            /// Rejected lines by [`RejectReason`] (index: [`RejectReason::ALL`]).
            pub rejects: [AtomicU64; RejectReason::ALL.len()],
            $( $(#[doc = $doc2])* pub $name2: AtomicU64, )*
        }

        /// A copy of the counters for reports (the status file's `counters`).
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        pub struct CounterSnapshot {
            $( $(#[doc = $doc])* #[serde(default)] pub $name: u64, )*
            /// Rejected lines, all reasons.
            pub rejects_total: u64,
            /// Rejected lines by reason code.
            pub rejects: BTreeMap<String, u64>,
            $( $(#[doc = $doc2])* #[serde(default)] pub $name2: u64, )*
        }

        impl Counters {
            /// A copy of every counter.
            pub fn snapshot(&self) -> CounterSnapshot {
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let rejects: BTreeMap<String, u64> =
                    RejectReason::ALL.iter().map(|r| (r.code().to_owned(), self.rejected(*r))).filter(|(_, n)| *n > 0).collect();
                CounterSnapshot {
                    $( $name: get(&self.$name), )*
                    rejects_total: rejects.values().sum(),
                    rejects,
                    $( $name2: get(&self.$name2), )*
                }
            }
        }

        impl CounterSnapshot {
            /// Every counter with how it is exported and its value, in the table's order.
            pub fn exported(&self) -> Vec<(Exported, u64)> {
                vec![ $( ($export, self.$name), )* $( ($export2, self.$name2), )* ]
            }
        }
    };
}

impl Counters {
    /// Count a rejected line.
    pub fn reject(&self, reason: RejectReason) {
        self.reject_many(reason, 1);
    }

    /// Count `n` rejects for `reason` at once (records a journal restore skipped).
    pub fn reject_many(&self, reason: RejectReason, n: u64) {
        self.rejects[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Lines rejected for `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejects[reason.index()].load(Ordering::Relaxed)
    }
}

use Exported::{Counter, Gauge, No};

counters! {
    /// Lines and pushed bars ingested (every kind, rejected ones included).
    lines => Counter("lines", "Lines received (bars, heartbeats, status lines, rejects)."),
    /// Bars stored as a new minute.
    bars_accepted => Counter("bars_accepted", "Bars stored for a new minute."),
    /// Bars that replaced a stored minute (`updated_bar`).
    corrections => Counter("corrections", "Bars that replaced a stored minute (updated_bar or backfill)."),
    /// Bars identical to the stored minute (skipped).
    duplicates => Counter("duplicates", "Bars identical to a stored minute (ignored)."),
    /// Bars differing from the stored minute without being a correction (first report kept).
    conflicts => Counter("conflicts", "Bars differing from a stored minute without being a correction (first kept)."),
    /// Bars older than everything the store keeps for their symbol.
    too_old => Counter("too_old", "Bars older than everything a full symbol store keeps."),
    /// Bars and trading statuses of a new symbol refused: the store held its `max_symbols` already.
    symbol_bound_refused => Counter("symbol_bound_refused", "Bars and statuses of new symbols refused past --max-symbols."),
    /// Bars of symbols outside the consumer's filter.
    filtered => Counter("filtered", "Bars of symbols outside the --symbols filter."),
    /// Heartbeat lines.
    heartbeats => Counter("heartbeats", "Heartbeat lines from writers."),
    /// The sidecar's connection-state (`status`) lines.
    status_lines => No,
    /// Lines of a `type` this version does not know.
    unknown_types => No,
    ; rejects ;
    /// Gaps in a writer's `seq` numbering.
    seq_gaps => Counter("seq_gaps", "Holes in a writer's sequence numbers."),
    /// Lines never received: counted when a gap opens, taken back when a re-send fills it.
    lines_lost => Gauge("lines_lost", "Lines missing between writer and consumer (goes down when a re-send fills a hole)."),
    /// Lines of a gap that a writer's re-send filled later.
    lines_recovered => Counter("lines_recovered", "Missing lines a writer's re-send filled."),
    /// Re-sent lines this consumer had processed already (skipped).
    resent_skipped => Counter("resent_skipped", "Re-sent lines this consumer had processed already."),
    /// Lines of a gap closed because an earlier consumer had acknowledged them to their writer
    /// (processed there; not in this consumer's cursor): taken back off `lines_lost`.
    lines_acked_before => Counter("lines_acked_before", "Missing lines an earlier consumer had acknowledged to their writer (not lost)."),
    /// Writer positions found beyond what the writer has sent (`cursor.json` from elsewhere):
    /// each was replaced by a hole the writer fills.
    cursor_ahead => Counter("cursor_ahead", "Writer positions found beyond what the writer has sent (replaced by a hole the writer fills)."),
    /// Times the durable cursor could not be read at start (positions unknown).
    cursor_unreadable => Counter("cursor_unreadable", "Times the durable cursor could not be read at start."),
    /// Writer sessions seen (a sidecar start or restart).
    writer_sessions => Counter("writer_sessions", "Writer sessions seen (a sidecar start or restart)."),
    /// `reconnecting` status lines from the sidecar.
    reconnects => Counter("sidecar_reconnects", "Reconnects the sidecar reported."),
    /// `disconnected` status lines from the sidecar.
    disconnects => Counter("sidecar_disconnects", "Disconnects the sidecar reported."),
    /// Times the feed turned stale.
    stale_episodes => Counter("stale_episodes", "Times the feed went stale."),
    /// Bars a subscriber's full channel dropped.
    delivery_drops => Counter("delivery_drops", "Bars dropped because a subscriber's channel was full (all subscribers)."),
    /// Bars from the sidecar's REST backfill that were stored (new minutes or corrections).
    backfilled => Counter("backfilled_bars", "Bars from the sidecar's REST backfill that were stored."),
    /// When the newest stored bar arrived (consumer clock, UTC epoch ms; 0 before the first);
    /// `/metrics` shows its age (`last_bar_age_seconds`).
    last_bar_received_ms => No,
    /// New trading statuses (halts, pauses, resumptions) received.
    trading_statuses => Counter("trading_statuses", "New trading statuses received (halts, pauses, resumptions)."),
    /// Times a symbol stopped trading (a halt or pause began).
    halts => Counter("halts", "Times a symbol stopped trading (a halt or a pause began)."),
    /// Failed attempts to reopen the FIFO for want of a file descriptor (`EMFILE`/`ENFILE`);
    /// the reader kept its old descriptor (nothing lost) and retried.
    fifo_open_errors => Counter("fifo_open_errors", "Failed reopens of the FIFO for want of a file descriptor (EMFILE/ENFILE); the old descriptor was kept, nothing lost."),
    // The minute barrier (docs/ARCHITECTURE.md, "Minute barrier"; bumped by the MinuteBook).
    /// Minutes closed by the sidecar's minute barrier and delivered (once each).
    minutes_closed => Counter("minute_closes", "Minutes closed by the sidecar's minute barrier and delivered (once each)."),
    /// Of those, closed by the deadline with symbols still without a bar.
    minutes_incomplete => Counter("minute_closes_incomplete", "Closed minutes with subscribed symbols still without a bar at the deadline."),
    /// `minute_closed` lines (parts) accepted.
    minute_parts => Counter("minute_parts", "minute_closed parts accepted."),
    /// A minute (or part) closed again (same writer, or a restarted sidecar's re-close of the
    /// same symbols): not delivered twice.
    minute_duplicates => Counter("minute_duplicates", "Minutes (or parts) closed again: not delivered twice."),
    /// Parts that contradict the parts before them: rejected.
    minute_rejected => Counter("minute_rejected", "minute_closed parts refused (they contradict the parts before them)."),
    /// Incomplete minutes dropped past the bound of minutes assembling at once.
    minute_parts_evicted => Counter("minute_parts_evicted", "Minutes dropped before all their minute_closed parts came (too many assembling at once)."),
    /// Minute events dropped because a minute subscriber's channel was full.
    minute_delivery_drops => Counter("minute_delivery_drops", "Closed minutes dropped because a minute subscriber's channel was full."),
    /// Bars that arrived after their minute closed without them (the stream lost or delayed
    /// them; the sidecar's REST confirmation recovers them): stored, delivered, counted.
    late_bars => Counter("late_bars", "Bars that arrived after their minute closed without them (lost or late in the stream, recovered)."),
    /// (symbol, minute) pairs marked quiet (REST has no bar: no trade): never a hole.
    quiet_marks => Counter("quiet_marks", "Symbol-minutes REST confirmed quiet (no trade, no bar): never holes."),
    /// Quiet marks refused: the symbol was not without a bar in that closed minute (not
    /// subscribed, or the minute unknown).
    quiet_rejected => Counter("quiet_rejected", "Quiet marks refused: the symbol was not without a bar in that minute's close."),
    /// The last minute closed (UTC epoch ms), 0 before the first.
    last_minute_ms => No,
}
