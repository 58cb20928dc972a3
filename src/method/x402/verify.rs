//! Verification of an x402 EVM payment: the signature offline, then the token's state, then
//! the atomic claim.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, U256};

use super::claim;
use super::eip712::{permit_digest, transfer_digest};
use super::error::{X402Error, X402ErrorKind};
use super::offer::{EvmOffer, TransferMethod, ValueRule};
use super::payload::{Authorization, ExactPayload, Permit};
use super::signature::{BadSignature, EvmSignature};
use super::token::{Token, X402Chain};
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelStore};

/// The default settle margin: an authorization must stay valid this long after it is
/// verified, or it is refused as expired (the response and the settlement must fit in it).
pub const DEFAULT_SETTLE_MARGIN_SECS: u64 = 30;

/// A payment that passed the offline checks: well signed by its payer, to the offer's payee,
/// for an acceptable value, inside its validity window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    payer: Address,
    value: Amount,
    signature: EvmSignature,
    payload: ExactPayload,
}

impl Checked {
    /// Who pays (the recovered signer).
    pub fn payer(&self) -> Address {
        self.payer
    }

    /// The signed value (exact: what settles; Permit: the most that may).
    pub fn value(&self) -> Amount {
        self.value
    }
}

/// A verified and claimed payment: what settlement takes. Only [`X402Verifier::verify`]
/// makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    checked: Checked,
    offer: EvmOffer,
    claim: ChannelId,
}

impl Verified {
    /// Who pays.
    pub fn payer(&self) -> Address {
        self.checked.payer
    }

    /// The signed value: exactly what an EIP-3009 payment settles, the most a Permit may.
    pub fn value(&self) -> Amount {
        self.checked.value
    }

    /// The store channel claimed for this payment, funded with [`value`](Self::value): the
    /// account the response draws on.
    pub fn claim(&self) -> &ChannelId {
        &self.claim
    }

    /// The offer it pays.
    pub fn offer(&self) -> &EvmOffer {
        &self.offer
    }

    /// The payload as received (what a facilitator is sent).
    pub fn payload(&self) -> &ExactPayload {
        &self.checked.payload
    }

    pub(crate) fn signature(&self) -> &EvmSignature {
        &self.checked.signature
    }
}

fn refuse(kind: X402ErrorKind, detail: impl Into<std::borrow::Cow<'static, str>>) -> X402Error {
    X402Error::new(kind, detail)
}

/// The offline half of verification: signature (EIP-712 under the offer's token domain,
/// secp256k1 recovery, low-s), recipient, value rule and validity window at `now` (unix
/// seconds). No chain, no store, no allocation but the copy of the payload.
///
/// The window leans against the payer, never against the seller: an authorization that is
/// not valid yet at `now` is refused (the token would refuse it too), and one that expires
/// within `settle_margin` seconds is refused as expired (it could not be settled in time).
pub fn check(
    offer: &EvmOffer,
    payload: &ExactPayload,
    rule: ValueRule,
    now: u64,
    settle_margin: u64,
) -> Result<Checked, X402Error> {
    let a = &payload.authorization;
    let signature = EvmSignature::from_bytes(&payload.signature).map_err(|e| {
        let detail = match e {
            BadSignature::Length => "the signature is not 65 bytes",
            BadSignature::RecoveryId => "the signature's v is not 27, 28, 0 or 1",
            BadSignature::Scalar => "the signature's r or s is out of range",
            BadSignature::HighS => "the signature is not low-s",
        };
        refuse(X402ErrorKind::InvalidSignature, detail)
    })?;
    let digest = match offer.method() {
        TransferMethod::Eip3009 => transfer_digest(offer.domain_separator(), a),
        TransferMethod::Permit => permit_digest(offer.domain_separator(), &Permit::from(a)),
    };
    if signature.recover(digest) != Some(a.from) {
        return Err(refuse(
            X402ErrorKind::InvalidSignature,
            "the signature is not the payer's over this token's domain",
        ));
    }
    if a.to != offer.pay_to() {
        return Err(refuse(X402ErrorKind::RecipientMismatch, "the authorization pays someone else"));
    }
    let value = u128::try_from(a.value)
        .map(Amount::new)
        .map_err(|_| refuse(X402ErrorKind::ValueMismatch, "the value is beyond any amount"))?;
    let fits = match rule {
        ValueRule::Equal => value == offer.amount(),
        ValueRule::AtLeast => value >= offer.amount(),
    };
    if !fits {
        return Err(refuse(X402ErrorKind::ValueMismatch, format!("value {value} does not pay {}", offer.amount())));
    }
    // EIP-3009 is valid for validAfter < block time < validBefore; a Permit until its deadline.
    if offer.method() == TransferMethod::Eip3009 && a.valid_after >= now {
        return Err(refuse(X402ErrorKind::NotYetValid, "the authorization is not valid yet"));
    }
    if a.valid_before < now.saturating_add(settle_margin) {
        return Err(refuse(X402ErrorKind::Expired, "the authorization expires before it could be settled"));
    }
    if a.valid_before > latest_validity(offer, now) {
        return Err(refuse(
            X402ErrorKind::Expired,
            "the authorization is valid for longer than the offer's maxTimeoutSeconds",
        ));
    }
    Ok(Checked { payer: a.from, value, signature, payload: payload.clone() })
}

