//! Time as messages see it: unix milliseconds (with a test hook that shifts
//! the clock) and the window of sender timestamps a node accepts.

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

#[cfg(test)]
mod tests {
    use super::*;

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
