//! Issue 9: the proxy offers its sessions AND a whole-request Tempo charge on
//! `/v1/chat/completions`, in one 402. mppx's charge client (`Mppx.create` with
//! `tempo.charge`, plain fetch) pays a completion at its maximum price, settled at once;
//! the handler reads the payment context and names the method it was paid with.

use serde_json::{Value, json};
use tollgate::wire::mpp::Challenge;

use crate::demo::stack::Stack;
use crate::guide::{options, run_node};
use crate::support::*;

const PROMPT: &str = "Pay me once, no channel.";
const MAX_TOKENS: u64 = 64;

fn capped(stream: bool) -> Value {
    let mut request = chat("tollgate-sim", PROMPT);
    request["max_tokens"] = json!(MAX_TOKENS);
    request["stream"] = json!(stream);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_402_offers_sessions_and_a_whole_request_charge_that_mppx_pays_at_once() {
    let stack = Stack::start(&config(""), options()).await.unwrap();
    let model = stack.proxy.catalog.get("tollgate-sim").unwrap().clone();
    let request = capped(true);
    let maximum = cost(&model.price, prompt_tokens(&request), MAX_TOKENS);

    let (status, headers, _) = post_raw(&stack.server.url(""), request.to_string().into_bytes()).await;
    assert_eq!(status, 402);
    let offered = Challenge::parse_all(headers.get_all(http::header::WWW_AUTHENTICATE)).unwrap();
    let pairs: Vec<_> = offered.iter().map(|c| format!("{}/{}", c.method, c.intent)).collect();
    assert_eq!(pairs, ["tempo/session", "tempo/session", "tempo/charge"], "v2, v1, then the charge");
    assert_eq!(offered[2].decode_request().unwrap()["amount"], maximum.to_string(), "prompt bound + output cap");

    // A stream without an output cap has no maximum: the sessions alone.
    let (_, headers, _) = post_raw(&stack.server.url(""), {
        let mut uncapped = chat("tollgate-sim", PROMPT);
        uncapped["stream"] = json!(true);
        uncapped.to_string().into_bytes()
    })
    .await;
    let offered = Challenge::parse_all(headers.get_all(http::header::WWW_AUTHENTICATE)).unwrap();
    assert!(offered.iter().all(|c| c.intent == "session"), "{offered:?}");

    let payee = stack.payee.address();
    let before = stack.devnet.balance(payee).await.unwrap();
    let url = stack.server.url("/v1/chat/completions");
    let body = request.to_string();
    let env = [("URL", url.as_str()), ("REQUEST_METHOD", "POST"), ("REQUEST_BODY", body.as_str())];
    let lines = run_node(&stack, "mppx_charge_client.mjs", 5, &env).await;
    let response = lines.iter().find(|l| l["kind"] == "response").expect("a response line");
    assert_eq!(response["status"], 200, "{lines:?}");
    assert_eq!(response["paidWith"], "tempo/charge", "the handler read its payment context");
    assert!(response["body"].as_str().unwrap().contains("data: [DONE]"), "the whole stream: {response}");
    let gained = stack.devnet.balance(payee).await.unwrap() - before;
    assert_eq!(gained, maximum, "the whole request at its maximum, settled at once");
}
