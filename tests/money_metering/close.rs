//! Scenario 2 (the metering part): once a channel is finalized, its streams stop delivering.
//! A paused stream is woken and ends; a streaming one ends when its lease runs out.

use std::time::Duration;

use bytes::Bytes;
use tollgate::meter::EventMeter;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Secret};
use tower::ServiceExt;

use crate::kit::*;
use crate::support::{FramesBody, TestMethod, channel_body, credential, events, management, open_payload};
use crate::support::{REALM, SECRET, voucher_payload};
use crate::{a, per_event};

#[tokio::test(start_paused = true)]
async fn scenario_02_finalize_wakes_a_paused_stream_and_ends_it() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new())
        .pause_deadline(Duration::from_secs(60))
        .keep_alive(Duration::from_secs(15));
    let (svc, slot) = serve(layer, "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new([events(0, 5)]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xc2", 20, 1_000)))).await.unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xc2", 20, 1_000))).await.unwrap();
    let mut body = response.into_body();
    read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    let started = tokio::time::Instant::now();
    store.finalize(&ChannelId::new("0xc2")).await.unwrap();
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    assert!(started.elapsed() < Duration::from_secs(15), "ended at the finalize, not at the deadline: {text}");
    assert!(!text.contains("data: 2\n") && text.contains("payment-receipt"), "{text}");
    let state = state(&store, "0xc2").await;
    assert_eq!((state.spent, state.reserved), (a(20), Amount::ZERO));
}

#[tokio::test(start_paused = true)]
async fn scenario_02_finalize_releases_a_paused_stream_nobody_polls() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new())
        .pause_deadline(Duration::from_secs(60));
    let (svc, slot) = serve(layer, "text/event-stream");
    slot.lock().unwrap().push(FramesBody::new([events(0, 5)]));
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xc3", 20, 1_000)))).await.unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xc3", 20, 1_000))).await.unwrap();
    let mut body = response.into_body();
    read_until(&mut body, |t| t.contains("payment-need-voucher")).await;
    // A close finalizes, then waits for the live leases: this one drains without its client.
    store.finalize(&ChannelId::new("0xc3")).await.unwrap();
    settle().await;
    let state = state(&store, "0xc3").await;
    assert_eq!((state.spent, state.reserved), (a(20), Amount::ZERO));
    drop(body);
}

#[tokio::test]
async fn scenario_02_a_streaming_response_ends_when_its_lease_runs_out_after_finalize() {
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(10))
        .meter(EventMeter::new())
        .voucher_window(2);
    let (svc, slot) = serve(layer, "text/event-stream");
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let c = challenge(svc.clone()).await;
    svc.clone().oneshot(management("/", credential(&c, open_payload("0xc4", 1_000, 1_000)))).await.unwrap();
    let response = svc.clone().oneshot(paid_get(&c, voucher_payload("0xc4", 1_000, 1_000))).await.unwrap();
    let mut body = response.into_body();
    tx.send(Ok(Bytes::from(events(0, 1)))).unwrap();
    read_until(&mut body, |t| t.contains("data: 0\n")).await;
    store.finalize(&ChannelId::new("0xc4")).await.unwrap();
    tx.send(Ok(Bytes::from(events(1, 10)))).unwrap();
    let (text, error) = read_until(&mut body, |_| false).await;
    assert!(error.is_none());
    // The lease held three events (one plus a window of two): the rest never goes out.
    assert!(text.starts_with(&events(1, 3)) && !text.contains("data: 3\n"), "{text}");
    assert!(!text.contains("payment-need-voucher"), "a closed channel asks for nothing: {text}");
    let state = state(&store, "0xc4").await;
    assert_eq!((state.spent, state.reserved), (a(30), Amount::ZERO));
}
