//! The `gaps` tables for a person: stocks in New York time with the zone, crypto in UTC.

use std::fmt::Write as _;
use std::path::Path;

use barbridge::calendar::{fmt_ny_time, Session};
use barbridge::consumer::gaps::SymbolGaps;

use super::gaps::CRYPTO_NOTE as NOTE;

/// The `gaps` table for a person; times of day in New York time, with the zone.
pub fn render_gaps(
    session: &barbridge::calendar::Session,
    until: i64,
    report: &[barbridge::consumer::gaps::SymbolGaps],
    path: &std::path::Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "session {}: {} - {} ({} minutes){}",
        session.date,
        fmt_ny_time(session.open_ms),
        fmt_ny_time(session.close_ms),
        session.minutes(),
        if until < session.close_ms { "  [in progress: counted up to now]" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:<10} {:>6} {:>13} {:>12} {:>7} {:>12} {:>8} {:>7}",
        "SYMBOL", "BARS", "BEFORE FIRST", "AFTER LAST", "HOLES", "HOLE MINUTES", "HALTED", "QUIET"
    );
    for g in report {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>13} {:>12} {:>7} {:>12} {:>8} {:>7}",
            g.symbol,
            g.bars,
            g.before_first,
            g.after_last,
            g.holes.len(),
            g.hole_minutes(),
            g.halted_minutes,
            g.quiet_minutes
        );
        for h in &g.holes {
            let _ = writeln!(out, "    hole at {}: {} minute(s)", fmt_ny_time(h.start_ms), h.minutes);
        }
        for h in &g.halts {
            let end = h.end_ms.map_or_else(|| "(still halted)".to_owned(), fmt_ny_time);
            let code = if h.code.is_empty() { String::new() } else { format!(", code {}", h.code) };
            let _ = writeln!(out, "    halted {}-{end}: {} minute(s) without bars{code}", fmt_ny_time(h.start_ms), h.minutes);
        }
    }
    if report.is_empty() {
        let _ = writeln!(out, "(no bars in {})", path.display());
    }
    out
}

/// The crypto part of `gaps` for a person: the UTC day `date`, every minute in session.
pub fn render_crypto_gaps(date: chrono::NaiveDate, session: &Session, now: i64, report: &[SymbolGaps], path: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "crypto day {} UTC: 00:00 - 24:00 UTC ({} minutes){}",
        date,
        session.minutes(),
        if now < session.close_ms { "  [in progress: counted up to now]" } else { "" }
    );
    let _ = writeln!(out, "{NOTE}");
    let _ = writeln!(out, "{:<12} {:>6} {:>13} {:>12} {:>7} {:>12}", "PAIR", "BARS", "BEFORE FIRST", "AFTER LAST", "HOLES", "HOLE MINUTES");
    for g in report {
        let _ =
            writeln!(out, "{:<12} {:>6} {:>13} {:>12} {:>7} {:>12}", g.symbol, g.bars, g.before_first, g.after_last, g.holes.len(), g.hole_minutes());
        for h in &g.holes {
            let _ = writeln!(out, "    hole at {} UTC: {} minute(s)", utc_time(h.start_ms), h.minutes);
        }
        for h in &g.halts {
            let end = h.end_ms.map_or_else(|| "(still halted)".to_owned(), |t| utc_time(t).to_string());
            let code = if h.code.is_empty() { String::new() } else { format!(", code {}", h.code) };
            let _ = writeln!(out, "    halted {}-{end} UTC: {} minute(s) without bars{code}", utc_time(h.start_ms), h.minutes);
        }
    }
    if report.is_empty() {
        let _ = writeln!(out, "(no crypto bars in {})", path.display());
    }
    out
}

/// `HH:MM` in UTC.
fn utc_time(ms: i64) -> impl std::fmt::Display {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%H:%M")
}
