//! The engine inside a metered [`MeteredBody`](crate::MeteredBody): meter each frame (each
//! SSE event), forward it only when the lease covers its cost, grow the lease in windows,
//! pause for vouchers, and release exactly once at the end.

pub(crate) mod account;
pub(crate) mod ask;
mod cutter;
pub(crate) mod frames;
mod growth;
mod paid;
mod pause;
mod policy;
pub(crate) mod prepay;
mod settle_by;
mod watchdog;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};

use crate::amount::{Amount, Price, Usage};
use crate::error::BoxError;
use crate::meter::{Meter, is_event_stream};
use crate::method::{Grant, Proof};
use crate::observe::Observed;
use crate::store::{ChannelState, ChannelStore, StoreError};
use crate::wire::mpp::Receipt;

use account::{Account, LeaseLost, Release};
use cutter::{Cut, EventCutter, Framing};
use growth::{Grown, Growth};
use pause::Pause;
use settle_by::SettleBy;

pub(crate) use paid::{Paid, ProofWait, Reserved};
pub(crate) use policy::StreamPolicy;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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
    /// The release runs on its own and settles; this waits for the settlement's proof, at
    /// most until the deadline.
    Proving {
        wait: ProofWait,
        deadline: Pin<Box<tokio::time::Sleep>>,
    },
    Done,
}

/// How far the metering has come with the inner body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// More frames may come.
    Open,
    /// The inner body ended; its tail and final usage are not metered yet.
    Drained,
    /// Nothing more is metered: the final usage is in, or the stream was cut off or failed.
    Ended,
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

/// The engine of one metered response body.
pub(crate) struct Metering<M, St: ChannelStore> {
    meter: M,
    price: Price,
    policy: StreamPolicy,
    /// The channel, renewal and receipt template this response draws on.
    grant: Grant,
    /// `None` once released, and while paused (the pause's watchdog holds it then).
    account: Option<Account<St>>,
    /// `Some` for event streams and gRPC: frames are cut at event (message) boundaries.
    cutter: Option<EventCutter>,
    /// Frames ready to go out, in order.
    out: VecDeque<Bytes>,
    /// The part of the current inner frame not yet metered.
    rest: Bytes,
    /// Bytes metered but not yet covered by the lease, and their cost.
    held: Vec<Bytes>,
    waiting: Option<Cost>,
    step: Step,
    pause: Option<Pause<St>>,
    source: Source,
    trailers: Option<HeaderMap>,
    failure: Option<BoxError>,
    /// The settlement's proof to wait for at the end, if the grant proves its payment.
    proving: Option<ProofWait>,
    /// ... and the proof once it came (or `pending`).
    proof: Option<Proof>,
    /// The settlement the first content event waits for (SSE only, see [`Grant::before_content`]).
    gate: Option<Gating>,
    /// Content was put in `out` since the gate was last looked at.
    content_ready: bool,
    /// Its span and series (empty without `tracing` and `metrics`).
    observed: Observed,
    /// When the payment must be settled by (see [`Grant::settle_by`]).
    settle_by: Option<SettleBy<St>>,
}

/// A stream's [`Grant::before_content`] settlement: not started, or under way.
enum Gating {
    Ready(crate::method::grant::Gate),
    Running(BoxFuture<Result<(), Proof>>),
}

impl<M: Meter, St: ChannelStore> Metering<M, St> {
    /// Meters the body of the response `head` against what `reserved` paid for.
    pub(crate) fn new(head: &http::response::Parts, reserved: Reserved<M, St>) -> Self {
        let Reserved { paid: Paid { mut grant, quote, mut meter, policy, observed }, account, proof } = reserved;
        let cutter = Framing::of(&head.headers).map(|framing| EventCutter::new(framing, policy.max_event_bytes));
        // A plain answer is held whole and settled at its end, and a gRPC stream has no
        // event to end with a refused proof: only SSE is gated.
        let gate = grant.take_gate().filter(|_| is_event_stream(&head.headers)).map(Gating::Ready);
        let settle_by = grant.take_settle_by().map(SettleBy::at);
        let first = meter.on_response(head);
        let waiting = Some(Cost::of(&quote.price, first));
        Metering {
            meter,
            price: quote.price,
            policy,
            grant,
            account: Some(account),
            cutter,
            out: VecDeque::new(),
            rest: Bytes::new(),
            held: Vec::new(),
            waiting,
            step: Step::Streaming,
            pause: None,
            source: Source::Open,
            trailers: None,
            failure: None,
            proving: proof,
            proof: None,
            gate,
            content_ready: false,
            observed,
            settle_by,
        }
    }

