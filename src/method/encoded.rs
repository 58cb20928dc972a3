//! [`EncodedRequests`]: the JCS encodings of the offers a layer made lately.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// How many encodings are kept.
const KEPT: usize = 16;

/// The base64url JCS `request` of the offers made lately, by method position and plain
/// JSON serialization.
///
/// JCS (key sorting, number forms) costs about half of a 402 when done on every request,
/// while a route sells the same few offers over and over. The plain serialization of a
/// typed request is much cheaper and determines its JCS form (JCS is a function of the
/// JSON value), so it is an exact key: a request whose plain form differs (even only in
/// the order of a map's keys) just misses.
#[derive(Default)]
pub(crate) struct EncodedRequests {
    kept: RwLock<VecDeque<Kept>>,
}

/// One kept encoding: the offering method's position, the plain form, the encoding.
struct Kept {
    issuer: usize,
    plain: Box<[u8]>,
    encoded: Arc<str>,
}

impl std::fmt::Debug for EncodedRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedRequests").finish_non_exhaustive()
    }
}

impl EncodedRequests {
    /// The base64url JCS form of `request` offered by the method at `issuer`; `None` when
    /// JCS refuses it.
    pub(crate) fn encode<R: Serialize>(&self, issuer: usize, request: &R) -> Option<Arc<str>> {
        let Ok(plain) = serde_json::to_vec(request) else { return encode(request) };
        if let Ok(kept) = self.kept.read()
            && let Some(hit) = kept.iter().find(|kept| kept.issuer == issuer && *kept.plain == *plain)
        {
            return Some(hit.encoded.clone());
        }
        let encoded = encode(request)?;
        if let Ok(mut kept) = self.kept.write() {
            if kept.len() >= KEPT {
                kept.pop_front();
            }
            kept.push_back(Kept { issuer, plain: plain.into_boxed_slice(), encoded: encoded.clone() });
        }
        Some(encoded)
    }
}

/// The base64url JCS form of `request`.
pub(crate) fn encode<R: Serialize>(request: &R) -> Option<Arc<str>> {
    let json = serde_json_canonicalizer::to_vec(request).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_encoding_is_the_one_jcs_makes_and_misses_are_exact() {
        let cache = EncodedRequests::default();
        let a = serde_json::json!({"b": 1, "a": "x"});
        let first = cache.encode(0, &a).unwrap();
        assert_eq!(first, encode(&a).unwrap());
        assert!(Arc::ptr_eq(&first, &cache.encode(0, &a).unwrap()), "the second time is kept");
        assert!(!Arc::ptr_eq(&first, &cache.encode(1, &a).unwrap()), "another method's offer is its own");
        let b = serde_json::json!({"b": 2, "a": "x"});
        assert_eq!(cache.encode(0, &b).unwrap(), encode(&b).unwrap());
        for n in 0..40 {
            let v = serde_json::json!({ "n": n });
            assert_eq!(cache.encode(0, &v).unwrap(), encode(&v).unwrap());
        }
        assert!(cache.kept.read().unwrap().len() <= KEPT, "bounded");
    }
}
