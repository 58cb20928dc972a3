//! A builder for the transactions our paying client signs.

use alloy::eips::eip2930::AccessList;
use alloy::primitives::{Address, Bytes, U256};
use alloy::signers::SignerSync;

use super::{Call, EXPIRING_NONCE_KEY, FeePayer, TempoTransaction, TxError};

/// Builds a [`TempoTransaction`], checking on [`build`](Self::build) what Tempo would
/// refuse.
///
/// Nothing is estimated: set the gas limit and fees yourself (anvil's estimation ignores
/// the calls of a Tempo transaction, so be generous there).
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug)]
pub struct TempoTxBuilder {
    tx: TempoTransaction,
}

impl TempoTxBuilder {
    /// A transaction for `chain_id` with no calls, protocol nonce key `0`, nonce `0`, no
    /// fee token, and zero gas and fees.
    pub fn new(chain_id: u64) -> Self {
        TempoTxBuilder { tx: TempoTransaction { chain_id, ..TempoTransaction::default() } }
    }

    /// Appends a call to `to` with `input` and no value.
    pub fn call(self, to: Address, input: impl Into<Bytes>) -> Self {
        self.push_call(Call::new(to, input))
    }

    /// Appends a call.
    pub fn push_call(mut self, call: Call) -> Self {
        self.tx.calls.push(call);
        self
    }

    /// Pays fees in this TIP-20 token.
    pub fn fee_token(mut self, token: Address) -> Self {
        self.tx.fee_token = Some(token);
        self
    }

    /// Makes this an expiring-nonce transaction valid until `valid_before` (unix seconds):
    /// nonce key 2²⁵⁶−1 and nonce `0`, as mppx's clients do. Tempo accepts `valid_before`
    /// at most 30 s ahead of the block (300 s from hardfork T11).
    pub fn expiring(mut self, valid_before: u64) -> Self {
        self.tx.nonce_key = EXPIRING_NONCE_KEY;
        self.tx.nonce = 0;
        self.tx.valid_before = Some(valid_before);
        self
    }

    /// Uses a 2D nonce: `nonce` under `nonce_key` (`0` is the account's protocol nonce).
    pub fn nonce(mut self, nonce_key: U256, nonce: u64) -> Self {
        self.tx.nonce_key = nonce_key;
        self.tx.nonce = nonce;
        self
    }

    /// The transaction is valid only before this unix time.
    pub fn valid_before(mut self, timestamp: u64) -> Self {
        self.tx.valid_before = Some(timestamp);
        self
    }

    /// The transaction is valid only from this unix time on.
    pub fn valid_after(mut self, timestamp: u64) -> Self {
        self.tx.valid_after = Some(timestamp);
        self
    }

    /// The gas limit of the whole batch.
    pub fn gas_limit(mut self, gas_limit: u64) -> Self {
        self.tx.gas_limit = gas_limit;
        self
    }

    /// EIP-1559 fee cap and priority fee per gas.
    pub fn fees(mut self, max_fee_per_gas: u128, max_priority_fee_per_gas: u128) -> Self {
        self.tx.max_fee_per_gas = max_fee_per_gas;
        self.tx.max_priority_fee_per_gas = max_priority_fee_per_gas;
        self
    }

    /// The EIP-2930 access list.
    pub fn access_list(mut self, access_list: AccessList) -> Self {
        self.tx.access_list = access_list;
        self
    }

    /// Asks a sponsor to pay the fees: signing then gives a `0x78` fee-payer envelope,
    /// whose signature does not cover the fee token.
    pub fn sponsored(mut self) -> Self {
        self.tx.fee_payer = FeePayer::AwaitingSponsor;
        self
    }

    /// Checks and returns the transaction: [`TempoTransaction::validate`], plus a nonzero
    /// chain id and gas limit, a priority fee within the fee cap, and for expiring nonces
    /// nonce `0` and a `valid_before`.
    pub fn build(self) -> Result<TempoTransaction, TxError> {
        let tx = self.tx;
        tx.validate()?;
        if tx.chain_id == 0 {
            return Err(TxError::Invalid("chain id is zero"));
        }
        if tx.gas_limit == 0 {
            return Err(TxError::Invalid("gas limit is zero"));
        }
        if tx.max_priority_fee_per_gas > tx.max_fee_per_gas {
            return Err(TxError::Invalid("priority fee exceeds the fee cap"));
        }
        if tx.is_expiring_nonce() && (tx.nonce != 0 || tx.valid_before.is_none()) {
            return Err(TxError::Invalid("expiring nonce needs nonce 0 and a valid_before"));
        }
        Ok(tx)
    }

    /// Builds and signs; see [`TempoTransaction::sign`].
    pub fn sign<S: SignerSync + ?Sized>(self, signer: &S) -> Result<Vec<u8>, TxError> {
        self.build()?.sign(signer)
    }
}