/// Verifies x402 EVM payments against the token on chain and claims them in a
/// [`ChannelStore`] shared by every instance.
///
/// Steps, cheapest first; a refused payment changes nothing:
///
/// 1. [`check`]: signature, recipient, value rule, window (offline);
/// 2. the claim is not taken yet (one store read; replays stop here before any RPC);
/// 3. the token: EIP-3009 `authorizationState(from, nonce)` unused, or the Permit nonce is
///    the owner's `nonces(owner)`; `balanceOf(payer)` ≥ the value;
/// 4. the claim ([`ChannelStore::create_lapsing`] of [`Verified::claim`], funded with the
///    value, lapsing [`CLAIM_LAPSE_GRACE`](super::CLAIM_LAPSE_GRACE) after the authorization):
///    of racing requests with one authorization, on any instance, exactly one passes.
///
/// Balances are checked per payment: two payments of one payer verified at once may each
/// fit the balance while both do not; the token then refuses the second settlement. A
/// layer that cannot risk that serves such payers one at a time.
#[derive(Clone, Debug)]
pub struct X402Verifier<C, S> {
    chain: C,
    store: S,
    settle_margin: u64,
}

impl<C: X402Chain, S: ChannelStore> X402Verifier<C, S> {
    /// A verifier reading the token through `chain` and claiming in `store`.
    pub fn new(chain: C, store: S) -> Self {
        X402Verifier { chain, store, settle_margin: DEFAULT_SETTLE_MARGIN_SECS }
    }

    /// How long an authorization must stay valid after verification (default
    /// [`DEFAULT_SETTLE_MARGIN_SECS`]).
    pub fn settle_margin(mut self, seconds: u64) -> Self {
        self.settle_margin = seconds;
        self
    }

    /// The chain it reads.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// The store it claims in.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Verifies `payload` for `offer` under `rule` now, and claims it.
    pub async fn verify(
        &self,
        offer: &EvmOffer,
        payload: &ExactPayload,
        rule: ValueRule,
    ) -> Result<Verified, X402Error> {
        self.verify_at(offer, payload, rule, unix_now()).await
    }

    /// [`verify`](Self::verify) at unix time `now`.
    pub async fn verify_at(
        &self,
        offer: &EvmOffer,
        payload: &ExactPayload,
        rule: ValueRule,
        now: u64,
    ) -> Result<Verified, X402Error> {
        verify_in(&self.chain, &self.store, offer, payload, rule, now, self.settle_margin).await
    }
}

