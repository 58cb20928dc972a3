//! Deadlines from configured durations, which may be as long as `Duration::MAX`.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: "never" for a deadline, and far from `Instant`'s overflow.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + after`, saturating: a duration too long for an `Instant` means "never".
pub(crate) fn after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_duration_is_far_away_and_never_panics() {
        let now = Instant::now();
        assert!(after(Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert!(after(Duration::from_secs(1)) >= now + Duration::from_secs(1));
    }
}
