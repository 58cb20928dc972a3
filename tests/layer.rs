//! Admission through the public API: every refusal has the right status and problem type,
//! changes nothing, and never reaches the inner service.

mod support;

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::*;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, ChallengeFields, ChallengeSigner, Receipt, encode_request, format_expires};
use tollgate::{Amount, PaymentErrorKind, PaymentLayer, Price, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type TestResponse = Response<Full<Bytes>>;

fn service(
    price: u128,
    store: MemoryStore,
    calls: Calls,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
    Error = Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(
            PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(price))),
        )
        .service(service_fn(move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            let calls = calls.clone();
            async move {
                calls.hit();
                Ok::<_, Infallible>(TestResponse::new(Full::from("paid content")))
            }
        }))
}

async fn challenge_for(price: u128) -> Challenge {
    let svc = service(price, MemoryStore::new(), Calls::default());
    let response = svc.oneshot(get("/")).await.unwrap();
    challenge_of(&response)
}

#[tokio::test]
async fn unpaid_request_gets_402_with_challenge_and_problem() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    let response = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let challenge = challenge_of(&response);
    assert_eq!(
        (challenge.realm.as_str(), challenge.method.as_str(), challenge.intent.as_str()),
        (REALM, "test", "session")
    );
    assert_eq!(challenge.id.len(), 43);
    assert!(challenge.expires.is_some(), "servers send expires");
    let request = challenge.decode_request().unwrap();
    assert_eq!(request, json!({"amount": "1000", "currency": "test-usd", "unitType": "request"}));
    assert!(ChallengeSigner::new(SECRET).verify(&challenge));
    let error = response.extensions().get::<tollgate::PaymentError>().cloned().unwrap();
    assert_eq!(error.kind(), PaymentErrorKind::PaymentRequired);
    let body = problem(response).await;
    assert_eq!(body["type"], problem_type("payment-required"));
    assert_eq!(body["status"], 402);
    assert_eq!(body["challengeId"], challenge.id);
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn one_shot_payment_serves_and_charges_once() {
    let (store, calls) = (MemoryStore::new(), Calls::default());
    let svc = service(1000, store.clone(), calls.clone());
    let challenge = challenge_for(1000).await;
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, pay_payload("n1", 1000)))
        .body(Full::default())
        .unwrap();
    let response = svc.clone().oneshot(request).await.unwrap();
    ok_status(&response);
    assert!(response.headers()[header::CACHE_CONTROL].to_str().unwrap().contains("private"));
    let receipt = Receipt::from_header_value(&response.headers()[tollgate::wire::mpp::PAYMENT_RECEIPT]).unwrap();
    assert_eq!((receipt.status.as_str(), receipt.reference.as_str()), ("success", "pay:n1"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"paid content");
    let state = store.load(&ChannelId::new("pay:n1")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved, state.units), (Amount::new(1000), Amount::ZERO, 1));
    assert_eq!(calls.count(), 1);

    // The same payment again is a replay: refused, nothing charged, inner not called.
    let replay = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, pay_payload("n1", 1000)))
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(replay).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem(response).await["type"], problem_type("verification-failed"));
    assert_eq!(store.load(&ChannelId::new("pay:n1")).await.unwrap().unwrap().spent, Amount::new(1000));
    assert_eq!(calls.count(), 1);
}

async fn refused(
    svc: impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl http_body::Body<Error = tollgate::BoxError>>,
        Error = Infallible,
    >,
    authorization: &str,
) -> (StatusCode, serde_json::Value) {
    let request = Request::get("/").header(header::AUTHORIZATION, authorization).body(Full::default()).unwrap();
    let response = svc.oneshot(request).await.unwrap();
    let status = response.status();
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE), "a payment problem carries a fresh challenge");
    (status, problem(response).await)
}

#[tokio::test]
async fn malformed_credentials_are_refused_without_calling_inner() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    for bad in ["Payment !!!notbase64", "Payment eyJub3QiOiJhIGNyZWRlbnRpYWwifQ", "Payment e30"] {
        let (status, body) = refused(svc.clone(), bad).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{bad}");
        assert_eq!(body["type"], problem_type("malformed-credential"), "{bad}");
    }
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn forged_challenge_is_invalid() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    let mut challenge = challenge_for(1000).await;
    // Lower the price but keep the id: the HMAC no longer matches.
    challenge.request = encode_request(&json!({"amount": "1", "currency": "test-usd", "unitType": "request"}));
    let auth = credential(&challenge, pay_payload("forged", 1));
    let (status, body) = refused(svc.clone(), auth.to_str().unwrap()).await;
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (StatusCode::PAYMENT_REQUIRED, &*problem_type("invalid-challenge"))
    );
    // A challenge signed with another secret is forged too.
    let foreign = service_challenge_with_secret(
        "other-secret-of-at-least-32-bytes!",
        SystemTime::now() + Duration::from_secs(60),
    );
    let (_, body) = refused(svc, credential(&foreign, pay_payload("x", 1000)).to_str().unwrap()).await;
    assert_eq!(body["type"], problem_type("invalid-challenge"));
    assert_eq!(calls.count(), 0);
}

