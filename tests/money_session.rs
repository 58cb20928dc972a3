//! Money safety of Tempo sessions (issue 7), on the fake chain and the memory store: every
//! attack or failure of the issue as a regression test, named after its scenario.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use std::time::Duration;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use fake_chain::{Fault, Kind};
use http::StatusCode;
use http_body_util::BodyExt;
use money_support::*;
use serde_json::json;
use tollgate::Amount;
use tollgate::client::SessionClient;
use tollgate::method::tempo::SettlementPolicy;
use tower::ServiceExt;

#[tokio::test]
async fn fake_chain_runs_open_stream_close_with_exact_balances() {
    // Window 0: a voucher per token, so v1 can capture exactly what was delivered.
    let f = Fixture::v1(0);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.chain.balance(f.chain.escrow()), 100_000);
    assert_eq!(f.chain.calls(Kind::Broadcast), 1);

    let (text, _) = f.stream_paying(20, &mut client, &c).await;
    assert_eq!(text.matches("data: tok").count(), 20);
    let spent = PRICE * 20;
    assert_eq!(f.state(channel).await.spent, Amount::new(spent));

    let close = client.close(&c, client.cumulative()).unwrap();
    let response = f.post(close).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, spent);
    assert_eq!(f.chain.balance(f.payee), spent);
    assert_eq!(f.chain.balance(payer.address()), FUNDS - spent);
    assert_eq!(f.chain.balance(f.chain.escrow()), 0);
}

/// An open credential for `channel` that proves nothing: junk transaction, a signature by
/// someone else.
fn junk_open(
    c: &tollgate::scheme::Challenge,
    attacker: &PrivateKeySigner,
    channel: B256,
    amount: u128,
) -> http::HeaderValue {
    let mut theirs = SessionClient::with_channel(attacker.clone(), c, channel, 0).unwrap();
    let voucher = theirs.voucher(c, amount).unwrap();
    let credential = tollgate::scheme::Credential::from_headers(&http::HeaderMap::from_iter([(
        http::header::AUTHORIZATION,
        voucher,
    )]))
    .unwrap()
    .unwrap();
    let payload = json!({
        "action": "open", "type": "transaction", "channelId": channel, "transaction": "0x76c0",
        "cumulativeAmount": amount.to_string(), "signature": credential.payload["signature"],
    });
    raw_credential(c, payload, None)
}

#[tokio::test]
async fn scenario_01_open_retry_on_someone_elses_channel_is_refused() {
    let f = Fixture::v1(4);
    let victim = f.payer(1);
    let (mut client, c) = f.open(&victim, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 10_000).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let before = f.state(channel).await;

    let attacker = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x66)).unwrap();
    // Streaming content on the victim's headroom.
    let response = f.get(10, junk_open(&c, &attacker, channel, 60_000)).await;
    let status = response.status();
    let body = text(response).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "served someone else's channel: {body}");
    assert!(!body.contains("data: tok"));
    // A bodiless POST discloses nothing.
    let response = f.post(junk_open(&c, &attacker, channel, 60_000)).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(receipt(&response).is_none(), "no receipt to an unproven request");
    assert!(!text(response).await.contains("10000"), "the victim's accepted amount is not disclosed");
    // Even the victim's own signature on a stale amount is no proof of the current state.
    let stale = junk_open(&c, &victim, channel, 1_000);
    assert_eq!(f.post(stale).await.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(f.state(channel).await, before, "nothing changed");

    // A genuine retried open (its first answer was lost) is still answered.
    let payer = f.payer(2);
    let c = f.challenge().await;
    let mut client = SessionClient::new(payer.clone(), &c).unwrap();
    let open = client.open(&c, 100_000, salt(), tx_params()).unwrap();
    assert_eq!(f.post(open.clone()).await.status(), StatusCode::NO_CONTENT);
    let retried = f.post(open).await;
    assert_eq!(retried.status(), StatusCode::NO_CONTENT, "an honest retry is served");
    assert_eq!(receipt(&retried).unwrap().accepted_cumulative, Some(Amount::new(PRICE)));
}

