//! An instance killed with SIGKILL mid-stream (the example's binary, a child process) and
//! restarted on the same store.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tollgate::store::ChannelStore;

use super::backend::{Backend, connect};
use super::front::Front;
use super::*;
use crate::demo::devnet::ESCROW;
use crate::demo::stack::{Stack, close_idle_v2};
use crate::proxy::store::StoreConfig;
use crate::support::config;

/// The lease of the instances' holds, short so the dead one lapses within the test.
const LEASE_SECS: u64 = 2;

/// The SSE bytes streamed before the cut: about a third of a simulated answer.
pub const CUT_AFTER_BYTES: u64 = 8_000;

/// `llm_proxy serve` as a child process on `store`, paid as `stack`'s proxy is (same chain,
/// payee, challenge secret and realm), the simulated model at 25 tokens/s; and its URL.
async fn serve_child(stack: &Stack, store: &StoreConfig, dir: &std::path::Path) -> (Child, String) {
    let quoted = |text: &str| format!("{text:?}");
    let mut store_toml = format!("url = {}\nlease = {}\n", quoted(&store.url), store.lease.unwrap_or(30));
    if let Some(prefix) = &store.prefix {
        store_toml += &format!("prefix = {}\n", quoted(prefix));
    }
    if let Some(schema) = &store.schema {
        store_toml += &format!("schema = {}\n", quoted(schema));
    }
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
realm = "llm-proxy.test"
service_fee_percent = 10
[payment]
rpc_url = "{rpc}"
chain_id = {chain}
escrow = "{escrow}"
payee_key_env = "LLM_PROXY_TEST_PAYEE"
secret_env = "LLM_PROXY_TEST_SECRET"
suggested_deposit = 1.0
voucher_window_tokens = 16
pause_deadline_secs = 20
settle_every_secs = 0
close_idle_secs = 3600
[simulated]
model = "tollgate-sim"
input_per_1m = 2.50
output_per_1m = 10.00
tokens_per_second = 25
[store]
{store_toml}"#,
        rpc = stack.devnet.rpc_url(),
        chain = stack.devnet.chain_id,
        escrow = ESCROW.to_checksum(None),
    );
    let path = dir.join("llm_proxy.toml");
    std::fs::write(&path, text).unwrap();
    let binary = tokio::task::spawn_blocking(crate::hardening::example_binary).await.unwrap();
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--config"])
        .arg(&path)
        .env("LLM_PROXY_TEST_PAYEE", alloy::hex::encode_prefixed(stack.payee.to_bytes()))
        .env("LLM_PROXY_TEST_SECRET", String::from_utf8(stack.settings.secret.clone()).unwrap())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(BOUND, lines.next_line()).await.expect("the server starts in time").unwrap();
        let Some(line) = line else { panic!("the server ended before listening: {said:?}") };
        if let Some(rest) = line.strip_prefix("llm_proxy listening on http://") {
            break rest.split(',').next().unwrap().to_owned();
        }
        said.push(line);
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"))
}

/// The channel opens on B (in process); the second stream runs on A (a child process) and
/// A is SIGKILLed mid-stream; A restarts on the same store and serves the third stream on
/// the same channel once the dead hold's lease has run out; B closes the channel: the
/// vouchers A accepted before dying are there, the payee gains exactly what the store
/// charged, and that is at most what the client received.
async fn an_instance_killed_mid_stream_restarts_on_the_same_store(backend: Backend) {
    let Some(store) = store_for(backend, "crash", Some(LEASE_SECS)).await else { return };
    let dir = std::env::temp_dir().join(format!("llm_proxy_crash_{backend:?}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pause = dir.join("go");
    let (config, options) = (config(""), options());
    let stack = Stack::start_on(&config, options.clone(), connect(&store).await).await.unwrap();
    let b = &stack.proxy;
    let (mut a, a_url) = serve_child(&stack, &store, &dir).await;
    // Target 0 is A, target 1 is B; everything goes to B until the channel is open.
    let front = Front::start(vec![a_url, stack.server.url("")], Box::new(|_| 1)).await;
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let pause_env = pause.to_string_lossy().into_owned();
    let (client, mut lines) = client(&stack, &front, 4, &[("SEQUENTIAL", "3"), ("PAUSE_FILE", &pause_env)]);
    let first = next_line(&mut lines).await.expect("the opening completion");
    assert_complete(&first);

    // The second stream, and its vouchers, on A; A dies once about a third of the answer
    // is out.
    front.reroute(Box::new(|_| 0));
    std::fs::write(format!("{pause_env}.1"), b"").unwrap();
    let started = tokio::time::Instant::now();
    while front.bytes_from(0) < CUT_AFTER_BYTES {
        assert!(started.elapsed() < BOUND, "the stream on A never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    let killed = next_line(&mut lines).await.expect("the killed completion's line");
    assert!(killed["usage"].is_null(), "the stream on A was cut: {killed}");
    let expected_text = expected("sequential", 1).text;
    let received = killed["text"].as_str().unwrap();
    assert!(!received.is_empty() && expected_text.starts_with(received), "a clean prefix: {killed}");
    let channel = tollgate::store::ChannelId::new(killed["channel"].as_str().expect("the client names its channel"));
    let dead = b.layer.store().load(&channel).await.unwrap().unwrap();
    assert!(!dead.reserved.is_zero(), "A's hold outlives A until its lease runs out: {dead:?}");

    // The dead hold lapses after its lease; A restarts on the same store meanwhile.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let (_a, a_url) = serve_child(&stack, &store, &dir).await;
    front.retarget(0, a_url);
    std::fs::write(format!("{pause_env}.2"), b"").unwrap();
    let third = next_line(&mut lines).await.expect("the completion on the restarted A");
    assert_complete(&third);
    let rest = finish(client, &mut lines).await;
    assert_eq!(channel_of(rest.last().expect("a done line")), channel);

    let state = b.layer.store().load(&channel).await.unwrap().unwrap();
    assert!(state.reserved.is_zero(), "the dead hold was reclaimed: {state:?}");
    let (whole, broken) = (priced(&stack, &first) + priced(&stack, &third), at_most(&stack, &killed, "sequential"));
    assert!(state.spent.get() >= whole, "the whole streams are charged: {state:?}, {whole}");
    assert!(state.spent.get() <= whole + broken, "at most what was received: {state:?}, {whole} + {broken}");
    assert!(state.spent <= state.accepted, "{state:?}");

    let report = close_idle_v2(b).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "{report:?}");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, state.spent.get(), "the close captured what the store charged, vouchers A took included");
    let _ = std::fs::remove_dir_all(&dir);
}
on_each_store!(an_instance_killed_mid_stream_restarts_on_the_same_store);
