//! Scenarios 9, 13 and 14: every lease is released exactly once, whenever and wherever the
//! body is dropped, and a paused stream releases at its deadline even if nobody polls it.

use std::time::Duration;

use bytes::Bytes;
use tollgate::meter::{EventMeter, OpenAiTokenMeter};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Secret};
use tower::ServiceExt;

use crate::kit::*;
use crate::support::{FramesBody, TestMethod, channel_body, credential, events, management, open_payload};
use crate::support::{REALM, SECRET, pay_payload, voucher_payload};
use crate::{a, per_event, per_token};

// Scenario 9: a release is lost when the body is dropped right after the cut-off frame.

#[tokio::test]
async fn scenario_09_a_drop_right_after_the_cut_off_frame_still_releases() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_token())
        .meter(OpenAiTokenMeter::default());
    let (svc, slot) = serve(layer, "text/event-stream");
    let stream: String = ["one", " two", " three", " four", " five"].iter().map(|t| chunk(t)).collect();
    slot.lock().unwrap().push(FramesBody::new([stream]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("cut", 3))).await.unwrap();
    let mut body = response.into_body();
    // The client reads up to the clean ending the cut-off writes, and hangs up there.
    let (text, _) = read_until(&mut body, |t| t.contains("data: [DONE]")).await;
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    drop(body);
    settle().await;
    let state = state(&store, "pay:cut").await;
    assert_eq!((state.spent, state.reserved), (a(3), Amount::ZERO));
}

#[tokio::test(start_paused = true)]
async fn scenario_09_a_drop_right_after_the_deadline_cut_off_still_releases() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_token())
        .meter(OpenAiTokenMeter::default())
        .pause_deadline(Duration::from_secs(60));
    let (svc, slot) = serve(layer, "text/event-stream");
    let stream: String = ["one", " two", " three", " four", " five"].iter().map(|t| chunk(t)).collect();
    slot.lock().unwrap().push(FramesBody::new([stream]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0x9d", 3, 1_000)))).await.unwrap();
    let response = svc.oneshot(paid_get(&c, voucher_payload("0x9d", 3, 1_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, _) = read_until(&mut body, |t| t.contains("data: [DONE]")).await;
    assert!(text.contains("payment-need-voucher") && text.contains("\"finish_reason\":\"length\""), "{text}");
    drop(body);
    settle().await;
    let state = state(&store, "0x9d").await;
    assert_eq!((state.spent, state.reserved), (a(3), Amount::ZERO));
}

#[tokio::test]
async fn scenario_09_a_drop_after_an_upstream_error_still_releases() {
    let store = SlowStore::default();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new());
    let (svc, slot) = serve(layer, "text/event-stream");
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    tx.send(Ok(Bytes::from(events(0, 2)))).unwrap();
    tx.send(Err("upstream reset")).unwrap();
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("err", 1_000))).await.unwrap();
    let mut body = response.into_body();
    // The error frame waits for the release, which takes a turn: the client is gone by then.
    let (text, ended) = drain_ready(&mut body);
    assert_eq!((text.as_str(), ended), (events(0, 2).as_str(), false));
    drop(body);
    settle().await;
    let state = state(&store, "pay:err").await;
    assert_eq!((state.spent, state.reserved, store.releases()), (a(20), Amount::ZERO, 1));
}

#[tokio::test]
async fn scenario_09_a_drop_after_the_normal_end_still_releases() {
    let store = SlowStore::default();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new());
    let (svc, slot) = serve(layer, "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new([events(0, 3)]));
    let c = challenge(svc.clone()).await;
    let response = svc.oneshot(paid_get(&c, pay_payload("end", 1_000))).await.unwrap();
    let mut body = response.into_body();
    let (text, ended) = drain_ready(&mut body);
    assert_eq!((text.as_str(), ended), (events(0, 3).as_str(), false), "the receipt waits for the release");
    drop(body);
    settle().await;
    let state = state(&store, "pay:end").await;
    assert_eq!((state.spent, state.reserved, store.releases()), (a(30), Amount::ZERO, 1));
}

