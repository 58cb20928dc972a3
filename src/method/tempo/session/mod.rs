//! [`TempoSession`]: MPP `tempo` / `session` (payment channels with cumulative vouchers).

mod activity;
mod book;
mod cache;
mod capture;
mod close;
mod ladder;
mod lock;
mod open;
mod open_v2;
mod request;
mod settle;
mod top_up;
mod voucher;

pub use book::Remembered;
pub use request::{SessionDetails, SessionRequest};
pub use settle::{SettlementPolicy, SettlementReport};

use std::fmt;
use std::time::Duration;

use alloy::primitives::{Address, B256};

use super::chain::{ChainError, ChainErrorKind, OnChainChannel, TempoChain};
use super::escrow::ITip20ChannelReserve;
use super::payload::SessionPayload;
use super::{SessionConfig, VoucherDomain};
use crate::amount::{Amount, Quote};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify, is_management_request};
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError, StoreErrorKind};
use crate::wire::mpp::{Challenge, Receipt};
use activity::Activity;
use book::VoucherBook;
use cache::ChannelCache;

/// The Tempo session method: a client opens a payment channel on chain, then pays with
/// off-chain cumulative vouchers as it consumes; it tops up without closing and closes to
/// get the rest back.
///
/// Rules follow the reference implementation: channel state comes from the store and the
/// chain, never from the payload alone; vouchers are monotonic, an equal voucher is an
/// idempotent retry, a voucher never exceeds the deposit; settlements and closes never
/// capture more than was delivered.
///
/// Money rules on top:
///
/// - Nothing about a channel is served or disclosed to a credential that has not proved
///   it speaks for it: a voucher signed by the channel's signer, or a mined open. A
///   retried `open` on a known channel is checked as a voucher.
/// - A voucher may run at most [`max_voucher_ahead`](SessionConfig::max_voucher_ahead)
///   ahead of what the channel delivered and set aside. That bounds what a v1 channel can
///   leave uncaptured: the v1 escrow pays out a voucher exactly, and the payee captures the
///   highest voucher at or below what was delivered (the payer never pays for undelivered
///   units), so the payee loses less than one voucher step. v2 captures exactly what was
///   delivered.
/// - A close stops new delivery first, waits for live streams to end (up to
///   [`close_drain_timeout`](TempoSession::close_drain_timeout)), then captures. A close
///   that failed on chain can be retried; the settlement loop also finishes it, closes v2
///   channels whose payer asked the chain for a forced close, and (opt-in) idle ones.
/// - The grant names the payer the chain knows, never the credential's `source`.
///
/// # Several instances, restarts
///
/// Everything a settlement needs lives in the store passed to `verify`, `settle_all` and
/// `settle`: the accepted vouchers (each kept before the store accepts it and before
/// anything is answered or served), the v2 descriptors and the list of channels to settle.
/// So a restarted instance, or any other instance sharing the store and the chain, serves,
/// settles and closes every channel. One channel is captured by one instance at a time (the
/// store lock `settle:<channel>`). In memory stay only what is safe to lose: the on-chain
/// read cache ([`channel_state_ttl`](Self::channel_state_ttl)) and the idle timestamps of
/// [`close_idle_after`](Self::close_idle_after) (a restart starts the idle clock again).
pub struct TempoSession<C> {
    config: SessionConfig,
    domain: VoucherDomain,
    chain: C,
    book: VoucherBook,
    cache: ChannelCache,
    activity: Activity,
    drain: Duration,
    idle: Option<Duration>,
    describe: Option<Describe>,
    amount: Option<OfferAmount>,
}

/// Sets an offer's amount from its quote.
type OfferAmount = Box<dyn Fn(&Quote) -> Option<Amount> + Send + Sync>;

/// Writes an offer's description from its quote.
type Describe = Box<dyn Fn(&Quote) -> String + Send + Sync>;

impl<C: TempoChain> TempoSession<C> {
    /// A session method advertising `config`, talking to the chain through `chain`.
    pub fn new(config: SessionConfig, chain: C) -> Self {
        let domain = VoucherDomain::new(config.protocol, config.chain_id, config.escrow);
        let book = VoucherBook::new(&config);
        TempoSession {
            config,
            domain,
            chain,
            book,
            cache: ChannelCache::new(Duration::from_secs(5)),
            activity: Activity::default(),
            drain: Duration::from_secs(10),
            idle: None,
            describe: None,
            amount: None,
        }
    }

