//! x402 `exact` offline verification vs raw libsecp256k1 public-key recovery, paired in one
//! run on the same EIP-3009 authorization.
//!
//! `x402_check` is [`check`]: signature parse (low-s), the EIP-712 digest under the offer's
//! precomputed domain, recovery, the address derivation and the recipient / value / window
//! checks (it also copies the payload into its result). `raw_libsecp256k1_recover` recovers
//! the public key from a prepared signature and digest only. No chain, no store.

use std::hint::black_box;

use alloy::primitives::{Address, B256, U256, address};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolStruct, eip712_domain};
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::Amount;
use tollgate::method::x402::{Authorization, EvmOffer, ExactPayload, ValueRule, check};

const USDC: Address = address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");

alloy::sol! {
    struct TransferWithAuthorization { address from; address to; uint256 value; uint256 validAfter; uint256 validBefore; bytes32 nonce; }
}

fn bench(c: &mut Criterion) {
    let signer: PrivateKeySigner =
        "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".parse().unwrap();
    let pay_to = address!("209693Bc6afc0C5328bA36FaF03C514EF312287C");
    let offer = EvmOffer::new(8453, USDC, "USD Coin", "2", pay_to, Amount::new(10_000));
    let now = 1_800_000_000;
    let authorization = Authorization {
        from: signer.address(),
        to: pay_to,
        value: U256::from(10_000),
        valid_after: 0,
        valid_before: now + 300,
        nonce: B256::repeat_byte(0x5a),
    };
    let domain = eip712_domain! { name: "USD Coin", version: "2", chain_id: 8453, verifying_contract: USDC, };
    let message = TransferWithAuthorization {
        from: authorization.from,
        to: authorization.to,
        value: authorization.value,
        validAfter: U256::from(authorization.valid_after),
        validBefore: U256::from(authorization.valid_before),
        nonce: authorization.nonce,
    };
    let digest = message.eip712_signing_hash(&domain);
    let bytes = signer.sign_hash_sync(&digest).unwrap().as_bytes();
    let payload = ExactPayload { signature: bytes.to_vec().into(), authorization };
    check(&offer, &payload, ValueRule::Equal, now, 30).expect("the bench payload verifies");

    let secp_id = secp256k1::ecdsa::RecoveryId::try_from(i32::from(bytes[64] - 27)).unwrap();
    let secp_sig = secp256k1::ecdsa::RecoverableSignature::from_compact(&bytes[..64], secp_id).unwrap();

    let mut group = c.benchmark_group("x402_verify");
    group.bench_function("raw_libsecp256k1_recover", |b| {
        b.iter(|| {
            let msg = secp256k1::Message::from_digest(black_box(digest.0));
            secp256k1::SECP256K1.recover_ecdsa(msg, &secp_sig).unwrap()
        })
    });
    group.bench_function("x402_check", |b| {
        b.iter(|| check(&offer, black_box(&payload), ValueRule::Equal, black_box(now), 30).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
