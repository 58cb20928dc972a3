//! Push mode: the client broadcast the transaction and sends its hash; read the receipt,
//! check it, then claim the hash (§5.5).
//!
//! As in pull, the claim comes after the checks: a hash presented against the wrong
//! challenge (or by someone else) never touches the store, so it cannot use up the
//! owner's payment. The atomic claim decides between two requests carrying the same hash.

use alloy::primitives::B256;

use super::{Claim, Context, chain_error, refuse};
use crate::error::PaymentError;
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn push(&self, hash: B256) -> Result<Verified, PaymentError> {
        if !self.request.modes.push() {
            return Err(refuse("this charge does not accept transaction hashes"));
        }
        let source = self.source()?;
        let expected = self.expected()?;
        // A cheap answer for a replay, before any RPC; `take` below is the real check.
        if Claim::is_used(self.store, hash).await? {
            return Err(refuse("this transaction was already used for a payment"));
        }
        let mined = self
            .charge
            .chain
            .receipt(hash)
            .await
            .map_err(chain_error)?
            .ok_or_else(|| refuse("the transaction is unknown or not mined yet"))?;
        if source.is_some_and(|source| source != mined.from) {
            return Err(refuse("the transaction was not sent by the credential's source"));
        }
        self.check_mined(&mined, &expected, mined.from)?;
        self.serve(hash, mined.from).await
    }
}
