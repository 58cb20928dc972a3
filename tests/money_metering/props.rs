//! Whatever the upstream's framing, the budget and the moment the client leaves: every
//! response is settled exactly once, charged exactly what reached the client, and leaves
//! nothing reserved.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tollgate::PaymentLayer;
use tollgate::Secret;
use tollgate::meter::EventMeter;
use tollgate::store::ChannelStore;
use tower::ServiceExt;

use crate::kit::*;
use crate::per_event;
use crate::support::voucher_payload;
use crate::support::{REALM, SECRET, channel_body, credential, events, management, open_payload, pay_payload};

#[derive(Clone, Copy, Debug)]
enum Client {
    /// Reads everything (paying for a session's need-vouchers as they come).
    ReadsAll,
    /// Drops the body after this many frames.
    LeavesAfter(usize),
    /// Reads as far as the first need-voucher and stops polling without hanging up.
    GoesQuiet,
}

fn client() -> impl Strategy<Value = Client> {
    prop_oneof![Just(Client::ReadsAll), (0..12usize).prop_map(Client::LeavesAfter), Just(Client::GoesQuiet)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_response_settles_once_for_what_it_delivered(
        count in 0..12usize,
        cuts in prop::collection::vec(1..30usize, 0..10),
        budget in 0..15u128,
        session in any::<bool>(),
        upstream_fails in any::<bool>(),
        client in client(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(run(count, cuts, budget, session, upstream_fails, client))?;
    }
}

async fn run(
    count: usize,
    cuts: Vec<usize>,
    budget: u128,
    session: bool,
    upstream_fails: bool,
    client: Client,
) -> Result<(), TestCaseError> {
    let store = SlowStore::default();
    let method = Hooked::default();
    let layer = PaymentLayer::new(method.clone(), store.clone(), REALM, Secret::new(SECRET))
        .pricing(per_event(1))
        .meter(EventMeter::new())
        .voucher_window(2)
        .pause_deadline(Duration::from_secs(30));
    let (svc, slot) = serve(layer, "text/event-stream");
    let (tx, body) = channel_body();
    slot.lock().unwrap().push(body);
    let text = events(0, count);
    let mut at = 0;
    for cut in cuts {
        let end = (at + cut).min(text.len());
        tx.send(Ok(Bytes::copy_from_slice(&text.as_bytes()[at..end]))).unwrap();
        at = end;
    }
    tx.send(Ok(Bytes::copy_from_slice(&text.as_bytes()[at..]))).unwrap();
    if upstream_fails {
        tx.send(Err("upstream reset")).unwrap();
    }
    drop(tx);

    let c = challenge(svc.clone()).await;
    let (channel, payload) = if session {
        let opened = svc.clone().oneshot(management("/", credential(&c, open_payload("0xp", budget, 1_000))));
        opened.await.unwrap();
        ("0xp".to_string(), voucher_payload("0xp", budget, 1_000))
    } else {
        ("pay:p".to_string(), pay_payload("p", budget))
    };
    let response = svc.clone().oneshot(paid_get(&c, payload)).await.unwrap();
    if !response.status().is_success() {
        // Refused before any lease: nothing may be held or spent.
        let state = store.load(&tollgate::store::ChannelId::new(&channel)).await.unwrap();
        prop_assert!(state.is_none_or(|s| s.spent.is_zero() && s.reserved.is_zero()));
        return Ok(());
    }
    let mut body = Some(response.into_body());
    let mut seen = String::new();
    match client {
        Client::ReadsAll => {
            while let Some(body) = body.as_mut() {
                let (text, _) = read_until(body, |t| t.contains("payment-need-voucher")).await;
                seen.push_str(&text);
                if !text.contains("payment-need-voucher") {
                    break;
                }
                let more = voucher_payload("0xp", 1_000, 1_000);
                svc.clone().oneshot(management("/", credential(&c, more))).await.unwrap();
            }
        }
        Client::LeavesAfter(frames) => {
            let mut read = 0;
            if let Some(mut gone) = body.take() {
                while read < frames {
                    match http_body_util::BodyExt::frame(&mut gone).await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                seen.push_str(std::str::from_utf8(&data).unwrap());
                            }
                            read += 1;
                        }
                        _ => break,
                    }
                }
            }
        }
        Client::GoesQuiet => {
            if let Some(body) = body.as_mut() {
                seen = read_until(body, |t| t.contains("payment-need-voucher")).await.0;
            }
        }
    }
    // Past any pause deadline, with every task run.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;

    let delivered = (0..count).filter(|i| seen.contains(&format!("data: {i}\n\n"))).count() as u128;
    let state = store.load(&tollgate::store::ChannelId::new(&channel)).await.unwrap().unwrap();
    prop_assert_eq!(state.reserved.get(), 0, "released: {:?}", state);
    prop_assert_eq!(state.spent.get(), delivered, "charged what went out: {}", seen);
    let settled = method.settled();
    prop_assert_eq!(settled.len(), 1, "settled once: {:?}", settled);
    prop_assert_eq!(settled[0].used, state.spent);
    prop_assert_eq!(store.releases(), 1);
    drop(body);
    Ok(())
}
