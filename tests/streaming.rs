//! The metering body through the public API: exact stops, pause and resume on the same
//! connection, early drops and upstream errors charged only for what was delivered.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::*;
use tollgate::meter::{ByteMeter, EventMeter, MakeMeter, OpenAiTokenMeter};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, BoxError, BudgetExhausted, PaymentLayer, Price, Quote, Rate, Secret, Usage};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Slot<B> = Arc<Mutex<Vec<B>>>;

/// A paid service whose inner handler answers with the next body from `slot`.
fn streaming<B, MM>(
    store: MemoryStore,
    quote: Quote,
    meter: MM,
    content_type: &'static str,
    tune: impl FnOnce(PaymentLayer<TestMethod, MemoryStore, Quote, MM>) -> PaymentLayer<TestMethod, MemoryStore, Quote, MM>,
) -> (
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send,
    Slot<B>,
)
where
    B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    MM: MakeMeter,
{
    let slot: Slot<B> = Arc::default();
    let bodies = slot.clone();
    let layer = tune(PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET)).pricing(quote).meter(meter));
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            let body = bodies.lock().unwrap().remove(0);
            async move {
                let mut response = Response::new(body);
                response.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        },
    ));
    (svc, slot)
}

async fn challenge(
    svc: impl Service<Request<Full<Bytes>>, Response = Response<impl Body>, Error = Infallible>,
) -> Challenge {
    let response = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    challenge_of(&response)
}

fn paid_get(challenge: &Challenge, payload: Value) -> Request<Full<Bytes>> {
    Request::get("/").header(header::AUTHORIZATION, credential(challenge, payload)).body(Full::default()).unwrap()
}

/// Reads data frames until `stop` says so or the body ends; returns the text and how it ended.
async fn read_until<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
    body: &mut B,
    stop: impl Fn(&str) -> bool,
) -> (String, Option<BoxError>) {
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(std::str::from_utf8(&data).unwrap());
                }
                if stop(&text) {
                    break;
                }
            }
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

fn per_event(price: u128) -> Quote {
    Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(price))))
}

fn receipt_json(text: &str) -> Value {
    let at = text.rfind("event: payment-receipt\ndata: ").expect("the stream ends with a receipt event");
    let data = &text[at + "event: payment-receipt\ndata: ".len()..];
    serde_json::from_str(data.trim_end()).unwrap()
}

#[tokio::test]
async fn one_shot_sse_stops_at_the_exact_event_and_charges_it() {
    let store = MemoryStore::new();
    let (svc, slot) = streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| l);
    slot.lock().unwrap().push(FramesBody::new([events(0, 10)]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("sse1", 30))).await.unwrap();
    assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
    assert!(!response.headers().contains_key("payment-receipt"), "SSE receipts come as the last event");
    let mut body = response.into_body();
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none(), "an SSE stream ends cleanly");
    assert!(text.starts_with(&events(0, 3)), "{text}");
    assert!(!text.contains("data: 3\n"), "the unpaid event is never forwarded: {text}");
    let receipt = receipt_json(&text);
    assert_eq!((receipt["spent"].as_str(), receipt["units"].as_u64()), (Some("30"), Some(3)));
    let state = store.load(&ChannelId::new("pay:sse1")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(30), Amount::ZERO));
}

