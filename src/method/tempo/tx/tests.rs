//! Round trips, vectors produced by ox 0.14.33 (the encoder mppx 0.11 uses), and
//! malformed input.

use alloy::primitives::{Address, B256, Bytes, U256, address, b256, hex};
use alloy::signers::local::PrivateKeySigner;
use proptest::prelude::*;

use super::*;

const PATH_USD: Address = address!("0x20c0000000000000000000000000000000000000");
const RESERVE: Address = address!("0x4d50500000000000000000000000000000000000");
/// anvil's dev accounts #0 and #1.
const KEY_0: B256 = b256!("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const KEY_1: B256 = b256!("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");

/// ox: a self-paid expiring transaction with a fee token and two calls, signed by KEY_0.
const OX_SELF_PAID: &str = "76f9011182a5bf018504a817c80083061a80f87af85c9420c000000000000000000000000000000000000080b844095ea7b30000000000000000000000004d505000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000064db944d505000000000000000000000000000000000008084deadbeefc0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb31984713fb2f69420c000000000000000000000000000000000000080c0b84168b325f7903323e4a63229ec64d61867d199f8cfb15f9469fd5618ae6cfdc78674d2e0d1c68596459af7112e6a33a86f90406b11f0ac371e0bbb2386c78fbfa91c";
/// ox: the same calls as a `0x78` envelope (`feePayerSignature: null`, no fee token).
const OX_ENVELOPE: &str = "78f9011182a5bf018504a817c80083061a80f87af85c9420c000000000000000000000000000000000000080b844095ea7b30000000000000000000000004d505000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000064db944d505000000000000000000000000000000000008084deadbeefc0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb31984713fb2f68094f39fd6e51aad88f6f4ce6ab8827279cfffb92266c0b84199909d224519fd1d78f095e92c3b619c499445a1715ae747408c03d5bdbb99c001f44ea774fea94d69a22ddcd3db7c717d93f5c4aeb6cd28cbd847057058162b1b";
/// ox: the envelope completed by KEY_1 as fee payer, with pathUSD as the fee token.
const OX_SPONSORED: &str = "76f9015582a5bf018504a817c80083061a80f87af85c9420c000000000000000000000000000000000000080b844095ea7b30000000000000000000000004d505000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000064db944d505000000000000000000000000000000000008084deadbeefc0a0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff8084713fb31984713fb2f69420c0000000000000000000000000000000000000f84301a0d44ef19579b2ee00a4a35eb7689b0c3b57c081cd4527dbed02c654e74ee74405a05380c7485a4b85d1b264e335a6158ee184a89cfeec7bc59ddbb73014c8586f7bc0b84199909d224519fd1d78f095e92c3b619c499445a1715ae747408c03d5bdbb99c001f44ea774fea94d69a22ddcd3db7c717d93f5c4aeb6cd28cbd847057058162b1b";

fn signer(key: B256) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&key).unwrap()
}

/// The transaction of the ox vectors.
fn vector_builder() -> TempoTxBuilder {
    let approve = hex!(
        "095ea7b30000000000000000000000004d50500000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000064"
    );
    TempoTxBuilder::new(42431)
        .call(PATH_USD, approve.to_vec())
        .call(RESERVE, hex!("deadbeef").to_vec())
        .fees(20_000_000_000, 1)
        .gas_limit(400_000)
        .expiring(1_900_000_025)
        .valid_after(1_899_999_990)
}

