//! [`UpstreamBody`]: an upstream's SSE body as the client gets it, whole events only, and a
//! well-formed ending when the upstream fails mid-stream.
//!
//! Frames are forwarded as they arrive (no buffering beyond an event cut across frames, at
//! most [`MAX_EVENT_BYTES`]).
//! When the upstream errs, stalls past the idle timeout, or ends without `data: [DONE]`,
//! the partial event is dropped and the stream ends the way OpenAI ends a failed stream:
//! an `{"error": ...}` frame, then `data: [DONE]`. The body itself never errs, so the
//! payment layer ends it normally: it charges what was delivered and sends the
//! `payment-receipt` event.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use serde_json::json;
use tokio::time::Sleep;

/// The longest event kept back while it is cut across frames: the upstream controls its
/// length, so an event that never ends must not grow the proxy's memory without bound.
/// OpenAI chunks are a few KiB; a tool call's arguments stream in many chunks.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// See the [module docs](self).
pub struct UpstreamBody<B> {
    inner: Pin<Box<B>>,
    first: Option<Bytes>,
    partial: BytesMut,
    idle_after: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    saw_done: bool,
    tail: Option<Bytes>,
    ended: bool,
}

impl<B> UpstreamBody<B> {
    /// Wraps `inner`, whose first data frame `first` was already read.
    pub fn new(inner: B, first: Bytes, idle_after: Duration) -> Self {
        UpstreamBody {
            inner: Box::pin(inner),
            first: Some(first),
            partial: BytesMut::new(),
            idle_after,
            idle: None,
            saw_done: false,
            tail: None,
            ended: false,
        }
    }

    /// The complete events in `data` (plus any carried over), keeping a cut event back.
    /// An event longer than [`MAX_EVENT_BYTES`] fails the stream.
    fn whole_events(&mut self, data: Bytes) -> Option<Bytes> {
        let out = if self.partial.is_empty() && ends_event(&data) {
            data
        } else {
            // Only the new bytes (and the three before them) can hold a new boundary.
            let from = self.partial.len().saturating_sub(3);
            self.partial.extend_from_slice(&data);
            let Some(end) = last_event_end(&self.partial, from) else {
                if self.partial.len() > MAX_EVENT_BYTES {
                    self.fail("An upstream event is over the size limit.");
                }
                return None;
            };
            self.partial.split_to(end).freeze()
        };
        self.saw_done |= memchr::memmem::find(&out, b"data: [DONE]").is_some();
        Some(out)
    }

    fn fail(&mut self, why: &str) {
        self.partial.clear();
        self.ended = true;
        let error = json!({ "error": { "message": why, "type": "upstream_error", "code": "upstream_interrupted" } });
        self.tail = Some(Bytes::from(format!("data: {error}\n\ndata: [DONE]\n\n")));
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(tail) = this.tail.take() {
                return Poll::Ready(Some(Ok(Frame::data(tail))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if let Some(first) = this.first.take() {
                if let Some(out) = this.whole_events(first) {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                continue;
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle = None;
                    if let Ok(data) = frame.into_data() {
                        if let Some(out) = this.whole_events(data) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => this.fail(&format!("The upstream stream failed: {e}.")),
                Poll::Ready(None) if this.saw_done => this.ended = true,
                Poll::Ready(None) => this.fail("The upstream stream ended early."),
                Poll::Pending => {
                    // The timer starts at the first wait after a frame, so a stream the
                    // payment layer paused (and stopped polling) is not counted idle.
                    let after = this.idle_after;
                    let idle = this.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                    if idle.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.fail("The upstream stream stalled.");
                }
            }
        }
    }
}

/// Whether `data` ends with a blank line (an event boundary).
fn ends_event(data: &[u8]) -> bool {
    data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n")
}

/// The end of the last complete event in `data` that ends at or after `from`, if any.
fn last_event_end(data: &[u8], from: usize) -> Option<usize> {
    (from.max(1)..data.len())
        .rev()
        .find(|&i| data[i] == b'\n' && (data[i - 1] == b'\n' || data[..i].ends_with(b"\n\r")))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that sends `frames` frames of `size` bytes with no event boundary.
    struct Endless {
        left: usize,
        size: usize,
        polled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= 1;
            self.polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
        }
    }

    #[tokio::test]
    async fn scenario_10_an_event_without_end_is_cut_at_the_cap() {
        use http_body_util::BodyExt;
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // 8 MiB in 64 KiB frames, never a blank line.
        let inner = Endless { left: 128, size: 64 << 10, polled: polled.clone() };
        let body = UpstreamBody::new(inner, Bytes::from_static(b"data: {\"a\":1}\n\ndata: "), Duration::from_secs(5));
        let out = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("data: {\"a\":1}\n\n"), "whole events pass: {}", &text[..40.min(text.len())]);
        assert!(text.ends_with("data: [DONE]\n\n") && text.contains("upstream_error"), "ends as a failed stream");
        assert!(!text.contains("xxxx"), "the cut event is dropped");
        let read = polled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(read * (64 << 10) <= MAX_EVENT_BYTES + (64 << 10), "read {read} frames past the cap");
    }
}
