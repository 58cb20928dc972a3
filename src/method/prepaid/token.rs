//! [`SessionTokens`]: short-lived bearer tokens for a signed-in payer.
//!
//! A token is `tgs1.<payload>.<tag>`: `payload` is base64url (no padding) of
//! `{"a":"<address, lowercase 0x hex>","e":<expiry, Unix seconds>}` and `tag` is base64url of
//! the first 16 bytes of HMAC-SHA256 over `tgs1.<payload>`, with a key derived from the
//! layer's secret and the sign-in domain (a token of one domain is refused on another).
//! Stateless: any instance with the secret checks it; it cannot be revoked
//! before it expires, which is why it is short-lived (15 minutes by default). It goes in
//! `Authorization: Bearer <token>`, which is also what an OpenAI SDK sends for its `apiKey`.

use std::time::{Duration, SystemTime};

use alloy::primitives::Address;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::keys::{Keys, same, tag};
use super::nonce::unix;

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "tgs1.";

/// How long a token lives by default.
const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Issues and checks session tokens: short-lived bearer tokens for a signed-in payer.
///
/// A token is `tgs1.<payload>.<tag>`: `payload` is base64url (no padding) of
/// `{"a":"<address>","e":<expiry, Unix seconds>}` and `tag` is base64url of the first 16
/// bytes of HMAC-SHA256 over `tgs1.<payload>`, keyed from the layer's secret and the sign-in
/// domain (a token works on the domain it was signed in on only). Stateless: any
/// instance with the secret checks it, and it cannot be revoked before it expires (hence 15
/// minutes by default). It travels as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct SessionTokens {
    keys: Keys,
    ttl: Duration,
}

/// A token and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionToken {
    /// The token, `tgs1.…`.
    pub token: String,
    /// Who it names.
    pub address: Address,
    /// When it expires, Unix seconds.
    pub expires: u64,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    a: Address,
    e: u64,
}

impl SessionTokens {
    pub(super) fn new(keys: Keys) -> Self {
        SessionTokens { keys, ttl: TOKEN_TTL }
    }

    /// Sets how long tokens live (default 15 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// A token for `address`, from now.
    pub fn issue(&self, address: Address) -> SessionToken {
        let expires = unix(SystemTime::now()).saturating_add(self.ttl.as_secs().max(1));
        let claims = serde_json::to_vec(&Claims { a: address, e: expires }).unwrap_or_default();
        let signed = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(claims));
        let tag = URL_SAFE_NO_PAD.encode(tag(&self.keys.token, &[signed.as_bytes()]));
        SessionToken { token: format!("{signed}.{tag}"), address, expires }
    }

    /// The address a token names, if this server issued it and it has not expired.
    pub fn check(&self, token: &str) -> Option<Address> {
        if token.len() > 512 || !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let (signed, given) = token.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(given).ok()?;
        if !same(&tag(&self.keys.token, &[signed.as_bytes()]), &given) {
            return None;
        }
        let claims = URL_SAFE_NO_PAD.decode(signed.strip_prefix(TOKEN_PREFIX)?).ok()?;
        let claims: Claims = serde_json::from_slice(&claims).ok()?;
        (unix(SystemTime::now()) < claims.e).then_some(claims.a)
    }

    /// The bearer token of a request's `Authorization` header, if it is one of ours (by
    /// its prefix; not yet checked).
    pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(TOKEN_PREFIX)).then_some(token)
    }
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn a_token_checks_only_untouched_and_unexpired() {
        let tokens =
            SessionTokens::new(Keys::new(&Secret::new("a test secret of at least 32 bytes!"), "api.example.com"));
        let address = Address::repeat_byte(0x11);
        let issued = tokens.issue(address);
        assert!(issued.token.starts_with("tgs1."));
        assert_eq!(tokens.check(&issued.token), Some(address));
        // Another address spliced into the payload breaks the tag.
        let (_, tag) = issued.token.rsplit_once('.').unwrap();
        let claims = serde_json::to_vec(&Claims { a: Address::repeat_byte(0x22), e: issued.expires }).unwrap();
        let forged = format!("tgs1.{}.{tag}", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(tokens.check(&forged), None);
        let other =
            SessionTokens::new(Keys::new(&Secret::new("another secret of at least 32 bytes"), "api.example.com"));
        assert_eq!(other.check(&issued.token), None);
        let expired = tokens.clone().ttl(Duration::ZERO);
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {}", issued.token).parse().unwrap());
        assert_eq!(SessionTokens::bearer(&headers), Some(&*issued.token));
        headers.insert(http::header::AUTHORIZATION, "Bearer x402".parse().unwrap());
        assert_eq!(SessionTokens::bearer(&headers), None);
        assert!(expired.issue(address).expires > 0);
    }
}
