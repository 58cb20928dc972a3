//! The `expires` parameter: written like mppx (`Date.toISOString()`), checked fail-closed.

use std::time::{Duration, SystemTime};

use crate::error::{PaymentError, PaymentErrorKind};

/// Writes `t` as RFC 3339 UTC with milliseconds, `2026-01-01T00:05:00.000Z`, as mppx does.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_767_225_900);
/// assert_eq!(tollgate::wire::mpp::format_expires(t), "2026-01-01T00:05:00.000Z");
/// ```
pub fn format_expires(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Checks an echoed challenge's `expires` against `now`, failing closed as mppx does:
///
/// - missing: [`InvalidChallenge`](PaymentErrorKind::InvalidChallenge)
///   ("missing required expires field");
/// - malformed: [`InvalidChallenge`](PaymentErrorKind::InvalidChallenge);
/// - before `now`: [`PaymentExpired`](PaymentErrorKind::PaymentExpired).
///
/// Accepted: RFC 3339 date-times with `T` and `Z` (either case), or a numeric offset
/// such as `+02:00` or `-00:00`; fractional seconds optional; years from 1970.
pub fn check_expires(expires: Option<&str>, now: SystemTime) -> Result<(), PaymentError> {
    let Some(expires) = expires else {
        return Err(PaymentError::new(PaymentErrorKind::InvalidChallenge, "missing required expires field"));
    };
    let Some(at) = parse_rfc3339(expires) else {
        return Err(PaymentError::new(PaymentErrorKind::InvalidChallenge, "malformed expires field"));
    };
    if at < now {
        let detail = format!("challenge expired at {expires}");
        return Err(PaymentError::new(PaymentErrorKind::PaymentExpired, detail));
    }
    Ok(())
}

fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339(s) {
        return Some(t);
    }
    if !s.is_ascii() || s.len() > 64 {
        return None;
    }
    // RFC 3339 allows lowercase `t` and `z`; humantime wants them uppercase.
    let upper = s.to_ascii_uppercase();
    if let Ok(t) = humantime::parse_rfc3339(&upper) {
        return Some(t);
    }
    // humantime takes only `Z` and `+00:00`: read the local time as UTC, then shift.
    let (local, offset) = upper.split_at(upper.len().checked_sub(6)?);
    let o = offset.as_bytes();
    let digits = [o[1], o[2], o[4], o[5]];
    if o[3] != b':' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (hours, minutes) = (u64::from((o[1] - b'0') * 10 + o[2] - b'0'), u64::from((o[4] - b'0') * 10 + o[5] - b'0'));
    if hours > 23 || minutes > 59 {
        return None;
    }
    let as_utc = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    match o[0] {
        b'+' => as_utc.checked_sub(shift),
        b'-' => as_utc.checked_add(shift),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T: u64 = 1_767_225_900; // 2026-01-01T00:05:00Z

    #[test]
    fn formats_with_millis() {
        assert_eq!(format_expires(at(T) + Duration::from_millis(7)), "2026-01-01T00:05:00.007Z");
    }

    #[test]
    fn missing_and_malformed_are_invalid_challenge() {
        let e = check_expires(None, at(T)).unwrap_err();
        assert_eq!((e.kind(), e.detail()), (PaymentErrorKind::InvalidChallenge, "missing required expires field"));
        for bad in [
            "",
            "tomorrow",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:05:00+2:00",
            "2026-01-01T00:05:00*02:00",
        ] {
            let e = check_expires(Some(bad), at(T)).unwrap_err();
            assert_eq!(e.kind(), PaymentErrorKind::InvalidChallenge, "{bad}");
        }
    }

    #[test]
    fn past_is_expired_and_now_is_not() {
        let e = check_expires(Some("2026-01-01T00:05:00.000Z"), at(T + 1)).unwrap_err();
        assert_eq!(e.kind(), PaymentErrorKind::PaymentExpired);
        assert!(check_expires(Some("2026-01-01T00:05:00.000Z"), at(T)).is_ok());
        assert!(check_expires(Some("2026-01-01T00:05:00Z"), at(T - 300)).is_ok());
    }

    #[test]
    fn reads_offsets_lowercase_and_fractions() {
        for (s, secs) in [
            ("2026-01-01T02:05:00+02:00", T),
            ("2025-12-31T19:35:00-04:30", T),
            ("2026-01-01T00:05:00-00:00", T),
            ("2026-01-01t00:05:00z", T),
            ("2026-01-01T00:05:00.5+00:00", T),
        ] {
            let parsed = parse_rfc3339(s).unwrap();
            let whole = parsed.duration_since(UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(whole, secs, "{s}");
        }
    }
}