    /// Runs the gate once content is about to go out: `Pending` while it runs, `true` if the
    /// stream may go on, `false` if it was refused (the stream now ends with its proof).
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(gate) = self.gate.take() else { return Poll::Ready(true) };
        let mut running = match gate {
            Gating::Ready(start) => start(),
            Gating::Running(running) => running,
        };
        match running.as_mut().poll(cx) {
            Poll::Pending => {
                self.gate = Some(Gating::Running(running));
                Poll::Pending
            }
            Poll::Ready(Ok(())) => Poll::Ready(true),
            Poll::Ready(Err(proof)) => {
                self.refused(proof);
                Poll::Ready(false)
            }
        }
    }

    /// The payment did not settle before the content: deliver nothing of it, charge
    /// nothing, and end with the proof.
    fn refused(&mut self, proof: Proof) {
        self.observed.mark("refused");
        self.out.clear();
        self.drop_pending();
        self.source = Source::Ended;
        self.trailers = None;
        if let Some(account) = &mut self.account {
            account.deliver(Amount::ZERO, 0);
        }
        self.out.push_back(frames::proof(&proof));
        self.proof = Some(proof);
        // The release runs on its own; its proof is this one, already out.
        self.proving = None;
        self.start_release();
        if let Step::Releasing(_) = self.step {
            self.step = Step::Done;
        }
    }

    /// The settlement's proof, once the body is done (for a grant that proves its payment).
    pub(crate) fn take_proof(&mut self) -> Option<Proof> {
        self.proof.take()
    }

    /// Whether the response is SSE: the layer adds its own events (need-voucher, receipt).
    pub(crate) fn is_event_stream(&self) -> bool {
        self.cutter.as_ref().is_some_and(EventCutter::is_sse)
    }

    /// Whether the response is gRPC: the budget ends it with a gRPC status.
    fn is_grpc(&self) -> bool {
        self.cutter.as_ref().is_some_and(|cutter| !cutter.is_sse())
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.step, Step::Done) && self.out.is_empty() && self.trailers.is_none() && self.failure.is_none()
    }

    pub(crate) fn poll_frame<B>(
        &mut self,
        inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if self.settle_by.is_none() {
            return self.poll_metered(inner, cx);
        }
        // Between polls the account is the settle-by watchdog's (see `settle_by`).
        self.unpark();
        let polled = self.poll_metered(inner, cx);
        self.park(cx);
        polled
    }

    fn poll_metered<B>(
        &mut self,
        mut inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            if self.content_ready {
                if self.gate.is_some() && !ready!(self.poll_gate(cx)) {
                    self.content_ready = false;
                    continue;
                }
                self.content_ready = false;
            }
            if let Some(bytes) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            // Whatever was charged has gone out (`out` is empty): keep the lease alive before
            // metering more. The paused stream's watchdog and a growth renew on their own.
            if let (Step::Streaming, Some(account)) = (&self.step, &mut self.account) {
                match account.poll_lease(cx) {
                    Poll::Ready(Ok(())) => {}
                    // A payment due now does not wait for the store's answer (the release
                    // ends the renewal), and the deadline wakes this body while it waits.
                    Poll::Pending if self.settle_by_passed(cx) => {
                        self.settle_by = None;
                        self.cut_off();
                        continue;
                    }
                    // Nothing more goes out until the store has answered the renewal.
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(LeaseLost)) => {
                        self.lease_lost();
                        continue;
                    }
                }
            }
            if matches!(self.step, Step::Growing { .. }) && self.settle_by_passed(cx) {
                // The payment must settle now: a growth the store has not answered yet
                // must not hold the release back (the stream ends as if it was refused).
                self.settle_by = None;
                self.cut_off();
                continue;
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
                    if let (Ok(state), true, None) = (&released, self.is_event_stream(), &self.failure) {
                        let receipt = self.final_receipt(state);
                        self.out.push_back(frames::receipt(&receipt));
                    }
                    self.step = Step::Done;
                }
                Step::Proving { wait, deadline } => {
                    let proof = match Pin::new(&mut wait.proof).poll(cx) {
                        Poll::Ready(Ok(proof)) => proof,
                        // The settlement did not report (its task is gone): say it is pending.
                        Poll::Ready(Err(_)) => wait.pending.clone(),
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            wait.pending.clone()
                        }
                    };
                    if self.cutter.is_some() {
                        self.out.push_back(frames::proof(&proof));
                    }
                    if proof.status() == crate::method::ProofStatus::Failed {
                        self.observed.mark("refused");
                    }
                    self.observe_end();
                    self.proof = Some(proof);
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
                        Err(Growth::Failed) => {
                            crate::observe::store_error("grow");
                            self.cut_off()
                        }
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
                        Poll::Ready(Ok(state)) => {
                            self.resume(&state);
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
                    if self.settle_by_passed(cx) {
                        // The payment must settle now: deliver nothing more.
                        self.settle_by = None;
                        self.cut_off();
                        continue;
                    }
                    if let Some(cost) = self.waiting {
                        self.settle_waiting(cost);
                        continue;
                    }
                    if !self.rest.is_empty() {
                        self.meter_rest();
                        continue;
                    }
                    if self.source != Source::Open {
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
                        None => self.source = Source::Drained,
                    }
                    if inner.is_end_stream() && self.source == Source::Open {
                        self.source = Source::Drained;
                    }
                }
            }
        }
    }

    fn cost(&self, usage: Usage) -> Cost {
        Cost::of(&self.price, usage)
    }

    /// Meters the rest of the current frame: whole frames for plain bodies, event by
    /// event for SSE (see [`EventCutter::cut`] for where a frame is cut).
    fn meter_rest(&mut self) {
        let chunk = std::mem::take(&mut self.rest);
        let Some(cutter) = &mut self.cutter else {
            let usage = self.meter.on_data(&chunk);
            let cost = self.cost(usage);
            self.held.push(chunk);
            self.waiting = Some(cost);
            return;
        };
        let lease = self.account.as_ref().map_or(Amount::ZERO, |a| a.lease().amount);
        let (meter, price, account) = (&mut self.meter, &self.price, &mut self.account);
        let cut = cutter.cut(chunk, |event| {
            let cost = Cost::of(price, meter.on_event(event));
            if cost.total > lease {
                return Err(cost);
            }
            if let Some(account) = account {
                account.deliver(cost.total, cost.units);
            }
            Ok(())
        });
        let before = self.out.len();
        match cut {
            Cut::Paid { forward } => self.out.extend(forward),
            Cut::Joined { event, rest } => {
                self.out.push_back(event);
                self.rest = rest;
            }
            Cut::Short { forward, held, rest, short } => {
                self.out.extend(forward);
                self.held.extend(held);
                self.waiting = Some(short);
                self.rest = rest;
            }
            Cut::TooLarge { forward, error } => {
                // What went before the long event goes out; the stream ends as an upstream failure.
                self.out.extend(forward);
                self.fail(error.into());
            }
        }
        self.content_ready |= self.out.len() > before;
    }

    /// Forwards the held bytes if the lease covers `cost`, else asks the store for more.
    fn settle_waiting(&mut self, cost: Cost) {
        let Some(account) = &mut self.account else { return self.cut_off() };
        if cost.total <= account.lease().amount {
            account.deliver(cost.total, cost.units);
            // One frame: what is charged is what the next poll hands out (see `EventCutter::cut`).
            self.content_ready |= !self.held.is_empty();
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
        self.source = Source::Ended;
        self.start_release();
    }

    /// The inner body ended: meter any unterminated tail, reconcile, then release.
    fn finish(&mut self) {
        if self.source == Source::Ended {
            return self.start_release();
        }
        self.source = Source::Ended;
        if let Some((mut tail, joined)) = self.cutter.as_mut().and_then(EventCutter::take_tail) {
            self.meter.on_event(joined);
            self.held.append(&mut tail);
        }
        let last = self.meter.on_end();
        self.waiting = Some(self.cost(last));
    }

    fn drop_pending(&mut self) {
        self.held.clear();
        if let Some(cutter) = &mut self.cutter {
            cutter.clear();
        }
        self.rest = Bytes::new();
        self.waiting = None;
        self.pause = None;
    }

    /// Starts the release (it runs to its end even if this body is dropped meanwhile). A
    /// grant that proves its payment waits for the proof instead of the release: the
    /// release settles, and whoever released the account sends the proof.
    fn start_release(&mut self) {
        if self.proving.is_none() {
            // Else the outcome waits for the proof (see `Step::Proving`).
            self.observe_end();
        }
        let release = self.account.take().map(Account::release);
        self.step = match (self.proving.take(), release) {
            (Some(wait), _) => {
                let deadline = Box::pin(tokio::time::sleep_until(crate::clock::after(self.policy.proof_wait)));
                Step::Proving { wait, deadline }
            }
            (None, Some(release)) => Step::Releasing(release),
            (None, None) => Step::Done,
        };
    }

    fn observe_end(&mut self) {
        self.observed.ended(if self.failure.is_some() { "failed" } else { "delivered" });
    }

    fn final_receipt(&self, state: &ChannelState) -> Receipt {
        let mut receipt = self.grant.receipt().clone();
        receipt.timestamp = crate::wire::mpp::format_expires(SystemTime::now());
        receipt.channel_id.get_or_insert_with(|| self.grant.channel().to_string());
        receipt.accepted_cumulative = Some(state.accepted);
        receipt.spent = Some(state.spent);
        receipt.units = Some(state.units);
        receipt
    }
}
