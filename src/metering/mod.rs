//! The engine inside a metered [`MeteredBody`](crate::MeteredBody): meter each frame (each
//! SSE event), forward it only when the lease covers its cost, grow the lease in windows,
//! pause for vouchers, and release exactly once at the end.

pub(crate) mod frames;
mod growth;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

use crate::account::Account;
use crate::amount::{Amount, Price, Usage};
use crate::error::{BoxError, BudgetExhausted};
use crate::meter::{Meter, SseScanner, is_event_stream};
use crate::method::Renewal;
use crate::scheme::Receipt;
use crate::store::{ChannelId, ChannelState, ChannelStore, StoreError};

use growth::Growth;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a metered stream asks for more and how long it waits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamPolicy {
    /// Units of headroom asked for beyond the next frame's cost.
    pub(crate) window_units: u64,
    /// How long a paused stream waits for a voucher before it ends.
    pub(crate) pause_deadline: Duration,
    /// How often a paused stream sends a keep-alive comment.
    pub(crate) keep_alive: Duration,
}

enum Step {
    Streaming,
    Growing { need: Amount, growth: BoxFuture<Result<crate::store::Reservation, Growth>> },
    Paused(BoxFuture<Result<ChannelState, StoreError>>),
    Releasing(BoxFuture<Result<ChannelState, StoreError>>),
    Done,
}