#[tokio::test]
async fn scenario_02_close_mid_stream_captures_what_the_stream_delivered() {
    let f = Fixture::v1(0);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 4_000).unwrap()).await.status(), StatusCode::NO_CONTENT);
    // A stream that delivers 4 tokens, then pauses for a voucher that never comes.
    let response = f.get(50, client.voucher(&c, 4_000).unwrap()).await;
    let mut body = response.into_body();
    let mut seen = String::new();
    while need_voucher(&seen).is_none() {
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        seen.push_str(std::str::from_utf8(&data).unwrap());
    }
    let reader = tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        seen
    });
    // The payer closes with its first voucher while the stream is live.
    let response = f.post(client.close(&c, PRICE).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let text = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert_eq!(delivered, 4_000);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, delivered, "the close captured what the stream delivered");
    assert_eq!(f.state(channel).await.reserved, Amount::ZERO);
}

#[tokio::test]
async fn scenario_02_v2_close_mid_stream_captures_exactly_what_was_delivered() {
    let f = Fixture::v2(2);
    let signer = f.payer(1);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(signer, f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.post(payer.action(&c, "voucher", 7_000)).await.status(), StatusCode::NO_CONTENT);
    let response = f.get(50, payer.action(&c, "voucher", 7_000)).await;
    let mut body = response.into_body();
    let mut seen = String::new();
    while need_voucher(&seen).is_none() {
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        seen.push_str(std::str::from_utf8(&data).unwrap());
    }
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        seen
    });
    assert_eq!(f.post(payer.action(&c, "close", PRICE)).await.status(), StatusCode::NO_CONTENT);
    let text = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert_eq!(delivered, 7_000);
    assert_eq!(f.chain.balance(f.payee), delivered, "v2 captures exactly what was delivered");
}

#[tokio::test]
async fn scenario_03_one_big_voucher_cannot_run_far_ahead_of_delivery() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let deposit = 1_000_000;
    let (mut client, c) = f.open(&payer, deposit).await;
    let channel = client.channel_id().unwrap();
    // One voucher for the whole deposit, nothing delivered yet.
    let response = f.post(client.voucher(&c, deposit).unwrap()).await;
    let refused = response.status() == StatusCode::PAYMENT_REQUIRED;
    if refused {
        // Honest vouchers, as asked, pay for the stream.
        client = SessionClient::with_channel(payer.clone(), &c, channel, PRICE).unwrap();
    }
    let (text, _) = f.stream_paying(999, &mut client, &c).await;
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert_eq!(delivered, 999_000);
    let response = f.post(client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let captured = f.chain.channel_state(channel).unwrap().settled;
    assert!(captured <= delivered, "never more than delivered");
    // The documented bound: the run-ahead of one voucher (two windows and four units here).
    let bound = PRICE * (2 * 4 + 4);
    assert!(delivered - captured <= bound, "captured {captured} of {delivered} delivered");
    assert!(refused, "a voucher far ahead of delivery is refused");
}

#[tokio::test]
async fn scenario_03_v2_forced_close_is_captured_from_the_server_side() {
    let f = Fixture::v2(4);
    let signer = f.payer(1);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(signer, f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    let mut cumulative = PRICE;
    let response = f.get(30, payer.action(&c, "voucher", cumulative)).await;
    let mut body = response.into_body();
    let mut delivered = 0;
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        let chunk = String::from_utf8(data.to_vec()).unwrap();
        delivered += chunk.matches("data: tok").count() as u128;
        if let Some(need) = need_voucher(&chunk) {
            let need: serde_json::Value = serde_json::from_str(&need).unwrap();
            cumulative = need["requiredCumulative"].as_str().unwrap().parse().unwrap();
            assert_eq!(f.post(payer.action(&c, "voucher", cumulative)).await.status(), StatusCode::NO_CONTENT);
        }
    }
    let delivered = delivered * PRICE;
    assert!(cumulative > delivered, "the payer signed ahead of delivery");
    // The payer walks away and asks the reserve for a forced close.
    f.chain.request_close(payer.channel);
    let session = f.layer.method().clone();
    let report = session.settle_all(&f.store, 1).await;
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(f.chain.balance(f.payee), delivered, "captured exactly what was delivered");
    assert!(f.chain.channel_state(payer.channel).unwrap().finalized);
}

