//! Chain access for the Tempo method: read channels, broadcast client transactions, send
//! the payee's settle and close. Nothing here sits on the per-frame path.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde::Deserialize;

use super::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};
use crate::error::BoxError;

/// A v1 channel as the escrow holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OnChainChannel {
    /// Closed and paid out.
    pub finalized: bool,
    /// When the payer asked for a forced close (0: never).
    pub close_requested_at: u64,
    /// Who funded it.
    pub payer: Address,
    /// Who is paid.
    pub payee: Address,
    /// The TIP-20 token.
    pub token: Address,
    /// Who signs vouchers (zero: the payer).
    pub authorized_signer: Address,
    /// Total deposited.
    pub deposit: u128,
    /// Already paid to the payee.
    pub settled: u128,
}

impl OnChainChannel {
    /// Whether the escrow knows the channel.
    pub fn exists(&self) -> bool {
        self.payer != Address::ZERO
    }

    /// The address whose signature vouchers must carry.
    pub fn signer(&self) -> Address {
        if self.authorized_signer == Address::ZERO { self.payer } else { self.authorized_signer }
    }
}

/// One log of a mined transaction.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Log {
    /// The emitting contract.
    pub address: Address,
    /// Indexed topics.
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Bytes,
}

/// A mined transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mined {
    /// Its hash.
    pub hash: B256,
    /// Its sender, as the receipt names it (the account that signed, not a fee payer).
    pub from: Address,
    /// Whether it succeeded.
    pub success: bool,
    /// Its logs.
    pub logs: Vec<Log>,
}

/// Why a chain call failed.
#[derive(Debug)]
pub struct ChainError {
    kind: ChainErrorKind,
    source: BoxError,
}

/// The kind of a [`ChainError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainErrorKind {
    /// The node could not be reached or did not answer in time: nothing is known.
    Unavailable,
    /// The node refused the transaction or call (invalid, reverted).
    Rejected,
}

impl ChainError {
    /// An error of `kind` caused by `source` (for [`TempoChain`] implementations and test
    /// doubles).
    pub fn new(kind: ChainErrorKind, source: impl Into<BoxError>) -> Self {
        ChainError { kind, source: source.into() }
    }

    /// What went wrong.
    pub fn kind(&self) -> ChainErrorKind {
        self.kind
    }
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ChainErrorKind::Unavailable => write!(f, "chain unavailable: {}", self.source),
            ChainErrorKind::Rejected => write!(f, "chain rejected the call: {}", self.source),
        }
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// What the Tempo method needs from a chain. [`RpcChain`] speaks JSON-RPC; tests may fake it.
pub trait TempoChain: Send + Sync + 'static {
    /// Reads a v1 channel from `escrow`.
    fn channel(&self, escrow: Address, id: B256) -> impl Future<Output = Result<OnChainChannel, ChainError>> + Send;

    /// Broadcasts a client-signed raw transaction and waits until it is mined.
    fn broadcast(&self, raw: Bytes) -> impl Future<Output = Result<Mined, ChainError>> + Send;

    /// The receipt of transaction `hash` (`eth_getTransactionReceipt`), or `None` when the
    /// chain does not know it or has not mined it yet. Does not wait.
    fn receipt(&self, hash: B256) -> impl Future<Output = Result<Option<Mined>, ChainError>> + Send;

    /// Sends a call from the payee's key (settle, close) and waits until it is mined.
    fn send(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Mined, ChainError>> + Send;

    /// Reads a v2 channel's state from the channel reserve at `reserve` (a deposit of zero
    /// means no such channel: the reserve deletes closed channels).
    fn reserve_state(
        &self,
        reserve: Address,
        id: B256,
    ) -> impl Future<Output = Result<ReserveState, ChainError>> + Send;
}

/// A v2 channel's state in the channel reserve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveState {
    /// Already paid to the payee.
    pub settled: u128,
    /// Total deposited (zero: no channel).
    pub deposit: u128,
    /// When a forced close was requested (0: never).
    pub close_requested_at: u64,
}

/// A [`TempoChain`] over JSON-RPC (HTTP), sending payee transactions with a local key.
#[derive(Clone)]
pub struct RpcChain {
    reader: DynProvider,
    payee: DynProvider,
    receipt_timeout: Duration,
}

