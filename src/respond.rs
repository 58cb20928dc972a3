//! The responses the layer writes itself: challenges with problem details, and the `204`
//! of a management action.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request};

use crate::config::Settings;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::{Offered, Wire};
use crate::wire::mpp::{
    ACCEPT_PAYMENT, AcceptPayment, Issued, PROBLEM_JSON, Receipt, problem_body, set_no_store, set_private_cache,
};
use crate::wire::x402::PAYMENT_REQUIRED;

/// A refusal: the error's status, a problem+json body, the error in the extensions, and,
/// when the kind calls for them, every form's offers: a fresh challenge per MPP offer, and
/// the x402 offers in `PAYMENT-REQUIRED` and the body ([`crate::wire::payment_required`]).
pub(crate) fn refusal(
    settings: &Settings,
    head: &request::Parts,
    offers: &[Offered],
    error: PaymentError,
) -> Response<Bytes> {
    let kind = error.kind();
    let offering = kind.offers_challenge();
    let challenges = if offering { challenges(settings, head, offers) } else { Vec::new() };
    let x402: Vec<_> =
        if offering { offers.iter().filter_map(Offered::requirements).cloned().collect() } else { Vec::new() };
    if offering && challenges.is_empty() && x402.is_empty() {
        // Nothing to offer means nothing can be paid: a server-side problem, not the client's.
        let error = PaymentError::new(PaymentErrorKind::Unpriced, "no payment method can sell this request");
        return refusal(settings, head, &[], error);
    }
    if offering {
        crate::observe::challenged(kind);
    }
    let first = challenges.first();
    let mut response = if x402.is_empty() {
        let Some(first) = first else { return problem(error) };
        answer(first.problem_body(&error), error)
    } else {
        let resource = crate::wire::resource(head);
        let (required, body) = crate::wire::payment_required(&error, first.map(Issued::id), resource, x402);
        let mut response = answer(body, error);
        response.headers_mut().insert(PAYMENT_REQUIRED, required);
        response
    };
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
    crate::observe::refused(error.kind());
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
    headers.insert(crate::wire::mpp::PAYMENT_RECEIPT, receipt.to_header_value());
    set_private_cache(headers);
    response.extensions_mut().insert(receipt.clone());
    response
}

/// One challenge per MPP offer, in the client's `Accept-Payment` order.
fn challenges(settings: &Settings, head: &request::Parts, offers: &[Offered]) -> Vec<Issued> {
    let expires = millis_after(SystemTime::now(), settings.challenge_ttl);
    let mpp: Vec<&Offered> = offers.iter().filter(|offer| offer.wire() == Wire::Mpp).collect();
    let order = match head.headers.get(ACCEPT_PAYMENT).and_then(AcceptPayment::parse) {
        Some(accept) => {
            let pairs: Vec<(&str, &str)> = mpp.iter().map(|o| (o.method(), o.intent())).collect();
            accept.order(&pairs)
        }
        None => (0..mpp.len()).collect(),
    };
    let (realm, signer) = (&settings.realm, &settings.signer);
    order.into_iter().filter_map(|i| settings.issued.challenge(realm, signer, mpp.get(i)?, expires)).collect()
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
    use crate::method::{Offer, Offers};
    use crate::wire::mpp::{Challenge, ChallengeSigner};
    use serde_json::json;

    fn offers(amounts: &[&str]) -> Vec<Offered> {
        let mut offers = Offers::new();
        let offer = |amount: &&str| {
            let request = json!({"amount": amount, "currency": "0x20c0", "methodDetails": {"chainId": 4217}});
            Offer::mpp("tempo", "session", request)
        };
        offers.extend(0, amounts.iter().map(offer).collect());
        offers.into_vec()
    }

    fn settings() -> Settings {
        Settings::new("api.example.com".into(), ChallengeSigner::new("secret"))
    }

    /// The challenge `IssuedChallenges` gives, parsed back from its header.
    fn issue(settings: &Settings, offer: &Offered, expires: u64) -> Challenge {
        let issued = settings.issued.challenge(&settings.realm, &settings.signer, offer, expires).unwrap();
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
        let offers = offers(&["25", "26"]);
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
            let challenge = issue(&settings, &offers(&["25"])[0], expires);
            assert!(settings.signer.verify(&challenge), "{challenge:?}");
            assert_eq!(challenge.expires.as_deref(), Some("2026-01-01T00:05:00.000Z"));
            assert!(ids.insert(challenge.id.clone()), "challenge id {} was issued twice", challenge.id);
        }
        // Through the refusal path too, and the problem body names each one's own id.
        let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
        for _ in 0..2 {
            let response = refusal(&settings, &head, &offers(&["25"]), error.clone());
            let challenge =
                Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
            assert!(settings.signer.verify(&challenge));
            assert!(ids.insert(challenge.id.clone()), "challenge id {} was issued twice", challenge.id);
            assert_eq!(*response.body(), problem_body(&error, Some(&challenge.id)));
        }
    }
}
