//! `Grant::settle_by`: a payment settled at the end of its response with an authorization
//! that lapses (an x402 Permit or `upto` permit) is settled in time, whatever its client
//! does. The stream ends at the deadline; a client that stops reading does not hold the
//! release back; a plain answer held for its proof is never cut. Time is tokio's paused
//! clock, so the deadlines are exact and nothing depends on the machine's speed.
//!
//! The same toy method checks the layer's two knobs for payments that prove their
//! settlement: `held_answer_limit` and `proof_wait`.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::lapsing::Lapsing;
use support::{REALM, SECRET, challenge_of, channel_body, credential};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tollgate::meter::{ByteMeter, EventMeter};
use tollgate::method::Settled;
use tollgate::store::MemoryStore;
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;

/// What each payment deposits; an event (SSE) or a byte (plain) costs 1.
const DEPOSIT: u128 = 100;

/// What the inner service answers: an SSE stream fed by the test, or a plain answer after
/// `delay`.
#[derive(Clone, Copy)]
enum Inner {
    Stream,
    Plain { delay: Duration },
}

fn quote(unit: &'static str) -> Quote {
    Quote::new(Price::per_unit(unit, Rate::per_unit(Amount::new(1)))).max_output(DEPOSIT as u64)
}

type Feed = UnboundedSender<Result<Bytes, &'static str>>;

struct Route {
    app: axum::Router,
    settled: UnboundedReceiver<Settled>,
    /// Each stream's sender: the test feeds the inner body with it.
    feeds: UnboundedReceiver<Feed>,
}

impl Route {
    fn new(inner: Inner, proven: bool) -> Route {
        Route::configured(inner, proven, |layer| layer)
    }

    /// As [`new`](Route::new), with the layer's settings changed by `configure`.
    fn configured(
        inner: Inner,
        proven: bool,
        configure: impl FnOnce(PaymentLayer<Lapsing, MemoryStore>) -> PaymentLayer<Lapsing, MemoryStore>,
    ) -> Route {
        let (settled_tx, settled) = unbounded_channel();
        let (feed_tx, feeds) = unbounded_channel::<Feed>();
        let method = Lapsing::new(settled_tx, proven, DEPOSIT);
        let layer = configure(PaymentLayer::new(method, MemoryStore::new(), REALM, Secret::new(SECRET)));
        let handler = move || {
            let feed_tx = feed_tx.clone();
            async move {
                let response = match inner {
                    Inner::Stream => {
                        let (tx, body) = channel_body();
                        let _ = feed_tx.send(tx);
                        Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(Body::new(body))
                    }
                    Inner::Plain { delay } => {
                        tokio::time::sleep(delay).await;
                        Response::builder()
                            .header(header::CONTENT_TYPE, "text/plain")
                            .body(Body::from("the whole answer"))
                    }
                };
                response.unwrap()
            }
        };
        let router = axum::Router::new().route("/", get(handler));
        // An event costs 1 (SSE); a byte costs 1 (plain).
        let app = match inner {
            Inner::Stream => router.route_layer(layer.pricing(quote("event")).meter(EventMeter::default())),
            Inner::Plain { .. } => router.route_layer(layer.pricing(quote("byte")).meter(ByteMeter::new())),
        };
        Route { app, settled, feeds }
    }

    /// Pays with a fresh nonce, to settle `settle_in_ms` from now; the paid response.
    async fn paid(&self, nonce: &str, settle_in_ms: i64) -> Response<Body> {
        let response = self.paid_with(json!({ "nonce": nonce, "settleInMs": settle_in_ms })).await;
        assert_eq!(response.status(), StatusCode::OK);
        response
    }

    /// Pays with `payload` (see [`support::lapsing`]); the paid response.
    async fn paid_with(&self, payload: Value) -> Response<Body> {
        let unpaid = self.app.clone().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(unpaid.status(), StatusCode::PAYMENT_REQUIRED);
        let request = Request::get("/")
            .header(header::AUTHORIZATION, credential(&challenge_of(&unpaid), payload))
            .body(Body::empty())
            .unwrap();
        self.app.clone().oneshot(request).await.unwrap()
    }

    async fn next_feed(&mut self) -> Feed {
        self.feeds.recv().await.expect("the inner service answered")
    }

    async fn next_settled(&mut self) -> Settled {
        tokio::time::timeout(Duration::from_secs(3600), self.settled.recv()).await.unwrap().unwrap()
    }
}

/// Everything left in `body`, as text (bounded by the paused clock: a hang fails the test).
async fn rest_of(body: &mut Body) -> String {
    let mut text = String::new();
    let reading = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the stream ends cleanly").into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3600), reading).await.expect("the stream ended");
    text
}

