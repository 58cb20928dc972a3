//! x402 on EVM, the method internals on anvil with our EIP-3009 / EIP-2612 token: payloads
//! signed by the real JS clients verify; every bad input is refused with its kind and claims
//! nothing; settlement on chain and through the official facilitator moves exactly what it
//! should, once, even when the RPC or the facilitator fails after acting.

#![cfg(feature = "x402")]

mod chain;
mod x402_support;

use alloy::primitives::{Address, U256};
use serde_json::{Value, json};
use tollgate::Amount;
use tollgate::method::tempo::RpcChain;
use tollgate::method::x402::settle::{PENDING_SHELF, SETTLED_SHELF};
use tollgate::method::x402::{
    EvmOffer, ExactPayload, Facilitator, OnChainSettler, Settle, ValueRule, X402ErrorKind, X402Verifier, claim_id,
};
use tollgate::store::{ChannelStore, MemoryStore};
use x402_support::{CHAIN_ID, FUNDS, FacilitatorProcess, FailingFront, NAME, VERSION, World, js_sign, unix_now};

fn verifier(world: &World, store: &MemoryStore) -> X402Verifier<RpcChain, MemoryStore> {
    X402Verifier::new(world.chain(), store.clone())
}

fn payload_of(payment: &Value) -> ExactPayload {
    serde_json::from_value(payment["payload"].clone()).expect("the client's payload has our shape")
}

/// The v2 requirement @x402/evm answers (CAIP-2 network, `amount`).
fn v2_requirement(offer: &EvmOffer) -> Value {
    json!({
        "scheme": "exact", "network": offer.network(), "amount": offer.amount().to_string(),
        "asset": offer.asset().to_checksum(None), "payTo": offer.pay_to().to_checksum(None),
        "maxTimeoutSeconds": offer.timeout_seconds(), "extra": offer.extra(),
    })
}

/// The v1 `accepts[0]` @x402/evm v1 and @libertai/x402 answer (`maxAmountRequired`, v1 name).
fn v1_requirement(offer: &EvmOffer) -> Value {
    json!({
        "scheme": "exact", "network": "base", "maxAmountRequired": offer.amount().to_string(),
        "resource": "http://127.0.0.1/v1/chat/completions", "description": "", "mimeType": "application/json",
        "asset": offer.asset().to_checksum(None), "payTo": offer.pay_to().to_checksum(None),
        "maxTimeoutSeconds": offer.timeout_seconds(), "extra": offer.extra(),
    })
}

async fn assert_unclaimed(store: &MemoryStore, offer: &EvmOffer, payload: &ExactPayload) {
    let id = claim_id(offer, &payload.authorization);
    assert!(store.load(&id).await.unwrap().is_none(), "a refused payment claimed {id}");
}

