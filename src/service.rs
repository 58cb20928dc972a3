//! [`PaymentService`]: the middleware itself.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::admission;
use crate::body::MeteredBody;
use crate::config::Shared;
use crate::error::{BoxError, PaymentError, PaymentErrorKind};
use crate::future::ResponseFuture;
use crate::meter::MakeMeter;
use crate::method::Methods;
use crate::pricing::Pricing;
use crate::request_body::RequestBody;
use crate::respond;
use crate::store::ChannelStore;
use crate::wire::Presented;

/// Makes the inner service payable. Built by [`PaymentLayer`](crate::PaymentLayer).
///
/// See the [crate docs](crate) for an example.
pub struct PaymentService<S, M, St, P, MM> {
    inner: S,
    shared: Arc<Shared<M, St, P, MM>>,
}

impl<S, M, St, P, MM> PaymentService<S, M, St, P, MM> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<M, St, P, MM>>) -> Self {
        PaymentService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, M, St, P, MM> Clone for PaymentService<S, M, St, P, MM> {
    fn clone(&self) -> Self {
        PaymentService { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug, M, St: fmt::Debug, P, MM> fmt::Debug for PaymentService<S, M, St, P, MM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentService").field("inner", &self.inner).field("shared", &self.shared).finish()
    }
}

impl<S, M, St, P, MM, ReqB, ResB> Service<Request<ReqB>> for PaymentService<S, M, St, P, MM>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResB: Body<Data = bytes::Bytes>,
    ResB::Error: Into<BoxError>,
    M: Methods,
    St: ChannelStore,
    P: Pricing,
    MM: MakeMeter,
    ReqB: Body + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<BoxError>,
{
    type Response = Response<MeteredBody<ResB, MM::Meter, St>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB, MM::Meter, St, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The future must get the instance that was polled ready, not a fresh clone:
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (head, body) = request.into_parts();
        let shared = &self.shared;
        let grpc = crate::meter::is_grpc(&head.headers);
        // Fast path for the common unpaid request: answer the 402 without boxing anything.
        // Any `Authorization` (a method's own bearer token, see `PaymentMethod::authorize`)
        // takes the full path.
        let unpaid = !Presented::is_present(&head.headers) && !head.headers.contains_key(http::header::AUTHORIZATION);
        if unpaid && !shared.pricing.reads_body(&head) {
            let error = PaymentError::new(PaymentErrorKind::PaymentRequired, "Payment is required.");
            return match admission::price(shared, &head, None) {
                Ok(Some((_, offers))) => {
                    ResponseFuture::answered(respond::refusal(&shared.settings, &head, offers.as_slice(), error), grpc)
                }
                Ok(None) => {
                    ResponseFuture::calling(inner.call(Request::from_parts(head, RequestBody::untouched(body))), None)
                }
                Err(error) => ResponseFuture::answered(respond::refusal(&shared.settings, &head, &[], error), grpc),
            };
        }
        ResponseFuture::admitting(Box::pin(admission::admit(shared.clone(), head, body)), inner, grpc)
    }
}
