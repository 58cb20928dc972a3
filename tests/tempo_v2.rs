//! v2 sessions (TIP-1034 channel reserve) with the real mppx 0.11 default client, as far as
//! anvil allows: anvil has no reserve precompile, so a project-written stand-in sits at the
//! canonical address. Two test-only bridges: the payer approves the stand-in first (the
//! real precompile pulls the deposit itself), and the stand-in is told each open's
//! `expiringNonceHash` before the broadcast (the real chain seeds it from the transaction).

#![cfg(feature = "tempo")]

mod chain;
mod tempo_support;

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde_json::Value;
use tempo_support::onchain::balance;
use tollgate::meter::EventMeter;
use tollgate::method::tempo::chain::{ChainError, Mined, OnChainChannel, ReserveState};
use tollgate::method::tempo::tx::SignedTempoTx;
use tollgate::method::tempo::{CHANNEL_RESERVE, PATH_USD, RpcChain, SessionConfig, TempoChain, TempoSession};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};

const CHAIN_ID: u64 = 42431;
const PRICE: u128 = 1_000;
const TOKENS: usize = 20;

alloy::sol! {
    function approve(address spender, uint256 amount) external returns (bool);
    function setNextExpiringNonceHash(bytes32 expiringNonceHash) external;
    function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32);
}

/// Test-only bridge: tells the stand-in the `expiringNonceHash` of each open it is about
/// to receive, then broadcasts as usual.
struct StandInChain {
    inner: RpcChain,
    hooks: alloy::providers::DynProvider,
}

impl TempoChain for StandInChain {
    async fn channel(&self, escrow: Address, id: B256) -> Result<OnChainChannel, ChainError> {
        self.inner.channel(escrow, id).await
    }

    async fn broadcast(&self, raw: Bytes) -> Result<Mined, ChainError> {
        if let Ok(tx) = SignedTempoTx::decode(&raw) {
            let opens = tx
                .tx()
                .calls
                .iter()
                .any(|c| c.to == TxKind::Call(CHANNEL_RESERVE) && c.input.starts_with(&openCall::SELECTOR));
            if let (true, Ok(sender)) = (opens, tx.sender()) {
                let call = setNextExpiringNonceHashCall { expiringNonceHash: tx.expiring_nonce_hash(sender) };
                let request = TransactionRequest::default().to(CHANNEL_RESERVE).input(call.abi_encode().into());
                let receipt = self.hooks.send_transaction(request).await.unwrap().get_receipt().await.unwrap();
                assert!(receipt.status(), "the stand-in took the expiringNonceHash");
            }
        }
        self.inner.broadcast(raw).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<Mined>, ChainError> {
        self.inner.receipt(hash).await
    }

    async fn send(&self, to: Address, input: Bytes) -> Result<Mined, ChainError> {
        self.inner.send(to, input).await
    }

    async fn reserve_state(&self, reserve: Address, id: B256) -> Result<ReserveState, ChainError> {
        self.inner.reserve_state(reserve, id).await
    }
}

async fn install_stand_in(anvil: &AnvilInstance) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/artifacts/ChannelReserveStandIn.json");
    let artifact: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let code = artifact["deployedBytecode"]["object"].as_str().unwrap().to_owned();
    let code = if code.starts_with("0x") { code } else { format!("0x{code}") };
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let _: Value = provider.raw_request("anvil_setCode".into(), (CHANNEL_RESERVE, code)).await.unwrap();
}

async fn approve_reserve(anvil: &AnvilInstance, payer: PrivateKeySigner) {
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(payer)).connect_http(anvil.endpoint_url());
    let call = approveCall { spender: CHANNEL_RESERVE, amount: U256::MAX };
    let request = TransactionRequest::default().to(PATH_USD).input(call.abi_encode().into());
    assert!(provider.send_transaction(request).await.unwrap().get_receipt().await.unwrap().status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_v2_client_streams_with_windowed_vouchers_and_closes_capturing_exactly() {
    let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
    install_stand_in(&anvil).await;
    let payee = chain::dev_signer(&anvil, 1);
    let payer = chain::dev_signer(&anvil, 2);
    approve_reserve(&anvil, payer.clone()).await;
    let hooks = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain::dev_signer(&anvil, 9)))
        .connect_http(anvil.endpoint_url())
        .erased();
    let chain = StandInChain { inner: RpcChain::new(&anvil.endpoint(), payee.clone()).unwrap(), hooks };
    let config = SessionConfig::v2(CHAIN_ID, PATH_USD, payee.address()).suggested_deposit(Amount::new(100_000));
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(
        TempoSession::new(config, chain),
        store.clone(),
        "127.0.0.1",
        Secret::new("tempo-v2-secret-of-at-least-32-bytes!"),
    )
    .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
    .meter(EventMeter::default())
    .voucher_window(4);
    let server = tempo_support::serve(layer, TOKENS, Duration::from_millis(2)).await;
    let (payee_before, reserve_before) =
        (balance(&anvil, payee.address()).await, balance(&anvil, CHANNEL_RESERVE).await);

    let mut command = tokio::process::Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mppx_v2_client.mjs"))
        .env("URL", server.url("/v1/stream"))
        .env("RPC_URL", anvil.endpoint())
        .env("PRIVATE_KEY", format!("0x{}", alloy::hex::encode(anvil.nth_key(2).unwrap().to_bytes())))
        .env("CHAIN_ID", CHAIN_ID.to_string())
        .kill_on_drop(true);
    let output =
        tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "mppx v2 client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let events = |name: &str| lines.iter().filter(|l| l["kind"] == "event" && l["event"] == name).count();
    assert_eq!(events("message"), TOKENS + 1, "every token and [DONE]");
    let needs = events("payment-need-voucher");
    assert!(needs > 0 && needs <= TOKENS / 4, "windowed vouchers: {needs}");
    let done = lines.iter().find(|l| l["kind"] == "done").unwrap();
    let channel: B256 = done["channelId"].as_str().unwrap().parse().unwrap();
    let state = store.load(&ChannelId::new(format!("{channel:#x}"))).await.unwrap().unwrap();
    let delivered = PRICE * TOKENS as u128;
    assert_eq!((state.spent, state.finalized), (Amount::new(delivered), true));
    assert!(state.accepted > state.spent, "the client paid ahead by a window");
    assert_eq!(
        balance(&anvil, payee.address()).await - payee_before,
        delivered,
        "v2 captures exactly what was delivered"
    );
    assert_eq!(balance(&anvil, CHANNEL_RESERVE).await, reserve_before, "the payer got the rest back");
}