#[tokio::test]
async fn payloads_signed_by_the_real_clients_verify_and_claim_their_value() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let verifier = verifier(&world, &store);
    let offer = world.offer(1_000);
    let cases = [
        ("x402-v2", v2_requirement(&offer), ValueRule::Equal, offer.clone()),
        ("x402-v1", v1_requirement(&offer), ValueRule::AtLeast, offer.clone()),
        ("libertai", v1_requirement(&offer), ValueRule::AtLeast, offer.clone()),
        ("libertai-permit", v1_requirement(&world.permit_offer(1_000)), ValueRule::Equal, world.permit_offer(1_000)),
    ];
    for (client, requirement, rule, offer) in cases {
        let payment = js_sign(client, &requirement, &world.payer, &world.rpc_url()).await;
        let payload = payload_of(&payment);
        let verified = verifier.verify(&offer, &payload, rule).await.unwrap_or_else(|e| panic!("{client}: {e}"));
        assert_eq!(verified.payer(), world.payer.address(), "{client}");
        assert_eq!(verified.value(), Amount::new(1_000), "{client}");
        let claim = store.load(verified.claim()).await.unwrap().expect("claimed");
        assert_eq!(claim.available(), Amount::new(1_000), "{client}: the claim funds the response");
        // The same payment again: refused, on this verifier and a second one sharing the store.
        let again = verifier.verify(&offer, &payload, rule).await.unwrap_err();
        assert_eq!(again.kind(), X402ErrorKind::NonceUsed, "{client}");
        let other = X402Verifier::new(world.chain(), store.clone());
        assert_eq!(other.verify(&offer, &payload, rule).await.unwrap_err().kind(), X402ErrorKind::NonceUsed);
    }
    // @libertai/x402 labels its payment x402Version 2 with a v1 shape (no `accepted`).
    let raw = js_sign("libertai", &v1_requirement(&offer), &world.payer, &world.rpc_url()).await;
    assert_eq!(raw["x402Version"], 2);
    assert!(raw.get("accepted").is_none());
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_kind_and_claims_nothing() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let verifier = verifier(&world, &store);
    let offer = world.offer(1_000);
    let payer = world.payer.address();
    let now = unix_now();

    let mut cases: Vec<(&str, ExactPayload, X402ErrorKind)> = Vec::new();
    // Signed by someone else in the payer's name.
    cases.push((
        "forged",
        world.sign_transfer(&world.poor, world.authorization(payer, 1_000)),
        X402ErrorKind::InvalidSignature,
    ));
    for (name, version, chain) in [("Other USD", VERSION, CHAIN_ID), (NAME, "1", CHAIN_ID), (NAME, VERSION, 1)] {
        let signed = world.sign_transfer_in(&world.payer, world.authorization(payer, 1_000), name, version, chain);
        cases.push(("wrong domain", signed, X402ErrorKind::InvalidSignature));
    }
    let mut elsewhere = world.authorization(payer, 1_000);
    elsewhere.to = Address::repeat_byte(0xee);
    cases.push(("wrong payTo", world.sign_transfer(&world.payer, elsewhere), X402ErrorKind::RecipientMismatch));
    cases.push((
        "lower value",
        world.sign_transfer(&world.payer, world.authorization(payer, 999)),
        X402ErrorKind::ValueMismatch,
    ));
    cases.push((
        "higher value under v2",
        world.sign_transfer(&world.payer, world.authorization(payer, 1_001)),
        X402ErrorKind::ValueMismatch,
    ));
    let mut expired = world.authorization(payer, 1_000);
    expired.valid_before = now - 1;
    cases.push(("expired", world.sign_transfer(&world.payer, expired), X402ErrorKind::Expired));
    let mut closing = world.authorization(payer, 1_000);
    closing.valid_before = now + 5;
    cases.push(("expires before it can settle", world.sign_transfer(&world.payer, closing), X402ErrorKind::Expired));
    let mut endless = world.authorization(payer, 1_000);
    endless.valid_before = u64::MAX;
    cases.push(("valid for ever", world.sign_transfer(&world.payer, endless), X402ErrorKind::Expired));
    let mut long = world.authorization(payer, 1_000);
    long.valid_before = now + tollgate::method::x402::DEFAULT_MAX_TIMEOUT_SECONDS + 3_600;
    cases.push(("valid past the offer's timeout", world.sign_transfer(&world.payer, long), X402ErrorKind::Expired));
    let mut early = world.authorization(payer, 1_000);
    early.valid_after = now + 60;
    cases.push(("not yet valid", world.sign_transfer(&world.payer, early), X402ErrorKind::NotYetValid));
    let poor = world.poor.address();
    cases.push((
        "insufficient balance",
        world.sign_transfer(&world.poor, world.authorization(poor, 1_000)),
        X402ErrorKind::InsufficientFunds,
    ));
    // The malleable twin of a valid signature (high s, v flipped).
    let mut twin = world.sign_transfer(&world.payer, world.authorization(payer, 1_000));
    let mut bytes = twin.signature.to_vec();
    let n = U256::from_str_radix("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16).unwrap();
    let s = n - U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&s.to_be_bytes::<32>());
    bytes[64] = if bytes[64] == 27 { 28 } else { 27 };
    twin.signature = bytes.into();
    cases.push(("high s", twin, X402ErrorKind::InvalidSignature));

    for (what, payload, kind) in cases {
        let refused = verifier.verify(&offer, &payload, ValueRule::Equal).await.unwrap_err();
        assert_eq!(refused.kind(), kind, "{what}: {refused}");
        assert_unclaimed(&store, &offer, &payload).await;
    }
    // v1's "at least": a higher value pays; a lower one still does not.
    let higher = world.sign_transfer(&world.payer, world.authorization(payer, 1_001));
    verifier.verify(&offer, &higher, ValueRule::AtLeast).await.unwrap();
    let lower = world.sign_transfer(&world.payer, world.authorization(payer, 999));
    assert_eq!(
        verifier.verify(&offer, &lower, ValueRule::AtLeast).await.unwrap_err().kind(),
        X402ErrorKind::ValueMismatch
    );
    assert_eq!(world.balance(world.payee.address()).await, 0, "verification moves nothing");
}

