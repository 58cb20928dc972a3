//! Everything a settlement needs lives in the store (issue 10): a restarted instance, or
//! a second one sharing the store and the chain, serves, settles and closes every channel
//! exactly as the instance that opened it would have, and two instances never submit for
//! the same channel at once. On the fake chain and the memory store.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use std::sync::Arc;
use std::time::Duration;

use fake_chain::{Fault, Kind};
use http::StatusCode;
use money_support::*;
use tollgate::client::SessionClient;
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{PATH_USD, SessionConfig, TempoSession};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};
use tower::ServiceExt;

/// Another server instance on the fixture's store and chain (or the fixture's own after a
/// restart): its own `TempoSession`, the same secret and realm, windows of `window` units.
fn instance(f: &Fixture, window: u64) -> Layer {
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, f.payee);
    let method = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    layer(f, method, window)
}

fn v2_instance(f: &Fixture, window: u64) -> Layer {
    let config = SessionConfig::v2(CHAIN_ID, PATH_USD, f.payee);
    let method = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    layer(f, method, window)
}

fn layer(f: &Fixture, method: TempoSession<fake_chain::FakeChain>, window: u64) -> Layer {
    PaymentLayer::new(method, f.store.clone(), "api.test", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
        .meter(EventMeter::default())
        .voucher_window(window)
        .pause_deadline(Duration::from_secs(5))
}

async fn post_to(layer: &Layer, auth: http::HeaderValue) -> http::Response<axum::body::Body> {
    paid_service(layer.clone(), 0, Duration::ZERO).oneshot(post(auth)).await.unwrap()
}

/// Opens a channel for payer `n` on `on`.
async fn open_on(f: &Fixture, on: &Layer, n: u8, deposit: u128) -> (SessionClient, Challenge) {
    let c = f.challenge().await;
    let mut client = SessionClient::new(f.payer(n), &c).unwrap();
    let auth = client.open(&c, deposit, salt(), tx_params()).unwrap();
    assert_eq!(post_to(on, auth).await.status(), StatusCode::NO_CONTENT, "open accepted");
    (client, c)
}

/// Streams `tokens` from `streamer`, paying one unit up front (as mppx's v1 client does)
/// and answering each need-voucher on `payee` (another instance behind the balancer).
/// Returns what was delivered.
async fn stream_on(streamer: &Layer, payee: &Layer, tokens: usize, client: &mut SessionClient, c: &Challenge) -> u128 {
    use http_body_util::BodyExt;
    let auth = client.voucher(c, client.cumulative() + PRICE).unwrap();
    let response = paid_service(streamer.clone(), tokens, Duration::ZERO).oneshot(get(Some(auth))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut out = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        let chunk = String::from_utf8(data.to_vec()).unwrap();
        if let Some(data) = need_voucher(&chunk) {
            let answer = client.answer_need_voucher(c, &data).unwrap();
            let response = post_to(payee, answer).await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "voucher refused: {}", text(response).await);
        }
        out.push_str(&chunk);
    }
    PRICE * out.matches("data: tok").count() as u128
}

