//! UTC dates and times as text (benchmark reports, LangChain run logs), without a date crate: the civil
//! date from days since 1970-01-01 by Howard Hinnant's algorithm.

use std::time::{SystemTime, UNIX_EPOCH};

/// Year, month and day of the `days`-th day after 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Today as YYYY-MM-DD.
pub fn today() -> String {
    let (y, m, d) = civil(since_epoch(SystemTime::now()).as_secs() as i64 / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `t` as ISO 8601 with microseconds (`2026-12-02T03:04:05.678901+00:00`), as LangChain writes run times.
pub fn iso8601(t: SystemTime) -> String {
    let d = since_epoch(t);
    let (secs, micros) = (d.as_secs(), d.subsec_micros());
    let (y, m, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00", rem / 3_600, rem % 3_600 / 60, rem % 60)
}

fn since_epoch(t: SystemTime) -> std::time::Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_times() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
        let t = UNIX_EPOCH + Duration::from_micros(1_764_644_645_678_901);
        assert_eq!(iso8601(t), "2025-12-02T03:04:05.678901+00:00");
    }
}