#[test]
fn self_paid_matches_ox_byte_for_byte() {
    let raw = vector_builder().fee_token(PATH_USD).sign(&signer(KEY_0)).unwrap();
    assert_eq!(hex::encode(&raw), OX_SELF_PAID);
    let tx = TempoTransaction::decode(&raw).unwrap();
    assert_eq!(tx.signing_hash(), b256!("0x6b3491c968821139547805d6a5749b87424bcd09bdb728fe415e7acb829ac2c7"));
    assert_eq!(tx.tx_hash(), b256!("0x62b3150a5ada592875d319007c0cbca12e8f1bbd7d19cf9466b2a2bd72dbe11d"));
    let sender = tx.sender().unwrap();
    assert_eq!(sender, signer(KEY_0).address());
    assert_eq!(
        tx.expiring_nonce_hash(sender),
        b256!("0x294b0002a6d2e22837e0ab54ee94503ef78fc259aad36324d17c6afb6dcc2c19")
    );
    let t = tx.tx();
    assert_eq!((t.chain_id, t.gas_limit, t.nonce, t.fee_token), (42431, 400_000, 0, Some(PATH_USD)));
    assert_eq!((t.valid_before, t.valid_after), (Some(1_900_000_025), Some(1_899_999_990)));
    assert_eq!((t.max_fee_per_gas, t.max_priority_fee_per_gas), (20_000_000_000, 1));
    assert_eq!(t.calls.len(), 2);
    assert_eq!(t.calls[1], Call::new(RESERVE, hex!("deadbeef").to_vec()));
    assert!(t.is_expiring_nonce());
    assert_eq!(t.fee_payer, FeePayer::SelfPaid);
    assert_eq!(tx.envelope_sender(), None);
    assert_eq!(tx.sponsor_address().unwrap(), None);
}

#[test]
fn fee_payer_envelope_matches_ox_and_sponsors_like_ox() {
    let raw = vector_builder().sponsored().sign(&signer(KEY_0)).unwrap();
    assert_eq!(hex::encode(&raw), OX_ENVELOPE);
    let envelope = TempoTransaction::decode(&raw).unwrap();
    assert_eq!(envelope.tx().fee_payer, FeePayer::AwaitingSponsor);
    assert_eq!(envelope.envelope_sender(), Some(signer(KEY_0).address()));
    assert_eq!(envelope.signing_hash(), b256!("0x8e2d587c9a33e1d6ec2e37a5c05582a16f16ae45f9ad712a8054fd08fc5b8efc"));
    let sender = envelope.sender().unwrap();
    let expiring = b256!("0x8e571d8122fedd46d95faf3ea990a7fd1e109415dbdf0685ff51446b8dbd7f16");
    assert_eq!(envelope.expiring_nonce_hash(sender), expiring);

    let mut with_token = envelope.tx().clone();
    with_token.fee_token = Some(PATH_USD);
    assert_eq!(
        with_token.fee_payer_signing_hash(sender),
        b256!("0x9f75f9b208c26596d2c9d38063d00e27d726b20660871ecb5b6bf424ec2fdaeb")
    );

    let sponsored = envelope.sponsor(Some(PATH_USD), &signer(KEY_1)).unwrap();
    assert_eq!(hex::encode(sponsored.raw()), OX_SPONSORED);
    assert_eq!(sponsored.tx_hash(), b256!("0xaf9f8b199f5db8a165221e2f099510aea3fe00b55fa694ea63ff866cfa33b6e8"));
    assert_eq!(sponsored.signing_hash(), envelope.signing_hash());
    assert_eq!(sponsored.expiring_nonce_hash(sender), expiring, "the sponsor does not move the channel binding");
    assert_eq!(sponsored.sender().unwrap(), sender);
    assert_eq!(sponsored.sponsor_address().unwrap(), Some(signer(KEY_1).address()));

    let decoded = TempoTransaction::decode(&hex::decode(OX_SPONSORED).unwrap()).unwrap();
    assert_eq!(decoded, sponsored);
    assert!(matches!(decoded.sponsor(None, &signer(KEY_1)), Err(TxError::NotAwaitingSponsor)));
}

#[test]
fn envelope_naming_another_sender_is_refused() {
    let raw = vector_builder().sponsored().sign(&signer(KEY_0)).unwrap();
    let mut forged = raw.clone();
    let at = forged.windows(20).position(|w| w == signer(KEY_0).address().as_slice()).unwrap();
    forged[at..at + 20].copy_from_slice(signer(KEY_1).address().as_slice());
    let tx = TempoTransaction::decode(&forged).unwrap();
    assert!(matches!(tx.sender(), Err(TxError::SenderMismatch { .. })));
}

#[test]
fn marker_form_of_0x76_reads_as_awaiting_sponsor() {
    let envelope = TempoTransaction::decode(&hex::decode(OX_ENVELOPE).unwrap()).unwrap();
    let marker = envelope.encode_2718();
    assert_eq!(marker[0], TEMPO_TX_TYPE);
    let tx = TempoTransaction::decode(&marker).unwrap();
    assert_eq!(tx.tx(), envelope.tx());
    assert_eq!(tx.sender().unwrap(), envelope.sender().unwrap());
}

