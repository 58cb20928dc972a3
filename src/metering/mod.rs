//! The engine inside a metered [`MeteredBody`](crate::MeteredBody): meter each frame (each
//! SSE event), forward it only when the lease covers its cost, grow the lease in windows,
//! pause for vouchers, and release exactly once at the end.

pub(crate) mod ask;
pub(crate) mod frames;
mod growth;
mod pause;
mod slicing;
mod watchdog;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};

use crate::account::{Account, LeaseLost, Release};
use crate::amount::{Amount, Price, Usage};
use crate::error::BoxError;
use crate::meter::{Meter, SseScanner, is_event_stream};
use crate::method::Renewal;
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError};
use crate::wire::mpp::Receipt;

use growth::{Grown, Growth};
use pause::Pause;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a metered stream asks for more and how long it waits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamPolicy {
    /// Units of headroom asked for beyond the next frame's cost, at most.
    pub(crate) window_units: u64,
    /// ... and at first: asks grow with the stream from this to `window_units`.
    pub(crate) first_window_units: u64,
    /// How long a paused stream waits for a voucher before it ends.
    pub(crate) pause_deadline: Duration,
    /// How long a stream that has delivered nothing yet waits for its first voucher (the
    /// upfront asked for in the stream); `None`: the pause deadline.
    pub(crate) first_voucher_deadline: Option<Duration>,
    /// How often a paused stream sends a keep-alive comment.
    pub(crate) keep_alive: Duration,
    /// The longest SSE event the upstream may send, in bytes.
    pub(crate) max_event_bytes: usize,
}

impl StreamPolicy {
    /// How long a stream waits for the voucher that covers its upfront.
    pub(crate) fn first_deadline(&self) -> Duration {
        self.first_voucher_deadline.unwrap_or(self.pause_deadline)
    }
}

enum Step {
    Streaming,
    Growing {
        need: Amount,
        growth: BoxFuture<Grown>,
    },
    Paused(BoxFuture<Result<ChannelState, StoreError>>),
    /// The release already runs on its own (see [`Account::release`]); this only waits
    /// for its outcome, for the receipt.
    Releasing(Release),
    Done,
}

/// What one response costs so far (cumulative) and how many units that is.
#[derive(Clone, Copy)]
struct Cost {
    total: Amount,
    units: u64,
}

impl Cost {
    fn of(price: &Price, usage: Usage) -> Self {
        // An overflowing cost can never be paid: make it unpayable rather than free.
        Cost { total: price.cost(usage).unwrap_or(Amount::new(u128::MAX)), units: usage.total() }
    }
}

pub(crate) struct Metering<M, St: ChannelStore> {
    meter: M,
    price: Price,
    policy: StreamPolicy,
    /// `None` once released, and while paused (the pause's watchdog holds it then).
    account: Option<Account<St>>,
    channel: ChannelId,
    renewal: Renewal,
    receipt: Receipt,
    /// `Some` for event streams: frames are cut at event boundaries.
    sse: Option<SseScanner>,
    /// Frames ready to go out, in order.
    out: VecDeque<Bytes>,
    /// The part of the current inner frame not yet metered.
    rest: Bytes,
    /// The start of an SSE event that began in an earlier frame, and its length.
    partial: Vec<Bytes>,
    partial_len: usize,
    scratch: Vec<u8>,
    /// Bytes metered but not yet covered by the lease, and their cost.
    held: Vec<Bytes>,
    waiting: Option<Cost>,
    step: Step,
    pause: Option<Pause<St>>,
    inner_done: bool,
    ended: bool,
    trailers: Option<HeaderMap>,
    failure: Option<BoxError>,
}

