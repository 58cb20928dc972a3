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
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, ChallengeFields, ChallengeSigner, encode_request, format_expires};
use tollgate::{Amount, ConfigError, MIN_SECRET_LEN, PaymentLayer, Price, PriceByBody, Quote, Secret};
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
    ServiceBuilder::new()
        .layer(PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET)).pricing(pricing))
        .service(service_fn(move |_req: Request<tollgate::RequestBody<Stalled>>| {
            calls.hit();
            async move { Ok::<_, Infallible>(Response::new(Full::from("paid"))) }
        }))
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
#[should_panic(expected = "at least 32")]
fn scenario_14_an_empty_hmac_secret_is_refused() {
    let _ = PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, Secret::new(""));
}

#[test]
fn try_new_refuses_a_short_secret_with_a_typed_error() {
    let short = PaymentLayer::try_new(TestMethod, MemoryStore::new(), REALM, Secret::new([7u8; 31])).unwrap_err();
    assert_eq!(short, ConfigError::SecretTooShort { len: 31 });
    assert!(PaymentLayer::try_new(TestMethod, MemoryStore::new(), REALM, Secret::new([7u8; MIN_SECRET_LEN])).is_ok());
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
        .layer(
            PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
                .pricing(Price::per_request(Amount::new(10))),
        )
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

mod upfront_in_stream {
    //! Scenario 5 at the layer: an upfront a session cannot cover is asked for in the
    //! stream, and the inner service runs only once it is reserved.

    use super::*;
    use tollgate::meter::Meter;
    use tollgate::{Rate, Usage};

    /// Counts the quote's upfront from the response head on (as an LLM meter counts the
    /// prompt), then one output unit per event.
    struct UpfrontThenEvents(Usage);

    impl Meter for UpfrontThenEvents {
        fn on_response(&mut self, _: &http::response::Parts) -> Usage {
            self.0
        }
        fn on_data(&mut self, _: &[u8]) -> Usage {
            self.0
        }
        fn on_event(&mut self, _: &[u8]) -> Usage {
            self.0.output += 1;
            self.0
        }
        fn on_end(&mut self) -> Usage {
            self.0
        }
    }

    /// Per-event pricing with 100 units upfront; the inner service streams two events, or
    /// answers `status` when it is not 200.
    fn svc(
        store: MemoryStore,
        calls: Calls,
        status: StatusCode,
        in_stream: bool,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
        Error = Infallible,
    > + Clone {
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(1))))
            .upfront(Usage { input: 0, output: 100 });
        let layer = PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET))
            .pricing(quote)
            .meter(|_: &http::request::Parts, quote: &Quote| UpfrontThenEvents(quote.upfront))
            .voucher_window(10)
            .pause_deadline(Duration::from_secs(30))
            .keep_alive(Duration::from_secs(5));
        let layer = if in_stream { layer.upfront_in_stream() } else { layer };
        ServiceBuilder::new().layer(layer).service(service_fn(
            move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
                calls.hit();
                async move {
                    let mut response = Response::new(Full::from("data: 1\n\ndata: 2\n\n"));
                    *response.status_mut() = status;
                    response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
            },
        ))
    }

    /// Opens `channel` with one unit paid, then sends a content request on it.
    async fn open_one_unit(
        svc: impl tower::Service<
            Request<Full<Bytes>>,
            Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
            Error = Infallible,
        > + Clone,
        channel: &str,
    ) -> (Challenge, Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>) {
        let challenge = challenge_of(&svc.clone().oneshot(get("/")).await.unwrap());
        let request = Request::get("/")
            .header(header::AUTHORIZATION, credential(&challenge, open_payload(channel, 1, 1000)))
            .body(Full::default())
            .unwrap();
        (challenge.clone(), svc.oneshot(request).await.unwrap())
    }

    async fn next_text<B: http_body::Body<Data = Bytes> + Unpin>(body: &mut B) -> Option<String>
    where
        B::Error: std::fmt::Debug,
    {
        let frame = body.frame().await?.unwrap();
        Some(String::from_utf8_lossy(&frame.into_data().unwrap()).into_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn the_voucher_lands_then_the_inner_service_runs_and_the_upfront_is_charged() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let svc = svc(store.clone(), calls.clone(), StatusCode::OK, true);
        let (challenge, response) = open_one_unit(svc.clone(), "0xa1").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = Box::pin(response.into_body());
        let first = next_text(&mut body).await.unwrap();
        assert_eq!(
            first,
            "event: payment-need-voucher\ndata: {\"channelId\":\"0xa1\",\"requiredCumulative\":\"110\",\"acceptedCumulative\":\"1\",\"deposit\":\"1000\"}\n\n"
        );
        // A keep-alive while it waits; the inner service has not run.
        assert_eq!(next_text(&mut body).await.unwrap(), ": keep-alive\n\n");
        assert_eq!(calls.count(), 0);
        // The voucher lands on a bodiless POST.
        let voucher = management("/", credential(&challenge, voucher_payload("0xa1", 110, 1000)));
        assert_eq!(svc.oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
        let mut rest = String::new();
        while let Some(text) = next_text(&mut body).await {
            rest.push_str(&text);
        }
        assert!(rest.starts_with("data: 1\n\ndata: 2\n\nevent: payment-receipt\n"), "{rest}");
        assert_eq!(calls.count(), 1);
        tokio::task::yield_now().await;
        let state = store.load(&ChannelId::new("0xa1")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(102), Amount::ZERO), "upfront plus two events");
    }

    #[tokio::test(start_paused = true)]
    async fn no_voucher_before_the_deadline_ends_with_an_error_and_charges_nothing() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let svc = svc(store.clone(), calls.clone(), StatusCode::OK, true);
        let (_, response) = open_one_unit(svc, "0xa2").await;
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.starts_with("event: payment-need-voucher\n"), "{text}");
        assert!(text.ends_with("\n\n") && text.contains("event: payment-error\ndata: {"), "{text}");
        assert!(text.contains("session/insufficient-balance"), "{text}");
        assert_eq!(calls.count(), 0);
        let state = store.load(&ChannelId::new("0xa2")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO));
    }

    /// Issue 8: a client that cannot answer in-band asks (mppx's v1 plain fetch) learns why
    /// at the first-voucher deadline, not after the whole pause deadline.
    #[tokio::test(start_paused = true)]
    async fn a_stream_that_delivered_nothing_ends_at_the_first_voucher_deadline() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(1))))
            .upfront(Usage { input: 0, output: 100 });
        let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
            .pricing(quote)
            .meter(|_: &http::request::Parts, quote: &Quote| UpfrontThenEvents(quote.upfront))
            .voucher_window(10)
            .pause_deadline(Duration::from_secs(30))
            .first_voucher_deadline(Duration::from_secs(3))
            .keep_alive(Duration::from_secs(5))
            .upfront_in_stream();
        let inner = calls.clone();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
                inner.hit();
                async move { Ok::<_, Infallible>(Response::new(Full::from("data: 1\n\n"))) }
            },
        ));
        let started = tokio::time::Instant::now();
        let (_, response) = open_one_unit(svc, "0xa9").await;
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let waited = started.elapsed();
        assert!(text.starts_with("event: payment-need-voucher\n"), "{text}");
        assert!(!text.contains(": keep-alive"), "ended before the first keep-alive (5 s): {text}");
        assert!(text.contains("event: payment-error\ndata: {"), "{text}");
        assert!(text.contains("within 3 s of the payment-need-voucher event"), "says why: {text}");
        assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(30), "{waited:?} (paused clock)");
        assert_eq!(calls.count(), 0);
        let state = store.load(&ChannelId::new("0xa9")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged, nothing held");
    }

    /// Concurrent streams on one channel can take the headroom a payer's voucher bought
    /// before a waiting stream reserves it. A payer whose vouchers land answers in-band: its
    /// stream then waits the pause deadline, not the (short) first-voucher deadline that
    /// exists to name clients that never answer (the CI failure of issue8_06: three of
    /// eight concurrent mppx streams ended with a payment-error after 10 s while every
    /// voucher they sent was accepted).
    #[tokio::test(start_paused = true)]
    async fn a_payer_whose_vouchers_land_waits_the_pause_deadline_not_the_first_one() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(1))))
            .upfront(Usage { input: 0, output: 100 });
        let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
            .pricing(quote)
            .meter(|_: &http::request::Parts, quote: &Quote| UpfrontThenEvents(quote.upfront))
            .voucher_window(10)
            .pause_deadline(Duration::from_secs(30))
            .first_voucher_deadline(Duration::from_secs(3))
            .keep_alive(Duration::from_secs(60))
            .upfront_in_stream();
        let inner = calls.clone();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
                inner.hit();
                async move {
                    let mut response = Response::new(Full::from("data: 1\n\n"));
                    response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
            },
        ));
        let (challenge, response) = open_one_unit(svc.clone(), "0xaa").await;
        let mut body = Box::pin(response.into_body());
        assert!(next_text(&mut body).await.unwrap().starts_with("event: payment-need-voucher"));
        // A voucher lands, but the headroom it bought is gone before this stream reserves
        // it (here: it covers only half the upfront, as if another stream took the rest;
        // the ask of 110 still stands, so no new need-voucher goes out).
        let voucher = management("/", credential(&challenge, voucher_payload("0xaa", 51, 1000)));
        assert_eq!(svc.clone().oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
        // The client keeps reading while the first-voucher deadline passes; the payer's
        // next voucher still serves the stream.
        let reader = tokio::spawn(async move {
            let mut rest = String::new();
            while let Some(text) = next_text(&mut body).await {
                rest.push_str(&text);
            }
            rest
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        let voucher = management("/", credential(&challenge, voucher_payload("0xaa", 120, 1000)));
        assert_eq!(svc.oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
        let rest = reader.await.unwrap();
        assert!(rest.starts_with("data: 1\n\nevent: payment-receipt\n"), "{rest}");
        assert_eq!(calls.count(), 1);
        tokio::task::yield_now().await;
        let state = store.load(&ChannelId::new("0xaa")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(101), Amount::ZERO), "upfront plus one event");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_service_that_fails_after_the_voucher_is_charged_nothing() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let svc = svc(store.clone(), calls.clone(), StatusCode::BAD_GATEWAY, true);
        let (challenge, response) = open_one_unit(svc.clone(), "0xa3").await;
        let mut body = Box::pin(response.into_body());
        assert!(next_text(&mut body).await.unwrap().starts_with("event: payment-need-voucher"));
        let voucher = management("/", credential(&challenge, voucher_payload("0xa3", 110, 1000)));
        assert_eq!(svc.oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
        let mut rest = String::new();
        while let Some(text) = next_text(&mut body).await {
            rest.push_str(&text);
        }
        assert!(rest.starts_with("event: payment-error\n") && rest.contains("502"), "{rest}");
        assert_eq!(calls.count(), 1);
        let state = store.load(&ChannelId::new("0xa3")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged, released");
    }

    #[tokio::test]
    async fn without_the_setting_a_short_session_gets_a_402() {
        let (store, calls) = (MemoryStore::new(), Calls::default());
        let svc = svc(store, calls.clone(), StatusCode::OK, false);
        let (_, response) = open_one_unit(svc, "0xa4").await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(problem(response).await["type"], problem_type("session/insufficient-balance"));
        assert_eq!(calls.count(), 0);
    }

    #[tokio::test]
    async fn a_client_that_leaves_while_the_inner_service_runs_pays_the_upfront() {
        // The upfront is what calling the inner service costs the server.
        let store = MemoryStore::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let quote = Quote::new(Price::per_request(Amount::new(1))).upfront(Usage { input: 0, output: 5 });
        let svc = ServiceBuilder::new()
            .layer(PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)).pricing(quote))
            .service(service_fn(move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
                let rx = rx.clone();
                async move {
                    let rx = rx.lock().await.take();
                    if let Some(rx) = rx {
                        let _ = rx.await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::from("late")))
                }
            }));
        let challenge = challenge_of(&svc.clone().oneshot(get("/")).await.unwrap());
        let request = Request::get("/")
            .header(header::AUTHORIZATION, credential(&challenge, open_payload("0xa5", 100, 1000)))
            .body(Full::default())
            .unwrap();
        let call = tokio::spawn(svc.oneshot(request));
        tokio::task::yield_now().await;
        call.abort();
        let _ = call.await;
        drop(tx);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let state = store.load(&ChannelId::new("0xa5")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(5), Amount::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_while_the_prepaid_call_runs_pays_the_upfront_once() {
        let store = MemoryStore::new();
        let calls = Calls::default();
        let inner = calls.clone();
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(1))))
            .upfront(Usage { input: 0, output: 100 });
        let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
            .pricing(quote)
            .meter(|_: &http::request::Parts, quote: &Quote| UpfrontThenEvents(quote.upfront))
            .voucher_window(10)
            .upfront_in_stream();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
                inner.hit();
                async move {
                    // The upstream never answers.
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
                }
            },
        ));
        let (challenge, response) = open_one_unit(svc.clone(), "0xa6").await;
        let mut body = Box::pin(response.into_body());
        assert!(next_text(&mut body).await.unwrap().starts_with("event: payment-need-voucher"));
        let voucher = management("/", credential(&challenge, voucher_payload("0xa6", 110, 1000)));
        assert_eq!(svc.oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
        // Poll until the inner service runs, then hang up.
        let polled = tokio::time::timeout(Duration::from_secs(1), body.frame()).await;
        assert!(polled.is_err(), "the body waits for the inner service");
        assert_eq!(calls.count(), 1);
        drop(body);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let state = store.load(&ChannelId::new("0xa6")).await.unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(100), Amount::ZERO), "the upfront, once");
    }
}
