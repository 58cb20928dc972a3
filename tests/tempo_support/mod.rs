//! A paid SSE server for the Tempo tests: axum on 127.0.0.1, PaymentLayer with the Tempo
//! session method over the chain the test spawned.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use tokio::task::JoinHandle;

/// A server that stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server already spawned on `addr`, stopped when dropped.
    pub fn new(addr: SocketAddr, task: JoinHandle<()>) -> Self {
        Server { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// `tokens` SSE events `data: tok<i>`, `gap` apart, then `data: [DONE]`.
pub fn token_stream(tokens: usize, gap: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for i in 0..tokens {
            if tx.send(Ok(bytes::Bytes::from(format!("data: tok{i}\n\n")))).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        let _ = tx.send(Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let stream = ReceiverBody(rx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache, no-transform")
        .body(Body::new(stream))
        .unwrap()
}

struct ReceiverBody(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl http_body::Body for ReceiverBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Serves `/v1/stream` (GET and POST stream `tokens` events) behind `layer`.
pub async fn serve<L>(layer: L, tokens: usize, gap: Duration) -> Server
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Response: axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Error: Into<std::convert::Infallible> + 'static,
    <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
{
    let app = Router::new()
        .route(
            "/v1/stream",
            get(move || async move { token_stream(tokens, gap) })
                .post(move || async move { token_stream(tokens, gap) }),
        )
        .route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { addr, task }
}

/// Chain helpers shared by the Tempo tests.
pub mod onchain {
    use alloy::node_bindings::AnvilInstance;
    use alloy::primitives::{Address, B256, address};
    use alloy::providers::{Provider, ProviderBuilder};
    use alloy::rpc::types::TransactionRequest;
    use alloy::sol_types::SolCall;
    use serde_json::Value;
    use tollgate::method::tempo::PATH_USD;

    /// Where the tests place our v1 escrow.
    pub const ESCROW: Address = address!("00000000000000000000000000000000e5c70001");

    alloy::sol! {
        function balanceOf(address owner) external view returns (uint256);
        function getChannel(bytes32 channelId) external view returns (bool, uint64, address, address, address, address, uint128, uint128);
        function requestClose(bytes32 channelId) external;
    }

    /// Places our v1 escrow (no constructor, no immutables) at [`ESCROW`].
    pub async fn install_escrow(anvil: &AnvilInstance) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/artifacts/StreamChannelEscrow.json");
        let artifact: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let code = artifact["deployedBytecode"]["object"].as_str().unwrap().to_owned();
        let code = if code.starts_with("0x") { code } else { format!("0x{code}") };
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
        let _: Value = provider.raw_request("anvil_setCode".into(), (ESCROW, code)).await.unwrap();
    }

    /// `owner`'s pathUSD balance.
    pub async fn balance(anvil: &AnvilInstance, owner: Address) -> u128 {
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
        let call = TransactionRequest::default().to(PATH_USD).input(balanceOfCall { owner }.abi_encode().into());
        balanceOfCall::abi_decode_returns(&provider.call(call).await.unwrap()).unwrap().to::<u128>()
    }

    /// The escrow's view of a channel.
    pub async fn channel(anvil: &AnvilInstance, id: B256) -> getChannelReturn {
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
        let call = TransactionRequest::default().to(ESCROW).input(getChannelCall { channelId: id }.abi_encode().into());
        getChannelCall::abi_decode_returns(&provider.call(call).await.unwrap()).unwrap()
    }
}
