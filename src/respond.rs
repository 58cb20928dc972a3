//! The responses the layer writes itself: challenges with problem details, and the `204`
//! of a management action.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request};

use crate::config::Settings;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Offer;
use crate::scheme::{
    ACCEPT_PAYMENT, AcceptPayment, Challenge, ChallengeFields, PROBLEM_JSON, Receipt, encode_request, format_expires,
    problem_body, set_no_store, set_private_cache,
};

/// A refusal: the error's status, a problem+json body, the error in the extensions, and a
/// fresh challenge per offer when the kind calls for one.
pub(crate) fn refusal(
    settings: &Settings,
    head: &request::Parts,
    offers: &[Offer],
    error: PaymentError,
) -> Response<Bytes> {
    let kind = error.kind();
    let challenges = if kind.offers_challenge() { challenges(settings, head, offers) } else { Vec::new() };
    if kind.offers_challenge() && challenges.is_empty() {
        // Nothing to offer means nothing can be paid: a server-side problem, not the client's.
        let error = PaymentError::new(PaymentErrorKind::Unpriced, "no payment method can sell this request");
        return refusal(settings, head, &[], error);
    }
    let Some(first) = challenges.first() else { return problem(error) };
    let mut response = answer(first.problem_body(&error), error);
    let headers = response.headers_mut();
    for issued in &challenges {
        headers.append(header::WWW_AUTHENTICATE, issued.value.clone());
    }
    response
}

/// A problem response with no challenge: the error's status and problem+json body.
pub(crate) fn problem(error: PaymentError) -> Response<Bytes> {
    answer(problem_body(&error, None), error)
}

fn answer(body: Bytes, error: PaymentError) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = error.kind().status();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    set_no_store(headers);
    response.extensions_mut().insert(error);
    response
}

/// `204 No Content` with the receipt, for a management action.
pub(crate) fn management(receipt: &Receipt) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(crate::scheme::PAYMENT_RECEIPT, receipt.to_header_value());
    set_private_cache(headers);
    response.extensions_mut().insert(receipt.clone());
    response
}

/// One challenge per offer, in the client's `Accept-Payment` order.
fn challenges(settings: &Settings, head: &request::Parts, offers: &[Offer]) -> Vec<Arc<Issued>> {
    let expires = millis_after(SystemTime::now(), settings.challenge_ttl);
    let order = match head.headers.get(ACCEPT_PAYMENT).and_then(AcceptPayment::parse) {
        Some(accept) => {
            let pairs: Vec<(&str, &str)> = offers.iter().map(|o| (&*o.method, &*o.intent)).collect();
            accept.order(&pairs)
        }
        None => (0..offers.len()).collect(),
    };
    order.into_iter().filter_map(|i| settings.issued.challenge(settings, &offers[i], expires)).collect()
}

/// `now + ttl` in milliseconds since the Unix epoch, rounded up (never shorter than the
/// TTL). Millisecond precision, as the reference server: challenges issued to different
/// clients differ, so a charge's challenge-bound memo cannot be claimed by someone who
/// merely asked for a challenge in the same second.
fn millis_after(now: SystemTime, ttl: Duration) -> u64 {
    let at = (now + ttl).duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
    millis.saturating_add(u64::from(at.subsec_nanos() % 1_000_000 > 0))
}

/// How many offers [`IssuedChallenges`] keeps, and how many it has issued once remembers.
const KEPT_OFFERS: usize = 16;
const ONCE_OFFERS: usize = 32;

/// The challenges a layer issued lately: for an offer sold again (the same content, so a
/// changed quote just misses), the JCS base64url of its `request` is computed once, and
/// the HMAC id, header value and problem body once per millisecond of `expires`.
///
/// An offer is kept from the second time it is issued on (until newer ones push it
/// out), so a route whose every quote differs pays a fingerprint per 402, not a copy.
///
/// It belongs to [`Settings`], whose realm and current secret never change once made; a
/// clone (a layer reconfigured while shared) starts empty.
#[derive(Default)]
pub(crate) struct IssuedChallenges {
    recent: RwLock<Recent>,
}

#[derive(Default)]
struct Recent {
    kept: VecDeque<Kept>,
    /// Fingerprints of offers issued once and not kept.
    once: VecDeque<u64>,
}

/// A kept offer and its latest challenge.
struct Kept {
    fingerprint: u64,
    offer: Arc<Offer>,
    /// The offer's `request` as sent: base64url of its JCS JSON.
    request: Arc<str>,
    /// `expires`, in milliseconds since the Unix epoch.
    expires: u64,
    issued: Arc<Issued>,
}

/// One issued challenge.
pub(crate) struct Issued {
    id: String,
    value: HeaderValue,
    /// The problem body of the first refusal that led with this challenge, by kind and detail.
    body: OnceLock<(PaymentErrorKind, Box<str>, Bytes)>,
}

