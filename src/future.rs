//! [`ResponseFuture`]: admission, then the inner service, then the metered response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::admission::{Admission, Paid};
use crate::body::MeteredBody;
use crate::meter::Meter;
use crate::metering::Metering;
use crate::request_body::RequestBody;
use crate::scheme::set_private_cache;
use crate::store::ChannelStore;

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
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, ReqB, Mt, St>
    where
        St: ChannelStore,
    {
        Admitting { admission: BoxFuture<Admission<ReqB, Mt, St>>, inner: Option<S> },
        Calling { #[pin] future: F, paid: Option<Box<Paid<Mt, St>>> },
        Answered { response: Option<Response<Bytes>> },
    }
}

impl<S, ReqB, Mt, St> ResponseFuture<S, ReqB, Mt, St>
where
    S: Service<Request<RequestBody<ReqB>>>,
    St: ChannelStore,
{
    pub(crate) fn admitting(admission: BoxFuture<Admission<ReqB, Mt, St>>, inner: S) -> Self {
        ResponseFuture { state: State::Admitting { admission, inner: Some(inner) } }
    }

    pub(crate) fn calling(future: S::Future, paid: Option<Box<Paid<Mt, St>>>) -> Self {
        ResponseFuture { state: State::Calling { future, paid } }
    }

    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        ResponseFuture { state: State::Answered { response: Some(response) } }
    }
}

impl<S, ReqB, Mt, St, ResB> Future for ResponseFuture<S, ReqB, Mt, St>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    Mt: Meter,
    St: ChannelStore,
{
    type Output = Result<Response<MeteredBody<ResB, Mt, St>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Admitting { admission, inner } => match ready!(admission.as_mut().poll(cx)) {
                    Admission::Answer(response) => return Poll::Ready(Ok(response.map(MeteredBody::rejection))),
                    Admission::Serve { request, paid } => {
                        let mut inner = inner.take().expect("ResponseFuture polled after completion");
                        let future = inner.call(request);
                        this.state.set(State::Calling { future, paid });
                    }
                },
                StateProj::Calling { future, paid } => {
                    // An inner error drops `paid`, releasing the reservation uncharged.
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(metered(response, paid.take())));
                }
                StateProj::Answered { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(MeteredBody::rejection)));
                }
            }
        }
    }
}

/// Wraps a paid, successful response in the metering body. A failed response (not 2xx)
/// is passed through uncharged: dropping `paid` releases its reservation.
fn metered<B, Mt: Meter, St: ChannelStore>(
    response: Response<B>,
    paid: Option<Box<Paid<Mt, St>>>,
) -> Response<MeteredBody<B, Mt, St>> {
    let Some(paid) = paid.filter(|_| response.status().is_success()) else {
        return response.map(MeteredBody::untouched);
    };
    let (mut head, body) = response.into_parts();
    // The layer may add events or stop early, so the inner length no longer holds.
    head.headers.remove(header::CONTENT_LENGTH);
    set_private_cache(&mut head.headers);
    let Paid { meter, quote, account, channel, renewal, receipt, policy } = *paid;
    let header = receipt.to_header_value();
    let metering = Metering::new(meter, &head, quote.price, policy, account, channel, renewal, receipt);
    if metering.is_event_stream() {
        // Proxies must not buffer a stream that pauses for vouchers. The receipt comes as the
        // stream's last event, once usage is final (the reference client expects no header).
        head.headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    } else {
        // The payment as verified; the metered usage of a plain body is in the store.
        head.headers.insert(crate::scheme::PAYMENT_RECEIPT, header);
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