/// A voucher one unit ahead of delivery, as an honest client leaves one after a stream.
async fn pay_ahead(on: &Layer, client: &mut SessionClient, c: &Challenge) {
    let auth = client.voucher(c, client.cumulative() + PRICE).unwrap();
    assert_eq!(post_to(on, auth).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn restart_a_rebuilt_session_method_closes_capturing_exactly_what_was_delivered() {
    // Window 0: a voucher per token, so a v1 close can capture exactly what was delivered.
    let f = Fixture::v1(0);
    let a = instance(&f, 0);
    let (mut client, c) = open_on(&f, &a, 1, 100_000).await;
    let channel = client.channel_id().unwrap();
    let delivered = stream_on(&a, &a, 12, &mut client, &c).await;
    pay_ahead(&a, &mut client, &c).await;
    assert_eq!(delivered, 12 * PRICE);
    assert!(client.cumulative() > delivered, "the payer signed ahead of delivery");

    // The server restarts: the session method and its layer are gone, store and chain stay.
    drop(a);
    let restarted = instance(&f, 0);
    let response = post_to(&restarted, client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, delivered, "the voucher at the delivery survived the restart");
    assert_eq!(f.chain.balance(f.payee), delivered);
    assert_eq!(f.chain.calls(Kind::Send), 1, "one close transaction");
}

#[tokio::test]
async fn restart_vouchers_are_accepted_and_streams_served_after_a_restart() {
    let f = Fixture::v2(2);
    let a = v2_instance(&f, 2);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(f.payer(1), f.payee, &c, 100_000);
    assert_eq!(post_to(&a, open).await.status(), StatusCode::NO_CONTENT);
    drop(a);

    // A voucher without its descriptor (mppx sends it on the open only) to a restarted
    // instance: the descriptor comes from the store, not a 410 or a refusal.
    let restarted = v2_instance(&f, 2);
    let payload = serde_json::json!({
        "action": "voucher", "channelId": payer.channel, "cumulativeAmount": "6000",
        "signature": payer.sign(6_000),
    });
    let response = post_to(&restarted, payer.credential(&c, payload)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", text(response).await);
    let response =
        paid_service(restarted.clone(), 5, Duration::ZERO).oneshot(get(Some(payer.action(&c, "voucher", 6_000))));
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let delivered = PRICE * text(response).await.matches("data: tok").count() as u128;
    assert_eq!(delivered, 5 * PRICE);

    // The settlement loop of yet another restart finds the channel and the forced close.
    let config = SessionConfig::v2(CHAIN_ID, PATH_USD, f.payee);
    let settler = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    f.chain.request_close(payer.channel);
    let report = settler.settle_all(&f.store, 0).await;
    assert_eq!(report.closed.len(), 1, "{report:?}");
    assert_eq!(f.chain.balance(f.payee), delivered, "captured exactly what was delivered");
}

#[tokio::test]
async fn two_instances_open_on_a_vouchers_on_b_close_on_b_settles_once_exactly() {
    let f = Fixture::v1(0);
    let (a, b) = (instance(&f, 0), instance(&f, 0));
    let (mut client, c) = open_on(&f, &a, 1, 100_000).await;
    let channel = client.channel_id().unwrap();
    // A voucher to B first: B never saw the open.
    pay_ahead(&b, &mut client, &c).await;
    // The stream runs on A, with its vouchers (the one at the delivery among them).
    let delivered = stream_on(&a, &a, 15, &mut client, &c).await;
    assert_eq!(delivered, 15 * PRICE);
    // The client's next voucher, ahead of delivery, and its close land on B.
    pay_ahead(&b, &mut client, &c).await;

    let response = post_to(&b, client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, delivered, "exactly what was delivered");
    // Neither settlement loop finds anything left to do.
    for layer in [&a, &b] {
        let report = layer.method().settle_all(&f.store, 0).await;
        assert!(report.settled.is_empty() && report.closed.is_empty(), "{report:?}");
    }
    assert_eq!(f.chain.calls(Kind::Send), 1, "settled exactly once");
    assert_eq!(f.chain.balance(f.payee), delivered);
}

#[tokio::test]
async fn two_instances_settling_at_once_submit_once_per_channel() {
    let f = Fixture::v1(0);
    let first = instance(&f, 0);
    let mut channels = Vec::new();
    for n in 1..=3u8 {
        let (mut client, c) = open_on(&f, &first, n, 100_000).await;
        let delivered = stream_on(&first, &first, 5 + usize::from(n), &mut client, &c).await;
        channels.push((client.channel_id().unwrap(), delivered));
    }
    drop(first);

    // Both instances were restarted; their settlement passes run at the same time, and
    // every settle transaction takes a while to mine.
    let (a, b) = (instance(&f, 0), instance(&f, 0));
    for n in 1..=3 {
        f.chain.fault(Kind::Send, n, Fault::Delay(Duration::from_millis(50)));
    }
    let (ra, rb) = tokio::join!(a.method().settle_all(&f.store, 1), b.method().settle_all(&f.store, 1));
    assert!(ra.failures.is_empty() && rb.failures.is_empty(), "{ra:?} {rb:?}");
    assert_eq!(ra.settled.len() + rb.settled.len(), 3, "each channel settled by one of them: {ra:?} {rb:?}");
    assert_eq!(f.chain.calls(Kind::Send), 3, "one submission per channel");
    for (channel, delivered) in &channels {
        assert_eq!(f.chain.channel_state(*channel).unwrap().settled, *delivered);
    }
    assert_eq!(f.chain.balance(f.payee), channels.iter().map(|(_, d)| d).sum::<u128>());

    // And again: nothing left, nothing sent.
    let (ra, rb) = tokio::join!(a.method().settle_all(&f.store, 1), b.method().settle_all(&f.store, 1));
    assert!(ra.settled.is_empty() && rb.settled.is_empty(), "{ra:?} {rb:?}");
    assert_eq!(f.chain.calls(Kind::Send), 3);
}

#[tokio::test]
async fn a_close_and_a_settlement_on_two_instances_at_once_submit_once() {
    let f = Fixture::v1(0);
    let (a, b) = (instance(&f, 0), instance(&f, 0));
    let (mut client, c) = open_on(&f, &a, 1, 100_000).await;
    let channel = client.channel_id().unwrap();
    let delivered = stream_on(&a, &a, 8, &mut client, &c).await;
    f.chain.fault(Kind::Send, 1, Fault::Delay(Duration::from_millis(100)));

    // B's settlement pass starts a slow settle; the payer's close lands on A meanwhile and
    // waits for it, then closes.
    let settling = tokio::spawn({
        let (method, store) = (b.method().clone(), f.store.clone());
        async move { method.settle_all(&store, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = post_to(&a, client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let report = settling.await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, delivered);
    assert_eq!(f.chain.balance(f.payee), delivered);
    assert!(f.chain.calls(Kind::Send) <= 2, "a settle then a close, never the same capture twice");
}

#[tokio::test]
async fn a_settlement_whose_answer_was_lost_is_not_submitted_again() {
    let f = Fixture::v1(0);
    let (a, b) = (instance(&f, 0), instance(&f, 0));
    let (mut client, c) = open_on(&f, &a, 1, 100_000).await;
    let channel = client.channel_id().unwrap();
    let delivered = stream_on(&a, &b, 6, &mut client, &c).await;

    // The settle transaction is mined but the RPC fails after the broadcast.
    f.chain.fault_next(Kind::Send, Fault::AfterApply);
    let report = a.method().settle_all(&f.store, 1).await;
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(f.chain.channel_state(channel).unwrap().settled, delivered, "mined despite the lost answer");
    let sends = f.chain.calls(Kind::Send);
    for layer in [&a, &b, &a] {
        let report = layer.method().settle_all(&f.store, 1).await;
        assert!(report.failures.is_empty() && report.settled.is_empty(), "{report:?}");
    }
    assert_eq!(f.chain.calls(Kind::Send), sends, "no second settle transaction");
    assert_eq!(f.chain.balance(f.payee), delivered);
}

#[tokio::test]
async fn a_voucher_storm_across_two_instances_keeps_at_most_256_vouchers() {
    // Window 0: a voucher per token. After a stream, the payer walks a ladder of vouchers
    // one unit apart far ahead of delivery, through two instances at once.
    let f = Fixture::v1(0);
    let (a, b) = (Arc::new(instance(&f, 0)), Arc::new(instance(&f, 0)));
    let (mut client, c) = open_on(&f, &a, 1, 10_000_000).await;
    let channel = client.channel_id().unwrap();
    let delivered = stream_on(&a, &b, 20, &mut client, &c).await;
    let client = Arc::new(tokio::sync::Mutex::new(client));
    let storm = |layer: Arc<Layer>| {
        let (client, c) = (client.clone(), c.clone());
        tokio::spawn(async move {
            let mut accepted = 0;
            for _ in 0..300 {
                let auth = {
                    let mut client = client.lock().await;
                    let next = client.cumulative() + PRICE;
                    client.voucher(&c, next).unwrap()
                };
                if post_to(&layer, auth).await.status() != StatusCode::NO_CONTENT {
                    break;
                }
                accepted += 1;
            }
            accepted
        })
    };
    let (ta, tb) = (storm(a.clone()), storm(b.clone()));
    let accepted = ta.await.unwrap() + tb.await.unwrap();
    assert!(accepted >= 200, "the storm got going ({accepted} accepted)");

    let remembered = a.method().remembered(&f.store).await.unwrap();
    assert!(remembered.vouchers <= 256, "{remembered:?}");
    assert!(remembered.vouchers >= 200, "the accepted vouchers are kept: {remembered:?}");
    assert_eq!(remembered.channels, 1);
    assert_eq!(b.method().remembered(&f.store).await.unwrap(), remembered, "both instances see the same book");

    // A close on a third instance captures exactly what was delivered: the floor survived.
    let mut client = Arc::try_unwrap(client).ok().unwrap().into_inner();
    let third = instance(&f, 0);
    let response = post_to(&third, client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.chain.channel_state(channel).unwrap().settled, delivered);
    assert_eq!(a.method().remembered(&f.store).await.unwrap().vouchers, 0, "a closed channel leaves the store");
}
