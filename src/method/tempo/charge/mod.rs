//! [`TempoCharge`]: MPP `tempo` / `charge`, one TIP-20 payment per request (§5).

mod claim;
mod config;
mod matching;
mod memo;
mod payload;
mod pull;
mod push;
mod request;

pub use config::{ChargeConfig, ChargeConfigError, ChargeModes, Split};
pub use memo::attribution_memo;
pub use payload::ChargePayload;
pub use request::ChargeRequest;

use alloy::primitives::{Address, B256};

use super::chain::{ChainError, ChainErrorKind, Mined, TempoChain};
use crate::amount::Quote;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use crate::store::ChannelStore;
use crate::wire::mpp::Receipt;
use claim::Claim;
use matching::{Expected, Mismatch};

/// The Tempo charge method (`method="tempo"`, `intent="charge"`): each request is paid by
/// one on-chain TIP-20 payment, verified before the response starts.
///
/// The offer asks for the route's price ([`Quote::minimum`]) in one transaction paying the
/// recipient (and the [splits](ChargeConfig::splits), if any). The client answers with
/// either credential type:
///
/// - **pull** (`{type:"transaction", signature}`): a signed Tempo transaction (`0x76`). Its
///   calls must be exactly the transfers asked for, nothing else; the server checks it,
///   broadcasts it and checks the mined receipt.
/// - **push** (`{type:"hash", hash}`): the client broadcast the transaction itself; the
///   server reads its receipt and checks the transfer logs. A credential `source` must
///   name the transaction's sender.
///
/// When the challenge fixes no memo, one of the transfers must be a `transferWithMemo`
/// whose memo is the challenge-bound [`attribution_memo`], as the reference clients write
/// it, so a payment made for one challenge cannot be presented against another.
///
/// # Replays and failures
///
/// Each payment is used once: once its transaction is mined and checked, its hash is
/// claimed in the store with [`ChannelStore::create`], atomically, as a one-shot account
/// funded with exactly the amount paid ([`Renewal::Never`]), which the layer meters the
/// response against. Before that nothing is written, so a transaction that never lands
/// (junk, unfunded, refused by the chain) leaves no trace in the store, and a hash
/// presented against the wrong challenge does not use it up. A pull transaction is
/// checked offline first (decoding, chain, signature and sender, calls and amounts,
/// validity window); a replay of a used one is refused before it reaches the chain.
///
/// If the chain cannot be reached (a `503` with no challenge) or the wait for the receipt
/// gives up, the same credential can be retried: the retry finds the mined transaction
/// (the chain answers "already known" or "nonce too low", and its receipt is read).
///
/// # Not supported
///
/// Fee sponsorship (`feePayer`: a `0x78` envelope is refused), the zero-amount `proof`
/// credential (a free route gets no offer, so the layer fails closed), and recovering a
/// keychain-signed transaction's sender before broadcast (the receipt's sender is used).
///
/// ```
/// use alloy::primitives::address;
/// use alloy::signers::local::PrivateKeySigner;
/// use tollgate::method::tempo::{ChargeConfig, PATH_USD, RpcChain, TempoCharge};
/// use tollgate::store::MemoryStore;
/// use tollgate::{Amount, PaymentLayer, Price, Secret};
///
/// let payee = address!("0x1111111111111111111111111111111111111111");
/// let chain = RpcChain::new("http://127.0.0.1:8545", PrivateKeySigner::random())?;
/// let charge = TempoCharge::new(ChargeConfig::new(42431, PATH_USD, payee), chain)?;
/// let secret = Secret::new("a secret of at least 32 bytes!!!");
/// let layer = PaymentLayer::new(charge, MemoryStore::new(), "api.example.com", secret)
///     .pricing(Price::per_request(Amount::new(10_000)));
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct TempoCharge<C> {
    config: ChargeConfig,
    chain: C,
    /// Charge the quote's maximum, not its minimum.
    whole_request: bool,
}

impl<C: TempoChain> TempoCharge<C> {
    /// A charge method advertising `config` (checked by [`ChargeConfig::validate`]),
    /// talking to the chain through `chain`.
    pub fn new(config: ChargeConfig, chain: C) -> Result<Self, ChargeConfigError> {
        config.validate()?;
        Ok(TempoCharge { config, chain, whole_request: false })
    }

    /// Charges a whole request at once, at its [maximum](crate::Quote::maximum): upfront plus
    /// every output unit the request may produce. For metered routes (an LLM completion
    /// priced per token) offered beside a session: a client that does not want a channel
    /// pays the most the response can cost, settled at once, and the response is never cut
    /// short. A request whose quote has no maximum (no `max_output`) is not offered a charge.
    ///
    /// By default a charge pays the quote's [minimum](crate::Quote::minimum), which is the
    /// whole price of a route priced per request.
    pub fn whole_request(mut self) -> Self {
        self.whole_request = true;
        self
    }