#[tokio::test(start_paused = true)]
async fn scenario_06_settlement_survives_channels_with_nothing_spent_and_reports_failures() {
    let f = Fixture::v1(4);
    let (mut idle_client, idle_c) = f.open(&f.payer(1), 100_000).await;
    let (mut busy, c) = f.open(&f.payer(2), 100_000).await;
    let (_, _) = f.stream_paying(10, &mut busy, &c).await;
    let idle = idle_client.channel_id().unwrap();
    let busy_id = busy.channel_id().unwrap();
    let session = f.layer.method().clone();
    // Nothing delivered on `idle`: spent (0) is not above settled (0).
    assert_eq!(session.settle(&f.store, idle, 1).await.unwrap(), None);
    let settler = session
        .clone()
        .spawn_settlement(f.store.clone(), SettlementPolicy { every: Duration::from_secs(1), min_amount: 1 });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!settler.is_finished(), "the settlement task is alive");
    settler.abort();
    let settled = f.chain.channel_state(busy_id).unwrap().settled;
    assert!(settled > 0 && settled <= 10 * PRICE, "the busy channel was settled ({settled})");
    // One channel failing does not stop the others; the failure is reported.
    let (mut third, c) = f.open(&f.payer(3), 100_000).await;
    let (_, _) = f.stream_paying(10, &mut third, &c).await;
    let (mut fourth, c) = f.open(&f.payer(4), 100_000).await;
    let (_, _) = f.stream_paying(10, &mut fourth, &c).await;
    f.chain.fault_next(Kind::Channel, Fault::Unavailable);
    let report = session.settle_all(&f.store, 1).await;
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert!(!report.settled.is_empty(), "{report:?}");
    let report = session.settle_all(&f.store, 1).await;
    assert!(report.failures.is_empty(), "retried on the next pass: {report:?}");
    for channel in [third.channel_id().unwrap(), fourth.channel_id().unwrap()] {
        assert!(f.chain.channel_state(channel).unwrap().settled > 0);
    }
    // A close with nothing delivered does not panic either.
    let response = f.post(idle_client.close(&idle_c, PRICE).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.chain.channel_state(idle).unwrap().settled, 0);
}

#[tokio::test]
async fn scenario_08_a_failed_close_can_be_retried() {
    let f = Fixture::v1(0);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let (_, _) = f.stream_paying(10, &mut client, &c).await;
    let close = client.close(&c, client.cumulative()).unwrap();
    f.chain.fault_next(Kind::Send, Fault::Unavailable);
    let response = f.post(close.clone()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!f.chain.channel_state(channel).unwrap().finalized);
    let response = f.post(close.clone()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "the retried close went through");
    assert_eq!(f.chain.channel_state(channel).unwrap().settled, 10 * PRICE);

    // The close transaction mined but its answer was lost: the retry finds it.
    let (mut client, c) = f.open(&f.payer(2), 100_000).await;
    let channel = client.channel_id().unwrap();
    let (_, _) = f.stream_paying(10, &mut client, &c).await;
    let close = client.close(&c, client.cumulative()).unwrap();
    f.chain.fault_next(Kind::Send, Fault::AfterApply);
    assert_eq!(f.post(close.clone()).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(f.chain.channel_state(channel).unwrap().finalized, "mined despite the lost answer");
    let sends = f.chain.calls(Kind::Send);
    let response = f.post(close).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "the retry sees the close on chain");
    assert_eq!(f.chain.calls(Kind::Send), sends, "no second close transaction");
    assert_eq!(f.chain.channel_state(channel).unwrap().settled, 10 * PRICE);
}

