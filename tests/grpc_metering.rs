//! gRPC through the layer, frame by frame: refusals in trailers-only form, messages cut
//! whole however the frames split them, the budget ending the stream with a gRPC status,
//! and the service's own trailers passed through.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;
use support::*;
use tollgate::meter::GrpcMessageMeter;
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, BoxError, PaymentLayer, Price, Quote, Rate, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Frames = Vec<Result<Frame<Bytes>, BoxError>>;
/// The frames each next call answers with.
type Slot = Arc<Mutex<Vec<Frames>>>;
type Inner = StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

/// A length-prefixed gRPC message.
fn message(payload: &str) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

fn messages(n: usize) -> Vec<Vec<u8>> {
    (1..=n).map(|i| message(&format!("message number {i}"))).collect()
}

/// `stream` split at `cuts`, then `trailers`.
fn frames(stream: &[u8], cuts: &[usize], trailers: HeaderMap) -> Frames {
    let mut frames = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        frames.push(Ok(Frame::data(Bytes::copy_from_slice(&stream[last..cut]))));
        last = cut;
    }
    frames.push(Ok(Frame::trailers(trailers)));
    frames
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers.insert("x-served-by", "the-service".parse().unwrap());
    trailers
}

type Layer = PaymentLayer<TestMethod, MemoryStore, Quote, GrpcMessageMeter>;

/// A paid gRPC service, 10 per message, answering with the next frames from its slot.
fn service(
    store: MemoryStore,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<impl Body<Data = Bytes, Error = BoxError>>, Error = Infallible>
    + Clone,
    Slot,
) {
    tuned(store, |layer| layer)
}

/// [`service`] with its layer tuned.
fn tuned(
    store: MemoryStore,
    tune: impl FnOnce(Layer) -> Layer,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<impl Body<Data = Bytes, Error = BoxError>>, Error = Infallible>
    + Clone,
    Slot,
) {
    let slot: Slot = Arc::default();
    let bodies = slot.clone();
    let quote = Quote::new(Price::per_unit("message", Rate::per_unit(Amount::new(10))));
    let layer = tune(
        PaymentLayer::new(TestMethod, store, REALM, Secret::new(SECRET))
            .pricing(quote)
            .meter(GrpcMessageMeter::per_message()),
    );
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            let frames = bodies.lock().unwrap().remove(0);
            async move {
                let body: Inner = StreamBody::new(futures_util::stream::iter(frames));
                let mut response = Response::new(body);
                response.headers_mut().insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        },
    ));
    (svc, slot)
}

fn call(authorization: Option<http::HeaderValue>) -> Request<Full<Bytes>> {
    let mut request =
        Request::post("/demo.Ticker/Ticks").header(header::CONTENT_TYPE, "application/grpc").header("te", "trailers");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request.body(Full::new(Bytes::from(message("4")))).unwrap()
}

/// The data received, and the trailers, of a body that must end without an error.
async fn read<B: Body<Data = Bytes, Error = BoxError> + Unpin>(mut body: B) -> (Vec<u8>, Option<HeaderMap>) {
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("a gRPC stream ends with a status, never a body error");
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    (data, trailers)
}

async fn challenge(
    svc: impl Service<Request<Full<Bytes>>, Response = Response<impl Body>, Error = Infallible>,
) -> Challenge {
    let response = svc.oneshot(call(None)).await.unwrap();
    challenge_of(&response)
}

async fn state(store: &MemoryStore, channel: &str) -> ChannelState {
    store.load(&ChannelId::new(channel)).await.unwrap().unwrap()
}

fn paid(challenge: &Challenge, payload: Value) -> Request<Full<Bytes>> {
    call(Some(credential(challenge, payload)))
}

#[tokio::test]
async fn refusals_are_trailers_only_grpc_answers() {
    let (svc, _) = service(MemoryStore::new());
    let response = svc.clone().oneshot(call(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["grpc-message"], "payment required: Payment is required.");
    let challenge = challenge_of(&response);
    assert_eq!(challenge.realm, REALM);
    assert!(response.body().is_end_stream(), "no body: trailers-only");
    assert_eq!(read(response.into_body()).await, (Vec::new(), None));

    let response = svc.clone().oneshot(call(Some("Payment %%%".parse().unwrap()))).await.unwrap();
    assert_eq!((response.status(), &response.headers()["grpc-status"]), (StatusCode::OK, &"3".parse().unwrap()));

    let mut bad = pay_payload("bad", 100);
    bad["signature"] = "forged".into();
    let response = svc.oneshot(paid(&challenge, bad)).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "16", "a proof that does not pay: pay again");
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE), "with a fresh challenge");
}

