//! DEV-ONLY: a JSON-RPC front for the demo's anvil that clients (mppx's CLI, its `tempo()`
//! client without a custom transport) can be pointed at.
//!
//! anvil 1.7.1 ignores a Tempo (0x76) transaction's `calls` when it estimates gas, so
//! `eth_fillTransaction` returns too little and a client's channel open (an approve plus
//! an open in one transaction) is dropped or reverts out of gas. This front forwards every
//! request to anvil unchanged and raises the `gas` that `eth_fillTransaction` returns to at
//! least [`MIN_GAS`] (what `tests/js/lib/local_chain.mjs` does inside the test clients).
//! A real Tempo node estimates these transactions itself: nothing like this runs in `serve`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::proxy::{Running, spawn};

/// The least gas a filled transaction gets.
pub const MIN_GAS: u64 = 400_000;

#[derive(Clone)]
struct Front {
    anvil: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// Serves the front for the anvil at `anvil` (its JSON-RPC URL) on 127.0.0.1.
pub async fn start(anvil: String) -> std::io::Result<Running> {
    let http = Client::builder(TokioExecutor::new()).build_http();
    let app = Router::new().route("/", post(forward)).with_state(Front { anvil, http });
    spawn(app, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

async fn forward(
    State(front): State<Front>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Bytes) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let request = http::Request::post(&front.anvil)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()));
    let answer = match request {
        Ok(request) => front.http.request(request).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let bytes = match answer {
        Ok(response) => match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return (StatusCode::BAD_GATEWAY, json, Bytes::from(e.to_string())),
        },
        Err(e) => return (StatusCode::BAD_GATEWAY, json, Bytes::from(e)),
    };
    (StatusCode::OK, json, raise_gas(&body, bytes))
}

/// `answer` with every `eth_fillTransaction` result's gas raised to [`MIN_GAS`].
fn raise_gas(request: &[u8], answer: Bytes) -> Bytes {
    let (Ok(request), Ok(mut parsed)) =
        (serde_json::from_slice::<Value>(request), serde_json::from_slice::<Value>(&answer))
    else {
        return answer;
    };
    let mut changed = false;
    match (&request, &mut parsed) {
        (Value::Array(requests), Value::Array(answers)) => {
            for (request, answer) in requests.iter().zip(answers.iter_mut()) {
                changed |= raise_one(request, answer);
            }
        }
        (request, answer) => changed = raise_one(request, answer),
    }
    if changed { Bytes::from(parsed.to_string()) } else { answer }
}

fn raise_one(request: &Value, answer: &mut Value) -> bool {
    if request["method"] != "eth_fillTransaction" {
        return false;
    }
    let Some(gas) = answer.pointer_mut("/result/tx/gas") else { return false };
    let current = gas.as_str().and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    if current.is_some_and(|g| g >= MIN_GAS) {
        return false;
    }
    *gas = Value::String(format!("{MIN_GAS:#x}"));
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_short_fill_is_raised() {
        use super::{Bytes, Value, raise_gas};
        let request = br#"{"jsonrpc":"2.0","id":1,"method":"eth_fillTransaction","params":[]}"#;
        let short = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"tx":{"gas":"0x1255c"}}}"#);
        let raised: Value = serde_json::from_slice(&raise_gas(request, short)).unwrap();
        assert_eq!(raised["result"]["tx"]["gas"], "0x61a80");
        let enough = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"tx":{"gas":"0x100000"}}}"#);
        assert_eq!(raise_gas(request, enough.clone()), enough);
        let other = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
        let chain = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":"0x539"}"#);
        assert_eq!(raise_gas(other, chain.clone()), chain);
    }
}
