//! The upfront cost asked for in the stream (opt-in, see
//! [`PaymentLayer::upfront_in_stream`](crate::PaymentLayer::upfront_in_stream)).
//!
//! A session whose headroom cannot cover a request's upfront cost (an LLM prompt the
//! server buys the moment it calls the upstream) would get a 402, and the reference
//! clients never raise a voucher in answer to a 402. So the layer answers `200
//! text/event-stream` at once, emits one `payment-need-voucher` for the upfront plus a
//! window, sends keep-alive comments, and waits for the voucher. Only once the upfront
//! is reserved does it call the inner service, whose 2xx event stream then flows through
//! the normal metering. If no voucher comes before the pause deadline, the channel
//! closes, or the inner service fails, the stream ends with a `payment-error` event and
//! nothing is charged.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body::{Body, Frame};
use tokio::time::Sleep;

use crate::amount::{Amount, Quote};
use crate::error::{BoxError, PaymentError, PaymentErrorKind};
use crate::meter::{Meter, is_event_stream};
use crate::metering::account::{Account, LeaseLost};
use crate::metering::ask::AskGuard;
use crate::metering::{Metering, Paid, Reserved, StreamPolicy, frames};
use crate::store::{ChannelState, ChannelStore, Reservation, StoreError, StoreErrorKind};
use crate::wire::mpp::{problem_body, set_private_cache};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Calls the inner service once; made by the response future, which owns the service.
pub(crate) type Call<B> = Box<dyn FnOnce() -> BoxFuture<Result<Response<B>, BoxError>> + Send>;

/// What admission hands over when the upfront must be asked for in the stream.
pub(crate) struct Pending<Mt, St: ChannelStore> {
    pub(crate) paid: Paid<Mt>,
    pub(crate) store: Arc<St>,
    /// The least to reserve (the quote's minimum) and the window asked beyond it.
    pub(crate) least: Amount,
    pub(crate) window: Amount,
    /// The channel as the failed reservation saw it.
    pub(crate) state: ChannelState,
}

/// The `200 text/event-stream` head of a stream that starts by asking for the upfront.
pub(crate) fn head() -> Response<()> {
    let mut response = Response::new(());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    set_private_cache(headers);
    response
}

enum Stage<B, Mt, St: ChannelStore> {
    /// Reading the channel, to ask for what it lacks.
    Loading(BoxFuture<Result<Option<ChannelState>, StoreError>>),
    /// Recording the ask in the store, so the voucher that answers it is accepted even when
    /// it runs ahead of delivery; the need-voucher goes out once that is done.
    Asking {
        ask: BoxFuture<Result<ChannelState, StoreError>>,
        event: Bytes,
        seen: u64,
    },
    /// Waiting for the store to change (a voucher landing).
    Waiting(BoxFuture<Result<ChannelState, StoreError>>),
    Reserving(BoxFuture<Result<Reservation, StoreError>>),
    Calling {
        call: BoxFuture<Result<Response<B>, BoxError>>,
        reserved: Box<Reserved<Mt, St>>,
    },
    Streaming {
        inner: Pin<Box<B>>,
        metering: Box<Metering<Mt, St>>,
    },
    Releasing(BoxFuture<Result<ChannelState, StoreError>>),
    Done,
}

/// The body of such a stream: asks, waits, reserves, calls, then meters.
pub(crate) struct Prepay<B, Mt, St: ChannelStore> {
    stage: Stage<B, Mt, St>,
    pending: Option<Pending<Mt, St>>,
    call: Option<Call<B>>,
    out: VecDeque<Bytes>,
    deadline: Pin<Box<Sleep>>,
    keep_alive: Pin<Box<Sleep>>,
    policy: StreamPolicy,
    asked: Option<Amount>,
    /// Whether the payer has shown it answers in-band need-vouchers.
    answer: Answer,
    /// This stream's ask in the store, withdrawn once the upfront is reserved or the
    /// stream goes away.
    asker: Option<AskGuard<St>>,
}

