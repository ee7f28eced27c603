//! Market calendar: NYSE regular sessions (holidays, early closes, DST) and New York dates.
//!
//! The session table `data/xnys_sessions.csv` is generated from the maintained
//! `exchange_calendars` package by `scripts/gen_calendar.py` and embedded at build time.

use std::sync::OnceLock;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::America::New_York;

static TABLE: &str = include_str!("../data/xnys_sessions.csv");

/// One regular session, UTC epoch milliseconds, `[open_ms, close_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The New York trading day.
    pub date: NaiveDate,
    /// The opening bell, UTC epoch milliseconds.
    pub open_ms: i64,
    /// The close (early on half days), UTC epoch milliseconds; the session ends before it.
    pub close_ms: i64,
}

impl Session {
    /// Minutes in the session (390 on a normal day, 210 on an early close).
    pub fn minutes(&self) -> i64 {
        (self.close_ms - self.open_ms) / 60_000
    }
}

fn sessions() -> &'static [Session] {
    static SESSIONS: OnceLock<Vec<Session>> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("date"))
            .filter_map(|l| {
                let mut parts = l.split(',');
                let date = NaiveDate::parse_from_str(parts.next()?, "%Y-%m-%d").ok()?;
                let open_ms = parts.next()?.parse().ok()?;
                let close_ms = parts.next()?.parse().ok()?;
                Some(Session { date, open_ms, close_ms })
            })
            .collect()
    })
}

/// The dates the embedded table covers.
pub fn coverage() -> (NaiveDate, NaiveDate) {
    let s = sessions();
    (s[0].date, s[s.len() - 1].date)
}

/// How long before the table's last date [`expiry_notice`] starts warning: long enough to
/// regenerate and release in an orderly way.
pub const EXPIRY_NOTICE_DAYS: i64 = 180;

/// A warning for a maintainer when `today` is within [`EXPIRY_NOTICE_DAYS`] of the end of the
/// session table (or past it); `None` while the table reaches far enough.
pub fn expiry_notice(today: NaiveDate) -> Option<String> {
    let last = coverage().1;
    let left = (last - today).num_days();
    (left < EXPIRY_NOTICE_DAYS).then(|| {
        format!("the NYSE session table ends on {last} ({left} days from {today}); regenerate data/xnys_sessions.csv with scripts/gen_calendar.py")
    })
}

/// A date the embedded session table does not cover.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("the NYSE calendar table covers {first}..{last}, not {date}; regenerate it with scripts/gen_calendar.py")]
pub struct OutsideTable {
    /// The date asked for.
    pub date: NaiveDate,
    /// The table's first date.
    pub first: NaiveDate,
    /// The table's last date.
    pub last: NaiveDate,
}

/// The regular session on `date`, or `None` on weekends and holidays.
///
/// # Errors
/// [`OutsideTable`] when `date` lies outside the embedded session table.
pub fn session_on(date: NaiveDate) -> Result<Option<Session>, OutsideTable> {
    let (first, last) = coverage();
    if date < first || date > last {
        return Err(OutsideTable { date, first, last });
    }
    let s = sessions();
    Ok(s.binary_search_by_key(&date, |x| x.date).ok().map(|i| s[i]))
}

/// True when `now_ms` is inside a regular session. Outside the table's range: Mon-Fri
/// 09:30-16:00 New York (the staleness clock must keep working on an old table).
pub fn in_session(now_ms: i64) -> bool {
    session_or_weekday(ny_date(now_ms)).is_some_and(|s| s.open_ms <= now_ms && now_ms < s.close_ms)
}

/// The open of the session in progress at `now_ms`, or of the most recent one before it.
pub fn last_session_open(now_ms: i64) -> i64 {
    let mut date = ny_date(now_ms);
    for _ in 0..15 {
        if let Some(s) = session_or_weekday(date).filter(|s| s.open_ms <= now_ms) {
            return s.open_ms;
        }
        date = date.pred_opt().unwrap_or(date);
    }
    now_ms - 86_400_000
}

/// [`session_on`], or Mon-Fri 09:30-16:00 New York for a date outside the table.
pub fn session_or_weekday(date: NaiveDate) -> Option<Session> {
    use chrono::Datelike;
    match session_on(date) {
        Ok(s) => s,
        Err(_) if date.weekday().number_from_monday() <= 5 => {
            let at = |h, m| New_York.from_local_datetime(&date.and_hms_opt(h, m, 0)?).earliest().map(|t| t.timestamp_millis());
            Some(Session { date, open_ms: at(9, 30)?, close_ms: at(16, 0)? })
        }
        Err(_) => None,
    }
}