#[tokio::test]
async fn a_nonce_used_on_chain_is_refused_by_a_fresh_store() {
    let world = World::new().await;
    let offer = world.offer(1_000);
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let first = MemoryStore::new();
    let verified = verifier(&world, &first).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    OnChainSettler::new(world.chain(), first.clone()).settle(&verified, Amount::new(1_000)).await.unwrap();
    // An instance that never saw the claim: the token's authorizationState refuses it.
    let fresh = MemoryStore::new();
    let refused = verifier(&world, &fresh).verify(&offer, &payload, ValueRule::Equal).await.unwrap_err();
    assert_eq!(refused.kind(), X402ErrorKind::NonceUsed);
    assert_unclaimed(&fresh, &offer, &payload).await;
}

#[tokio::test]
async fn racing_verifiers_sharing_a_store_claim_one_payment_once() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.offer(1_000);
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let v: Vec<_> = (0..4).map(|_| X402Verifier::new(world.chain(), store.clone())).collect();
    let rule = ValueRule::Equal;
    // Polled together on one task: their store steps interleave.
    let (a, b, c, d) = tokio::join!(
        v[0].verify(&offer, &payload, rule),
        v[1].verify(&offer, &payload, rule),
        v[2].verify(&offer, &payload, rule),
        v[3].verify(&offer, &payload, rule),
    );
    let outcomes = [a, b, c, d];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "exactly one instance gets the payment");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(refused.kind(), X402ErrorKind::NonceUsed);
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_replay_is_refused_by_a_second_instance_on_redis() {
    use tollgate::store::RedisStore;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("tollgate-x402-{}-{}", std::process::id(), unix_now());
    let (one, two) = match (RedisStore::connect(&url).await, RedisStore::connect(&url).await) {
        (Ok(one), Ok(two)) => (one.with_prefix(&prefix), two.with_prefix(&prefix)),
        (Err(e), _) | (_, Err(e)) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "no Redis at {url} under CI: {e}");
            eprintln!("skipped: no Redis at {url}: {e}");
            return;
        }
    };
    let world = World::new().await;
    let offer = world.offer(1_000);
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let verified = X402Verifier::new(world.chain(), one).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let replay = X402Verifier::new(world.chain(), two.clone()).verify(&offer, &payload, ValueRule::Equal).await;
    assert_eq!(replay.unwrap_err().kind(), X402ErrorKind::NonceUsed);
    assert_eq!(two.load(verified.claim()).await.unwrap().unwrap().available(), Amount::new(1_000));
}

#[tokio::test]
async fn on_chain_exact_settlement_pays_the_value_once() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.offer(1_000);
    let payment = js_sign("x402-v2", &v2_requirement(&offer), &world.payer, &world.rpc_url()).await;
    let verified = verifier(&world, &store).verify(&offer, &payload_of(&payment), ValueRule::Equal).await.unwrap();
    let settler = OnChainSettler::new(world.chain(), store.clone());
    assert_eq!(
        settler.settle(&verified, Amount::new(999)).await.unwrap_err().kind(),
        X402ErrorKind::InvalidPayload,
        "EIP-3009 moves the signed value, nothing else"
    );
    let settled = settler.settle(&verified, Amount::new(1_000)).await.unwrap();
    assert_eq!((settled.amount, settled.payer), (Amount::new(1_000), world.payer.address()));
    assert!(settled.transaction.is_some());
    assert_eq!(settled.network, "eip155:8453");
    assert_eq!(world.balance(world.payee.address()).await, 1_000);
    assert_eq!(world.balance(world.payer.address()).await, FUNDS - 1_000);
    // Settling again returns the record; no second transaction.
    let sent = world.sent(world.payee.address()).await;
    assert_eq!(settler.settle(&verified, Amount::new(1_000)).await.unwrap(), settled);
    assert_eq!(world.sent(world.payee.address()).await, sent);
    assert_eq!(world.balance(world.payee.address()).await, 1_000);
    assert!(store.kept(verified.claim(), PENDING_SHELF).await.unwrap().is_empty());
    assert_eq!(store.kept(verified.claim(), SETTLED_SHELF).await.unwrap().len(), 1);
}

