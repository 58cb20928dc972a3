//! [`RpcChain`]: the [`TempoChain`] over JSON-RPC (HTTP).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::TransportError;
use serde::Deserialize;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::precheck::precheck;
use super::{ChainError, ChainErrorKind, Log, Mined, OnChainChannel, ReserveState, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20ChannelReserve};

/// The first pause between two receipt polls; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(50);
/// The longest pause between two receipt polls.
const MAX_POLL: Duration = Duration::from_secs(1);
/// How many times a payee transaction is signed anew after the node refused its nonce.
/// Each instance sharing the key has at most one send between reading the nonce and the
/// node taking it, so a send loses at most once per send of the others meanwhile: enough
/// for a handful of instances settling at once.
const NONCE_RETRIES: u32 = 8;
/// The longest random pause before a retaken nonce (it doubles from 25 ms): instances that
/// collided once do not collide again in lockstep.
const MAX_NONCE_PAUSE: Duration = Duration::from_millis(400);

/// A [`TempoChain`] over JSON-RPC (HTTP), sending payee transactions with a local key.
///
/// - Each payee transaction takes the account's pending nonce from the node when it is
///   signed (this instance's own sends take turns), so other instances sharing the key, or
///   transactions sent by hand, do not break it; a nonce the node refuses is retaken after
///   a short random pause (up to eight times).
/// - A receipt is polled with a backoff (50 ms doubling to 1 s) until
///   [`receipt_timeout`](Self::receipt_timeout), and at most
///   [`max_receipt_waits`](Self::max_receipt_waits) waits run at once: over that, a
///   broadcast or send is refused at once as unavailable, before anything is sent.
/// - A client transaction that could never be mined as sent (a protocol nonce ahead of the
///   sender's pending nonce, a validity window not open yet or closed) is refused before
///   broadcasting; one the node already has or has mined (a retry) gets its receipt.
#[derive(Clone)]
pub struct RpcChain {
    reader: DynProvider,
    payee: DynProvider,
    payee_address: Address,
    sends: Arc<Mutex<()>>,
    waits: Arc<Semaphore>,
    max_receipt_waits: usize,
    receipt_timeout: Duration,
}

impl RpcChain {
    /// A chain at `url` (e.g. `http://127.0.0.1:8545`) whose payee transactions are signed
    /// by `payee`.
    pub fn new(url: &str, payee: PrivateKeySigner) -> Result<Self, ChainError> {
        let url: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e| ChainError::new(ChainErrorKind::Unavailable, format!("bad RPC URL: {e}")))?;
        let reader = ProviderBuilder::new().disable_recommended_fillers().connect_http(url.clone()).erased();
        let payee_address = payee.address();
        // No nonce filler: alloy's caches the nonce in the process (see `send`).
        let payee = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(payee))
            .connect_http(url)
            .erased();
        let max_receipt_waits = 64;
        Ok(RpcChain {
            reader,
            payee,
            payee_address,
            sends: Arc::default(),
            waits: Arc::new(Semaphore::new(max_receipt_waits)),
            max_receipt_waits,
            receipt_timeout: Duration::from_secs(30),
        })
    }

    /// How long a broadcast or send waits for its receipt (default 30 s).
    pub fn receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// How many receipt waits may run at once (default 64); over it, a broadcast or send is
    /// refused at once as [`ChainErrorKind::Unavailable`], before anything is sent. Clones
    /// share the limit.
    pub fn max_receipt_waits(mut self, max: usize) -> Self {
        self.max_receipt_waits = max;
        self.waits = Arc::new(Semaphore::new(max));
        self
    }

    /// The account payee transactions are sent from.
    pub fn payee_address(&self) -> Address {
        self.payee_address
    }

    /// One read-only `eth_call` of `input` on `to` at the latest block (a revert or error
    /// answer is [`ChainErrorKind::Rejected`]).
    pub async fn call(&self, to: Address, input: Bytes) -> Result<Bytes, ChainError> {
        let request = TransactionRequest::default().to(to).input(input.into());
        self.reader.call(request).await.map_err(rpc_error)
    }

    fn wait_slot(&self) -> Result<OwnedSemaphorePermit, ChainError> {
        self.waits.clone().try_acquire_owned().map_err(|_| {
            ChainError::new(ChainErrorKind::Unavailable, "too many transactions are waiting for their receipts")
        })
    }

    /// One `eth_getTransactionReceipt`.
    async fn fetch_receipt(&self, hash: B256) -> Result<Option<Mined>, TransportError> {
        #[derive(Debug, Deserialize)]
        struct Receipt {
            status: Option<String>,
            from: Address,
            logs: Vec<Log>,
        }
        let receipt: Option<Receipt> = self.reader.raw_request("eth_getTransactionReceipt".into(), (hash,)).await?;
        Ok(receipt.map(|r| Mined { hash, from: r.from, success: r.status.as_deref() == Some("0x1"), logs: r.logs }))
    }

    /// Polls for the receipt with a backoff until the timeout; holds a wait slot meanwhile.
    async fn wait_mined(&self, hash: B256, _slot: OwnedSemaphorePermit) -> Result<Mined, ChainError> {
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        let mut pause = FIRST_POLL;
        loop {
            let mined = self.fetch_receipt(hash).await.map_err(|e| ChainError::new(ChainErrorKind::Unavailable, e))?;
            if let Some(mined) = mined {
                return Ok(mined);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ChainError::new(
                    ChainErrorKind::Unavailable,
                    format!("transaction {hash} was not mined in time"),
                ));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// `address`'s next nonce, counting its transactions in the pool.
    async fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        self.reader.get_transaction_count(address).pending().await.map_err(rpc_error)
    }

    /// Signs and sends a payee transaction with the account's current pending nonce. When
    /// the node refuses that nonce (another instance or a manual transaction took it), this
    /// very transaction was not accepted, so signing anew with the new nonce is safe; any
    /// other failure, where it may have been accepted, is returned as is.
    async fn send_fresh(&self, to: Address, input: Bytes) -> Result<B256, ChainError> {
        let mut retries = 0;
        loop {
            let nonce = self.pending_nonce(self.payee_address).await?;
            let request =
                TransactionRequest::default().from(self.payee_address).to(to).input(input.clone().into()).nonce(nonce);
            match self.payee.send_transaction(request).await {
                Ok(pending) => return Ok(*pending.tx_hash()),
                Err(e) if retries < NONCE_RETRIES && nonce_taken(&e) => {
                    retries += 1;
                    tokio::time::sleep(nonce_pause(retries)).await;
                }
                Err(e) => return Err(rpc_error(e)),
            }
        }
    }
}

