//! Voucher verification vs raw secp256k1 public-key recovery with k256 (RustCrypto, alloy's
//! default) and libsecp256k1 (the `secp256k1` crate), on the same v2 voucher.
//!
//! `verify_voucher` includes the EIP-712 signing hash, the recovery, the address derivation
//! and the comparison; the raw benches recover the public key from a prepared signature and
//! prehash only. The target is `verify_voucher` within 1.1× of raw libsecp256k1 recovery.

use std::hint::black_box;

use alloy::primitives::{Address, B256, address};
use alloy::signers::SignerSync;
use alloy::signers::k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use alloy::signers::local::PrivateKeySigner;
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::method::tempo::{SessionProtocol, VoucherDomain, VoucherSignature, verify_voucher};

const RESERVE: Address = address!("4D50500000000000000000000000000000000000");

fn bench(c: &mut Criterion) {
    let signer: PrivateKeySigner =
        "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".parse().unwrap();
    let domain = VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE);
    let channel = B256::repeat_byte(0xab);
    let amount = 1_234_567u128;
    let hash = domain.signing_hash(channel, amount).unwrap();
    let bytes = signer.sign_hash_sync(&hash).unwrap().as_bytes();
    let hex = alloy::primitives::hex::encode_prefixed(bytes);
    let signature: VoucherSignature = hex.parse().unwrap();
    let expected = signer.address();

    let k256_sig = Signature::from_slice(&bytes[..64]).unwrap();
    let k256_id = RecoveryId::from_byte(bytes[64] - 27).unwrap();
    let secp_id = secp256k1::ecdsa::RecoveryId::try_from(i32::from(bytes[64] - 27)).unwrap();
    let secp_sig = secp256k1::ecdsa::RecoverableSignature::from_compact(&bytes[..64], secp_id).unwrap();

    let mut group = c.benchmark_group("voucher");
    group.bench_function("raw_k256_recover", |b| {
        b.iter(|| VerifyingKey::recover_from_prehash(black_box(hash.as_slice()), &k256_sig, k256_id).unwrap())
    });
    group.bench_function("raw_libsecp256k1_recover", |b| {
        b.iter(|| {
            let msg = secp256k1::Message::from_digest(black_box(hash.0));
            secp256k1::SECP256K1.recover_ecdsa(msg, &secp_sig).unwrap()
        })
    });
    group.bench_function("verify_voucher", |b| {
        b.iter(|| verify_voucher(&domain, black_box(channel), black_box(amount), &signature, expected).unwrap())
    });
    group.bench_function("signing_hash", |b| b.iter(|| domain.signing_hash(black_box(channel), black_box(amount))));
    group.bench_function("parse_signature_hex", |b| b.iter(|| black_box(hex.as_str()).parse::<VoucherSignature>()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
