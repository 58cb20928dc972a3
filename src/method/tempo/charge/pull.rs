//! Pull mode: the client sends the signed transaction; check it, broadcast it, check the
//! receipt, claim it (§5.4).
//!
//! A retry of a payment whose broadcast timed out, or whose claim failed, is safe: the
//! chain's `broadcast` finds the mined transaction ("already known", "nonce too low")
//! and returns its receipt, and the atomic claim lets exactly one request use it.

use std::time::{Duration, UNIX_EPOCH};

use alloy::primitives::{Address, Bytes, keccak256};

use super::{Claim, Context, Mismatch, chain_error, refuse};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::tx::{FeePayer, SignedTempoTx, TxError};
use crate::store::ChannelStore;
use crate::wire::mpp::check_expires;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn pull(&self, raw: Bytes) -> Result<Verified, PaymentError> {
        if !self.request.modes.pull() {
            return Err(refuse("this charge does not accept transaction credentials"));
        }
        let tx = SignedTempoTx::decode(&raw)
            .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidPayload, format!("transaction: {e}")))?;
        let sender = self.check_transaction(&tx)?;
        let source = self.source()?;
        if let (Some(sender), Some(source)) = (sender, source) {
            if sender != source {
                return Err(refuse("the transaction was not signed by the credential's source"));
            }
        }
        let expected = self.expected()?;
        expected.check_calls(&tx.tx().calls, self.request.currency).map_err(Mismatch::into_error)?;

        // Everything that can be checked offline was: a replay of a used payment stops
        // here, and nothing is written before the payment is mined, so a transaction that
        // never lands leaves no trace (a retry after a failure finds it mined).
        let hash = keccak256(&raw);
        if Claim::is_used(self.store, hash).await? {
            return Err(refuse("this transaction was already used for a payment"));
        }
        let mined = self.charge.chain.broadcast(raw).await.map_err(chain_error)?;
        if mined.hash != hash {
            return Err(refuse("the chain reports another hash for the transaction"));
        }
        let from = mined.from;
        if sender.is_some_and(|s| s != from) || source.is_some_and(|s| s != from) {
            return Err(refuse("the mined transaction has another sender"));
        }
        self.check_mined(&mined, &expected, from)?;
        self.serve(hash, from).await
    }

    /// What can be checked before broadcasting: the chain, no sponsorship asked for, a
    /// validity window within the challenge's, a valid signature. Returns the sender when
    /// it can be recovered here (a keychain signature's only the chain can check).
    fn check_transaction(&self, tx: &SignedTempoTx) -> Result<Option<Address>, PaymentError> {
        let fields = tx.tx();
        if fields.chain_id != self.request.chain_id {
            return Err(refuse("the transaction is for another chain"));
        }
        if fields.fee_payer == FeePayer::AwaitingSponsor {
            return Err(refuse("this charge does not sponsor fees"));
        }
        if let Some(valid_before) = fields.valid_before {
            // An untrusted u64: past what a clock can hold, it is valid "forever".
            let Some(until) = UNIX_EPOCH.checked_add(Duration::from_secs(valid_before)) else {
                return Err(refuse("the transaction stays valid after the challenge expires"));
            };
            if check_expires(self.verify.challenge().and_then(|c| c.expires.as_deref()), until).is_err() {
                return Err(refuse("the transaction stays valid after the challenge expires"));
            }
        }
        match tx.sender() {
            Ok(sender) => Ok(Some(sender)),
            Err(TxError::Unsupported(_)) => Ok(None),
            Err(e) => Err(refuse(format!("transaction signature: {e}"))),
        }
    }
}
