//! Leases that expire (issue 10): a live stream keeps its reservation alive, however
//! slowly it streams or long it pauses, and reports what it delivered as it goes, so a
//! crashed instance loses at most one window; a lease reclaimed under a live stream stops
//! it. Paused tokio time: the memory store's leases lapse on that clock.

#[allow(unused_macros)] // the store suite is not run here
mod common;
#[path = "money_metering/kit.rs"]
mod kit;
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{FaultyStore, Op};
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use kit::{challenge, paid_get, read_until, serve, state};
use support::{FramesBody, TestMethod, channel_body, credential, events, management, open_payload, voucher_payload};
use support::{REALM, SECRET};
use tollgate::meter::{EventMeter, Meter};
use tollgate::store::{DEFAULT_LEASE, MemoryStore};
use tollgate::{Amount, BoxError, PaymentLayer, Price, Quote, Rate, Secret, Usage};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const PRICE: u128 = 10;
const LEASE: Duration = DEFAULT_LEASE;

type Store = FaultyStore<MemoryStore>;

fn a(n: u128) -> Amount {
    Amount::new(n)
}

fn per_event() -> Quote {
    Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(PRICE))))
}

/// Per-event pricing, a window of `window` events, a pause deadline well past the lease.
fn layer(store: &Store, window: u64) -> PaymentLayer<TestMethod, Store, Quote, EventMeter> {
    PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event())
        .meter(EventMeter::default())
        .voucher_window(window)
        .first_voucher_window(window)
        .pause_deadline(10 * LEASE)
}

/// The data events (`data: <n>`) in `text`.
fn data_events(text: &str) -> usize {
    text.split("\n\n").filter(|event| event.starts_with("data: ")).count()
}

/// The store calls a metered response makes, so far.
fn metering_calls(store: &Store) -> u64 {
    [Op::Reserve, Op::Extend, Op::Renew, Op::Commit, Op::Release, Op::Load].iter().map(|&op| store.count(op)).sum()
}

