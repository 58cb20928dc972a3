//! Golden vectors and sign/verify round trips for vouchers (tests only).

use alloy::primitives::{Address, B256, U256, address, b256, hex};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

use super::{SessionProtocol, SignatureError, VoucherDomain, VoucherSignature, VoucherSignatureKind, verify_voucher};

const RESERVE: Address = address!("4D50500000000000000000000000000000000000");
const V1_ESCROW: Address = address!("e1c4d3dce17bc111181ddf716f75bae49e61a336");
const K1_N: B256 = b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
const P256_N: B256 = b256!("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

/// viem 2.52.2 `TempoAccount.fromWebCryptoP256` + `signVoucher` (mpp-rs
/// `verifies_accounts_sdk_webcrypto_p256_voucher_vector`): channel 32 × 0xab, amount
/// 1234567, chain 4217, the reserve precompile.
const P256_VOUCHER: &str = "0x01a8e4059a7c38ba2fc568b9d0b5d5c6e4f7c80e2e3e94905977923457b14e8a727a45b06c3c3c725536c9f0383e1c85995a1ddb8a2018c308ad0762a1fb6dc24b3ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388d01";
const P256_SIGNER: Address = address!("f0159a522607cd6ab1097204c9fafb7bbe6afb6c");

fn sign(signer: &PrivateKeySigner, domain: &VoucherDomain, channel: B256, amount: u128) -> [u8; 65] {
    let hash = domain.signing_hash(channel, amount).unwrap();
    signer.sign_hash_sync(&hash).unwrap().as_bytes()
}

fn signer() -> PrivateKeySigner {
    "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".parse().unwrap()
}

#[test]
fn v2_signing_hash_matches_the_golden_vector() {
    let domain = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
    let channel = b256!("57e629663a75a0a49f8dc65c9f62ee38ab5dfa9124d7316d160766e4ecbc1227");
    assert_eq!(
        domain.signing_hash(channel, 50).unwrap(),
        b256!("41a23f1573d302acae1dcec60d237f78d2514768faf670ef27458931c38b5db3")
    );
}

#[test]
fn round_trips_for_both_protocols() {
    let signer = signer();
    let channel = B256::repeat_byte(0xcd);
    for domain in [
        VoucherDomain::new(SessionProtocol::V1, 42431, V1_ESCROW),
        VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE),
    ] {
        let bytes = sign(&signer, &domain, channel, 1_000);
        let text = hex::encode_prefixed(bytes);
        let sig: VoucherSignature = text.parse().unwrap();
        assert_eq!(sig.kind(), VoucherSignatureKind::Secp256k1);
        assert_eq!(sig.to_string(), text, "re-encoding is the input");
        assert_eq!(verify_voucher(&domain, channel, 1_000, &sig, signer.address()), Ok(()));
        assert!(matches!(
            verify_voucher(&domain, channel, 1_001, &sig, signer.address()),
            Err(SignatureError::Mismatch { .. })
        ));
        let upper = format!("0x{}", hex::encode_upper(bytes));
        assert_eq!(upper.parse::<VoucherSignature>(), Ok(sig), "hex case is not significant");
    }
}

#[test]
fn the_two_domains_do_not_cross_verify() {
    let signer = signer();
    let v1 = VoucherDomain::new(SessionProtocol::V1, 4217, RESERVE);
    let v2 = VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE);
    let sig = VoucherSignature::from_bytes(&sign(&signer, &v1, B256::ZERO, 7)).unwrap();
    assert!(matches!(verify_voucher(&v2, B256::ZERO, 7, &sig, signer.address()), Err(SignatureError::Mismatch { .. })));
}

#[test]
fn a_mismatch_reports_who_signed() {
    let (signer, other) = (signer(), PrivateKeySigner::random());
    let domain = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
    let sig = VoucherSignature::from_bytes(&sign(&signer, &domain, B256::ZERO, 5)).unwrap();
    assert_eq!(
        verify_voucher(&domain, B256::ZERO, 5, &sig, other.address()),
        Err(SignatureError::Mismatch { recovered: signer.address(), expected: other.address() })
    );
}

#[test]
fn high_s_twins_are_rejected() {
    let signer = signer();
    let domain = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
    let mut bytes = sign(&signer, &domain, B256::ZERO, 9);
    let s = U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&(U256::from_be_bytes(K1_N.0) - s).to_be_bytes::<32>());
    bytes[64] ^= 27 ^ 28;
    // The twin is a valid signature by the same key (alloy normalizes it)…
    let twin = alloy::primitives::Signature::try_from(&bytes[..]).unwrap();
    let hash = domain.signing_hash(B256::ZERO, 9).unwrap();
    assert_eq!(twin.recover_address_from_prehash(&hash).unwrap(), signer.address());
    // …but not in low-s form.
    assert_eq!(VoucherSignature::from_bytes(&bytes), Err(SignatureError::HighS));
}