    /// The offer's configuration.
    pub fn config(&self) -> &ChargeConfig {
        &self.config
    }

    /// The chain access.
    pub fn chain(&self) -> &C {
        &self.chain
    }
}

impl<C: TempoChain> PaymentMethod for TempoCharge<C> {
    type Request = ChargeRequest;
    type Payload = ChargePayload;

    /// One `tempo`/`charge` offer for the quote's minimum (its maximum with
    /// [`whole_request`](TempoCharge::whole_request)), or none when that cannot be sold
    /// (zero, no maximum, or not above the splits).
    fn offers(&self, quote: &Quote) -> Vec<Offer<ChargeRequest>> {
        let amount = if self.whole_request { quote.maximum() } else { Some(quote.minimum()) };
        let Some(amount) = amount else { return Vec::new() };
        let request = ChargeRequest::offer(&self.config, amount);
        request.map(|request| Offer::mpp("tempo", "charge", request)).into_iter().collect()
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, ChargeRequest, ChargePayload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let request = verify.request.clone();
        let ctx = Context { charge: self, verify: &verify, store, request };
        match verify.payload.clone() {
            ChargePayload::Transaction { signature } => ctx.pull(signature).await,
            ChargePayload::Hash { hash } => ctx.push(hash).await,
            ChargePayload::Proof {} => {
                Err(PaymentError::new(PaymentErrorKind::MethodUnsupported, "zero-amount proofs are not supported"))
            }
        }
    }
}

/// One credential being verified.
struct Context<'a, C, St> {
    charge: &'a TempoCharge<C>,
    verify: &'a Verify<'a, ChargeRequest, ChargePayload>,
    store: &'a St,
    request: ChargeRequest,
}

fn refuse(detail: impl Into<std::borrow::Cow<'static, str>>) -> PaymentError {
    PaymentError::new(PaymentErrorKind::VerificationFailed, detail)
}

/// An unreachable chain is a `503` (nothing is known); a refusal is the payment's fault.
fn chain_error(e: ChainError) -> PaymentError {
    match e.kind() {
        ChainErrorKind::Unavailable => {
            crate::observe::chain_unavailable("tempo_charge");
            PaymentError::new(PaymentErrorKind::Unavailable, "the chain is unavailable")
        }
        _ => refuse(format!("chain refused: {e}")),
    }
}

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    /// The transfers to find, and the challenge binding unless the request fixes a memo.
    fn expected(&self) -> Result<Expected<'_>, PaymentError> {
        let challenge = self.verify.challenge().ok_or_else(|| refuse("a charge is paid with an MPP credential"))?;
        let binding = self.request.memo.is_none().then_some((challenge.realm.as_str(), challenge.id.as_str()));
        Ok(Expected { transfers: self.request.transfers()?, binding })
    }

    /// The credential's `source` address, if it names one; it must be on this chain.
    fn source(&self) -> Result<Option<Address>, PaymentError> {
        let Some(credential) = self.verify.credential() else { return Ok(None) };
        let Some((chain_id, address)) = credential.source_address() else {
            return match credential.source {
                Some(_) => {
                    Err(PaymentError::new(PaymentErrorKind::InvalidPayload, "source is not a did:pkh:eip155 address"))
                }
                None => Ok(None),
            };
        };
        if chain_id != self.request.chain_id {
            return Err(refuse("source is on another chain"));
        }
        address.parse().map(Some).map_err(|_| PaymentError::new(PaymentErrorKind::InvalidPayload, "bad source address"))
    }

    /// A mined payment must have succeeded and logged the transfers from `sender`.
    fn check_mined(&self, mined: &Mined, expected: &Expected<'_>, sender: Address) -> Result<(), PaymentError> {
        if !mined.success {
            return Err(refuse("the payment transaction reverted"));
        }
        expected.check_logs(&mined.logs, self.request.currency, sender).map_err(Mismatch::into_error)
    }

    /// Claims the mined payment (funding its one-shot account) and serves the request
    /// from it.
    async fn serve(&self, hash: B256, sender: Address) -> Result<Verified, PaymentError> {
        let claim = Claim::take(self.store, hash, self.request.amount).await?;
        let mut receipt = Receipt::new("tempo", format!("{hash:#x}"));
        receipt.intent = Some("charge".into());
        let payer = format!("did:pkh:eip155:{}:{}", self.request.chain_id, sender.to_checksum(None));
        Ok(Verified::Serve(Grant::new(claim.id().clone(), Renewal::Never, receipt).payer(payer)))
    }
}
