//! Issue 8, item 6: a validly signed voucher at or below what is already accepted (a
//! concurrent stream's older voucher arriving late) is an idempotent success that changes
//! nothing, not a 402 that kills that client's stream.

use alloy::signers::local::PrivateKeySigner;
use http::StatusCode;
use serde_json::json;
use tollgate::Amount;
use tollgate::client::SessionClient;

use crate::money_support::*;

#[tokio::test]
async fn issue8_06_a_late_voucher_below_the_accepted_amount_is_an_idempotent_success() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let channel = client.channel_id().unwrap();
    // Two streams sign 2 and 3 units; the higher lands first.
    let mut older = SessionClient::with_channel(payer.clone(), &c, channel, 0).unwrap();
    let late = older.voucher(&c, 2 * PRICE).unwrap();
    assert_eq!(f.post(client.voucher(&c, 3 * PRICE).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let before = f.state(channel).await;

    let response = f.post(late).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", problem_type(response).await);
    let receipt = receipt(&response).expect("the current receipt");
    assert_eq!(receipt.accepted_cumulative, Some(Amount::new(3 * PRICE)), "the current state, not the voucher's");
    let after = f.state(channel).await;
    assert_eq!((after.accepted, after.spent, after.reserved), (before.accepted, before.spent, before.reserved));

    // The same late voucher on a stream request serves from what is already paid.
    let text = text(f.get(2, older.voucher(&c, 2 * PRICE).unwrap()).await).await;
    assert_eq!(text.matches("data: tok").count(), 2);
    assert_eq!(f.state(channel).await.accepted, Amount::new(3 * PRICE), "never lowered");
}

#[tokio::test]
async fn issue8_06_a_late_voucher_below_what_is_settled_is_still_an_idempotent_success() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let channel = client.channel_id().unwrap();
    let late = SessionClient::with_channel(payer.clone(), &c, channel, 0).unwrap().voucher(&c, 2 * PRICE).unwrap();
    let (text_out, _) = f.stream_paying(3, &mut client, &c).await;
    assert_eq!(text_out.matches("data: tok").count(), 3);
    let session = f.layer.method().clone();
    let report = session.settle_all(&f.store, 1).await;
    assert!(report.failures.is_empty() && !report.settled.is_empty(), "{report:?}");
    assert!(f.chain.channel_state(channel).unwrap().settled >= 2 * PRICE);
    let before = f.state(channel).await;
    let response = f.post(late).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", problem_type(response).await);
    assert_eq!(f.state(channel).await.accepted, before.accepted);
}

#[tokio::test]
async fn issue8_06_a_late_voucher_signed_by_someone_else_is_still_refused() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 3 * PRICE).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let attacker = PrivateKeySigner::random();
    let forged = SessionClient::with_channel(attacker, &c, channel, 0).unwrap().voucher(&c, 2 * PRICE).unwrap();
    let response = f.post(forged).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(receipt(&response).is_none(), "no receipt without a valid signature");
    // Nor does a bad signature below the accepted amount get through.
    let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": "2000",
                         "signature": format!("0x{}", "11".repeat(65))});
    assert_ne!(f.post(raw_credential(&c, payload, None)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.state(channel).await.accepted, Amount::new(3 * PRICE));
}
