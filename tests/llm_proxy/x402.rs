//! The proxy with `[x402]`: x402 `exact` offered beside the Tempo methods on
//! `/v1/chat/completions`, paid by `@x402/fetch` (v2) and by `@libertai/x402` under the
//! openai SDK, settled by the proxy itself on anvil (chain id 8453, our EIP-3009 token), and
//! by mppx's charge client on the Tempo devnet, all on one route of one proxy.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::demo::stack::Stack;
use crate::guide::{options, run_node};
use crate::proxy::payment::{PaymentSettings, X402Settings};
use crate::proxy::{Proxy, spawn};
use crate::support::{config, cost, prompt_tokens, settings};
use crate::x402_support::{World, key_hex};

const MODEL: &str = "tollgate-sim";

async fn js_pay(client: &str, url: &str, world: &World) -> Value {
    let out = tokio::process::Command::new("node")
        .arg("tests/js/x402_pay.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CLIENT", client)
        .env("URL", url)
        .env("PRIVATE_KEY", key_hex(&world.payer))
        .env("RPC_URL", world.rpc_url())
        .env("ASSET", world.token.to_checksum(None))
        .env("MODEL", MODEL)
        .output()
        .await
        .expect("node runs");
    assert!(out.status.success(), "x402_pay.mjs {client} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Waits until the payee holds more than `before` (the settlement runs after the answer).
async fn payee_after(world: &World, before: u128) -> u128 {
    for _ in 0..300 {
        let now = world.balance(world.payee.address()).await;
        if now != before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the payee was never paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_clients_and_mppx_pay_the_same_route_of_the_proxy() {
    let world = World::new().await;
    let config = config("");
    // The Tempo devnet (mppx's chain) and the x402 chain side by side; both anvils derive
    // dev account 1 from the same mnemonic, so one payee key settles on both.
    let stack = Stack::start(&config, options()).await.unwrap();
    assert_eq!(stack.payee.address(), world.payee.address());
    let settings = PaymentSettings {
        x402: Some(X402Settings {
            offer: world.offer(0),
            rpc_url: world.rpc_url(),
            facilitator: None,
            settle_margin: tollgate::method::x402::DEFAULT_SETTLE_MARGIN_SECS,
        }),
        ..stack.settings.clone()
    };
    let proxy = Proxy::build(&config, &settings, true, None).expect("proxy builds");
    let server = spawn(proxy.router.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = server.url("/v1/chat/completions");
    // What the clients ask: the whole request's maximum (prompt bound, 16 output tokens).
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16});
    let price = proxy.catalog.get(MODEL).unwrap().price.clone();
    let maximum = cost(&price, prompt_tokens(&chat), 16);

    for client in ["x402-fetch", "libertai-openai"] {
        let before = (world.balance(world.payee.address()).await, world.balance(world.payer.address()).await);
        let out = js_pay(client, &url, &world).await;
        assert_eq!(out["status"], 200, "{client}: {out}");
        let completion: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(completion["object"], "chat.completion", "{client}");
        let paid = payee_after(&world, before.0).await - before.0;
        assert_eq!(paid, maximum, "{client}: EIP-3009 moves the whole maximum");
        assert_eq!(world.balance(world.payer.address()).await, before.1 - maximum, "{client}");
        // The answer carried its receipt (PAYMENT-RESPONSE, X-PAYMENT-RESPONSE).
        let header = out["paymentResponse"].as_str().unwrap_or_else(|| panic!("{client}: a receipt header: {out}"));
        let receipt: Value = serde_json::from_slice(&STANDARD.decode(header).unwrap()).unwrap();
        assert_eq!((&receipt["success"], &receipt["amount"]), (&json!(true), &json!(maximum.to_string())), "{client}");
    }

    // mppx pays the very same route with a Tempo charge.
    let before = stack.devnet.balance(stack.payee.address()).await.unwrap();
    let body = chat.to_string();
    let env = [("URL", url.as_str()), ("REQUEST_METHOD", "POST"), ("REQUEST_BODY", body.as_str())];
    let lines = run_node(&stack, "mppx_charge_client.mjs", 5, &env).await;
    let response = lines.iter().find(|l| l["kind"] == "response").expect("a response line");
    assert_eq!(response["status"], 200, "{lines:?}");
    let completion: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    let gained = stack.devnet.balance(stack.payee.address()).await.unwrap() - before;
    assert_eq!(gained, maximum, "mppx: the whole request at its maximum");
}

/// `[x402] transfer_method = "upto"`: the @x402/evm `upto` client (Permit2, on the project's
/// stand-ins) pays a streamed chat; the payee gains exactly the metered tokens, below the
/// signed maximum.
#[tokio::test]
async fn the_x402_upto_client_pays_the_proxy_exactly_the_metered_tokens() {
    let world = World::new().await;
    crate::x402_support::install_upto(&world).await;
    let config = config("");
    let settings = PaymentSettings {
        realm: config.server.realm.clone(),
        payee: world.payee.clone(),
        x402: Some(X402Settings {
            offer: world.offer(0),
            rpc_url: world.rpc_url(),
            facilitator: None,
            settle_margin: tollgate::method::x402::DEFAULT_SETTLE_MARGIN_SECS,
        }),
        x402_upto: true,
        ..settings()
    };
    let proxy = Proxy::build(&config, &settings, true, None).expect("proxy builds");
    let server = spawn(proxy.router.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16});
    let price = proxy.catalog.get(MODEL).unwrap().price.clone();
    let maximum = cost(&price, prompt_tokens(&chat), 16);

    let before = (world.balance(world.payee.address()).await, world.balance(world.payer.address()).await);
    let out = tokio::process::Command::new("node")
        .arg("tests/js/x402_upto.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MODE", "pay")
        .env("URL", server.url("/v1/chat/completions"))
        .env("PRIVATE_KEY", key_hex(&world.payer))
        .env("ASSET", world.token.to_checksum(None))
        .env("MODEL", MODEL)
        .env("MAX_TOKENS", "16")
        .output()
        .await
        .expect("node runs");
    assert!(out.status.success(), "x402_upto.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["status"], 200, "{out}");
    // The stream ends with the payment-receipt event: what the meter charged, of the maximum.
    let body = out["body"].as_str().unwrap();
    let at = body.rfind("event: payment-receipt\ndata: ").unwrap_or_else(|| panic!("a receipt event: {body}"));
    let receipt: Value = serde_json::from_str(body[at..].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(receipt["acceptedCumulative"], maximum.to_string(), "{receipt}");
    let metered: u128 = receipt["spent"].as_str().unwrap().parse().unwrap();
    let paid = payee_after(&world, before.0).await - before.0;
    assert_eq!(paid, metered, "exactly the metered tokens: {body}");
    assert!(paid > 0 && paid < maximum, "{paid} of at most {maximum}");
    assert_eq!(world.balance(world.payer.address()).await, before.1 - metered);
}

/// `[x402]` refuses what would lose money at settlement, at start-up: a Permit settled with
/// the payee key but paying someone else (the permit's spender must send the transfer), or
/// a settle margin that leaves a payment no time to serve. The timeout and margin it takes
/// reach the offer and the methods.
#[test]
fn x402_settings_refuse_a_permit_the_payee_cannot_spend_and_a_margin_without_serving_time() {
    let payee = alloy::signers::local::PrivateKeySigner::random();
    let section = |extra: &str| {
        config(&format!(
            "[x402]\nchain_id = 8453\nrpc_url = \"http://127.0.0.1:9\"\n\
             asset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"\nname = \"USD Coin\"\nversion = \"2\"\n{extra}"
        ))
        .x402
        .expect("an [x402] section")
    };
    let other = "pay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"";
    let error = section(&format!("transfer_method = \"permit\"\n{other}")).settings(&payee).unwrap_err();
    assert!(error.contains("pay_to must be the payee"), "{error}");
    // A facilitator spends the permit itself; EIP-3009 may be sent by anyone.
    let facilitated = format!("transfer_method = \"permit\"\n{other}\nfacilitator_url = \"http://127.0.0.1:9\"");
    assert!(section(&facilitated).settings(&payee).is_ok());
    assert!(section(other).settings(&payee).is_ok());

    let error = section("max_timeout_seconds = 60\nsettle_margin_seconds = 60").settings(&payee).unwrap_err();
    assert!(error.contains("settle_margin_seconds"), "{error}");
    let settings = section("max_timeout_seconds = 600\nsettle_margin_seconds = 45").settings(&payee).unwrap();
    assert_eq!((settings.offer.timeout_seconds(), settings.settle_margin), (600, 45));
    let defaults = section("").settings(&payee).unwrap();
    assert_eq!(
        (defaults.offer.timeout_seconds(), defaults.settle_margin),
        (tollgate::method::x402::DEFAULT_MAX_TIMEOUT_SECONDS, tollgate::method::x402::DEFAULT_SETTLE_MARGIN_SECS)
    );
}