fn service_challenge_with_secret(secret: &str, expires: SystemTime) -> Challenge {
    let request = encode_request(&json!({"amount": "1000", "currency": "test-usd", "unitType": "request"}));
    let expires = format_expires(expires);
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

#[tokio::test]
async fn expired_challenge_is_refused() {
    let (store, calls) = (MemoryStore::new(), Calls::default());
    let svc = service(1000, store.clone(), calls.clone());
    let expired = service_challenge_with_secret(SECRET, SystemTime::now() - Duration::from_secs(1));
    let (status, body) = refused(svc.clone(), credential(&expired, pay_payload("late", 1000)).to_str().unwrap()).await;
    assert_eq!((status, body["type"].clone()), (StatusCode::PAYMENT_REQUIRED, json!(problem_type("payment-expired"))));
    // No expires at all fails closed.
    let mut endless = service_challenge_with_secret(SECRET, SystemTime::now());
    endless.expires = None;
    let request = endless.request.clone();
    endless.id = ChallengeSigner::new(SECRET).id(&ChallengeFields {
        realm: REALM,
        method: "test",
        intent: "session",
        request: &request,
        expires: None,
        digest: None,
        opaque: None,
    });
    let (_, body) = refused(svc, credential(&endless, pay_payload("late", 1000)).to_str().unwrap()).await;
    assert_eq!(body["type"], problem_type("invalid-challenge"));
    assert!(store.load(&ChannelId::new("pay:late")).await.unwrap().is_none(), "nothing was recorded");
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn cheap_challenge_replayed_on_pricier_route_is_refused() {
    let calls = Calls::default();
    let cheap = challenge_for(10).await;
    let pricey = service(1000, MemoryStore::new(), calls.clone());
    let (_, body) = refused(pricey, credential(&cheap, pay_payload("cheap", 10)).to_str().unwrap()).await;
    assert_eq!(body["type"], problem_type("invalid-challenge"));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn rotated_secret_still_verifies_old_challenges() {
    let store = MemoryStore::new();
    let old = challenge_for(1000).await; // issued with SECRET
    let svc = ServiceBuilder::new()
        .layer(
            PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new("new-secret-of-at-least-32-bytes!!"))
                .previous_secret(Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(1000))),
        )
        .service(service_fn(|_req: Request<tollgate::RequestBody<Full<Bytes>>>| async {
            Ok::<_, Infallible>(TestResponse::new(Full::from("ok")))
        }));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&old, pay_payload("rot", 1000)))
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    ok_status(&response);
}

