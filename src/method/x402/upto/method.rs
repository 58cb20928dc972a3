//! [`X402Upto`]: the x402 `upto` scheme on an EVM token as a [`PaymentMethod`].

use std::fmt;
use std::sync::Arc;

use alloy::primitives::Address;

use super::payload::UptoPayload;
use super::settle::ProxySettler;
use super::verify::{self, UptoVerified};
use crate::amount::{Amount, Quote};
use crate::error::PaymentError;
use crate::method::x402::SettlementOutcome;
use crate::method::x402::error::X402Error;
use crate::method::x402::offer::EvmOffer;
use crate::method::x402::settle::{Facilitator, Settlement};
use crate::method::x402::token::X402Chain;
use crate::method::x402::verify::{DEFAULT_SETTLE_MARGIN_SECS, unix_now};
use crate::method::{Grant, Offer, PaymentMethod, Renewal, Settled, Verified, Verify};
use crate::store::ChannelStore;
use crate::wire::mpp::Receipt;
use crate::wire::x402::PaymentRequirements;

type Observer = Arc<dyn Fn(SettlementOutcome) + Send + Sync>;

/// Who sends the proxy's `settle`.
enum Settler<C, S> {
    /// This method's chain key.
    Proxy(ProxySettler<C, S>),
    /// An x402 facilitator, whose key is `address`.
    Facilitator { facilitator: Facilitator<C, S>, address: Address },
}

impl<C: X402Chain, S: ChannelStore> Settler<C, S> {
    async fn settle(&self, verified: &UptoVerified, actual: Amount) -> Result<Settlement, X402Error> {
        match self {
            Settler::Proxy(proxy) => proxy.settle(verified, actual).await,
            Settler::Facilitator { facilitator, .. } => facilitator.settle_upto(verified, actual).await,
        }
    }
}

/// The x402 `upto` scheme on one EVM token, as a [`PaymentMethod`]: the payer signs a
/// Permit2 transfer of at most the request's maximum price, the response is metered against
/// it, and exactly what was delivered settles through the x402 upto proxy, sent by the
/// facilitator the witness names: this method's own chain key ([`new`](Self::new)) or an
/// x402 facilitator ([`with_facilitator`](Self::with_facilitator)). Nothing delivered (a
/// non-2xx answer, an upstream error or a client gone before the first content) sends no
/// transaction.
///
/// The offer's `extra` carries `facilitatorAddress` (what the @x402/evm `upto` client puts
/// in the witness). The payer must have approved Permit2 on the token
/// for at least the maximum; verification reads that allowance, the payer's balance and
/// Permit2's nonce bitmap, then claims the permit in the layer's store so a replay is
/// refused on every instance.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use alloy::primitives::address;
/// use alloy::signers::local::PrivateKeySigner;
/// use tollgate::amount::Amount;
/// use tollgate::method::tempo::RpcChain;
/// use tollgate::method::x402::{EvmOffer, X402Upto};
/// use tollgate::store::MemoryStore;
///
/// let payee: PrivateKeySigner = std::env::var("PAYEE_KEY")?.parse()?;
/// let usdc = address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
/// let offer = EvmOffer::new(8453, usdc, "USD Coin", "2", payee.address(), Amount::ZERO);
/// let chain = RpcChain::new("https://mainnet.base.org", payee)?;
/// let store = MemoryStore::new();
/// let method = X402Upto::new(offer, chain, store.clone());
/// # let _ = method; Ok(()) }
/// ```
pub struct X402Upto<C, S> {
    offer: EvmOffer,
    chain: C,
    settler: Arc<Settler<C, S>>,
    settle_margin: u64,
    observer: Option<Observer>,
}

impl<C: Clone, S> Clone for X402Upto<C, S> {
    fn clone(&self) -> Self {
        X402Upto {
            offer: self.offer.clone(),
            chain: self.chain.clone(),
            settler: self.settler.clone(),
            settle_margin: self.settle_margin,
            observer: self.observer.clone(),
        }
    }
}

impl<C, S> fmt::Debug for X402Upto<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X402Upto").field("offer", &self.offer).field("settle_margin", &self.settle_margin).finish()
    }
}

impl<C: X402Chain + Clone, S: ChannelStore> X402Upto<C, S> {
    /// Offers `offer` (its amount is replaced by each request's maximum price; its transfer
    /// method is not used), reads the chain and settles through `chain` (its key is the
    /// facilitator), and records settlements in `store` (the layer's).
    pub fn new(offer: EvmOffer, chain: C, store: S) -> Self {
        let settler = Arc::new(Settler::Proxy(ProxySettler::new(chain.clone(), store)));
        X402Upto { offer, chain, settler, settle_margin: DEFAULT_SETTLE_MARGIN_SECS, observer: None }
    }

