//! [`IssuedChallenges`]: every challenge unique, issued fast.
//!
//! Each challenge carries its own `opaque` (`{"n": <128-bit nonce>}`), bound into its HMAC
//! id, so no two clients ever hold the same challenge: a push charge bound to a challenge
//! id cannot be claimed by someone who merely asked for a challenge at the same moment.
//!
//! What stays the same from one challenge of an offer to the next is made once per offer
//! and millisecond of `expires` (an offer is known by its encoded `request`, made once
//! when it was offered, with its method, intent and description): the HMAC state up to
//! the `opaque` slot, the header value with the id and `opaque` left as blanks to fill in,
//! and the problem body with the id blank. A challenge is then a nonce, one short HMAC
//! finalization, and two copies with the blanks filled.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::HeaderValue;

use super::{Challenge, ChallengeFields, ChallengeSigner, IdPrefix, format_expires, problem_body};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Offered;

/// How many offers [`IssuedChallenges`] keeps, and how many it has issued once remembers.
pub(super) const KEPT_OFFERS: usize = 16;
pub(super) const ONCE_OFFERS: usize = 32;

/// A challenge id's length, and the blank that stands for it in templates.
const ID_LEN: usize = 43;
const ID_BLANK: &str = "___________________________________________";
/// The length of an `opaque`: base64url of the 30 bytes of `{"n":"<22 characters>"}`.
const OPAQUE_LEN: usize = 40;
const OPAQUE_BLANK: &str = "________________________________________";

/// The challenges a layer issued lately, by offer (the same content, so a changed quote
/// just misses). An offer is kept from the second time it is issued on (until newer ones
/// push it out), so a route whose every quote differs pays a fingerprint per 402, not a
/// copy.
///
/// It belongs to the layer's settings, whose realm and current secret never change once
/// made; a clone (a layer reconfigured while shared) starts empty, with new nonces.
pub(crate) struct IssuedChallenges {
    recent: RwLock<Recent>,
    nonces: Nonces,
}

#[derive(Default)]
struct Recent {
    kept: VecDeque<Kept>,
    /// Fingerprints of offers issued once and not kept.
    once: VecDeque<u64>,
}

/// A kept offer and its latest template.
struct Kept {
    fingerprint: u64,
    key: Key,
    /// `expires`, in milliseconds since the Unix epoch.
    expires: u64,
    template: Arc<Template>,
}

/// What the challenges of one offer and one `expires` share.
struct Template {
    prefix: IdPrefix,
    /// The header value with blanks for the id and the `opaque`, and where they are.
    header: Vec<u8>,
    id_at: usize,
    opaque_at: usize,
    /// The problem body of the first refusal that led with this offer, by kind and detail,
    /// with a blank id, and where it is.
    body: OnceLock<(PaymentErrorKind, Box<str>, Vec<u8>, usize)>,
}

/// One issued challenge.
pub(crate) struct Issued {
    id: [u8; ID_LEN],
    pub(crate) value: HeaderValue,
    template: Arc<Template>,
}

impl Issued {
    /// Its id.
    pub(crate) fn id(&self) -> &str {
        // Base64url, hence ASCII.
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    /// The problem body for `error`, naming this challenge.
    pub(crate) fn problem_body(&self, error: &PaymentError) -> Bytes {
        let body = self.template.body.get_or_init(|| {
            let body = problem_body(error, Some(ID_BLANK)).to_vec();
            let at = memchr::memmem::rfind(&body, ID_BLANK.as_bytes()).unwrap_or(0);
            (error.kind(), error.detail().into(), body, at)
        });
        match body {
            (kind, detail, body, at) if *kind == error.kind() && **detail == *error.detail() => {
                let mut body = body.clone();
                if let Some(blank) = body.get_mut(*at..*at + ID_LEN) {
                    blank.copy_from_slice(&self.id);
                }
                Bytes::from(body)
            }
            _ => problem_body(error, Some(self.id())),
        }
    }
}

/// What tells one offer's challenges from another's: all the challenge says but its id,
/// expiry and `opaque`.
#[derive(PartialEq, Eq)]
struct Key {
    method: Box<str>,
    intent: Box<str>,
    description: Option<Box<str>>,
    /// The offer's `request` as sent: base64url of its JCS JSON.
    request: Arc<str>,
}

impl Key {
    fn matches(&self, offer: &Offered, request: &Arc<str>) -> bool {
        *self.request == **request
            && *self.method == *offer.method()
            && *self.intent == *offer.intent()
            && self.description.as_deref() == offer.description()
    }
}

impl IssuedChallenges {
    /// A fresh challenge for the MPP `offer` expiring at `expires` (Unix milliseconds),
    /// signed by `signer` for `realm`. `None` when the offer cannot be sent (not an MPP
    /// offer, a description with a line break).
    pub(crate) fn challenge(
        &self,
        realm: &str,
        signer: &ChallengeSigner,
        offer: &Offered,
        expires: u64,
    ) -> Option<Issued> {
        let request = offer.mpp_request()?;
        let fingerprint = fingerprint(offer, request);
        let known = self.find(fingerprint, offer, request);
        if let Some((_, template)) = known.as_ref().filter(|(kept_expires, _)| *kept_expires == expires) {
            return Some(self.issue(template.clone()));
        }
        let template = Arc::new(template(realm, signer, offer, request, expires)?);
        self.remember(fingerprint, offer, request, known.is_some(), expires, template.clone());
        Some(self.issue(template))
    }

