//! Time as messages see it: unix milliseconds (with a test hook that shifts
//! the clock), the window of sender timestamps a node accepts, and a
//! timestamp as a person reads it (local date and time).

/// Envelopes older than this (by sender timestamp) are refused as replays.
pub const MAX_MESSAGE_AGE_MS: u64 = 24 * 60 * 60 * 1000;
/// Envelopes dated further than this in the future are refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// The environment variable that shifts this node's clock by a signed number
/// of milliseconds. A test hook (replay tests make an hour pass with it); never
/// needed in real use.
pub const CLOCK_OFFSET_ENV: &str = "MURMUR_TEST_CLOCK_OFFSET_MS";

/// Unix time in milliseconds (shifted by [`CLOCK_OFFSET_ENV`] when set).
pub fn now_ms() -> u64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    now.saturating_add(offset).max(0) as u64
}

/// Whether a sender timestamp is within the accepted window around `now`.
pub fn fresh(ts: u64, now: u64) -> bool {
    fresh_within(ts, now, MAX_MESSAGE_AGE_MS)
}

/// Whether a sender timestamp is at most `max_age` ms old and not too far in the future.
pub fn fresh_within(ts: u64, now: u64, max_age: u64) -> bool {
    ts.saturating_add(max_age) >= now && ts <= now + MAX_CLOCK_SKEW_MS
}

/// `ts_ms` (unix milliseconds) as the machine's local date and time,
/// `YYYY-MM-DD HH:MM:SS`, for listings a person reads (`/inbox`). The time
/// zone is the C library's (`TZ`, else `/etc/localtime`, else UTC).
pub fn local_datetime(ts_ms: u64) -> String {
    let secs = libc::time_t::try_from(ts_ms / 1000).unwrap_or(libc::time_t::MAX);
    // SAFETY: `tm` is plain data that `localtime_r` fills in; it reads only
    // `secs` and the time zone it loads once (murmur never changes `TZ`).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return format!("@{}", ts_ms / 1000);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_datetime_is_the_local_clock_reading() {
        // 2026-12-03 14:03:10 UTC; the test machine's zone shifts it by whole
        // minutes (every zone's offset is), so the seconds and the form stay.
        let ts = 1_796_306_590_123;
        let shown = local_datetime(ts);
        assert_eq!(shown.len(), "2026-12-03 14:03:10".len(), "{shown}");
        assert!(shown.ends_with(":10"), "{shown}");
        assert!(shown.starts_with("2026-12-0"), "{shown}");
        // Its offset from UTC is what the C library says for that instant.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let secs = (ts / 1000) as libc::time_t;
        assert!(!unsafe { libc::localtime_r(&secs, &mut tm) }.is_null());
        let minutes = |hh: &str, mm: &str| hh.parse::<i64>().unwrap() * 60 + mm.parse::<i64>().unwrap();
        let day = shown[8..10].parse::<i64>().unwrap() - 3;
        let local = day * 24 * 60 + minutes(&shown[11..13], &shown[14..16]);
        assert_eq!(local - (14 * 60 + 3), tm.tm_gmtoff as i64 / 60, "{shown}");
    }

    #[test]
    fn freshness_window() {
        let now = 10 * MAX_MESSAGE_AGE_MS;
        assert!(fresh(now, now));
        assert!(fresh(now - MAX_MESSAGE_AGE_MS, now));
        assert!(!fresh(now - MAX_MESSAGE_AGE_MS - 1, now));
        assert!(fresh(now + MAX_CLOCK_SKEW_MS, now));
        assert!(!fresh(now + MAX_CLOCK_SKEW_MS + 1, now));
    }
}
