//! The paid reverse proxy example between a real client and a real upstream, both on
//! 127.0.0.1: unpaid requests get a 402, paid ones the upstream's bytes metered as they
//! stream, and an upstream that fails is not charged.

#[path = "../examples/paid_reverse_proxy.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use example::{Config, Proxy, serve_with};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate::Amount;
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential};

/// The upstream's `/bytes` body: 1000 bytes, streamed in 50-byte chunks.
fn upstream_bytes() -> Vec<u8> {
    (0..1000u32).map(|i| b'a' + u8::try_from(i % 26).unwrap()).collect()
}

async fn bytes_route() -> Body {
    let chunks: Vec<Result<Bytes, Infallible>> =
        upstream_bytes().chunks(50).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

async fn events_route() -> ([(header::HeaderName, &'static str); 1], String) {
    let events: String = (1..=5).map(|i| format!("data: event {i}\n\n")).collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], events)
}

/// What the upstream saw: its Host, and whether an Authorization or a hop-by-hop header
/// reached it.
async fn echo_route(headers: HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let authorization = headers.contains_key(header::AUTHORIZATION);
    format!("host={host} authorization={authorization} x-hop={}", headers.contains_key("x-hop"))
}

struct Servers {
    proxy: String,
    upstream: String,
    store: Arc<MemoryStore>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// An upstream and the proxy in front of it, charging `price` per `per`; `upstream_up`
/// false points the proxy at a port nothing listens on.
async fn start(per: &str, price: u128, upstream_up: bool) -> Servers {
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = upstream_listener.local_addr().unwrap().to_string();
    let mut tasks = Vec::new();
    if upstream_up {
        let app = Router::new()
            .route("/bytes", get(bytes_route))
            .route("/events", get(events_route))
            .route("/echo", get(echo_route))
            .route("/fail", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke") }));
        tasks.push(tokio::spawn(async move { axum::serve(upstream_listener, app).await.unwrap() }));
    } else {
        drop(upstream_listener);
    }
    let config = Config::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\nrealm = \"proxy.test\"\n\
         secret = \"test-secret-test-secret-test-secret!!\"\nper = \"{per}\"\nprice = \"{price}\"\n"
    ))
    .unwrap();
    let layer = config.layer().unwrap();
    let store = layer.store().clone();
    let listener = TcpListener::bind(config.listen).await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let forward = Proxy::new(&config).unwrap();
    tasks.push(tokio::spawn(async move { serve_with(listener, layer, forward).await.unwrap() }));
    Servers { proxy, upstream, store, tasks }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// GETs `url`; returns the status, headers, the body bytes received, and whether the body
/// ended cleanly.
async fn get_url(url: &str, authorization: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>, bool) {
    // `x-hop` is named hop-by-hop by `Connection`: for the proxy only.
    let mut request = Request::get(url).header(header::CONNECTION, "keep-alive, x-hop").header("x-hop", "1");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = client().request(request.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (head, mut body) = response.into_parts();
    let mut received = Vec::new();
    let clean = loop {
        match body.frame().await {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
            }
        }
    };
    (head.status, head.headers, received, clean)
}

/// The challenge of an unpaid request to `url`, checked to be a 402.
async fn challenge_of(url: &str) -> Challenge {
    let (status, headers, _, _) = get_url(url, None).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    Challenge::parse_all(headers.get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0)
}

fn credential(challenge: &Challenge, channel: &str, paid: u128) -> String {
    let payload = serde_json::json!({"channel": channel, "paid": paid.to_string()});
    let credential = Credential { challenge: challenge.clone(), payload, source: None };
    credential.to_header_value().to_str().unwrap().to_owned()
}

async fn channel(store: &MemoryStore, id: &str) -> ChannelState {
    store.load(&ChannelId::new(id)).await.unwrap().expect("the channel exists")
}

#[tokio::test]
async fn per_byte_streams_the_upstream_and_charges_exactly_what_went_out() {
    let servers = start("byte", 1, true).await;
    let url = format!("{}/bytes", servers.proxy);
    let challenge = challenge_of(&url).await;

    // Enough for everything: the whole body, 1000 bytes charged.
    let (status, _, received, clean) = get_url(&url, Some(&credential(&challenge, "rich", 5000))).await;
    assert_eq!((status, clean), (StatusCode::OK, true));
    assert_eq!(received, upstream_bytes());
    let rich = channel(&servers.store, "rich").await;
    assert_eq!((rich.spent, rich.units, rich.reserved), (Amount::new(1000), 1000, Amount::ZERO));

    // 250 paid: the body stops within the budget, and what went out is what is charged.
    let (status, _, received, clean) = get_url(&url, Some(&credential(&challenge, "poor", 250))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!clean, "a plain body cut by the budget ends with an error");
    assert!(upstream_bytes().starts_with(&received));
    assert!(!received.is_empty() && received.len() <= 250, "{} bytes", received.len());
    let poor = channel(&servers.store, "poor").await;
    let sent = u128::try_from(received.len()).unwrap();
    assert_eq!((poor.spent, poor.units, poor.reserved), (Amount::new(sent), received.len() as u64, Amount::ZERO));
}

#[tokio::test]
async fn per_event_charges_the_events_that_went_out() {
    let servers = start("event", 7, true).await;
    let url = format!("{}/events", servers.proxy);
    let challenge = challenge_of(&url).await;
    let (status, headers, received, clean) = get_url(&url, Some(&credential(&challenge, "sse", 21))).await;
    assert_eq!((status, clean), (StatusCode::OK, true), "SSE ends cleanly at the budget");
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let text = String::from_utf8(received).unwrap();
    assert!(text.starts_with("data: event 1\n\ndata: event 2\n\ndata: event 3\n\n"), "{text}");
    assert!(!text.contains("event 4"), "{text}");
    let sse = channel(&servers.store, "sse").await;
    assert_eq!((sse.spent, sse.units, sse.reserved), (Amount::new(21), 3, Amount::ZERO));
}

#[tokio::test]
async fn per_request_rewrites_host_and_keeps_the_credential_from_the_upstream() {
    let servers = start("request", 5, true).await;
    let url = format!("{}/echo", servers.proxy);
    let challenge = challenge_of(&url).await;
    let (status, _, received, clean) = get_url(&url, Some(&credential(&challenge, "req", 5))).await;
    assert_eq!((status, clean), (StatusCode::OK, true));
    assert_eq!(
        String::from_utf8(received).unwrap(),
        format!("host={} authorization=false x-hop=false", servers.upstream)
    );
    let req = channel(&servers.store, "req").await;
    assert_eq!((req.spent, req.reserved), (Amount::new(5), Amount::ZERO));
}

#[tokio::test]
async fn an_upstream_that_fails_is_not_charged() {
    let servers = start("request", 5, true).await;
    let url = format!("{}/fail", servers.proxy);
    let challenge = challenge_of(&url).await;
    let (status, _, received, _) = get_url(&url, Some(&credential(&challenge, "fail", 5))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(received, b"upstream broke");
    let fail = channel(&servers.store, "fail").await;
    assert_eq!((fail.accepted, fail.spent, fail.reserved), (Amount::new(5), Amount::ZERO, Amount::ZERO));

    let down = start("byte", 1, false).await;
    let url = format!("{}/bytes", down.proxy);
    let challenge = challenge_of(&url).await;
    let (status, _, _, _) = get_url(&url, Some(&credential(&challenge, "down", 100))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let down_state = channel(&down.store, "down").await;
    assert_eq!((down_state.spent, down_state.reserved), (Amount::ZERO, Amount::ZERO));
}
