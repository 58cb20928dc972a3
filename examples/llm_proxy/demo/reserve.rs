//! DEV-ONLY: the v2 (TIP-1034) channel reserve on the demo's local chain.
//!
//! anvil has no channel reserve precompile, so the demo places the project's test stand-in
//! (`contracts/artifacts/ChannelReserveStandIn.json`) at the canonical address, exactly as
//! `tests/tempo_v2.rs` does. The stand-in differs from the real precompile in two ways, and
//! both are bridged here, in the example's dev-chain code, never in the library:
//!
//! 1. It pulls deposits with `transferFrom`, so every dev account approves it first (by
//!    impersonation: [`approve_for`] works for any address, keys or not). The real
//!    precompile needs no approval.
//! 2. It cannot read a transaction's expiring-nonce hash, so [`StandInOpens`] tells it the
//!    hash of each open just before the proxy broadcasts that open. The real chain seeds it
//!    from the transaction itself.
//!
//! Nothing here is safe on a real chain; `serve` never installs it.

use alloy::primitives::{Address, TxKind, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use bytes::Bytes;
use serde_json::Value;
use tollgate::method::tempo::chain::{ChainError, ChainErrorKind};
use tollgate::method::tempo::tx::SignedTempoTx;
use tollgate::method::tempo::{CHANNEL_RESERVE, PATH_USD};

use crate::proxy::payment::{BeforeBroadcast, BroadcastStep};

alloy::sol! {
    function approve(address spender, uint256 amount) external returns (bool);
    function setNextExpiringNonceHash(bytes32 expiringNonceHash) external;
    function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32);
}

/// DEV-ONLY: places the stand-in's runtime code at [`CHANNEL_RESERVE`].
pub async fn install(provider: &DynProvider) -> Result<(), String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/artifacts/ChannelReserveStandIn.json");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let artifact: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let code = artifact["deployedBytecode"]["object"].as_str().ok_or("the stand-in has no deployedBytecode")?;
    let code = if code.starts_with("0x") { code.to_owned() } else { format!("0x{code}") };
    let _: Value =
        provider.raw_request("anvil_setCode".into(), (CHANNEL_RESERVE, code)).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// DEV-ONLY: `owner` approves the stand-in for all its pathUSD, sent by impersonation.
pub async fn approve_for(provider: &DynProvider, owner: Address) -> Result<(), String> {
    let call = approveCall { spender: CHANNEL_RESERVE, amount: U256::MAX };
    let request = TransactionRequest::default().from(owner).to(PATH_USD).input(call.abi_encode().into());
    send_as(provider, owner, request).await
}

async fn send_as(provider: &DynProvider, from: Address, request: TransactionRequest) -> Result<(), String> {
    let _: Value = provider.raw_request("anvil_impersonateAccount".into(), (from,)).await.map_err(|e| e.to_string())?;
    let sent = async {
        let pending = provider.send_transaction(request).await.map_err(|e| e.to_string())?;
        let receipt = pending.get_receipt().await.map_err(|e| e.to_string())?;
        if receipt.status() { Ok(()) } else { Err(format!("transaction from {from} reverted")) }
    }
    .await;
    let _: Result<Value, _> = provider.raw_request("anvil_stopImpersonatingAccount".into(), (from,)).await;
    sent
}

/// DEV-ONLY: tells the stand-in the expiring-nonce hash of each reserve open before it is
/// broadcast (the proxy runs this step and the broadcast as one, so opens cannot interleave).
#[derive(Debug)]
pub struct StandInOpens {
    /// The chain.
    pub provider: DynProvider,
    /// Who sends the hint (any funded dev account).
    pub from: Address,
}

impl BeforeBroadcast for StandInOpens {
    fn before<'a>(&'a self, raw: &'a Bytes) -> BroadcastStep<'a> {
        Box::pin(async move {
            let Ok(tx) = SignedTempoTx::decode(raw) else { return Ok(()) };
            let opens = tx
                .tx()
                .calls
                .iter()
                .any(|c| c.to == TxKind::Call(CHANNEL_RESERVE) && c.input.starts_with(&openCall::SELECTOR));
            let Ok(sender) = tx.sender() else { return Ok(()) };
            if !opens {
                return Ok(());
            }
            let call = setNextExpiringNonceHashCall { expiringNonceHash: tx.expiring_nonce_hash(sender) };
            let request =
                TransactionRequest::default().from(self.from).to(CHANNEL_RESERVE).input(call.abi_encode().into());
            send_as(&self.provider, self.from, request)
                .await
                .map_err(|e| ChainError::new(ChainErrorKind::Unavailable, format!("dev stand-in hint: {e}")))
        })
    }
}
