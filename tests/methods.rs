//! Several payment methods on one route (issue 9): one 402 carries every offer of every
//! method, a credential reaches only the method that issued its challenge, pinning holds per
//! method, and the inner service reads how its request was paid from the extensions.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{REALM, SECRET, credential, get, problem, problem_type};
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Receipt};
use tollgate::{Amount, PaymentContext, PaymentError, PaymentErrorKind, PaymentLayer, Price, Quote, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A toy method offering `toy/<intent>` at `factor` times the route's price; it counts the
/// credentials it is asked to verify and names its payer after its intent.
#[derive(Clone)]
struct Toy {
    intent: &'static str,
    factor: u128,
    verified: Arc<AtomicUsize>,
}

impl Toy {
    fn new(intent: &'static str, factor: u128) -> Self {
        Toy { intent, factor, verified: Arc::default() }
    }

    fn verified(&self) -> usize {
        self.verified.load(Ordering::SeqCst)
    }
}

impl PaymentMethod for Toy {
    type Request = serde_json::Value;
    type Payload = serde_json::Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<serde_json::Value>> {
        let amount = quote.price.output.unit_price().get() * self.factor;
        vec![Offer::mpp("toy", self.intent, json!({ "amount": amount.to_string() }))]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, serde_json::Value, serde_json::Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        // The echoed request is this method's own offer: its amount is what must be paid.
        let owed: Amount = verify.request["amount"].as_str().and_then(|a| a.parse().ok()).unwrap_or_default();
        let paid: Amount = verify.payload["paid"].as_str().and_then(|a| a.parse().ok()).unwrap_or_default();
        if paid < owed {
            return Err(PaymentError::new(PaymentErrorKind::VerificationFailed, "paid less than offered"));
        }
        let channel = ChannelId::new(format!(
            "{}:{}",
            self.intent,
            verify.challenge().map(|c| c.id.as_str()).unwrap_or_default()
        ));
        store
            .open(&channel, paid, paid)
            .await
            .map_err(|_| PaymentError::new(PaymentErrorKind::Unavailable, "store down"))?;
        let mut receipt = Receipt::new("toy", channel.to_string());
        receipt.intent = Some(self.intent.into());
        Ok(Verified::Serve(Grant::new(channel, Renewal::Never, receipt).payer(format!("payer-{}", self.intent))))
    }
}

/// A route priced `price` per request offering `methods`; the handler answers with how the
/// request was paid, read from its [`PaymentContext`].
fn route<M: tollgate::method::Methods>(
    methods: M,
    price: u128,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
    Error = Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(
            PaymentLayer::new(methods, MemoryStore::new(), REALM, Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(price))),
        )
        .service(service_fn(|request: Request<tollgate::RequestBody<Full<Bytes>>>| async move {
            let paid = match request.extensions().get::<PaymentContext>() {
                Some(c) => {
                    format!("{}/{} by {} on {}", c.method, c.intent, c.payer.as_deref().unwrap_or("-"), c.channel)
                }
                None => "unpaid".to_owned(),
            };
            Ok::<_, Infallible>(Response::builder().header("x-paid", paid).body(Full::from("content")).unwrap())
        }))
}

fn challenges<B>(response: &Response<B>) -> Vec<Challenge> {
    Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap()
}

fn paying(challenge: &Challenge, paid: u128) -> Request<Full<Bytes>> {
    Request::get("/")
        .header(header::AUTHORIZATION, credential(challenge, json!({ "paid": paid.to_string() })))
        .body(Full::default())
        .unwrap()
}

fn intents(challenges: &[Challenge]) -> Vec<&str> {
    challenges.iter().map(|c| c.intent.as_str()).collect()
}

#[tokio::test]
async fn one_402_carries_every_offer_of_every_method_in_accept_payment_order() {
    let svc = route((Toy::new("session", 1), Toy::new("charge", 1), Toy::new("third", 2)), 100);
    let response = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let offered = challenges(&response);
    assert_eq!(intents(&offered), ["session", "charge", "third"], "server order without Accept-Payment");
    assert_eq!(offered[2].decode_request().unwrap(), json!({ "amount": "200" }));
    let body = problem(response).await;
    assert_eq!(body["type"], problem_type("payment-required"));
    assert_eq!(body["challengeId"], offered[0].id, "the problem names the first challenge");

    let request = Request::get("/").header("accept-payment", "toy/charge, toy/session;q=0.5").body(Full::default());
    let response = svc.oneshot(request.unwrap()).await.unwrap();
    assert_eq!(intents(&challenges(&response)), ["charge", "session"], "an offer the client did not list is left out");
}