/// [`X402Verifier::verify_at`] claiming in any `store` (the layer's, for the method).
pub(crate) async fn verify_in<C: X402Chain, S: ChannelStore>(
    chain: &C,
    store: &S,
    offer: &EvmOffer,
    payload: &ExactPayload,
    rule: ValueRule,
    now: u64,
    settle_margin: u64,
) -> Result<Verified, X402Error> {
    let checked = check(offer, payload, rule, now, settle_margin)?;
    let a = &payload.authorization;
    let claim = claim::vacant(store, &claim_id(offer, a), offer.method() == TransferMethod::Permit).await?;
    let token = Token { chain, address: offer.asset() };
    match offer.method() {
        TransferMethod::Eip3009 => {
            if token.authorization_used(a.from, a.nonce).await? {
                return Err(refuse(X402ErrorKind::NonceUsed, "the token has used this authorization already"));
            }
        }
        TransferMethod::Permit => {
            let next = token.nonces(a.from).await?;
            let signed = U256::from_be_bytes(a.nonce.0);
            if signed < next {
                return Err(refuse(X402ErrorKind::NonceUsed, "the token has used this permit nonce already"));
            }
            if signed != next {
                return Err(refuse(X402ErrorKind::NonceMismatch, "the permit nonce is not the owner's next"));
            }
        }
    }
    if token.balance_of(a.from).await? < a.value {
        return Err(refuse(X402ErrorKind::InsufficientFunds, "the payer holds less than the value"));
    }
    claim::take(store, &claim, checked.value, a.valid_before).await?;
    Ok(Verified { checked, offer: offer.clone(), claim })
}

/// The store channel a payment of `authorization` for `offer` is claimed under (and its
/// settlement recorded on): `x402:<chainId>:<asset>:<from>:<nonce>` for EIP-3009,
/// `x402-permit:<chainId>:<asset>:<owner>:<nonce>` for a Permit, lowercase hex. A Permit
/// whose nonce already paid nothing once is claimed under the next round,
/// `<that id>/<round>` ([`Verified::claim`] names the one taken).
pub fn claim_id(offer: &EvmOffer, authorization: &Authorization) -> ChannelId {
    claim::claim_id(offer.method(), offer.chain_id(), offer.asset(), authorization.from, authorization.nonce)
}

/// How far a client's clock may run ahead of ours: an authorization may be valid this much
/// longer than the offer's timeout.
pub(crate) const CLOCK_SKEW_SECS: u64 = 120;

/// The latest validity end accepted at `now` for `offer`: every client signs `now +
/// maxTimeoutSeconds` (@x402/evm, @libertai/x402). A later one is refused, so a claim (which
/// lapses after its authorization) never lives longer than the offer's timeout plus the
/// claim's grace, whatever the payer signs.
pub(crate) fn latest_validity(offer: &EvmOffer, now: u64) -> u64 {
    now.saturating_add(offer.timeout_seconds()).saturating_add(CLOCK_SKEW_SECS)
}

/// When a response paid at `now` with an authorization valid until `valid_until` (unix
/// seconds) must be over so that its settlement lands in time: `settle_margin` seconds
/// earlier, and no later than the offer's `max_timeout` after `now` (x402's bound on a
/// response), so a payer who signs a far deadline cannot hold the settlement back (and
/// empty its account meanwhile) by not reading. `None` for a date too far to be represented
/// (it never comes).
pub(crate) fn settle_by(valid_until: u64, now: u64, max_timeout: u64, settle_margin: u64) -> Option<SystemTime> {
    let until = valid_until.min(now.saturating_add(max_timeout));
    UNIX_EPOCH.checked_add(std::time::Duration::from_secs(until.saturating_sub(settle_margin)))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::settle_by;

    #[test]
    fn a_settle_by_date_is_the_deadline_less_the_margin_within_the_offers_timeout() {
        let (now, timeout) = (1_000, 300);
        assert_eq!(settle_by(1_100, now, timeout, 30), Some(UNIX_EPOCH + Duration::from_secs(1_070)));
        assert_eq!(settle_by(10, now, timeout, 30), Some(UNIX_EPOCH), "a deadline inside the margin is due at once");
        // A payer who signs a far deadline gets the offer's timeout, not its own.
        assert_eq!(settle_by(u64::MAX, now, timeout, 30), Some(UNIX_EPOCH + Duration::from_secs(1_270)));
        assert_eq!(settle_by(1_000_000, now, timeout, 30), Some(UNIX_EPOCH + Duration::from_secs(1_270)));
        // A bound no clock represents never comes (and no arithmetic overflows on it).
        assert_eq!(settle_by(u64::MAX, u64::MAX, u64::MAX, 0), None);
        assert_eq!(settle_by(u64::MAX, now, u64::MAX, u64::MAX), Some(UNIX_EPOCH));
    }
}