    /// A challenge from `template` with a new `opaque`.
    fn issue(&self, template: Arc<Template>) -> Issued {
        let mut opaque = [0; OPAQUE_LEN];
        self.nonces.write_opaque(&mut opaque);
        let mut id = [0; ID_LEN];
        template.prefix.write_id(&opaque, &mut id);
        let mut header = template.header.clone();
        let (id_at, opaque_at) = (template.id_at, template.opaque_at);
        if let Some(id_blank) = header.get_mut(id_at..id_at + ID_LEN) {
            id_blank.copy_from_slice(&id);
        }
        if let Some(opaque_blank) = header.get_mut(opaque_at..opaque_at + OPAQUE_LEN) {
            opaque_blank.copy_from_slice(&opaque);
        }
        // The template is a valid header value and the fills are base64url: this holds.
        let value = HeaderValue::from_maybe_shared(Bytes::from(header)).unwrap_or(HeaderValue::from_static(""));
        Issued { id, value, template }
    }

    /// The kept offer equal to `offer`: its expiry and template.
    fn find(&self, fingerprint: u64, offer: &Offered, request: &Arc<str>) -> Option<(u64, Arc<Template>)> {
        let recent = self.recent.read().ok()?;
        let kept = recent
            .kept
            .iter()
            .rev()
            .find(|kept| kept.fingerprint == fingerprint && kept.key.matches(offer, request))?;
        Some((kept.expires, kept.template.clone()))
    }

