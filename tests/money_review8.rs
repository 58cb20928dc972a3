//! An attacker's review of issue 8's money changes. A test marked
//! `#[ignore = "FINDING: …"]` fails on this code; the reason says what is lost and where.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use http::StatusCode;
use http_body_util::BodyExt;
use money_support::*;
use tollgate::Amount;
use tollgate::client::SessionClient;

/// The ladder: `check_voucher` (src/method/tempo/session/voucher.rs, `limit = … .max(accepted
/// + ahead)`) lets each voucher rise `ahead` over the accepted one, with nothing delivered, so
/// a v1 payer walks `accepted` far above delivery in steps of `ahead`. The VoucherBook
/// (book.rs, MAX_VOUCHERS = 256) then thins the ladder: gaps grow to ~accepted/256. The payer
/// consumes from that headroom (no asks) and the close (capture.rs, v1: highest voucher at or
/// below delivered) captures a voucher up to a whole gap below delivery: the payee loses up to
/// ~accepted/256 per channel, not the documented `max_voucher_ahead`.
///
/// Once failing (captured 995,000 of 1,003,000 delivered: 8× the bound); a voucher may now rise
/// over the accepted amount only while the book holds every voucher above delivery, so the
/// ladder stops before it would be thinned.
#[tokio::test]
async fn review8_v1_ladder_then_consume_close_captures_what_was_delivered() {
    const AHEAD: u128 = PRICE;
    let f = Fixture::with(4, |c| c.max_voucher_ahead(Amount::new(AHEAD)), |s| s);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 5_000_000).await;
    let channel = client.channel_id().unwrap();
    let mut accepted = client.cumulative();
    let mut refused = false;
    for _ in 0..2_000 {
        let auth = client.voucher(&c, accepted + AHEAD).unwrap();
        if f.post(auth).await.status() != StatusCode::NO_CONTENT {
            refused = true;
            break;
        }
        accepted += AHEAD;
    }
    assert!(refused, "a ladder far ahead of delivery is stopped");
    // Consume from the headroom: a request with the highest accepted (idempotent) voucher,
    // signed by a client that forgot the refused one.
    let mut client = SessionClient::with_channel(payer.clone(), &c, channel, accepted).unwrap();
    let auth = client.voucher(&c, accepted).unwrap();
    let response = f.get(1_003, auth).await;
    if response.status() != StatusCode::OK {
        panic!("{}", money_support::text(response).await);
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert!(delivered > 0, "served from the ladder's headroom: {}", &text[..text.len().min(300)]);

    let response = f.post(client.close(&c, accepted).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert!(on_chain.settled <= delivered, "never more than delivered");
    assert!(
        delivered - on_chain.settled <= AHEAD,
        "captured {} of {delivered} delivered (documented loss at most {AHEAD})",
        on_chain.settled
    );
}
