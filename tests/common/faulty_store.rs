//! [`FaultyStore`]: a [`ChannelStore`] wrapper that fails or delays chosen calls, and counts
//! every call per kind, so tests can put a store fault at every position of a flow.
//!
//! Calls of each [`Op`] are numbered from 1. A rule applies to call `n` of one kind
//! ([`FaultyStore::fail_nth`]), or to every call after the `n`th ([`FaultyStore::fail_after`]).
//! A failure never reaches the inner store; a lost answer reaches it but reports a failure;
//! a delay sleeps (tokio time, so paused-time tests stay fast) and then runs the call.

#![allow(dead_code)] // each test binary uses part of it

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tollgate::Amount;
use tollgate::store::{AskId, ChannelId, ChannelState, ChannelStore, Reservation, StoreError};

/// The kinds of [`ChannelStore`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Open,
    Create,
    Load,
    Accept,
    Reserve,
    Extend,
    Commit,
    Release,
    Finalize,
    Ask,
    Changed,
    Renew,
    Shelf,
    Lock,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::Open,
        Op::Create,
        Op::Load,
        Op::Accept,
        Op::Reserve,
        Op::Extend,
        Op::Commit,
        Op::Release,
        Op::Finalize,
        Op::Ask,
        Op::Changed,
        Op::Renew,
        Op::Shelf,
        Op::Lock,
    ];
}

/// What happens to a matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `StoreError::backend`, without calling the inner store.
    Fail,
    /// Sleep this long, then call the inner store.
    Delay(Duration),
    /// Call the inner store, then answer `StoreError::backend` anyway (the reply was lost:
    /// a backend error means the operation may or may not have happened).
    Lost,
}

#[derive(Clone, Copy, Debug)]
struct Rule {
    op: Op,
    /// The first call number it applies to.
    from: u64,
    /// Whether it applies to every later call too.
    onward: bool,
    fault: Fault,
}

#[derive(Debug, Default)]
struct Plan {
    rules: Vec<Rule>,
    counts: [u64; Op::ALL.len()],
}

/// Wraps a store; clones share the rules and the counters.
#[derive(Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<Mutex<Plan>>,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        FaultyStore { inner, plan: Arc::default() }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Applies `fault` to the `n`th call (from 1) of `op`.
    pub fn inject(&self, op: Op, n: u64, fault: Fault) -> &Self {
        self.rule(Rule { op, from: n, onward: false, fault })
    }

    /// Applies `fault` to every call of `op` after the `n`th.
    pub fn inject_after(&self, op: Op, n: u64, fault: Fault) -> &Self {
        self.rule(Rule { op, from: n + 1, onward: true, fault })
    }

    pub fn fail_nth(&self, op: Op, n: u64) -> &Self {
        self.inject(op, n, Fault::Fail)
    }

    pub fn fail_after(&self, op: Op, n: u64) -> &Self {
        self.inject_after(op, n, Fault::Fail)
    }

    pub fn delay_nth(&self, op: Op, n: u64, by: Duration) -> &Self {
        self.inject(op, n, Fault::Delay(by))
    }

    /// How many calls of `op` were made so far (faulted ones included).
    pub fn count(&self, op: Op) -> u64 {
        self.plan.lock().unwrap().counts[op as usize]
    }

    /// Clears the rules and the counters.
    pub fn reset(&self) {
        *self.plan.lock().unwrap() = Plan::default();
    }

    fn rule(&self, rule: Rule) -> &Self {
        self.plan.lock().unwrap().rules.push(rule);
        self
    }

    /// Numbers this call and returns the fault that applies to it, if any.
    fn next(&self, op: Op) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap();
        plan.counts[op as usize] += 1;
        let n = plan.counts[op as usize];
        let applies = |r: &&Rule| r.op == op && (n == r.from || (r.onward && n > r.from));
        plan.rules.iter().find(applies).map(|r| r.fault)
    }

    async fn run<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        op: Op,
        call: impl FnOnce() -> F,
    ) -> Result<T, StoreError> {
        match self.next(op) {
            Some(Fault::Fail) => return Err(StoreError::backend(format!("injected {op:?} failure"))),
            Some(Fault::Delay(by)) => tokio::time::sleep(by).await,
            Some(Fault::Lost) => {
                let _ = call().await;
                return Err(StoreError::backend(format!("injected lost {op:?} answer")));
            }
            None => {}
        }
        call().await
    }
}