#[tokio::test]
async fn two_payment_credentials_are_a_bad_request() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    let challenge = challenge_for(1000).await;
    let one = credential(&challenge, pay_payload("a", 1000));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, one.clone())
        .header(header::AUTHORIZATION, one)
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem(response).await["type"], problem_type("bad-request"));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn forged_payload_signature_is_refused() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    let challenge = challenge_for(1000).await;
    let mut payload = pay_payload("sig", 1000);
    payload["signature"] = json!("forged");
    let (_, body) = refused(svc, credential(&challenge, payload).to_str().unwrap()).await;
    assert_eq!(body["type"], problem_type("session/invalid-signature"));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn unpriced_layer_fails_closed_without_challenge() {
    let calls = Calls::default();
    let inner_calls = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, Secret::new(SECRET)))
        .service(service_fn(move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            inner_calls.hit();
            async { Ok::<_, Infallible>(TestResponse::new(Full::from("free?"))) }
        }));
    let response = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn session_open_and_voucher_on_bodiless_post_are_management() {
    let (store, calls) = (MemoryStore::new(), Calls::default());
    let svc = service(100, store.clone(), calls.clone());
    let challenge = challenge_for(100).await;
    let response =
        svc.clone().oneshot(management("/", credential(&challenge, open_payload("0xC1", 100, 10_000)))).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "private");
    let receipt = Receipt::from_header_value(&response.headers()[tollgate::wire::mpp::PAYMENT_RECEIPT]).unwrap();
    assert_eq!((receipt.status.as_str(), receipt.challenge_id.as_deref()), ("success", Some(challenge.id.as_str())));
    assert_eq!(receipt.accepted_cumulative, Some(Amount::new(100)));

    let response = svc
        .clone()
        .oneshot(management("/", credential(&challenge, voucher_payload("0xc1", 300, 10_000))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // A voucher above the deposit is refused and changes nothing.
    let (_, body) =
        refused(svc.clone(), credential(&challenge, voucher_payload("0xc1", 20_000, 10_000)).to_str().unwrap()).await;
    assert_eq!(body["type"], problem_type("session/amount-exceeds-deposit"));
    // A voucher for an unknown channel is 410 channel-not-found.
    let request = management("/", credential(&challenge, voucher_payload("0xdead", 300, 10_000)));
    let response = svc.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(problem(response).await["type"], problem_type("session/channel-not-found"));
    let state = store.load(&ChannelId::new("0xc1")).await.unwrap().unwrap();
    assert_eq!((state.accepted, state.spent), (Amount::new(300), Amount::ZERO));
    assert_eq!(calls.count(), 0, "management requests never reach the inner service");

    // Content requests draw on the channel: three fit, the fourth is short.
    for _ in 0..3 {
        let request = Request::get("/")
            .header(header::AUTHORIZATION, credential(&challenge, voucher_payload("0xc1", 300, 10_000)))
            .body(Full::default())
            .unwrap();
        let response = svc.clone().oneshot(request).await.unwrap();
        ok_status(&response);
        response.into_body().collect().await.unwrap();
    }
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, voucher_payload("0xc1", 300, 10_000)))
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem(response).await["type"], problem_type("session/insufficient-balance"));
    let state = store.load(&ChannelId::new("0xc1")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved, state.units), (Amount::new(300), Amount::ZERO, 3));
    assert_eq!(calls.count(), 3);
}

#[tokio::test]
async fn failing_inner_service_is_not_charged() {
    let store = MemoryStore::new();
    let svc = ServiceBuilder::new()
        .layer(
            PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(1000))),
        )
        .service(service_fn(|_req: Request<tollgate::RequestBody<Full<Bytes>>>| async {
            let mut response = TestResponse::new(Full::from("upstream broke"));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            Ok::<_, Infallible>(response)
        }));
    let challenge = challenge_for(1000).await;
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, pay_payload("f1", 1000)))
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    drop(response);
    tokio::task::yield_now().await;
    let state = store.load(&ChannelId::new("pay:f1")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO));
}

#[tokio::test]
async fn readiness_is_passed_through() {
    use std::task::{Context, Poll};
    #[derive(Clone)]
    struct NotReady;
    impl Service<Request<tollgate::RequestBody<Full<Bytes>>>> for NotReady {
        type Response = TestResponse;
        type Error = Infallible;
        type Future = std::future::Ready<Result<TestResponse, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Pending
        }
        fn call(&mut self, _: Request<tollgate::RequestBody<Full<Bytes>>>) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let layer = PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, Secret::new(SECRET))
        .pricing(Price::per_request(Amount::new(1)));
    let mut svc = tower::Layer::layer(&layer, NotReady);
    let waker = std::task::Waker::noop();
    let ready = <_ as Service<Request<Full<Bytes>>>>::poll_ready(&mut svc, &mut Context::from_waker(waker));
    assert!(ready.is_pending());
}

#[test]
fn futures_and_bodies_are_send() {
    fn assert_send<T: Send>() {}
    type Inner = tower::util::ServiceFn<
        fn(Request<tollgate::RequestBody<Full<Bytes>>>) -> std::future::Ready<Result<TestResponse, Infallible>>,
    >;
    assert_send::<
        tollgate::ResponseFuture<Inner, Full<Bytes>, tollgate::meter::OpenAiTokenMeter, MemoryStore, Full<Bytes>>,
    >();
    assert_send::<tollgate::MeteredBody<Full<Bytes>, tollgate::meter::OpenAiTokenMeter, MemoryStore>>();
    assert_send::<tollgate::PaymentService<Inner, TestMethod, MemoryStore, Price, tollgate::meter::OpenAiTokenMeter>>();
}

/// A store whose reservations fail as a backend outage would; everything else works.
#[derive(Debug, Clone, Default)]
struct ReserveFails(MemoryStore);

