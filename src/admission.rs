//! Admission: everything between a request arriving and the inner service being called.
//!
//! Order (the reference server's, so clients see the same problem types): a management
//! request a method recognises (see below) → read the body if pricing needs it → quote →
//! payment present and decodable → matched to an offer of this route (MPP: HMAC id →
//! realm → pinned request → `expires`; x402: `accepted` pinned, or v1 scheme + network of a single offer) →
//! the offer's method verifies → reserve the upfront cost. Every refusal happens before
//! the inner service runs.
//!
//! A management request (a bodiless `POST` or `HEAD` with an MPP credential: a session's
//! voucher, top-up or close) is recognised before pricing by the method that issued its
//! challenge ([`PaymentMethod::manages`](crate::method::PaymentMethod::manages)), after
//! the HMAC id, realm and expiry are checked: it needs no price, so a route priced by its
//! body need not guess one for a request without.
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
use crate::method::{Checked, Grant, Methods, Offered, Offers, Renewal, Verified, is_management_request};
use crate::observe::Observed;
use crate::pricing::Pricing;
use crate::request_body::RequestBody;
use crate::respond;
use crate::store::{ChannelStore, StoreError, StoreErrorKind};
use crate::wire::Presented;
use crate::wire::mpp::{Credential, check_expires};
use crate::wire::x402::network;

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
    let mut offers = Offers::encoded_by(shared.settings.encoded.clone());
    shared.method.offers(&quote, &mut offers);
    Ok(Some((quote, offers)))
}

/// Prices a request known to have no body (a management request).
fn price_bodiless<M, St, P, MM>(
    shared: &Shared<M, St, P, MM>,
    head: &request::Parts,
) -> Result<Option<(Quote, Offers)>, PaymentError>
where
    M: Methods,
    P: Pricing,
{
    let empty = Bytes::new();
    price(shared, head, shared.pricing.reads_body(head).then_some(&empty))
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
    } else if body.size_hint().lower() > 0 {
        // Known to have content, whatever the headers say (a body a layer in front
        // rewrote, without `Content-Length`): never a bodiless management request.
        head.extensions.insert(crate::method::NonEmptyBody);
    }
    let managed = if is_management_request(&head) { manage(&shared, &head).await } else { None };
    let (quote, offers, grant, context) = match managed {
        Some(Managed::Answer(response)) => return Admission::Answer(response),
        Some(Managed::Serve(grant, method, intent)) => {
            // A method served its own management request: price it as any bodiless one.
            let (quote, offers) = match price_bodiless(&shared, &head) {
                Ok(Some(priced)) => priced,
                Ok(None) => {
                    let error = PaymentError::new(PaymentErrorKind::Unpriced, "this request has no price");
                    return Admission::Answer(respond::problem(error));
                }
                Err(error) => return Admission::Answer(respond::refusal(settings, &head, &[], error)),
            };
            let context = payment_context(method, intent, &grant, &quote);
            (quote, offers, *grant, context)
        }
        None => {
            let (body_read, read) = if shared.pricing.reads_body(&head) {
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
            return paid(shared, head, body_read, read).await;
        }
    };
    reserve(shared, head, RequestBody::untouched(body), quote, &offers, grant, context).await
}

/// What a method made of a management request it recognised.
enum Managed {
    Answer(Response<Bytes>),
    Serve(Box<Grant>, String, String),
}

/// A management request's credential, recognised before pricing by the method that issued
/// its challenge. `None`: no method recognises it (the request is priced as any other).
async fn manage<M, St, P, MM>(shared: &Shared<M, St, P, MM>, head: &request::Parts) -> Option<Managed>
where
    M: Methods,
    St: ChannelStore,
    P: Pricing,
{
    let settings = &shared.settings;
    let Ok(Some(credential)) = Credential::from_headers(&head.headers) else { return None };
    let challenge = &credential.challenge;
    if !settings.signer.verify(challenge) || challenge.realm != settings.realm {
        return None;
    }
    let echoed = challenge.decode_request().ok()?;
    let issuer = shared.method.manages(challenge, &echoed)?;
    let presented = Presented::Mpp(credential.clone());
    let outcome = match check_expires(challenge.expires.as_deref(), SystemTime::now()) {
        Ok(()) => {
            let window = (Amount::ZERO, settings.policy.window_units);
            let checked = Checked::new(&presented, &echoed, head, None, window);
            shared.method.verify(issuer, checked, &*shared.store).await
        }
        Err(error) => Err(error),
    };
    Some(match outcome {
        Ok(Verified::Respond(receipt)) => Managed::Answer(respond::management(&receipt)),
        Ok(Verified::Serve(grant)) => {
            Managed::Serve(Box::new(grant), challenge.method.clone(), challenge.intent.clone())
        }
        Err(error) => {
            // A fresh challenge needs a price: offered when the route can price a bodiless
            // request, else the problem alone.
            match price_bodiless(shared, head) {
                Ok(Some((_, offers))) if !offers.is_empty() => {
                    Managed::Answer(respond::refusal(settings, head, offers.as_slice(), error))
                }
                _ => Managed::Answer(respond::problem(error)),
            }
        }
    })
}

