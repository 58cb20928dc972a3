//! The official `openai` npm SDK, its `fetch` paid by the real mppx client
//! (tests/js/openai_mppx_client.mjs), streams a completion through the proxy; the payee's
//! on-chain gain equals the priced usage.

use std::time::Duration;

use serde_json::Value;
use tollgate::store::{ChannelId, ChannelStore};

use crate::demo::devnet::ESCROW;
use crate::demo::stack::{Options, Stack};
use crate::proxy::chat::ChatRequest;
use crate::proxy::simulated;
use crate::support::*;

const PROMPT: &str = "What does a paid proxy do with my tokens?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_paying_with_mppx_streams_a_completion_and_the_payee_gains_the_priced_usage() {
    // Voucher window 0: every voucher is exactly what was delivered, so mppx's close (at
    // max(spent, accepted)) captures exactly the priced usage.
    let options = Options {
        simulated: true,
        simulator: None,
        voucher_window: 0,
        pause_deadline: Duration::from_secs(30),
        keep_alive: Duration::from_secs(15),
    };
    let stack = Stack::start(&config(""), options).await.unwrap();
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap().clone();
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/openai_mppx_client.mjs"))
        .env("BASE_URL", stack.server.url("/v1"))
        .env("RPC_URL", stack.devnet.rpc_url())
        .env("PRIVATE_KEY", stack.devnet.key_hex(2))
        .env("CHAIN_ID", stack.devnet.chain_id.to_string())
        .env("ESCROW", ESCROW.to_checksum(None))
        .env("MODEL", "tollgate-sim")
        .env("PROMPT", PROMPT)
        .env("TIMEOUT_MS", "90000")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.expect("the client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "openai client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line =
        |kind: &str| lines.iter().find(|l| l["kind"] == kind).unwrap_or_else(|| panic!("no {kind} line: {stdout}"));

    let models = &line("models")["data"];
    assert_eq!(models[0]["id"], "tollgate-sim");
    assert_eq!(models[0]["pricing"]["output_per_1m"].as_f64(), Some(11.0));

    let expected =
        simulated::completion(&ChatRequest::parse(chat("tollgate-sim", PROMPT).to_string().as_bytes()).unwrap());
    let completion = line("completion");
    assert_eq!(completion["text"], expected.text, "the SDK got the text");
    let usage = &completion["usage"];
    assert_eq!(usage["prompt_tokens"], expected.prompt_tokens, "the SDK got the usage");
    assert_eq!(usage["completion_tokens"], expected.completion_tokens);
    // mppx opens with one unit and the prompt costs more, so the proxy asked for the prompt
    // in the stream and called the simulator only once mppx's voucher had landed (a 402
    // would have failed the v1 client, which never raises a voucher in answer to one).
    let prompt = cost(&model.price, expected.prompt_tokens, 0);
    assert!(prompt > model.price.output.unit_price().get(), "the open's voucher cannot cover the prompt");
    let priced = cost(&model.price, expected.prompt_tokens, expected.completion_tokens);
    assert_eq!(completion["receipt"]["spent"], priced.to_string(), "the payment-receipt event");

    let error = line("error");
    assert_eq!((error["status"].as_u64(), error["name"].as_str()), (Some(404), Some("NotFoundError")));
    assert_eq!(error["type"], "invalid_request_error", "the SDK reads the OpenAI error shape");

    assert!(line("close")["receipt"]["txHash"].is_string());
    let channel = line("done")["channelId"].as_str().unwrap().to_owned();
    let state = stack.proxy.layer.store().load(&ChannelId::new(&channel)).await.unwrap().unwrap();
    assert!(state.finalized);
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    // v1 pays out a voucher exactly: the close captures the highest voucher at or below
    // what was delivered, never more. Tokens are counted at one per byte while they stream
    // (an upper bound) and lowered to the upstream's `usage` at the end, so the last voucher
    // (window 0: one frame's bound) may sit just above the priced usage.
    assert!(gain <= priced, "never more than the priced usage: {gain} > {priced}");
    assert!((priced - gain) * 20 < priced, "lost less than one frame's bound: {gain} of {priced}");
}
