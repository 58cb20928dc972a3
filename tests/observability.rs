//! The `tracing` span and events and the `metrics` series of paid requests: a `402`, a
//! refused credential, a one-shot stream cut off by its budget, and a session stream that
//! pauses twice for vouchers, each observed through a subscriber or recorder installed for
//! the test's thread only.
#![cfg(all(feature = "tracing", feature = "metrics"))]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use serde_json::Value;
use support::*;
use tollgate::meter::EventMeter;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, BoxError, PaymentLayer, Price, Quote, Rate, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Bodies = Arc<Mutex<Vec<ChannelBody>>>;

/// Ten events at 10 each, the response bodies fed by the test.
fn service(
    store: MemoryStore,
) -> (
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send,
    Bodies,
) {
    let bodies: Bodies = Arc::default();
    let slot = bodies.clone();
    let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(10))));
    let layer = PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET))
        .pricing(quote)
        .meter(EventMeter::default())
        .voucher_window(5);
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(move |_: Request<tollgate::RequestBody<_>>| {
        let body = slot.lock().unwrap().remove(0);
        async move {
            let mut response = Response::new(body);
            response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    }));
    (svc, bodies)
}

fn paid_get(challenge: &Challenge, payload: Value) -> Request<Full<Bytes>> {
    Request::get("/").header(header::AUTHORIZATION, credential(challenge, payload)).body(Full::default()).unwrap()
}

async fn read_until<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B, stop: &str) -> String {
    let mut text = String::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        if !stop.is_empty() && text.contains(stop) {
            break;
        }
    }
    text
}

/// A `402`, a credential with a bad signature, a one-shot payment of 30 for a 10-event
/// stream (cut off after 3), and a session stream of 10 events that pauses for two vouchers.
async fn scenario() {
    let store = MemoryStore::new();
    let (svc, bodies) = service(store.clone());
    let unpaid = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(unpaid.status(), StatusCode::PAYMENT_REQUIRED);
    let c = challenge_of(&unpaid);

    let mut forged = pay_payload("bad", 30);
    forged["signature"] = "no".into();
    let refused = svc.clone().oneshot(paid_get(&c, forged)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem(refused).await["type"], problem_type("session/invalid-signature"));

    let (tx, body) = channel_body();
    bodies.lock().unwrap().push(body);
    tx.send(Ok(Bytes::from(events(0, 10)))).unwrap();
    let response = svc.clone().oneshot(paid_get(&c, pay_payload("once", 30))).await.unwrap();
    let text = read_until(&mut response.into_body(), "").await;
    assert!(text.starts_with(&events(0, 3)) && !text.contains("data: 3\n"), "{text}");
    let state = store.load(&ChannelId::new("pay:once")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.units, state.reserved), (Amount::new(30), 3, Amount::ZERO));

    let opened = svc.clone().oneshot(management("/", credential(&c, open_payload("0xs", 30, 10_000)))).await.unwrap();
    assert_eq!(opened.status(), StatusCode::NO_CONTENT);
    let (tx, body) = channel_body();
    bodies.lock().unwrap().push(body);
    tx.send(Ok(Bytes::from(events(0, 10)))).unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xs", 30, 10_000))).await.unwrap();
    let mut body = response.into_body();
    read_until(&mut body, "payment-need-voucher").await;
    for cumulative in [90, 150] {
        let voucher = credential(&c, voucher_payload("0xs", cumulative, 10_000));
        assert_eq!(svc.clone().oneshot(management("/", voucher)).await.unwrap().status(), StatusCode::NO_CONTENT);
        if cumulative == 90 {
            read_until(&mut body, "payment-need-voucher").await;
        }
    }
    drop(tx);
    let text = read_until(&mut body, "").await;
    assert!(text.contains("payment-receipt"), "{text}");
    let state = store.load(&ChannelId::new("0xs")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.units, state.reserved), (Amount::new(100), 10, Amount::ZERO));
}

/// Held by each test: `tracing` caches which callsites are enabled process-wide, and a
/// thread-local subscriber coming and going on another thread meanwhile can leave a
/// callsite disabled for this one.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the scenario on a runtime of this thread, so thread-local observers see all of it.
fn run_scenario() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(scenario());
}