#[tokio::test]
async fn one_shot_openai_stream_ends_with_finish_reason_length_and_done() {
    let store = MemoryStore::new();
    let quote = Quote::new(Price::tokens(Rate::FREE, Rate::per_unit(Amount::new(1))));
    let (svc, slot) = streaming(store.clone(), quote, OpenAiTokenMeter::default(), "text/event-stream", |l| l);
    let chunk = |text: &str| {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let stream: String = ["one", " two", " three", " four", " five"].iter().map(|t| chunk(t)).collect();
    slot.lock().unwrap().push(FramesBody::new([stream + "data: [DONE]\n\n"]));
    let c = challenge(svc.clone()).await;
    // Text counts one token per byte while it streams (an upper bound): 13 pays for three.
    let response = svc.oneshot(paid_get(&c, pay_payload("oa1", 13))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert!(error.is_none());
    assert!(text.contains("\"one\"") && text.contains("\" three\""), "{text}");
    assert!(!text.contains("four"), "{text}");
    let ending = text.find("\"finish_reason\":\"length\"").expect("a clean finish chunk");
    let done = text.find("data: [DONE]").expect("[DONE] follows");
    assert!(ending < done && done < text.find("payment-receipt").unwrap());
    assert_eq!(store.load(&ChannelId::new("pay:oa1")).await.unwrap().unwrap().spent, Amount::new(13));
}

#[tokio::test]
async fn paused_session_resumes_on_the_same_connection_when_a_voucher_lands() {
    let store = MemoryStore::new();
    let (svc, slot) =
        streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| l.voucher_window(5));
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let c = challenge(svc.clone()).await;
    let opened = svc.clone().oneshot(management("/", credential(&c, open_payload("0xabc", 30, 10_000)))).await.unwrap();
    assert_eq!(opened.status(), StatusCode::NO_CONTENT);
    tx.send(Ok(Bytes::from(events(0, 10)))).unwrap();

    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xabc", 30, 10_000))).await.unwrap();
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(
        text,
        format!(
            "{}event: payment-need-voucher\ndata: {{\"channelId\":\"0xabc\",\"requiredCumulative\":\"90\",\"acceptedCumulative\":\"30\",\"deposit\":\"10000\"}}\n\n",
            events(0, 3)
        )
    );
    // The voucher arrives as a bodiless POST; the paused stream picks it up.
    let voucher =
        svc.clone().oneshot(management("/", credential(&c, voucher_payload("0xabc", 90, 10_000)))).await.unwrap();
    assert_eq!(voucher.status(), StatusCode::NO_CONTENT);
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert!(text.starts_with(&events(3, 9)), "{text}");
    assert!(text.contains("\"requiredCumulative\":\"150\""), "{text}");
    svc.clone().oneshot(management("/", credential(&c, voucher_payload("0xabc", 150, 10_000)))).await.unwrap();
    drop(tx);
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert!(text.starts_with(&events(9, 10)), "{text}");
    let receipt = receipt_json(&text);
    assert_eq!(receipt["spent"], "100");
    assert_eq!(receipt["acceptedCumulative"], "150");
    let state = store.load(&ChannelId::new("0xabc")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved, state.units), (Amount::new(100), Amount::ZERO, 10));
}

#[tokio::test(start_paused = true)]
async fn paused_stream_sends_keep_alives_and_ends_cleanly_at_the_deadline() {
    let store = MemoryStore::new();
    let (svc, slot) = streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| {
        l.pause_deadline(Duration::from_secs(60)).keep_alive(Duration::from_secs(15))
    });
    slot.lock().unwrap().push(FramesBody::new([events(0, 5)]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xd1", 20, 1_000)))).await.unwrap();
    let response = svc.oneshot(paid_get(&c, voucher_payload("0xd1", 20, 1_000))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert!(error.is_none());
    assert_eq!(text.matches("payment-need-voucher").count(), 1, "asked once: {text}");
    assert_eq!(text.matches(": keep-alive\n\n").count(), 3, "{text}");
    assert!(!text.contains("data: 2\n"));
    assert_eq!(receipt_json(&text)["spent"], "20");
    let state = store.load(&ChannelId::new("0xd1")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(20), Amount::ZERO));
}

#[tokio::test]
async fn client_gone_mid_stream_commits_only_forwarded_events() {
    let store = MemoryStore::new();
    let (svc, slot) = streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| l);
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("gone", 1_000))).await.unwrap();
    let mut body = response.into_body();
    for i in 0..2 {
        tx.send(Ok(Bytes::from(events(i, i + 1)))).unwrap();
        body.frame().await.unwrap().unwrap();
    }
    tx.send(Ok(Bytes::from(events(2, 3)))).unwrap(); // produced but never read
    drop(body);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let state = store.load(&ChannelId::new("pay:gone")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved, state.units), (Amount::new(20), Amount::ZERO, 2));
}

#[tokio::test]
async fn upstream_error_mid_stream_is_charged_only_for_delivered_events() {
    let store = MemoryStore::new();
    let (svc, slot) = streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| l);
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    tx.send(Ok(Bytes::from(events(0, 2)))).unwrap();
    tx.send(Ok(Bytes::from("data: half an ev"))).unwrap();
    tx.send(Err("upstream reset")).unwrap();
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("err", 1_000))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert_eq!(text, events(0, 2), "no receipt after an upstream failure, no half event");
    assert_eq!(error.unwrap().to_string(), "upstream reset");
    let state = store.load(&ChannelId::new("pay:err")).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(20), Amount::ZERO));
}

