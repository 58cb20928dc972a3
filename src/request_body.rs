//! [`RequestBody`]: the request body the inner service receives.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::BoxError;

pin_project! {
    /// The request body handed to the inner service: the original body untouched, or the
    /// bytes the layer read to price the request.
    ///
    /// See the [crate docs](crate) for an example.
    pub struct RequestBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Read { bytes: Option<Bytes> },
        Untouched { #[pin] body: B },
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn untouched(body: B) -> Self {
        RequestBody { kind: Kind::Untouched { body } }
    }

    pub(crate) fn read(bytes: Bytes) -> Self {
        RequestBody { kind: Kind::Read { bytes: (!bytes.is_empty()).then_some(bytes) } }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Read { bytes } => {
                f.debug_struct("RequestBody").field("read", &bytes.as_ref().map(Bytes::len)).finish()
            }
            Kind::Untouched { .. } => f.debug_struct("RequestBody").finish_non_exhaustive(),
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Read { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Untouched { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))).map_err(Into::into))
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Read { bytes } => bytes.is_none(),
            Kind::Untouched { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Read { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Untouched { body } => body.size_hint(),
        }
    }
}