#[tokio::test]
async fn scenario_10_v2_descriptors_are_remembered_only_after_the_checks() {
    let f = Fixture::v2(4);
    let c = f.challenge().await;
    let session = f.layer.method().clone();
    for i in 0..2_000u32 {
        let descriptor = tollgate::method::tempo::ChannelDescriptor {
            payer: alloy::primitives::Address::repeat_byte(7),
            payee: f.payee,
            token: tollgate::method::tempo::PATH_USD,
            salt: alloy::primitives::keccak256(i.to_be_bytes()),
            ..Default::default()
        };
        let id = descriptor.channel_id(
            tollgate::method::tempo::SessionProtocol::V2,
            tollgate::method::tempo::CHANNEL_RESERVE,
            CHAIN_ID,
        );
        let payload = json!({"action": "voucher", "channelId": id, "cumulativeAmount": "1000",
                             "signature": format!("0x{}", "11".repeat(65)), "descriptor": descriptor});
        assert_ne!(f.post(raw_credential(&c, payload, None)).await.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(session.remembered().descriptors, 0, "junk descriptors are not kept");
}

#[tokio::test]
async fn scenario_10_the_voucher_book_keeps_only_what_settlement_needs() {
    let f = Fixture::v1(0);
    let (mut client, c) = f.open(&f.payer(1), 1_000_000).await;
    let (_, vouchers) = f.stream_paying(100, &mut client, &c).await;
    assert!(vouchers >= 90);
    let (_, _) = f.stream_paying(5, &mut client, &c).await;
    let session = f.layer.method().clone();
    session.settle_all(&f.store, 1).await;
    assert!(session.remembered().vouchers <= 2, "{:?}", session.remembered());
    assert_eq!(f.post(client.close(&c, client.cumulative()).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let report = session.settle_all(&f.store, 1).await;
    assert_eq!(report.polled, 0, "closed channels are no longer polled");
    assert_eq!(session.remembered().channels, 0);
}

#[tokio::test]
async fn scenario_14_a_replayed_voucher_without_proof_gets_no_receipt() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 5_000).unwrap()).await.status(), StatusCode::NO_CONTENT);
    // Equal amount, bad signature, no source.
    let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": "5000",
                         "signature": format!("0x{}", "11".repeat(65))});
    let response = f.post(raw_credential(&c, payload, None)).await;
    assert_ne!(response.status(), StatusCode::NO_CONTENT);
    assert!(receipt(&response).is_none(), "no receipt for an unverified voucher");
    // Unsigned vouchers below and above what was accepted get the same answer: the
    // accepted amount cannot be probed.
    let mut answers = Vec::new();
    for amount in ["4000", "6000"] {
        let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": amount,
                             "signature": format!("0x{}", "11".repeat(65))});
        answers.push(problem_type(f.post(raw_credential(&c, payload, None)).await).await);
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn scenario_14_an_http2_post_with_a_body_and_no_length_is_content() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let request = http::Request::post("/")
        .version(http::Version::HTTP_2)
        .header(http::header::AUTHORIZATION, client.voucher(&c, 5_000).unwrap())
        .body(axum::body::Body::new(OneFrame(Some(b"{\"q\":1}"))))
        .unwrap();
    let response = f.service(3).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "content, served and charged as content");
    assert_eq!(text(response).await.matches("data: tok").count(), 3);
    assert_eq!(f.state(channel).await.spent, Amount::new(3 * PRICE));
    // The same POST with an empty body (END_STREAM on its headers) is management.
    let request = http::Request::post("/")
        .version(http::Version::HTTP_2)
        .header(http::header::AUTHORIZATION, client.voucher(&c, 6_000).unwrap())
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(f.service(3).oneshot(request).await.unwrap().status(), StatusCode::NO_CONTENT);
}

/// A body of one frame whose end is not known up front (as an HTTP/2 stream's).
struct OneFrame(Option<&'static [u8]>);

impl http_body::Body for OneFrame {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|d| Ok(http_body::Frame::data(bytes::Bytes::from_static(d)))))
    }
}

#[tokio::test(start_paused = true)]
async fn scenario_02_a_close_whose_drain_times_out_loses_at_most_the_live_leases() {
    let f = Fixture::with(4, |config| config, |session| session.close_drain_timeout(Duration::from_secs(1)));
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    // A slow stream: one token every 10 s, on a lease taken at admission.
    let slow = paid_service(f.layer.clone(), 4, Duration::from_secs(10));
    let response = slow.oneshot(get(Some(client.voucher(&c, 4 * PRICE).unwrap()))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reserved = f.state(channel).await.reserved.get();
    assert!(reserved > 0);
    let reader = tokio::spawn(async move { text(response).await });
    let response = f.post(client.close(&c, 4 * PRICE).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "the close did not wait for the stream");
    let captured = f.chain.channel_state(channel).unwrap().settled;
    let delivered = PRICE * reader.await.unwrap().matches("data: tok").count() as u128;
    assert!(captured <= delivered, "the payer pays for nothing undelivered");
    assert!(delivered - captured <= reserved, "the payee loses at most the live lease ({reserved})");
    assert_eq!(f.state(channel).await.reserved, Amount::ZERO, "the lease was released");
}
