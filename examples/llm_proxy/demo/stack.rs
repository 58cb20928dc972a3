//! [`Stack`]: the local chain plus the proxy serving on 127.0.0.1, as the demo, the tests
//! and the load run use it.

use std::net::SocketAddr;
use std::time::Duration;

use alloy::primitives::{B256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use tollgate::Amount;
use tollgate::method::tempo::{PATH_USD, SettlementReport};
use tollgate::store::{ChannelId, ChannelState, ChannelStore};
use tollgate::wire::mpp::Receipt;

use super::client::PayingClient;
use super::devnet::{Devnet, ESCROW};
use crate::proxy::config::{Config, base_units};
use crate::proxy::payment::{PaymentSettings, Sessions};
use crate::proxy::simulated::Simulator;
use crate::proxy::store::ProxyStore;
use crate::proxy::{Proxy, Running, spawn};

/// How to run the proxy.
#[derive(Clone, Debug)]
pub struct Options {
    /// Serve the simulated model whatever the upstreams.
    pub simulated: bool,
    /// The simulator's pace and faults (default: the configuration's).
    pub simulator: Option<Simulator>,
    /// Tokens of headroom per voucher.
    pub voucher_window: u64,
    /// How long a paused stream waits for a voucher.
    pub pause_deadline: Duration,
    /// How often a paused stream sends a keep-alive comment.
    pub keep_alive: Duration,
}

impl Options {
    /// The configuration's settings, with the demo's voucher window.
    pub fn demo(config: &Config) -> Self {
        Options {
            simulated: true,
            simulator: None,
            voucher_window: config.demo.voucher_window_tokens,
            pause_deadline: Duration::from_secs(config.payment.pause_deadline_secs),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// A chain and a proxy paid on it; both stop when this drops.
#[derive(Debug)]
pub struct Stack {
    /// The proxy (its catalog, its payment layer and store).
    pub proxy: Proxy,
    /// Where it serves.
    pub server: Running,
    /// Who it pays.
    pub payee: PrivateKeySigner,
    /// How it is paid (another instance built with them answers the same challenges).
    pub settings: PaymentSettings,
    /// The chain (dropped last: anvil stops after the proxy).
    pub devnet: Devnet,
}

impl Stack {
    /// Starts anvil (chain `config.demo.chain_id`), installs the escrow and serves the proxy
    /// paying dev account 1, on a store of its own.
    pub async fn start(config: &Config, options: Options) -> Result<Stack, String> {
        Stack::start_on(config, options, ProxyStore::default()).await
    }

    /// As [`start`](Stack::start), keeping the money state in `store`.
    pub async fn start_on(config: &Config, options: Options, store: ProxyStore) -> Result<Stack, String> {
        let devnet = Devnet::start(config.demo.chain_id).await?;
        let payee = devnet.signer(1);
        let decimals = config.payment.decimals;
        let settings = PaymentSettings {
            rpc_url: devnet.rpc_url(),
            chain_id: devnet.chain_id,
            escrow: ESCROW,
            currency: PATH_USD,
            payee: payee.clone(),
            // Printable, so an instance started as a process can be given it too.
            secret: alloy::hex::encode(PrivateKeySigner::random().to_bytes()).into_bytes(),
            realm: config.server.realm.clone(),
            suggested_deposit: Amount::new(base_units(config.payment.suggested_deposit, decimals)?),
            voucher_window: options.voucher_window,
            pause_deadline: options.pause_deadline,
            keep_alive: options.keep_alive,
            decimals,
            sessions: Sessions {
                before_broadcast: Some(std::sync::Arc::new(devnet.stand_in_opens())),
                // No settlement loop runs here; `close_idle_v2` is the explicit pass.
                close_idle_after: Some(Duration::ZERO),
                ..Sessions::default()
            },
            x402: None,
            x402_upto: false,
        };
        let (proxy, server) = serve_instance(config, &settings, &options, store).await?;
        Ok(Stack { proxy, server, payee, settings, devnet })
    }

    /// Another instance of the proxy on the same chain, paid the same way (same payee, same
    /// challenge secret), keeping its money state in `store`: give it a handle on this
    /// stack's store and the two serve one set of channels, as instances behind a load
    /// balancer do.
    pub async fn instance(
        &self,
        config: &Config,
        options: &Options,
        store: ProxyStore,
    ) -> Result<(Proxy, Running), String> {
        let settings = PaymentSettings {
            voucher_window: options.voucher_window,
            pause_deadline: options.pause_deadline,
            keep_alive: options.keep_alive,
            ..self.settings.clone()
        };
        serve_instance(config, &settings, options, store).await
    }

    /// A client paying from dev account `n` (2 and up; 0 and 1 are the chain's and the payee's).
    pub fn client(&self, n: usize) -> PayingClient {
        PayingClient::new(self.server.url(""), self.devnet.signer(n))
    }

    /// Asks `request` unpaid (402), then opens a channel with `deposit`.
    pub async fn open(&self, client: &mut PayingClient, request: &Value, deposit: u128) -> Result<Receipt, String> {
        let (status, _, body) = client.ask(request).await?;
        if client.challenge().is_none() {
            return Err(format!("expected a 402, got {status}: {body}"));
        }
        let salt = keccak256(format!("{:?}{}{deposit}", std::time::SystemTime::now(), std::process::id()));
        let tx = self.devnet.tx_params(client.address()).await?;
        client.open(deposit, salt, tx).await
    }

    /// Closes every v2 channel with nothing in flight, capturing exactly what was delivered
    /// (what the proxy's settlement loop does to an idle channel). Returns the close
    /// pass's report.
    pub async fn close_idle_v2(&self) -> SettlementReport {
        close_idle_v2(&self.proxy).await
    }

    /// The store's view of `channel`.
    pub async fn state(&self, channel: B256) -> Option<ChannelState> {
        self.proxy.layer.store().load(&ChannelId::new(format!("{channel:#x}"))).await.ok().flatten()
    }
}

/// Builds the proxy of `config` on `store` and serves it on a free port of 127.0.0.1.
async fn serve_instance(
    config: &Config,
    settings: &PaymentSettings,
    options: &Options,
    store: ProxyStore,
) -> Result<(Proxy, Running), String> {
    let proxy = Proxy::build_on(config, settings, options.simulated, options.simulator.clone(), store)?;
    let server = spawn(proxy.router.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await.map_err(|e| e.to_string())?;
    Ok((proxy, server))
}

/// Closes every v2 channel of `proxy`'s store with nothing in flight, capturing exactly
/// what was delivered (what the settlement loop does to an idle channel).
pub async fn close_idle_v2(proxy: &Proxy) -> SettlementReport {
    let Some(v2) = &proxy.layer.method().0 else { return SettlementReport::default() };
    v2.settle_all(&**proxy.layer.store(), 0).await
}
