//! The responses the layer writes itself: challenges with problem details, and the `204`
//! of a management action.

mod issued;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request};

use crate::config::Settings;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Offer;
use crate::scheme::{
    ACCEPT_PAYMENT, AcceptPayment, PROBLEM_JSON, Receipt, problem_body, set_no_store, set_private_cache,
};

use issued::Issued;
pub(crate) use issued::IssuedChallenges;

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
fn challenges(settings: &Settings, head: &request::Parts, offers: &[Offer]) -> Vec<Issued> {
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
/// TTL), as the reference server writes it. (Challenges differ by their `opaque`, not by
/// their expiry: see [`IssuedChallenges`].)
fn millis_after(now: SystemTime, ttl: Duration) -> u64 {
    let at = (now + ttl).duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
    millis.saturating_add(u64::from(at.subsec_nanos() % 1_000_000 > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{Challenge, ChallengeSigner};
    use serde_json::json;

    pub(super) fn offer(amount: &str) -> Offer {
        Offer {
            method: "tempo".into(),
            intent: "session".into(),
            request: json!({"amount": amount, "currency": "0x20c0", "methodDetails": {"chainId": 4217}}),
            description: None,
        }
    }

    pub(super) fn settings() -> Settings {
        Settings::new("api.example.com".into(), ChallengeSigner::new("secret"))
    }

    /// The challenge `IssuedChallenges` gives, parsed back from its header.
    pub(super) fn issue(settings: &Settings, offer: &Offer, expires: u64) -> Challenge {
        let issued = settings.issued.challenge(settings, offer, expires).unwrap();
        let challenge = Challenge::parse_all([&issued.value]).unwrap().remove(0);
        assert_eq!(challenge.id, issued.id());
        challenge
    }

    #[test]
    fn expiry_is_rounded_up_to_a_whole_millisecond() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(millis_after(t, Duration::from_secs(300)), 1_767_225_900_000);
        assert_eq!(millis_after(t + Duration::from_millis(1), Duration::from_secs(300)), 1_767_225_900_001);
        assert_eq!(millis_after(t + Duration::from_micros(1), Duration::from_secs(300)), 1_767_225_900_001);
        assert_eq!(millis_after(t, Duration::from_millis(10)), 1_767_225_600_010);
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
}
