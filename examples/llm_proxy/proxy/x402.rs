//! The proxy's x402 method: `exact` (EIP-3009 or Permit) or `upto` (Permit2), as `[x402]`
//! says, in the one x402 slot of the proxy's methods.

use serde::Deserialize;
use tollgate::Quote;
use tollgate::method::tempo::RpcChain;
use tollgate::method::x402::{ExactPayload, UptoPayload, X402Exact, X402Upto};
use tollgate::method::{Offer, PaymentMethod, Verified, Verify};
use tollgate::store::ChannelStore;
use tollgate::wire::x402::PaymentRequirements;
use tollgate::{PaymentError, PaymentErrorKind};

use super::payment::X402Settler;
use super::store::ProxyStore;

/// x402 `exact` or `upto` on an EVM token.
#[derive(Debug)]
pub enum ProxyX402 {
    /// x402 `exact`: EIP-3009, or an EIP-2612 Permit settled for what was delivered.
    Exact(X402Exact<RpcChain, X402Settler>),
    /// x402 `upto`: a Permit2 transfer of at most the maximum, settled for what was
    /// delivered through the x402 upto proxy with the payee's key.
    Upto(X402Upto<RpcChain, ProxyStore>),
}

/// The `payload` of either scheme, told apart by its fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProxyX402Payload {
    /// `{signature, permit2Authorization}`.
    Upto(UptoPayload),
    /// `{signature, authorization}`.
    Exact(ExactPayload),
}

impl PaymentMethod for ProxyX402 {
    type Request = PaymentRequirements;
    type Payload = ProxyX402Payload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<PaymentRequirements>> {
        match self {
            ProxyX402::Exact(method) => method.offers(quote),
            ProxyX402::Upto(method) => method.offers(quote),
        }
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, PaymentRequirements, ProxyX402Payload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let (presented, request, head, quote) = (verify.presented, verify.request, verify.head, verify.quote);
        match (self, verify.payload) {
            (ProxyX402::Exact(method), ProxyX402Payload::Exact(payload)) => {
                let inner =
                    Verify::new(presented, request, payload, head, quote).window(verify.window, verify.window_units);
                method.verify(inner, store).await
            }
            (ProxyX402::Upto(method), ProxyX402Payload::Upto(payload)) => {
                let inner =
                    Verify::new(presented, request, payload, head, quote).window(verify.window, verify.window_units);
                method.verify(inner, store).await
            }
            _ => Err(PaymentError::new(PaymentErrorKind::InvalidPayload, "the payload is not the offered scheme's")),
        }
    }
}
