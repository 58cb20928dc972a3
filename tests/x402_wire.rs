//! The x402 wire forms end to end, with a TEST-ONLY x402 method (it trusts the payer's
//! word; the real EVM verification lives elsewhere): one 402 carries the MPP challenges,
//! `PAYMENT-REQUIRED` and one problem body with `accepts`; a payment in `PAYMENT-SIGNATURE`
//! or `X-PAYMENT` (base64 or raw JSON) reaches only the x402 method; a payment for a cheap
//! route never pays a dear one; what does not decode is a 400 and the inner service never
//! runs.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{REALM, SECRET, TestMethod};
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore, StoreErrorKind};
use tollgate::wire::mpp::{Challenge, Receipt};
use tollgate::wire::x402::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE, PaymentRequired, PaymentRequirements, X_PAYMENT};
use tollgate::{Amount, PaymentContext, PaymentError, PaymentErrorKind, PaymentLayer, Price, Quote, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// TEST ONLY: an x402 `exact` offer for the route's price; a payment's `authorization`
/// names who pays, how much and a nonce, and is believed. The nonce is claimed in the store
/// (a replay is refused on every instance sharing it).
#[derive(Clone, Default)]
struct TrustingX402 {
    verified: Arc<AtomicUsize>,
}

#[derive(Deserialize)]
struct Exact {
    authorization: Authorization,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorization {
    from: String,
    value: Amount,
    nonce: String,
}

impl PaymentMethod for TrustingX402 {
    type Request = PaymentRequirements;
    type Payload = Exact;

    fn offers(&self, quote: &Quote) -> Vec<Offer<PaymentRequirements>> {
        vec![Offer::x402(
            "exact",
            PaymentRequirements {
                scheme: "exact".into(),
                network: "eip155:8453".into(),
                amount: quote.minimum(),
                asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
                pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
                max_timeout_seconds: 60,
                extra: Some(json!({"name": "USD Coin", "version": "2"})),
            },
        )]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, PaymentRequirements, Exact>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        let authorization = &verify.payload.authorization;
        // The amount rule (what a v1 payment, which names no offer, is held to).
        if authorization.value < verify.request.amount {
            return Err(PaymentError::new(PaymentErrorKind::PaymentInsufficient, "value is below the offer"));
        }
        let channel = ChannelId::new(format!("x402:{}", authorization.nonce));
        let value = authorization.value;
        store.create(&channel, value, value).await.map_err(|e| match e.kind() {
            StoreErrorKind::Exists => PaymentError::new(PaymentErrorKind::VerificationFailed, "nonce already used"),
            _ => PaymentError::new(PaymentErrorKind::Unavailable, "store down"),
        })?;
        let receipt = Receipt::new("x402", authorization.nonce.clone());
        Ok(Verified::Serve(Grant::new(channel, Renewal::Never, receipt).payer(authorization.from.clone())))
    }
}

struct Route {
    x402: TrustingX402,
    called: Arc<AtomicUsize>,
}

impl Route {
    fn new() -> Self {
        Route { x402: TrustingX402::default(), called: Arc::default() }
    }

    /// The route priced `price` per request, over `store`, offering an MPP method and the
    /// x402 one.
    fn service(
        &self,
        store: MemoryStore,
        price: u128,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
        Error = Infallible,
    > + Clone {
        let called = self.called.clone();
        ServiceBuilder::new()
            .layer(
                PaymentLayer::new((TestMethod, self.x402.clone()), store, REALM, Secret::new(SECRET))
                    .pricing(Price::per_request(Amount::new(price))),
            )
            .service(service_fn(move |request: Request<tollgate::RequestBody<Full<Bytes>>>| {
                let called = called.clone();
                async move {
                    called.fetch_add(1, Ordering::SeqCst);
                    let paid = request.extensions().get::<PaymentContext>().map_or("unpaid".to_owned(), |c| {
                        format!("{}/{} by {}", c.method, c.intent, c.payer.as_deref().unwrap_or("-"))
                    });
                    Ok::<_, Infallible>(Response::builder().header("x-paid", paid).body(Full::from("content")).unwrap())
                }
            }))
    }

    fn called(&self) -> usize {
        self.called.load(Ordering::SeqCst)
    }
}

fn get(headers: &[(&http::HeaderName, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get("/v1/chat").header(header::HOST, "api.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

async fn json_body<B: http_body::Body>(response: Response<B>) -> Value
where
    B::Error: std::fmt::Debug,
{
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn required<B>(response: &Response<B>) -> PaymentRequired {
    let json = STANDARD.decode(response.headers()[PAYMENT_REQUIRED].as_bytes()).unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn v2_payment(accepted: &PaymentRequirements, nonce: &str) -> String {
    let payment = json!({
        "x402Version": 2,
        "resource": {"url": "https://api.test/v1/chat"},
        "accepted": accepted,
        "payload": {"signature": "0x00", "authorization": {"from": "0xPayer", "value": accepted.amount, "nonce": nonce}},
    });
    STANDARD.encode(payment.to_string())
}

/// `@libertai/x402` 0.1.0's shape: labelled 2, v1 fields, no `accepted`, raw JSON.
fn libertai_payment(value: &str, nonce: &str) -> String {
    json!({
        "x402Version": 2, "scheme": "exact", "network": "eip155:8453",
        "payload": {"signature": "0x00", "authorization": {"from": "0xLibertai", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "value": value, "validAfter": "0", "validBefore": "99999999999", "nonce": nonce}},
    })
    .to_string()
}

#[tokio::test]
async fn one_402_carries_www_authenticate_payment_required_and_a_problem_with_accepts() {
    let route = Route::new();
    let response = route.service(MemoryStore::new(), 25).oneshot(get(&[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    let challenges = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap();
    assert_eq!(challenges.len(), 1, "the MPP method's challenge");
    assert_eq!(challenges[0].method, "test");
    let v2 = required(&response);
    assert_eq!((v2.x402_version, v2.accepts.len()), (2, 1));
    assert_eq!(v2.accepts[0].amount, Amount::new(25));
    assert_eq!(v2.resource.url, "https://api.test/v1/chat");
    let body = json_body(response).await;
    assert_eq!(body["type"], "https://paymentauth.org/problems/payment-required");
    assert_eq!(body["challengeId"], challenges[0].id.as_str());
    assert_eq!(body["x402Version"], 1);
    assert_eq!(body["accepts"][0]["maxAmountRequired"], "25", "LibertAI reads accepts[0] from the body");
    assert_eq!(body["accepts"][0]["payTo"], "0x209693Bc6afc0C5328bA36FaF03C514EF312287C");
    assert_eq!(body["accepts"][0]["extra"]["name"], "USD Coin");
    assert_eq!(route.called(), 0);
}

#[tokio::test]
async fn a_v2_payment_signature_pays_through_the_x402_method_only() {
    let route = Route::new();
    let svc = route.service(MemoryStore::new(), 25);
    let accepted = required(&svc.clone().oneshot(get(&[])).await.unwrap()).accepts.remove(0);
    let response = svc.clone().oneshot(get(&[(&PAYMENT_SIGNATURE, &v2_payment(&accepted, "n1"))])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-paid"], "x402/exact by 0xPayer");
    assert_eq!((route.called(), route.x402.verified.load(Ordering::SeqCst)), (1, 1));
    // The same nonce again: a replay, refused with fresh offers, inner service not called.
    let replay = svc.oneshot(get(&[(&PAYMENT_SIGNATURE, &v2_payment(&accepted, "n1"))])).await.unwrap();
    assert_eq!(replay.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(replay.headers().contains_key(PAYMENT_REQUIRED));
    assert_eq!(route.called(), 1);
}

#[tokio::test]
async fn x_payment_in_raw_json_or_base64_pays_by_scheme_network_and_amount() {
    let route = Route::new();
    let svc = route.service(MemoryStore::new(), 25);
    let raw = libertai_payment("25", "l1");
    let response = svc.clone().oneshot(get(&[(&X_PAYMENT, &raw)])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-paid"], "x402/exact by 0xLibertai");
    let encoded = STANDARD.encode(libertai_payment("25", "l2"));
    assert_eq!(svc.clone().oneshot(get(&[(&X_PAYMENT, &encoded)])).await.unwrap().status(), StatusCode::OK);
    // A v1 network name for the same chain matches too.
    let named = libertai_payment("25", "l3").replace("eip155:8453", "base");
    assert_eq!(svc.clone().oneshot(get(&[(&X_PAYMENT, &named)])).await.unwrap().status(), StatusCode::OK);
    // Another network or scheme: no offer matches, nothing verified.
    let before = route.x402.verified.load(Ordering::SeqCst);
    for other in [
        libertai_payment("25", "l4").replace("eip155:8453", "eip155:1"),
        libertai_payment("25", "l5").replace("exact", "upto"),
    ] {
        let response = svc.clone().oneshot(get(&[(&X_PAYMENT, &other)])).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    }
    assert_eq!(route.x402.verified.load(Ordering::SeqCst), before);
    assert_eq!(route.called(), 3);
}

#[tokio::test]
async fn a_payment_for_a_cheap_route_never_pays_a_dear_one() {
    let route = Route::new();
    let store = MemoryStore::new();
    let (cheap, dear) = (route.service(store.clone(), 10), route.service(store, 1_000));
    let accepted = required(&cheap.clone().oneshot(get(&[])).await.unwrap()).accepts.remove(0);
    // v2: the cheap offer's `accepted` is not an offer the dear route makes.
    let response = dear.clone().oneshot(get(&[(&PAYMENT_SIGNATURE, &v2_payment(&accepted, "c1"))])).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(route.x402.verified.load(Ordering::SeqCst), 0, "refused before any method ran");
    // v1 (no `accepted`): the method's amount rule holds it to the dear offer.
    let response = dear.clone().oneshot(get(&[(&X_PAYMENT, &libertai_payment("10", "c2"))])).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(json_body(response).await["type"], "https://paymentauth.org/problems/payment-insufficient");
    assert_eq!(route.called(), 0);
    // Both pay the cheap route.
    let response = cheap.oneshot(get(&[(&PAYMENT_SIGNATURE, &v2_payment(&accepted, "c1"))])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn what_does_not_decode_is_a_400_and_the_inner_service_never_runs() {
    let route = Route::new();
    let svc = route.service(MemoryStore::new(), 25);
    let huge = "A".repeat(20 * 1024);
    let not_json = STANDARD.encode("{not json");
    let not_a_payment = STANDARD.encode(r#"{"x402Version":2}"#);
    let raw_v2 = libertai_payment("25", "r1");
    for (name, value) in [
        (&PAYMENT_SIGNATURE, "!!!not base64!!!"),
        (&PAYMENT_SIGNATURE, not_json.as_str()),
        (&PAYMENT_SIGNATURE, raw_v2.as_str()),
        (&X_PAYMENT, "{\"x402Version\":"),
        (&X_PAYMENT, not_a_payment.as_str()),
        (&X_PAYMENT, huge.as_str()),
    ] {
        let response = svc.clone().oneshot(get(&[(name, value)])).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}: {value:.30}");
        assert_eq!(json_body(response).await["type"], "https://paymentauth.org/problems/bad-request");
    }
    // Payments in two forms at once.
    let both = [(&X_PAYMENT, raw_v2.as_str()), (&header::AUTHORIZATION, "Payment e30")];
    assert_eq!(svc.oneshot(get(&both)).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!((route.called(), route.x402.verified.load(Ordering::SeqCst)), (0, 0));
}
