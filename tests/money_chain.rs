//! Money safety at the chain boundary (issue 7): the payee's nonce (scenario 7), RPC
//! amplification by transactions that never mine (11), and store growth from junk pull
//! charges (10).

#![cfg(feature = "tempo")]

mod chain;
#[path = "chain/mock_rpc.rs"]
mod mock_rpc;

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use mock_rpc::MockRpc;
use tollgate::method::tempo::chain::{ChainError, ChainErrorKind, Mined, OnChainChannel, ReserveState};
use tollgate::method::tempo::tx::TempoTxBuilder;
use tollgate::method::tempo::{ChargeConfig, PATH_USD, RpcChain, TempoChain, TempoCharge, attribution_memo};
use tollgate::store::MemoryStore;
use tollgate::wire::mpp::{Challenge, Credential};
use tollgate::{Amount, PaymentLayer, Price, Secret};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const CHAIN_ID: u64 = 4242;

alloy::sol! {
    function transferWithMemo(address to, uint256 amount, bytes32 memo) external;
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A pathUSD transfer from `signer` with protocol nonce `nonce`.
fn transfer(_signer: &PrivateKeySigner, nonce: u64) -> TempoTxBuilder {
    let input = transferWithMemoCall { to: Address::repeat_byte(0x11), amount: U256::from(1), memo: B256::ZERO };
    TempoTxBuilder::new(CHAIN_ID)
        .call(PATH_USD, input.abi_encode())
        .fee_token(PATH_USD)
        .nonce(U256::ZERO, nonce)
        .gas_limit(1_000_000)
        .fees(1_000_000_000, 1)
}

fn raw(builder: TempoTxBuilder, signer: &PrivateKeySigner) -> Bytes {
    builder.sign(signer).unwrap().into()
}

// ---------------------------------------------------------------------------------------
// Scenario 7: the payee's nonce.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn scenario_07_two_instances_and_a_manual_tx_with_the_payee_key_all_send() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let key = chain::dev_signer(&anvil, 1);
    let first = RpcChain::new(&anvil.endpoint(), key.clone()).unwrap();
    let second = RpcChain::new(&anvil.endpoint(), key.clone()).unwrap();
    let to = chain::dev_signer(&anvil, 5).address();

    let mut hashes = Vec::new();
    for (n, instance) in [&first, &second, &first, &second].into_iter().enumerate() {
        let mined = instance.send(to, Bytes::new()).await.unwrap_or_else(|e| panic!("send {n}: {e}"));
        assert!(mined.success, "send {n} mined and succeeded");
        hashes.push(mined.hash);
    }

    // Someone sends a transaction by hand with the same key.
    let manual = ProviderBuilder::new().wallet(key.clone()).connect_http(anvil.endpoint_url());
    let pending = manual.send_transaction(TransactionRequest::default().to(to)).await.unwrap();
    pending.get_receipt().await.unwrap();

    for (n, instance) in [&first, &second].into_iter().enumerate() {
        let mined = instance.send(to, Bytes::new()).await.unwrap_or_else(|e| panic!("send after manual {n}: {e}"));
        assert!(mined.success);
        hashes.push(mined.hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 6, "six distinct transactions");
}

/// Two instances sharing the payee key (settling and closing different channels at the
/// same moment) send in parallel: each send takes the pending nonce, a nonce the other
/// instance took meanwhile is retaken, and every transaction lands exactly once.
#[tokio::test]
async fn scenario_07_two_instances_sending_in_parallel_from_one_key_all_land() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let key = chain::dev_signer(&anvil, 1);
    let instances = [
        std::sync::Arc::new(RpcChain::new(&anvil.endpoint(), key.clone()).unwrap()),
        std::sync::Arc::new(RpcChain::new(&anvil.endpoint(), key.clone()).unwrap()),
    ];
    let to = chain::dev_signer(&anvil, 5).address();
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let before = provider.get_transaction_count(key.address()).await.unwrap();
    let sends: Vec<_> = (0..6)
        .map(|n| {
            let chain = instances[n % 2].clone();
            tokio::spawn(async move { chain.send(to, Bytes::from(vec![n as u8])).await })
        })
        .collect();
    let mut hashes = Vec::new();
    for (n, send) in sends.into_iter().enumerate() {
        let mined = send.await.unwrap().unwrap_or_else(|e| panic!("send {n}: {e}"));
        assert!(mined.success, "send {n} mined and succeeded");
        hashes.push(mined.hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 6, "six distinct transactions");
    let after = provider.get_transaction_count(key.address()).await.unwrap();
    assert_eq!(after - before, 6, "each landed once: no transaction sent twice");
}

#[tokio::test]
async fn scenario_07_concurrent_sends_from_one_instance_all_land() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    let key = chain::dev_signer(&anvil, 1);
    let chain = std::sync::Arc::new(RpcChain::new(&anvil.endpoint(), key).unwrap());
    let to = chain::dev_signer(&anvil, 5).address();
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let chain = chain.clone();
            tokio::spawn(async move { chain.send(to, Bytes::new()).await })
        })
        .collect();
    for send in sends {
        assert!(send.await.unwrap().unwrap().success);
    }
}

