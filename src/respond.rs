//! The responses the layer writes itself: challenges with problem details, and the `204`
//! of a management action.

use std::time::SystemTime;

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
    let body = problem_body(&error, challenges.first().map(|(id, _)| id.as_str()));
    let mut response = Response::new(body);
    *response.status_mut() = kind.status();
    let headers = response.headers_mut();
    for (_, value) in challenges {
        headers.append(header::WWW_AUTHENTICATE, value);
    }
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

/// One challenge per offer, in the client's `Accept-Payment` order: (id, header value).
fn challenges(settings: &Settings, head: &request::Parts, offers: &[Offer]) -> Vec<(String, HeaderValue)> {
    let expires = format_expires(SystemTime::now() + settings.challenge_ttl);
    let order = match head.headers.get(ACCEPT_PAYMENT).and_then(AcceptPayment::parse) {
        Some(accept) => {
            let pairs: Vec<(&str, &str)> = offers.iter().map(|o| (&*o.method, &*o.intent)).collect();
            accept.order(&pairs)
        }
        None => (0..offers.len()).collect(),
    };
    order
        .into_iter()
        .filter_map(|i| {
            let offer = &offers[i];
            let request = encode_request(&offer.request);
            let fields = ChallengeFields {
                realm: &settings.realm,
                method: &offer.method,
                intent: &offer.intent,
                request: &request,
                expires: Some(&expires),
                digest: None,
                opaque: None,
            };
            let challenge = Challenge {
                id: settings.signer.id(&fields),
                realm: settings.realm.clone(),
                method: offer.method.to_string(),
                intent: offer.intent.to_string(),
                request,
                description: offer.description.clone(),
                digest: None,
                expires: Some(expires.clone()),
                opaque: None,
            };
            // A description with a line break cannot be sent; drop that offer rather than fail.
            let value = challenge.to_header_value().ok()?;
            Some((challenge.id, value))
        })
        .collect()
}
