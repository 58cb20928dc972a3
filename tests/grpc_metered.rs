//! The gRPC example over a real 127.0.0.1 socket with a real tonic client: refusals are
//! gRPC statuses with the challenge in metadata, and a paid stream gets exactly the
//! messages it paid for, then a clean status.

#[path = "../examples/grpc_metered.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use example::{PRICE_PER_MESSAGE, challenge, credential, layer, serve, ticks};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore};
use tonic::{Code, Status, Streaming};

/// A server on 127.0.0.1, its origin and its store; the server stops when the handle drops.
struct Running {
    origin: String,
    store: std::sync::Arc<MemoryStore>,
    server: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let layer = layer();
    let store = layer.store().clone();
    let server = tokio::spawn(serve(listener, layer));
    Running { origin, store, server }
}

async fn refusal(origin: &str, authorization: Option<&str>) -> Status {
    match ticks(origin, 5, authorization).await {
        Ok(_) => panic!("the call was served"),
        Err(status) => status,
    }
}

/// Every message of `stream`, and how it ended (`Ok` = grpc-status 0).
async fn drain(mut stream: Streaming<String>) -> (Vec<String>, Result<(), Status>) {
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

async fn channel(store: &MemoryStore, channel: &str) -> ChannelState {
    store.load(&ChannelId::new(channel)).await.unwrap().expect("the channel exists")
}

fn tick_list(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("tick {i}")).collect()
}

#[tokio::test]
async fn an_unpaid_call_is_a_grpc_status_with_the_challenge_in_metadata() {
    let running = start().await;
    let status = refusal(&running.origin, None).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "payment required: Payment is required.");
    let challenge = challenge(&status).expect("a challenge in www-authenticate");
    assert_eq!(challenge.realm, "grpc.demo.local");
    assert_eq!(challenge.decode_request().unwrap()["amount"], PRICE_PER_MESSAGE.to_string());

    // A credential that cannot be read is an invalid argument, and changes nothing.
    let status = refusal(&running.origin, Some("Payment not-base64!")).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(running.store.load(&ChannelId::new("never-opened")).await.unwrap(), None);
}

#[tokio::test]
async fn a_paid_stream_gets_what_it_paid_for_then_resource_exhausted() {
    let running = start().await;
    let challenge = challenge(&refusal(&running.origin, None).await).unwrap();
    let authorization = credential(&challenge, "three", 3 * PRICE_PER_MESSAGE).unwrap();
    let stream = ticks(&running.origin, 10, Some(&authorization)).await.expect("the paid call is served");
    let (messages, end) = drain(stream).await;
    assert_eq!(messages, tick_list(3));
    let status = end.expect_err("the budget ends the stream");
    assert_eq!(status.code(), Code::ResourceExhausted, "a clean status, not a transport error: {status:?}");
    assert!(status.message().contains("budget exhausted"), "{status:?}");
    let state = channel(&running.store, "three").await;
    assert_eq!((state.spent, state.units, state.reserved), (Amount::new(30), 3, Amount::ZERO));
}

#[tokio::test]
async fn a_stream_within_budget_ends_with_the_services_own_ok() {
    let running = start().await;
    let challenge = challenge(&refusal(&running.origin, None).await).unwrap();
    let authorization = credential(&challenge, "plenty", 100 * PRICE_PER_MESSAGE).unwrap();
    let (messages, end) = drain(ticks(&running.origin, 4, Some(&authorization)).await.unwrap()).await;
    assert_eq!(messages, tick_list(4));
    assert!(end.is_ok(), "{end:?}");
    let state = channel(&running.store, "plenty").await;
    assert_eq!((state.spent, state.units, state.reserved), (Amount::new(40), 4, Amount::ZERO));

    // The service's own error status is passed through and not charged.
    let (messages, end) = drain(ticks(&running.origin, 0, Some(&authorization)).await.unwrap()).await;
    assert_eq!((messages.len(), end.is_ok()), (0, true));
    let status = match example::ticks_raw(&running.origin, "not a count", Some(&authorization)).await {
        Ok(_) => panic!("served"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let after = channel(&running.store, "plenty").await;
    assert_eq!((after.spent, after.units, after.reserved), (Amount::new(40), 4, Amount::ZERO));
}
