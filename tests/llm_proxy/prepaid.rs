//! The proxy with `[prepaid]`: a signed-in payer's session token as the openai SDK's
//! `apiKey`, streamed and non-streamed completions debited from the balance, each exactly
//! its priced usage, with usage records that add up to the debit.

use std::net::SocketAddr;
use std::time::Duration;

use alloy::primitives::Address;
use serde_json::Value;
use tollgate::Amount;
use tollgate::method::prepaid::Prepaid;
use tollgate::store::ChannelStore;

use crate::proxy::{Proxy, spawn};
use crate::support::{config, cost, settings};

const MODEL: &str = "tollgate-sim";
const DEPOSIT: u128 = 1_000_000;

#[tokio::test]
async fn the_openai_sdk_streams_and_non_streams_on_a_prepaid_balance() {
    let config = config(
        "[prepaid]\ndomain = \"llm-proxy.test\"\nuri = \"https://llm-proxy.test/v1/sign-in\"\nchain_ids = [8453]\n",
    );
    let settings = crate::proxy::payment::PaymentSettings { realm: config.server.realm.clone(), ..settings() };
    let proxy = Proxy::build(&config, &settings, true, None).expect("proxy builds");
    let server = spawn(proxy.router.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let store = proxy.layer.store().clone();
    let payer = Address::repeat_byte(0x5a);
    store.credit(&Prepaid::account(payer), Amount::new(DEPOSIT), "deposit:sdk").await.unwrap();
    let prepaid = proxy.layer.method().4.clone().expect("[prepaid] configured");
    let token = prepaid.tokens().issue(payer).token;

    let output = tokio::process::Command::new("node")
        .arg("tests/js/openai_prepaid_client.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BASE_URL", server.url("/v1"))
        .env("TOKEN", &token)
        .env("MODEL", MODEL)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let (stream, completion) = (&lines[0], &lines[1]);
    assert_eq!((&stream["kind"], &completion["kind"]), (&Value::from("stream"), &Value::from("completion")));
    assert!(!stream["text"].as_str().unwrap().is_empty(), "{stream}");
    assert!(!completion["content"].as_str().unwrap().is_empty(), "{completion}");
    assert!(completion["usage"]["cost"].is_number(), "{completion}");
    assert!(completion["cost"].is_string(), "an x-cost header: {completion}");

    // Each request cost its priced usage; the balance dropped by exactly their sum.
    let price = proxy.catalog.get(MODEL).unwrap().price.clone();
    let priced = |usage: &Value| {
        cost(&price, usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap())
    };
    let expected = priced(&stream["usage"]) + priced(&completion["usage"]);
    let account = Prepaid::account(payer);
    let balance = store.load(&account).await.unwrap().unwrap();
    assert_eq!((balance.spent, balance.reserved), (Amount::new(expected), Amount::ZERO), "{lines:?}");
    let records = store.usage(&account, 10).await.unwrap();
    let recorded: u128 = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r).unwrap()["cost"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!((records.len(), recorded), (2, expected));
    for record in &records {
        let record: Value = serde_json::from_slice(record).unwrap();
        assert_eq!((&record["model"], &record["path"]), (&Value::from(MODEL), &Value::from("/v1/chat/completions")));
    }
}
