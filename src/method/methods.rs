//! [`Methods`]: one route, several payment methods, and the [`Offers`] they make.
//!
//! A layer is generic over [`Methods`], implemented for any single [`PaymentMethod`] and for
//! tuples of two to five of them. The 402 carries one challenge (or x402 `accepts` entry)
//! per offer of every method; a payment goes to the method that made the offer it matches,
//! and only to it.
//!
//! Dispatch is by position in the tuple, resolved statically: no boxing of methods, no
//! trait objects on the request path. Each offer keeps its typed request (one small box)
//! so pinning compares typed values, and its encoded form, made once.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::request;
use serde::{Deserialize, Serialize};

use super::encoded::{EncodedRequests, encode};
use super::{Offer, PaymentMethod, Verified, Verify, Wire};
use crate::amount::{Amount, Quote};
use crate::error::{PaymentError, PaymentErrorKind};
use crate::store::ChannelStore;
use crate::wire::Presented;
use crate::wire::mpp::Challenge;
use crate::wire::x402::PaymentRequirements;

/// One offer a route makes, with the method that made it (its *issuer*), its request
/// encoded for its wire form, and its typed request for pinning.
pub struct Offered {
    issuer: usize,
    method: Cow<'static, str>,
    intent: Cow<'static, str>,
    description: Option<String>,
    sent: Sent,
    typed: Box<dyn Any + Send + Sync>,
}

/// An offer's request as it travels.
pub(crate) enum Sent {
    /// The JCS base64url `request` of an MPP challenge (also the challenge cache's key).
    Mpp(Arc<str>),
    /// An x402 `accepts` entry, and its JSON (what a v1 payment is matched against).
    X402(PaymentRequirements, serde_json::Value),
}

impl Offered {
    /// The position of the method that made it.
    pub fn issuer(&self) -> usize {
        self.issuer
    }

    /// The method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The intent (the scheme, for x402).
    pub fn intent(&self) -> &str {
        &self.intent
    }

    /// The description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// How it travels.
    pub fn wire(&self) -> Wire {
        match self.sent {
            Sent::Mpp(_) => Wire::Mpp,
            Sent::X402(..) => Wire::X402,
        }
    }

    /// The base64url JCS `request` of an MPP offer.
    pub fn encoded_request(&self) -> Option<&str> {
        match &self.sent {
            Sent::Mpp(request) => Some(request),
            Sent::X402(..) => None,
        }
    }

    /// The x402 `accepts` entry of an x402 offer.
    pub fn requirements(&self) -> Option<&PaymentRequirements> {
        match &self.sent {
            Sent::X402(requirements, _) => Some(requirements),
            Sent::Mpp(_) => None,
        }
    }

    pub(crate) fn x402_json(&self) -> Option<&serde_json::Value> {
        match &self.sent {
            Sent::X402(_, json) => Some(json),
            Sent::Mpp(_) => None,
        }
    }

    pub(crate) fn mpp_request(&self) -> Option<&Arc<str>> {
        match &self.sent {
            Sent::Mpp(request) => Some(request),
            Sent::X402(..) => None,
        }
    }

    /// The typed request, if it is an `R`.
    pub fn request<R: 'static>(&self) -> Option<&R> {
        self.typed.downcast_ref()
    }
}

impl fmt::Debug for Offered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Offered");
        s.field("issuer", &self.issuer).field("method", &self.method).field("intent", &self.intent);
        match &self.sent {
            Sent::Mpp(request) => s.field("request", request),
            Sent::X402(requirements, _) => s.field("requirements", requirements),
        };
        s.field("description", &self.description).finish()
    }
}

/// The offers a route makes for one quote, each with its issuer.
#[derive(Debug, Default)]
pub struct Offers {
    list: Vec<Offered>,
    /// The layer's kept encodings, when made by a layer.
    encoded: Option<Arc<EncodedRequests>>,
}

impl Offers {
    /// No offers yet.
    pub fn new() -> Self {
        Offers::default()
    }

    /// No offers yet; MPP requests are encoded through the layer's `encoded`.
    pub(crate) fn encoded_by(encoded: Arc<EncodedRequests>) -> Self {
        Offers { list: Vec::new(), encoded: Some(encoded) }
    }

