use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::{ClientError, SessionClient, TxParams};
use crate::wire::mpp::Challenge;

fn challenge() -> Challenge {
    let request = json!({
        "amount": "10",
        "currency": "0x20c0000000000000000000000000000000000000",
        "recipient": "0x1111111111111111111111111111111111111111",
        "methodDetails": {"chainId": 4242, "escrowContract": "0x00000000000000000000000000000000e5c70001"},
    });
    Challenge {
        id: "id".into(),
        realm: "api.test".into(),
        method: "tempo".into(),
        intent: "session".into(),
        request: URL_SAFE_NO_PAD.encode(request.to_string()),
        description: None,
        digest: None,
        expires: None,
        opaque: None,
    }
}

const TX: TxParams = TxParams { nonce: 0, max_fee_per_gas: 1, gas_limit: 1_000_000 };

fn need(required: u128) -> String {
    json!({"requiredCumulative": required.to_string()}).to_string()
}

fn over(result: Result<http::HeaderValue, ClientError>) -> (u128, u128) {
    match result {
        Err(ClientError::OverSpendCap { requested, allowed }) => (requested, allowed),
        other => panic!("expected OverSpendCap, got {other:?}"),
    }
}

#[test]
fn scenario_14_the_client_signs_no_voucher_beyond_its_caps_or_the_deposit() {
    let c = challenge();
    let mut client = SessionClient::new(PrivateKeySigner::random(), &c).unwrap().max_spend(500).max_step(100);
    client.open(&c, 1_000, B256::ZERO, TX).unwrap();
    assert_eq!(client.cumulative(), 10);

    // A server asking for more than one step above the last voucher is refused.
    assert_eq!(over(client.answer_need_voucher(&c, &need(111))), (111, 110));
    assert_eq!(client.cumulative(), 10, "nothing was signed");
    client.answer_need_voucher(&c, &need(110)).unwrap();
    for step in 1..=3 {
        client.voucher(&c, 110 + step * 100).unwrap();
    }
    assert_eq!(client.cumulative(), 410);
    // The total cap: 500, not 510.
    assert_eq!(over(client.voucher(&c, 510)), (510, 500));
    client.voucher(&c, 500).unwrap();
    assert_eq!(over(client.close(&c, 501)), (501, 500));
    // Re-signing what was already signed is fine.
    client.close(&c, 500).unwrap();
}

#[test]
fn scenario_14_no_voucher_above_the_deposit_even_without_caps() {
    let c = challenge();
    let mut client = SessionClient::new(PrivateKeySigner::random(), &c).unwrap();
    client.open(&c, 1_000, B256::ZERO, TX).unwrap();
    assert_eq!(over(client.answer_need_voucher(&c, &need(u128::MAX))), (u128::MAX, 1_000));
    client.voucher(&c, 1_000).unwrap();
    client.top_up(&c, 500, TX).unwrap();
    client.voucher(&c, 1_500).unwrap();
    assert_eq!(over(client.voucher(&c, 1_501)), (1_501, 1_500));

    // A client restored on an open channel learns the deposit from its caller.
    let channel = client.channel_id().unwrap();
    let mut restored =
        SessionClient::with_channel(PrivateKeySigner::random(), &c, channel, 100).unwrap().with_deposit(200);
    assert_eq!(over(restored.voucher(&c, 201)), (201, 200));
    restored.voucher(&c, 200).unwrap();

    // An open whose first voucher is over the caps is refused before signing.
    let mut tiny = SessionClient::new(PrivateKeySigner::random(), &c).unwrap().max_spend(5);
    assert_eq!(over(tiny.open(&c, 1_000, B256::ZERO, TX)), (10, 5));
    assert_eq!(tiny.channel_id(), None);
}
