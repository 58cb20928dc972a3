//! Money safety of Tempo sessions (issue 7), on the fake chain and the memory store: every
//! attack or failure of the issue as a regression test, named after its scenario.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use alloy::primitives::Address;
use fake_chain::Kind;
use http::StatusCode;
use money_support::*;
use tollgate::Amount;

#[tokio::test]
async fn fake_chain_runs_open_stream_close_with_exact_balances() {
    let f = Fixture::v1(256);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.chain.balance(f.chain.escrow()), 100_000);
    assert_eq!(f.chain.calls(Kind::Broadcast), 1);

    let (text, _) = f.stream_paying(20, &mut client, &c).await;
    assert_eq!(text.matches("data: tok").count(), 20);
    let spent = PRICE * 20;
    assert_eq!(f.state(channel).await.spent, Amount::new(spent));

    let close = client.close(&c, spent).unwrap();
    let response = f.post(close).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, spent);
    assert_eq!(f.chain.balance(f.payee), spent);
    assert_eq!(f.chain.balance(payer.address()), FUNDS - spent);
    assert_eq!(f.chain.balance(f.chain.escrow()), 0);
    let _ = Address::ZERO;
}