/// A span or event as `name field=value …`, in the order they happened.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Fields {
    fn of(record: impl FnOnce(&mut Fields)) -> String {
        let mut fields = Fields(BTreeMap::new());
        record(&mut fields);
        fields.0.iter().map(|(k, v)| format!(" {k}={v}")).collect()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let fields = Fields::of(|f| attrs.record(f));
        self.0.lock().unwrap().push(format!("span {}{fields}", attrs.metadata().name()));
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let fields = Fields::of(|f| values.record(f));
        self.0.lock().unwrap().push(format!("record{fields}"));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let parent = ctx.event_span(event).map_or("-", |span| span.name());
        let fields = Fields::of(|f| event.record(f));
        self.0.lock().unwrap().push(format!("event in {parent}:{fields}"));
    }
}

#[test]
fn a_paid_stream_has_one_span_with_its_payment_and_an_event_per_money_moment() {
    let _serial = serial();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    tracing::subscriber::with_default(subscriber, run_scenario);
    let lines = captured.0.lock().unwrap().clone();
    let all = lines.join("\n");
    let price = "in=0/1 out=10/1 unit=event";
    let spans: Vec<_> = lines.iter().filter(|l| l.starts_with("span ")).collect();
    assert_eq!(
        spans,
        [
            &format!("span tollgate.payment channel=pay:once intent=session method=test payer=tester price={price}"),
            &format!("span tollgate.payment channel=0xs intent=session method=test payer=tester price={price}"),
        ],
        "one span per paid request, none for the 402 nor the management requests:\n{all}"
    );
    let outcomes: Vec<_> = lines.iter().filter(|l| l.starts_with("record")).collect();
    assert_eq!(outcomes, ["record outcome=cutoff", "record outcome=delivered"], "{all}");

    // Outside any span: the challenges (the 402 and the refusal's fresh one) and the refusal.
    let unspanned: Vec<_> = lines.iter().filter(|l| l.starts_with("event in -")).collect();
    assert_eq!(
        unspanned,
        [
            "event in -: message=challenge issued problem=payment-required",
            "event in -: message=challenge issued problem=session/invalid-signature",
            "event in -: message=credential refused problem=session/invalid-signature",
        ],
        "{all}"
    );
    let spanned: Vec<_> =
        lines.iter().filter_map(|l| l.strip_prefix("event in tollgate.payment: ")).collect::<Vec<_>>();
    assert_eq!(
        spanned,
        [
            // One-shot: reserved one event up to a window (the store grants what was paid),
            // cut off after 3 events, released 30 for 3.
            "least=10 message=reserve most=60",
            "message=cutoff",
            "message=release units=3 used=30",
            // Session: reserve, two pauses each answered by a voucher, then the release.
            "least=10 message=reserve most=60",
            "message=pause for voucher required=90",
            "message=voucher accepted",
            "message=resume",
            "message=pause for voucher required=150",
            "message=voucher accepted",
            "message=resume",
            "message=release units=10 used=100",
        ],
        "{all}"
    );
}

fn series(
    snapshot: Vec<(CompositeKey, Option<metrics::Unit>, Option<metrics::SharedString>, DebugValue)>,
) -> Vec<String> {
    let mut lines: Vec<String> = snapshot
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let value = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n.to_string(),
                (MetricKind::Histogram, DebugValue::Histogram(values)) => {
                    format!("{:?}", values.iter().map(|v| v.into_inner()).collect::<Vec<_>>())
                }
                (_, other) => format!("{other:?}"),
            };
            format!("{}{{{}}} {value}", key.name(), labels.join(","))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn counters_count_the_402s_refusals_payments_charges_pauses_and_cutoffs() {
    let _serial = serial();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, run_scenario);
    let lines = series(snapshotter.snapshot().into_vec());
    // Pause time is a duration: only that one was recorded is asserted.
    let (paused, lines): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.starts_with("tollgate_pause_seconds"));
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].matches(',').count(), 1, "two pauses timed: {paused:?}");
    assert_eq!(
        lines,
        [
            "tollgate_base_units_charged_total{method=test} 130",
            "tollgate_challenges_total{} 2",
            "tollgate_credentials_accepted_total{method=test} 2",
            "tollgate_credentials_refused_total{problem=session/invalid-signature} 1",
            "tollgate_cutoffs_total{method=test} 1",
            "tollgate_paid_requests_total{method=test,intent=session} 2",
            "tollgate_streams_paused_total{method=test} 1",
            "tollgate_units_charged_total{method=test} 13",
            "tollgate_vouchers_per_stream{method=test} [0.0, 2.0]",
        ]
    );
}