#[tokio::test]
async fn on_chain_permit_settlement_pays_exactly_the_actual_and_zero_sends_nothing() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.permit_offer(5_000);
    let (payee, payer) = (world.payee.address(), world.payer.address());
    let settler = OnChainSettler::new(world.chain(), store.clone());

    // Signed by @libertai/x402's Permit path (it reads nonces(owner) from the chain).
    let payment = js_sign("libertai-permit", &v1_requirement(&offer), &world.payer, &world.rpc_url()).await;
    let verified = verifier(&world, &store).verify(&offer, &payload_of(&payment), ValueRule::Equal).await.unwrap();
    assert_eq!(
        settler.settle(&verified, Amount::new(5_001)).await.unwrap_err().kind(),
        X402ErrorKind::InvalidPayload,
        "never more than the permit allows"
    );
    let settled = settler.settle(&verified, Amount::new(1_234)).await.unwrap();
    assert_eq!(settled.amount, Amount::new(1_234));
    assert_eq!(world.balance(payee).await, 1_234);
    assert_eq!(world.balance(payer).await, FUNDS - 1_234);
    assert_eq!(world.allowance(payer, payee).await, 5_000 - 1_234);
    assert_eq!(settler.settle(&verified, Amount::new(1_234)).await.unwrap(), settled, "settled once");
    assert_eq!(world.balance(payee).await, 1_234);

    // The next permit (nonce 1): nothing delivered, nothing sent.
    let payment = js_sign("libertai-permit", &v1_requirement(&offer), &world.payer, &world.rpc_url()).await;
    let verified = verifier(&world, &store).verify(&offer, &payload_of(&payment), ValueRule::Equal).await.unwrap();
    let sent = world.sent(payee).await;
    let zero = settler.settle(&verified, Amount::ZERO).await.unwrap();
    assert_eq!((zero.amount, zero.transaction), (Amount::ZERO, None));
    assert_eq!(world.sent(payee).await, sent, "no transaction for nothing");
    assert_eq!(world.balance(payee).await, 1_234);
    assert_eq!(world.permit_nonce(payer).await, U256::from(1), "the unused permit was not submitted");
}

#[tokio::test]
async fn a_permit_with_a_stale_or_future_nonce_or_past_deadline_is_refused() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let verifier = verifier(&world, &store);
    let offer = world.permit_offer(5_000);
    let deadline = unix_now() + 300;
    let future = x402_support::sign_permit(&world, &world.payer, 5_000, U256::from(7), deadline);
    assert_eq!(
        verifier.verify(&offer, &future, ValueRule::Equal).await.unwrap_err().kind(),
        X402ErrorKind::NonceMismatch
    );
    let late = x402_support::sign_permit(&world, &world.payer, 5_000, U256::ZERO, unix_now() - 1);
    assert_eq!(verifier.verify(&offer, &late, ValueRule::Equal).await.unwrap_err().kind(), X402ErrorKind::Expired);
    let poor = x402_support::sign_permit(&world, &world.poor, 5_000, U256::ZERO, deadline);
    assert_eq!(
        verifier.verify(&offer, &poor, ValueRule::Equal).await.unwrap_err().kind(),
        X402ErrorKind::InsufficientFunds
    );
    // A transfer signature offered where a permit is asked: not the payer's permit.
    let transfer = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 5_000));
    assert_eq!(
        verifier.verify(&offer, &transfer, ValueRule::Equal).await.unwrap_err().kind(),
        X402ErrorKind::InvalidSignature
    );
    for payload in [&future, &late, &poor, &transfer] {
        assert_unclaimed(&store, &offer, payload).await;
    }
    // Nonce 0 is good; once settled, the same permit is stale everywhere.
    let good = x402_support::sign_permit(&world, &world.payer, 5_000, U256::ZERO, deadline);
    let verified = verifier.verify(&offer, &good, ValueRule::Equal).await.unwrap();
    OnChainSettler::new(world.chain(), store.clone()).settle(&verified, Amount::new(10)).await.unwrap();
    let fresh = MemoryStore::new();
    let stale = X402Verifier::new(world.chain(), fresh.clone()).verify(&offer, &good, ValueRule::Equal).await;
    assert_eq!(stale.unwrap_err().kind(), X402ErrorKind::NonceUsed);
}