    /// Adds the offers of the method at position `issuer`. An offer whose request cannot
    /// be encoded for its wire form (JCS refuses it; an x402 offer that is not a
    /// `PaymentRequirements`) is dropped: the layer never sends what it could not check.
    pub fn extend<R: Serialize + Send + Sync + 'static>(&mut self, issuer: usize, offers: Vec<Offer<R>>) {
        self.list.reserve(offers.len());
        for offer in offers {
            let sent = match offer.wire {
                Wire::Mpp => {
                    let encoded = match &self.encoded {
                        Some(kept) => kept.encode(issuer, &offer.request),
                        None => encode(&offer.request),
                    };
                    let Some(encoded) = encoded else { continue };
                    Sent::Mpp(encoded)
                }
                Wire::X402 => {
                    let Ok(json) = serde_json::to_value(&offer.request) else { continue };
                    let Ok(requirements) = PaymentRequirements::deserialize(&json) else { continue };
                    Sent::X402(requirements, json)
                }
            };
            self.list.push(Offered {
                issuer,
                method: offer.method,
                intent: offer.intent,
                description: offer.description,
                sent,
                typed: Box::new(offer.request),
            });
        }
    }

    /// The offers, in the order the methods made them.
    pub fn iter(&self) -> std::slice::Iter<'_, Offered> {
        self.list.iter()
    }

    /// The offers, in the order the methods made them.
    pub fn as_slice(&self) -> &[Offered] {
        &self.list
    }

    /// The offers, owned.
    pub fn into_vec(self) -> Vec<Offered> {
        self.list
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there is no offer.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A payment the layer checked and matched to an offer, on its way to the offer's method
/// (see [`Methods::verify`]): still in wire form; the method's types are decoded last.
#[derive(Debug)]
#[non_exhaustive]
pub struct Checked<'a> {
    /// The payment as presented.
    pub presented: &'a Presented,
    /// The offer's request as the payment names it (echoed, `accepted`, or the matched
    /// x402 offer's JSON).
    pub request: &'a serde_json::Value,
    /// The request head.
    pub head: &'a request::Parts,
    /// The quote; `None` for a management request recognised before pricing.
    pub quote: Option<&'a Quote>,
    /// The voucher window at this price, and in units.
    pub window: (Amount, u64),
}

impl<'a> Checked<'a> {
    /// A matched payment.
    pub fn new(
        presented: &'a Presented,
        request: &'a serde_json::Value,
        head: &'a request::Parts,
        quote: Option<&'a Quote>,
        window: (Amount, u64),
    ) -> Self {
        Checked { presented, request, head, quote, window }
    }
}

/// The payment methods of one route: a single [`PaymentMethod`] or a tuple of two to five.
/// See the [module docs](self).
///
/// ```
/// # fn both<A: tollgate::method::PaymentMethod, B: tollgate::method::PaymentMethod>(a: A, b: B) {
/// use tollgate::method::Methods;
/// fn offered<M: Methods>(_: M) {}
/// offered((a, b)); // session and charge on one route, say
/// # }
/// ```
pub trait Methods: Send + Sync + 'static {
    /// Adds the offers of every method for a request priced at `quote`.
    fn offers(&self, quote: &Quote, offers: &mut Offers);

    /// Whether `echoed` (an echoed MPP request, an x402 `accepted`) decodes into the
    /// request type of `offered`'s issuer and pins to it ([`PaymentMethod::pins`]).
    fn pins(&self, offered: &Offered, echoed: &serde_json::Value) -> bool;

    /// The position of the method whose management request this is
    /// ([`PaymentMethod::manages`]), if any.
    fn manages(&self, challenge: &Challenge, echoed: &serde_json::Value) -> Option<usize>;

    /// Verifies a payment with the method at position `issuer`, the one whose offer it
    /// matched, decoding its request and payload into that method's types.
    fn verify<St: ChannelStore>(
        &self,
        issuer: usize,
        checked: Checked<'_>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send;

    /// The first method (in order) that takes the request's own non-payment credential
    /// ([`PaymentMethod::authorize`]), with its position and its answer.
    fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> impl Future<Output = Option<(usize, Result<super::Grant, PaymentError>)>> + Send;
}

fn pins<M: PaymentMethod>(method: &M, offered: &Offered, echoed: &serde_json::Value) -> bool {
    let Some(offered) = offered.request::<M::Request>() else { return false };
    M::Request::deserialize(echoed).is_ok_and(|echoed| method.pins(&echoed, offered))
}

fn manages<M: PaymentMethod>(method: &M, challenge: &Challenge, echoed: &serde_json::Value) -> bool {
    M::Request::deserialize(echoed).is_ok_and(|echoed| method.manages(challenge, &echoed))
}

async fn verify<M: PaymentMethod, St: ChannelStore>(
    method: &M,
    checked: Checked<'_>,
    store: &St,
) -> Result<Verified, PaymentError> {
    let request = M::Request::deserialize(checked.request).map_err(|e| {
        PaymentError::new(PaymentErrorKind::InvalidChallenge, format!("request does not fit this method: {e}"))
    })?;
    let payload = M::Payload::deserialize(checked.presented.payload())
        .map_err(|e| PaymentError::new(PaymentErrorKind::InvalidPayload, format!("payload: {e}")))?;
    let verify = Verify {
        presented: checked.presented,
        request: &request,
        payload: &payload,
        head: checked.head,
        quote: checked.quote,
        window: checked.window.0,
        window_units: checked.window.1,
    };
    method.verify(verify, store).await
}