/// A one-shot payment whose settlement (after the response, as x402's) fails on chain.
struct Unsettled;

impl tollgate::method::PaymentMethod for Unsettled {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, quote: &Quote) -> Vec<tollgate::method::Offer<Value>> {
        let amount = quote.price.output.unit_price().to_string();
        vec![tollgate::method::Offer::mpp("chain", "charge", serde_json::json!({ "amount": amount }))]
    }

    async fn verify<St: ChannelStore>(
        &self,
        _: tollgate::method::Verify<'_, Value, Value>,
        store: &St,
    ) -> Result<tollgate::method::Verified, tollgate::PaymentError> {
        use tollgate::method::{Grant, Proof, Renewal, Verified};
        let channel = ChannelId::new("claim");
        let unavailable = |_| tollgate::PaymentError::new(tollgate::PaymentErrorKind::Unavailable, "store");
        store.create(&channel, Amount::new(10), Amount::new(10)).await.map_err(unavailable)?;
        let receipt = tollgate::wire::mpp::Receipt::new("chain", "claim");
        let failed = || {
            let error = tollgate::PaymentError::new(tollgate::PaymentErrorKind::VerificationFailed, "reverted");
            Proof::failed(error, serde_json::json!({ "success": false }))
        };
        let grant = Grant::new(channel, Renewal::Never, receipt)
            .proven_by(Proof::pending(serde_json::json!({})), move |_| async move { failed() });
        Ok(Verified::Serve(grant))
    }
}

/// A plain answer paid by a payment that does not settle: nothing is delivered, and the
/// settlement shows as submitted, confirmed `failed`, a chain error and one lag sample.
async fn unsettled() {
    let quote = Quote::new(Price::per_request(Amount::new(10)));
    let layer = PaymentLayer::new(Unsettled, MemoryStore::new(), REALM, Secret::new(SECRET)).pricing(quote);
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: Request<tollgate::RequestBody<_>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"the paid answer"))))
    }));
    let c = challenge_of(&svc.clone().oneshot(get("/")).await.unwrap());
    let response = svc.oneshot(paid_get(&c, serde_json::json!({}))).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.windows(4).any(|w| w == b"paid"), "nothing delivered");
}

#[test]
fn a_settlement_that_fails_is_an_event_a_chain_error_and_a_lag_sample() {
    let _serial = serial();
    let captured = Captured::default();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(unsettled())
        })
    });
    let lines = captured.0.lock().unwrap().clone();
    let spanned: Vec<_> = lines.iter().filter_map(|l| l.strip_prefix("event in tollgate.payment: ")).collect();
    assert_eq!(
        spanned,
        [
            // The store grants the 10 paid of the window asked for.
            "least=10 message=reserve most=2570",
            "message=release units=1 used=10",
            "message=settlement submitted",
            "message=settlement confirmed status=failed",
        ],
        "{}",
        lines.join("\n")
    );
    assert!(lines.contains(&"record outcome=refused".to_owned()), "{}", lines.join("\n"));
    let series = series(snapshotter.snapshot().into_vec());
    assert!(series.contains(&"tollgate_chain_errors_total{op=settle} 1".to_owned()), "{series:?}");
    let lag: Vec<_> =
        series.iter().filter(|l| l.starts_with("tollgate_settlement_lag_seconds{method=chain} [")).collect();
    assert_eq!(lag.len(), 1, "{series:?}");
    assert_eq!(lag[0].matches(',').count(), 0, "one sample: {series:?}");
}