/// Prices the request, matches its payment to an offer and has the offer's method verify
/// it, then reserves.
async fn paid<M, St, P, MM, ReqB>(
    shared: Arc<Shared<M, St, P, MM>>,
    head: request::Parts,
    body: RequestBody<ReqB>,
    read: Option<Bytes>,
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
    let (quote, offers) = match price(&shared, &head, read.as_ref()) {
        Ok(Some(priced)) => priced,
        Ok(None) => return Admission::Serve { request: Request::from_parts(head, body), paid: None },
        Err(error) => return Admission::Answer(respond::refusal(settings, &head, &[], error)),
    };
    let refuse = |error: PaymentError| Admission::Answer(respond::refusal(settings, &head, offers.as_slice(), error));
    // A method's own non-payment credential (a prepaid balance's session token) first.
    if let Some((issuer, authorized)) = shared.method.authorize(&head, &quote, &*shared.store).await {
        let grant = match authorized {
            Ok(grant) => grant,
            Err(error) => return refuse(error),
        };
        let offer = offers.iter().find(|offer| offer.issuer() == issuer);
        let (method, intent) = offer.map_or(("", ""), |offer| (offer.method(), offer.intent()));
        let context = payment_context(method.to_owned(), intent.to_owned(), &grant, &quote);
        return reserve(shared.clone(), head, body, quote, &offers, grant, context).await;
    }
    let presented = match Presented::from_headers(&head.headers) {
        Ok(Some(presented)) => presented,
        Ok(None) => return refuse(PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.")),
        Err(error) => return refuse(error),
    };
    let (echoed, offered) = match match_offer(&shared, &presented, offers.as_slice()) {
        Ok(matched) => matched,
        Err(error) => return refuse(error),
    };
    let units = settings.policy.window_units;
    let window = quote.price.output.cost(units).unwrap_or(Amount::ZERO);
    let checked = Checked::new(&presented, &echoed, &head, Some(&quote), (window, units));
    let grant = match shared.method.verify(offered.issuer(), checked, &*shared.store).await {
        Ok(Verified::Serve(grant)) => grant,
        Ok(Verified::Respond(receipt)) => return Admission::Answer(respond::management(&receipt)),
        Err(error) => return refuse(error),
    };
    let context = payment_context(offered.method().to_owned(), offered.intent().to_owned(), &grant, &quote);
    reserve(shared.clone(), head, body, quote, &offers, grant, context).await
}

fn payment_context(method: String, intent: String, grant: &Grant, quote: &Quote) -> PaymentContext {
    PaymentContext {
        method,
        intent,
        payer: grant.payer_id().map(str::to_owned),
        channel: grant.channel().clone(),
        quote: quote.clone(),
    }
}

/// Reserves the upfront cost on the grant's channel and sends the request on.
async fn reserve<M, St, P, MM, ReqB>(
    shared: Arc<Shared<M, St, P, MM>>,
    mut head: request::Parts,
    body: RequestBody<ReqB>,
    quote: Quote,
    offers: &Offers,
    grant: Grant,
    context: PaymentContext,
) -> Admission<ReqB, MM::Meter, St>
where
    St: ChannelStore,
    MM: MakeMeter,
{
    let settings = &shared.settings;
    let observed = Observed::admitted(&context);
    let refuse = |error: PaymentError| Admission::Answer(respond::refusal(settings, &head, offers.as_slice(), error));
    let window = quote.price.output.cost(settings.policy.window_units).unwrap_or(Amount::ZERO);
    let (least, most) = match grant.whole_reservation() {
        Some(whole) => (whole.max(quote.minimum()), whole.max(quote.minimum())),
        None => (quote.minimum(), quote.minimum().saturating_add(window)),
    };
    let reserved = match grant.reclaimed_record_head() {
        Some(head) => shared.store.reserve_recording(grant.channel(), least, most, head.clone()).await,
        None => shared.store.reserve(grant.channel(), least, most).await,
    };
    let lease = match reserved {
        Ok(lease) => lease,
        Err(error)
            if settings.upfront_in_stream
                && grant.renewal() == Renewal::Voucher
                // The upfront is asked for with an SSE event: a gRPC client could not answer it.
                && !crate::meter::is_grpc(&head.headers)
                && matches!(error.kind(), StoreErrorKind::Insufficient { .. }) =>
        {
            let state = match shared.store.load(grant.channel()).await {
                Ok(Some(state)) => state,
                Ok(None) => return refuse(reservation_error(StoreError::new(StoreErrorKind::NotFound), least)),
                Err(error) => return refuse(reservation_error(error, least)),
            };
            let meter = shared.make_meter.make_meter(&head, &quote);
            observed.reserved(&context, least, most);
            let paid = Paid { grant, quote, meter, policy: settings.policy, observed };
            let pending = Pending { paid, store: shared.store.clone(), least, window, state };
            head.extensions.insert(context);
            return Admission::Prepay { request: Request::from_parts(head, body), pending: Box::new(pending) };
        }
        Err(error) => return refuse(reservation_error(error, least)),
    };
    let meter = shared.make_meter.make_meter(&head, &quote);
    observed.reserved(&context, least, most);
    let paid = Paid { grant, quote, meter, policy: settings.policy, observed };
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

/// The offer of this route a payment pays, and the request it names (echoed, `accepted`,
/// or the matched x402 offer), still JSON. MPP: the HMAC id, realm, method, intent, the
/// issuer's pinning rule and `expires`. x402 (no HMAC): `accepted` pinned by the issuer's
/// rule; a payment without one (v1, and clients that send a v1 shape) by scheme and
/// network when exactly one offer has them, leaving the amount to the method's own rule.
fn match_offer<'o, M: Methods, St, P, MM>(
    shared: &Shared<M, St, P, MM>,
    presented: &Presented,
    offers: &'o [Offered],
) -> Result<(serde_json::Value, &'o Offered), PaymentError> {
    let invalid = |detail: &'static str| PaymentError::new(PaymentErrorKind::InvalidChallenge, detail);
    let credential = match presented {
        Presented::Mpp(credential) => credential,
        Presented::X402 { payment, .. } => {
            let x402 = offers.iter().filter(|offer| offer.requirements().is_some());
            if let Some(accepted) = &payment.accepted {
                let offer = x402.into_iter().find(|offer| shared.method.pins(offer, accepted));
                let offer = offer.ok_or_else(|| invalid("the accepted offer is not one this route makes"))?;
                return Ok((accepted.clone(), offer));
            }
            let (scheme, net) = (payment.scheme(), payment.network());
            let mut matching = x402.filter(|offer| {
                offer.requirements().is_some_and(|r| {
                    Some(r.scheme.as_str()) == scheme && net.is_some_and(|net| network::same(&r.network, net))
                })
            });
            let offer = matching.next().ok_or_else(|| invalid("no offer of this route has that scheme and network"))?;
            // Which of two different offers a payment that names none was signed for cannot
            // be told (a per-request price or a top-up, two methods): it pays neither.
            if matching.any(|other| other.issuer() != offer.issuer() || other.x402_json() != offer.x402_json()) {
                return Err(invalid(
                    "several offers of this route have that scheme and network: name one in `accepted`",
                ));
            }
            return Ok((offer.x402_json().cloned().unwrap_or_default(), offer));
        }
    };
    let challenge = &credential.challenge;
    let invalid = |detail: &'static str| PaymentError::new(PaymentErrorKind::InvalidChallenge, detail);
    if !shared.settings.signer.verify(challenge) {
        return Err(invalid("challenge was not issued by this server"));
    }
    if challenge.realm != shared.settings.realm {
        return Err(invalid("challenge was issued for another realm"));
    }
    let echoed = challenge.decode_request()?;
    let offer = offers.iter().find(|offer| {
        offer.mpp_request().is_some()
            && offer.method() == challenge.method
            && offer.intent() == challenge.intent
            && shared.method.pins(offer, &echoed)
    });
    let Some(offer) = offer else { return Err(invalid("challenge does not match what this route offers")) };
    check_expires(challenge.expires.as_deref(), SystemTime::now())?;
    Ok((echoed, offer))
}

fn reservation_error(error: StoreError, least: Amount) -> PaymentError {
    match error.kind() {
        StoreErrorKind::Insufficient { available } => PaymentError::new(
            PaymentErrorKind::InsufficientBalance,
            format!("channel has {available} available, this request needs at least {least}"),
        ),
        StoreErrorKind::NotFound => PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not found"),
        StoreErrorKind::Finalized => PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"),
        _ => {
            crate::observe::store_error("reserve");
            PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable")
        }
    }
}
