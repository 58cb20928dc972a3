//! [`Deposits`]: on-chain deposits verified by transaction hash and credited once.

use std::fmt;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::sol_types::SolEvent;

use super::{DepositError, Prepaid};
use crate::amount::Amount;
use crate::store::{ChannelState, ChannelStore};

alloy::sol! {
    /// The ERC-20 transfer event a deposit must carry.
    event Transfer(address indexed from, address indexed to, uint256 value);
}

/// Verifies deposits on chain and credits them to the sender's balance.
///
/// A deposit is a transaction hash. Its receipt must be successful, with at least
/// [`confirmations`](Deposits::confirmations) confirmations (one by default: mined), and
/// hold `Transfer` logs of the configured token to the treasury, all from one sender: that
/// sender (never a header) is credited their sum. The credit claims the hash in the store
/// in the same step ([`ChannelStore::credit`]), so a deposit is credited once whatever the
/// number of claims and instances; a repeated claim answers the existing credit.
///
/// ```no_run
/// # fn run() -> Result<(), tollgate::method::prepaid::DepositError> {
/// use alloy::primitives::address;
/// use tollgate::method::prepaid::Deposits;
///
/// let deposits = Deposits::new(
///     "http://127.0.0.1:8545",
///     address!("0x20c0000000000000000000000000000000000000"), // the token
///     address!("0x1111111111111111111111111111111111111111"), // the treasury
/// )?
/// .confirmations(3);
/// # let _ = deposits; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Deposits {
    provider: DynProvider,
    token: Address,
    treasury: Address,
    confirmations: u64,
}

/// A credited (or earlier credited) deposit.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deposit {
    /// The transaction hash.
    pub tx_hash: B256,
    /// Who sent it: whose balance it credited.
    pub payer: Address,
    /// How much.
    pub amount: Amount,
    /// `false` when this deposit had been credited before (nothing changed now).
    pub fresh: bool,
    /// The balance after the credit.
    pub balance: ChannelState,
}

impl Deposits {
    /// Deposits of `token` to `treasury`, read over JSON-RPC at `url`.
    pub fn new(url: &str, token: Address, treasury: Address) -> Result<Self, DepositError> {
        let url: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e| DepositError::Unavailable(format!("bad RPC URL: {e}").into()))?;
        let provider = ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased();
        Ok(Deposits { provider, token, treasury, confirmations: 1 })
    }

    /// How many confirmations a deposit needs (default 1: mined; at least 1).
    pub fn confirmations(mut self, confirmations: u64) -> Self {
        self.confirmations = confirmations.max(1);
        self
    }

    /// Verifies the deposit `tx_hash` (`0x` + 64 hex digits) on chain and credits it once.
    pub async fn claim<St: ChannelStore>(&self, tx_hash: &str, store: &St) -> Result<Deposit, DepositError> {
        let hash = parse_hash(tx_hash)?;
        let unavailable = |e: alloy::transports::TransportError| DepositError::Unavailable(e.into());
        let receipt = self.provider.get_transaction_receipt(hash).await.map_err(unavailable)?;
        let receipt = receipt.ok_or(DepositError::NotMined)?;
        let mined = receipt.block_number.ok_or(DepositError::NotMined)?;
        let head = self.provider.get_block_number().await.map_err(unavailable)?;
        let confirmations = head.saturating_sub(mined).saturating_add(1);
        if confirmations < self.confirmations {
            return Err(DepositError::NotConfirmed { confirmations, needed: self.confirmations });
        }
        if !receipt.status() {
            return Err(DepositError::Reverted);
        }
        let (payer, value) = self.transfer(receipt.inner.logs())?;
        let amount = u128::try_from(value).map(Amount::new).map_err(|_| DepositError::TooLarge)?;
        if amount > store.max_amount() || amount == Amount::ZERO {
            return Err(DepositError::TooLarge);
        }
        let reference = format!("deposit:{hash:#x}");
        let credited = store.credit(&Prepaid::account(payer), amount, &reference).await;
        let credited = credited.map_err(|e| DepositError::Unavailable(e.into()))?;
        Ok(Deposit { tx_hash: hash, payer, amount, fresh: credited.fresh, balance: credited.state })
    }

    /// The sender and sum of the receipt's transfers of the token to the treasury.
    fn transfer(&self, logs: &[alloy::rpc::types::Log]) -> Result<(Address, U256), DepositError> {
        let mut found: Option<(Address, U256)> = None;
        let (mut other_token, mut other_recipient) = (false, false);
        for log in logs {
            let Ok(event) = Transfer::decode_log_data(&log.inner.data) else { continue };
            match (log.inner.address == self.token, event.to == self.treasury) {
                (true, true) => {
                    let (from, sum) = found.unwrap_or((event.from, U256::ZERO));
                    if from != event.from {
                        return Err(DepositError::SeveralSenders);
                    }
                    found = Some((from, sum.checked_add(event.value).ok_or(DepositError::TooLarge)?));
                }
                (false, true) => other_token = true,
                (true, false) => other_recipient = true,
                (false, false) => {}
            }
        }
        match found {
            Some(found) => Ok(found),
            None if other_token => Err(DepositError::WrongToken),
            None if other_recipient => Err(DepositError::WrongRecipient),
            None => Err(DepositError::NoTransfer),
        }
    }
}

fn parse_hash(text: &str) -> Result<B256, DepositError> {
    let digits = text.strip_prefix("0x").ok_or(DepositError::BadHash)?;
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DepositError::BadHash);
    }
    text.parse().map_err(|_| DepositError::BadHash)
}

impl fmt::Debug for Deposits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deposits")
            .field("token", &self.token)
            .field("treasury", &self.treasury)
            .field("confirmations", &self.confirmations)
            .finish_non_exhaustive()
    }
}
