//! [`IssuedChallenges`]: every challenge unique, issued fast.
//!
//! Each challenge carries its own `opaque` (`{"n": <128-bit nonce>}`), bound into its HMAC
//! id, so no two clients ever hold the same challenge: a push charge bound to a challenge
//! id cannot be claimed by someone who merely asked for a challenge at the same moment.
//!
//! What stays the same from one challenge of an offer to the next is made once per offer
//! and millisecond of `expires`: the JCS base64url of its `request`, the HMAC state up to
//! the `opaque` slot, the header value with the id and `opaque` left as blanks to fill in,
//! and the problem body with the id blank. A challenge is then a nonce, one short HMAC
//! finalization, and two copies with the blanks filled.

use std::borrow::Cow;
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

use crate::config::Settings;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Offer;
use crate::scheme::{Challenge, ChallengeFields, IdPrefix, encode_request, format_expires, problem_body};

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
/// It belongs to [`Settings`], whose realm and current secret never change once made; a
/// clone (a layer reconfigured while shared) starts empty, with new nonces.
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
    offer: Arc<Offer>,
    /// The offer's `request` as sent: base64url of its JCS JSON.
    request: Arc<str>,
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

impl IssuedChallenges {
    /// A fresh challenge for `offer` expiring at `expires` (Unix milliseconds). `None` when
    /// the offer cannot be sent (a description with a line break).
    pub(crate) fn challenge(&self, settings: &Settings, offer: &Offer, expires: u64) -> Option<Issued> {
        let fingerprint = fingerprint(offer);
        let known = self.find(fingerprint, offer);
        if let Some((_, _, template)) = known.as_ref().filter(|(_, kept_expires, _)| *kept_expires == expires) {
            return Some(self.issue(template.clone()));
        }
        let request = match &known {
            Some((request, _, _)) => Cow::Borrowed(&**request),
            None => Cow::Owned(encode_request(&offer.request)),
        };
        let template = Arc::new(template(settings, offer, &request, expires)?);
        let request = match known {
            Some((request, _, _)) => KeptRequest::Kept(request),
            None => KeptRequest::New(request.into_owned()),
        };
        self.remember(fingerprint, offer, request, expires, template.clone());
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

    /// The kept offer equal to `offer`: its request, expiry and template.
    fn find(&self, fingerprint: u64, offer: &Offer) -> Option<(Arc<str>, u64, Arc<Template>)> {
        let recent = self.recent.read().ok()?;
        let kept = recent.kept.iter().rev().find(|kept| kept.fingerprint == fingerprint && *kept.offer == *offer)?;
        Some((kept.request.clone(), kept.expires, kept.template.clone()))
    }

    /// Keeps the template of an offer that was kept before or issued once already.
    fn remember(&self, fingerprint: u64, offer: &Offer, request: KeptRequest, expires: u64, template: Arc<Template>) {
        // A poisoned lock only loses the cache, never a response.
        let Ok(mut recent) = self.recent.write() else { return };
        let Recent { kept, once } = &mut *recent;
        let existing = match kept.iter().position(|known| known.fingerprint == fingerprint && *known.offer == *offer) {
            Some(at) => kept.remove(at).map(|known| known.offer),
            None => None,
        };
        let offer = match (existing, &request) {
            (Some(offer), _) => offer,
            (None, KeptRequest::Kept(_)) => Arc::new(offer.clone()),
            (None, KeptRequest::New(_)) => match once.iter().position(|&seen| seen == fingerprint) {
                Some(at) => {
                    once.remove(at);
                    Arc::new(offer.clone())
                }
                None => {
                    if once.len() == ONCE_OFFERS {
                        once.pop_front();
                    }
                    once.push_back(fingerprint);
                    return;
                }
            },
        };
        let request = match request {
            KeptRequest::Kept(request) => request,
            KeptRequest::New(request) => request.into(),
        };
        if kept.len() == KEPT_OFFERS {
            kept.pop_front();
        }
        kept.push_back(Kept { fingerprint, offer, request, expires, template });
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> (usize, usize) {
        self.recent.read().map_or((0, 0), |recent| (recent.kept.len(), recent.once.len()))
    }
}

/// The template of `offer`'s challenges expiring at `expires`.
fn template(settings: &Settings, offer: &Offer, request: &str, expires: u64) -> Option<Template> {
    let expires = format_expires(UNIX_EPOCH + Duration::from_millis(expires));
    let fields = ChallengeFields {
        realm: &settings.realm,
        method: &offer.method,
        intent: &offer.intent,
        request,
        expires: Some(&expires),
        digest: None,
        opaque: Some(OPAQUE_BLANK),
    };
    // A description with a line break cannot be sent; drop that offer rather than fail.
    let value = Challenge::header_value(ID_BLANK, &fields, offer.description.as_deref()).ok()?;
    let header = value.as_bytes().to_vec();
    // mppx's order: the id comes first and the `opaque` last; the realm, request and
    // description are quoted, so they cannot hold a blank's closing quote.
    let id_at = memchr::memmem::find(&header, format!("id=\"{ID_BLANK}\"").as_bytes())? + 4;
    let opaque_at = memchr::memmem::rfind(&header, format!("opaque=\"{OPAQUE_BLANK}\"").as_bytes())? + 8;
    Some(Template { prefix: settings.signer.prefix(&fields), header, id_at, opaque_at, body: OnceLock::new() })
}

/// A hash of an offer's content, to find it among the kept ones (compared in full after).
fn fingerprint(offer: &Offer) -> u64 {
    fn value(v: &serde_json::Value, h: &mut Fx) {
        use serde_json::Value;
        match v {
            Value::Null => h.write_u8(0),
            Value::Bool(b) => h.write_u8(1 + u8::from(*b)),
            Value::Number(n) => {
                h.write_u8(3);
                n.as_u64().hash(h);
                n.as_i64().hash(h);
                n.as_f64().map(f64::to_bits).hash(h);
            }
            Value::String(s) => {
                h.write_u8(4);
                s.hash(h);
            }
            Value::Array(items) => {
                h.write_u8(5);
                h.write_usize(items.len());
                items.iter().for_each(|item| value(item, h));
            }
            Value::Object(map) => {
                h.write_u8(6);
                h.write_usize(map.len());
                for (k, v) in map {
                    k.hash(h);
                    value(v, h);
                }
            }
        }
    }
    let mut h = Fx(0);
    (&*offer.method, &*offer.intent, offer.description.as_deref()).hash(&mut h);
    value(&offer.request, &mut h);
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

/// An issued offer's `request`: kept already, or new (made into a kept one only if the
/// offer is kept).
enum KeptRequest {
    Kept(Arc<str>),
    New(String),
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
    use super::super::tests::{issue, offer, settings};
    use super::*;
    use crate::scheme::check_expires;

    #[test]
    fn every_challenge_is_fresh_and_verifies() {
        let settings = settings();
        let expires = 1_767_225_900_000;
        let first = issue(&settings, &offer("25"), expires);
        assert_eq!(first.expires.as_deref(), Some("2026-01-01T00:05:00.000Z"));
        assert_eq!(first.request, encode_request(&offer("25").request));
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
        assert_eq!(other.request, encode_request(&offer("26").request));
        assert!(settings.signer.verify(&other));
        let described = Offer { description: Some("Pay per token".into()), ..offer("25") };
        let described = issue(&settings, &described, expires + 1);
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
        let first = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert_eq!(settings.issued.kept().0, 0);
        let second = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert_eq!(settings.issued.kept().0, 1);
        let third = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert!(Arc::ptr_eq(&second.template, &third.template));
        assert_ne!(first.id(), second.id());
        // A kept offer stays kept from millisecond to millisecond, with one entry.
        let later = settings.issued.challenge(&settings, &offer("1"), 2).unwrap();
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
        assert_eq!(*settings.issued.recent.read().unwrap().kept[0].offer, offer("x4"));
        // A clone (a reconfigured layer) starts empty.
        assert_eq!(settings.clone().issued.kept(), (0, 0));
    }

    #[test]
    fn problem_bodies_name_their_own_challenge() {
        let settings = settings();
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        for _ in 0..3 {
            let issued = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
            assert_eq!(issued.problem_body(&error), problem_body(&error, Some(issued.id())));
            let other = PaymentError::new(PaymentErrorKind::VerificationFailed, "no");
            assert_eq!(issued.problem_body(&other), problem_body(&other, Some(issued.id())));
        }
    }

    #[test]
    fn an_offer_that_cannot_be_sent_is_dropped() {
        let settings = settings();
        let broken = Offer { description: Some("two\nlines".into()), ..offer("1") };
        assert!(settings.issued.challenge(&settings, &broken, 1).is_none());
        assert!(settings.issued.challenge(&settings, &broken, 1).is_none());
    }
}