    /// Keeps the template of an offer that was kept before or issued once already.
    fn remember(
        &self,
        fingerprint: u64,
        offer: &Offered,
        request: &Arc<str>,
        was_kept: bool,
        expires: u64,
        template: Arc<Template>,
    ) {
        // A poisoned lock only loses the cache, never a response.
        let Ok(mut recent) = self.recent.write() else { return };
        let Recent { kept, once } = &mut *recent;
        let existing =
            match kept.iter().position(|known| known.fingerprint == fingerprint && known.key.matches(offer, request)) {
                Some(at) => kept.remove(at).map(|known| known.key),
                None => None,
            };
        let key = match existing {
            Some(key) => key,
            None => {
                let seen = once.iter().position(|&seen| seen == fingerprint);
                match (was_kept, seen) {
                    (false, None) => {
                        if once.len() == ONCE_OFFERS {
                            once.pop_front();
                        }
                        once.push_back(fingerprint);
                        return;
                    }
                    (_, seen) => {
                        if let Some(at) = seen {
                            once.remove(at);
                        }
                        Key {
                            method: offer.method().into(),
                            intent: offer.intent().into(),
                            description: offer.description().map(Into::into),
                            request: request.clone(),
                        }
                    }
                }
            }
        };
        if kept.len() == KEPT_OFFERS {
            kept.pop_front();
        }
        kept.push_back(Kept { fingerprint, key, expires, template });
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> (usize, usize) {
        self.recent.read().map_or((0, 0), |recent| (recent.kept.len(), recent.once.len()))
    }
}

/// The template of `offer`'s challenges expiring at `expires`.
fn template(realm: &str, signer: &ChallengeSigner, offer: &Offered, request: &str, expires: u64) -> Option<Template> {
    let expires = format_expires(UNIX_EPOCH + Duration::from_millis(expires));
    let fields = ChallengeFields {
        realm,
        method: offer.method(),
        intent: offer.intent(),
        request,
        expires: Some(&expires),
        digest: None,
        opaque: Some(OPAQUE_BLANK),
    };
    // A description with a line break cannot be sent; drop that offer rather than fail.
    let value = Challenge::header_value(ID_BLANK, &fields, offer.description()).ok()?;
    let header = value.as_bytes().to_vec();
    // mppx's order: the id comes first and the `opaque` last; the realm, request and
    // description are quoted, so they cannot hold a blank's closing quote.
    let id_at = memchr::memmem::find(&header, format!("id=\"{ID_BLANK}\"").as_bytes())? + 4;
    let opaque_at = memchr::memmem::rfind(&header, format!("opaque=\"{OPAQUE_BLANK}\"").as_bytes())? + 8;
    Some(Template { prefix: signer.prefix(&fields), header, id_at, opaque_at, body: OnceLock::new() })
}

/// A hash of an offer's content (its encoded request, made once when it was offered), to
/// find it among the kept ones (compared in full after).
fn fingerprint(offer: &Offered, request: &str) -> u64 {
    let mut h = Fx(0);
    (offer.method(), offer.intent(), offer.description(), request).hash(&mut h);
    h.finish()
}

/// A fast, unkeyed hasher (FxHash's step, eight bytes at a time): fingerprints only pick
/// which kept offer to compare in full, so a collision costs a comparison, nothing more.
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let mut last = [0; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Nonces unique to this layer: a random 64-bit prefix (so instances sharing a secret
/// never collide) and a counter, hidden behind a random odd multiplier (a bijection, so
/// still unique, without telling how many challenges were issued).
struct Nonces {
    prefix: [u8; 8],
    multiplier: u64,
    offset: u64,
    counter: AtomicU64,
}

impl Nonces {
    fn new() -> Self {
        // `RandomState` is seeded from the OS's randomness, per process and per instance.
        let random = |n: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(n);
            h.finish()
        };
        Nonces {
            prefix: random(1).to_le_bytes(),
            multiplier: random(2) | 1,
            offset: random(3),
            counter: AtomicU64::new(0),
        }
    }

    /// Writes the next `opaque`: base64url of the JCS `{"n":"<nonce>"}`.
    fn write_opaque(&self, opaque: &mut [u8; OPAQUE_LEN]) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.prefix);
        nonce[8..].copy_from_slice(&n.wrapping_mul(self.multiplier).wrapping_add(self.offset).to_le_bytes());
        let mut json = *b"{\"n\":\"______________________\"}";
        let written = URL_SAFE_NO_PAD.encode_slice(nonce, &mut json[6..28]).unwrap_or(0);
        debug_assert_eq!(written, 22);
        let _ = URL_SAFE_NO_PAD.encode_slice(json, opaque);
    }
}

impl Default for IssuedChallenges {
    fn default() -> Self {
        IssuedChallenges { recent: RwLock::default(), nonces: Nonces::new() }
    }
}

impl Clone for IssuedChallenges {
    fn clone(&self) -> Self {
        IssuedChallenges::default()
    }
}

impl fmt::Debug for IssuedChallenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offers = self.recent.read().map_or(0, |recent| recent.kept.len());
        f.debug_struct("IssuedChallenges").field("offers", &offers).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::{Offer, Offers};
    use crate::wire::mpp::check_expires;
    use serde_json::json;

    pub(crate) struct Fixture {
        pub(crate) realm: String,
        pub(crate) signer: ChallengeSigner,
        pub(crate) issued: IssuedChallenges,
    }

    impl Fixture {
        fn challenge(&self, offer: &Offered, expires: u64) -> Option<Issued> {
            self.issued.challenge(&self.realm, &self.signer, offer, expires)
        }

        fn clone(&self) -> Fixture {
            Fixture { realm: self.realm.clone(), signer: self.signer.clone(), issued: self.issued.clone() }
        }
    }

    fn settings() -> Fixture {
        Fixture {
            realm: "api.example.com".into(),
            signer: ChallengeSigner::new("secret"),
            issued: IssuedChallenges::default(),
        }
    }

    fn described(amount: &str, description: Option<&str>) -> Offered {
        let request = json!({"amount": amount, "currency": "0x20c0", "methodDetails": {"chainId": 4217}});
        let mut offer = Offer::mpp("tempo", "session", request);
        offer.description = description.map(str::to_owned);
        let mut offers = Offers::new();
        offers.extend(0, vec![offer]);
        offers.into_vec().remove(0)
    }

    fn offer(amount: &str) -> Offered {
        described(amount, None)
    }

    /// The challenge `IssuedChallenges` gives, parsed back from its header.
    fn issue(settings: &Fixture, offer: &Offered, expires: u64) -> Challenge {
        let issued = settings.challenge(offer, expires).unwrap();
        let challenge = Challenge::parse_all([&issued.value]).unwrap().remove(0);
        assert_eq!(challenge.id, issued.id());
        challenge
    }