#[test]
fn normal_nonce_create_and_optional_fields_round_trip() {
    let tx = TempoTransaction {
        chain_id: 1,
        gas_limit: 21_000,
        calls: vec![Call { to: alloy::primitives::TxKind::Create, value: U256::from(5), input: Bytes::new() }],
        nonce_key: U256::from(7),
        nonce: 3,
        key_authorization: Some(Bytes::from_static(&hex!("c3010203"))),
        ..TempoTransaction::default()
    };
    let signed = tx.clone().into_signed(&signer(KEY_0)).unwrap();
    let decoded = TempoTransaction::decode(signed.raw()).unwrap();
    assert_eq!(decoded.tx(), &tx);
    assert_eq!(decoded.tx_hash(), alloy::primitives::keccak256(signed.raw()));
    assert!(!decoded.tx().is_expiring_nonce());
}

#[test]
fn builder_refuses_what_tempo_refuses() {
    let ok = || TempoTxBuilder::new(1).call(PATH_USD, vec![]).gas_limit(1).fees(2, 1);
    assert!(ok().build().is_ok());
    assert!(matches!(TempoTxBuilder::new(1).gas_limit(1).build(), Err(TxError::Invalid(_))));
    assert!(matches!(ok().gas_limit(0).build(), Err(TxError::Invalid(_))));
    assert!(matches!(ok().fees(1, 2).build(), Err(TxError::Invalid(_))));
    assert!(matches!(ok().valid_before(5).valid_after(5).build(), Err(TxError::Invalid(_))));
    assert!(matches!(ok().nonce(EXPIRING_NONCE_KEY, 0).build(), Err(TxError::Invalid(_))));
    let create_second = Call { to: alloy::primitives::TxKind::Create, value: U256::ZERO, input: Bytes::new() };
    assert!(matches!(ok().push_call(create_second).build(), Err(TxError::Invalid(_))));
}

#[test]
fn malformed_input_gives_typed_errors() {
    let raw = hex::decode(OX_SELF_PAID).unwrap();
    assert!(matches!(TempoTransaction::decode(&[]), Err(TxError::Empty)));
    let mut wrong_type = raw.clone();
    wrong_type[0] = 0x02;
    assert!(matches!(TempoTransaction::decode(&wrong_type), Err(TxError::UnknownType(0x02))));
    let mut trailing = raw.clone();
    trailing.extend([0, 0]);
    assert!(matches!(TempoTransaction::decode(&trailing), Err(TxError::TrailingBytes { extra: 2 })));
    for len in 1..raw.len() {
        assert!(TempoTransaction::decode(&raw[..len]).is_err(), "prefix of {len} bytes decoded");
    }
    let mut v_zero_one = raw.clone();
    *v_zero_one.last_mut().unwrap() -= 27;
    assert!(matches!(TempoTransaction::decode(&v_zero_one), Err(TxError::NonCanonical)));
    let huge = vec![TEMPO_TX_TYPE; MAX_RAW_TX_LEN + 1];
    assert!(matches!(TempoTransaction::decode(&huge), Err(TxError::TooLarge { .. })));
}

#[test]
fn no_calls_is_refused_when_decoding() {
    let mut tx = vector_builder().build().unwrap();
    let signed = tx.clone().into_signed(&signer(KEY_0)).unwrap();
    tx.calls.clear();
    let raw = tx.encode_signed(signed.signature(), None);
    assert!(matches!(TempoTransaction::decode(&raw), Err(TxError::Invalid("calls list is empty"))));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = TempoTransaction::decode(&bytes);
        let mut typed = vec![TEMPO_TX_TYPE];
        typed.extend(&bytes);
        let _ = TempoTransaction::decode(&typed);
    }

    #[test]
    fn mutated_transactions_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        for vector in [OX_SELF_PAID, OX_ENVELOPE, OX_SPONSORED] {
            let mut raw = hex::decode(vector).unwrap();
            let i = at.index(raw.len());
            raw[i] = byte;
            raw.truncate(cut.index(raw.len()) + 1);
            if let Ok(tx) = TempoTransaction::decode(&raw) {
                let _ = (tx.sender(), tx.tx_hash(), tx.sponsor_address());
                prop_assert_eq!(tx.raw(), &raw[..]);
            }
        }
    }
}