impl<B, Mt: Meter, St: ChannelStore> Prepay<B, Mt, St>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(pending: Pending<Mt, St>, call: Call<B>) -> Self {
        let policy = pending.paid.policy;
        let mut prepay = Prepay {
            stage: Stage::Done,
            pending: None,
            call: Some(call),
            out: VecDeque::new(),
            deadline: Box::pin(tokio::time::sleep_until(crate::clock::after(policy.first_deadline()))),
            keep_alive: Box::pin(tokio::time::sleep(policy.keep_alive)),
            policy,
            asked: None,
            answer: Answer::NotAsked,
            asker: None,
        };
        let state = pending.state.clone();
        prepay.pending = Some(pending);
        prepay.ask(&state);
        prepay
    }

    pub(crate) fn is_done(&self) -> bool {
        self.out.is_empty()
            && match &self.stage {
                Stage::Done => true,
                Stage::Streaming { metering, .. } => metering.is_done(),
                _ => false,
            }
    }

    /// Emits a need-voucher for what the upfront still lacks (once per amount), then waits.
    fn ask(&mut self, state: &ChannelState) {
        self.note_answer(state);
        let Some(pending) = &self.pending else { return self.fail(unavailable()) };
        if state.finalized {
            return self.fail(PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"));
        }
        if state.available() >= pending.least {
            // A voucher landed since the reservation failed.
            return self.reserve();
        }
        let least = state.accepted.saturating_add(pending.least.saturating_sub(state.available()));
        // A window ahead, but not past the deposit unless the upfront itself needs it.
        let required = least.saturating_add(pending.window).min(state.deposit.max(least));
        let seen = state.version;
        if self.asked != Some(required) {
            self.asked = Some(required);
            if self.answer == Answer::NotAsked {
                self.answer = Answer::AskedAt(state.accepted);
            }
            let channel = pending.paid.grant.channel();
            let event = frames::need_voucher(channel, required, state.accepted, state.deposit);
            let asker = self.asker.get_or_insert_with(|| AskGuard::new(pending.store.clone(), channel.clone()));
            let ask = Box::pin(asker.ask(required, self.policy.pause_deadline));
            self.stage = Stage::Asking { ask, event, seen };
            return;
        }
        self.wait(seen);
    }

    /// The first deadline is for clients that never answer in-band need-vouchers. Once a
    /// voucher lands on the channel after this stream asked, the payer does answer: the
    /// stream then waits as long as a paused stream does, since concurrent streams on one
    /// channel may take the headroom its vouchers bought several times over before it wins.
    fn note_answer(&mut self, state: &ChannelState) {
        if let Answer::AskedAt(before) = self.answer
            && state.accepted > before
        {
            self.answer = Answer::Answered;
            let later = crate::clock::after(self.policy.pause_deadline);
            if later > self.deadline.deadline() {
                self.deadline.as_mut().reset(later);
            }
        }
    }

    fn wait(&mut self, seen: u64) {
        let Some(pending) = &self.pending else { return self.fail(unavailable()) };
        let (store, channel) = (pending.store.clone(), pending.paid.grant.channel().clone());
        self.stage = Stage::Waiting(Box::pin(async move { store.changed(&channel, seen).await }));
    }

    fn reserve(&mut self) {
        let Some(pending) = &self.pending else { return self.fail(unavailable()) };
        let (store, channel) = (pending.store.clone(), pending.paid.grant.channel().clone());
        let (least, most) = (pending.least, pending.least.saturating_add(pending.window));
        self.stage = Stage::Reserving(Box::pin(async move { store.reserve(&channel, least, most).await }));
    }

    /// The upfront is reserved: commit it (a client that leaves while the inner service
    /// runs still pays what the server bought) and call the inner service.
    fn call(&mut self, lease: Reservation) {
        // The upfront is reserved: the ask has served its purpose.
        self.asker = None;
        let (Some(pending), Some(call)) = (self.pending.take(), self.call.take()) else {
            return self.fail(unavailable());
        };
        let mut reserved = Reserved::new(pending.paid, pending.store, lease);
        let (upfront, units) = upfront(&reserved.paid.quote);
        reserved.account.deliver(upfront, units);
        self.stage = Stage::Calling { call: call(), reserved: Box::new(reserved) };
    }

    /// The inner service answered: a 2xx event stream is metered; anything else is refused
    /// uncharged.
    fn answered(&mut self, response: Result<Response<B>, BoxError>, mut reserved: Reserved<Mt, St>) {
        let account = &mut reserved.account;
        let response = match response {
            Ok(response) if response.status().is_success() && is_event_stream(response.headers()) => response,
            Ok(response) => {
                account.deliver(Amount::ZERO, 0);
                let detail = format!("the service answered {} instead of an event stream", response.status());
                return self.refund(reserved.account, PaymentError::new(PaymentErrorKind::Unavailable, detail));
            }
            Err(_) => {
                account.deliver(Amount::ZERO, 0);
                let error = PaymentError::new(PaymentErrorKind::Unavailable, "the service failed");
                return self.refund(reserved.account, error);
            }
        };
        let (head, body) = response.into_parts();
        let metering = Metering::new(&head, reserved);
        self.stage = Stage::Streaming { inner: Box::pin(body), metering: Box::new(metering) };
    }

    fn refund(&mut self, account: Account<St>, error: PaymentError) {
        self.out.push_back(error_event(&error));
        self.stage = Stage::Releasing(Box::pin(account.release()));
    }

    fn fail(&mut self, error: PaymentError) {
        self.out.push_back(error_event(&error));
        self.stage = Stage::Done;
    }

    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            match &mut self.stage {
                Stage::Done => return Poll::Ready(None),
                Stage::Streaming { inner, metering } => return metering.poll_frame(inner.as_mut(), cx),
                Stage::Releasing(release) => {
                    let _ = ready!(release.as_mut().poll(cx));
                    self.stage = Stage::Done;
                }
                Stage::Calling { call, reserved } => {
                    // The inner service may take a while to answer: keep the lease alive.
                    if let Poll::Ready(Err(LeaseLost)) = reserved.account.poll_lease(cx) {
                        let Stage::Calling { reserved, .. } = std::mem::replace(&mut self.stage, Stage::Done) else {
                            continue;
                        };
                        self.refund(reserved.account, lease_lost());
                        continue;
                    }
                    let response = ready!(call.as_mut().poll(cx));
                    let Stage::Calling { reserved, .. } = std::mem::replace(&mut self.stage, Stage::Done) else {
                        continue;
                    };
                    self.answered(response, *reserved);
                }
                Stage::Loading(_) | Stage::Asking { .. } | Stage::Waiting(_) | Stage::Reserving(_) => {
                    // The store first: a reservation made just as the deadline passes is used.
                    if self.poll_store(cx) {
                        continue;
                    }
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        if self.answer == Answer::Answered {
                            let detail = format!(
                                "the vouchers sent did not leave room for the upfront cost within {} s \
                                 (concurrent streams on the channel took it); nothing was charged",
                                self.policy.pause_deadline.as_secs_f64()
                            );
                            self.fail(PaymentError::new(PaymentErrorKind::InsufficientBalance, detail));
                            continue;
                        }
                        let detail = format!(
                            "no voucher covered the upfront cost within {} s of the payment-need-voucher \
                             event: this client does not answer in-band voucher requests (use one that \
                             does, e.g. mppx's tempo() fetch or a session manager's .sse()); nothing was charged",
                            self.policy.first_deadline().as_secs_f64()
                        );
                        self.fail(PaymentError::new(PaymentErrorKind::InsufficientBalance, detail));
                        continue;
                    }
                    if self.keep_alive.as_mut().poll(cx).is_ready() {
                        let next = crate::clock::after(self.policy.keep_alive);
                        self.keep_alive.as_mut().reset(next);
                        self.out.push_back(Bytes::from_static(frames::KEEP_ALIVE));
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Polls the store step of a waiting stream; `true` when the stage moved on.
    fn poll_store(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.stage {
            Stage::Loading(load) => match load.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(Some(state))) => self.ask(&state),
                Poll::Ready(Ok(None)) => self.fail(store_error(&StoreError::new(StoreErrorKind::NotFound))),
                Poll::Ready(Err(error)) => self.fail(store_error(&error)),
            },
            Stage::Asking { ask, event, seen } => match ask.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(_)) => {
                    let (event, seen) = (std::mem::take(event), *seen);
                    self.out.push_back(event);
                    self.wait(seen);
                }
                Poll::Ready(Err(error)) => self.fail(store_error(&error)),
            },
            Stage::Waiting(wait) => match wait.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(state)) => {
                    self.note_answer(&state);
                    self.reserve();
                }
                Poll::Ready(Err(error)) => self.fail(store_error(&error)),
            },
            Stage::Reserving(reserve) => match reserve.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(lease)) => self.call(lease),
                // Still short (another stream may have taken the headroom): ask again.
                Poll::Ready(Err(error)) if matches!(error.kind(), StoreErrorKind::Insufficient { .. }) => self.load(),
                Poll::Ready(Err(error)) => self.fail(store_error(&error)),
            },
            _ => return false,
        }
        true
    }

    fn load(&mut self) {
        let Some(pending) = &self.pending else { return self.fail(unavailable()) };
        let (store, channel) = (pending.store.clone(), pending.paid.grant.channel().clone());
        self.stage = Stage::Loading(Box::pin(async move { store.load(&channel).await }));
    }
}

