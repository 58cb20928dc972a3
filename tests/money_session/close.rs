//! Scenarios 2 and 8: closing captures what was delivered, and a failed close can be retried.

use std::time::Duration;

use fake_chain::{Fault, Kind};
use http::StatusCode;
use http_body_util::BodyExt;
use tollgate::Amount;
use tower::ServiceExt;

use crate::fake_chain;
use crate::money_support::*;

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
