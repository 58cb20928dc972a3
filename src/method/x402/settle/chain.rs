//! [`OnChainSettler`]: the payee settles on chain with its own key.

use alloy::primitives::{B256, Bytes, U256};
use alloy::sol_types::SolCall;

use super::{Books, Settle, Settlement, exact_amount};
use crate::amount::Amount;
use crate::method::tempo::chain::ChainError;
use crate::method::x402::error::{X402Error, X402ErrorKind};
use crate::method::x402::offer::TransferMethod;
use crate::method::x402::payload::Permit;
use crate::method::x402::token::{IAuthorizedToken, Token, X402Chain, surely_unsent};
use crate::method::x402::verify::Verified;
use crate::store::ChannelStore;

/// Settles on chain from the payee's key, through an [`X402Chain`] (an
/// [`RpcChain`](crate::method::tempo::RpcChain): fresh nonces, retaken when another instance
/// took one, receipts polled with a timeout).
///
/// - EIP-3009: one `transferWithAuthorization(from, to, value, validAfter, validBefore,
///   nonce, v, r, s)`. Anyone may send it; the token pays `to` and burns the nonce, so a
///   resend after an ambiguous outcome can never move the value twice. A used nonce counts
///   as paid only when a transaction of this settler may have used it: the payer can burn
///   it with `cancelAuthorization`, so a reverted first attempt is a failure.
/// - Permit: `permit(owner, payTo, max, deadline, v, r, s)` (skipped when the owner's nonce
///   shows it used), then `transferFrom(owner, payTo, actual)`; nothing when `actual` is 0.
///   The chain's key must be `payTo`'s (the spender). A used permit nonce does not prove
///   that this permit set the allowance (the owner may have spent the nonce on another
///   permit): the allowance must cover `actual` before the pull, and a reverted pull is a
///   failure. A `transferFrom` whose outcome is unknown is confirmed by the allowance (down
///   by `actual`) and never resent while it might still land: it stays pending.
#[derive(Clone, Debug)]
pub struct OnChainSettler<C, S> {
    chain: C,
    store: S,
}

impl<C: X402Chain, S: ChannelStore> OnChainSettler<C, S> {
    /// Settles through `chain` (the payee's key), recording in `store` (the verifier's).
    pub fn new(chain: C, store: S) -> Self {
        OnChainSettler { chain, store }
    }

