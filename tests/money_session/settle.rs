//! Scenarios 3 (v2 server-side capture), 6 and 10: settlement and what the method keeps.

use std::time::Duration;

use fake_chain::{Fault, Kind};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::json;
use tollgate::method::tempo::SettlementPolicy;

use crate::fake_chain;
use crate::money_support::*;

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
async fn scenario_03_v2_idle_channel_is_closed_capturing_exactly_what_was_delivered() {
    let f = Fixture::v2_with(4, |session| session.close_idle_after(Duration::from_secs(60)));
    let signer = f.payer(1);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(signer, f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    // The payer pays ahead (as asked), receives 3 tokens and goes quiet.
    assert_eq!(f.post(payer.action(&c, "voucher", 9 * PRICE)).await.status(), StatusCode::NO_CONTENT);
    let response = f.get(3, payer.action(&c, "voucher", 9 * PRICE)).await;
    assert_eq!(text(response).await.matches("data: tok").count(), 3);
    let session = f.layer.method().clone();
    let report = session.settle_all(&f.store, 1_000_000).await;
    assert!(report.closed.is_empty(), "not idle yet: {report:?}");
    tokio::time::sleep(Duration::from_secs(61)).await;
    let report = session.settle_all(&f.store, 1_000_000).await;
    assert_eq!(report.closed.len(), 1, "{report:?}");
    assert_eq!(f.chain.balance(f.payee), 3 * PRICE, "captured exactly the delivered tokens");
    assert_eq!(f.chain.balance(f.chain.escrow()), 0, "the rest went back to the payer");
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
    let remembered = session.remembered(&f.store).await.unwrap();
    assert_eq!(remembered, tollgate::method::tempo::Remembered::default(), "junk grows nothing in the store");
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
    let remembered = session.remembered(&f.store).await.unwrap();
    assert!(remembered.vouchers <= 2, "{remembered:?}");
    assert_eq!(f.post(client.close(&c, client.cumulative()).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let report = session.settle_all(&f.store, 1).await;
    assert_eq!(report.polled, 0, "closed channels are no longer polled");
    assert_eq!(session.remembered(&f.store).await.unwrap().channels, 0);
}
