//! Money safety of the metering body (issue 7): what goes out is paid for before it goes
//! out, every lease is released exactly once whatever the client does, a paused stream
//! times out on the wall clock, and a closed channel stops its streams.

#[path = "money_metering/close.rs"]
mod close;
#[path = "money_metering/kit.rs"]
mod kit;
#[path = "money_metering/props.rs"]
mod props;
#[path = "money_metering/release.rs"]
mod release;
mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use kit::*;
use support::{FramesBody, TestMethod, channel_body, credential, events, management, open_payload, pay_payload};
use support::{REALM, SECRET, voucher_payload};
use tollgate::meter::{EventMeter, EventTooLarge, OpenAiTokenMeter};
use tollgate::store::MemoryStore;
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;

fn per_event(price: u128) -> Quote {
    Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(price))))
}

fn per_token() -> Quote {
    Quote::new(Price::tokens(Rate::FREE, Rate::per_unit(Amount::new(1))))
}

fn a(n: u128) -> Amount {
    Amount::new(n)
}

/// How many of `chunks` reached the client.
fn delivered(text: &str, chunks: &[String]) -> usize {
    chunks.iter().filter(|c| text.contains(c.as_str())).count()
}

/// The `requiredCumulative` of the last need-voucher event in `text`.
fn required(text: &str) -> u128 {
    let key = "\"requiredCumulative\":\"";
    let at = text.rfind(key).expect("a need-voucher event") + key.len();
    text[at..].split('"').next().unwrap().parse().unwrap()
}

// Scenario 4: usage above the estimate is never collected.

#[tokio::test]
async fn scenario_04_token_dense_text_is_paid_for_before_it_goes_out() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_token())
        .meter(OpenAiTokenMeter::default());
    let (svc, slot) = serve(layer, "text/event-stream");
    // Ten chunks of 11 bytes that the provider bills at 6 tokens each (token-dense text).
    let chunks: Vec<String> = (0..10).map(|i| chunk(&format!("ab cd ef g{i}"))).collect();
    slot.lock().unwrap().push(FramesBody::new([chunks.concat() + &usage_chunk(0, 60) + "data: [DONE]\n\n"]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0x4d", 30, 10_000)))).await.unwrap();
    let response = svc.oneshot(paid_get(&c, voucher_payload("0x4d", 30, 10_000))).await.unwrap();
    let mut body = response.into_body();
    // The client stops at the first need-voucher and goes away.
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    drop(body);
    settle().await;
    let state = state(&store, "0x4d").await;
    let got = delivered(&text, &chunks) as u128;
    assert!(got * 6 <= state.spent.get(), "{got} chunks of 6 tokens went out for {}", state.spent);
    assert_eq!(state.reserved, Amount::ZERO);
}

#[tokio::test]
async fn scenario_04_510_tokens_are_never_charged_as_10() {
    let store = MemoryStore::new();
    // The request asked for at most 512 completion tokens; the quote says so.
    let quote = per_token().max_output(512);
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(quote)
        .meter(OpenAiTokenMeter::default());
    let (svc, slot) = serve(layer, "text/event-stream");
    let chunks: Vec<String> = ["The", " answer", " is", " 42", "."].iter().map(|t| chunk(t)).collect();
    let stream = chunks.concat() + &usage_chunk(0, 510) + "data: [DONE]\n\n";
    slot.lock().unwrap().push(FramesBody::new([stream.clone()]));
    slot.lock().unwrap().push(FramesBody::new([stream.clone()]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0x510", 30, 10_000)))).await.unwrap();

    // A client that stops reading at the need-voucher has paid for everything it got.
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0x510", 30, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    drop(body);
    settle().await;
    let after_walk_away = state(&store, "0x510").await;
    let got = delivered(&text, &chunks);
    assert!(got == 0 || after_walk_away.spent >= a(510), "{got} chunks went out for {}", after_walk_away.spent);
    assert_eq!(after_walk_away.reserved, Amount::ZERO);

    // A client that pays as asked gets everything and is charged the provider's count.
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0x510", 30, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (_, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    let more = svc.clone().oneshot(management("/", credential(&c, voucher_payload("0x510", 2_000, 10_000)))).await;
    assert_eq!(more.unwrap().status(), StatusCode::NO_CONTENT);
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert_eq!(delivered(&text, &chunks), 5, "{text}");
    assert!(text.contains("\"completion_tokens\":510"));
    let state = state(&store, "0x510").await;
    assert_eq!((state.spent.get() - after_walk_away.spent.get(), state.reserved), (510, Amount::ZERO));
}

#[tokio::test]
async fn scenario_04_a_one_shot_stream_never_delivers_past_its_quote() {
    let store = MemoryStore::new();
    let quote = per_token().max_output(512);
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(quote)
        .meter(OpenAiTokenMeter::default());
    let (svc, slot) = serve(layer, "text/event-stream");
    let chunks: Vec<String> = ["The", " answer", " is", " 42", "."].iter().map(|t| chunk(t)).collect();
    slot.lock().unwrap().push(FramesBody::new([chunks.concat() + &usage_chunk(0, 510) + "data: [DONE]\n\n"]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("once", 100))).await.unwrap();
    let (text, error) = read_until(&mut response.into_body(), |_| false).await;
    assert!(error.is_none());
    assert_eq!(delivered(&text, &chunks), 0, "100 paid cannot cover 512 possible tokens: {text}");
    assert!(text.contains("\"finish_reason\":\"length\""));
    let state = state(&store, "pay:once").await;
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO));
}

#[tokio::test]
async fn scenario_04_hidden_reasoning_tokens_are_covered_before_the_answer() {
    let store = MemoryStore::new();
    // No cap in the quote: the seller allows for up to 400 reasoning tokens per response.
    let meter = OpenAiTokenMeter::default().hidden_output(400);
    let layer =
        PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)).pricing(per_token()).meter(meter);
    let (svc, slot) = serve(layer, "text/event-stream");
    let answer = chunk("Paris.");
    // 350 completion tokens billed, 348 of them reasoning the client never sees.
    let usage = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":350,\"completion_tokens_details\":{\"reasoning_tokens\":348}}}\n\n";
    let stream = answer.clone() + usage + "data: [DONE]\n\n";
    slot.lock().unwrap().push(FramesBody::new([stream.clone()]));
    slot.lock().unwrap().push(FramesBody::new([stream]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0x4e", 50, 10_000)))).await.unwrap();

    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0x4e", 50, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert!(!text.contains("Paris"), "the answer waits for the reasoning allowance: {text}");
    assert!(required(&text) >= 406, "answer (6) + allowance (400): {text}");
    drop(body);
    settle().await;
    assert_eq!((state(&store, "0x4e").await.spent, state(&store, "0x4e").await.reserved), (a(0), a(0)));

    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0x4e", 50, 10_000))).await.unwrap();
    let mut body = response.into_body();
    read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    svc.clone().oneshot(management("/", credential(&c, voucher_payload("0x4e", 500, 10_000)))).await.unwrap();
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none() && text.contains("Paris") && text.contains("\"completion_tokens\":350"), "{text}");
    let state = state(&store, "0x4e").await;
    assert_eq!((state.spent, state.reserved), (a(350), Amount::ZERO), "reconciled down to the provider's count");
}

