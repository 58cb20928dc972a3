//! Discovery (issue 8, item 7): `GET /openapi.json` and `GET /llms.txt`, generated from the
//! catalog and served free, and the real `mppx validate` (mppx 0.11's CLI) run against the
//! proxy on the local chain.
//!
//! `mppx validate` ends with a payment step that, for any Tempo chain but mainnet, funds a
//! fresh wallet from the public Moderato faucet. The CLI has no flag to skip it, so the CLI
//! runs behind a network guard (tests/js/lib/network_guard_preload.mjs: only the proxy may be
//! contacted) and the test asserts that this step, and only it, fails.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tollgate::wire::mpp::Challenge;

use crate::demo::stack::{Options, Stack};
use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Two models besides nothing simulated: a keyless upstream serves both.
const TWO_MODELS: &str = r#"
[upstreams.local]
base_url = "http://127.0.0.1:9/v1"

[[models]]
id = "small"
providers = [{ upstream = "local", input_per_1m = 0.15, output_per_1m = 0.60 }]

[[models]]
id = "large"
providers = [{ upstream = "local", input_per_1m = 2.50, output_per_1m = 10.00 }]
"#;

async fn get(url: &str) -> (u16, String, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::get(url).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let response = client.request(request).await.expect("the proxy answers");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn scenario_07_discovery_documents_are_free_and_price_every_model_as_its_402_does() {
    let (server, _proxy) = offline(&config(TWO_MODELS)).await;

    let (status, content_type, text) = get(&server.url("/openapi.json")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"), "{text}");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["x-service-info"]["docs"]["llms"], "/llms.txt");

    let operation = &doc["paths"]["/v1/chat/completions"]["post"];
    assert!(operation["responses"]["402"].is_object(), "a paid operation documents its 402");
    let offers = operation["x-payment-info"]["offers"].as_array().expect("offers");
    assert!(operation["x-payment-info"].get("amount").is_none(), "offers and flat fields are not mixed");
    assert_eq!(offers.len(), 2, "one offer per model");

    // Each offer is what the 402 of a request for its model says.
    for (offer, model) in offers.iter().zip(["small", "large"]) {
        let (status, headers, _) = post_raw(&server.url(""), chat(model, "hi").to_string().into_bytes()).await;
        assert_eq!(status, 402);
        let challenge = Challenge::parse_all(headers.get_all(http::header::WWW_AUTHENTICATE)).unwrap().remove(0);
        let request = challenge.decode_request().unwrap();
        assert_eq!(offer["amount"], request["amount"], "{model}");
        assert_eq!(offer["currency"], request["currency"], "{model}");
        assert_eq!((offer["method"].as_str(), offer["intent"].as_str()), (Some("tempo"), Some("session")));
        assert!(offer["description"].as_str().unwrap().starts_with(&format!("{model}: $")), "{offer}");
    }

    // The example body is one the proxy takes: unpaid, it gets the 402, not a 400.
    let example = &operation["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(example["model"], "small");
    let (status, _, body) = post_raw(&server.url(""), example.to_string().into_bytes()).await;
    assert_eq!(status, 402, "{body}");

    let (status, content_type, text) = get(&server.url("/llms.txt")).await;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    assert!(
        text.starts_with("# ") && text.contains("`small`: $0.165 per 1M input tokens, $0.66 per 1M output"),
        "{text}"
    );
    assert_eq!(get(&server.url("/")).await.2, text, "the home page is the same text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_07_mppx_validate_discovery_and_challenge_checks_pass_only_the_faucet_payment_fails() {
    let mut config = config("");
    config.server.realm = "127.0.0.1".into(); // the host mppx validate reaches it at
    let stack = Stack::start(&config, Options::demo(&config)).await.unwrap();
    let base = stack.server.url("");
    let home = std::env::temp_dir().join(format!("tollgate-mppx-validate-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();

    let guard = Path::new(ROOT).join("tests/js/lib/network_guard_preload.mjs");
    let output = tokio::process::Command::new("node")
        .arg(format!("--import=file://{}", guard.display()))
        .arg(Path::new(ROOT).join("node_modules/mppx/dist/bin.js"))
        .args(["validate", &base, "--output-json"])
        .env("ALLOWED_URLS", &base)
        // No wallet, config or RPC of the machine's: the CLI's own (ephemeral) path only.
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env_remove("MPPX_ACCOUNT")
        .env_remove("MPPX_PRIVATE_KEY")
        .env_remove("MPPX_CONFIG")
        .env_remove("MPPX_RPC_URL")
        .env_remove("RPC_URL")
        .current_dir(&home)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.expect("mppx validate finished").unwrap();
    let _ = std::fs::remove_dir_all(&home);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));

    let labels = |results: &Value, severity: &str| -> Vec<String> {
        let results = results.as_array().map(Vec::as_slice).unwrap_or_default();
        results
            .iter()
            .filter(|r| r["severity"] == severity)
            .map(|r| r["label"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let discovery = &report["discovery"]["checks"];
    assert_eq!(report["discovery"]["found"], true, "{report:#}");
    assert_eq!(report["discovery"]["valid"], true, "{report:#}");
    let passed = labels(discovery, "pass");
    for label in [
        "llms.txt found and nonempty",
        "Document found and parseable",
        "Valid OpenAPI structure",
        "Paid endpoints found",
    ] {
        assert!(passed.iter().any(|p| p == label), "discovery check {label:?} did not pass: {discovery:#}");
    }
    assert_eq!(passed.len(), discovery.as_array().unwrap().len(), "every discovery check passes: {discovery:#}");

    let endpoints = report["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1, "{report:#}");
    let endpoint = &endpoints[0];
    assert_eq!((endpoint["method"].as_str(), endpoint["path"].as_str()), (Some("POST"), Some("/v1/chat/completions")));
    for phase in ["challenge", "errorHandling"] {
        let results = &endpoint[phase];
        assert!(!results.as_array().unwrap().is_empty(), "{phase} ran: {report:#}");
        assert_eq!(
            labels(results, "pass").len(),
            results.as_array().unwrap().len(),
            "every {phase} check passes: {results:#}"
        );
    }
    let challenge = labels(&endpoint["challenge"], "pass");
    for label in [
        "Returns 402 without credentials",
        "Challenge parseable",
        "Valid recipient address",
        "Amount is valid integer string",
    ] {
        assert!(challenge.iter().any(|p| p.ends_with(label)), "challenge check {label:?}: {challenge:?}");
    }

    // The payment step: the faucet wallet cannot be funded (the guard refuses the public
    // Moderato RPC), and that is the only failure of the whole run.
    let payment = &endpoint["payment"];
    assert_eq!(labels(payment, "fail"), ["Payment: auto-provision wallet"], "{payment:#}");
    assert_eq!(report["summary"]["failed"], 1, "{report:#}");
    assert_eq!(report["summary"]["warnings"], 0, "{report:#}");
    assert!(!output.status.success(), "the CLI exits 1 on the payment failure");
}