#[tokio::test]
async fn messages_split_anywhere_go_out_whole_up_to_the_budget_then_resource_exhausted() {
    let store = MemoryStore::new();
    let (svc, slot) = service(store.clone());
    let all = messages(4);
    let stream = all.concat();
    // Cuts inside a prefix, inside a payload, and several messages in one frame.
    slot.lock().unwrap().push(frames(&stream, &[2, 30, 31, 50], ok_trailers()));
    let challenge = challenge(svc.clone()).await;
    let response = svc.oneshot(paid(&challenge, pay_payload("two", 20))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (data, trailers) = read(response.into_body()).await;
    assert_eq!(data, all[..2].concat(), "exactly the two paid messages, each whole");
    let trailers = trailers.expect("the stream ends with a status");
    assert_eq!(trailers["grpc-status"], "8");
    assert!(trailers["grpc-message"].to_str().unwrap().contains("budget exhausted"));
    assert!(!trailers.contains_key("x-served-by"), "the service never finished");
    let paid = state(&store, "pay:two").await;
    assert_eq!((paid.spent, paid.units, paid.reserved), (Amount::new(20), 2, Amount::ZERO));
}

#[tokio::test]
async fn a_stream_within_budget_passes_the_services_trailers() {
    let store = MemoryStore::new();
    let (svc, slot) = service(store.clone());
    let stream = messages(3).concat();
    slot.lock().unwrap().push(frames(&stream, &[1, 2, 3, 4, 5, 6], ok_trailers()));
    let challenge = challenge(svc.clone()).await;
    let (data, trailers) =
        read(svc.oneshot(paid(&challenge, pay_payload("all", 100))).await.unwrap().into_body()).await;
    assert_eq!(data, stream);
    assert_eq!(trailers, Some(ok_trailers()));
    let paid = state(&store, "pay:all").await;
    assert_eq!((paid.spent, paid.units, paid.reserved), (Amount::new(30), 3, Amount::ZERO));
}

#[tokio::test]
async fn a_session_never_pauses_a_grpc_stream_with_sse_bytes() {
    let store = MemoryStore::new();
    let (svc, slot) = service(store.clone());
    let all = messages(5);
    slot.lock().unwrap().push(frames(&all.concat(), &[], ok_trailers()));
    let challenge = challenge(svc.clone()).await;
    let response = svc.oneshot(paid(&challenge, open_payload("0xgrpc", 30, 1000))).await.unwrap();
    let (data, trailers) = read(response.into_body()).await;
    assert_eq!(data, all[..3].concat(), "no need-voucher event, no keep-alive: only messages");
    assert_eq!(trailers.expect("a status")["grpc-status"], "8");
    let channel = state(&store, "0xgrpc").await;
    assert_eq!((channel.spent, channel.units, channel.reserved), (Amount::new(30), 3, Amount::ZERO));
}

#[tokio::test]
async fn a_short_session_is_refused_in_grpc_form_even_with_the_upfront_asked_in_stream() {
    let store = MemoryStore::new();
    let (svc, slot) = tuned(store.clone(), |layer| layer.upfront_in_stream());
    slot.lock().unwrap().push(frames(&messages(1).concat(), &[], ok_trailers()));
    let challenge = challenge(svc.clone()).await;
    // 5 accepted: less than one message's 10.
    let response = svc.oneshot(paid(&challenge, open_payload("0xshort", 5, 1000))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc", "not an SSE stream asking for a voucher");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(read(response.into_body()).await, (Vec::new(), None));
    let channel = state(&store, "0xshort").await;
    assert_eq!((channel.spent, channel.reserved), (Amount::ZERO, Amount::ZERO));
    assert_eq!(slot.lock().unwrap().len(), 1, "the service never ran");
}
