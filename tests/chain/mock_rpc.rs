//! A scripted JSON-RPC node on 127.0.0.1 that counts the calls it gets: enough of
//! `eth_*` for `RpcChain::broadcast` and `receipt`, with transactions that mine only when
//! the test says so.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use alloy::primitives::{Address, B256, Bytes, keccak256};
use axum::extract::State as AxumState;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// What the node does and has seen.
#[derive(Debug, Default)]
pub struct State {
    /// Calls per method.
    pub calls: HashMap<String, usize>,
    /// What `eth_getTransactionCount(_, "pending")` answers.
    pub pending_nonce: u64,
    /// Mined transactions: hash → sender.
    pub mined: HashMap<B256, Address>,
    /// Transactions the node accepted into its pool.
    pub pool: Vec<B256>,
    /// When set, `eth_sendRawTransaction` answers this error message.
    pub send_error: Option<String>,
    /// Error messages for the next `eth_sendRawTransaction` calls, one each, first first.
    pub next_send_errors: Vec<String>,
    /// When set, an accepted transaction is mined at once by this sender.
    pub mine_as: Option<Address>,
}

/// The running node; stops when dropped.
pub struct MockRpc {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for MockRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockRpc {
    pub async fn start() -> MockRpc {
        let state = Arc::new(Mutex::new(State::default()));
        let app = axum::Router::new().route("/", post(handle)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockRpc { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Calls of `method` so far.
    pub fn calls(&self, method: &str) -> usize {
        self.state().calls.get(method).copied().unwrap_or(0)
    }

    /// All calls so far.
    pub fn total_calls(&self) -> usize {
        self.state().calls.values().sum()
    }
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    body: axum::body::Bytes,
) -> ([(&'static str, &'static str); 1], String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = |request: &Value| {
        let mut state = state.lock().unwrap();
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        *state.calls.entry(method.clone()).or_default() += 1;
        let params = &request["params"];
        let result = match method.as_str() {
            "eth_chainId" => Ok(json!("0x1092")),
            "eth_getTransactionCount" => Ok(json!(format!("{:#x}", state.pending_nonce))),
            "eth_estimateGas" => Ok(json!("0x5208")),
            "eth_gasPrice" | "eth_maxPriorityFeePerGas" => Ok(json!("0x3b9aca00")),
            "eth_blockNumber" => Ok(json!("0x10")),
            "eth_feeHistory" => Ok(json!({
                "oldestBlock": "0x10", "baseFeePerGas": ["0x3b9aca00", "0x3b9aca00"],
                "gasUsedRatio": [0.5], "reward": [["0x1"]],
            })),
            "eth_getBlockByNumber" => Ok(json!({
                "number": "0x10", "hash": B256::repeat_byte(1), "parentHash": B256::ZERO, "timestamp": "0x1",
                "baseFeePerGas": "0x3b9aca00", "gasLimit": "0x1c9c380", "gasUsed": "0x0", "transactions": [],
            })),
            "eth_sendRawTransaction" if !state.next_send_errors.is_empty() => {
                let message = state.next_send_errors.remove(0);
                // Someone else took the nonce.
                state.pending_nonce += 1;
                Err(message)
            }
            "eth_sendRawTransaction" => match state.send_error.clone() {
                Some(message) => Err(message),
                None => {
                    let raw: Bytes = serde_json::from_value(params[0].clone()).unwrap();
                    let hash = keccak256(&raw);
                    state.pool.push(hash);
                    if let Some(sender) = state.mine_as {
                        state.mined.insert(hash, sender);
                    }
                    Ok(json!(hash))
                }
            },
            "eth_getTransactionReceipt" => {
                let hash: B256 = serde_json::from_value(params[0].clone()).unwrap();
                Ok(match state.mined.get(&hash) {
                    Some(from) => json!({
                        "transactionHash": hash, "status": "0x1", "from": from, "logs": [],
                    }),
                    None => Value::Null,
                })
            }
            _ => Err(format!("the mock does not know {method}")),
        };
        match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
            Err(message) => {
                json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": message}})
            }
        }
    };
    let answer = match &body {
        Value::Array(batch) => Value::Array(batch.iter().map(answer).collect()),
        single => answer(single),
    };
    ([("content-type", "application/json")], answer.to_string())
}
