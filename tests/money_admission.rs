//! Issue 7, admission side: what the layer checks before it reads, reserves or calls.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use support::*;
use tollgate::scheme::{Challenge, ChallengeFields, ChallengeSigner, encode_request, format_expires};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, PriceByBody, Quote};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A request body that never ends and remembers whether anyone polled it.
#[derive(Clone, Debug, Default)]
struct Stalled(Arc<AtomicBool>);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.store(true, Ordering::SeqCst);
        Poll::Pending
    }
}

fn by_body(
    store: MemoryStore,
    calls: Calls,
) -> impl tower::Service<
    Request<Stalled>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
    Error = Infallible,
> + Clone {
    let pricing =
        PriceByBody(|_: &http::request::Parts, _: &Bytes| Ok(Some(Quote::new(Price::per_request(Amount::new(10))))));
    ServiceBuilder::new().layer(PaymentLayer::new(TestMethod, store, REALM, SECRET).pricing(pricing)).service(
        service_fn(move |_req: Request<tollgate::RequestBody<Stalled>>| {
            calls.hit();
            async move { Ok::<_, Infallible>(Response::new(Full::from("paid"))) }
        }),
    )
}

/// A challenge this layer would have issued, signed with `secret`.
fn signed_with(secret: &str) -> Challenge {
    let request = encode_request(&serde_json::json!({"amount": "10", "currency": "test-usd", "unitType": "request"}));
    let expires = format_expires(std::time::SystemTime::now() + Duration::from_secs(60));
    let fields = ChallengeFields {
        realm: REALM,
        method: "test",
        intent: "session",
        request: &request,
        expires: Some(&expires),
        digest: None,
        opaque: None,
    };
    Challenge {
        id: ChallengeSigner::new(secret).id(&fields),
        realm: REALM.into(),
        method: "test".into(),
        intent: "session".into(),
        request: request.clone(),
        description: None,
        digest: None,
        expires: Some(expires),
        opaque: None,
    }
}

#[test]
#[should_panic(expected = "32 bytes")]
fn scenario_14_an_empty_hmac_secret_is_refused() {
    let _ = PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, "");
}

#[tokio::test(start_paused = true)]
async fn scenario_14_a_forged_credential_is_refused_before_the_body_is_read() {
    let (store, calls, body) = (MemoryStore::new(), Calls::default(), Stalled::default());
    let forged = signed_with("a-secret-this-server-never-had-32+bytes");
    let request = Request::post("/")
        .header(header::CONTENT_LENGTH, "1048576")
        .header(header::AUTHORIZATION, credential(&forged, open_payload("0xf0", 10, 100)))
        .body(body.clone())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(3600), by_body(store, calls.clone()).oneshot(request))
        .await
        .expect("the layer answered a forged credential without waiting for the body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem(response).await["type"], problem_type("invalid-challenge"));
    assert!(!body.0.load(Ordering::SeqCst), "the body was read for a forged credential");
    assert_eq!(calls.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn scenario_14_a_request_body_that_stalls_gets_408() {
    let (store, calls, body) = (MemoryStore::new(), Calls::default(), Stalled::default());
    let request = Request::post("/").header(header::CONTENT_LENGTH, "100").body(body.clone()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(3600), by_body(store, calls.clone()).oneshot(request))
        .await
        .expect("the layer gave up reading a stalled body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE), "paying does not help a slow body");
    assert_eq!(problem(response).await["status"], 408);
    assert!(body.0.load(Ordering::SeqCst));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn scenario_14_switching_protocols_on_a_paid_route_is_refused_and_charges_nothing() {
    let (store, calls) = (MemoryStore::new(), Calls::default());
    let inner = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(PaymentLayer::new(TestMethod, store.clone(), REALM, SECRET).pricing(Price::per_request(Amount::new(10))))
        .service(service_fn(move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            inner.hit();
            async move {
                let mut response = Response::new(Full::<Bytes>::default());
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                response.headers_mut().insert(header::UPGRADE, "websocket".parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        }));
    let challenge = challenge_of(&svc.clone().oneshot(get("/")).await.unwrap());
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, open_payload("0x101", 10, 100)))
        .header(header::UPGRADE, "websocket")
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_ne!(
        response.status(),
        StatusCode::SWITCHING_PROTOCOLS,
        "a paid route must not hand out an unmetered upgrade"
    );
    assert!(response.status().is_server_error() || response.status().is_client_error(), "{}", response.status());
    assert!(!response.headers().contains_key(header::UPGRADE));
    let _ = response.into_body().collect().await;
    tokio::task::yield_now().await;
    let state = store.load(&ChannelId::new("0x101")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged");
    assert_eq!(calls.count(), 1);
}