/// What a waiting stream knows of its payer's answers to need-vouchers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// No need-voucher went out yet.
    NotAsked,
    /// The first went out when the channel had this accepted amount.
    AskedAt(Amount),
    /// A voucher landed after it.
    Answered,
}

/// The quote's upfront cost and units.
pub(crate) fn upfront(quote: &Quote) -> (Amount, u64) {
    // An overflowing upfront was never reservable; charge nothing rather than wrap.
    (quote.price.cost(quote.upfront).unwrap_or(Amount::ZERO), quote.upfront.total())
}

fn unavailable() -> PaymentError {
    PaymentError::new(PaymentErrorKind::Unavailable, "the payment store is unavailable")
}

/// The store reclaimed the lease while the inner service ran (this instance was presumed
/// dead): the stream stops; the store charged what the last renewal reported.
fn lease_lost() -> PaymentError {
    PaymentError::new(PaymentErrorKind::Unavailable, "the payment lease lapsed before the service answered")
}

fn store_error(error: &StoreError) -> PaymentError {
    match error.kind() {
        StoreErrorKind::NotFound => PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not found"),
        StoreErrorKind::Finalized => PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"),
        _ => unavailable(),
    }
}

/// `event: payment-error` with the problem JSON (RFC 9457) of `error`.
fn error_event(error: &PaymentError) -> Bytes {
    let body = problem_body(error, None);
    let mut buf = BytesMut::with_capacity(body.len() + 32);
    buf.put_slice(b"event: payment-error\ndata: ");
    buf.put_slice(&body);
    buf.put_slice(b"\n\n");
    buf.freeze()
}
