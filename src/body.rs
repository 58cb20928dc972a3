//! [`MeteredBody`]: the response body the layer hands back.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::BoxError;
use crate::meter::Meter;
use crate::metering::Metering;
use crate::metering::prepay::Prepay;
use crate::store::ChannelStore;

pin_project! {
    /// The response body of a [`PaymentService`](crate::PaymentService): the layer's own
    /// rejection body, the inner body untouched (free or failed requests), or the inner
    /// body metered against what the client paid.
    ///
    /// A metered body forwards the inner bytes as they are and never forwards a frame (an
    /// SSE event, for event streams; a whole gRPC message, for gRPC) whose cost exceeds the
    /// paid headroom. An SSE stream on a session pauses with a `payment-need-voucher` event
    /// until a voucher lands; otherwise it ends cleanly (SSE; gRPC with `grpc-status: 8`
    /// trailers) or with a [`BudgetExhausted`](crate::BudgetExhausted) error. When it
    /// ends, errs or is dropped it commits exactly what was forwarded and releases the
    /// rest, once; SSE responses end with a `payment-receipt` event. The release runs to
    /// its end even if the body is dropped while it is under way, and a paused stream is
    /// released at its deadline (or when its channel is closed) even if its client never
    /// reads again. A body dropped outside any tokio runtime still releases (on a thread
    /// of its own if the store has to wait).
    ///
    /// While it lives it keeps its reservation's lease alive: each growth renews it with
    /// what went out so far, and so does a timer every third of the store's lease while the
    /// body is polled (a slow upstream) or its stream is paused. The timer lives in the body:
    /// a body that ended or is gone renews nothing. If the store answers that the lease is
    /// gone (reclaimed), the body delivers nothing more and ends as for a closed channel.
    ///
    /// See the [crate docs](crate) for an example.
    pub struct MeteredBody<B, M, St>
    where
        St: ChannelStore,
    {
        #[pin]
        kind: Kind<B, M, St>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, M, St>
    where
        St: ChannelStore,
    {
        Rejection { bytes: Option<Bytes> },
        Held { bytes: Option<Bytes>, failure: Option<BoxError> },
        Untouched { #[pin] inner: B },
        Metered { #[pin] inner: B, metering: Box<Metering<M, St>> },
        Prepaying { prepay: Box<Prepay<B, M, St>> },
    }
}

impl<B, M, St: ChannelStore> MeteredBody<B, M, St> {
    pub(crate) fn rejection(bytes: Bytes) -> Self {
        MeteredBody { kind: Kind::Rejection { bytes: (!bytes.is_empty()).then_some(bytes) } }
    }

    /// A body read whole and metered before its head went out; `failure` ends it as the
    /// metering did (after what was charged).
    pub(crate) fn held(bytes: Bytes, failure: Option<BoxError>) -> Self {
        MeteredBody { kind: Kind::Held { bytes: (!bytes.is_empty()).then_some(bytes), failure } }
    }

    pub(crate) fn untouched(inner: B) -> Self {
        MeteredBody { kind: Kind::Untouched { inner } }
    }

    pub(crate) fn metered(inner: B, metering: Metering<M, St>) -> Self {
        MeteredBody { kind: Kind::Metered { inner, metering: Box::new(metering) } }
    }

    pub(crate) fn prepaying(prepay: Prepay<B, M, St>) -> Self {
        MeteredBody { kind: Kind::Prepaying { prepay: Box::new(prepay) } }
    }
}

impl<B, M, St> Body for MeteredBody<B, M, St>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    M: Meter,
    St: ChannelStore,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Rejection { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Held { bytes, failure } => match bytes.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Poll::Ready(failure.take().map(Err)),
            },
            KindProj::Untouched { inner } => inner.poll_frame(cx).map_err(Into::into),
            KindProj::Metered { inner, metering } => metering.poll_frame(inner, cx),
            KindProj::Prepaying { prepay } => prepay.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Rejection { bytes } => bytes.is_none(),
            Kind::Held { bytes, failure } => bytes.is_none() && failure.is_none(),
            Kind::Untouched { inner } => inner.is_end_stream(),
            Kind::Metered { metering, .. } => metering.is_done(),
            Kind::Prepaying { prepay } => prepay.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Rejection { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Held { bytes, failure: None } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Held { .. } => SizeHint::default(),
            Kind::Untouched { inner } => inner.size_hint(),
            // The layer may add events or stop early: the length is unknown.
            Kind::Metered { .. } | Kind::Prepaying { .. } => SizeHint::default(),
        }
    }
}

impl<B, M, St: ChannelStore> fmt::Debug for MeteredBody<B, M, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Rejection { .. } => "rejection",
            Kind::Held { .. } => "held",
            Kind::Untouched { .. } => "untouched",
            Kind::Metered { .. } => "metered",
            Kind::Prepaying { .. } => "prepaying",
        };
        f.debug_struct("MeteredBody").field("kind", &kind).finish()
    }
}
