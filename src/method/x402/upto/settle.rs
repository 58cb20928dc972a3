//! Settlement of an `upto` payment through the x402 upto proxy, from the facilitator key.

use alloy::primitives::U256;
use alloy::sol_types::SolCall;

use super::UPTO_PROXY_ADDRESS;
use super::contracts::IUptoPermit2Proxy as Proxy;
use super::verify::{UptoVerified, nonce_used};
use crate::amount::Amount;
use crate::method::x402::error::{X402Error, X402ErrorKind};
use crate::method::x402::settle::{Books, Settlement};
use crate::method::x402::token::{X402Chain, surely_unsent};
use crate::store::ChannelStore;

/// Settles `upto` payments on chain: `settle(permit, actual, owner, witness, signature)` on
/// the proxy, sent from the chain's key (the witness's facilitator: the proxy lets no one
/// else). Nothing is sent for `0`.
///
/// Never twice: the settlement is recorded as pending first; Permit2 burns the nonce with
/// the transfer, so an outcome that is not known (a timeout, an RPC error after the
/// broadcast, an earlier attempt's) is decided by the owner's nonce bitmap. A used nonce
/// with no settle of ours out is the payer's doing and pays nothing; so does a revert. An unused nonce is sent
/// again, once: of two sends with one nonce Permit2 lets at most one through. When the
/// second is not known either, the settlement stays pending.
#[derive(Clone, Debug)]
pub(crate) struct ProxySettler<C, S> {
    chain: C,
    store: S,
}

impl<C: X402Chain, S: ChannelStore> ProxySettler<C, S> {
    pub(crate) fn new(chain: C, store: S) -> Self {
        ProxySettler { chain, store }
    }

    /// Moves `actual` (at most the signed maximum) of `verified` to the payee.
    pub(crate) async fn settle(&self, verified: &UptoVerified, actual: Amount) -> Result<Settlement, X402Error> {
        let network = verified.offer().network();
        let books = Books::open_claim(&self.store, verified.claim(), verified.payer(), network).await?;
        let out = self.locked(&books, verified, actual).await;
        books.close().await;
        out
    }

    async fn locked(
        &self,
        books: &Books<'_, S>,
        verified: &UptoVerified,
        actual: Amount,
    ) -> Result<Settlement, X402Error> {
        if let Some(done) = settled_without_sending(books, verified, actual).await? {
            return Ok(done);
        }
        let a = &verified.payload().permit2_authorization;
        if self.chain.sender() != a.witness.facilitator {
            return Err(failed("the settling key is not the witness's facilitator"));
        }
        // Permit2 nonces are the payer's to burn (another permit, `invalidateUnorderedNonces`):
        // a used nonce proves this payment only when a settle of ours may have landed (an
        // earlier attempt's that crashed or lost its answer, or this one's).
        let mut ambiguous = books.was_pending().await?;
        books.pending(actual).await?;
        if nonce_used(&self.chain, a).await.map_err(|_| pending("nonce unread"))? {
            return match ambiguous {
                true => books.done(actual, None).await,
                false => Err(failed("Permit2's nonce was used before any settle of ours: nothing moved")),
            };
        }
        let call = Proxy::settleCall {
            permit: Proxy::PermitTransferFrom {
                permitted: Proxy::TokenPermissions { token: a.permitted.token, amount: a.permitted.amount },
                nonce: a.nonce,
                deadline: U256::from(a.deadline),
            },
            amount: U256::from(actual.get()),
            owner: a.from,
            witness: Proxy::Witness {
                to: a.witness.to,
                facilitator: a.witness.facilitator,
                validAfter: U256::from(a.witness.valid_after),
            },
            signature: verified.payload().signature.clone(),
        };
        for _attempt in 0..2 {
            let sent = self.chain.send(UPTO_PROXY_ADDRESS, call.abi_encode().into()).await;
            if let Ok(mined) = &sent {
                if mined.success {
                    return books.done(actual, Some(mined.hash)).await;
                }
            }
            ambiguous |= sent.as_ref().is_err_and(|e| !surely_unsent(e));
            if !ambiguous {
                match sent {
                    // Ours reverted and nothing of ours is out: it moved nothing.
                    Ok(mined) => return Err(failed(format!("settle {} reverted", mined.hash))),
                    // Surely not sent: once more.
                    Err(_) => continue,
                }
            }
            // Ours may have landed: Permit2's nonce says whether it moved. A resend is safe:
            // Permit2 lets one of two sends with the same nonce through, never both.
            match nonce_used(&self.chain, a).await {
                Ok(true) => return books.done(actual, None).await,
                Ok(false) => {}
                Err(_) => return Err(pending("the nonce could not be read")),
            }
        }
        if ambiguous {
            return Err(pending("settle may still land; the nonce decides"));
        }
        Err(failed("settle was refused twice"))
    }
}

/// What an upto settlement answers before anything is sent, by the seller's key or a
/// facilitator alike: the recorded settlement of an earlier attempt, a refusal of more than
/// the permit allows, or (nothing delivered) a settlement of nothing, with no transaction —
/// the permit lapses unused. `None`: `actual` is to be sent.
pub(crate) async fn settled_without_sending<S: ChannelStore>(
    books: &Books<'_, S>,
    verified: &UptoVerified,
    actual: Amount,
) -> Result<Option<Settlement>, X402Error> {
    if let Some(done) = books.settled().await? {
        return Ok(Some(done));
    }
    if actual > verified.max() {
        return Err(X402Error::new(
            X402ErrorKind::InvalidPayload,
            format!("cannot settle {actual}: the permit allows {}", verified.max()),
        ));
    }
    if actual.is_zero() {
        return books.done(Amount::ZERO, None).await.map(Some);
    }
    Ok(None)
}

fn pending(detail: &'static str) -> X402Error {
    X402Error::new(X402ErrorKind::SettlementPending, detail)
}

fn failed(detail: impl Into<std::borrow::Cow<'static, str>>) -> X402Error {
    X402Error::new(X402ErrorKind::SettlementFailed, detail)
}
