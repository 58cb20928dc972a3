//! [`ResponseFuture`]: admission, then the inner service, then the metered response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::admission::Admission;
use crate::amount::Amount;
use crate::body::MeteredBody;
use crate::error::{BoxError, PaymentError, PaymentErrorKind};
use crate::meter::Meter;
use crate::metering::prepay::{self, Call, Prepay};
use crate::metering::{Metering, Reserved};
use crate::request_body::RequestBody;
use crate::respond;
use crate::store::ChannelStore;
use crate::wire::mpp::set_private_cache;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// Response future of [`PaymentService`](crate::PaymentService).
    pub struct ResponseFuture<S, ReqB, Mt, St>
    where
        S: Service<Request<RequestBody<ReqB>>>,
        St: ChannelStore,
    {
        #[pin]
        state: State<S, S::Future, ReqB, Mt, St>,
        // The request is gRPC: refusals are answered in gRPC form.
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, ReqB, Mt, St>
    where
        St: ChannelStore,
    {
        Admitting { admission: BoxFuture<Admission<ReqB, Mt, St>>, inner: Option<S> },
        Calling { #[pin] future: F, paid: Option<Box<Reserved<Mt, St>>> },
        Answered { response: Option<Response<Bytes>> },
    }
}

impl<S, ReqB, Mt, St> ResponseFuture<S, ReqB, Mt, St>
where
    S: Service<Request<RequestBody<ReqB>>>,
    St: ChannelStore,
{
    pub(crate) fn admitting(admission: BoxFuture<Admission<ReqB, Mt, St>>, inner: S, grpc: bool) -> Self {
        ResponseFuture { state: State::Admitting { admission, inner: Some(inner) }, grpc }
    }

    pub(crate) fn calling(future: S::Future, paid: Option<Box<Reserved<Mt, St>>>) -> Self {
        ResponseFuture { state: State::Calling { future, paid }, grpc: false }
    }

    pub(crate) fn answered(response: Response<Bytes>, grpc: bool) -> Self {
        ResponseFuture { state: State::Answered { response: Some(response) }, grpc }
    }
}

impl<S, ReqB, Mt, St, ResB> Future for ResponseFuture<S, ReqB, Mt, St>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
    Mt: Meter,
    St: ChannelStore,
{
    type Output = Result<Response<MeteredBody<ResB, Mt, St>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Admitting { admission, inner } => match ready!(admission.as_mut().poll(cx)) {
                    Admission::Answer(response) => {
                        return Poll::Ready(Ok(answer(response, *this.grpc).map(MeteredBody::rejection)));
                    }
                    Admission::Serve { request, mut paid } => {
                        let mut inner = inner.take().expect("ResponseFuture polled after completion");
                        if let Some(paid) = &mut paid {
                            // The upfront is what calling the inner service costs the
                            // server: committed now, refunded if it fails or answers non-2xx.
                            let (upfront, units) = prepay::upfront(&paid.paid.quote);
                            paid.account.deliver(upfront, units);
                        }
                        let future = inner.call(request);
                        this.state.set(State::Calling { future, paid });
                    }
                    Admission::Prepay { request, pending } => {
                        let mut inner = inner.take().expect("ResponseFuture polled after completion");
                        let call: Call<ResB> =
                            Box::new(move || Box::pin(async move { inner.call(request).await.map_err(Into::into) }));
                        let (head, ()) = prepay::head().into_parts();
                        let body = MeteredBody::prepaying(Prepay::new(*pending, call));
                        return Poll::Ready(Ok(Response::from_parts(head, body)));
                    }
                },
                StateProj::Calling { future, paid } => {
                    if let Some(paid) = paid {
                        // The inner service may take a while to answer: keep the lease alive.
                        // A lost lease ends the metered body at its first poll.
                        let _ = paid.account.poll_lease(cx);
                    }
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            // A failing inner service is not charged.
                            if let Some(mut paid) = paid.take() {
                                paid.account.deliver(Amount::ZERO, 0);
                            }
                            return Poll::Ready(Err(error));
                        }
                    };
                    return Poll::Ready(Ok(metered(response, paid.take())));
                }
                StateProj::Answered { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(answer(response, *this.grpc).map(MeteredBody::rejection)));
                }
            }
        }
    }
}

/// The layer's own answer, in gRPC form for a gRPC request.
fn answer(response: Response<Bytes>, grpc: bool) -> Response<Bytes> {
    if grpc { crate::grpc::refusal(response) } else { response }
}

/// Wraps a paid, successful response in the metering body. A failed response (not 2xx)
/// is passed through uncharged: dropping `paid` releases its reservation. A paid
/// `101 Switching Protocols` is refused: what flows after it cannot be metered.
fn metered<B, Mt: Meter, St: ChannelStore>(
    response: Response<B>,
    paid: Option<Box<Reserved<Mt, St>>>,
) -> Response<MeteredBody<B, Mt, St>> {
    let Some(mut paid) = paid else { return response.map(MeteredBody::untouched) };
    if response.status().is_informational() {
        paid.account.deliver(Amount::ZERO, 0);
        let error = PaymentError::new(
            PaymentErrorKind::UpgradeRefused,
            "a paid route cannot switch protocols: what follows could not be metered",
        );
        return respond::problem(error).map(MeteredBody::rejection);
    }
    // A gRPC error answered in trailers-only form is a failure too, whatever its HTTP 200.
    if !response.status().is_success() || crate::grpc::is_error(response.headers()) {
        paid.account.deliver(Amount::ZERO, 0);
        return response.map(MeteredBody::untouched);
    }
    let (mut head, body) = response.into_parts();
    // The layer may add events or stop early, so the inner length no longer holds.
    head.headers.remove(header::CONTENT_LENGTH);
    set_private_cache(&mut head.headers);
    let header = paid.paid.grant.receipt().to_header_value();
    let metering = Metering::new(&head, *paid);
    if metering.is_event_stream() {
        // Proxies must not buffer a stream that pauses for vouchers. The receipt comes as the
        // stream's last event, once usage is final (the reference client expects no header).
        head.headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    } else {
        // The payment as verified; the metered usage of a plain body is in the store.
        head.headers.insert(crate::wire::mpp::PAYMENT_RECEIPT, header);
    }
    Response::from_parts(head, MeteredBody::metered(body, metering))
}

impl<S, ReqB, Mt, St> fmt::Debug for ResponseFuture<S, ReqB, Mt, St>
where
    S: Service<Request<RequestBody<ReqB>>>,
    St: ChannelStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitting { .. } => "admitting",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
