//! Issue 8, item 6: a validly signed voucher at or below what is already accepted (a
//! concurrent stream's older voucher arriving late) is an idempotent success that changes
//! nothing, not a 402 that kills that client's stream.

use alloy::signers::local::PrivateKeySigner;
use http::StatusCode;
use serde_json::json;
use tollgate::Amount;
use tollgate::client::SessionClient;
use tollgate::store::ChannelStore;

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

#[tokio::test(start_paused = true)]
async fn issue8_06_a_new_requests_upfront_voucher_is_accepted_when_earlier_asks_left_the_channel_ahead() {
    // A stream asked far ahead of delivery and was paid; it ended. mppx's next request pays
    // one more unit up front (accepted + 1 unit), past `spent + reserved + ahead`: accepted,
    // since vouchers stay at most `ahead` apart (the capture-loss bound).
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let id = store_id(client.channel_id().unwrap());
    let far = 100 * PRICE;
    f.store.ask(&id, tollgate::store::AskId::new(), Amount::new(far), std::time::Duration::from_secs(5)).await.unwrap();
    assert_eq!(f.post(client.voucher(&c, far).unwrap()).await.status(), StatusCode::NO_CONTENT);
    tokio::time::advance(std::time::Duration::from_secs(6)).await;
    let next = f.post(client.voucher(&c, far + PRICE).unwrap()).await;
    assert_eq!(next.status(), StatusCode::NO_CONTENT, "{}", problem_type(next).await);
    assert_eq!(f.store.load(&id).await.unwrap().unwrap().accepted, Amount::new(far + PRICE));
    // A jump past the bound from the accepted amount is still refused.
    let jump = f.post(client.voucher(&c, far + 30 * PRICE).unwrap()).await;
    assert_eq!(jump.status(), StatusCode::PAYMENT_REQUIRED);
}

#[tokio::test]
async fn issue8_06_a_voucher_answering_a_live_ask_is_not_refused_as_too_small() {
    // Two concurrent streams ask for amounts less than a unit apart; the payer answers both.
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let id = store_id(client.channel_id().unwrap());
    assert_eq!(f.post(client.voucher(&c, 5 * PRICE).unwrap()).await.status(), StatusCode::NO_CONTENT);
    f.store
        .ask(&id, tollgate::store::AskId::new(), Amount::new(5 * PRICE + 5), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let answer = f.post(client.voucher(&c, 5 * PRICE + 5).unwrap()).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{}", problem_type(answer).await);
    // Unasked, a raise below one unit is still refused.
    let small = f.post(client.voucher(&c, 5 * PRICE + 10).unwrap()).await;
    assert_eq!(problem_type(small).await, "session/delta-too-small");
}

#[tokio::test]
async fn a_small_voucher_while_a_stream_is_live_is_answered_not_refused() {
    // Two instances: a stream's ask was withdrawn (another stream's voucher covered it)
    // just before the voucher answering it landed. Refusing it as too small killed the
    // payer's honest stream (seen with mppx on two instances sharing Redis).
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let id = store_id(client.channel_id().unwrap());
    assert_eq!(f.post(client.voucher(&c, 5 * PRICE).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let live = f.store.reserve(&id, Amount::new(PRICE), Amount::new(PRICE)).await.unwrap();
    let small = f.post(client.voucher(&c, 5 * PRICE + 5).unwrap()).await;
    assert_eq!(small.status(), StatusCode::NO_CONTENT, "{}", problem_type(small).await);
    assert_eq!(f.store.load(&id).await.unwrap().unwrap().accepted, Amount::new(5 * PRICE), "answered, not accepted");
    f.store.release(&live, Amount::new(PRICE), 1).await.unwrap();
    // With no stream live it is spam again.
    let small = f.post(client.voucher(&c, 5 * PRICE + 10).unwrap()).await;
    assert_eq!(problem_type(small).await, "session/delta-too-small");
}