async fn next_text(body: &mut Body) -> String {
    let frame = body.frame().await.expect("a frame").expect("no error");
    String::from_utf8_lossy(&frame.into_data().expect("data")).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_stream_still_running_at_its_deadline_ends_there_and_settles_what_it_delivered() {
    let mut route = Route::new(Inner::Stream, false);
    let mut body = route.paid("running", 5_000).await.into_body();
    let feed = route.next_feed().await;
    feed.send(Ok(Bytes::from("data: 0\n\n"))).unwrap();
    assert_eq!(next_text(&mut body).await, "data: 0\n\n");
    feed.send(Ok(Bytes::from("data: 1\n\n"))).unwrap();
    assert_eq!(next_text(&mut body).await, "data: 1\n\n");
    // The upstream goes quiet; the reader keeps polling past the deadline.
    let rest = rest_of(&mut body).await;
    assert!(rest.contains("event: payment-receipt"), "the stream ends cleanly with its receipt: {rest:?}");
    let settled = route.next_settled().await;
    assert_eq!((settled.used, settled.units), (Amount::new(2), 2), "exactly the two delivered events");
    // What the upstream sends after the deadline goes nowhere, and changes nothing.
    // (An ended body yields nothing whatever happens: the check that can fail is the
    // settlement's, below.)
    let _ = feed.send(Ok(Bytes::from("data: 2\n\n")));
    assert!(rest_of(&mut body).await.is_empty());
    drop(body);
    assert!(route.settled.try_recv().is_err(), "released exactly once");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_cannot_hold_its_payment_past_the_deadline() {
    let mut route = Route::new(Inner::Stream, false);
    let mut body = route.paid("stalled", 5_000).await.into_body();
    let feed = route.next_feed().await;
    feed.send(Ok(Bytes::from("data: 0\n\n"))).unwrap();
    assert_eq!(next_text(&mut body).await, "data: 0\n\n");
    // More is ready upstream, but the client stops polling its body altogether.
    feed.send(Ok(Bytes::from("data: 1\n\n"))).unwrap();
    let settled = route.next_settled().await;
    assert_eq!((settled.used, settled.units), (Amount::new(1), 1), "released at the deadline, without the body");
    // When the client looks again, the stream is over: nothing more was delivered.
    let rest = rest_of(&mut body).await;
    assert!(!rest.contains("data: 1"), "nothing past the deadline goes out: {rest:?}");
    assert!(rest.contains("event: payment-receipt"), "it ends with its receipt: {rest:?}");
    drop(body);
    assert!(route.settled.try_recv().is_err(), "released exactly once");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_delivers_nothing_and_charges_nothing() {
    let mut route = Route::new(Inner::Stream, false);
    let mut body = route.paid("late", -1_000).await.into_body();
    let feed = route.next_feed().await;
    let _ = feed.send(Ok(Bytes::from("data: 0\n\n")));
    let rest = rest_of(&mut body).await;
    assert!(!rest.contains("data: 0"), "nothing is delivered: {rest:?}");
    assert_eq!(route.next_settled().await.used, Amount::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_proven_stream_cut_at_its_deadline_ends_with_the_settlements_proof() {
    let mut route = Route::new(Inner::Stream, true);
    let mut body = route.paid("proven", 5_000).await.into_body();
    let feed = route.next_feed().await;
    feed.send(Ok(Bytes::from("data: 0\n\n"))).unwrap();
    assert_eq!(next_text(&mut body).await, "data: 0\n\n");
    // The client stops reading until well past the deadline.
    let settled = route.next_settled().await;
    assert_eq!(settled.used, Amount::new(1));
    let rest = rest_of(&mut body).await;
    assert!(rest.contains("\"success\":true") && rest.contains("\"amount\":\"1\""), "the proof goes out: {rest:?}");
}

#[tokio::test(start_paused = true)]
async fn a_plain_answer_held_for_its_proof_is_never_cut_by_the_deadline() {
    // The deadline has passed by the time the upstream answers: the answer is held whole,
    // metered and settled before it goes out (the settlement decides), so the deadline does
    // not cut it. (The deadline is a wall-clock one: it is set in the past here, as the
    // paused clock does not move the wall clock.)
    let mut route = Route::new(Inner::Plain { delay: Duration::from_secs(10) }, true);
    let response = route.paid("plain", -1_000).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"the whole answer");
    assert_eq!(route.next_settled().await.used, Amount::new(body.len() as u128), "every byte, once");
}

#[tokio::test(start_paused = true)]
async fn a_plain_answer_longer_than_the_held_answer_limit_is_a_502_and_charges_nothing() {
    // "the whole answer" is 16 bytes.
    let limit = |limit: usize| move |layer: PaymentLayer<Lapsing, MemoryStore>| layer.held_answer_limit(limit);
    let mut route = Route::configured(Inner::Plain { delay: Duration::ZERO }, true, limit(15));
    let response = route.paid_with(json!({ "nonce": "long", "settleInMs": 60_000 })).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("the whole answer"), "nothing is delivered");
    assert_eq!(route.next_settled().await.used, Amount::ZERO, "nothing is charged");

    let mut route = Route::configured(Inner::Plain { delay: Duration::ZERO }, true, limit(16));
    let response = route.paid("fits", 60_000).await;
    assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"the whole answer");
    assert_eq!(route.next_settled().await.used, Amount::new(16));
}

#[tokio::test(start_paused = true)]
async fn a_settlement_slower_than_the_proof_wait_ends_the_stream_pending_and_still_settles() {
    let wait = |layer: PaymentLayer<Lapsing, MemoryStore>| layer.proof_wait(Duration::from_secs(2));
    let mut route = Route::configured(Inner::Stream, true, wait);
    let payload = json!({ "nonce": "slow", "settleInMs": 60_000, "proofDelayMs": 10_000 });
    let response = route.paid_with(payload).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let feed = route.next_feed().await;
    feed.send(Ok(Bytes::from("data: 0\n\n"))).unwrap();
    assert_eq!(next_text(&mut body).await, "data: 0\n\n");
    drop(feed);
    let started = tokio::time::Instant::now();
    let rest = rest_of(&mut body).await;
    assert!(rest.contains("\"status\":\"pending\""), "the receipt says pending: {rest:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "it did not wait for the 10 s settlement");
    assert_eq!(route.next_settled().await.used, Amount::new(1), "the settlement ran on");
}
