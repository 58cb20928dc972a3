//! A prepaid balance funded with x402: `@x402/fetch` (v2, EIP-3009) pays a top-up route on
//! anvil, the settlement credits the payer's balance once, and the same transaction posted
//! as a deposit changes nothing (one reference for both paths).

#![cfg(all(feature = "prepaid", feature = "x402"))]

mod chain;
mod x402_support;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;
use tollgate::method::prepaid::{Deposits, Prepaid, credit_top_ups};
use tollgate::method::x402::{OnChainSettler, X402Exact};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, Quote, Secret};
use x402_support::{World, key_hex};

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
const TOP_UP: u128 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x402_payment_tops_up_the_payers_balance_once() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let (tx, mut settled) = mpsc::unbounded_channel();
    let credit = credit_top_ups(store.clone());
    let settler = OnChainSettler::new(world.chain(), store.clone());
    let method = X402Exact::new(world.offer(0), world.chain(), settler).on_settlement(move |outcome| {
        let _ = tx.send(outcome.as_ref().and_then(|o| o.as_ref().ok()).and_then(|s| s.transaction));
        credit(outcome);
    });
    let quote = Quote::new(Price::per_request(Amount::new(TOP_UP))).max_output(1);
    let layer = PaymentLayer::new(method, store.clone(), "api.test", Secret::new(SECRET)).pricing(quote);
    let app = Router::new().route("/v1/top-up", post(|| async { "{\"toppedUp\":true}" }).route_layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/top-up", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let treasury_before = world.balance(world.payee.address()).await;

    let out = tokio::process::Command::new("node")
        .arg("tests/js/x402_pay.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CLIENT", "x402-fetch")
        .env("URL", &url)
        .env("PRIVATE_KEY", key_hex(&world.payer))
        .env("RPC_URL", world.rpc_url())
        .env("ASSET", world.token.to_checksum(None))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["status"], 200, "{out}");

    let hash = tokio::time::timeout(Duration::from_secs(60), settled.recv()).await.unwrap().unwrap();
    let hash = hash.expect("settled by a transferWithAuthorization");
    assert_eq!(world.balance(world.payee.address()).await, treasury_before + TOP_UP);
    // The credit runs on its own task after the settlement: wait for it to land.
    let account = Prepaid::account(world.payer.address());
    let credited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(state) = store.load(&account).await.unwrap() {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the top-up was credited");
    assert_eq!((credited.accepted, credited.spent), (Amount::new(TOP_UP), Amount::ZERO));

    // The same transaction as an on-chain deposit (payTo is the treasury): already credited.
    let deposits = Deposits::new(&world.rpc_url(), world.token, world.payee.address()).unwrap();
    let again = deposits.claim(&format!("{hash:#x}"), &store).await.unwrap();
    assert_eq!((again.fresh, again.payer, again.amount), (false, world.payer.address(), Amount::new(TOP_UP)));
    assert_eq!(store.load(&account).await.unwrap().unwrap().accepted, Amount::new(TOP_UP));
    server.abort();
}
