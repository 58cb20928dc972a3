//! `serve --chain local`: the `serve` path on a fresh machine. Starts anvil in Tempo mode
//! (the npm-pinned anvil, as the demo does) on the port of `[payment] rpc_url`, installs the
//! escrow, and serves the configured proxy paid there by dev account 1; once it answers,
//! prints how to point a client at it. Dev chain only: its keys are anvil's public ones.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use tollgate::Amount;
use tollgate::method::tempo::PATH_USD;

use crate::demo::devnet::{Devnet, ESCROW};
use crate::demo::recipe::{self, Target};
use crate::proxy::catalog::Catalog;
use crate::proxy::config::{Config, base_units};
use crate::proxy::payment::{PaymentSettings, Sessions};

/// anvil's port when `rpc_url` names none.
const DEFAULT_PORT: u16 = 8545;

/// Runs the local chain and serves on it until Ctrl-C; anvil stops with it.
pub async fn serve(config: &Config) -> Result<(), String> {
    let port = rpc_port(&config.payment.rpc_url)?;
    let devnet = Devnet::start_on(config.demo.chain_id, Some(port)).await.map_err(|e| {
        format!("{e} (is something else listening on 127.0.0.1:{port}? `[payment] rpc_url` sets the port)")
    })?;
    let settings = settings(config, &devnet)?;
    eprintln!(
        "local chain: anvil --network tempo at {} (chain {}), escrow at {ESCROW}, payee dev account 1 {}",
        devnet.rpc_url(),
        devnet.chain_id,
        settings.payee.address()
    );
    let proxy_url = format!("http://{}", reachable(config.server.listen));
    let catalog = Catalog::from_config(config, false)?;
    let model = catalog.models().first().map(|m| m.id.clone()).unwrap_or_default();
    let announce = async {
        if wait_until_up(&proxy_url).await {
            let target = Target { proxy: proxy_url.clone(), devnet: &devnet, model: &model, first_payer: 2 };
            println!("\n{}", recipe::render(&target).await);
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        served = crate::serve_with(config, settings) => served,
        () = announce => Ok(()),
    }
}

/// The payment settings on the local chain: the configuration's, with the chain's URL, id
/// and escrow, dev account 1 as the payee, a random challenge secret, and the listening
/// host as the realm.
fn settings(config: &Config, devnet: &Devnet) -> Result<PaymentSettings, String> {
    let p = &config.payment;
    Ok(PaymentSettings {
        rpc_url: devnet.rpc_url(),
        chain_id: devnet.chain_id,
        escrow: ESCROW,
        currency: PATH_USD,
        payee: devnet.signer(1),
        secret: PrivateKeySigner::random().to_bytes().to_vec(),
        // The host clients reach it at (the configured realm names the production host).
        realm: reachable(config.server.listen).ip().to_string(),
        suggested_deposit: Amount::new(base_units(p.suggested_deposit, p.decimals)?),
        voucher_window: p.voucher_window_tokens,
        pause_deadline: Duration::from_secs(p.pause_deadline_secs),
        keep_alive: Duration::from_secs(15),
        decimals: p.decimals,
        sessions: Sessions {
            // DEV-ONLY: the local chain's v2 reserve is the demo's stand-in, which must be
            // told each open's expiring-nonce hash.
            before_broadcast: Some(std::sync::Arc::new(devnet.stand_in_opens())),
            close_idle_after: Some(Duration::from_secs(p.close_idle_secs)),
            first_voucher_deadline: Duration::from_secs(p.first_voucher_deadline_secs),
            ..Sessions::named(&p.session_protocols)?
        },
        x402: config.x402.as_ref().map(|x| x.settings(&devnet.signer(1))).transpose()?,
        x402_upto: config.x402.as_ref().is_some_and(|x| x.upto()),
    })
}

/// The port of a local `rpc_url` (anvil listens on 127.0.0.1 only).
fn rpc_port(rpc_url: &str) -> Result<u16, String> {
    let uri: http::Uri = rpc_url.parse().map_err(|e| format!("[payment] rpc_url {rpc_url}: {e}"))?;
    match uri.host() {
        Some("127.0.0.1" | "localhost") => Ok(uri.port_u16().unwrap_or(DEFAULT_PORT)),
        _ => Err(format!("--chain local runs anvil on 127.0.0.1: [payment] rpc_url {rpc_url} is not local")),
    }
}

/// Where a client on this machine reaches `listen`.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() { SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port())) } else { listen }
}

/// Polls `GET /health` until it answers 200 (up to about 10 s).
async fn wait_until_up(proxy: &str) -> bool {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    for _ in 0..100 {
        let Ok(request) =
            http::Request::get(format!("{proxy}/health")).body(http_body_util::Empty::<bytes::Bytes>::new())
        else {
            return false;
        };
        if client.request(request).await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
