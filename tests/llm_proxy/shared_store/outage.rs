//! The store cut off: mid-stream, at admission, and at startup.

use std::time::Duration;

use http::{StatusCode, header};
use tollgate::store::ChannelStore;

use super::backend::{Backend, connect, through};
use super::forwarder::Forwarder;
use super::front::Front;
use super::*;
use crate::demo::stack::{Stack, close_idle_v2};
use crate::support::{chat, config};

const LEASE_SECS: u64 = 2;

/// A (in process) reaches the store through a forwarder, B directly. The store goes away
/// while a stream on A is out: the stream ends, and when the store is back nothing is
/// counted twice: the next stream is served and charged its usage, the broken one at most
/// what it delivered, and B's close captures exactly what the store charged.
async fn a_store_outage_mid_stream_ends_the_stream_and_counts_nothing_twice(backend: Backend) {
    let Some(store) = store_for(backend, "outage", Some(LEASE_SECS)).await else { return };
    let forwarder = Forwarder::start(backend.addr()).await;
    let cut_off = StoreConfig { url: through(&store.url, &forwarder.addr.to_string()), ..store.clone() };
    let (config, options) = (config(""), options());
    let stack = Stack::start_on(&config, options.clone(), connect(&cut_off).await).await.unwrap();
    let (b, _b_server) = stack.instance(&config, &options, connect(&store).await).await.unwrap();
    let front = Front::start(vec![stack.server.url("")], Box::new(|_| 0)).await;
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();
    let dir = std::env::temp_dir().join(format!("llm_proxy_outage_{backend:?}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pause = dir.join("go").to_string_lossy().into_owned();

    let (client, mut lines) = client(&stack, &front, 5, &[("SEQUENTIAL", "3"), ("PAUSE_FILE", &pause)]);
    let first = next_line(&mut lines).await.expect("the opening completion");
    assert_complete(&first);

    let before = front.bytes_from(0);
    std::fs::write(format!("{pause}.1"), b"").unwrap();
    let started = tokio::time::Instant::now();
    while front.bytes_from(0) < before + super::crash::CUT_AFTER_BYTES {
        assert!(started.elapsed() < BOUND, "the second stream never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    forwarder.cut();
    let broken = next_line(&mut lines).await.expect("the stream ended");
    assert!(broken["usage"].is_null(), "the stream could not finish without its store: {broken}");
    let received = broken["text"].as_str().unwrap();
    assert!(expected("sequential", 1).text.starts_with(received), "a clean prefix: {broken}");

    // The store comes back; A's hold of the broken stream lapses (or was released).
    forwarder.restore();
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    std::fs::write(format!("{pause}.2"), b"").unwrap();
    let third = next_line(&mut lines).await.expect("the completion after the outage");
    assert_complete(&third);
    let rest = finish(client, &mut lines).await;
    let channel = channel_of(rest.last().expect("a done line"));

    let state = b.layer.store().load(&channel).await.unwrap().unwrap();
    assert!(state.reserved.is_zero(), "{state:?}");
    let (whole, cut) = (priced(&stack, &first) + priced(&stack, &third), at_most(&stack, &broken, "sequential"));
    assert!(state.spent.get() >= whole, "the whole streams are charged: {state:?}, {whole}");
    assert!(state.spent.get() <= whole + cut, "nothing counted twice: {state:?}, {whole} + {cut}");

    let report = close_idle_v2(&b).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "{report:?}");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, state.spent.get(), "the close captured what the store charged");
    let _ = std::fs::remove_dir_all(&dir);
}
on_each_store!(a_store_outage_mid_stream_ends_the_stream_and_counts_nothing_twice);

/// With the store cut off, a paid request and a voucher get 503 with no challenge (a 402
/// would make the client pay again for nothing); when the store is back, the channel
/// streams again.
async fn a_store_outage_at_admission_answers_503_without_a_challenge(backend: Backend) {
    let Some(store) = store_for(backend, "admission", None).await else { return };
    let forwarder = Forwarder::start(backend.addr()).await;
    let cut_off = StoreConfig { url: through(&store.url, &forwarder.addr.to_string()), ..store.clone() };
    let stack = Stack::start_on(&config(""), options(), connect(&cut_off).await).await.unwrap();
    let request = chat("tollgate-sim", "Is the store there?");
    let mut client = stack.client(6);
    stack.open(&mut client, &request, 1_000_000).await.unwrap();
    let (streamed, _) = crate::support::stream_all(&mut client, &request).await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(streamed.usage.is_some(), "served before the outage: {streamed:?}");

    forwarder.cut();
    // A voucher raising the channel (by more than the least step, less than it may run
    // ahead): valid, but it cannot be accepted without the store.
    let voucher = client.voucher(client.cumulative() + 100).await;
    let refused = voucher.expect_err("a voucher cannot be accepted without the store");
    assert!(refused.contains("503"), "{refused}");
    // The stream's request carries that voucher again: admission needs the store too.
    let (streamed, events) = crate::support::stream_all(&mut client, &request).await;
    assert_eq!(streamed.status, StatusCode::SERVICE_UNAVAILABLE, "{streamed:?}");
    assert!(!streamed.headers.contains_key(header::WWW_AUTHENTICATE), "no challenge: {:?}", streamed.headers);
    assert!(events.is_empty() && streamed.text.is_empty(), "nothing delivered");

    forwarder.restore();
    let mut served = None;
    for _ in 0..20 {
        let (streamed, _) = crate::support::stream_all(&mut client, &request).await;
        if streamed.status == StatusCode::OK {
            served = Some(streamed);
            break;
        }
        assert_eq!(streamed.status, StatusCode::SERVICE_UNAVAILABLE, "{streamed:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = served.expect("the channel streams again once the store is back");
    assert!(served.usage.is_some() && served.error.is_none(), "{served:?}");
}
on_each_store!(a_store_outage_at_admission_answers_503_without_a_challenge);

/// `serve` with a store it cannot reach exits at once with an error naming the store, and
/// never listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_with_a_clear_error_when_its_store_is_unreachable() {
    let closed = crate::support::closed_port().await;
    let dir = std::env::temp_dir().join(format!("llm_proxy_unreachable_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = tokio::task::spawn_blocking(crate::hardening::example_binary).await.unwrap();
    for url in [format!("redis://{closed}"), format!("postgres://postgres@{closed}/test")] {
        let path = dir.join("llm_proxy.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nrealm = \"llm-proxy.test\"\n\
             [payment]\nrpc_url = \"http://127.0.0.1:9\"\nchain_id = 4242\n\
             escrow = \"0x00000000000000000000000000000000e5c70001\"\npayee_key_env = \"LLM_PROXY_TEST_PAYEE\"\n\
             secret_env = \"LLM_PROXY_TEST_SECRET\"\nsuggested_deposit = 1.0\n\
             [simulated]\nmodel = \"tollgate-sim\"\ninput_per_1m = 2.5\noutput_per_1m = 10.0\n\
             [store]\nurl = \"{url}\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let output = tokio::process::Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&path)
            .env("LLM_PROXY_TEST_PAYEE", alloy::hex::encode_prefixed([7u8; 32]))
            .env("LLM_PROXY_TEST_SECRET", "llm-proxy-test-secret-of-32-bytes!!")
            .kill_on_drop(true)
            .output();
        let output =
            tokio::time::timeout(Duration::from_secs(30), output).await.expect("serve gave up in time").unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(stderr.contains("[store]") && !stderr.contains("listening"), "{url}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