impl Issued {
    /// The problem body for `error`, naming this challenge.
    fn problem_body(&self, error: &PaymentError) -> Bytes {
        match self.body.get() {
            Some((kind, detail, body)) if *kind == error.kind() && **detail == *error.detail() => body.clone(),
            _ => {
                let body = problem_body(error, Some(&self.id));
                let _ = self.body.set((error.kind(), error.detail().into(), body.clone()));
                body
            }
        }
    }
}

impl IssuedChallenges {
    /// The challenge for `offer` expiring at `expires` (Unix milliseconds). `None` when the
    /// offer cannot be sent (a description with a line break).
    fn challenge(&self, settings: &Settings, offer: &Offer, expires: u64) -> Option<Arc<Issued>> {
        let fingerprint = fingerprint(offer);
        let known = self.find(fingerprint, offer);
        if let Some((_, _, issued)) = known.as_ref().filter(|(_, kept_expires, _)| *kept_expires == expires) {
            return Some(issued.clone());
        }
        let request = match &known {
            Some((request, _, _)) => Cow::Borrowed(&**request),
            None => Cow::Owned(encode_request(&offer.request)),
        };
        let expires_text = format_expires(UNIX_EPOCH + Duration::from_millis(expires));
        let fields = ChallengeFields {
            realm: &settings.realm,
            method: &offer.method,
            intent: &offer.intent,
            request: &request,
            expires: Some(&expires_text),
            digest: None,
            opaque: None,
        };
        let id = settings.signer.id(&fields);
        // A description with a line break cannot be sent; drop that offer rather than fail.
        let value = Challenge::header_value(&id, &fields, offer.description.as_deref()).ok()?;
        let issued = Arc::new(Issued { id, value, body: OnceLock::new() });
        let request = match known {
            Some((request, _, _)) => KeptRequest::Kept(request),
            None => KeptRequest::New(request.into_owned()),
        };
        self.remember(fingerprint, offer, request, expires, issued.clone());
        Some(issued)
    }

    /// The kept offer equal to `offer`: its request, expiry and challenge.
    fn find(&self, fingerprint: u64, offer: &Offer) -> Option<(Arc<str>, u64, Arc<Issued>)> {
        let recent = self.recent.read().ok()?;
        let kept = recent.kept.iter().rev().find(|kept| kept.fingerprint == fingerprint && *kept.offer == *offer)?;
        Some((kept.request.clone(), kept.expires, kept.issued.clone()))
    }

    /// Keeps the challenge of an offer that was kept before or issued once already.
    fn remember(&self, fingerprint: u64, offer: &Offer, request: KeptRequest, expires: u64, issued: Arc<Issued>) {
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
        kept.push_back(Kept { fingerprint, offer, request, expires, issued });
    }
}

/// An issued offer's `request`: kept already, or new (made into a kept one only if the
/// offer is kept).
enum KeptRequest {
    Kept(Arc<str>),
    New(String),
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

impl Clone for IssuedChallenges {
    fn clone(&self) -> Self {
        IssuedChallenges::default()
    }
}

impl fmt::Debug for IssuedChallenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offers = self.recent.read().map_or(0, |recent| recent.kept.len());
        f.debug_struct("IssuedChallenges").field("offers", &offers).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{ChallengeSigner, check_expires};
    use serde_json::json;

    fn offer(amount: &str) -> Offer {
        Offer {
            method: "tempo".into(),
            intent: "session".into(),
            request: json!({"amount": amount, "currency": "0x20c0", "methodDetails": {"chainId": 4217}}),
            description: None,
        }
    }

    fn settings() -> Settings {
        Settings::new("api.example.com".into(), ChallengeSigner::new("secret"))
    }