impl ChannelStore for ReserveFails {
    async fn open(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.open(id, accepted, deposit).await
    }
    async fn create(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.create(id, accepted, deposit).await
    }
    async fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: std::time::SystemTime,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.create_lapsing(id, accepted, deposit, lapses_at).await
    }
    async fn load(&self, id: &ChannelId) -> Result<Option<tollgate::store::ChannelState>, tollgate::store::StoreError> {
        self.0.load(id).await
    }
    async fn accept(
        &self,
        id: &ChannelId,
        c: Amount,
        d: Amount,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.accept(id, c, d).await
    }
    async fn reserve(
        &self,
        _: &ChannelId,
        _: Amount,
        _: Amount,
    ) -> Result<tollgate::store::Reservation, tollgate::store::StoreError> {
        Err(tollgate::store::StoreError::backend("connection reset"))
    }
    async fn extend(
        &self,
        r: &tollgate::store::Reservation,
        min: Amount,
        max: Amount,
    ) -> Result<tollgate::store::Reservation, tollgate::store::StoreError> {
        self.0.extend(r, min, max).await
    }
    async fn commit(
        &self,
        r: &tollgate::store::Reservation,
        used: Amount,
        units: u64,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.commit(r, used, units).await
    }
    async fn release(
        &self,
        r: &tollgate::store::Reservation,
        used: Amount,
        units: u64,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.release(r, used, units).await
    }
    async fn finalize(&self, id: &ChannelId) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.finalize(id).await
    }
    async fn ask(
        &self,
        id: &ChannelId,
        asker: tollgate::store::AskId,
        cumulative: Amount,
        ttl: std::time::Duration,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.ask(id, asker, cumulative, ttl).await
    }
    async fn withdraw_ask(
        &self,
        id: &ChannelId,
        asker: tollgate::store::AskId,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.withdraw_ask(id, asker).await
    }
    async fn changed(
        &self,
        id: &ChannelId,
        seen: u64,
    ) -> Result<tollgate::store::ChannelState, tollgate::store::StoreError> {
        self.0.changed(id, seen).await
    }
    fn lease(&self) -> std::time::Duration {
        self.0.lease()
    }
    async fn renew(
        &self,
        r: &tollgate::store::Reservation,
        delivered: tollgate::Amount,
        units: u64,
    ) -> Result<(), tollgate::store::StoreError> {
        self.0.renew(r, delivered, units).await
    }
    async fn keep(
        &self,
        id: &ChannelId,
        shelf: &str,
        key: tollgate::Amount,
        value: bytes::Bytes,
    ) -> Result<(), tollgate::store::StoreError> {
        self.0.keep(id, shelf, key, value).await
    }
    async fn kept(
        &self,
        id: &ChannelId,
        shelf: &str,
    ) -> Result<Vec<(tollgate::Amount, bytes::Bytes)>, tollgate::store::StoreError> {
        self.0.kept(id, shelf).await
    }
    async fn discard(
        &self,
        id: &ChannelId,
        shelf: &str,
        keys: Option<&[tollgate::Amount]>,
    ) -> Result<(), tollgate::store::StoreError> {
        self.0.discard(id, shelf, keys).await
    }
    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, tollgate::store::StoreError> {
        self.0.shelved(shelf).await
    }
    async fn lock(
        &self,
        name: &str,
        holder: tollgate::store::LockHolder,
        ttl: std::time::Duration,
    ) -> Result<bool, tollgate::store::StoreError> {
        self.0.lock(name, holder, ttl).await
    }
    async fn unlock(&self, name: &str, holder: tollgate::store::LockHolder) -> Result<(), tollgate::store::StoreError> {
        self.0.unlock(name, holder).await
    }
}

#[tokio::test]
async fn a_store_outage_is_a_503_without_challenge_and_never_calls_inner() {
    let calls = Calls::default();
    let inner_calls = calls.clone();
    let store = ReserveFails::default();
    let svc = ServiceBuilder::new()
        .layer(
            PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(1000))),
        )
        .service(service_fn(move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            inner_calls.hit();
            async { Ok::<_, Infallible>(TestResponse::new(Full::from("served"))) }
        }));
    let challenge = challenge_for(1000).await;
    let request = Request::get("/")
        .header(header::AUTHORIZATION, credential(&challenge, pay_payload("outage", 1000)))
        .body(Full::default())
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE), "the client must not be asked to pay again");
    assert_eq!(problem(response).await["type"], problem_type("internal-payment-error"));
    assert_eq!(calls.count(), 0);
    let state = store.load(&ChannelId::new("pay:outage")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged");
}

#[tokio::test]
async fn an_empty_payment_credential_is_malformed() {
    let calls = Calls::default();
    let svc = service(1000, MemoryStore::new(), calls.clone());
    let (status, body) = refused(svc, "Payment").await;
    assert_eq!(
        (status, body["type"].as_str().unwrap()),
        (StatusCode::PAYMENT_REQUIRED, &*problem_type("malformed-credential"))
    );
    assert_eq!(calls.count(), 0);
}
