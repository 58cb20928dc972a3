//! Pull mode: the client sends the signed transaction; check it, claim it, broadcast it,
//! check the receipt (§5.4).

use std::time::{Duration, UNIX_EPOCH};

use alloy::primitives::{Address, Bytes, keccak256};

use super::{Claim, Context, Mismatch, chain_error, refuse};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::{ChainError, Mined, TempoChain};
use crate::method::tempo::tx::{FeePayer, SignedTempoTx, TxError};
use crate::scheme::check_expires;
use crate::store::ChannelStore;

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

        // Claimed before broadcasting: a replay is refused here and never reaches the chain.
        let hash = keccak256(&raw);
        let claim = Claim::take(self.store, hash, self.request.amount).await?;
        let mined = match self.land(&claim, &raw).await {
            Ok(mined) => mined,
            Err(e) => {
                // Unreachable, or refused before it was mined: nothing was paid, so the
                // same credential may be retried (a retry first looks for a receipt).
                claim.release(self.store).await;
                return Err(chain_error(e));
            }
        };
        // On chain now, succeeded or not: the claim stays, whatever follows.
        if mined.hash != hash {
            return Err(refuse("the chain reports another hash for the transaction"));
        }
        let from = mined.from;
        if sender.is_some_and(|s| s != from) || source.is_some_and(|s| s != from) {
            return Err(refuse("the mined transaction has another sender"));
        }
        self.check_mined(&mined, &expected, from)?;
        self.serve(claim, hash, from).await
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
            let until = UNIX_EPOCH + Duration::from_secs(valid_before);
            if check_expires(self.verify.credential.challenge.expires.as_deref(), until).is_err() {
                return Err(refuse("the transaction stays valid after the challenge expires"));
            }
        }
        match tx.sender() {
            Ok(sender) => Ok(Some(sender)),
            Err(TxError::Unsupported(_)) => Ok(None),
            Err(e) => Err(refuse(format!("transaction signature: {e}"))),
        }
    }

    /// Broadcasts the transaction and waits for it. On a retry (an earlier attempt was
    /// released) it may have been mined already: look for its receipt first.
    async fn land(&self, claim: &Claim, raw: &Bytes) -> Result<Mined, ChainError> {
        let chain = &self.charge.chain;
        if claim.retried() {
            if let Some(mined) = chain.receipt(keccak256(raw)).await? {
                return Ok(mined);
            }
        }
        chain.broadcast(raw.clone()).await
    }
}
