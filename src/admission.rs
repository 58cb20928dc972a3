//! Admission: everything between a request arriving and the inner service being called.
//!
//! Order (the reference server's, so clients see the same problem types): read the body if
//! pricing needs it → quote → credential present and decodable → HMAC id → realm →
//! pinned request fields → `expires` → method verification → reserve the upfront cost.
//! Every refusal happens before the inner service runs.
//!
//! One exception: when the body must be read to price the request, a credential's HMAC id
//! and realm are checked first, so a forged credential never makes the server read a body
//! (it is refused with no challenge: a fresh one needs the price, which needs the body).
//! The body read has a time limit (`408`).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, request};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::amount::{Amount, Quote};
use crate::config::Shared;
use crate::context::PaymentContext;
use crate::error::{BoxError, PaymentError, PaymentErrorKind};
use crate::meter::MakeMeter;
use crate::metering::prepay::Pending;
use crate::metering::{Paid, Reserved};
use crate::method::{Methods, Offers, Renewal, Verified, Verify};
use crate::pricing::Pricing;
use crate::request_body::RequestBody;
use crate::respond;
use crate::scheme::{Credential, check_expires};
use crate::store::{ChannelStore, StoreError, StoreErrorKind};

/// What admission decided.
pub(crate) enum Admission<ReqB, Mt, St: ChannelStore> {
    /// Answer with this response; the inner service is not called.
    Answer(Response<Bytes>),
    /// Call the inner service; meter the response when `paid`.
    Serve { request: Request<RequestBody<ReqB>>, paid: Option<Box<Reserved<Mt, St>>> },
    /// Answer with an event stream that asks for the upfront, then call the inner service.
    Prepay { request: Request<RequestBody<ReqB>>, pending: Box<Pending<Mt, St>> },
}

/// Prices the request and lists the offers of every method. `Ok(None)`: not for sale,
/// pass it through.
pub(crate) fn price<M, St, P, MM>(
    shared: &Shared<M, St, P, MM>,
    head: &request::Parts,
    body: Option<&Bytes>,
) -> Result<Option<(Quote, Offers)>, PaymentError>
where
    M: Methods,
    P: Pricing,
{
    let Some(quote) = shared.pricing.quote(head, body)? else { return Ok(None) };
    let mut offers = Offers::new();
    shared.method.offers(&quote, &mut offers);
    Ok(Some((quote, offers)))
}

