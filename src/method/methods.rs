//! [`Methods`]: one route, several payment methods.
//!
//! A layer is generic over [`Methods`], implemented for any single [`PaymentMethod`] and for
//! tuples of two to four of them. The 402 carries one challenge per offer of every method;
//! a credential goes to the method that issued its challenge (found by the echoed method,
//! intent and pinned request among the offers this route makes now), and only to it.
//!
//! Dispatch is by position in the tuple, resolved statically: no boxing, no trait objects
//! on the request path. A tuple's `verify` is one `async` block matching on the position.

use std::future::Future;

use super::{Offer, PaymentMethod, Verified, Verify};
use crate::amount::Quote;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::store::ChannelStore;

/// The offers a route makes for one quote, each with the position of the method that made
/// it (its *issuer*).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Offers {
    list: Vec<Offer>,
    /// The issuer of each offer; empty while every offer comes from the first method (the
    /// single-method case pays no second allocation).
    issuers: Vec<usize>,
}

impl Offers {
    /// No offers yet.
    pub fn new() -> Self {
        Offers::default()
    }

    /// Adds the offers of the method at position `issuer`.
    pub fn extend(&mut self, issuer: usize, offers: Vec<Offer>) {
        if issuer == 0 && self.issuers.is_empty() {
            if self.list.is_empty() {
                self.list = offers;
            } else {
                self.list.extend(offers);
            }
            return;
        }
        if self.issuers.is_empty() {
            self.issuers = vec![0; self.list.len()];
        }
        self.issuers.extend(std::iter::repeat_n(issuer, offers.len()));
        self.list.extend(offers);
    }

    /// The offers, in the order the methods made them.
    pub fn as_slice(&self) -> &[Offer] {
        &self.list
    }

    /// The position of the method that made the offer at `index`.
    fn issuer(&self, index: usize) -> usize {
        self.issuers.get(index).copied().unwrap_or(0)
    }

    /// The offers with their issuers.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Offer)> {
        self.list.iter().enumerate().map(|(i, offer)| (self.issuer(i), offer))
    }

    /// Whether there is no offer.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The payment methods of one route: a single [`PaymentMethod`] or a tuple of two to four.
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

    /// Whether `echoed` still matches `offered`, by the pinning rule of the method at
    /// position `issuer` ([`PaymentMethod::pins`]).
    fn pins(&self, issuer: usize, echoed: &serde_json::Value, offered: &serde_json::Value) -> bool;

    /// Verifies a credential with the method at position `issuer`, the one whose offer its
    /// challenge echoes.
    fn verify<St: ChannelStore>(
        &self,
        issuer: usize,
        verify: Verify<'_>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send;
}

impl<M: PaymentMethod> Methods for M {
    fn offers(&self, quote: &Quote, offers: &mut Offers) {
        offers.extend(0, PaymentMethod::offers(self, quote));
    }

    fn pins(&self, _: usize, echoed: &serde_json::Value, offered: &serde_json::Value) -> bool {
        PaymentMethod::pins(self, echoed, offered)
    }

    fn verify<St: ChannelStore>(
        &self,
        _: usize,
        verify: Verify<'_>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send {
        PaymentMethod::verify(self, verify, store)
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

            fn pins(&self, issuer: usize, echoed: &serde_json::Value, offered: &serde_json::Value) -> bool {
                match issuer {
                    $($index => PaymentMethod::pins(&self.$index, echoed, offered),)+
                    _ => false,
                }
            }

            async fn verify<St: ChannelStore>(
                &self,
                issuer: usize,
                verify: Verify<'_>,
                store: &St,
            ) -> Result<Verified, PaymentError> {
                match issuer {
                    $($index => PaymentMethod::verify(&self.$index, verify, store).await,)+
                    _ => Err(no_such_issuer()),
                }
            }
        }
    };
}

tuple_methods!(A 0, B 1);
tuple_methods!(A 0, B 1, C 2);
tuple_methods!(A 0, B 1, C 2, D 3);

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(intent: &'static str) -> Offer {
        Offer { method: "m".into(), intent: intent.into(), request: serde_json::json!({}), description: None }
    }

    #[test]
    fn offers_remember_their_issuer_and_a_single_method_pays_no_issuer_list() {
        let mut offers = Offers::new();
        offers.extend(0, vec![offer("a"), offer("b")]);
        assert!(offers.issuers.is_empty());
        offers.extend(1, vec![offer("c")]);
        offers.extend(2, vec![]);
        offers.extend(3, vec![offer("d")]);
        let issuers: Vec<_> = offers.iter().map(|(issuer, offer)| (issuer, &*offer.intent)).collect();
        assert_eq!(issuers, [(0, "a"), (0, "b"), (1, "c"), (3, "d")]);
        let mut late = Offers::new();
        late.extend(1, vec![offer("x")]);
        late.extend(0, vec![offer("y")]);
        assert_eq!(late.iter().map(|(i, _)| i).collect::<Vec<_>>(), [1, 0]);
    }
}