/// The New York calendar date of an instant.
pub fn ny_date(ts_ms: i64) -> NaiveDate {
    New_York
        .timestamp_millis_opt(ts_ms)
        .single()
        .map_or_else(|| chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default().date_naive(), |t| t.date_naive())
}

/// `YYYY-MM-DD HH:MM EDT` (or `EST`): an instant as New York wall-clock time with its zone,
/// the way every person-facing time is shown (bars and sessions are New York minutes).
pub fn fmt_ny(ts_ms: i64) -> String {
    match New_York.timestamp_millis_opt(ts_ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M %Z").to_string(),
        None => format!("{ts_ms} ms"),
    }
}

/// `HH:MM EDT` (or `EST`): [`fmt_ny`] without the date.
pub fn fmt_ny_time(ts_ms: i64) -> String {
    match New_York.timestamp_millis_opt(ts_ms).single() {
        Some(t) => t.format("%H:%M %Z").to_string(),
        None => format!("{ts_ms} ms"),
    }
}

/// `[start, end)` of the New York calendar day containing `ts_ms`, in UTC epoch ms.
pub fn ny_day_bounds(ts_ms: i64) -> (i64, i64) {
    let date = ny_date(ts_ms);
    let start =
        |d: NaiveDate| New_York.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")).earliest().map_or(0, |t| t.timestamp_millis());
    (start(date), start(date.succ_opt().unwrap_or(date)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn sessions_know_holidays_early_closes_and_dst() {
        assert_eq!(session_on(d("2025-12-25")).unwrap(), None, "Christmas");
        assert_eq!(session_on(d("2025-11-22")).unwrap(), None, "Saturday");
        let black_friday = session_on(d("2025-11-28")).unwrap().unwrap();
        assert_eq!(black_friday.minutes(), 210, "13:00 early close");
        // 09:30 New York is 13:30 UTC in summer (EDT) and 14:30 UTC in winter (EST).
        let summer = session_on(d("2025-10-08")).unwrap().unwrap();
        assert_eq!(summer.open_ms, 1_759_930_200_000);
        let winter = session_on(d("2025-11-20")).unwrap().unwrap();
        assert_eq!(winter.open_ms % 86_400_000, (14 * 60 + 30) * 60_000);
        assert!(session_on(d("2001-01-02")).is_err());
    }

    /// Deterministic: the notice is judged against the table's own end, never against today.
    #[test]
    fn expiry_notice_starts_well_before_the_table_ends() {
        let last = coverage().1;
        assert!(expiry_notice(last - chrono::Days::new(EXPIRY_NOTICE_DAYS as u64 + 1)).is_none());
        let notice = expiry_notice(last - chrono::Days::new(30)).expect("30 days before the end");
        assert!(notice.contains("30 days") && notice.contains("gen_calendar.py"), "{notice}");
        assert!(expiry_notice(last + chrono::Days::new(1)).is_some());
    }

    /// The table is generated far ahead of the day it was generated (its header says which),
    /// so a fresh table never warns for years.
    #[test]
    fn table_reaches_years_beyond_its_generation() {
        let generated = TABLE
            .lines()
            .next()
            .and_then(|l| l.split("generated ").nth(1))
            .and_then(|rest| rest.get(..10))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .expect("header: '# ... generated YYYY-MM-DD ...'");
        let (first, last) = coverage();
        assert!(first <= d("2015-01-02"));
        assert!((last - generated).num_days() >= 5 * 365, "table ends {last}, generated {generated}");
        // Every row parsed, in order, one per weekday that is not a holiday.
        let rows = TABLE.lines().filter(|l| !l.starts_with('#') && !l.starts_with("date")).count();
        assert_eq!(rows, sessions().len());
        assert!(sessions().windows(2).all(|w| w[0].date < w[1].date && w[0].close_ms < w[1].open_ms));
    }

    #[test]
    fn times_are_shown_in_new_york_with_the_zone() {
        assert_eq!(fmt_ny(1_759_930_080_000), "2025-10-08 09:28 EDT");
        assert_eq!(fmt_ny_time(1_763_649_000_000), "09:30 EST");
    }

    #[test]
    fn new_york_dates_are_not_utc_dates() {
        // 2025-10-22 02:52 UTC is still 2025-10-21 in New York (the "wrong date after a restart" trap
        // is the opposite mistake: using a stale date instead of computing it).
        assert_eq!(ny_date(1_761_101_520_000), d("2025-10-21"));
        let (start, end) = ny_day_bounds(1_761_101_520_000);
        assert_eq!(end - start, 86_400_000);
        // DST change day is 25 hours long (2025-11-02).
        let (start, end) = ny_day_bounds(1_762_099_200_000);
        assert_eq!(end - start, 25 * 3_600_000);
    }
}
