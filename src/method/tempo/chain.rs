//! Chain access for the Tempo method: read channels, broadcast client transactions, send
//! the payee's settle and close. Nothing here sits on the per-frame path.

mod precheck;
mod rpc;

pub use rpc::RpcChain;

use std::fmt;
use std::future::Future;

use alloy::primitives::{Address, B256, Bytes};
use serde::Deserialize;

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
    ///
    /// A transaction the chain already has (a retry after a timeout) is not an error: its
    /// receipt is returned once mined. One that can never be mined as sent (a nonce ahead
    /// of the sender's, a validity window not yet open or already closed) should be
    /// refused ([`ChainErrorKind::Rejected`]) without broadcasting it.
    fn broadcast(&self, raw: Bytes) -> impl Future<Output = Result<Mined, ChainError>> + Send;

    /// The receipt of transaction `hash` (`eth_getTransactionReceipt`), or `None` when the
    /// chain does not know it or has not mined it yet. Does not wait.
    fn receipt(&self, hash: B256) -> impl Future<Output = Result<Option<Mined>, ChainError>> + Send;

    /// Sends a call from the payee's key (settle, close) and waits until it is mined. The
    /// key may be shared with other instances (or used by hand): take a fresh nonce each time.
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
