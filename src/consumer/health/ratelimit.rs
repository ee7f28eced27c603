//! [`RateLimitedLog`]: how every repeated warning is kept from flooding the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Logs at most `burst` messages per key and `window`, then one summary of what was suppressed.
#[derive(Debug)]
pub struct RateLimitedLog {
    window_ms: i64,
    burst: u32,
    slots: Mutex<HashMap<&'static str, (i64, u32, u64)>>,
}

impl RateLimitedLog {
    /// At most `burst` lines per key per `window`; the rest are counted and reported with the next one logged.
    pub fn new(window: Duration, burst: u32) -> RateLimitedLog {
        RateLimitedLog { window_ms: window.as_millis() as i64, burst, slots: Mutex::new(HashMap::new()) }
    }

    /// Returns true when the caller should log this occurrence; `suppressed` is filled with the
    /// number of occurrences not logged since the last logged one.
    pub fn allow(&self, key: &'static str, now_ms: i64, suppressed: &mut u64) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key).or_insert((now_ms, 0, 0));
        if now_ms - slot.0 >= self.window_ms {
            slot.0 = now_ms;
            slot.1 = 0;
        }
        if slot.1 < self.burst {
            slot.1 += 1;
            *suppressed = std::mem::take(&mut slot.2);
            true
        } else {
            slot.2 += 1;
            false
        }
    }

    /// [`RateLimitedLog::allow`] as the end of the line to log: `Some("")`, or
    /// `Some(" (N more like it not logged)")` after suppressed ones; `None` when not to log.
    pub fn allow_noting(&self, key: &'static str, now_ms: i64) -> Option<String> {
        let mut suppressed = 0;
        self.allow(key, now_ms, &mut suppressed)
            .then(|| if suppressed > 0 { format!(" ({suppressed} more like it not logged)") } else { String::new() })
    }
}
