//! Issue 10: several proxy instances on one shared store (Redis, PostgreSQL), one chain,
//! the Tempo guide's mppx client (`Mppx.create` + plain `fetch`, tests/js/
//! shared_store_client.mjs) behind a load balancer on 127.0.0.1 ([`front`]).
//!
//! - [`two_instances`]: a stream on A pauses, its voucher goes to B, the stream resumes on
//!   A; concurrent streams over both instances on one channel never overspend; a close on B
//!   settles exactly the priced usage on chain.
//! - [`crash`]: an instance (the example's binary, a child process) killed with SIGKILL
//!   mid-stream and restarted on the same store: its accepted vouchers settle, its dead
//!   hold is reclaimed after its lease, the payer pays at most what it received.
//! - [`outage`]: the store cut off mid-stream ([`forwarder`]) and at admission.
//!
//! Each test runs on its own Redis prefix or PostgreSQL schema; each backend's tests need
//! its cargo feature (ignored without it). An unreachable server skips the test, or fails
//! it under `CI=true`.

pub mod backend;
mod config;
pub mod crash;
pub mod forwarder;
pub mod front;
pub mod outage;
pub mod two_instances;

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::demo::stack::{Options, Stack};
use crate::proxy::chat::ChatRequest;
use crate::proxy::simulated::Simulator;
use crate::proxy::store::StoreConfig;
use backend::Backend;
use front::Front;

/// Generates `$name::redis` and `$name::postgres`, each running `$name(backend)` (ignored
/// without its cargo feature).
macro_rules! on_each_store {
    ($name:ident) => {
        mod $name {
            use super::super::backend::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(feature = "redis"), ignore = "needs the `redis` feature")]
            async fn redis() {
                super::$name(Backend::Redis).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(feature = "postgres"), ignore = "needs the `postgres` feature")]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    };
}
pub(crate) use on_each_store;

/// The tests' whole-run bound: a stuck step fails the test instead of hanging it.
pub const BOUND: Duration = Duration::from_secs(90);

/// The store of test `test` on `backend` with `lease` seconds, or `None` (skip) when the
/// server is unreachable outside CI.
pub async fn store_for(backend: Backend, test: &str, lease: Option<u64>) -> Option<StoreConfig> {
    if !backend.reachable().await {
        return None;
    }
    Some(backend.config(&backend.url(), test, lease))
}

/// A paced model and a small voucher window: streams pause for vouchers several times.
pub fn options() -> Options {
    Options {
        simulated: true,
        simulator: Some(Simulator { delay: Duration::from_millis(10), fault: None }),
        voucher_window: 16,
        pause_deadline: Duration::from_secs(20),
        keep_alive: Duration::from_secs(5),
    }
}

/// The guide's client (tests/js/shared_store_client.mjs) paying through `front` from dev
/// account `payer`; stdout is read line by line.
pub fn client(
    stack: &Stack,
    front: &Front,
    payer: usize,
    env: &[(&str, &str)],
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/shared_store_client.mjs"))
        .env("BASE_URL", front.url("/v1"))
        .env("RPC_URL", stack.devnet.rpc_url())
        .env("PRIVATE_KEY", stack.devnet.key_hex(payer))
        .env("CHAIN_ID", stack.devnet.chain_id.to_string())
        .env("MODEL", "tollgate-sim")
        .env("TIMEOUT_MS", "80000")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("node runs");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The client's next JSON line (skipping anything else), or `None` at its end.
pub async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<Value> {
    loop {
        let line = tokio::time::timeout(BOUND, lines.next_line()).await.expect("the client answered").ok()??;
        if let Ok(value) = serde_json::from_str::<Value>(&line) {
            return Some(value);
        }
    }
}

/// Every remaining JSON line, then the client's exit (it must succeed).
pub async fn finish(mut child: Child, lines: &mut Lines<BufReader<ChildStdout>>) -> Vec<Value> {
    let mut rest = Vec::new();
    while let Some(line) = next_line(lines).await {
        rest.push(line);
    }
    let status = tokio::time::timeout(BOUND, child.wait()).await.expect("the client ended").unwrap();
    assert!(status.success(), "the client failed: {rest:?}");
    rest
}

/// The simulated model's answer to the client's completion `index` of `phase`.
pub fn expected(phase: &str, index: u64) -> crate::proxy::simulated::Completion {
    let prompt = format!("Say hello through two paid proxies. ({phase} {index})");
    let request = crate::support::chat("tollgate-sim", &prompt);
    crate::proxy::simulated::completion(&ChatRequest::parse(request.to_string().as_bytes()).unwrap())
}

/// What `completion` (a client line with a `usage`) costs at the simulated model's price.
pub fn priced(stack: &Stack, completion: &Value) -> u128 {
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap();
    let usage = &completion["usage"];
    let tokens = |key: &str| usage[key].as_u64().unwrap_or_else(|| panic!("no {key} in {completion}"));
    crate::support::cost(&model.price, tokens("prompt_tokens"), tokens("completion_tokens"))
}

/// The most a broken `completion` (a client line) may cost: its prompt and one output token
/// per byte of content it received.
pub fn at_most(stack: &Stack, completion: &Value, phase: &str) -> u128 {
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap();
    let prompt = expected(phase, completion["index"].as_u64().unwrap()).prompt_tokens;
    let bytes = completion["text"].as_str().unwrap().len() as u64;
    crate::support::cost(&model.price, prompt, bytes)
}

/// Asserts `completion` (a client line) is the whole simulated answer, usage included.
pub fn assert_complete(completion: &Value) {
    let phase = completion["phase"].as_str().unwrap();
    let expected = expected(phase, completion["index"].as_u64().unwrap());
    assert!(completion["error"].is_null() && completion["aborted"] == false, "{completion}");
    assert_eq!(completion["text"], expected.text, "content complete: {completion}");
    assert_eq!(completion["usage"]["completion_tokens"], expected.completion_tokens, "{completion}");
    assert_eq!(completion["usage"]["prompt_tokens"], expected.prompt_tokens, "{completion}");
}

/// The single channel the client reports in its `done` line.
pub fn channel_of(done: &Value) -> tollgate::store::ChannelId {
    assert_eq!(done["kind"], "done", "{done}");
    let channels = done["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "one channel: {done}");
    tollgate::store::ChannelId::new(channels[0].as_str().unwrap())
}