    /// v2 only: the settlement loop closes a channel whose store state has not moved for
    /// `after` and that has nothing in flight, capturing exactly what was delivered and
    /// refunding the rest (default: never). A v2 voucher may run ahead of delivery; an idle
    /// close turns that into the exact amount without waiting for the payer. The payer
    /// opens a new channel to come back.
    pub fn close_idle_after(mut self, after: Duration) -> Self {
        self.idle = Some(after);
        self
    }

    /// How long a close waits for the channel's live streams to end (default 10 s) before
    /// it captures what they committed. A stream still running after that is not captured
    /// (at most what it had reserved); the payer is never charged for it either.
    pub fn close_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain = timeout;
        self
    }

    /// How long an on-chain channel read is trusted (default 5 s, as the reference server).
    /// Vouchers within that time do not hit the RPC; a close requested on chain is seen at
    /// most this late.
    pub fn channel_state_ttl(mut self, ttl: Duration) -> Self {
        self.cache = ChannelCache::new(ttl);
        self
    }

    /// The offer's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The chain access.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// What this method keeps in `store` for settlement: channels to settle, v2
    /// descriptors, accepted vouchers (at most 256 per channel). Every instance sharing the
    /// store sees the same figures.
    pub async fn remembered<St: ChannelStore>(&self, store: &St) -> Result<Remembered, StoreError> {
        self.book.remembered(store).await
    }

    fn request(&self, quote: &Quote) -> SessionRequest {
        let amount = self.amount.as_ref().and_then(|amount| amount(quote));
        SessionRequest {
            amount: amount.unwrap_or_else(|| quote.price.output.unit_price()),
            currency: self.config.currency.to_checksum(None),
            method_details: self.details(),
            recipient: self.config.recipient.to_checksum(None),
            unit_type: quote.price.unit.to_string(),
            suggested_deposit: self.config.suggested_deposit,
        }
    }

    fn details(&self) -> SessionDetails {
        SessionDetails {
            chain_id: self.config.chain_id,
            escrow_contract: self.config.escrow.to_checksum(None),
            session_protocol: self.config.protocol.as_str().to_owned(),
            min_voucher_delta: self.config.min_voucher_delta,
        }
    }

    /// Sets the `amount` of this method's offers for the quotes where `amount` gives one
    /// (default: one unit's price). A response that cannot pause for a voucher (a JSON
    /// answer) may ask for its whole maximum, so that a client signing a voucher `amount`
    /// above its last one covers it.
    pub fn amount(mut self, amount: impl Fn(&Quote) -> Option<Amount> + Send + Sync + 'static) -> Self {
        self.amount = Some(Box::new(amount));
        self
    }

    /// Sets the description of this method's offers (the exact price in words, say: the
    /// `amount` is rounded up to a base unit).
    pub fn description(mut self, describe: impl Fn(&Quote) -> String + Send + Sync + 'static) -> Self {
        self.describe = Some(Box::new(describe));
        self
    }
}

impl<C: TempoChain> PaymentMethod for TempoSession<C> {
    type Request = SessionRequest;
    type Payload = SessionPayload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<SessionRequest>> {
        let offer = Offer::mpp("tempo", "session", self.request(quote));
        match &self.describe {
            Some(describe) => vec![offer.description(describe(quote))],
            None => vec![offer],
        }
    }