impl fmt::Debug for RpcChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcChain")
            .field("payee", &self.payee_address)
            .field("receipt_timeout", &self.receipt_timeout)
            .field("max_receipt_waits", &self.max_receipt_waits)
            .finish_non_exhaustive()
    }
}

fn rpc_error(e: TransportError) -> ChainError {
    // An error answer from the node is a refusal; anything else means we know nothing.
    let kind = if e.is_error_resp() { ChainErrorKind::Rejected } else { ChainErrorKind::Unavailable };
    ChainError::new(kind, e)
}

fn node_says(e: &TransportError, words: &[&str]) -> bool {
    e.as_error_resp().is_some_and(|payload| {
        let message = payload.message.to_ascii_lowercase();
        words.iter().any(|w| message.contains(w))
    })
}

/// The node already has this transaction in its pool.
fn already_known(e: &TransportError) -> bool {
    node_says(e, &["already known", "known transaction", "already imported", "already exists"])
}

/// A random pause before the `retry`th retaken nonce: up to 25 ms doubling per retry,
/// at most [`MAX_NONCE_PAUSE`].
fn nonce_pause(retry: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = Duration::from_millis(25).saturating_mul(1 << retry.min(8)).min(MAX_NONCE_PAUSE);
    // `RandomState` is seeded from the OS's randomness; no rng crate for a jitter.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(random % millis)
}

/// The node refused the transaction's nonce: used, or held by another pooled transaction.
/// ("already known" is not one: that very transaction is pooled and may land.)
fn nonce_taken(e: &TransportError) -> bool {
    node_says(e, &["nonce too low", "replacement transaction underpriced"])
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
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
        let protocol_nonce = precheck(&raw, unix_now())?;
        let slot = self.wait_slot()?;
        if let Some((sender, nonce)) = protocol_nonce {
            let next = self.pending_nonce(sender).await?;
            if nonce > next {
                return Err(ChainError::new(
                    ChainErrorKind::Rejected,
                    format!("nonce {nonce} is ahead of the sender's next nonce {next}: it would not be mined"),
                ));
            }
        }
        let hash = keccak256(&raw);
        match self.reader.raw_request::<_, B256>("eth_sendRawTransaction".into(), (raw,)).await {
            Ok(_) => {}
            Err(e) if already_known(&e) => {}
            Err(e) if e.is_error_resp() => {
                // Refused: mined already (a retry after a timeout: "nonce too low", a
                // replayed expiring nonce)? Then its receipt is the answer.
                return self.fetch_receipt(hash).await.map_err(rpc_error)?.ok_or_else(|| rpc_error(e));
            }
            Err(e) => return Err(rpc_error(e)),
        }
        self.wait_mined(hash, slot).await
    }

    async fn receipt(&self, hash: B256) -> Result<Option<Mined>, ChainError> {
        self.fetch_receipt(hash).await.map_err(rpc_error)
    }

    async fn send(&self, to: Address, input: Bytes) -> Result<Mined, ChainError> {
        let slot = self.wait_slot()?;
        // This instance's sends take turns from reading the nonce to the node accepting
        // the transaction; other instances are handled by retaking a refused nonce.
        let hash = {
            let _turn = self.sends.lock().await;
            self.send_fresh(to, input).await?
        };
        self.wait_mined(hash, slot).await
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
