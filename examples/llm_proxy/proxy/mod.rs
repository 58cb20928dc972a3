//! The paid OpenAI-compatible proxy: configuration, model catalog, request checks,
//! upstream forwarding (and the simulated model), OpenAI-style errors, and the axum app
//! with `PaymentLayer` in front of `POST /v1/chat/completions`.

pub mod app;
pub mod catalog;
pub mod chat;
pub mod completion;
pub mod config;
pub mod cost;
pub mod discovery;
pub mod errors;
pub mod payment;
pub mod prepaid;
pub mod prometheus;
pub mod server;
pub mod simulated;
pub mod sse;
pub mod store;
pub mod unstream;
pub mod upstream;
pub mod x402;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use app::AppState;
use catalog::Catalog;
use config::Config;
use payment::{Layer, PaymentSettings};
use simulated::Simulator;
use store::ProxyStore;
use upstream::Upstreams;

/// A built proxy.
#[derive(Debug)]
pub struct Proxy {
    /// The app (with the payment layer unless built unpaid).
    pub router: Router,
    /// What it sells.
    pub catalog: Arc<Catalog>,
    /// Its payment layer (its store and method, for settlement and inspection).
    pub layer: Layer,
}

impl Proxy {
    /// The proxy of `config`, paid as `settings` says, on a store of its own in this
    /// process. `simulated` forces the simulated model even when upstreams are usable;
    /// `simulator` overrides its pace and faults.
    pub fn build(
        config: &Config,
        settings: &PaymentSettings,
        simulated: bool,
        simulator: Option<Simulator>,
    ) -> Result<Proxy, String> {
        Proxy::build_on(config, settings, simulated, simulator, ProxyStore::default())
    }

    /// As [`build`](Proxy::build), keeping its money state in `store` (which other
    /// instances may share).
    pub fn build_on(
        config: &Config,
        settings: &PaymentSettings,
        simulated: bool,
        simulator: Option<Simulator>,
        store: ProxyStore,
    ) -> Result<Proxy, String> {
        let catalog = Arc::new(Catalog::from_config(config, simulated)?);
        let prepaid = config.prepaid.as_ref().map(|p| prepaid::method(p, settings)).transpose()?;
        let layer = payment::layer(settings, catalog.clone(), store.clone(), prepaid.clone())?;
        let state = state(config, catalog.clone(), simulator);
        let mut router = app::router(state, Some(layer.clone()));
        if let (Some(config), Some(method)) = (&config.prepaid, prepaid) {
            router = router.merge(prepaid::routes(config, settings, method, store)?);
        }
        Ok(Proxy { router, catalog, layer })
    }

    /// The same app without the payment layer (the load run's baseline).
    pub fn unpaid(config: &Config, simulated: bool, simulator: Option<Simulator>) -> Result<Router, String> {
        let catalog = Arc::new(Catalog::from_config(config, simulated)?);
        Ok(app::router::<payment::ProxyMethods, ProxyStore>(state(config, catalog, simulator), None))
    }
}

fn state(config: &Config, catalog: Arc<Catalog>, simulator: Option<Simulator>) -> AppState {
    let server = &config.server;
    let simulator = simulator.unwrap_or_else(|| Simulator::new(config.simulated.tokens_per_second));
    let upstreams = Upstreams::new(
        simulator,
        Duration::from_secs(server.upstream_timeout_secs),
        Duration::from_secs(server.stream_idle_timeout_secs),
    );
    AppState { catalog, upstreams, max_body_bytes: server.max_body_bytes }
}

/// A running server; aborted when dropped.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Running {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `addr` (port 0: any free port) in a task.
pub async fn spawn(router: Router, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // A serve error ends the task; the client sees its connections refused.
        let _ = axum::serve(listener, router).await;
    });
    Ok(Running { addr, task })
}