    /// A voucher, top-up or close on a bodiless request, for a challenge this session
    /// issued (same chain, escrow, protocol, token and payee): verified without the
    /// route's price. The voucher rules take the unit price the challenge names.
    fn manages(&self, challenge: &Challenge, echoed: &SessionRequest) -> bool {
        challenge.method == "tempo"
            && challenge.intent == "session"
            && echoed.method_details.chain_id == self.config.chain_id
            && echoed.method_details.escrow_contract == self.config.escrow.to_checksum(None)
            && echoed.method_details.session_protocol == self.config.protocol.as_str()
            && echoed.currency == self.config.currency.to_checksum(None)
            && echoed.recipient == self.config.recipient.to_checksum(None)
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, SessionRequest, SessionPayload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let ctx = Context { session: self, verify: &verify, store };
        match verify.payload.clone() {
            SessionPayload::Open(open) => ctx.open(open).await,
            SessionPayload::Voucher(voucher) => ctx.voucher(voucher).await,
            SessionPayload::TopUp(top_up) => ctx.top_up(top_up).await,
            SessionPayload::Close(close) => ctx.close(close).await,
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for TempoSession<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempoSession")
            .field("config", &self.config)
            .field("chain", &self.chain)
            .field("drain", &self.drain)
            .field("idle", &self.idle)
            .field("described", &self.describe.is_some())
            .finish_non_exhaustive()
    }
}

/// One credential being verified.
struct Context<'a, C, St> {
    session: &'a TempoSession<C>,
    verify: &'a Verify<'a, SessionRequest, SessionPayload>,
    store: &'a St,
}

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    fn config(&self) -> &SessionConfig {
        &self.session.config
    }

    /// The price of one unit, as the echoed challenge says.
    fn unit_price(&self) -> Result<Amount, PaymentError> {
        Ok(self.verify.request.amount)
    }

    fn receipt(&self, channel: B256, state: &ChannelState, tx: Option<B256>) -> Receipt {
        let id = format!("{channel:#x}");
        let mut receipt = Receipt::new("tempo", id.clone());
        receipt.intent = Some("session".into());
        receipt.challenge_id = self.verify.challenge().map(|challenge| challenge.id.clone());
        receipt.channel_id = Some(id);
        receipt.accepted_cumulative = Some(state.accepted);
        receipt.spent = Some(state.spent);
        receipt.units = Some(state.units);
        receipt.tx_hash = tx.map(|h| format!("{h:#x}"));
        receipt
    }

    /// Answers a management request with a receipt, or serves a content request. Only
    /// called once the credential proved it speaks for the channel (a valid signature by
    /// its signer, or a mined open): the receipt discloses the channel's state.
    fn outcome(&self, channel: B256, state: &ChannelState, tx: Option<B256>, on_chain: &OnChainChannel) -> Verified {
        let receipt = self.receipt(channel, state, tx);
        if is_management_request(self.verify.head) {
            return Verified::Respond(receipt);
        }
        // The payer the chain (or the descriptor hashed into the id) names, never the
        // credential's unverified `source`.
        let payer = format!("did:pkh:eip155:{}:{}", self.config().chain_id, on_chain.payer.to_checksum(None));
        Verified::Serve(Grant::new(store_id(channel), Renewal::Voucher, receipt).payer(payer))
    }

    /// The credential's `source` must be the channel's payer or signer when present.
    fn check_source(&self, channel: &OnChainChannel) -> Result<(), PaymentError> {
        let Some(credential) = self.verify.credential() else { return Ok(()) };
        let Some((chain_id, address)) = credential.source_address() else {
            return match credential.source {
                Some(_) => {
                    Err(PaymentError::new(PaymentErrorKind::InvalidPayload, "source is not a did:pkh:eip155 address"))
                }
                None => Ok(()),
            };
        };
        let address: Address =
            address.parse().map_err(|_| PaymentError::new(PaymentErrorKind::InvalidPayload, "bad source address"))?;
        if chain_id != self.config().chain_id || (address != channel.payer && address != channel.signer()) {
            return Err(PaymentError::new(PaymentErrorKind::SignerMismatch, "source cannot spend from this channel"));
        }
        Ok(())
    }

    /// One signature recovery; the expected signer comes from the chain or the descriptor,
    /// never from the payload alone.
    fn check_signature(
        &self,
        channel: B256,
        cumulative: u128,
        signature: &str,
        expected: Address,
    ) -> Result<(), PaymentError> {
        let invalid = |e: super::SignatureError| PaymentError::new(PaymentErrorKind::InvalidSignature, e.to_string());
        let signature = super::VoucherSignature::from_hex(signature).map_err(invalid)?;
        super::verify_voucher(&self.session.domain, channel, cumulative, &signature, expected).map_err(invalid)
    }

    /// A deposit the store can keep: checked before an open or a top-up is broadcast, so
    /// a store with a narrower range (Redis: 2^53 − 1) refuses it before the payer's
    /// funds are locked in a channel this server could not account for.
    fn check_storable(&self, deposit: Amount) -> Result<(), PaymentError> {
        let most = self.store.max_amount();
        if deposit > most {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                format!("the deposit is above what this server's payment store keeps ({most} at most)"),
            ));
        }
        Ok(())
    }

    /// The open voucher must cover one unit and stay within a nonzero deposit.
    fn check_open_amount(&self, cumulative: Amount, deposit: u128) -> Result<(), PaymentError> {
        if deposit == 0 || cumulative < self.unit_price()? || cumulative.get() > deposit {
            return Err(PaymentError::new(
                PaymentErrorKind::PaymentInsufficient,
                "the open voucher must cover one unit and stay within a nonzero deposit",
            ));
        }
        self.check_storable(Amount::new(deposit))?;
        let ahead = self.max_ahead()?;
        if cumulative > ahead {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                format!("the open voucher runs more than {ahead} ahead of delivery"),
            ));
        }
        Ok(())
    }

    /// A descriptor must hash to the channel id and name our payee and token (§4.4).
    fn check_descriptor(&self, descriptor: &super::ChannelDescriptor, channel: B256) -> Result<(), PaymentError> {
        let config = self.config();
        if descriptor.channel_id(config.protocol, config.escrow, config.chain_id) != channel {
            return Err(PaymentError::new(PaymentErrorKind::VerificationFailed, "descriptor does not match channelId"));
        }
        if descriptor.payee != config.recipient || descriptor.token != config.currency {
            return Err(PaymentError::new(
                PaymentErrorKind::VerificationFailed,
                "descriptor names another payee or token",
            ));
        }
        Ok(())
    }

    /// The channel as the chain has it, live and with no close pending. `descriptor` (v2)
    /// must already be checked against the id; `None` falls back to the stored one.
    async fn on_chain(
        &self,
        id: B256,
        fresh: bool,
        descriptor: Option<&super::ChannelDescriptor>,
    ) -> Result<OnChainChannel, PaymentError> {
        let stored = match (descriptor, self.config().protocol) {
            (None, super::SessionProtocol::V2) => self.stored_descriptor(id).await?,
            _ => None,
        };
        let descriptor = descriptor.or(stored.as_ref());
        let (chain, config) = (&self.session.chain, self.config());
        let read = if fresh {
            self.session.cache.refresh(chain, config, id, descriptor).await
        } else {
            self.session.cache.get(chain, config, id, descriptor).await
        };
        let channel = read.map_err(chain_error)?;
        if !channel.exists() {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not funded on chain"));
        }
        if channel.finalized || channel.close_requested_at != 0 {
            return Err(PaymentError::new(
                PaymentErrorKind::ChannelFinalized,
                "channel is closed or a close is pending",
            ));
        }
        Ok(channel)
    }
}

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    /// The v2 descriptor the store keeps for `channel` (checked when it was kept).
    async fn stored_descriptor(&self, channel: B256) -> Result<Option<super::ChannelDescriptor>, PaymentError> {
        self.session.book.descriptor(self.store, channel).await.map_err(store_error)
    }

    /// The payload's descriptor (checked against the id), else (v2) the stored one.
    async fn descriptor(
        &self,
        channel: B256,
        claimed: Option<super::ChannelDescriptor>,
    ) -> Result<Option<super::ChannelDescriptor>, PaymentError> {
        match (claimed, self.config().protocol) {
            (Some(descriptor), _) => {
                self.check_descriptor(&descriptor, channel)?;
                Ok(Some(descriptor))
            }
            (None, super::SessionProtocol::V2) => self.stored_descriptor(channel).await,
            (None, super::SessionProtocol::V1) => Ok(None),
        }
    }
}