impl<S: fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S: ChannelStore> ChannelStore for FaultyStore<S> {
    fn open(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Open, move || self.inner.open(id, accepted, deposit))
    }
    fn create(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Create, move || self.inner.create(id, accepted, deposit))
    }
    fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: SystemTime,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Create, move || self.inner.create_lapsing(id, accepted, deposit, lapses_at))
    }
    fn load(&self, id: &ChannelId) -> impl Future<Output = Result<Option<ChannelState>, StoreError>> + Send {
        self.run(Op::Load, move || self.inner.load(id))
    }
    fn accept(
        &self,
        id: &ChannelId,
        cumulative: Amount,
        deposit: Amount,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Accept, move || self.inner.accept(id, cumulative, deposit))
    }
    fn reserve(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        self.run(Op::Reserve, move || self.inner.reserve(id, min, max))
    }
    fn extend(
        &self,
        r: &Reservation,
        min: Amount,
        max: Amount,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        self.run(Op::Extend, move || self.inner.extend(r, min, max))
    }
    fn commit(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Commit, move || self.inner.commit(r, used, units))
    }
    fn release(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Release, move || self.inner.release(r, used, units))
    }
    fn finalize(&self, id: &ChannelId) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Finalize, move || self.inner.finalize(id))
    }
    // A credit raises what was paid (as an accept does); a reservation that records a
    // reclaim is a reservation; a release with usage is a release; reading usage is a read.
    fn reserve_recording(
        &self,
        id: &ChannelId,
        min: Amount,
        max: Amount,
        head: bytes::Bytes,
    ) -> impl Future<Output = Result<Reservation, StoreError>> + Send {
        self.run(Op::Reserve, move || self.inner.reserve_recording(id, min, max, head))
    }
    fn credit(
        &self,
        id: &ChannelId,
        amount: Amount,
        deposit_ref: &str,
    ) -> impl Future<Output = Result<tollgate::store::Credited, StoreError>> + Send {
        self.run(Op::Accept, move || self.inner.credit(id, amount, deposit_ref))
    }
    fn release_with_usage(
        &self,
        r: &Reservation,
        used: Amount,
        units: u64,
        record: bytes::Bytes,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Release, move || self.inner.release_with_usage(r, used, units, record))
    }
    fn usage(
        &self,
        id: &ChannelId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<bytes::Bytes>, StoreError>> + Send {
        self.run(Op::Load, move || self.inner.usage(id, limit))
    }
    fn ask(
        &self,
        id: &ChannelId,
        asker: AskId,
        cumulative: Amount,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Ask, move || self.inner.ask(id, asker, cumulative, ttl))
    }
    fn withdraw_ask(
        &self,
        id: &ChannelId,
        asker: AskId,
    ) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Ask, move || self.inner.withdraw_ask(id, asker))
    }
    fn changed(&self, id: &ChannelId, seen: u64) -> impl Future<Output = Result<ChannelState, StoreError>> + Send {
        self.run(Op::Changed, move || self.inner.changed(id, seen))
    }
    fn lease(&self) -> std::time::Duration {
        self.inner.lease()
    }
    fn renew(
        &self,
        r: &Reservation,
        delivered: Amount,
        units: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.run(Op::Renew, move || self.inner.renew(r, delivered, units))
    }
    fn keep(
        &self,
        id: &ChannelId,
        shelf: &str,
        key: Amount,
        value: bytes::Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.run(Op::Shelf, move || self.inner.keep(id, shelf, key, value))
    }
    fn kept(
        &self,
        id: &ChannelId,
        shelf: &str,
    ) -> impl Future<Output = Result<Vec<(Amount, bytes::Bytes)>, StoreError>> + Send {
        self.run(Op::Shelf, move || self.inner.kept(id, shelf))
    }
    fn discard(
        &self,
        id: &ChannelId,
        shelf: &str,
        keys: Option<&[Amount]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.run(Op::Shelf, move || self.inner.discard(id, shelf, keys))
    }
    fn shelved(&self, shelf: &str) -> impl Future<Output = Result<Vec<ChannelId>, StoreError>> + Send {
        self.run(Op::Shelf, move || self.inner.shelved(shelf))
    }
    fn lock(
        &self,
        name: &str,
        holder: tollgate::store::LockHolder,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.run(Op::Lock, move || self.inner.lock(name, holder, ttl))
    }
    fn unlock(
        &self,
        name: &str,
        holder: tollgate::store::LockHolder,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.run(Op::Lock, move || self.inner.unlock(name, holder))
    }
}