#[test]
fn non_canonical_and_malformed_encodings_are_rejected() {
    let signer = signer();
    let domain = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
    let good = sign(&signer, &domain, B256::ZERO, 3);
    let with_v = |v: u8| {
        let mut bytes = good;
        bytes[64] = v;
        VoucherSignature::from_bytes(&bytes)
    };
    assert_eq!(with_v(good[64] - 27), Err(SignatureError::NotCanonical));
    assert_eq!(with_v(29), Err(SignatureError::InvalidRecoveryId { v: 29 }));
    assert_eq!(with_v(37), Err(SignatureError::InvalidRecoveryId { v: 37 }));
    assert_eq!(VoucherSignature::from_bytes(&good[..64]), Err(SignatureError::NotCanonical));
    let mut long = [0u8; 66];
    long[..65].copy_from_slice(&good);
    assert_eq!(VoucherSignature::from_bytes(&long), Err(SignatureError::Malformed { len: 66 }));
    assert_eq!(VoucherSignature::from_bytes(&[]), Err(SignatureError::Malformed { len: 0 }));
    let text = hex::encode_prefixed(good);
    assert_eq!(VoucherSignature::from_hex(&text[2..]), Err(SignatureError::InvalidHex), "no 0x");
    assert_eq!(VoucherSignature::from_hex(&text[..text.len() - 1]), Err(SignatureError::InvalidHex), "odd");
    assert_eq!(VoucherSignature::from_hex(&format!("{}g", &text[..text.len() - 1])), Err(SignatureError::InvalidHex));
    assert_eq!(VoucherSignature::from_hex(&format!("{text}00")), Err(SignatureError::Malformed { len: 66 }));
    assert_eq!(VoucherSignature::from_hex(&text[..130]), Err(SignatureError::NotCanonical), "EIP-2098 length");
    assert_eq!(VoucherSignature::from_hex("0x"), Err(SignatureError::Malformed { len: 0 }));
}

#[test]
fn scalars_must_be_in_range() {
    let mut bytes = [0u8; 65];
    bytes[64] = 27;
    bytes[63] = 1;
    assert_eq!(VoucherSignature::from_bytes(&bytes), Err(SignatureError::ScalarOutOfRange), "r = 0");
    bytes[..32].copy_from_slice(K1_N.as_slice());
    assert_eq!(VoucherSignature::from_bytes(&bytes), Err(SignatureError::ScalarOutOfRange), "r = n");
    bytes[31] = 0x40;
    bytes[32..64].fill(0);
    assert_eq!(VoucherSignature::from_bytes(&bytes), Err(SignatureError::ScalarOutOfRange), "s = 0");
}

#[test]
fn the_p256_vector_verifies_under_v2_only() {
    let sig: VoucherSignature = P256_VOUCHER.parse().unwrap();
    assert_eq!(sig.kind(), VoucherSignatureKind::P256);
    assert_eq!(sig.to_string(), P256_VOUCHER);
    let channel = B256::repeat_byte(0xab);
    let v2 = VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE);
    assert_eq!(verify_voucher(&v2, channel, 1_234_567, &sig, P256_SIGNER), Ok(()));
    assert_eq!(verify_voucher(&v2, channel, 1_234_568, &sig, P256_SIGNER), Err(SignatureError::Invalid));
    let v1 = VoucherDomain::new(SessionProtocol::V1, 4217, RESERVE);
    assert_eq!(
        verify_voucher(&v1, channel, 1_234_567, &sig, P256_SIGNER),
        Err(SignatureError::Unsupported { kind: VoucherSignatureKind::P256 })
    );
}

#[test]
fn p256_envelopes_are_checked_strictly() {
    let bytes = hex::decode(P256_VOUCHER).unwrap();
    let mut high = bytes.clone();
    let s = U256::from_be_slice(&high[33..65]);
    high[33..65].copy_from_slice(&(U256::from_be_bytes(P256_N.0) - s).to_be_bytes::<32>());
    assert_eq!(VoucherSignature::from_bytes(&high), Err(SignatureError::HighS));
    let mut flag = bytes.clone();
    flag[129] = 2;
    assert_eq!(VoucherSignature::from_bytes(&flag), Err(SignatureError::NotCanonical));
    let mut off_curve = bytes.clone();
    off_curve[100] ^= 1;
    let sig = VoucherSignature::from_bytes(&off_curve).unwrap();
    assert_eq!(sig.recover(B256::ZERO), Err(SignatureError::Invalid));
    assert_eq!(VoucherSignature::from_bytes(&bytes[..129]), Err(SignatureError::Malformed { len: 129 }));
}

#[test]
fn other_envelopes_are_unsupported() {
    let webauthn = [&[0x02][..], &[0u8; 200][..]].concat();
    assert_eq!(
        VoucherSignature::from_bytes(&webauthn),
        Err(SignatureError::Unsupported { kind: VoucherSignatureKind::WebAuthn })
    );
    let keychain = format!("0x03{}", "11".repeat(85));
    assert_eq!(
        VoucherSignature::from_hex(&keychain),
        Err(SignatureError::Unsupported { kind: VoucherSignatureKind::Keychain })
    );
}

#[test]
fn amounts_above_uint96_are_rejected_for_v2() {
    let signer = signer();
    let v1 = VoucherDomain::new(SessionProtocol::V1, 42431, V1_ESCROW);
    let amount = 1u128 << 96;
    let sig = VoucherSignature::from_bytes(&sign(&signer, &v1, B256::ZERO, amount)).unwrap();
    assert_eq!(verify_voucher(&v1, B256::ZERO, amount, &sig, signer.address()), Ok(()));
    let v2 = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
    assert_eq!(
        verify_voucher(&v2, B256::ZERO, amount, &sig, signer.address()),
        Err(SignatureError::AmountTooLarge { amount, max: amount - 1 })
    );
}

#[test]
fn signatures_deserialize_from_payload_strings() {
    let sig: VoucherSignature = serde_json::from_value(serde_json::json!(P256_VOUCHER)).unwrap();
    assert_eq!(serde_json::to_value(sig).unwrap(), serde_json::json!(P256_VOUCHER));
    let err = serde_json::from_str::<VoucherSignature>("\"0x1234\"").unwrap_err();
    assert!(err.to_string().contains("no signature envelope is 2 bytes long"), "{err}");
}
