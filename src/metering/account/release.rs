//! Releases that run to their end whoever waits for them.
//!
//! A body can be dropped at any await point, so a release must never live only inside it:
//! [`detach`] starts the release at once and, if it has to wait, hands it to a runtime;
//! the [`Release`] handle the body keeps only reports the outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::{ChannelState, StoreError};

type Outcome = Result<ChannelState, StoreError>;

/// A release under way: awaiting it gives the channel's state after it. Dropping it does
/// not stop the release.
#[must_use = "dropping a Release only forgets its outcome"]
pub(crate) struct Release(Inner);

enum Inner {
    Done(Option<Outcome>),
    Task(JoinHandle<Outcome>),
    Thread(oneshot::Receiver<Outcome>),
}

impl Release {
    /// The outcome of a release that has already ended.
    pub(crate) fn done(outcome: Outcome) -> Self {
        Release(Inner::Done(Some(outcome)))
    }

    /// The outcome of a release that ran in a task (a pause watchdog's).
    pub(crate) fn task(handle: JoinHandle<Outcome>) -> Self {
        Release(Inner::Task(handle))
    }
}

impl Future for Release {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let lost = || StoreError::backend("the release task did not report back");
        match &mut self.0 {
            Inner::Done(outcome) => Poll::Ready(outcome.take().unwrap_or_else(|| Err(lost()))),
            Inner::Task(handle) => Pin::new(handle).poll(cx).map(|joined| joined.unwrap_or_else(|_| Err(lost()))),
            Inner::Thread(rx) => Pin::new(rx).poll(cx).map(|sent| sent.unwrap_or_else(|_| Err(lost()))),
        }
    }
}

/// Starts `release` and makes sure it runs to its end.
///
/// It is polled once right here, inside `runtime` (or the current runtime), so a store that
/// answers at once (the memory store) is released before this returns, even on a thread
/// nobody drives. If it has to wait it is spawned on that runtime. With no runtime at all
/// (a body driven by another executor) it runs on a thread of its own with a small runtime:
/// the reservation is never left behind.
pub(crate) fn detach<F>(release: F, runtime: Option<&Handle>) -> Release
where
    F: Future<Output = Outcome> + Send + 'static,
{
    let mut release = Box::pin(release);
    let Some(runtime) = runtime.cloned().or_else(|| Handle::try_current().ok()) else {
        return Release(on_own_thread(release));
    };
    let polled = {
        let _inside = runtime.enter();
        release.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    match polled {
        Poll::Ready(outcome) => Release(Inner::Done(Some(outcome))),
        // A runtime shutting down drops the task: nothing more can run there then.
        Poll::Pending => Release(Inner::Task(runtime.spawn(release))),
    }
}

fn on_own_thread(release: Pin<Box<dyn Future<Output = Outcome> + Send>>) -> Inner {
    let (tx, rx) = oneshot::channel();
    let run = move || {
        let outcome = match Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(release),
            Err(e) => Err(StoreError::backend(e)),
        };
        let _ = tx.send(outcome);
    };
    match std::thread::Builder::new().name("tollgate-release".into()).spawn(run) {
        Ok(_) => Inner::Thread(rx),
        Err(e) => Inner::Done(Some(Err(StoreError::backend(e)))),
    }
}