    #[test]
    fn every_challenge_is_fresh_and_verifies() {
        let settings = settings();
        let expires = 1_767_225_900_000;
        let first = issue(&settings, &offer("25"), expires);
        assert_eq!(first.expires.as_deref(), Some("2026-01-01T00:05:00.000Z"));
        assert_eq!(first.request, offer("25").encoded_request().unwrap());
        assert!(settings.signer.verify(&first));
        let at = UNIX_EPOCH + Duration::from_millis(expires);
        assert!(check_expires(first.expires.as_deref(), at).is_ok());
        assert!(check_expires(first.expires.as_deref(), at + Duration::from_millis(1)).is_err());
        // The opaque is the JCS of `{"n": <22 characters>}`, the only field that differs.
        let opaque = first.opaque.clone().unwrap();
        assert_eq!(opaque.len(), OPAQUE_LEN);
        let decoded: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&opaque).unwrap()).unwrap();
        assert_eq!(decoded["n"].as_str().map(str::len), Some(22));
        for kept in [issue(&settings, &offer("25"), expires), issue(&settings, &offer("25"), expires)] {
            assert_eq!((&kept.request, &kept.expires, &kept.realm), (&first.request, &first.expires, &first.realm));
            assert_ne!((&kept.id, &kept.opaque), (&first.id, &first.opaque));
            assert!(settings.signer.verify(&kept));
        }
        // Another millisecond: same request, new expiry.
        let later = issue(&settings, &offer("25"), expires + 1);
        assert_eq!(later.request, first.request);
        assert_eq!(later.expires.as_deref(), Some("2026-01-01T00:05:00.001Z"));
        assert!(settings.signer.verify(&later));
        // Another quote: another request, never the cached one.
        let other = issue(&settings, &offer("26"), expires + 1);
        assert_eq!(other.request, offer("26").encoded_request().unwrap());
        assert!(settings.signer.verify(&other));
        let described = issue(&settings, &described("25", Some("Pay per token")), expires + 1);
        assert_eq!(described.description.as_deref(), Some("Pay per token"));
        assert!(settings.signer.verify(&described));
        // A challenge with its `opaque` changed or dropped does not verify.
        assert!(!settings.signer.verify(&Challenge { opaque: None, ..later.clone() }));
        assert!(!settings.signer.verify(&Challenge { opaque: other.opaque.clone(), ..later }));
    }

    #[test]
    fn keeps_offers_issued_twice_and_a_bounded_number_of_them() {
        let settings = settings();
        // Issued once: only its fingerprint is remembered; issued again: kept, then reused.
        let first = settings.challenge(&offer("1"), 1).unwrap();
        assert_eq!(settings.issued.kept().0, 0);
        let second = settings.challenge(&offer("1"), 1).unwrap();
        assert_eq!(settings.issued.kept().0, 1);
        let third = settings.challenge(&offer("1"), 1).unwrap();
        assert!(Arc::ptr_eq(&second.template, &third.template));
        assert_ne!(first.id(), second.id());
        // A kept offer stays kept from millisecond to millisecond, with one entry.
        let later = settings.challenge(&offer("1"), 2).unwrap();
        assert!(!Arc::ptr_eq(&later.template, &third.template));
        assert_eq!(settings.issued.kept().0, 1);

        for n in 0..KEPT_OFFERS + 4 {
            issue(&settings, &offer(&format!("x{n}")), 1);
            issue(&settings, &offer(&format!("x{n}")), 1);
        }
        for n in 0..ONCE_OFFERS + 4 {
            issue(&settings, &offer(&format!("y{n}")), 1);
        }
        assert_eq!(settings.issued.kept(), (KEPT_OFFERS, ONCE_OFFERS));
        assert_eq!(
            &*settings.issued.recent.read().unwrap().kept[0].key.request,
            offer("x4").encoded_request().unwrap()
        );
        // A clone (a reconfigured layer) starts empty.
        assert_eq!(settings.clone().issued.kept(), (0, 0));
    }

    #[test]
    fn problem_bodies_name_their_own_challenge() {
        let settings = settings();
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        for _ in 0..3 {
            let issued = settings.challenge(&offer("1"), 1).unwrap();
            assert_eq!(issued.problem_body(&error), problem_body(&error, Some(issued.id())));
            let other = PaymentError::new(PaymentErrorKind::VerificationFailed, "no");
            assert_eq!(issued.problem_body(&other), problem_body(&other, Some(issued.id())));
        }
    }

    #[test]
    fn an_offer_that_cannot_be_sent_is_dropped() {
        let settings = settings();
        let broken = described("1", Some("two\nlines"));
        assert!(settings.challenge(&broken, 1).is_none());
        assert!(settings.challenge(&broken, 1).is_none());
    }
}