#[tokio::test]
async fn scenario_07_a_nonce_taken_meanwhile_is_retaken_and_the_send_lands() {
    let node = MockRpc::start().await;
    let key = PrivateKeySigner::random();
    {
        let mut state = node.state();
        state.mine_as = Some(key.address());
        state.next_send_errors = vec!["nonce too low".into(), "replacement transaction underpriced".into()];
    }
    let chain = RpcChain::new(&node.url(), key).unwrap().receipt_timeout(Duration::from_secs(60));
    let mined = chain.send(Address::repeat_byte(0xe5), Bytes::from_static(&[1, 2])).await.unwrap();
    assert!(mined.success);
    assert_eq!(node.calls("eth_sendRawTransaction"), 3, "signed anew twice");
    assert_eq!(node.calls("eth_getTransactionCount"), 3, "a fresh nonce each time");

    // A refusal that is not about the nonce is not retried.
    node.state().next_send_errors = vec!["insufficient funds".into()];
    let err = chain.send(Address::repeat_byte(0xe5), Bytes::new()).await.unwrap_err();
    assert_eq!(err.kind(), ChainErrorKind::Rejected);
    assert_eq!(node.calls("eth_sendRawTransaction"), 4);
}

// ---------------------------------------------------------------------------------------
// Scenario 11: RPC amplification.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn scenario_11_a_transaction_that_never_mines_makes_a_bounded_number_of_calls() {
    let node = MockRpc::start().await;
    let chain = RpcChain::new(&node.url(), PrivateKeySigner::random()).unwrap().receipt_timeout(Duration::from_secs(3));
    let payer = PrivateKeySigner::random();
    let err = chain.broadcast(raw(transfer(&payer, 0), &payer)).await.unwrap_err();
    assert_eq!(err.kind(), ChainErrorKind::Unavailable, "{err}");
    let polls = node.calls("eth_getTransactionReceipt");
    // Backing off from 50 ms to 1 s: about 8 polls in 3 s (polling every 25 ms: ~120).
    assert!(polls <= 12, "{polls} receipt polls in 3 s");
    assert!(node.total_calls() <= 15, "{} calls", node.total_calls());
}

#[tokio::test]
async fn scenario_11_over_the_receipt_wait_cap_a_broadcast_is_refused_before_sending() {
    let node = MockRpc::start().await;
    let chain = RpcChain::new(&node.url(), PrivateKeySigner::random())
        .unwrap()
        .receipt_timeout(Duration::from_secs(600))
        .max_receipt_waits(1);
    let payer = PrivateKeySigner::random();
    let waiting = {
        let (chain, raw) = (chain.clone(), raw(transfer(&payer, 0), &payer));
        tokio::spawn(async move { chain.broadcast(raw).await })
    };
    while node.state().pool.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = PrivateKeySigner::random();
    let err = chain.broadcast(raw(transfer(&other, 0), &other)).await.unwrap_err();
    assert_eq!(err.kind(), ChainErrorKind::Unavailable, "{err}");
    assert!(!waiting.is_finished(), "the first broadcast is still waiting for its receipt");
    assert_eq!(node.calls("eth_sendRawTransaction"), 1, "the second transaction was never sent");
    waiting.abort();
}

#[tokio::test]
async fn scenario_11_a_future_nonce_or_validity_window_is_refused_before_broadcast() {
    let node = MockRpc::start().await;
    node.state().pending_nonce = 3;
    let chain =
        RpcChain::new(&node.url(), PrivateKeySigner::random()).unwrap().receipt_timeout(Duration::from_secs(600));
    let payer = PrivateKeySigner::random();

    let future_nonce = chain.broadcast(raw(transfer(&payer, 4), &payer)).await.unwrap_err();
    assert_eq!(future_nonce.kind(), ChainErrorKind::Rejected, "{future_nonce}");

    let later = unix_now() + 3_600;
    let not_yet = raw(transfer(&payer, 3).valid_after(later).valid_before(later + 60), &payer);
    assert_eq!(chain.broadcast(not_yet).await.unwrap_err().kind(), ChainErrorKind::Rejected);
    let expiring_not_yet = raw(transfer(&payer, 0).expiring(later + 30).valid_after(later), &payer);
    assert_eq!(chain.broadcast(expiring_not_yet).await.unwrap_err().kind(), ChainErrorKind::Rejected);

    assert_eq!(node.calls("eth_sendRawTransaction"), 0, "nothing was broadcast");
}

