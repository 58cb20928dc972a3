//! [`PaymentMethod`] through an `Arc` (a method shared with a settlement loop) and an
//! `Option` (a method a configuration may leave out: it offers nothing).

use std::future::Future;
use std::sync::Arc;

use http::request;

use super::{Grant, Offer, PaymentMethod, Verified, Verify};
use crate::amount::Quote;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::store::ChannelStore;
use crate::wire::mpp::Challenge;

impl<M: PaymentMethod> PaymentMethod for Arc<M> {
    type Request = M::Request;
    type Payload = M::Payload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<M::Request>> {
        (**self).offers(quote)
    }

    fn pins(&self, echoed: &M::Request, offered: &M::Request) -> bool {
        (**self).pins(echoed, offered)
    }

    fn manages(&self, challenge: &Challenge, echoed: &M::Request) -> bool {
        (**self).manages(challenge, echoed)
    }

    fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> impl Future<Output = Option<Result<Grant, PaymentError>>> + Send {
        (**self).authorize(head, quote, store)
    }

    fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, M::Request, M::Payload>,
        store: &St,
    ) -> impl Future<Output = Result<Verified, PaymentError>> + Send {
        (**self).verify(verify, store)
    }
}

impl<M: PaymentMethod> PaymentMethod for Option<M> {
    type Request = M::Request;
    type Payload = M::Payload;

    fn offers(&self, quote: &Quote) -> Vec<Offer<M::Request>> {
        self.as_ref().map_or_else(Vec::new, |method| method.offers(quote))
    }

    fn pins(&self, echoed: &M::Request, offered: &M::Request) -> bool {
        self.as_ref().is_some_and(|method| method.pins(echoed, offered))
    }

    fn manages(&self, challenge: &Challenge, echoed: &M::Request) -> bool {
        self.as_ref().is_some_and(|method| method.manages(challenge, echoed))
    }

    async fn authorize<St: ChannelStore>(
        &self,
        head: &request::Parts,
        quote: &Quote,
        store: &St,
    ) -> Option<Result<Grant, PaymentError>> {
        match self {
            Some(method) => method.authorize(head, quote, store).await,
            None => None,
        }
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, M::Request, M::Payload>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        match self {
            Some(method) => method.verify(verify, store).await,
            // Unreachable through the layer: an absent method makes no offer to match.
            None => Err(PaymentError::new(PaymentErrorKind::MethodUnsupported, "this method is not offered")),
        }
    }
}
