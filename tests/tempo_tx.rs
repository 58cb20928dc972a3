//! Tempo transactions built and signed by `tollgate::method::tempo::tx`, mined by anvil in
//! Tempo mode: the chain agrees on the hash, the sender and the effects.

#![cfg(feature = "tempo")]

mod chain;

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256, address};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use serde_json::{Value, json};
use tollgate::method::tempo::tx::{Call, FeePayer, TempoTransaction, TempoTxBuilder};

const CHAIN_ID: u64 = 4242;
const PATH_USD: Address = address!("0x20c0000000000000000000000000000000000000");
/// anvil's gas estimate ignores a Tempo transaction's calls, so no estimate is used.
const GAS_LIMIT: u64 = 1_000_000;

sol! {
    interface ITip20 {
        function transfer(address to, uint256 amount) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

struct Chain {
    provider: RootProvider,
    fee_cap: u128,
}

impl Chain {
    async fn new(anvil: &alloy::node_bindings::AnvilInstance) -> Self {
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url()).root().clone();
        let fee_cap = provider.get_gas_price().await.unwrap() * 2;
        Chain { provider, fee_cap }
    }

    async fn call(&self, to: Address, data: Vec<u8>) -> Vec<u8> {
        let out: Bytes = self
            .provider
            .raw_request("eth_call".into(), (json!({ "to": to, "data": Bytes::from(data) }), "latest"))
            .await
            .unwrap();
        out.to_vec()
    }

    async fn balance(&self, who: Address) -> U256 {
        let out = self.call(PATH_USD, ITip20::balanceOfCall { account: who }.abi_encode()).await;
        ITip20::balanceOfCall::abi_decode_returns(&out).unwrap()
    }

    /// Sends raw bytes, returns the chain's hash and the receipt once mined.
    async fn send(&self, raw: &[u8]) -> (B256, Value) {
        let hash: B256 =
            self.provider.raw_request("eth_sendRawTransaction".into(), (Bytes::copy_from_slice(raw),)).await.unwrap();
        for _ in 0..100 {
            let receipt: Value = self.provider.raw_request("eth_getTransactionReceipt".into(), (hash,)).await.unwrap();
            if !receipt.is_null() {
                return (hash, receipt);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("transaction {hash} was not mined");
    }

    async fn transaction(&self, hash: B256) -> Value {
        self.provider.raw_request("eth_getTransactionByHash".into(), (hash,)).await.unwrap()
    }
}

fn transfer(to: Address, amount: u64) -> Vec<u8> {
    ITip20::transferCall { to, amount: U256::from(amount) }.abi_encode()
}

fn same_address(json: &Value, address: Address) -> bool {
    json.as_str().is_some_and(|s| s.parse::<Address>().ok() == Some(address))
}

/// Checks what every mined transaction must show, and returns the decoded view.
async fn assert_mined_as_built(chain: &Chain, raw: &[u8], signer: &PrivateKeySigner) -> (B256, Value) {
    let decoded = TempoTransaction::decode(raw).unwrap();
    assert_eq!(decoded.sender().unwrap(), signer.address());
    let (hash, receipt) = chain.send(raw).await;
    assert_eq!(hash, decoded.tx_hash(), "the chain hashes the transaction as we do");
    assert_eq!(receipt["status"], "0x1", "receipt: {receipt}");
    assert!(same_address(&receipt["from"], signer.address()), "receipt: {receipt}");
    let on_chain = chain.transaction(hash).await;
    assert!(same_address(&on_chain["from"], signer.address()), "transaction: {on_chain}");
    (hash, receipt)
}

#[tokio::test]
async fn a_single_transfer_with_an_expiring_nonce_is_mined() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let chain = Chain::new(&anvil).await;
    let (payer, payee) = (chain::dev_signer(&anvil, 1), chain::dev_signer(&anvil, 9).address());
    let (payer_before, payee_before) = (chain.balance(payer.address()).await, chain.balance(payee).await);

    let valid_before = chain::unix_now() + 25;
    let raw = TempoTxBuilder::new(CHAIN_ID)
        .call(PATH_USD, transfer(payee, 1_234_567))
        .fee_token(PATH_USD)
        .expiring(valid_before)
        .gas_limit(GAS_LIMIT)
        .fees(chain.fee_cap, 1)
        .sign(&payer)
        .unwrap();
    assert_eq!(raw[0], 0x76);

    let decoded = TempoTransaction::decode(&raw).unwrap();
    let tx = decoded.tx();
    assert_eq!((tx.chain_id, tx.nonce_key, tx.nonce), (CHAIN_ID, U256::MAX, 0));
    assert_eq!((tx.valid_before, tx.valid_after, tx.fee_token), (Some(valid_before), None, Some(PATH_USD)));
    assert_eq!((tx.gas_limit, tx.max_fee_per_gas, tx.fee_payer), (GAS_LIMIT, chain.fee_cap, FeePayer::SelfPaid));
    assert_eq!(tx.calls, vec![Call::new(PATH_USD, transfer(payee, 1_234_567))]);

    let (hash, _) = assert_mined_as_built(&chain, &raw, &payer).await;
    let on_chain = chain.transaction(hash).await;
    assert_eq!(on_chain["type"], "0x76", "transaction: {on_chain}");

    assert_eq!(chain.balance(payee).await, payee_before + U256::from(1_234_567));
    let spent = payer_before - chain.balance(payer.address()).await;
    assert!(spent > U256::from(1_234_567), "the payer pays the amount and the fee: {spent}");
}

#[tokio::test]
async fn an_approve_and_transfer_batch_with_a_protocol_nonce_is_mined() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let chain = Chain::new(&anvil).await;
    let payer = chain::dev_signer(&anvil, 2);
    let (spender, payee) = (chain::dev_signer(&anvil, 3).address(), chain::dev_signer(&anvil, 4).address());
    let payee_before = chain.balance(payee).await;

    for nonce in 0..2u64 {
        let approve = ITip20::approveCall { spender, amount: U256::from(500 + nonce) }.abi_encode();
        let raw = TempoTxBuilder::new(CHAIN_ID)
            .call(PATH_USD, approve)
            .call(PATH_USD, transfer(payee, 700))
            .fee_token(PATH_USD)
            .nonce(U256::ZERO, nonce)
            .gas_limit(GAS_LIMIT)
            .fees(chain.fee_cap, 1)
            .sign(&payer)
            .unwrap();
        let decoded = TempoTransaction::decode(&raw).unwrap();
        assert_eq!(decoded.tx().calls.len(), 2);
        assert_eq!((decoded.tx().nonce_key, decoded.tx().nonce), (U256::ZERO, nonce));
        assert_mined_as_built(&chain, &raw, &payer).await;

        let allowance = ITip20::allowanceCall { owner: payer.address(), spender }.abi_encode();
        let allowance = ITip20::allowanceCall::abi_decode_returns(&chain.call(PATH_USD, allowance).await).unwrap();
        assert_eq!(allowance, U256::from(500 + nonce));
    }
    assert_eq!(chain.balance(payee).await, payee_before + U256::from(1_400));
}

#[tokio::test]
async fn a_fee_payer_envelope_is_sponsored_and_mined() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let chain = Chain::new(&anvil).await;
    let (payer, sponsor) = (chain::dev_signer(&anvil, 5), chain::dev_signer(&anvil, 6));
    let payee = chain::dev_signer(&anvil, 7).address();
    let before = [chain.balance(payer.address()).await, chain.balance(sponsor.address()).await];

    // The client: a 0x78 envelope, no fee token, an expiring nonce.
    let envelope = TempoTxBuilder::new(CHAIN_ID)
        .call(PATH_USD, transfer(payee, 42_000))
        .expiring(chain::unix_now() + 25)
        .gas_limit(GAS_LIMIT)
        .fees(chain.fee_cap, 1)
        .sponsored()
        .sign(&payer)
        .unwrap();
    assert_eq!(envelope[0], 0x78);

    // The server: decode, check the sender, co-sign with a fee token, broadcast.
    let received = TempoTransaction::decode(&envelope).unwrap();
    assert_eq!(received.tx().fee_payer, FeePayer::AwaitingSponsor);
    let sender = received.sender().unwrap();
    assert_eq!(received.envelope_sender(), Some(sender));
    let sponsored = received.sponsor(Some(PATH_USD), &sponsor).unwrap();
    assert_eq!(sponsored.sponsor_address().unwrap(), Some(sponsor.address()));
    assert_eq!(sponsored.expiring_nonce_hash(sender), received.expiring_nonce_hash(sender));
    let (hash, _) = assert_mined_as_built(&chain, sponsored.raw(), &payer).await;
    assert_eq!(hash, sponsored.tx_hash());

    let after = [chain.balance(payer.address()).await, chain.balance(sponsor.address()).await];
    assert_eq!(before[0] - after[0], U256::from(42_000), "the payer pays only the amount");
    assert!(after[1] < before[1], "the sponsor pays the fee");
}