struct Pause {
    deadline: Pin<Box<Sleep>>,
    keep_alive: Pin<Box<Sleep>>,
    asked: Option<Amount>,
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
    /// The start of an SSE event that began in an earlier frame.
    partial: Vec<Bytes>,
    scratch: Vec<u8>,
    /// Bytes metered but not yet covered by the lease, and their cost.
    held: Vec<Bytes>,
    waiting: Option<Cost>,
    step: Step,
    pause: Option<Pause>,
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
            match &mut self.step {
                Step::Done => {
                    if let Some(failure) = self.failure.take() {
                        return Poll::Ready(Some(Err(failure)));
                    }
                    return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                Step::Releasing(release) => {
                    let released = ready!(release.as_mut().poll(cx));
                    if let (Ok(state), Some(_), None) = (&released, &self.sse, &self.failure) {
                        let receipt = self.final_receipt(state);
                        self.out.push_back(frames::receipt(&receipt));
                    }
                    self.step = Step::Done;
                }
                Step::Growing { need, growth } => {
                    let need = *need;
                    match ready!(growth.as_mut().poll(cx)) {
                        Ok(lease) => {
                            self.pause = None;
                            if let Some(account) = &mut self.account {
                                account.grown(lease);
                            }
                            self.step = Step::Streaming;
                        }
                        Err(Growth::Short(state)) => self.on_short(state, need),
                        Err(Growth::Failed) => self.cut_off(),
                    }
                }
                Step::Paused(wait) => {
                    let pause = self.pause.as_mut().expect("a paused stream has timers");
                    if pause.deadline.as_mut().poll(cx).is_ready() {
                        self.cut_off();
                        continue;
                    }
                    match wait.as_mut().poll(cx) {
                        Poll::Ready(Ok(_)) => {
                            self.step = Step::Streaming;
                            continue;
                        }
                        Poll::Ready(Err(_)) => {
                            self.cut_off();
                            continue;
                        }
                        Poll::Pending => {}
                    }
                    if pause.keep_alive.as_mut().poll(cx).is_ready() {
                        let next = Instant::now() + self.policy.keep_alive;
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
                            // Upstream failed: charge only what reached the client.
                            self.failure = Some(error.into());
                            self.drop_pending();
                            self.ended = true;
                            self.start_release();
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
            self.out.extend(self.held.drain(..));
            self.waiting = None;
            return;
        }
        let need = cost.total.saturating_sub(account.lease().amount);
        let window = self.price.output.cost(self.policy.window_units).unwrap_or(Amount::ZERO);
        let growth = growth::grow(account, need, window);
        self.step = Step::Growing { need, growth: Box::pin(growth) };
    }

    /// Meters the rest of the current frame: whole frames for plain bodies, event by
    /// event for SSE. Affordable events go out as one slice of the original frame.
    fn meter_rest(&mut self) {
        let chunk = std::mem::take(&mut self.rest);
        let Some(scanner) = &mut self.sse else {
            let usage = self.meter.on_data(&chunk);
            let cost = self.cost(usage);
            self.held.push(chunk);
            self.waiting = Some(cost);
            return;
        };
        let lease = self.account.as_ref().map_or(Amount::ZERO, |a| a.lease().amount);
        let (mut run_start, mut offset) = (0, 0);
        while let Some(n) = scanner.next_boundary(&chunk[offset..]) {
            let end = offset + n;
            let usage = if self.partial.is_empty() {
                self.meter.on_event(&chunk[offset..end])
            } else {
                self.scratch.clear();
                self.partial.iter().for_each(|p| self.scratch.extend_from_slice(p));
                self.scratch.extend_from_slice(&chunk[offset..end]);
                self.meter.on_event(&self.scratch)
            };
            let cost = Cost::of(&self.price, usage);
            if cost.total <= lease {
                if let Some(account) = &mut self.account {
                    account.deliver(cost.total, cost.units);
                }
                self.out.extend(self.partial.drain(..));
                offset = end;
                continue;
            }
            if run_start < offset {
                self.out.push_back(chunk.slice(run_start..offset));
            }
            self.held.append(&mut self.partial);
            self.held.push(chunk.slice(offset..end));
            self.waiting = Some(cost);
            self.rest = chunk.slice(end..);
            return;
        }
        if run_start < offset {
            self.out.push_back(if offset == chunk.len() && run_start == 0 {
                chunk.clone()
            } else {
                chunk.slice(run_start..offset)
            });
        }
        run_start = offset;
        if run_start < chunk.len() {
            self.partial.push(chunk.slice(run_start..));
        }
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

    fn on_short(&mut self, state: ChannelState, need: Amount) {
        if self.renewal != Renewal::Voucher || self.sse.is_none() {
            return self.cut_off();
        }
        let window = self.price.output.cost(self.policy.window_units).unwrap_or(Amount::ZERO);
        let least = state.accepted.saturating_add(need.saturating_sub(state.available()));
        // Ask for a window ahead, but not past the deposit unless the next frame needs it.
        let required = least.saturating_add(window).min(state.deposit.max(least));
        let policy = self.policy;
        let pause = self.pause.get_or_insert_with(|| Pause {
            deadline: Box::pin(tokio::time::sleep(policy.pause_deadline)),
            keep_alive: Box::pin(tokio::time::sleep(policy.keep_alive)),
            asked: None,
        });
        if pause.asked != Some(required) {
            pause.asked = Some(required);
            self.out.push_back(frames::need_voucher(&self.channel, required, state.accepted, state.deposit));
        }
        let Some(account) = &self.account else { return self.cut_off() };
        let store = account.store().clone();
        let channel = self.channel.clone();
        self.step = Step::Paused(Box::pin(async move { store.changed(&channel, state.version).await }));
    }

    /// The budget stops the stream: end it cleanly where the format allows, and charge
    /// only what was forwarded.
    fn cut_off(&mut self) {
        self.drop_pending();
        if !self.ended {
            self.ended = true;
            match (&self.sse, self.meter.cutoff()) {
                (Some(_), Some(ending)) => self.out.push_back(ending),
                (Some(_), None) => {}
                (None, _) => self.failure = Some(BudgetExhausted.into()),
            }
        }
        self.start_release();
    }

    fn drop_pending(&mut self) {
        self.held.clear();
        self.partial.clear();
        self.rest = Bytes::new();
        self.waiting = None;
        self.pause = None;
    }

    fn start_release(&mut self) {
        self.step = match self.account.take() {
            Some(account) => Step::Releasing(Box::pin(account.release())),
            None => Step::Done,
        };
    }

    fn final_receipt(&self, state: &ChannelState) -> Receipt {
        let mut receipt = self.receipt.clone();
        receipt.timestamp = crate::scheme::format_expires(SystemTime::now());
        receipt.channel_id.get_or_insert_with(|| self.channel.to_string());
        receipt.accepted_cumulative = Some(state.accepted);
        receipt.spent = Some(state.spent);
        receipt.units = Some(state.units);
        receipt
    }
}