#[tokio::test]
async fn plain_body_ends_with_budget_exhausted_error() {
    let store = MemoryStore::new();
    let quote = Quote::new(Price::per_unit("byte", Rate::per_unit(Amount::new(1))));
    let (svc, slot) = streaming(store.clone(), quote, ByteMeter::default(), "application/octet-stream", |l| l);
    slot.lock().unwrap().push(FramesBody::new(["hello", "world", "!!!"]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("bytes", 10))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert_eq!(text, "helloworld");
    assert!(error.unwrap().downcast_ref::<BudgetExhausted>().is_some());
    assert_eq!(store.load(&ChannelId::new("pay:bytes")).await.unwrap().unwrap().spent, Amount::new(10));
}

#[tokio::test]
async fn events_split_anywhere_pass_through_byte_for_byte() {
    let text =
        "data: a\r\n\r\n: comment\n\nevent: x\ndata: b\rdata: c\r\r".to_string() + &events(0, 3) + "data: [DONE]\n\n";
    for cut in 1..text.len() - 1 {
        let store = MemoryStore::new();
        let (svc, slot) = streaming(store.clone(), per_event(1), EventMeter::default(), "text/event-stream", |l| l);
        let (a, b) = text.split_at(cut);
        slot.lock().unwrap().push(FramesBody::new([a.to_string(), b.to_string()]));
        let c = challenge(svc.clone()).await;
        let response = svc.oneshot(paid_get(&c, pay_payload(&format!("cut{cut}"), 100))).await.unwrap();
        let (out, error) = read_until(&mut response.into_body(), |_| false).await;
        assert!(error.is_none());
        let receipt_at = out.find("event: payment-receipt").unwrap();
        assert_eq!(&out[..receipt_at], text, "cut at {cut}");
        // a, b+c, 0, 1, 2: five events with data; comments and [DONE] are free.
        assert_eq!(receipt_json(&out)["spent"], "5", "cut at {cut}");
    }
}

#[tokio::test]
async fn openai_usage_reconciles_the_charge_with_input_priced_apart() {
    let store = MemoryStore::new();
    let price = Price::tokens(Rate::per_unit(Amount::new(1)), Rate::per_unit(Amount::new(2)));
    let quote = Quote::new(price).upfront(Usage { input: 5, output: 0 });
    let (svc, slot) = streaming(store.clone(), quote, OpenAiTokenMeter::default(), "text/event-stream", |l| l);
    let stream = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n",
        "data: [DONE]\n\n"
    );
    slot.lock().unwrap().push(FramesBody::new([stream]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("usage", 1_000))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert!(error.is_none());
    assert!(text.starts_with(stream));
    // 7 prompt tokens × 1 + 3 completion tokens × 2, not the estimate.
    assert_eq!(receipt_json(&text)["spent"], "13");
    assert_eq!(store.load(&ChannelId::new("pay:usage")).await.unwrap().unwrap().spent, Amount::new(13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_channel_never_overspend() {
    let store = MemoryStore::new();
    let (svc, slot) = streaming(store.clone(), per_event(10), EventMeter::default(), "text/event-stream", |l| {
        l.voucher_window(1).pause_deadline(Duration::from_millis(200))
    });
    let mut feeds = Vec::new();
    for _ in 0..8 {
        let (tx, body) = channel_body();
        slot.lock().unwrap().push(body);
        feeds.push(tx);
    }
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xshared", 100, 100)))).await.unwrap();
    // All eight requests are admitted (or refused) before any byte streams.
    let mut admitted = Vec::new();
    for _ in 0..8 {
        let svc = svc.clone();
        let request = paid_get(&c, voucher_payload("0xshared", 100, 100));
        admitted.push(tokio::spawn(async move { svc.oneshot(request).await.unwrap() }));
    }
    let mut readers = Vec::new();
    for task in admitted {
        let response = task.await.unwrap();
        if response.status() != StatusCode::OK {
            assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
            continue;
        }
        readers.push(tokio::spawn(async move {
            let (text, _) = read_until(&mut response.into_body(), |_| false).await;
            (0..5).filter(|i| text.contains(&format!("data: {i}\n\n"))).count()
        }));
    }
    assert_eq!(readers.len(), 5, "each admitted stream leased two events' worth");
    for tx in &feeds {
        let _ = tx.send(Ok(Bytes::from(events(0, 5))));
    }
    drop(feeds);
    let mut forwarded = 0;
    for reader in readers {
        forwarded += reader.await.unwrap();
    }
    let state = store.load(&ChannelId::new("0xshared")).await.unwrap().unwrap();
    assert_eq!(state.reserved, Amount::ZERO);
    assert_eq!(state.spent, Amount::new(10 * forwarded as u128), "charged exactly what was forwarded");
    assert_eq!(forwarded, 10, "the whole paid headroom was delivered, no more: {state:?}");
}
