//! [`Account`]: one response's lease on a channel, released exactly once.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::amount::Amount;
use crate::method::grant::SettledHook;
use crate::method::{Proof, Settled};
use crate::observe::Observed;
use crate::store::{ChannelState, ChannelStore, Reservation, StoreError, StoreErrorKind};

mod lease;
mod release;

pub(crate) use lease::{Delivered, LeaseLost};
pub(crate) use release::Release;
pub(crate) use release::detach;

use lease::Keeper;

use crate::method::grant::UsageHook;

/// A response's reservation plus what it has delivered so far.
///
/// It is released exactly once, by [`release`](Account::release) or, if it is dropped
/// unreleased (the client went away, the body was dropped mid-stream), by its `Drop`:
/// either way the release commits exactly what was delivered, runs the settled hook, and
/// runs to its end even if nobody waits for it (see [`detach`]). Neither path can panic.
///
/// Its holder keeps the lease alive by polling [`poll_lease`](Account::poll_lease) alongside
/// its work (see [`lease`]).
pub(crate) struct Account<St: ChannelStore> {
    store: Arc<St>,
    lease: Reservation,
    used: Amount,
    units: u64,
    on_settled: Option<SettledHook>,
    /// Makes the usage record the release writes with the debit (a prepaid balance's).
    usage_record: Option<UsageHook>,
    /// Where the settled hook's proof goes (the response waiting for it), if it makes one.
    proof: Option<oneshot::Sender<Proof>>,
    /// The runtime the account was created on, where a release that must wait runs.
    runtime: Option<Handle>,
    armed: bool,
    keeper: Keeper,
    /// The request's span and series: the release reports what it committed.
    observed: Observed,
}

impl<St: ChannelStore> Account<St> {
    pub(crate) fn new(
        store: Arc<St>,
        lease: Reservation,
        on_settled: Option<SettledHook>,
        proof: Option<oneshot::Sender<Proof>>,
    ) -> Self {
        let keeper = Keeper::new(store.lease());
        Account {
            store,
            lease,
            used: Amount::ZERO,
            units: 0,
            on_settled,
            usage_record: None,
            proof,
            runtime: Handle::try_current().ok(),
            armed: true,
            keeper,
            observed: Observed::default(),
        }
    }

    /// Releases with a usage record made by `hook`, in the same store step.
    pub(crate) fn recording(mut self, hook: Option<UsageHook>) -> Self {
        self.usage_record = hook;
        self
    }

    /// Reports the release to `observed`.
    pub(crate) fn observed(mut self, observed: Observed) -> Self {
        self.observed = observed;
        self
    }

    pub(crate) fn store(&self) -> &Arc<St> {
        &self.store
    }

    /// Units this response has delivered so far.
    pub(crate) fn units(&self) -> u64 {
        self.units
    }

    pub(crate) fn lease(&self) -> &Reservation {
        &self.lease
    }

    /// The runtime this account runs its release and timers on: the one it was created
    /// on, else the current one.
    pub(crate) fn runtime(&self) -> Option<Handle> {
        self.runtime.clone().or_else(|| Handle::try_current().ok())
    }

    /// Records that this response has now delivered `total` (its cumulative cost, which
    /// a reconciled meter may lower) over `units` units. The caller has checked that the
    /// lease covers it.
    pub(crate) fn deliver(&mut self, total: Amount, units: u64) {
        debug_assert!(total <= self.lease.amount);
        self.used = total;
        self.units = units;
    }

    pub(crate) fn grown(&mut self, lease: Reservation) {
        debug_assert_eq!(lease.id, self.lease.id);
        self.lease = lease;
    }

    /// What this response has delivered so far: the figure a renewal reports.
    pub(crate) fn delivered(&self) -> Delivered {
        Delivered { amount: self.used, units: self.units }
    }

    /// The store restarted the lease with a call sent at `sent` (an extend, a renewal), and
    /// recorded `delivered` if that was a renewal.
    pub(crate) fn restarted(&mut self, sent: Instant, delivered: Option<Delivered>) {
        self.keeper.restarted(sent, delivered);
    }

