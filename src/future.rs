//! [`ResponseFuture`]: admission, then the inner service, then the metered response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::admission::Admission;
use crate::amount::Amount;
use crate::body::MeteredBody;
use crate::error::{BoxError, PaymentError, PaymentErrorKind};
use crate::meter::{Meter, is_event_stream};
use crate::metering::prepay::{self, Call, Prepay};
use crate::metering::{Metering, Reserved};
use crate::method::ProofStatus;
use crate::request_body::RequestBody;
use crate::respond;
use crate::store::ChannelStore;
use crate::wire::mpp::set_private_cache;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// Response future of [`PaymentService`](crate::PaymentService).
    pub struct ResponseFuture<S, ReqB, Mt, St, ResB>
    where
        S: Service<Request<RequestBody<ReqB>>>,
        St: ChannelStore,
    {
        #[pin]
        state: State<S, S::Future, ReqB, Mt, St, ResB>,
        // The request is gRPC: refusals are answered in gRPC form.
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, ReqB, Mt, St, ResB>
    where
        St: ChannelStore,
    {
        Admitting { admission: BoxFuture<Admission<ReqB, Mt, St>>, inner: Option<S> },
        Calling { #[pin] future: F, paid: Option<Box<Reserved<Mt, St>>> },
        // A plain answer whose payment settles before its head goes out: read it whole...
        Holding {
            head: Option<http::response::Parts>,
            #[pin] body: ResB,
            read: BytesMut,
            paid: Option<Box<Reserved<Mt, St>>>,
        },
        // ... then meter it, settle and wait for the proof.
        Settling {
            head: Option<http::response::Parts>,
            metering: Box<Metering<Mt, St>>,
            source: Full<Bytes>,
            out: BytesMut,
            failure: Option<BoxError>,
        },
        Answered { response: Option<Response<Bytes>> },
    }
}

impl<S, ReqB, Mt, St, ResB> ResponseFuture<S, ReqB, Mt, St, ResB>
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

impl<S, ReqB, Mt, St, ResB> Future for ResponseFuture<S, ReqB, Mt, St, ResB>
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
                    let paid = paid.take();
                    if holds(&response, paid.as_deref()) {
                        let (head, body) = response.into_parts();
                        this.state.set(State::Holding { head: Some(head), body, read: BytesMut::new(), paid });
                        continue;
                    }
                    return Poll::Ready(Ok(metered(response, paid)));
                }
                StateProj::Holding { head, mut body, read, paid } => {
                    if let Some(paid) = paid {
                        // Keep the lease alive while the answer is read (see `Calling`).
                        let _ = paid.account.poll_lease(cx);
                    }
                    // A longer answer is not delivered, not charged, and answered `502`.
                    let limit = paid.as_ref().map_or(0, |paid| paid.paid.policy.held_answer_bytes);
                    let whole = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            // Trailers of a held answer are not forwarded.
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) if read.len().saturating_add(data.len()) <= limit => {
                                    read.extend_from_slice(&data)
                                }
                                Ok(_) => break false,
                                Err(_) => {}
                            },
                            Some(Err(_)) => break false,
                            None => break true,
                        }
                    };
                    let (Some(head), Some(mut paid)) = (head.take(), paid.take()) else {
                        return Poll::Ready(Ok(bad_gateway()));
                    };
                    if !whole {
                        // Too long, or the upstream failed: nothing goes out, nothing is charged.
                        paid.account.deliver(Amount::ZERO, 0);
                        return Poll::Ready(Ok(bad_gateway()));
                    }
                    let bytes = std::mem::take(read).freeze();
                    // Held whole and settled before it goes out: no deadline cuts it (see
                    // `Grant::settle_by`).
                    paid.paid.grant.take_settle_by();
                    let metering = Box::new(Metering::new(&head, *paid));
                    let (source, out) = (Full::new(bytes), BytesMut::new());
                    this.state.set(State::Settling { head: Some(head), metering, source, out, failure: None });
                }
                StateProj::Settling { head, metering, source, out, failure } => {
                    loop {
                        match ready!(metering.poll_frame(Pin::new(&mut *source), cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    out.extend_from_slice(&data);
                                }
                            }
                            Some(Err(error)) => *failure = Some(error),
                            None => break,
                        }
                    }
                    let Some(head) = head.take() else { return Poll::Ready(Ok(bad_gateway())) };
                    let body = std::mem::take(out).freeze();
                    return Poll::Ready(Ok(proven(head, body, failure.take(), metering.take_proof())));
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

/// Whether `response` is held back until its payment settled: a 2xx plain (non-SSE) answer
/// paid by a grant that proves its payment.
fn holds<B, Mt, St: ChannelStore>(response: &Response<B>, paid: Option<&Reserved<Mt, St>>) -> bool {
    paid.is_some_and(|paid| paid.proof.is_some())
        && response.status().is_success()
        && !is_event_stream(response.headers())
}

/// The held answer, metered and settled: its head with the proof's header and its whole
/// body, or the proof's error (`402`) when the settlement failed (nothing is delivered).
fn proven<ResB, Mt, St: ChannelStore>(
    mut head: http::response::Parts,
    body: Bytes,
    failure: Option<BoxError>,
    proof: Option<crate::method::Proof>,
) -> Response<MeteredBody<ResB, Mt, St>> {
    if let Some(proof) = &proof {
        if proof.status() == ProofStatus::Failed {
            let error = proof.error().cloned().unwrap_or_else(|| {
                PaymentError::new(PaymentErrorKind::VerificationFailed, "the payment did not settle")
            });
            let mut response = respond::problem(error);
            if let Some((name, value)) = proof.header_pair() {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            return response.map(MeteredBody::rejection);
        }
        if let Some((name, value)) = proof.header_pair() {
            head.headers.insert(name.clone(), value.clone());
        }
    }
    // The whole body is known now: its own length replaces the inner one.
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers.remove(header::TRANSFER_ENCODING);
    set_private_cache(&mut head.headers);
    Response::from_parts(head, MeteredBody::held(body, failure))
}

/// An answer that could not be held whole (too long, or the upstream failed reading it).
fn bad_gateway<ResB, Mt, St: ChannelStore>() -> Response<MeteredBody<ResB, Mt, St>> {
    let mut response = Response::new(MeteredBody::rejection(Bytes::from_static(b"upstream answer not delivered")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
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

impl<S, ReqB, Mt, St, ResB> fmt::Debug for ResponseFuture<S, ReqB, Mt, St, ResB>
where
    S: Service<Request<RequestBody<ReqB>>>,
    St: ChannelStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitting { .. } => "admitting",
            State::Calling { .. } => "calling",
            State::Holding { .. } => "holding",
            State::Settling { .. } => "settling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
