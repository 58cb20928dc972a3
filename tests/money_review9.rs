//! Attack review of issue 9's reshaping (typed methods, management before pricing, x402
//! wire forms, metering reshaped): each finding as a regression test, `finding_NN_…`.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use http::StatusCode;
use money_support::*;
use tollgate::Amount;

/// The amount a session offers for a whole request (the `amount` hook): fifty units.
const WHOLE: u128 = 50 * PRICE;

/// A v1 session whose offers ask for a whole request's maximum (`TempoSession::amount`),
/// with no configured run-ahead bound: streams ask a window of 64 units.
fn whole_request_session() -> Fixture {
    Fixture::with(64, |config| config, |session| session.amount(|_| Some(Amount::new(WHOLE))))
}

#[tokio::test]
async fn finding_01_a_management_voucher_runs_no_further_ahead_than_a_content_one() {
    // With the `amount` hook the challenge's `amount` is a whole request's maximum, not a
    // unit price. A content request's voucher may run two windows at the quote's rate plus
    // four `amount`s ahead of delivery (64 units each window: 128 + 200 units). The
    // management path, priced by nothing, took the window at the challenge's `amount`:
    // 64 × 50 units a window, so a v1 payer could park a voucher thousands of units ahead,
    // consume up to just below it and close: the payee captures the voucher before it.
    let f = whole_request_session();
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 8_000 * PRICE).await;
    let channel = client.channel_id().unwrap();
    let accepted = f.state(channel).await.accepted;

    // Far ahead (1 000 units over what was accepted, nothing delivered): the content path
    // refuses it...
    let far = accepted.get() + 1_000 * PRICE;
    let response = f.get(1, client.voucher(&c, far).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "content path refuses a voucher that far ahead");
    assert_eq!(f.state(channel).await.accepted, accepted);
    // ... and so must the management path.
    let response = f.post(client.voucher(&c, far).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "management path refuses it too");
    assert_eq!(f.state(channel).await.accepted, accepted, "nothing changed");

    // An honest management voucher (one more `amount`, as mppx signs) still goes through.
    let mut honest = tollgate::client::SessionClient::with_channel(payer, &c, channel, accepted.get()).unwrap();
    let response = f.post(honest.voucher(&c, accepted.get() + WHOLE).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.state(channel).await.accepted, Amount::new(accepted.get() + WHOLE));
}

#[tokio::test]
async fn finding_02_a_post_whose_body_has_content_is_never_a_management_request() {
    // HTTP/1.1 without `Content-Length` or `Transfer-Encoding` has no body on the wire, but
    // in process a layer in front (request decompression, say) drops `Content-Length` and
    // hands on a body that has content. Such a request was classified by its headers
    // alone as a bodiless management request: recognised before pricing, priced as
    // bodiless, and (for the session) answered 204 instead of served. Whether the body is
    // known empty is the body's to say.
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100 * PRICE).await;
    let auth = client.voucher(&c, 5 * PRICE).unwrap();
    let request = http::Request::post("/")
        .header(http::header::AUTHORIZATION, auth)
        .body(axum::body::Body::from(r#"{"prompt":"a request with content"}"#))
        .unwrap();
    assert!(request.headers().get(http::header::CONTENT_LENGTH).is_none());
    let response = tower::ServiceExt::oneshot(f.service(2), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "served as content, metered");
    let text = text(response).await;
    assert!(text.contains("tok1"), "{text}");
    let state = f.state(client.channel_id().unwrap()).await;
    assert_eq!(state.spent, Amount::new(2 * PRICE), "charged for what it delivered");
}

/// TEST ONLY: an x402 `exact` offer on Base for `factor` times the route's price (say a
/// per-request price, and a prepaid top-up of a hundred requests); a payment's
/// `authorization.value` is believed and must cover the offer it was matched to.
#[derive(Clone)]
struct Trusting {
    factor: u128,
    verified: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Trusting {
    fn new(factor: u128) -> Self {
        Trusting { factor, verified: Default::default() }
    }

    fn verified(&self) -> usize {
        self.verified.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct Exact {
    authorization: Authorization,
}

#[derive(serde::Deserialize)]
struct Authorization {
    value: Amount,
}

impl tollgate::method::PaymentMethod for Trusting {
    type Request = tollgate::wire::x402::PaymentRequirements;
    type Payload = Exact;

    fn offers(&self, quote: &tollgate::Quote) -> Vec<tollgate::method::Offer<Self::Request>> {
        let amount = Amount::new(quote.minimum().get() * self.factor);
        vec![tollgate::method::Offer::x402(
            "exact",
            tollgate::wire::x402::PaymentRequirements {
                scheme: "exact".into(),
                network: "eip155:8453".into(),
                amount,
                asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
                pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
                max_timeout_seconds: 60,
                extra: None,
            },
        )]
    }

    async fn verify<St: tollgate::store::ChannelStore>(
        &self,
        verify: tollgate::method::Verify<'_, Self::Request, Exact>,
        _: &St,
    ) -> Result<tollgate::method::Verified, tollgate::PaymentError> {
        self.verified.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if verify.payload.authorization.value < verify.request.amount {
            return Err(tollgate::PaymentError::new(tollgate::PaymentErrorKind::PaymentInsufficient, "too little"));
        }
        Err(tollgate::PaymentError::new(tollgate::PaymentErrorKind::Unavailable, "accepted (the test stops here)"))
    }
}

#[tokio::test]
async fn finding_03_a_v1_x402_payment_two_methods_could_claim_reaches_neither() {
    // A v1 payment names no offer, only scheme and network. With two methods offering
    // `exact` on the same network (a per-request price and a hundred-request top-up), a
    // payment signed for the top-up went to the first method that matched: the
    // per-request one, which found it covers its price and would spend it on one request.
    // The layer cannot tell which method it was for, so it reaches neither.
    let (per_request, top_up) = (Trusting::new(1), Trusting::new(100));
    let layer = tollgate::PaymentLayer::new(
        (per_request.clone(), top_up.clone()),
        tollgate::store::MemoryStore::new(),
        "api.test",
        tollgate::Secret::new(SECRET),
    )
    .pricing(tollgate::Price::per_request(Amount::new(PRICE)));
    let svc = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn(|_: http::Request<_>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from("content")))
    }));
    let payment = serde_json::json!({
        "x402Version": 1, "scheme": "exact", "network": "base",
        "payload": {"signature": "0x00", "authorization": {"value": (100 * PRICE).to_string()}},
    });
    let request = http::Request::get("/")
        .header(tollgate::wire::x402::X_PAYMENT, payment.to_string())
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(svc, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "refused with the offers, for a client to name one");
    assert!(response.headers().contains_key(tollgate::wire::x402::PAYMENT_REQUIRED));
    assert_eq!((per_request.verified(), top_up.verified()), (0, 0), "no method saw it");
}