impl<M: Meter, St: ChannelStore> Metering<M, St> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mut meter: M,
        head: &http::response::Parts,
        price: Price,
        policy: StreamPolicy,
        account: Account<St>,
        channel: ChannelId,
        renewal: Renewal,
        receipt: Receipt,
    ) -> Self {
        let sse = is_event_stream(&head.headers).then(SseScanner::new);
        let first = meter.on_response(head);
        let mut metering = Metering {
            meter,
            price,
            policy,
            account: Some(account),
            channel,
            renewal,
            receipt,
            sse,
            out: VecDeque::new(),
            rest: Bytes::new(),
            partial: Vec::new(),
            partial_len: 0,
            scratch: Vec::new(),
            held: Vec::new(),
            waiting: None,
            step: Step::Streaming,
            pause: None,
            inner_done: false,
            ended: false,
            trailers: None,
            failure: None,
        };
        metering.waiting = Some(metering.cost(first));
        metering
    }

    pub(crate) fn is_event_stream(&self) -> bool {
        self.sse.is_some()
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.step, Step::Done) && self.out.is_empty() && self.trailers.is_none() && self.failure.is_none()
    }

    pub(crate) fn poll_frame<B>(
        &mut self,
        mut inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            if let Some(bytes) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            // Whatever was charged has gone out (`out` is empty): keep the lease alive before
            // metering more. The paused stream's watchdog and a growth renew on their own.
            if let (Step::Streaming, Some(account)) = (&self.step, &mut self.account) {
                match account.poll_lease(cx) {
                    Poll::Ready(Ok(())) => {}
                    // Nothing more goes out until the store has answered the renewal.
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(LeaseLost)) => {
                        self.lease_lost();
                        continue;
                    }
                }
            }
            match &mut self.step {
                Step::Done => {
                    if let Some(failure) = self.failure.take() {
                        return Poll::Ready(Some(Err(failure)));
                    }
                    return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                Step::Releasing(release) => {
                    let released = ready!(Pin::new(release).poll(cx));
                    if let (Ok(state), Some(_), None) = (&released, &self.sse, &self.failure) {
                        let receipt = self.final_receipt(state);
                        self.out.push_back(frames::receipt(&receipt));
                    }
                    self.step = Step::Done;
                }
                Step::Growing { need, growth } => {
                    let need = *need;
                    let Grown { outcome, restarted } = ready!(growth.as_mut().poll(cx));
                    if let (Some((sent, delivered)), Some(account)) = (restarted, &mut self.account) {
                        account.restarted(sent, delivered);
                    }
                    match outcome {
                        Ok(lease) => {
                            self.pause = None;
                            if let Some(account) = &mut self.account {
                                account.grown(lease);
                            }
                            self.step = Step::Streaming;
                        }
                        Err(Growth::Short(state)) => self.on_short(state, need),
                        Err(Growth::Lost) => self.lease_lost(),
                        Err(Growth::Failed) => self.cut_off(),
                    }
                }
                Step::Paused(wait) => {
                    let Some(pause) = self.pause.as_mut() else {
                        self.cut_off();
                        continue;
                    };
                    // The deadline, or the watchdog ended the pause (a closed channel, a lost lease).
                    if pause.deadline.as_mut().poll(cx).is_ready() || pause.watchdog.poll_fired(cx).is_ready() {
                        self.cut_off();
                        continue;
                    }
                    if let Some((ask, _)) = &mut pause.announce {
                        match ask.as_mut().poll(cx) {
                            Poll::Ready(Ok(_)) => {
                                if let Some((_, event)) = pause.announce.take() {
                                    self.out.push_back(event);
                                }
                                continue;
                            }
                            Poll::Ready(Err(_)) => {
                                self.cut_off();
                                continue;
                            }
                            Poll::Pending => {}
                        }
                    }
                    match wait.as_mut().poll(cx) {
                        Poll::Ready(Ok(_)) => {
                            self.resume();
                            continue;
                        }
                        Poll::Ready(Err(_)) => {
                            self.cut_off();
                            continue;
                        }
                        Poll::Pending => {}
                    }
                    if pause.keep_alive.as_mut().poll(cx).is_ready() {
                        let next = crate::clock::after(self.policy.keep_alive);
                        pause.keep_alive.as_mut().reset(next);
                        self.out.push_back(Bytes::from_static(frames::KEEP_ALIVE));
                        continue;
                    }
                    return Poll::Pending;
                }
                Step::Streaming => {
                    if let Some(cost) = self.waiting {
                        self.settle_waiting(cost);
                        continue;
                    }
                    if !self.rest.is_empty() {
                        self.meter_rest();
                        continue;
                    }
                    if self.inner_done {
                        self.finish();
                        continue;
                    }
                    match ready!(inner.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => self.rest = data,
                            Err(frame) => self.trailers = frame.into_trailers().ok(),
                        },
                        Some(Err(error)) => {
                            self.fail(error.into());
                            continue;
                        }
                        None => self.inner_done = true,
                    }
                    if inner.is_end_stream() {
                        self.inner_done = true;
                    }
                }
            }
        }
    }

    fn cost(&self, usage: Usage) -> Cost {
        Cost::of(&self.price, usage)
    }

    /// Forwards the held bytes if the lease covers `cost`, else asks the store for more.
    fn settle_waiting(&mut self, cost: Cost) {
        let Some(account) = &mut self.account else { return self.cut_off() };
        if cost.total <= account.lease().amount {
            account.deliver(cost.total, cost.units);
            // One frame, for the same reason as in `meter_rest`.
            match self.held.len() {
                0 => {}
                1 => self.out.extend(self.held.drain(..)),
                _ => {
                    let mut joined = BytesMut::with_capacity(self.held.iter().map(Bytes::len).sum());
                    self.held.drain(..).for_each(|piece| joined.extend_from_slice(&piece));
                    self.out.push_back(joined.freeze());
                }
            }
            self.waiting = None;
            return;
        }
        let need = cost.total.saturating_sub(account.lease().amount);
        let window = self.price.output.cost(self.policy.window_units).unwrap_or(Amount::ZERO);
        let growth = growth::grow(account, need, window);
        self.step = Step::Growing { need, growth: Box::pin(growth) };
    }

    /// The upstream failed: charge only what reached the client, then end with the error.
    fn fail(&mut self, error: BoxError) {
        self.failure = Some(error);
        self.drop_pending();
        self.ended = true;
        self.start_release();
    }

    /// The inner body ended: meter any unterminated tail, reconcile, then release.
    fn finish(&mut self) {
        if self.ended {
            return self.start_release();
        }
        self.ended = true;
        if !self.partial.is_empty() {
            self.scratch.clear();
            self.partial.iter().for_each(|p| self.scratch.extend_from_slice(p));
            self.meter.on_event(&self.scratch);
            self.held.append(&mut self.partial);
        }
        let last = self.meter.on_end();
        self.waiting = Some(self.cost(last));
    }

    fn drop_pending(&mut self) {
        self.held.clear();
        self.partial.clear();
        self.partial_len = 0;
        self.rest = Bytes::new();
        self.waiting = None;
        self.pause = None;
    }

    /// Starts the release (it runs to its end even if this body is dropped meanwhile).
    fn start_release(&mut self) {
        self.step = match self.account.take() {
            Some(account) => Step::Releasing(account.release()),
            None => Step::Done,
        };
    }

    fn final_receipt(&self, state: &ChannelState) -> Receipt {
        let mut receipt = self.receipt.clone();
        receipt.timestamp = crate::wire::mpp::format_expires(SystemTime::now());
        receipt.channel_id.get_or_insert_with(|| self.channel.to_string());
        receipt.accepted_cumulative = Some(state.accepted);
        receipt.spent = Some(state.spent);
        receipt.units = Some(state.units);
        receipt
    }
}