#[tokio::test]
async fn scenario_11_a_retried_broadcast_finds_the_receipt_of_the_first() {
    let node = MockRpc::start().await;
    let chain =
        RpcChain::new(&node.url(), PrivateKeySigner::random()).unwrap().receipt_timeout(Duration::from_millis(300));
    let payer = PrivateKeySigner::random();
    let tx = raw(transfer(&payer, 0), &payer);
    assert_eq!(chain.broadcast(tx.clone()).await.unwrap_err().kind(), ChainErrorKind::Unavailable);

    // It was mined after the wait gave up: a retry is told "nonce too low" by the node
    // (or, here, refused before sending) and must find the receipt.
    let hash = node.state().pool[0];
    {
        let mut state = node.state();
        state.mined.insert(hash, payer.address());
        state.pending_nonce = 1;
        state.send_error = Some("nonce too low".into());
    }
    let mined = chain.broadcast(tx.clone()).await.unwrap();
    assert_eq!((mined.hash, mined.from, mined.success), (hash, payer.address(), true));

    // A node that still has it pooled says "already known": wait for its receipt.
    let second = raw(transfer(&payer, 1), &payer);
    {
        let mut state = node.state();
        state.send_error = Some("already known".into());
        state.mined.insert(alloy::primitives::keccak256(&second), payer.address());
    }
    let mined = chain.broadcast(second).await.unwrap();
    assert!(mined.success);
}

// ---------------------------------------------------------------------------------------
// Scenario 10: junk pull charges must not grow the store.
// ---------------------------------------------------------------------------------------

/// A chain whose every broadcast fails: refused, or unreachable.
#[derive(Debug)]
struct FailingChain {
    kind: ChainErrorKind,
}

impl TempoChain for FailingChain {
    async fn channel(&self, _: Address, _: B256) -> Result<OnChainChannel, ChainError> {
        Ok(OnChainChannel::default())
    }
    async fn broadcast(&self, _: Bytes) -> Result<Mined, ChainError> {
        Err(ChainError::new(self.kind, "junk"))
    }
    async fn receipt(&self, _: B256) -> Result<Option<Mined>, ChainError> {
        Ok(None)
    }
    async fn send(&self, _: Address, _: Bytes) -> Result<Mined, ChainError> {
        Err(ChainError::new(ChainErrorKind::Unavailable, "no"))
    }
    async fn reserve_state(&self, _: Address, _: B256) -> Result<ReserveState, ChainError> {
        Ok(ReserveState::default())
    }
}

#[tokio::test]
async fn scenario_10_junk_pull_charges_leave_no_store_entries() {
    for kind in [ChainErrorKind::Rejected, ChainErrorKind::Unavailable] {
        let payee = Address::repeat_byte(0x22);
        let store = MemoryStore::new();
        let charge = TempoCharge::new(ChargeConfig::new(CHAIN_ID, PATH_USD, payee), FailingChain { kind }).unwrap();
        let layer =
            PaymentLayer::new(charge, store.clone(), "api.test", Secret::new("a secret of at least 32 bytes!!!!!"))
                .pricing(Price::per_request(Amount::new(1_000)));
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: Request<_>| async {
            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"paid"))))
        }));

        let unpaid = svc.clone().oneshot(Request::get("/").body(Full::<bytes::Bytes>::default()).unwrap()).await;
        let unpaid = unpaid.unwrap();
        assert_eq!(unpaid.status(), StatusCode::PAYMENT_REQUIRED);
        let challenge = Challenge::parse_all(unpaid.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
        let memo = attribution_memo("api.test", None, &challenge.id);

        for _ in 0..200 {
            // A well-formed, correctly signed payment from an empty account.
            let junk = PrivateKeySigner::random();
            let input = transferWithMemoCall { to: payee, amount: U256::from(1_000), memo }.abi_encode();
            let tx = TempoTxBuilder::new(CHAIN_ID)
                .call(PATH_USD, input)
                .fee_token(PATH_USD)
                .nonce(U256::ZERO, 0)
                .gas_limit(1_000_000)
                .fees(1_000_000_000, 1);
            let payload = serde_json::json!({"type": "transaction", "signature": raw(tx, &junk)});
            let credential = Credential { challenge: challenge.clone(), payload, source: None };
            let mut request = Request::get("/").body(Full::<bytes::Bytes>::default()).unwrap();
            request.headers_mut().insert(header::AUTHORIZATION, credential.to_header_value());
            let response = svc.clone().oneshot(request).await.unwrap();
            assert_ne!(response.status(), StatusCode::OK);
            let _ = response.into_body().collect().await;
        }
        assert_eq!(format!("{store:?}"), "MemoryStore { channels: Some(0) }", "{kind:?}: no store entries left");
    }
}