    /// Keeps the lease alive: renews it with what was delivered so far whenever a third of
    /// the store's lease has passed since it was last restarted. See
    /// [`Keeper::poll`](lease::Keeper::poll) for what each answer asks of the caller.
    pub(crate) fn poll_lease(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LeaseLost>> {
        let (store, lease) = (&self.store, &self.lease);
        let renew = |delivered: Delivered| -> lease::BoxFuture<_> {
            let (store, lease) = (store.clone(), lease.clone());
            Box::pin(async move { store.renew(&lease, delivered.amount, delivered.units).await })
        };
        let polled = self.keeper.poll(cx, self.runtime.as_ref(), self.delivered(), renew);
        if let Poll::Ready(Err(LeaseLost)) = polled {
            self.lost();
        }
        polled
    }

    /// Whether a renewal of the lease is under way: its holder must keep polling it.
    pub(crate) fn is_renewing(&self) -> bool {
        self.keeper.is_renewing()
    }

    /// The store answered that the lease is gone (reclaimed, or released elsewhere): it
    /// charged the last renewed figure, so that is what this response used as far as the
    /// settled hook is concerned, and the release that follows changes nothing in the store.
    pub(crate) fn lost(&mut self) {
        self.keeper.lose();
        let charged = self.keeper.renewed();
        self.used = charged.amount;
        self.units = charged.units;
    }

    /// Commits what was delivered and frees the rest, then runs the settled hook and, if it
    /// proves the payment, its settlement, whose proof goes to whoever waits for it. All of
    /// it starts now and completes even if the returned handle is dropped; the handle
    /// resolves once the settlement is over.
    pub(crate) fn release(mut self) -> Release {
        self.start()
    }

    fn start(&mut self) -> Release {
        self.armed = false;
        let (store, lease, used, units, hook) =
            (self.store.clone(), self.lease.clone(), self.used, self.units, self.on_settled.take());
        let record = self.usage_record.take().map(|make| make(used, units));
        let proof = self.proof.take();
        let observed = std::mem::take(&mut self.observed);
        let release = async move {
            let result = release_retrying(&*store, &lease, used, units, record).await;
            match &result {
                Ok(_) => observed.released(used, units),
                Err(_) => crate::observe::store_error("release"),
            }
            if let Some(hook) = hook {
                let state = result.as_ref().ok().cloned();
                // Settled here, inside the detached release: it runs once, to its end,
                // whether or not the response still waits for the proof.
                if let Some(proving) = hook(Settled { channel: lease.channel.clone(), used, units, state }) {
                    let since = observed.settlement_submitted();
                    let made = proving.await;
                    observed.settlement_done(since, made.status());
                    if let Some(proof) = proof {
                        let _ = proof.send(made);
                    }
                }
            }
            result
        };
        detach(release, self.runtime.as_ref())
    }
}

/// How often a release that failed in the backend is tried again, and the first pause.
const RELEASE_ATTEMPTS: u32 = 10;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Releases `lease`, trying again (backing off, about 16 s in all) while the backend fails:
/// a release is idempotent, so a retry after an answer that was lost changes nothing, and
/// giving up would leave the delivered amount uncommitted and the rest reserved.
async fn release_retrying<St: ChannelStore>(
    store: &St,
    lease: &Reservation,
    used: Amount,
    units: u64,
    record: Option<bytes::Bytes>,
) -> Result<ChannelState, StoreError> {
    let mut pause = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        let released = match &record {
            Some(record) => store.release_with_usage(lease, used, units, record.clone()).await,
            None => store.release(lease, used, units).await,
        };
        match released {
            Err(error) if *error.kind() == StoreErrorKind::Backend && attempt < RELEASE_ATTEMPTS => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_RETRY);
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

impl<St: ChannelStore> Drop for Account<St> {
    fn drop(&mut self) {
        if self.armed {
            // Nobody waits for the outcome; the release runs to its end regardless.
            drop(self.start());
        }
    }
}

impl<St: ChannelStore> fmt::Debug for Account<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("lease", &self.lease)
            .field("used", &self.used)
            .field("units", &self.units)
            .field("armed", &self.armed)
            .field("lease_lost", &self.keeper.is_lost())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::store::{ChannelId, MemoryStore};

    fn now<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a memory store operation waited"),
        }
    }

    fn leased(store: &Arc<MemoryStore>) -> Reservation {
        let id = ChannelId::new("acct");
        now(store.open(&id, Amount::new(100), Amount::new(100))).unwrap();
        now(store.reserve(&id, Amount::new(1), Amount::new(50))).unwrap()
    }

    #[test]
    fn release_and_drop_settle_exactly_once() {
        let store = Arc::new(MemoryStore::new());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let hook = |hooks: &Arc<Mutex<Vec<Amount>>>| -> Option<SettledHook> {
            let hooks = hooks.clone();
            Some(Box::new(move |s: Settled| {
                hooks.lock().unwrap().push(s.used);
                None
            }))
        };
        let mut released = runtime.block_on(async { Account::new(store.clone(), leased(&store), hook(&hooks), None) });
        released.deliver(Amount::new(7), 7);
        let state = runtime.block_on(released.release()).unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(7), Amount::ZERO));

        let mut dropped = runtime.block_on(async { Account::new(store.clone(), leased(&store), hook(&hooks), None) });
        dropped.deliver(Amount::new(5), 5);
        // Dropped off the runtime, which nobody drives: the release completes at once.
        drop(dropped);
        let state = now(store.load(&ChannelId::new("acct"))).unwrap().unwrap();
        assert_eq!((state.spent, state.reserved), (Amount::new(12), Amount::ZERO));
        assert_eq!(*hooks.lock().unwrap(), [Amount::new(7), Amount::new(5)]);
    }
}