#[tokio::test]
async fn scenario_09_the_settled_hook_runs_exactly_once_on_every_path() {
    let store = SlowStore::default();
    let method = Hooked::default();
    let layer = PaymentLayer::new(method.clone(), store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_token())
        .meter(OpenAiTokenMeter::default());
    let (svc, slot) = serve(layer, "text/event-stream");
    let stream: String = ["one", " two", " three"].iter().map(|t| chunk(t)).collect();
    let c = challenge(svc.clone()).await;
    let mut expected = Vec::new();

    let feed = |text: &str| {
        let (tx, body) = channel_body();
        tx.send(Ok(Bytes::from(text.to_string()))).unwrap();
        slot.lock().unwrap().push(body);
    };
    // Read to the end.
    feed(&stream);
    let response = svc.clone().oneshot(paid_get(&c, pay_payload("h1", 1_000))).await.unwrap();
    read_until(&mut response.into_body(), |_| false).await;
    expected.push(("pay:h1", 13));
    // Dropped while the release is under way.
    feed(&stream);
    let response = svc.clone().oneshot(paid_get(&c, pay_payload("h2", 1_000))).await.unwrap();
    drain_ready(&mut response.into_body());
    expected.push(("pay:h2", 13));
    // Dropped right after the cut-off frame.
    feed(&stream);
    let response = svc.clone().oneshot(paid_get(&c, pay_payload("h3", 4))).await.unwrap();
    read_until(&mut response.into_body(), |t| t.contains("data: [DONE]")).await;
    expected.push(("pay:h3", 3));
    // Dropped mid-stream.
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let response = svc.clone().oneshot(paid_get(&c, pay_payload("h4", 1_000))).await.unwrap();
    tx.send(Ok(Bytes::from(chunk("one")))).unwrap();
    drain_ready(&mut response.into_body());
    expected.push(("pay:h4", 3));

    settle().await;
    let mut settled: Vec<(String, u128)> =
        method.settled().iter().map(|s| (s.channel.to_string(), s.used.get())).collect();
    settled.sort();
    let expected: Vec<(String, u128)> = expected.into_iter().map(|(c, u)| (c.to_string(), u)).collect();
    assert_eq!(settled, expected, "one settlement per response, with what it delivered");
    assert_eq!(store.releases(), 4);
    for channel in ["pay:h1", "pay:h2", "pay:h3", "pay:h4"] {
        assert_eq!(state(&store, channel).await.reserved, Amount::ZERO, "{channel}");
    }
}

// Scenario 13: a paused stream whose client stops reading never times out.

#[tokio::test(start_paused = true)]
async fn scenario_13_a_paused_stream_nobody_polls_releases_at_the_deadline() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new())
        .pause_deadline(Duration::from_secs(60));
    let (svc, slot) = serve(layer, "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new([events(0, 5)]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xd13", 20, 1_000)))).await.unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xd13", 20, 1_000))).await.unwrap();
    let mut body = response.into_body();
    read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    // The client keeps the connection but never reads again.
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    let at_deadline = state(&store, "0xd13").await;
    assert_eq!((at_deadline.spent, at_deadline.reserved), (a(20), Amount::ZERO));
    // A voucher after the deadline does not bring the stream back.
    svc.clone().oneshot(management("/", credential(&c, voucher_payload("0xd13", 100, 1_000)))).await.unwrap();
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert!(!text.contains("data: 2\n"), "{text}");
    let state = state(&store, "0xd13").await;
    assert_eq!((state.spent, state.reserved), (a(20), Amount::ZERO));
}

// Scenario 14: `Account::drop` outside a runtime leaks.

#[test]
fn scenario_14_a_body_driven_outside_any_runtime_never_leaks_its_reservation() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new());
    let (svc, slot) = serve(layer, "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new([events(0, 5)]));
    let c = block_on(challenge(svc.clone()));
    let response = block_on(svc.oneshot(paid_get(&c, pay_payload("nort", 1_000)))).unwrap();
    let mut body = response.into_body();
    assert!(frame_outside_runtime(&mut body).is_some());
    drop(body);
    // The release may run on a thread of its own: wait for it, within reason.
    let mut state = block_on(store.load(&tollgate::store::ChannelId::new("pay:nort"))).unwrap().unwrap();
    for _ in 0..500 {
        if state.reserved == Amount::ZERO {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        state = block_on(store.load(&tollgate::store::ChannelId::new("pay:nort"))).unwrap().unwrap();
    }
    assert_eq!((state.spent, state.reserved), (a(50), Amount::ZERO), "all five events were in the first frame");
}

#[test]
fn scenario_14_a_body_dropped_off_its_runtime_releases_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new());
    let (svc, slot) = serve(layer, "text/event-stream");
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let mut body = runtime.block_on(async {
        let c = challenge(svc.clone()).await;
        let response = svc.oneshot(paid_get(&c, pay_payload("off", 1_000))).await.unwrap();
        let mut body = response.into_body();
        tx.send(Ok(Bytes::from(events(0, 1)))).unwrap();
        read_until(&mut body, |t| t.contains("data: 0")).await;
        body
    });
    tx.send(Ok(Bytes::from(events(1, 2)))).unwrap();
    assert!(frame_outside_runtime(&mut body).is_some());
    // Dropped on a thread that is not running the runtime, which nobody drives any more.
    drop(body);
    let state = block_on(store.load(&tollgate::store::ChannelId::new("pay:off"))).unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (a(20), Amount::ZERO));
}