#[tokio::test(start_paused = true)]
async fn a_stream_paused_longer_than_the_lease_keeps_its_hold_and_is_charged_what_it_delivered() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 2), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..8).map(|i| events(i, i + 1))));
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xa1", 40, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(data_events(&text), 4, "40 paid, 10 an event: {text}");

    // The client takes three leases to sign; nobody polls the body meanwhile. A step on
    // the channel (this load) reclaims a lease that lapsed.
    tokio::time::sleep(3 * LEASE).await;
    let paused = state(store.inner(), "0xa1").await;
    assert_eq!((paused.spent, paused.reserved), (a(0), a(40)), "the paused stream still holds its lease");

    let voucher = management("/", credential(&c, voucher_payload("0xa1", 10_000, 10_000)));
    assert_eq!(svc.clone().oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (rest, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert_eq!(data_events(&rest), 4, "the stream went on where it paused: {rest}");
    let state = state(store.inner(), "0xa1").await;
    assert_eq!((state.spent, state.reserved, state.units), (a(80), a(0), 8));
}

#[tokio::test(start_paused = true)]
async fn a_paused_stream_whose_client_never_signs_is_charged_what_it_delivered_at_the_deadline() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 2), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..8).map(|i| events(i, i + 1))));
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xa2", 40, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(data_events(&text), 4);
    // The pause deadline (ten leases) passes with the body unpolled: the watchdog releases.
    tokio::time::sleep(11 * LEASE).await;
    let state = state(store.inner(), "0xa2").await;
    assert_eq!((state.spent, state.reserved), (a(40), a(0)));
    let renewals = store.count(Op::Renew);
    assert!(renewals <= 3 * 10 + 3, "about three renewals per lease while paused, not a busy loop: {renewals}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_inner_body_keeps_its_hold_and_stops_renewing_when_it_ends() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 256), "text/event-stream");
    let (tx, inner) = channel_body();
    slot.lock().unwrap().push(inner);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xb1", 1_000, 10_000))).await.unwrap();
    let mut body = response.into_body();
    // The client reads all along; the upstream takes a lease and a half per event.
    let reader = tokio::spawn(async move {
        let read = read_until(&mut body, |_| false).await;
        (read, body)
    });
    for i in 0..4 {
        tx.send(Ok(Bytes::from(events(i, i + 1)))).unwrap();
        tokio::time::sleep(LEASE + LEASE / 2).await;
    }
    drop(tx);
    let ((text, error), body) = reader.await.unwrap();
    assert!(error.is_none());
    assert_eq!(data_events(&text), 4, "{text}");
    assert!(text.contains("payment-receipt"), "{text}");
    let state = state(store.inner(), "0xb1").await;
    assert_eq!((state.spent, state.reserved, state.units), (a(40), a(0), 4));

    // Six leases of gaps: about three renewals per lease, no busy loop.
    let renewals = store.count(Op::Renew);
    assert!((4..=3 * 6 + 2).contains(&renewals), "{renewals} renewals");
    // The ended body (still alive) renews no more.
    tokio::time::sleep(10 * LEASE).await;
    assert_eq!(store.count(Op::Renew), renewals);
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn a_crashed_stream_is_reclaimed_with_what_it_delivered_up_to_its_last_window() {
    const WINDOW: u64 = 8;
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, WINDOW), "text/event-stream");
    let (tx, inner) = channel_body();
    slot.lock().unwrap().push(inner);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xc1", 1_000, 10_000))).await.unwrap();
    let mut body = response.into_body();
    for i in 0..30 {
        tx.send(Ok(Bytes::from(events(i, i + 1)))).unwrap();
    }
    let (text, _) = read_until(&mut body, |t| t.contains("data: 29\n\n")).await;
    assert_eq!(data_events(&text), 30);
    assert!(store.count(Op::Extend) >= 3, "the 30 events took several windows");
    // The instance dies: nothing releases the lease, nothing renews it.
    std::mem::forget(body);
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;

    let state = state(store.inner(), "0xc1").await;
    let delivered = 30 * PRICE;
    let batch = (u128::from(WINDOW) + 1) * PRICE;
    assert_eq!(state.reserved, a(0), "the lapsed lease is reclaimed");
    assert!(state.spent <= a(delivered), "never above what was delivered: {}", state.spent);
    assert!(state.spent >= a(delivered - batch), "at most one window lost: spent {}", state.spent);
    assert_eq!(u128::from(state.units) * PRICE, state.spent.get());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_lease_reclaimed_under_a_live_stream_ends_it_and_charges_no_more_than_was_delivered() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 256), "text/event-stream");
    let (tx, inner) = channel_body();
    slot.lock().unwrap().push(inner);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xd1", 1_000, 10_000))).await.unwrap();
    let mut body = response.into_body();
    tx.send(Ok(Bytes::from(events(0, 3)))).unwrap();
    let (text, _) = read_until(&mut body, |t| t.contains("data: 2\n\n")).await;
    assert_eq!(data_events(&text), 3);

    // The instance stalls past the lease (nothing polls the body); a step on the channel,
    // from any instance, reclaims the lapsed lease.
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let reclaimed = state(store.inner(), "0xd1").await;
    assert_eq!(reclaimed.reserved, a(0), "reclaimed");
    assert!(reclaimed.spent <= a(3 * PRICE));

    // The instance wakes up with more to send: it must not deliver on a lease it lost.
    tx.send(Ok(Bytes::from(events(3, 6)))).unwrap();
    let read = tokio::time::timeout(LEASE, read_until(&mut body, |_| false)).await;
    let (rest, _) = read.expect("the stream ends on its own");
    assert_eq!(data_events(&rest), 0, "nothing more went out: {rest}");
    let after = state(store.inner(), "0xd1").await;
    assert_eq!((after.spent, after.reserved), (reclaimed.spent, a(0)), "the release changed nothing");
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn streaming_1000_events_takes_a_handful_of_store_calls_each_window_reporting_its_delivery() {
    const WINDOW: u64 = 256;
    const EVENTS: usize = 1_000;
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, WINDOW), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..EVENTS).step_by(10).map(|i| events(i, i + 10))));
    let c = challenge(svc.clone()).await;
    let before = metering_calls(&store);
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xe1", 100_000, 100_000))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert!(error.is_none());
    assert_eq!(data_events(&text), EVENTS);
    assert_eq!(state(store.inner(), "0xe1").await.spent, a(EVENTS as u128 * PRICE));

    let windows = EVENTS as u64 / WINDOW + 1;
    let (extends, renewals) = (store.count(Op::Extend), store.count(Op::Renew));
    assert!(extends <= windows, "{extends} extends for {windows} windows");
    assert_eq!(renewals, extends, "each window's growth reports what was delivered");
    let calls = metering_calls(&store) - before;
    assert!(calls <= 2 * windows + 3, "{calls} store calls for {EVENTS} events in {windows} windows");
}

