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
    pub date: NaiveDate,
    pub open_ms: i64,
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

/// The regular session on `date`, or `None` on weekends and holidays.
/// Errors when `date` is outside the embedded table.
pub fn session_on(date: NaiveDate) -> Result<Option<Session>, String> {
    let (first, last) = coverage();
    if date < first || date > last {
        return Err(format!(
            "the NYSE calendar table covers {first}..{last}, not {date}; regenerate it with scripts/gen_calendar.py"
        ));
    }
    let s = sessions();
    Ok(s.binary_search_by_key(&date, |x| x.date).ok().map(|i| s[i]))
}

/// The New York calendar date of an instant.
pub fn ny_date(ts_ms: i64) -> NaiveDate {
    New_York.timestamp_millis_opt(ts_ms).single().map_or_else(
        || chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default().date_naive(),
        |t| t.date_naive(),
    )
}

/// `[start, end)` of the New York calendar day containing `ts_ms`, in UTC epoch ms.
pub fn ny_day_bounds(ts_ms: i64) -> (i64, i64) {
    let date = ny_date(ts_ms);
    let start = |d: NaiveDate| {
        New_York
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .earliest()
            .map_or(0, |t| t.timestamp_millis())
    };
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

    #[test]
    fn new_york_dates_are_not_utc_dates() {
        // 2025-10-22 02:52 UTC is still 2025-10-21 in New York (the seed's "wrong date" trap
        // is the opposite mistake: using a stale date instead of computing it).
        assert_eq!(ny_date(1_761_101_520_000), d("2025-10-21"));
        let (start, end) = ny_day_bounds(1_761_101_520_000);
        assert_eq!(end - start, 86_400_000);
        // DST change day is 25 hours long (2025-11-02).
        let (start, end) = ny_day_bounds(1_762_099_200_000);
        assert_eq!(end - start, 25 * 3_600_000);
    }
}
