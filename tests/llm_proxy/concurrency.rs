//! Issue 8, item 6, with the real client: 8 concurrent mppx SSE streams on one channel
//! (tests/js/mppx_concurrent.mjs, the v1 manager's `.sse()`) all complete; a voucher signed
//! for one stream landing after a higher one is answered 2xx, never a 402 that kills its
//! stream; nothing is overspent, in the store or on chain.

use std::time::Duration;

use serde_json::Value;
use tollgate::store::{ChannelId, ChannelStore};

use crate::demo::devnet::ESCROW;
use crate::demo::stack::{Options, Stack};
use crate::proxy::simulated::Simulator;
use crate::support::*;

const STREAMS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_06_eight_concurrent_mppx_streams_on_one_channel_all_complete_and_nothing_is_overspent() {
    // A small window and a paced model: the streams pause often and interleave, so their
    // vouchers race.
    let options = Options {
        simulated: true,
        simulator: Some(Simulator { delay: Duration::from_millis(5), fault: None }),
        voucher_window: 8,
        pause_deadline: Duration::from_secs(30),
        keep_alive: Duration::from_secs(15),
    };
    let stack = Stack::start(&config(""), options).await.unwrap();
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mppx_concurrent.mjs"))
        .env("URL", stack.server.url("/v1/chat/completions"))
        .env("RPC_URL", stack.devnet.rpc_url())
        .env("PRIVATE_KEY", stack.devnet.key_hex(2))
        .env("CHAIN_ID", stack.devnet.chain_id.to_string())
        .env("ESCROW", ESCROW.to_checksum(None))
        .env("MODEL", "tollgate-sim")
        .env("STREAMS", STREAMS.to_string())
        .env("TIMEOUT_MS", "150000")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), output).await.expect("the client finished").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let streams: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "stream").collect();
    let vouchers = lines.iter().find(|l| l["kind"] == "vouchers").map(|l| l["statuses"].clone());
    assert!(output.status.success(), "mppx_concurrent failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(streams.len(), STREAMS + 1, "the opening stream and {STREAMS} concurrent ones");
    for s in &streams {
        assert!(s["done"] == true && s["error"].is_null() && !s["usage"].is_null() && !s["receipt"].is_null(), "{s}");
    }
    let statuses = vouchers.expect("voucher statuses");
    let statuses = statuses.as_array().unwrap();
    assert!(!statuses.is_empty(), "the streams paused for vouchers");
    assert!(statuses.iter().all(|s| s["status"].as_u64().is_some_and(|s| (200..300).contains(&s))), "{statuses:?}");

    let channel = lines.iter().find(|l| l["kind"] == "done").unwrap()["channelId"].as_str().unwrap().to_owned();
    let state = stack.proxy.layer.store().load(&ChannelId::new(&channel)).await.unwrap().unwrap();
    assert!(state.finalized, "closed");
    assert!(state.spent <= state.accepted, "spent {} ≤ accepted {}", state.spent, state.accepted);
    assert!(state.reserved.is_zero(), "every reservation released");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    eprintln!(
        "{} voucher POSTs, spent {}, accepted {}, payee gain {gain}",
        statuses.len(),
        state.spent,
        state.accepted
    );
    assert!(gain <= state.spent.get(), "the payee gained {gain}, more than the {} delivered", state.spent);
    assert!(gain > 0);
}
