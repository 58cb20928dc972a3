//! The proxy's HTTP/1 server, hardened for the open internet: a header read timeout (which
//! hyper also applies to a keep-alive connection waiting for its next request), a body read
//! timeout (tower-http), a cap on connections (a semaphore around accept) where a new
//! connection evicts the oldest one that has not yet sent a request, and a graceful shutdown
//! on SIGTERM or Ctrl-C: stop accepting, let streams finish up to a deadline, drop the rest
//! (their metering bodies release what they held), then one final settlement pass.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tollgate::method::is_management_request;
use tollgate::method::tempo::{SessionProtocol, SettlementPolicy};
use tollgate::wire::mpp::Credential;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::Proxy;

/// `[server.limits]`: what one client may hold of the server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A client has this long to send a request's headers, and a kept-alive connection this
    /// long to start its next request; then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// A request body that stays silent this long fails the request (the app answers 400).
    pub body_read_timeout_secs: u64,
    /// Open connections at most (keep it under the process's file limit). At the cap, a
    /// new connection evicts the oldest one that has not yet sent a request; when every
    /// connection is serving one, the new connection is closed.
    pub max_connections: usize,
    /// Connections that have not sent a request yet, at most: beyond, the oldest is
    /// evicted. Such a connection costs memory and gives nothing.
    pub max_idle_connections: usize,
    /// On shutdown, how long streams in flight may take to finish before they are cut.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 2048,
            max_idle_connections: 256,
            shutdown_grace_secs: 30,
        }
    }
}