    #[test]
    fn expiry_is_rounded_up_to_a_whole_millisecond() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(millis_after(t, Duration::from_secs(300)), 1_767_225_900_000);
        assert_eq!(millis_after(t + Duration::from_millis(1), Duration::from_secs(300)), 1_767_225_900_001);
        assert_eq!(millis_after(t + Duration::from_micros(1), Duration::from_secs(300)), 1_767_225_900_001);
        assert_eq!(millis_after(t, Duration::from_millis(10)), 1_767_225_600_010);
    }

    /// The challenge `IssuedChallenges` gives, parsed back from its header.
    fn issue(settings: &Settings, offer: &Offer, expires: u64) -> Challenge {
        let issued = settings.issued.challenge(settings, offer, expires).unwrap();
        let challenge = Challenge::parse_all([&issued.value]).unwrap().remove(0);
        assert_eq!(challenge.id, issued.id);
        challenge
    }

    #[test]
    fn reissues_the_same_challenge_within_a_millisecond_and_a_fresh_one_after() {
        let settings = settings();
        let expires = 1_767_225_900_000;
        let first = issue(&settings, &offer("25"), expires);
        assert_eq!(first.expires.as_deref(), Some("2026-01-01T00:05:00.000Z"));
        assert_eq!(first.request, encode_request(&offer("25").request));
        assert!(settings.signer.verify(&first));
        let at = UNIX_EPOCH + Duration::from_millis(expires);
        assert!(check_expires(first.expires.as_deref(), at).is_ok());
        assert!(check_expires(first.expires.as_deref(), at + Duration::from_millis(1)).is_err());
        assert_eq!(issue(&settings, &offer("25"), expires), first);

        // Another millisecond: same request, new expiry and id.
        let later = issue(&settings, &offer("25"), expires + 1);
        assert_eq!(later.request, first.request);
        assert_eq!(later.expires.as_deref(), Some("2026-01-01T00:05:00.001Z"));
        assert_ne!(later.id, first.id);
        assert!(settings.signer.verify(&later));

        // Another quote: another request, never the cached one.
        let other = issue(&settings, &offer("26"), expires + 1);
        assert_eq!(other.request, encode_request(&offer("26").request));
        assert!(settings.signer.verify(&other));
        let described = Offer { description: Some("Pay per token".into()), ..offer("25") };
        assert_eq!(issue(&settings, &described, expires + 1).description.as_deref(), Some("Pay per token"));
        assert_eq!(issue(&settings, &offer("25"), expires + 1), later);
    }

    #[test]
    fn keeps_offers_issued_twice_and_a_bounded_number_of_them() {
        let settings = settings();
        let kept = |settings: &Settings| settings.issued.recent.read().unwrap().kept.len();
        // Issued once: only its fingerprint is remembered; issued again: kept, then reused.
        let first = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert_eq!(kept(&settings), 0);
        let second = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert_eq!((kept(&settings), &second.id), (1, &first.id));
        let third = settings.issued.challenge(&settings, &offer("1"), 1).unwrap();
        assert!(Arc::ptr_eq(&second, &third));
        // A kept offer stays kept from second to second, with one entry.
        let later = settings.issued.challenge(&settings, &offer("1"), 2).unwrap();
        assert_ne!(later.id, first.id);
        assert!(Arc::ptr_eq(&later, &settings.issued.challenge(&settings, &offer("1"), 2).unwrap()));
        assert_eq!(kept(&settings), 1);

        for n in 0..KEPT_OFFERS + 4 {
            issue(&settings, &offer(&format!("x{n}")), 1);
            issue(&settings, &offer(&format!("x{n}")), 1);
        }
        for n in 0..ONCE_OFFERS + 4 {
            issue(&settings, &offer(&format!("y{n}")), 1);
        }
        let recent = settings.issued.recent.read().unwrap();
        assert_eq!((recent.kept.len(), recent.once.len()), (KEPT_OFFERS, ONCE_OFFERS));
        assert_eq!(*recent.kept[0].offer, offer("x4"));
        drop(recent);
        // A clone (a reconfigured layer) starts empty.
        assert_eq!(kept(&settings.clone()), 0);
    }

    #[test]
    fn refusals_carry_the_problem_body_of_their_own_error() {
        let settings = settings();
        let (head, _) = http::Request::new(()).into_parts();
        let offers = [offer("25"), offer("26")];
        let errors = [
            PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required."),
            PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required."),
            PaymentError::new(PaymentErrorKind::PaymentRequired, "another detail"),
            PaymentError::new(PaymentErrorKind::VerificationFailed, "Payment is required."),
            PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required."),
        ];
        for error in errors {
            let response = refusal(&settings, &head, &offers, error.clone());
            let challenges = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap();
            assert_eq!(challenges.len(), 2);
            assert_eq!(*response.body(), problem_body(&error, Some(&challenges[0].id)), "{error:?}");
            assert_eq!(response.status(), error.kind().status());
        }
    }

    #[test]
    fn scenario_12_two_challenges_in_the_same_millisecond_differ_and_both_verify() {
        // A push charge is bound to its challenge id: two clients must never share one,
        // even when they ask in the same millisecond for the same offer.
        let settings = settings();
        let (head, _) = http::Request::new(()).into_parts();
        let expires = 1_767_225_900_000;
        let mut ids = std::collections::HashSet::new();
        for _ in 0..4 {
            let challenge = issue(&settings, &offer("25"), expires);
            assert!(settings.signer.verify(&challenge), "{challenge:?}");
            assert_eq!(challenge.expires.as_deref(), Some("2026-01-01T00:05:00.000Z"));
            assert!(ids.insert(challenge.id.clone()), "challenge id {} was issued twice", challenge.id);
        }
        // Through the refusal path too, and the problem body names each one's own id.
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        for _ in 0..2 {
            let response = refusal(&settings, &head, &[offer("25")], error.clone());
            let challenge =
                Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
            assert!(settings.signer.verify(&challenge));
            assert!(ids.insert(challenge.id.clone()), "challenge id {} was issued twice", challenge.id);
            assert_eq!(*response.body(), problem_body(&error, Some(&challenge.id)));
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
