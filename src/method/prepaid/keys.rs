//! [`Keys`]: the HMAC keys the prepaid method derives from one secret, one per purpose.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// Keyed HMAC states, built once. Each purpose has its own key (derived from the secret
/// with a label), so a nonce's tag can never pass as a session token's, or the reverse;
/// and each domain has its own keys, so a token signed in on one service is refused by
/// another run with the same secret.
#[derive(Clone)]
pub(super) struct Keys {
    pub(super) nonce: HmacSha256,
    pub(super) token: HmacSha256,
}

impl Keys {
    /// The keys of sign-ins and tokens for `domain`.
    pub(super) fn new(secret: &Secret, domain: &str) -> Self {
        Keys {
            nonce: derive(secret, b"tollgate prepaid siwx nonce v1", domain),
            token: derive(secret, b"tollgate session token v1", domain),
        }
    }
}

fn derive(secret: &Secret, label: &[u8], domain: &str) -> HmacSha256 {
    // Any key length is accepted by HMAC: these cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    // A NUL cannot be part of a label, so no label and domain read as another pair.
    mac.update(&[0]);
    mac.update(domain.as_bytes());
    let key = mac.finalize().into_bytes();
    HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!())
}

/// `mac` over `parts`, truncated to 16 bytes (128 bits: plenty for a tag checked online).
pub(super) fn tag(mac: &HmacSha256, parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = mac.clone();
    parts.iter().for_each(|part| mac.update(part));
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Constant-time equality of two tags.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