/// Resolves on SIGTERM (a container stop) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                // A handler that cannot be installed disables its branch, never ends the wait.
                tokio::select! {
                    Some(()) = term.recv() => {}
                    Ok(()) = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Serves `proxy` on `listener` until `shutdown` resolves, settling each offered session
/// protocol on chain as `policy` says (if at all) while it runs, and once more, for whatever
/// was delivered, at the end.
pub async fn run(
    proxy: &Proxy,
    listener: TcpListener,
    limits: &Limits,
    policy: impl Fn(SessionProtocol) -> Option<SettlementPolicy>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let (v2, v1, ..) = &**proxy.layer.method();
    let sessions: Vec<_> = [(SessionProtocol::V1, v1), (SessionProtocol::V2, v2)]
        .into_iter()
        .filter_map(|(protocol, session)| session.clone().map(|session| (protocol, session)))
        .collect();
    let store = (**proxy.layer.store()).clone();
    let settlers: Vec<_> = sessions
        .iter()
        .filter_map(|(protocol, session)| {
            policy(*protocol).map(|policy| session.clone().spawn_settlement(store.clone(), policy))
        })
        .collect();
    serve(listener, proxy.router.clone(), limits, shutdown).await;
    settlers.iter().for_each(|settler| settler.abort());
    // Every connection is gone and its account released: capture what was delivered,
    // however little (with the memory store the vouchers live only in this process).
    for (protocol, session) in &sessions {
        let report = session.settle_all(&store, 1).await;
        eprintln!(
            "llm_proxy: final {} settlement: {} settled, {} closed, {} failed",
            protocol.as_str(),
            report.settled.len(),
            report.closed.len(),
            report.failures.len()
        );
        for (channel, error) in &report.failures {
            eprintln!("llm_proxy: settling {channel:#x} failed: {error}");
        }
    }
    Ok(())
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves and the
/// connections are done (or cut at the grace deadline).
///
/// While streams drain, new connections are still accepted for payment management only
/// (a bodiless POST with a credential: the vouchers that let those streams finish, and
/// closes); anything else gets a 503 and the connection is closed.
pub async fn serve(listener: TcpListener, router: Router, limits: &Limits, shutdown: impl Future<Output = ()>) {
    let router = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(limits.body_read_timeout_secs)))
        .service(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let waiting = Arc::new(Waiting::default());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut trim = Trim::new(limits.max_connections.max(1));
    tokio::pin!(shutdown);
    let mut drained: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    let mut graceful = Some(graceful);
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            biased;
            () = &mut shutdown, if drained.is_none() => {
                let grace = Duration::from_secs(limits.shutdown_grace_secs);
                let watched = graceful.take().map(GracefulShutdown::shutdown);
                drained = Some(Box::pin(async move {
                    let Some(watched) = watched else { return };
                    if tokio::time::timeout(grace, watched).await.is_err() {
                        eprintln!("llm_proxy: streams still running after {grace:?}: cutting them");
                    }
                }));
                http.keep_alive(false);
                continue;
            }
            () = async {
                match drained.as_mut() {
                    Some(drained) => drained.await,
                    None => std::future::pending().await,
                }
            }, if drained.is_some() => break,
            _ = trim.tick.tick() => {
                trim.check(&slots);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, most likely: free one, then back off a little.
                    waiting.evict_oldest();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(permit) = slot(&slots, &waiting).await else {
            drop(stream); // every connection is serving a request
            continue;
        };
        trim.seen(&slots);
        while waiting.len() >= limits.max_idle_connections.max(1) && waiting.evict_oldest() {}
        let conn = Arc::new(Conn::default());
        let id = waiting.add(conn.clone());
        let draining = drained.is_some();
        let service = {
            let (router, conn, waiting) = (router.clone(), conn.clone(), waiting.clone());
            hyper::service::service_fn(move |request: http::Request<Incoming>| {
                // A request arrived: the connection is no longer evictable.
                if conn.state.compare_exchange(WAITING, SERVING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    waiting.remove(id);
                }
                let router = router.clone();
                async move {
                    let request = match draining {
                        true => match is_payment_management(request) {
                            (true, request) => request,
                            (false, _) => return Ok(shutting_down()),
                        },
                        false => request,
                    };
                    router.oneshot(request).await
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let served: Pin<Box<dyn Future<Output = ()> + Send>> = match &graceful {
            Some(graceful) => {
                let watched = graceful.watch(connection);
                Box::pin(async move {
                    let _ = watched.await;
                })
            }
            None => Box::pin(async move {
                let _ = connection.await;
            }),
        };
        let waiting = waiting.clone();
        connections.spawn(async move {
            let _permit: OwnedSemaphorePermit = permit;
            tokio::select! {
                () = served => {}
                () = conn.evict.notified() => {}
            }
            waiting.remove(id);
        });
    }
    drop(listener);
    // Cut whatever is left; each dropped metering body releases its reservation.
    connections.shutdown().await;
    // Releases run on spawned tasks: give them a moment before anything reads the store.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A session management request (a voucher, a top-up or a close: a bodiless POST, by the
/// library's own rule) that carries a `Payment` credential. While the server drains only
/// these get through, so streams in flight still receive their vouchers.
fn is_payment_management(request: http::Request<Incoming>) -> (bool, http::Request<Incoming>) {
    let (mut parts, body) = request.into_parts();
    if http_body::Body::is_end_stream(&body) {
        parts.extensions.insert(tollgate::method::EmptyBody);
    }
    let management = Credential::is_present(&parts.headers) && is_management_request(&parts);
    (management, http::Request::from_parts(parts, body))
}

/// What a new request gets while the server drains.
fn shutting_down() -> http::Response<axum::body::Body> {
    let body = r#"{"error":{"message":"the server is shutting down","type":"server_shutting_down"}}"#;
    http::Response::builder()
        .status(http::StatusCode::SERVICE_UNAVAILABLE)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::RETRY_AFTER, "5")
        .header(http::header::CONNECTION, "close")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// A free connection slot, evicting the oldest connection still waiting for a request
/// if there is none; `None` when every connection is serving one.
async fn slot(slots: &Arc<Semaphore>, waiting: &Waiting) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if !waiting.evict_oldest() {
        return None;
    }
    // The evicted connection's task drops its permit as soon as it runs.
    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned()).await.ok()?.ok()
}

const WAITING: u8 = 0;
const SERVING: u8 = 1;
const EVICTED: u8 = 2;

/// One connection: whether it has sent a request yet, and how to evict it.
#[derive(Default)]
struct Conn {
    state: AtomicU8,
    evict: Notify,
}

/// The connections that have not sent a request yet, oldest first.
#[derive(Default)]
struct Waiting {
    inner: Mutex<(u64, BTreeMap<u64, Arc<Conn>>)>,
}

impl Waiting {
    fn add(&self, conn: Arc<Conn>) -> u64 {
        let mut inner = self.lock();
        let id = inner.0;
        inner.0 = id.wrapping_add(1);
        inner.1.insert(id, conn);
        id
    }

    fn len(&self) -> usize {
        self.lock().1.len()
    }

    fn remove(&self, id: u64) {
        self.lock().1.remove(&id);
    }

    /// Evicts the oldest connection still waiting for a request; false if there is none.
    fn evict_oldest(&self) -> bool {
        let mut inner = self.lock();
        while let Some((_, conn)) = inner.1.pop_first() {
            // A request may have just arrived on it: then it is serving, and kept.
            if conn.state.compare_exchange(WAITING, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                conn.evict.notify_one();
                return true;
            }
        }
        false
    }

    fn lock(&self) -> MutexGuard<'_, (u64, BTreeMap<u64, Arc<Conn>>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Gives the memory of closed connections back to the OS after a burst (glibc keeps freed
/// heap pages otherwise, and a burst of idle connections would pin the process at its peak).
struct Trim {
    tick: tokio::time::Interval,
    max: usize,
    high: usize,
}

impl Trim {
    fn new(max: usize) -> Self {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Trim { tick, max, high: 0 }
    }

    fn open(&self, slots: &Semaphore) -> usize {
        self.max.saturating_sub(slots.available_permits())
    }

    /// Notes the connections open now (after an accept).
    fn seen(&mut self, slots: &Semaphore) {
        self.high = self.high.max(self.open(slots));
    }

    /// Trims when at least 128 connections closed since the peak.
    fn check(&mut self, slots: &Semaphore) {
        let open = self.open(slots);
        if self.high >= open.saturating_add(128) {
            release_free_memory();
            self.high = open;
        }
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and only returns free heap pages to the OS.
        unsafe {
            malloc_trim(0);
        }
    }
}