    async fn locked(&self, books: &Books<'_, S>, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        if let Some(done) = books.settled().await? {
            return Ok(done);
        }
        match verified.offer().method() {
            TransferMethod::Eip3009 => self.exact(books, verified, actual).await,
            TransferMethod::Permit => self.permit(books, verified, actual).await,
        }
    }

    async fn exact(&self, books: &Books<'_, S>, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        let amount = exact_amount(verified, actual)?;
        let a = verified.payload().authorization;
        let (v, r, s) = verified.signature().vrs();
        let call = IAuthorizedToken::transferWithAuthorizationCall {
            from: a.from,
            to: a.to,
            value: a.value,
            validAfter: U256::from(a.valid_after),
            validBefore: U256::from(a.valid_before),
            nonce: a.nonce,
            v,
            r,
            s,
        };
        let token = Token { chain: &self.chain, address: verified.offer().asset() };
        // Only a transaction of this settler (this attempt's, or an earlier one's that may
        // have landed) proves the payment: a used nonce alone may be the payer's own
        // `cancelAuthorization`.
        let mut ambiguous = books.was_pending().await?;
        books.pending(amount).await?;
        for _attempt in 0..2 {
            let sent = self.chain.send(token.address, call.abi_encode().into()).await;
            if let Ok(mined) = &sent {
                if mined.success {
                    return books.done(amount, Some(mined.hash)).await;
                }
            }
            ambiguous |= sent.as_ref().is_err_and(|e| !surely_unsent(e));
            if !ambiguous {
                match sent {
                    // Ours reverted and nothing of ours is out: it moved nothing.
                    Ok(mined) => return Err(failed(format!("transferWithAuthorization {} reverted", mined.hash))),
                    // Surely not sent: once more.
                    Err(_) => continue,
                }
            }
            // Ours may have landed: the token's nonce state says whether it moved.
            match token.authorization_used(a.from, a.nonce).await {
                Ok(true) => return books.done(amount, None).await,
                Ok(false) => {}
                Err(_) => return Err(pending("the authorization's state could not be read")),
            }
        }
        if ambiguous {
            return Err(pending("transferWithAuthorization may still land; its nonce decides"));
        }
        Err(failed("transferWithAuthorization was refused twice"))
    }

    async fn permit(&self, books: &Books<'_, S>, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        let max = verified.value();
        if actual > max {
            return Err(X402Error::new(
                X402ErrorKind::InvalidPayload,
                format!("cannot settle {actual}: the permit allows {max}"),
            ));
        }
        if actual.is_zero() {
            // Nothing delivered, nothing sent: the permit lapses unused.
            return books.done(Amount::ZERO, None).await;
        }
        let permit = Permit::from(&verified.payload().authorization);
        if self.chain.sender() != permit.spender {
            return Err(failed("the settling key is not payTo's, the permit's spender"));
        }
        let token = Token { chain: &self.chain, address: verified.offer().asset() };
        // Only an earlier attempt of this settler can have pulled already; on a fresh
        // attempt the allowance proves nothing about this payment (the owner may have used
        // the permit's nonce for another permit, or set the allowance itself).
        let resumed = books.was_pending().await?;
        books.pending(actual).await?;
        self.use_permit(&token, verified, &permit).await?;
        let (max_u, actual_u) = (U256::from(max.get()), U256::from(actual.get()));
        let before = token.allowance(permit.owner, permit.spender).await.map_err(|_| pending("allowance unread"))?;
        // The permit set the allowance to `max`; only the spender draws on it, so at most
        // `max − actual` left means an earlier attempt's pull happened (a crash or a timeout).
        if resumed && before <= max_u - actual_u {
            return books.done(actual, None).await;
        }
        if before < actual_u {
            return Err(failed("the allowance does not cover the amount: the permit's nonce went to another permit"));
        }
        // From here, the pull happened iff the allowance dropped by `actual` since `before`.
        let moved = |allowance: U256| allowance.saturating_add(actual_u) <= before;
        let call = IAuthorizedToken::transferFromCall { from: permit.owner, to: permit.spender, value: actual_u };
        for _attempt in 0..2 {
            match self.chain.send(token.address, call.abi_encode().into()).await {
                Ok(mined) if mined.success => return books.done(actual, Some(mined.hash)).await,
                // Reverted: this transaction moved nothing, and no other pull of ours is open.
                Ok(mined) => return Err(failed(format!("transferFrom {} reverted", mined.hash))),
                Err(e) if surely_unsent(&e) => continue,
                Err(_) => {
                    let now = token.allowance(permit.owner, permit.spender).await;
                    return match now {
                        Ok(allowance) if moved(allowance) => books.done(actual, None).await,
                        // Never resent while the first might still land.
                        _ => Err(pending("transferFrom may still land; the allowance decides")),
                    };
                }
            }
        }
        Err(failed("transferFrom was refused twice"))
    }

    /// Sends the permit unless the owner's nonce shows it used; resends once only when the
    /// node surely did not take the first.
    async fn use_permit(&self, token: &Token<'_, C>, verified: &Verified, permit: &Permit) -> Result<(), X402Error> {
        let used = |next: U256| next > permit.nonce;
        if used(token.nonces(permit.owner).await.map_err(|_| pending("nonce unread"))?) {
            return Ok(());
        }
        let (v, r, s) = verified.signature().vrs();
        let call = IAuthorizedToken::permitCall {
            owner: permit.owner,
            spender: permit.spender,
            value: permit.value,
            deadline: U256::from(permit.deadline),
            v,
            r,
            s,
        };
        let input: Bytes = call.abi_encode().into();
        let mut last: Option<Result<B256, ChainError>> = None;
        for _attempt in 0..2 {
            let sent = self.chain.send(token.address, input.clone()).await;
            if sent.as_ref().is_ok_and(|m| m.success) {
                return Ok(());
            }
            // Anyone may send a permit: whoever did, a used nonce is all that counts.
            if used(token.nonces(permit.owner).await.map_err(|_| pending("nonce unread"))?) {
                return Ok(());
            }
            let unsent = sent.as_ref().is_err_and(surely_unsent);
            last = Some(sent.map(|m| m.hash));
            if !unsent {
                break;
            }
        }
        match last {
            Some(Err(e)) if !surely_unsent(&e) => Err(pending("permit may still land; the nonce decides")),
            _ => Err(failed("the permit was refused")),
        }
    }
}

fn pending(detail: &'static str) -> X402Error {
    X402Error::new(X402ErrorKind::SettlementPending, detail)
}

fn failed(detail: impl Into<std::borrow::Cow<'static, str>>) -> X402Error {
    X402Error::new(X402ErrorKind::SettlementFailed, detail)
}

impl<C: X402Chain, S: ChannelStore> Settle for OnChainSettler<C, S> {
    async fn settle(&self, verified: &Verified, actual: Amount) -> Result<Settlement, X402Error> {
        let books = Books::open(&self.store, verified).await?;
        let out = self.locked(&books, verified, actual).await;
        books.close().await;
        out
    }
}