#[tokio::test]
async fn the_official_facilitator_settles_the_value() {
    let world = World::new().await;
    let gas_payer = x402_support::FacilitatorProcess::start(&world, &chain::dev_signer(&world.anvil, 4)).await;
    let store = MemoryStore::new();
    let offer = world.offer(1_000);
    let facilitator = Facilitator::new(gas_payer.url.clone(), world.chain(), store.clone()).unwrap();
    let supported = facilitator.supported().await.unwrap();
    assert!(supported.kinds.iter().any(|k| k.scheme == "exact" && k.network == "eip155:8453"));

    let payment = js_sign("x402-v2", &v2_requirement(&offer), &world.payer, &world.rpc_url()).await;
    let payload = payload_of(&payment);
    facilitator.verify(&offer, &payload).await.unwrap();
    let forged = world.sign_transfer(&world.poor, world.authorization(world.payer.address(), 1_000));
    assert_eq!(facilitator.verify(&offer, &forged).await.unwrap_err().kind(), X402ErrorKind::InvalidPayload);

    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let settled = facilitator.settle(&verified, Amount::new(1_000)).await.unwrap();
    assert!(settled.transaction.is_some());
    assert_eq!(world.balance(world.payee.address()).await, 1_000);
    assert_eq!(facilitator.settle(&verified, Amount::new(1_000)).await.unwrap(), settled);
    assert_eq!(world.balance(world.payee.address()).await, 1_000, "settled once");
}

#[tokio::test]
async fn a_facilitator_answer_lost_after_settling_is_confirmed_by_the_nonce_not_paid_twice() {
    let world = World::new().await;
    let process = FacilitatorProcess::start(&world, &chain::dev_signer(&world.anvil, 4)).await;
    let front = FailingFront::start(&process.url, "/settle", 0, true).await;
    let store = MemoryStore::new();
    let offer = world.offer(1_000);
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let facilitator = Facilitator::new(front.url(), world.chain(), store.clone()).unwrap();
    let settled = facilitator.settle(&verified, Amount::new(1_000)).await.unwrap();
    assert_eq!(front.failed(), 1);
    assert_eq!(settled.transaction, None, "known from the token's state, not from the lost answer");
    assert_eq!(world.balance(world.payee.address()).await, 1_000);
    assert_eq!(world.balance(world.payer.address()).await, FUNDS - 1_000, "paid once");
}

#[tokio::test]
async fn an_rpc_that_fails_after_broadcast_is_confirmed_by_the_nonce_not_paid_twice() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.offer(1_000);
    // The node mines the transfer; the answer is lost.
    let front = FailingFront::start(&world.rpc_url(), "eth_sendRawTransaction", 0, true).await;
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let settled = OnChainSettler::new(world.chain_at(&front.url()), store.clone())
        .settle(&verified, Amount::new(1_000))
        .await
        .unwrap();
    assert_eq!((front.failed(), settled.transaction), (1, None));
    assert_eq!(world.balance(world.payee.address()).await, 1_000);
    assert_eq!(world.sent(world.payee.address()).await, 1, "confirmed, not resent");

    // The node never got it: the nonce is unused, so it is sent again, once.
    let front = FailingFront::start(&world.rpc_url(), "eth_sendRawTransaction", 0, false).await;
    let payload = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), 1_000));
    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let settled = OnChainSettler::new(world.chain_at(&front.url()), store.clone())
        .settle(&verified, Amount::new(1_000))
        .await
        .unwrap();
    assert_eq!(front.failed(), 1);
    assert!(settled.transaction.is_some());
    assert_eq!(world.balance(world.payee.address()).await, 2_000);
    assert!(world.authorization_used(world.payer.address(), payload.authorization.nonce).await);
}

#[tokio::test]
async fn a_permit_pull_lost_after_broadcast_is_confirmed_by_the_allowance_not_pulled_twice() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.permit_offer(5_000);
    let (payee, payer) = (world.payee.address(), world.payer.address());
    // Send 0 is the permit, send 1 the transferFrom: its answer is lost after it was mined.
    let front = FailingFront::start(&world.rpc_url(), "eth_sendRawTransaction", 1, true).await;
    let payload = x402_support::sign_permit(&world, &world.payer, 5_000, U256::ZERO, unix_now() + 300);
    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let settler = OnChainSettler::new(world.chain_at(&front.url()), store.clone());
    let settled = settler.settle(&verified, Amount::new(2_000)).await.unwrap();
    assert_eq!((front.failed(), settled.amount, settled.transaction), (1, Amount::new(2_000), None));
    assert_eq!(world.balance(payee).await, 2_000);
    assert_eq!(world.allowance(payer, payee).await, 3_000, "pulled once");
    assert_eq!(settler.settle(&verified, Amount::new(2_000)).await.unwrap(), settled);
    assert_eq!(world.balance(payee).await, 2_000);
}