/// A service over `layer` that answers after `delay` with the next body from `bodies`.
fn slow<MM: tollgate::meter::MakeMeter>(
    layer: PaymentLayer<TestMethod, Store, Quote, MM>,
    delay: Duration,
    bodies: Vec<FramesBody>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let bodies = Arc::new(Mutex::new(bodies));
    ServiceBuilder::new().layer(layer).service(service_fn(move |_: Request<tollgate::RequestBody<Full<Bytes>>>| {
        let bodies = bodies.clone();
        async move {
            tokio::time::sleep(delay).await;
            let mut response = Response::new(bodies.lock().unwrap().remove(0));
            response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn an_inner_service_slower_than_the_lease_to_answer_keeps_the_hold() {
    let store = FaultyStore::new(MemoryStore::new());
    let svc = slow(layer(&store, 256), 2 * LEASE, vec![FramesBody::new([events(0, 2)])]);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xf1", 1_000, 10_000))).await.unwrap();
    let (text, _) = read_until(&mut response.into_body(), |_| false).await;
    assert_eq!(data_events(&text), 2);
    let state = state(store.inner(), "0xf1").await;
    assert_eq!((state.spent, state.reserved), (a(2 * PRICE), a(0)));
}

/// Counts the quote's upfront from the response head on, then one output unit per event.
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

#[tokio::test(start_paused = true)]
async fn an_upfront_asked_for_in_the_stream_keeps_its_hold_while_the_inner_service_is_slow() {
    let store = FaultyStore::new(MemoryStore::new());
    let quote = per_event().upfront(Usage { input: 0, output: 5 });
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(quote)
        .meter(|_: &http::request::Parts, quote: &Quote| UpfrontThenEvents(quote.upfront))
        .voucher_window(256)
        .pause_deadline(10 * LEASE)
        .upfront_in_stream();
    let svc = slow(layer, 2 * LEASE, vec![FramesBody::new([events(0, 2)])]);
    let c = challenge(svc.clone()).await;
    // 10 paid cannot cover the upfront (50): the stream asks for it.
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xf2", 10, 10_000))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    let voucher = management("/", credential(&c, voucher_payload("0xf2", 10_000, 10_000)));
    assert_eq!(svc.clone().oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert_eq!(data_events(&text), 2, "{text}");
    let state = state(store.inner(), "0xf2").await;
    assert_eq!((state.spent, state.reserved), (a(50 + 2 * PRICE), a(0)));
}

#[tokio::test(start_paused = true)]
async fn a_paused_stream_whose_lease_is_reclaimed_ends_before_its_deadline() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 2).keep_alive(LEASE / 4), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..8).map(|i| events(i, i + 1))));
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xa3", 40, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(data_events(&text), 4);
    // The watchdog's next three renewals fail (the store is unreachable for a lease), so
    // the lease lapses and a step on the channel reclaims it.
    let renewed = store.count(Op::Renew);
    for n in 1..=3 {
        store.fail_nth(Op::Renew, renewed + n);
    }
    let reclaim = async {
        tokio::time::sleep(LEASE + LEASE / 2).await;
        state(store.inner(), "0xa3").await
    };
    // The client keeps reading (keep-alives) all along; the pause deadline is ten leases.
    let read = tokio::time::timeout(3 * LEASE, read_until(&mut body, |_| false));
    let (reclaimed, read) = tokio::join!(reclaim, read);
    assert_eq!(reclaimed.reserved, a(0), "reclaimed");
    let (rest, error) = read.expect("the stream ends once the watchdog learns the lease is gone");
    assert!(error.is_none());
    assert_eq!(data_events(&rest), 0, "{rest}");
    let state = state(store.inner(), "0xa3").await;
    assert_eq!((state.spent, state.reserved), (a(40), a(0)), "the renewals before the outage reported all 4 events");
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_fails_in_the_backend_is_tried_again_at_the_next_tick() {
    let store = FaultyStore::new(MemoryStore::new());
    // The second timed renewal fails; the third (a third of a lease later) still comes
    // before the lease lapses.
    store.fail_nth(Op::Renew, 2);
    let (svc, slot) = serve(layer(&store, 256), "text/event-stream");
    let (tx, inner) = channel_body();
    slot.lock().unwrap().push(inner);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xb2", 1_000, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let reader = tokio::spawn(async move { read_until(&mut body, |_| false).await });
    tx.send(Ok(Bytes::from(events(0, 2)))).unwrap();
    tokio::time::sleep(2 * LEASE).await;
    tx.send(Ok(Bytes::from(events(2, 4)))).unwrap();
    drop(tx);
    let (text, error) = reader.await.unwrap();
    assert!(error.is_none());
    assert_eq!(data_events(&text), 4, "{text}");
    let state = state(store.inner(), "0xb2").await;
    assert_eq!((state.spent, state.reserved), (a(40), a(0)));
    assert!(store.count(Op::Renew) >= 5, "renewals went on after the failure");
}

/// Estimates two units an event as it streams, and settles on one an event at the end (a
/// provider's final count below the running estimate).
#[derive(Default)]
struct Reconciling(u64);

impl Meter for Reconciling {
    fn on_response(&mut self, _: &http::response::Parts) -> Usage {
        Usage::output(0)
    }
    fn on_data(&mut self, _: &[u8]) -> Usage {
        Usage::output(2 * self.0)
    }
    fn on_event(&mut self, _: &[u8]) -> Usage {
        self.0 += 1;
        Usage::output(2 * self.0)
    }
    fn on_end(&mut self) -> Usage {
        Usage::output(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn the_final_count_at_release_wins_over_higher_renewed_estimates() {
    let store = FaultyStore::new(MemoryStore::new());
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event())
        .meter(|_: &http::request::Parts, _: &Quote| Reconciling::default())
        .voucher_window(256);
    let (svc, slot) = serve(layer, "text/event-stream");
    let (tx, inner) = channel_body();
    slot.lock().unwrap().push(inner);
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xb3", 1_000, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let reader = tokio::spawn(async move { read_until(&mut body, |_| false).await });
    for i in 0..3 {
        tx.send(Ok(Bytes::from(events(i, i + 1)))).unwrap();
        tokio::time::sleep(LEASE / 2).await;
    }
    assert!(store.count(Op::Renew) >= 2, "timed renewals reported the running estimate");
    drop(tx);
    let (text, error) = reader.await.unwrap();
    assert!(error.is_none());
    assert_eq!(data_events(&text), 3);
    let state = state(store.inner(), "0xb3").await;
    assert_eq!((state.spent, state.reserved, state.units), (a(3 * PRICE), a(0), 3), "the release's figure");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_pauses_again_after_a_voucher_too_small_keeps_its_hold() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 2), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..8).map(|i| events(i, i + 1))));
    let c = challenge(svc.clone()).await;
    let response = svc.clone().oneshot(paid_get(&c, open_payload("0xa4", 40, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(data_events(&text), 4);
    // A voucher 5 short of the next event: the stream wakes, tries to grow (the store takes
    // a second to answer, and the watchdog looks meanwhile), and pauses again (its ask is
    // the same, so it says nothing new); the client reads for a few seconds.
    store.delay_nth(Op::Extend, store.count(Op::Extend) + 1, Duration::from_secs(1));
    let small = management("/", credential(&c, voucher_payload("0xa4", 45, 10_000)));
    assert_eq!(svc.clone().oneshot(small).await.unwrap().status(), StatusCode::NO_CONTENT);
    let read = tokio::time::timeout(Duration::from_secs(5), read_until(&mut body, |_| false)).await;
    assert!(read.is_err(), "still paused");

    tokio::time::sleep(3 * LEASE).await;
    let paused = state(store.inner(), "0xa4").await;
    assert_eq!((paused.spent, paused.reserved), (a(0), a(40)), "the second pause still holds the lease");

    let voucher = management("/", credential(&c, voucher_payload("0xa4", 10_000, 10_000)));
    assert_eq!(svc.clone().oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (rest, _) = read_until(&mut body, |_| false).await;
    assert_eq!(data_events(&rest), 4, "{rest}");
    let state = state(store.inner(), "0xa4").await;
    assert_eq!((state.spent, state.reserved), (a(80), a(0)));
}

/// Concurrent streams on one channel: a paused stream asks again only once its ask was
/// met. It asked anew whenever another stream's voucher moved the channel, so mppx's
/// concurrent streams posted about twice the vouchers they needed (2,543 for 9 streams in
/// `llm_proxy::concurrency`, 1,317 after).
#[tokio::test(start_paused = true)]
async fn a_paused_stream_does_not_ask_again_until_its_ask_is_met() {
    let store = FaultyStore::new(MemoryStore::new());
    let (svc, slot) = serve(layer(&store, 2), "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new((0..8).map(|i| events(i, i + 1))));
    slot.lock().unwrap().push(FramesBody::new((0..2).map(|i| events(i, i + 1))));
    let c = challenge(svc.clone()).await;
    let first = svc.clone().oneshot(paid_get(&c, open_payload("0xb1", 40, 10_000))).await.unwrap();
    let mut first = first.into_body();
    let (text, _) = read_until(&mut first, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(text.matches("payment-need-voucher").count(), 1);

    // Another stream pays 20 more and takes it: the channel moves, the first stream's ask
    // (for 70) is not met yet.
    let second = svc.clone().oneshot(paid_get(&c, voucher_payload("0xb1", 60, 10_000))).await.unwrap();
    let (other, _) = read_until(&mut second.into_body(), |_| false).await;
    assert_eq!(data_events(&other), 2, "{other}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (more, _) = kit::drain_ready(&mut first);
    assert_eq!(more.matches("payment-need-voucher").count(), 0, "asked again before its ask was met: {more}");

    // Its ask is met: it streams what that bought, and asks again when short.
    let voucher = management("/", credential(&c, voucher_payload("0xb1", 90, 10_000)));
    assert_eq!(svc.clone().oneshot(voucher).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (rest, _) = read_until(&mut first, |t| t.contains("payment-need-voucher")).await;
    assert!(data_events(&rest) >= 1, "{rest}");
}