#[tokio::test]
async fn each_credential_reaches_only_the_method_that_issued_its_challenge() {
    let (session, charge) = (Toy::new("session", 1), Toy::new("charge", 1));
    let svc = route((session.clone(), charge.clone()), 100);
    let offered = challenges(&svc.clone().oneshot(get("/")).await.unwrap());

    let response = svc.clone().oneshot(paying(&offered[1], 100)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let paid = response.headers()["x-paid"].to_str().unwrap().to_owned();
    assert_eq!(paid, format!("toy/charge by payer-charge on charge:{}", offered[1].id.to_lowercase()));
    assert_eq!((session.verified(), charge.verified()), (0, 1));

    let response = svc.clone().oneshot(paying(&offered[0], 100)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["x-paid"].to_str().unwrap().starts_with("toy/session by payer-session"));
    assert_eq!((session.verified(), charge.verified()), (1, 1));

    // A challenge relabelled for the other method fails its HMAC: neither method sees it.
    let mut relabelled = offered[0].clone();
    relabelled.intent = "charge".into();
    let response = svc.oneshot(paying(&relabelled, 100)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem(response).await["type"], problem_type("invalid-challenge"));
    assert_eq!((session.verified(), charge.verified()), (1, 1));
}

#[tokio::test]
async fn two_methods_with_the_same_name_and_intent_are_told_apart_by_their_pinned_request() {
    // A cheap and a dear offer under one method/intent pair: each challenge goes to the method
    // whose current offer it echoes, so the cheap one is never checked against the dear
    // method's rules, nor the dear one served by the cheap method.
    let (cheap, dear) = (Toy::new("charge", 1), Toy::new("charge", 10));
    let svc = route((cheap.clone(), dear.clone()), 100);
    let offered = challenges(&svc.clone().oneshot(get("/")).await.unwrap());
    assert_eq!(offered.len(), 2);
    let response = svc.clone().oneshot(paying(&offered[1], 1_000)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!((cheap.verified(), dear.verified()), (0, 1));
    let response = svc.oneshot(paying(&offered[0], 100)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!((cheap.verified(), dear.verified()), (1, 1));
}

#[tokio::test]
async fn a_cheap_routes_challenge_never_pays_a_dear_route_for_any_method() {
    let (session, charge) = (Toy::new("session", 1), Toy::new("charge", 1));
    let cheap = route((session.clone(), charge.clone()), 100);
    let dear = route((session.clone(), charge.clone()), 1_000);
    let offered = challenges(&cheap.oneshot(get("/")).await.unwrap());
    for challenge in &offered {
        let response = dear.clone().oneshot(paying(challenge, 100)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "{}", challenge.intent);
        assert_eq!(intents(&challenges(&response)), ["session", "charge"], "fresh challenges for both");
        let body: Value = problem(response).await;
        assert_eq!(body["type"], problem_type("invalid-challenge"));
    }
    assert_eq!((session.verified(), charge.verified()), (0, 0), "no method saw a mispriced credential");
}

#[tokio::test]
async fn an_unpriced_request_carries_no_payment_context() {
    let svc = ServiceBuilder::new()
        .layer(
            PaymentLayer::new(Toy::new("charge", 1), MemoryStore::new(), REALM, Secret::new(SECRET))
                .pricing(|_: &http::request::Parts| -> Result<Option<Quote>, PaymentError> { Ok(None) }),
        )
        .service(service_fn(|request: Request<tollgate::RequestBody<Full<Bytes>>>| async move {
            let has = request.extensions().get::<PaymentContext>().is_some();
            Ok::<_, Infallible>(Response::new(Full::from(if has { "context" } else { "none" })))
        }));
    let response = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "none");
}

#[cfg(feature = "axum")]
mod extractor {
    use super::*;
    use axum::Router;
    use axum::routing::get as get_route;
    use http_body_util::BodyExt;

    fn app(price: u128) -> Router {
        let layer = PaymentLayer::new(
            (Toy::new("session", 1), Toy::new("charge", 1)),
            MemoryStore::new(),
            REALM,
            Secret::new(SECRET),
        )
        .pricing(Price::per_request(Amount::new(price)));
        Router::new()
            .route(
                "/paid",
                get_route(|context: PaymentContext| async move {
                    format!("{} paid {}", context.payer.unwrap_or_default(), context.quote.minimum())
                }),
            )
            .route_layer(layer)
            .route(
                "/open",
                get_route(|context: Option<PaymentContext>| async move { format!("{}", context.is_some()) }),
            )
            .route("/misrouted", get_route(|_: PaymentContext| async { "unreachable" }))
    }

    async fn text(response: axum::response::Response) -> String {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    fn to(uri: &str) -> Request<axum::body::Body> {
        Request::get(uri).body(axum::body::Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_extractor_reads_the_payment_and_refuses_a_route_outside_the_layer() {
        let app = app(100);
        let offered = challenges(&app.clone().oneshot(to("/paid")).await.unwrap());
        let request = Request::get("/paid")
            .header(header::AUTHORIZATION, credential(&offered[1], json!({ "paid": "100" })))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "payer-charge paid 100");

        let response = app.clone().oneshot(to("/misrouted")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "a server mistake, not the client's");
        let response = app.oneshot(to("/open")).await.unwrap();
        assert_eq!(text(response).await, "false");
    }
}