impl RpcChain {
    /// A chain at `url` (e.g. `http://127.0.0.1:8545`) whose payee transactions are signed
    /// by `payee`.
    pub fn new(url: &str, payee: PrivateKeySigner) -> Result<Self, ChainError> {
        let url: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e| ChainError::new(ChainErrorKind::Unavailable, format!("bad RPC URL: {e}")))?;
        let reader = ProviderBuilder::new().disable_recommended_fillers().connect_http(url.clone()).erased();
        let payee = ProviderBuilder::new().wallet(EthereumWallet::from(payee)).connect_http(url).erased();
        Ok(RpcChain { reader, payee, receipt_timeout: Duration::from_secs(30) })
    }

    /// One `eth_getTransactionReceipt`.
    async fn fetch_receipt(&self, hash: B256) -> Result<Option<Mined>, alloy::transports::TransportError> {
        #[derive(Debug, Deserialize)]
        struct Receipt {
            status: Option<String>,
            from: Address,
            logs: Vec<Log>,
        }
        let receipt: Option<Receipt> = self.reader.raw_request("eth_getTransactionReceipt".into(), (hash,)).await?;
        Ok(receipt.map(|r| Mined { hash, from: r.from, success: r.status.as_deref() == Some("0x1"), logs: r.logs }))
    }

    async fn wait_mined(&self, hash: B256) -> Result<Mined, ChainError> {
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        loop {
            let mined = self.fetch_receipt(hash).await.map_err(|e| ChainError::new(ChainErrorKind::Unavailable, e))?;
            if let Some(mined) = mined {
                return Ok(mined);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChainError::new(
                    ChainErrorKind::Unavailable,
                    format!("transaction {hash} was not mined in time"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl fmt::Debug for RpcChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcChain").field("receipt_timeout", &self.receipt_timeout).finish_non_exhaustive()
    }
}

fn rpc_error(e: alloy::transports::TransportError) -> ChainError {
    // An error answer from the node is a refusal; anything else means we know nothing.
    let kind = if e.is_error_resp() { ChainErrorKind::Rejected } else { ChainErrorKind::Unavailable };
    ChainError::new(kind, e)
}

impl TempoChain for RpcChain {
    async fn channel(&self, escrow: Address, id: B256) -> Result<OnChainChannel, ChainError> {
        let call = IStreamChannelEscrow::getChannelCall { channelId: id };
        let request = TransactionRequest::default().to(escrow).input(Bytes::from(call.abi_encode()).into());
        let output = self.reader.call(request).await.map_err(rpc_error)?;
        let c = IStreamChannelEscrow::getChannelCall::abi_decode_returns(&output)
            .map_err(|e| ChainError::new(ChainErrorKind::Rejected, e))?;
        Ok(OnChainChannel {
            finalized: c.finalized,
            close_requested_at: c.closeRequestedAt,
            payer: c.payer,
            payee: c.payee,
            token: c.token,
            authorized_signer: c.authorizedSigner,
            deposit: c.deposit,
            settled: c.settled,
        })
    }

    async fn broadcast(&self, raw: Bytes) -> Result<Mined, ChainError> {
        let hash: B256 = self.reader.raw_request("eth_sendRawTransaction".into(), (raw,)).await.map_err(rpc_error)?;
        self.wait_mined(hash).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<Mined>, ChainError> {
        self.fetch_receipt(hash).await.map_err(rpc_error)
    }

    async fn send(&self, to: Address, input: Bytes) -> Result<Mined, ChainError> {
        let request = TransactionRequest::default().to(to).input(input.into());
        let pending = self.payee.send_transaction(request).await.map_err(rpc_error)?;
        self.wait_mined(*pending.tx_hash()).await
    }

    async fn reserve_state(&self, reserve: Address, id: B256) -> Result<ReserveState, ChainError> {
        let call = ITip20ChannelReserve::getChannelStateCall { channelId: id };
        let request = TransactionRequest::default().to(reserve).input(Bytes::from(call.abi_encode()).into());
        let output = self.reader.call(request).await.map_err(rpc_error)?;
        let state = ITip20ChannelReserve::getChannelStateCall::abi_decode_returns(&output)
            .map_err(|e| ChainError::new(ChainErrorKind::Rejected, e))?;
        Ok(ReserveState {
            settled: state.settled.to::<u128>(),
            deposit: state.deposit.to::<u128>(),
            close_requested_at: u64::from(state.closeRequestedAt),
        })
    }
}
