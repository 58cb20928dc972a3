//! Issue 8, item 1: mppx's v1 plain client (`sessionLegacy` + plain fetch) can never answer
//! the proxy's in-band `payment-need-voucher` events. Its documented behaviour: it opens a
//! channel with one token's voucher, the proxy asks for the prompt in the stream, and when
//! no voucher comes within the first-voucher deadline (a few seconds, not the 60 s pause
//! deadline) the stream ends with a `payment-error` event saying why; nothing is charged
//! and nothing is held.

use std::time::Duration;

use serde_json::Value;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelStore};

use crate::demo::devnet::ESCROW;
use crate::demo::stack::{Options, Stack};
use crate::guide::run_node;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_plain_client_gets_a_payment_error_at_the_first_voucher_deadline_and_pays_nothing() {
    let options = Options {
        simulated: true,
        simulator: None,
        voucher_window: 16,
        // Long: only the first-voucher deadline may end this stream in time.
        pause_deadline: Duration::from_secs(90),
        keep_alive: Duration::from_secs(15),
    };
    let stack = Stack::start(&config(""), options).await.unwrap();
    let escrow = ESCROW.to_checksum(None);
    let lines = run_node(&stack, "v1_plain_client.mjs", 3, &[("ESCROW", &escrow)]).await;
    let result = lines.iter().find(|l| l["kind"] == "result").expect("a result line");
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["content"], "", "no content: the prompt was never paid for");
    let events = result["events"].as_array().unwrap();
    let named = |name: &str| events.iter().filter(|e| e["event"] == name).collect::<Vec<_>>();
    let need = named("payment-need-voucher");
    assert_eq!(need.len(), 1, "asked once: {events:?}");
    let error = named("payment-error");
    assert_eq!(error.len(), 1, "ends with a payment-error event: {events:?}");
    let problem: Value = serde_json::from_str(error[0]["data"].as_str().unwrap()).unwrap();
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("payment-need-voucher"), "the error says why: {problem}");

    let need: Value = serde_json::from_str(need[0]["data"].as_str().unwrap()).unwrap();
    let channel = need["channelId"].as_str().unwrap();
    let state = stack.proxy.layer.store().load(&ChannelId::new(channel)).await.unwrap().unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged, nothing held");
}
