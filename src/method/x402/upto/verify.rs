//! Verification of an x402 `upto` payment: the Permit2 signature offline, then Permit2's
//! nonce bitmap, the payer's balance and Permit2 allowance, then the atomic claim.

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;

use super::contracts::IPermit2;
use super::digest::{permit2_domain, upto_digest};
use super::payload::{Permit2Authorization, UptoPayload};
use super::{PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS};
use crate::amount::Amount;
use crate::method::x402::claim;
use crate::method::x402::error::{X402Error, X402ErrorKind};
use crate::method::x402::offer::EvmOffer;
use crate::method::x402::signature::EvmSignature;
use crate::method::x402::token::{Token, X402Chain};
use crate::store::{ChannelId, ChannelStore};

/// A verified and claimed `upto` payment: what settlement takes. Only
/// [`X402Upto`](super::X402Upto) makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UptoVerified {
    payer: Address,
    max: Amount,
    payload: UptoPayload,
    offer: EvmOffer,
    claim: ChannelId,
}

impl UptoVerified {
    /// Who pays.
    pub fn payer(&self) -> Address {
        self.payer
    }

    /// The signed maximum: the most that may settle.
    pub fn max(&self) -> Amount {
        self.max
    }

    /// The store channel claimed for this payment, funded with [`max`](Self::max).
    pub fn claim(&self) -> &ChannelId {
        &self.claim
    }

    /// The payload as received.
    pub fn payload(&self) -> &UptoPayload {
        &self.payload
    }

    /// The offer it pays (its amount: the maximum).
    pub fn offer(&self) -> &EvmOffer {
        &self.offer
    }
}

fn refuse(kind: X402ErrorKind, detail: impl Into<std::borrow::Cow<'static, str>>) -> X402Error {
    X402Error::new(kind, detail)
}

/// The offline checks, cheapest first: token, spender (the proxy), payee, settler, amount
/// (equal to the offer's maximum), window, then the signature.
pub(crate) fn check(
    offer: &EvmOffer,
    facilitator: Address,
    payload: &UptoPayload,
    now: u64,
    settle_margin: u64,
) -> Result<Amount, X402Error> {
    let a = &payload.permit2_authorization;
    if a.permitted.token != offer.asset() {
        return Err(refuse(X402ErrorKind::InvalidPayload, "the permit is for another token"));
    }
    if a.spender != UPTO_PROXY_ADDRESS {
        return Err(refuse(X402ErrorKind::RecipientMismatch, "the permit's spender is not the x402 upto proxy"));
    }
    if a.witness.to != offer.pay_to() {
        return Err(refuse(X402ErrorKind::RecipientMismatch, "the witness pays someone else"));
    }
    if a.witness.facilitator != facilitator {
        return Err(refuse(X402ErrorKind::RecipientMismatch, "the witness names another facilitator"));
    }
    let max = u128::try_from(a.permitted.amount)
        .map(Amount::new)
        .map_err(|_| refuse(X402ErrorKind::ValueMismatch, "the amount is beyond any amount"))?;
    if max != offer.amount() {
        return Err(refuse(
            X402ErrorKind::ValueMismatch,
            format!("maximum {max} is not the offered {}", offer.amount()),
        ));
    }
    // The proxy refuses before validAfter; Permit2 after the deadline.
    if a.witness.valid_after > now {
        return Err(refuse(X402ErrorKind::NotYetValid, "the permit is not valid yet"));
    }
    if a.deadline < now.saturating_add(settle_margin) {
        return Err(refuse(X402ErrorKind::Expired, "the permit expires before it could be settled"));
    }
    if a.deadline > crate::method::x402::verify::latest_validity(offer, now) {
        return Err(refuse(
            X402ErrorKind::Expired,
            "the permit is valid for longer than the offer's maxTimeoutSeconds",
        ));
    }
    let signature = EvmSignature::from_bytes(&payload.signature)
        .map_err(|_| refuse(X402ErrorKind::InvalidSignature, "the signature is not 65 low-s bytes"))?;
    if signature.recover(upto_digest(permit2_domain(offer.chain_id()), a)) != Some(a.from) {
        return Err(refuse(X402ErrorKind::InvalidSignature, "the signature is not the payer's over this permit"));
    }
    Ok(max)
}

/// Whether Permit2 has used `a`'s nonce (the bit of its word in the owner's bitmap).
pub(crate) async fn nonce_used<C: X402Chain>(chain: &C, a: &Permit2Authorization) -> Result<bool, X402Error> {
    let word_pos = a.nonce >> 8;
    let bit = U256::from(1) << (a.nonce & U256::from(0xff)).to::<usize>();
    let call = IPermit2::nonceBitmapCall { owner: a.from, wordPos: word_pos };
    let out = chain
        .call(PERMIT2_ADDRESS, call.abi_encode().into())
        .await
        .map_err(|e| refuse(X402ErrorKind::Unavailable, format!("Permit2 read failed: {e}")))?;
    let word = IPermit2::nonceBitmapCall::abi_decode_returns(&out)
        .map_err(|e| refuse(X402ErrorKind::Unavailable, format!("Permit2 answer undecodable: {e}")))?;
    Ok(word & bit != U256::ZERO)
}

/// The store channel an `upto` payment is claimed under:
/// `x402-upto:<chainId>:<owner>:<nonce>` (Permit2 nonces are per owner, for every token).
pub fn upto_claim_id(chain_id: u64, a: &Permit2Authorization) -> ChannelId {
    ChannelId::new(format!("x402-upto:{chain_id}:{:#x}:{}", a.from, a.nonce))
}

/// Verifies `payload` for `offer` (settled by `facilitator`) at `now` against the chain and
/// claims it in `store`. A refused payment changes nothing.
pub(crate) async fn verify_in<C: X402Chain, S: ChannelStore>(
    chain: &C,
    store: &S,
    offer: &EvmOffer,
    facilitator: Address,
    payload: &UptoPayload,
    now: u64,
    settle_margin: u64,
) -> Result<UptoVerified, X402Error> {
    let max = check(offer, facilitator, payload, now, settle_margin)?;
    let a = &payload.permit2_authorization;
    let claim = upto_claim_id(offer.chain_id(), a);
    if claim::is_claimed(store, &claim).await? {
        return Err(refuse(X402ErrorKind::NonceUsed, "this permit was already used for a payment"));
    }
    if nonce_used(chain, a).await? {
        return Err(refuse(X402ErrorKind::NonceUsed, "Permit2 has used this nonce already"));
    }
    let token = Token { chain, address: offer.asset() };
    if token.balance_of(a.from).await? < a.permitted.amount {
        return Err(refuse(X402ErrorKind::InsufficientFunds, "the payer holds less than the maximum"));
    }
    if token.allowance(a.from, PERMIT2_ADDRESS).await? < a.permitted.amount {
        return Err(refuse(X402ErrorKind::InsufficientFunds, "the payer has not approved Permit2 for the maximum"));
    }
    claim::take(store, &claim, max, a.deadline).await?;
    Ok(UptoVerified { payer: a.from, max, payload: payload.clone(), offer: offer.clone(), claim })
}
