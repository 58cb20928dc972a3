//! SIWX nonces that need no store to issue: `hex(issued ‖ expires ‖ random ‖ tag)`.
//!
//! The issue and expiry times (Unix seconds, big-endian u64) and 16 random bytes are bound
//! by an HMAC tag, so the server recognises its own nonces (and their validity window)
//! without remembering them. A nonce is spent once, at sign-in, by an atomic claim in the
//! store; only a nonce that passed the tag and signature checks ever reaches the store,
//! and its claim lapses after the nonce expires, so what a signer (anyone with a fresh
//! wallet) makes the server remember is bounded by the sign-ins of one nonce lifetime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keys::{Keys, same, tag};

/// Bytes in a nonce before hex: two times, 16 random bytes, a 16-byte tag.
const LEN: usize = 8 + 8 + 16 + 16;

/// A nonce and the validity window it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Nonce {
    pub(super) text: String,
    pub(super) issued: u64,
    pub(super) expires: u64,
}

/// A fresh nonce valid from `now` for `ttl`.
pub(super) fn issue(keys: &Keys, now: SystemTime, ttl: Duration) -> Nonce {
    let issued = unix(now);
    let expires = issued.saturating_add(ttl.as_secs().max(1));
    let random = unique();
    let (issued_be, expires_be) = (issued.to_be_bytes(), expires.to_be_bytes());
    let tag = tag(&keys.nonce, &[&issued_be, &expires_be, &random]);
    let mut bytes = Vec::with_capacity(LEN);
    for part in [&issued_be[..], &expires_be[..], &random[..], &tag[..]] {
        bytes.extend_from_slice(part);
    }
    Nonce { text: alloy::hex::encode(bytes), issued, expires }
}

/// 16 bytes no other nonce of this process has, and that another process's are unlikely
/// to: a counter and the clock hashed with std's per-process random keys. Uniqueness is
/// all a nonce needs from them; that the server issued it rests on the tag.
fn unique() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut out = [0u8; 16];
    for (half, salt) in out.chunks_exact_mut(8).zip([0u8, 1]) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u8(salt);
        hasher.write_u64(n);
        hasher.write_u128(nanos);
        half.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    out
}

/// The nonce in `text` if this server issued it (its tag checks), whatever its window.
pub(super) fn open(keys: &Keys, text: &str) -> Option<Nonce> {
    if text.len() != 2 * LEN {
        return None;
    }
    let bytes = alloy::hex::decode(text).ok()?;
    let (issued, rest) = bytes.split_first_chunk::<8>()?;
    let (expires, rest) = rest.split_first_chunk::<8>()?;
    let (random, given) = rest.split_first_chunk::<16>()?;
    let expected = tag(&keys.nonce, &[issued, expires, random]);
    if !same(&expected, given) {
        return None;
    }
    Some(Nonce { text: text.to_owned(), issued: u64::from_be_bytes(*issued), expires: u64::from_be_bytes(*expires) })
}

/// `time` in whole Unix seconds (zero before the epoch).
pub(super) fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds as RFC 3339 (`2026-11-29T15:00:00Z`), the form the challenge carries.
pub(super) fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn a_nonce_opens_only_with_its_own_key_and_untouched() {
        let keys = Keys::new(&Secret::new("a test secret of at least 32 bytes!"), "api.example.com");
        let nonce = issue(&keys, UNIX_EPOCH + Duration::from_secs(1_000), Duration::from_secs(300));
        assert_eq!((nonce.issued, nonce.expires), (1_000, 1_300));
        assert!(nonce.text.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(open(&keys, &nonce.text), Some(nonce.clone()));
        let other = Keys::new(&Secret::new("another secret of at least 32 bytes"), "api.example.com");
        assert_eq!(open(&other, &nonce.text), None);
        // A later expiry spliced in breaks the tag.
        let mut forged = nonce.text.clone();
        forged.replace_range(16..32, &alloy::hex::encode(9_999u64.to_be_bytes()));
        assert_eq!(open(&keys, &forged), None);
        assert_eq!(open(&keys, "zz"), None);
        assert_eq!(rfc3339(1_000), "1970-01-01T00:16:40Z");
    }
}