    /// Offers `offer`, reads the chain through `chain`, and has `facilitator` settle; its
    /// settling key is `address` (its `/supported` `upto` kind's `extra.facilitatorAddress`),
    /// the one the witness must name.
    pub fn with_facilitator(offer: EvmOffer, chain: C, facilitator: Facilitator<C, S>, address: Address) -> Self {
        let settler = Arc::new(Settler::Facilitator { facilitator, address });
        X402Upto { offer, chain, settler, settle_margin: DEFAULT_SETTLE_MARGIN_SECS, observer: None }
    }

    /// How long a permit must stay valid after verification (default
    /// [`DEFAULT_SETTLE_MARGIN_SECS`]). A response settled at its end with a permit ends this
    /// long before the permit lapses, or before the offer's `maxTimeoutSeconds` run out if
    /// that comes first (see [`Grant::settle_by`](crate::method::Grant::settle_by)).
    pub fn settle_margin(mut self, seconds: u64) -> Self {
        self.settle_margin = seconds;
        self
    }

    /// Calls `observer` once per paid response when its settlement is over (`None`: nothing
    /// was delivered, nothing sent). It runs on the runtime and must not block.
    pub fn on_settlement(mut self, observer: impl Fn(SettlementOutcome) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The facilitator the witness must name: the settling key.
    pub fn facilitator(&self) -> Address {
        match &*self.settler {
            Settler::Proxy(_) => self.chain.sender(),
            Settler::Facilitator { address, .. } => *address,
        }
    }
}

/// The `accepts` entry of `offer` settled by `facilitator`: scheme `upto`, the maximum as
/// `amount`, `extra` = `{name, version, facilitatorAddress}`.
pub(crate) fn upto_requirement(offer: &EvmOffer, facilitator: Address) -> PaymentRequirements {
    let mut extra = offer.extra();
    extra["facilitatorAddress"] = facilitator.to_checksum(None).into();
    PaymentRequirements {
        scheme: "upto".into(),
        network: offer.network(),
        amount: offer.amount(),
        asset: offer.asset().to_checksum(None),
        pay_to: offer.pay_to().to_checksum(None),
        max_timeout_seconds: offer.timeout_seconds(),
        extra: Some(extra),
    }
}

/// What settles for a response that used `settled`: what was metered, at most the maximum.
fn settle_amount(verified: &UptoVerified, settled: &Settled) -> Option<Amount> {
    (settled.used > Amount::ZERO).then(|| settled.used.min(verified.max()))
}

impl<C, S> PaymentMethod for X402Upto<C, S>
where
    C: X402Chain + Clone + Send + Sync + 'static,
    S: ChannelStore,
{
    type Request = PaymentRequirements;
    type Payload = UptoPayload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<PaymentRequirements>> {
        match quote.maximum() {
            Some(maximum) if maximum > Amount::ZERO => {
                vec![Offer::x402(
                    "upto",
                    upto_requirement(&self.offer.clone().with_amount(maximum), self.facilitator()),
                )]
            }
            // A permit must cover the whole response: no maximum, no offer.
            _ => Vec::new(),
        }
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, PaymentRequirements, UptoPayload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let offer = self.offer.clone().with_amount(verify.request.amount);
        let (facilitator, now) = (self.facilitator(), unix_now());
        let verified =
            verify::verify_in(&self.chain, store, &offer, facilitator, verify.payload, now, self.settle_margin).await?;
        let receipt = Receipt::new("x402", verified.claim().to_string());
        let mut grant =
            Grant::new(verified.claim().clone(), Renewal::Never, receipt).payer(verified.payer().to_checksum(None));
        // Settled at the end with the permit: the response must be over before it lapses.
        let deadline = verified.payload().permit2_authorization.deadline;
        let timeout = offer.timeout_seconds();
        if let Some(at) = crate::method::x402::verify::settle_by(deadline, now, timeout, self.settle_margin) {
            grant = grant.settle_by(at);
        }
        let (settler, observer) = (self.settler.clone(), self.observer.clone());
        Ok(Verified::Serve(grant.on_settled(move |settled| {
            let Some(actual) = settle_amount(&verified, &settled) else {
                if let Some(observer) = observer {
                    observer(None);
                }
                return;
            };
            // The hook must not block: the transaction runs on its own. Without a runtime
            // nothing can be sent; the claim stays unsettled and the permit expires.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            runtime.spawn(async move {
                let outcome = settler.settle(&verified, actual).await;
                if let Some(observer) = observer {
                    observer(Some(outcome));
                }
            });
        })))
    }
}