#[tokio::test]
async fn scenario_04_usage_above_what_was_covered_is_held_until_paid() {
    let store = MemoryStore::new();
    // No cap, no allowance: only the final usage can show hidden tokens, so it waits for them.
    let meter = OpenAiTokenMeter::default().hidden_output(0);
    let layer =
        PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)).pricing(per_token()).meter(meter);
    let (svc, slot) = serve(layer, "text/event-stream");
    let chunks: Vec<String> = ["The", " answer"].iter().map(|t| chunk(t)).collect();
    let usage = usage_chunk(0, 120);
    slot.lock().unwrap().push(FramesBody::new([chunks.concat() + &usage + "data: [DONE]\n\n"]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0x4f", 30, 10_000)))).await.unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0x4f", 30, 10_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    assert_eq!(delivered(&text, &chunks), 2);
    assert!(!text.contains("\"usage\""), "the usage chunk waits for its cost: {text}");
    assert!(required(&text) >= 120, "{text}");
    svc.clone().oneshot(management("/", credential(&c, voucher_payload("0x4f", 1_000, 10_000)))).await.unwrap();
    let (text, _) = read_until(&mut body, |_| false).await;
    assert!(text.starts_with(&usage), "{text}");
    assert_eq!(state(&store, "0x4f").await.spent, a(120));
}

// Scenario 10 (the metering part): an SSE event that never ends grows the buffer forever.

#[tokio::test(start_paused = true)]
async fn scenario_10_an_event_over_the_limit_ends_the_stream_as_an_upstream_error() {
    for (limit, piece) in [(Some(4 << 10), 1 << 10), (None, 64 << 10)] {
        let store = MemoryStore::new();
        let mut layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
            .pricing(per_event(10))
            .meter(EventMeter::new());
        if let Some(limit) = limit {
            layer = layer.max_event_size(limit);
        }
        let (svc, slot) = serve(layer, "text/event-stream");
        let (tx, body) = channel_body();
        slot.lock().unwrap().push(body);
        let c = challenge(svc.clone()).await;
        let nonce = format!("big{piece}");
        let response = svc.oneshot(paid_get(&c, pay_payload(&nonce, 1_000))).await.unwrap();
        tx.send(Ok(Bytes::from(events(0, 2) + "data: "))).unwrap();
        // An upstream that never ends its event: 2 MiB and counting; the sender stays open.
        for _ in 0..(2 << 20) / piece {
            let _ = tx.send(Ok(Bytes::from(vec![b'x'; piece])));
        }
        let mut body = response.into_body();
        let read = read_until(&mut body, |_| false);
        let (text, error) = tokio::time::timeout(Duration::from_secs(600), read).await.expect("the stream ends");
        let error = error.expect("ends as an upstream error");
        assert!(error.downcast_ref::<EventTooLarge>().is_some(), "{error}");
        assert_eq!(text, events(0, 2), "limit {limit:?}");
        let state = state(&store, &format!("pay:{nonce}")).await;
        assert_eq!((state.spent, state.reserved), (a(20), Amount::ZERO), "limit {limit:?}");
        drop(tx);
    }
}