impl<M: PaymentMethod> Methods for M {
    fn offers(&self, quote: &Quote, offers: &mut Offers) {
        offers.extend(0, PaymentMethod::offers(self, quote));
    }

    fn pins(&self, offered: &Offered, echoed: &serde_json::Value) -> bool {
        pins(self, offered, echoed)
    }

    fn manages(&self, challenge: &Challenge, echoed: &serde_json::Value) -> Option<usize> {
        manages(self, challenge, echoed).then_some(0)
    }

    fn verify<St: ChannelStore>(
        &self,
        _: usize,
        checked: Checked<'_>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send {
        verify(self, checked, store)
    }

    async fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> Option<(usize, Result<super::Grant, PaymentError>)> {
        PaymentMethod::authorize(self, head, quote, store).await.map(|answer| (0, answer))
    }
}

fn no_such_issuer() -> PaymentError {
    // Unreachable through the layer: issuers come from this route's own offers.
    PaymentError::new(PaymentErrorKind::InvalidChallenge, "challenge does not match what this route offers")
}

macro_rules! tuple_methods {
    ($($name:ident $index:tt),+) => {
        impl<$($name: PaymentMethod),+> Methods for ($($name,)+) {
            fn offers(&self, quote: &Quote, offers: &mut Offers) {
                $(offers.extend($index, PaymentMethod::offers(&self.$index, quote));)+
            }

            fn pins(&self, offered: &Offered, echoed: &serde_json::Value) -> bool {
                match offered.issuer {
                    $($index => pins(&self.$index, offered, echoed),)+
                    _ => false,
                }
            }

            fn manages(&self, challenge: &Challenge, echoed: &serde_json::Value) -> Option<usize> {
                $(if manages(&self.$index, challenge, echoed) { return Some($index); })+
                None
            }

            async fn verify<St: ChannelStore>(
                &self,
                issuer: usize,
                checked: Checked<'_>,
                store: &St,
            ) -> Result<Verified, PaymentError> {
                match issuer {
                    $($index => verify(&self.$index, checked, store).await,)+
                    _ => Err(no_such_issuer()),
                }
            }

            async fn authorize<St: ChannelStore>(
                &self,
                head: &request::Parts,
                quote: &Quote,
                store: &St,
            ) -> Option<(usize, Result<super::Grant, PaymentError>)> {
                $(
                    if let Some(answer) = PaymentMethod::authorize(&self.$index, head, quote, store).await {
                        return Some(($index, answer));
                    }
                )+
                None
            }
        }
    };
}

tuple_methods!(A 0, B 1);
tuple_methods!(A 0, B 1, C 2);
tuple_methods!(A 0, B 1, C 2, D 3);
tuple_methods!(A 0, B 1, C 2, D 3, E 4);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(intent: &'static str) -> Offer<serde_json::Value> {
        Offer::mpp("m", intent, json!({"b": 1, "a": intent}))
    }

    #[test]
    fn offers_remember_their_issuer_typed_request_and_encoding() {
        let mut offers = Offers::new();
        offers.extend(0, vec![offer("a"), offer("b")]);
        offers.extend(1, vec![offer("c")]);
        offers.extend::<serde_json::Value>(2, vec![]);
        offers.extend(3, vec![offer("d")]);
        let issuers: Vec<_> = offers.iter().map(|offer| (offer.issuer(), offer.intent())).collect();
        assert_eq!(issuers, [(0, "a"), (0, "b"), (1, "c"), (3, "d")]);
        let first = &offers.as_slice()[0];
        assert_eq!(first.request::<serde_json::Value>(), Some(&json!({"a": "a", "b": 1})));
        assert_eq!(first.request::<String>(), None);
        // JCS: keys sorted, base64url without padding.
        assert_eq!(
            first.encoded_request(),
            Some(crate::wire::mpp::encode_request(&json!({"a": "a", "b": 1})).as_str())
        );
        assert_eq!(first.wire(), Wire::Mpp);
    }

    #[test]
    fn an_x402_offer_that_is_not_a_requirement_is_dropped() {
        let mut offers = Offers::new();
        offers.extend(0, vec![Offer::x402("exact", json!({"scheme": "exact"}))]);
        assert!(offers.is_empty());
        let requirement = json!({"scheme": "exact", "network": "eip155:8453", "amount": "10", "asset": "0xA",
                                 "payTo": "0xB", "maxTimeoutSeconds": 60});
        offers.extend(0, vec![Offer::x402("exact", requirement)]);
        assert_eq!(offers.as_slice()[0].requirements().map(|r| r.amount), Some(Amount::new(10)));
        assert_eq!(offers.as_slice()[0].wire(), Wire::X402);
    }
}
