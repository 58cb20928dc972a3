//! [`PaymentContext`]: what the inner service learns about the payment of its request.

use crate::amount::Quote;
use crate::store::ChannelId;

/// How the request being served was paid. The layer inserts it into the request's
/// extensions just before it calls the inner service, for paid requests only (a request
/// that is not for sale reaches the inner service without one), as tower-sessions does
/// with its `Session`.
///
/// Read it with `request.extensions().get::<PaymentContext>()`, or, with the `axum`
/// feature, as an extractor (a handler reached without one answers `500`: the route is
/// not behind the layer, a server mistake; use `Option<PaymentContext>` on routes that
/// are also served unpaid).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PaymentContext {
    /// The method that verified the payment (`tempo`, …).
    pub method: String,
    /// The intent it paid with (`session`, `charge`, …).
    pub intent: String,
    /// The payer, when the method names one (an address or a DID).
    pub payer: Option<String>,
    /// The store channel the response draws on.
    pub channel: ChannelId,
    /// The price this request was quoted.
    pub quote: Quote,
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::PaymentContext;

    /// The rejection of the [`PaymentContext`] extractor: the request carries no payment
    /// context, so the route is not behind a `PaymentLayer` (or the request was not for
    /// sale). Answers `500 Internal Server Error`: a server mistake, not the client's.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct MissingPaymentContext;

    impl std::fmt::Display for MissingPaymentContext {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the request carries no payment context: is the route behind a PaymentLayer?")
        }
    }

    impl std::error::Error for MissingPaymentContext {}

    impl IntoResponse for MissingPaymentContext {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for PaymentContext {
        type Rejection = MissingPaymentContext;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<PaymentContext>().cloned().ok_or(MissingPaymentContext)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for PaymentContext {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<PaymentContext>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::MissingPaymentContext;