pub(crate) async fn admit<M, St, P, MM, ReqB>(
    shared: Arc<Shared<M, St, P, MM>>,
    head: request::Parts,
    body: ReqB,
) -> Admission<ReqB, MM::Meter, St>
where
    M: Methods,
    St: ChannelStore,
    P: Pricing,
    MM: MakeMeter,
    ReqB: Body + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<BoxError>,
{
    let settings = &shared.settings;
    let mut head = head;
    if body.is_end_stream() {
        // Known empty, whatever the headers say (an HTTP/2 POST with END_STREAM).
        head.extensions.insert(crate::method::EmptyBody);
    }
    let (body, read) = if shared.pricing.reads_body(&head) {
        if let Err(error) = forged(&shared, &head) {
            return Admission::Answer(respond::problem(error));
        }
        let read = Limited::new(body, settings.body_limit).collect();
        match tokio::time::timeout(settings.body_timeout, read).await {
            Ok(Ok(collected)) => {
                let bytes = collected.to_bytes();
                (RequestBody::read(bytes.clone()), Some(bytes))
            }
            Ok(Err(_)) => {
                let error = PaymentError::new(
                    PaymentErrorKind::PayloadTooLarge,
                    "request body is over the limit the layer reads to price it",
                );
                return Admission::Answer(respond::refusal(settings, &head, &[], error));
            }
            Err(_) => {
                let error = PaymentError::new(
                    PaymentErrorKind::RequestTimeout,
                    "request body did not arrive in time to price the request",
                );
                return Admission::Answer(respond::refusal(settings, &head, &[], error));
            }
        }
    } else {
        (RequestBody::untouched(body), None)
    };
    let (quote, offers) = match price(&shared, &head, read.as_ref()) {
        Ok(Some(priced)) => priced,
        Ok(None) => return Admission::Serve { request: Request::from_parts(head, body), paid: None },
        Err(error) => return Admission::Answer(respond::refusal(settings, &head, &[], error)),
    };
    let refuse = |error: PaymentError| Admission::Answer(respond::refusal(settings, &head, offers.as_slice(), error));
    let credential = match Credential::from_headers(&head.headers) {
        Ok(Some(credential)) => credential,
        Ok(None) => return refuse(PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.")),
        Err(error) => return refuse(error),
    };
    let (echoed, issuer) = match check_challenge(&shared, &credential, &offers) {
        Ok(checked) => checked,
        Err(error) => return refuse(error),
    };
    let window = quote.price.output.cost(settings.policy.window_units).unwrap_or(Amount::ZERO);
    let verify = Verify::new(&credential, &echoed, &head, &quote).window(window);
    let grant = match shared.method.verify(issuer, verify, &*shared.store).await {
        Ok(Verified::Serve(grant)) => grant,
        Ok(Verified::Respond(receipt)) => return Admission::Answer(respond::management(&receipt)),
        Err(error) => return refuse(error),
    };
    let context = PaymentContext {
        method: credential.challenge.method.clone(),
        intent: credential.challenge.intent.clone(),
        payer: grant.payer_id().map(str::to_owned),
        channel: grant.channel().clone(),
        quote: quote.clone(),
    };
    let least = quote.minimum();
    let lease = match shared.store.reserve(grant.channel(), least, least.saturating_add(window)).await {
        Ok(lease) => lease,
        Err(error)
            if settings.upfront_in_stream
                && grant.renewal() == Renewal::Voucher
                && matches!(error.kind(), StoreErrorKind::Insufficient { .. }) =>
        {
            let state = match shared.store.load(grant.channel()).await {
                Ok(Some(state)) => state,
                Ok(None) => return refuse(reservation_error(StoreError::new(StoreErrorKind::NotFound), least)),
                Err(error) => return refuse(reservation_error(error, least)),
            };
            let meter = shared.make_meter.make_meter(&head, &quote);
            let paid = Paid { grant, quote, meter, policy: settings.policy };
            let pending = Pending { paid, store: shared.store.clone(), least, window, state };
            head.extensions.insert(context);
            return Admission::Prepay { request: Request::from_parts(head, body), pending: Box::new(pending) };
        }
        Err(error) => return refuse(reservation_error(error, least)),
    };
    let meter = shared.make_meter.make_meter(&head, &quote);
    let paid = Paid { grant, quote, meter, policy: settings.policy };
    let paid = Reserved::new(paid, shared.store.clone(), lease);
    head.extensions.insert(context);
    Admission::Serve { request: Request::from_parts(head, body), paid: Some(Box::new(paid)) }
}

/// Whether a credential, if present, echoes a challenge this server did not issue (its
/// HMAC id or realm): checked before a body is read. A credential that does not decode is
/// left to the full checks, which answer it with a fresh challenge.
fn forged<M, St, P, MM>(shared: &Shared<M, St, P, MM>, head: &request::Parts) -> Result<(), PaymentError> {
    let Ok(Some(credential)) = Credential::from_headers(&head.headers) else { return Ok(()) };
    let challenge = &credential.challenge;
    if !shared.settings.signer.verify(challenge) || challenge.realm != shared.settings.realm {
        return Err(PaymentError::new(PaymentErrorKind::InvalidChallenge, "challenge was not issued by this server"));
    }
    Ok(())
}

/// The method-agnostic checks of the echoed challenge; returns its decoded `request` and
/// the position of the method whose offer it echoes (pinned by that method's own rule).
fn check_challenge<M: Methods, St, P, MM>(
    shared: &Shared<M, St, P, MM>,
    credential: &Credential,
    offers: &Offers,
) -> Result<(serde_json::Value, usize), PaymentError> {
    let challenge = &credential.challenge;
    let invalid = |detail: &'static str| PaymentError::new(PaymentErrorKind::InvalidChallenge, detail);
    if !shared.settings.signer.verify(challenge) {
        return Err(invalid("challenge was not issued by this server"));
    }
    if challenge.realm != shared.settings.realm {
        return Err(invalid("challenge was issued for another realm"));
    }
    let echoed = challenge.decode_request()?;
    let issuer = offers.iter().find_map(|(issuer, offer)| {
        let same = offer.method == challenge.method.as_str()
            && offer.intent == challenge.intent.as_str()
            && shared.method.pins(issuer, &echoed, &offer.request);
        same.then_some(issuer)
    });
    let Some(issuer) = issuer else { return Err(invalid("challenge does not match what this route offers")) };
    check_expires(challenge.expires.as_deref(), SystemTime::now())?;
    Ok((echoed, issuer))
}

fn reservation_error(error: StoreError, least: Amount) -> PaymentError {
    match error.kind() {
        StoreErrorKind::Insufficient { available } => PaymentError::new(
            PaymentErrorKind::InsufficientBalance,
            format!("channel has {available} available, this request needs at least {least}"),
        ),
        StoreErrorKind::NotFound => PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not found"),
        StoreErrorKind::Finalized => PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"),
        _ => PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable"),
    }
}