/// The reserve's view of a descriptor.
pub(crate) fn reserve_descriptor(d: &super::ChannelDescriptor) -> ITip20ChannelReserve::ChannelDescriptor {
    ITip20ChannelReserve::ChannelDescriptor {
        payer: d.payer,
        payee: d.payee,
        operator: d.operator,
        token: d.token,
        salt: d.salt,
        authorizedSigner: d.authorized_signer,
        expiringNonceHash: d.expiring_nonce_hash,
    }
}

/// The store key of an on-chain channel id.
pub(crate) fn store_id(channel: B256) -> ChannelId {
    ChannelId::new(format!("{channel:#x}"))
}

pub(crate) fn chain_error(e: ChainError) -> PaymentError {
    match e.kind() {
        ChainErrorKind::Unavailable => {
            crate::observe::chain_unavailable("tempo_session");
            PaymentError::new(PaymentErrorKind::Unavailable, "the chain is unavailable")
        }
        _ => PaymentError::new(PaymentErrorKind::VerificationFailed, format!("chain refused: {e}")),
    }
}

/// A hex signature's bytes (open, voucher and close all keep them).
fn hex_bytes(text: &str) -> Result<alloy::primitives::Bytes, PaymentError> {
    text.parse().map_err(|_| PaymentError::new(PaymentErrorKind::InvalidSignature, "signature is not hex"))
}

fn no_descriptor() -> PaymentError {
    PaymentError::new(PaymentErrorKind::InvalidPayload, "a v2 channel needs its descriptor")
}

pub(crate) fn store_error(e: StoreError) -> PaymentError {
    match e.kind() {
        StoreErrorKind::NotFound => PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not found"),
        StoreErrorKind::Finalized => PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"),
        StoreErrorKind::Invalid => {
            PaymentError::new(PaymentErrorKind::AmountExceedsDeposit, "amount exceeds the deposit")
        }
        _ => PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable"),
    }
}
