//! Issue 8, item 1: the Tempo guide's client, as the guide shows it
//! (tests/js/guide_client.mjs: `Mppx.create({ methods: [tempo({ account, maxDeposit })] })`,
//! its plain `fetch` and the openai SDK given that fetch), pays the proxy with a v2 session:
//! several streamed completions on one channel, one on-chain open, content complete, and
//! after the proxy closes the idle channel the payee gains exactly the priced usage.

use std::time::Duration;

use serde_json::Value;
use tollgate::store::{ChannelId, ChannelStore};

use crate::demo::stack::{Options, Stack};
use crate::proxy::chat::ChatRequest;
use crate::proxy::simulated;
use crate::support::*;

const PROMPT: &str = "How does a guide's client pay for tokens?";
const STREAMED: usize = 3;
/// Non-streamed completions after the streams, on the same channel (the SDK's `create`
/// without `stream`, naming `max_tokens`: the price cap it pays up front).
const NON_STREAMED: usize = 2;

/// Runs a node script against `stack` with dev account `payer`; returns its JSON lines.
pub async fn run_node(stack: &Stack, script: &str, payer: usize, env: &[(&str, &str)]) -> Vec<Value> {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("{}/tests/js/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("BASE_URL", stack.server.url("/v1"))
        .env("RPC_URL", stack.devnet.rpc_url())
        .env("PRIVATE_KEY", stack.devnet.key_hex(payer))
        .env("CHAIN_ID", stack.devnet.chain_id.to_string())
        .env("MODEL", "tollgate-sim")
        .env("TIMEOUT_MS", "100000")
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub fn options() -> Options {
    Options {
        simulated: true,
        simulator: None,
        voucher_window: 16,
        pause_deadline: Duration::from_secs(30),
        keep_alive: Duration::from_secs(15),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_client_streams_on_one_v2_channel_and_the_payee_gains_the_priced_usage() {
    let stack = Stack::start(&config(""), options()).await.unwrap();
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap().clone();
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let (streamed, non_streamed) = (STREAMED.to_string(), NON_STREAMED.to_string());
    let env = [("PROMPT", PROMPT), ("STREAMED", &streamed), ("NON_STREAMED", &non_streamed)];
    let lines = run_node(&stack, "guide_client.mjs", 2, &env).await;

    let expected =
        simulated::completion(&ChatRequest::parse(chat("tollgate-sim", PROMPT).to_string().as_bytes()).unwrap());
    let completions: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "completion").collect();
    assert_eq!(completions.len(), STREAMED + NON_STREAMED, "{lines:?}");
    assert_eq!(completions.iter().filter(|c| c["stream"] == false).count(), NON_STREAMED, "{lines:?}");
    assert!(completions.iter().any(|c| c["via"] == "fetch") && completions.iter().any(|c| c["via"] == "openai"));
    let mut priced = 0;
    for completion in &completions {
        assert_eq!(completion["text"], expected.text, "content complete ({})", completion["via"]);
        let usage = &completion["usage"];
        assert_eq!(usage["prompt_tokens"], expected.prompt_tokens);
        assert_eq!(usage["completion_tokens"], expected.completion_tokens);
        priced += cost(&model.price, expected.prompt_tokens, expected.completion_tokens);
    }
    let done = lines.iter().find(|l| l["kind"] == "done").expect("a done line");
    let channels = done["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "one channel, one on-chain open: {channels:?}");
    let channel = channels[0].as_str().unwrap();
    assert_eq!(channel, channel.to_lowercase(), "mppx's ids are lowercase");

    let state = stack.proxy.layer.store().load(&ChannelId::new(channel)).await.unwrap().unwrap();
    assert_eq!(state.spent.get(), priced, "the store charged exactly the priced usage");
    assert!(state.accepted >= state.spent, "nothing delivered unpaid");

    // The plain fetch never closes: the proxy closes the idle channel, capturing exactly
    // what was delivered (v2 captures below the voucher) and refunding the rest.
    let report = stack.close_idle_v2().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "{report:?}");
    let state = stack.proxy.layer.store().load(&ChannelId::new(channel)).await.unwrap().unwrap();
    assert!(state.finalized);
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, priced, "payee gain = priced usage");
}

/// Issue 8, item 7: the mppx CLI (`npx mppx --rpc-url <chain> <proxy>/v1/chat/completions -J
/// <body>`) pays the proxy with a v2 session on the demo's chain run as Tempo's localnet
/// (chain id 1337, which `viem/tempo/chains` knows) and prints the completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mppx_cli_pays_the_proxy_on_the_localnet_chain_and_prints_the_completion() {
    let mut config = config("");
    config.demo.chain_id = 1337;
    let stack = Stack::start(&config, options()).await.unwrap();
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap().clone();
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();
    let state_dir = std::env::temp_dir().join(format!("tollgate-mppx-cli-{}", std::process::id()));
    let request = serde_json::json!({
        "model": "tollgate-sim", "messages": [{"role": "user", "content": PROMPT}], "stream": true
    });

    let (proxy, rpc) = (stack.server.url("/v1/chat/completions"), stack.devnet.client_rpc_url());
    let mut command = tokio::process::Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mppx_cli.mjs"))
        .args(["--rpc-url", &rpc, &proxy, "-J", &request.to_string()])
        .env("GUARD_URLS", format!("{proxy},{rpc}"))
        .env("MPPX_PRIVATE_KEY", stack.devnet.key_hex(4))
        .env("XDG_STATE_HOME", &state_dir)
        .env("HOME", &state_dir)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output()).await.expect("finished").unwrap();
    let _ = std::fs::remove_dir_all(&state_dir);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    let expected =
        simulated::completion(&ChatRequest::parse(chat("tollgate-sim", PROMPT).to_string().as_bytes()).unwrap());
    assert!(stdout.contains(&expected.text), "the CLI printed the completion:\n{stdout}\n{stderr}");
    let priced = cost(&model.price, expected.prompt_tokens, expected.completion_tokens);
    // The CLI leaves its channel open; the proxy closes it once idle, capturing exactly.
    let report = stack.close_idle_v2().await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "one channel, opened by the CLI: {report:?}");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, priced, "payee gain = priced usage");
    // mppx 0.11's CLI then rejects the stream's final payment-receipt ("receipt accepted
    // cumulative exceeds local voucher state", exit 75): its session registry hides a
    // channel while its status is "opening", so the in-band vouchers of the opening request
    // (here: the prompt and the windows after it) never reach the CLI's local state
    // (`applyCumulative` finds no entry). Paid and printed all the same; known and pinned.
    let known_cli_bug =
        output.status.code() == Some(75) && stdout.contains("receipt accepted cumulative exceeds local voucher state");
    assert!(output.status.success() || known_cli_bug, "the CLI failed otherwise:\n{stdout}\n{stderr}");
}
