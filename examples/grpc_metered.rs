//! A tonic server-streaming service paid per message, behind `PaymentLayer`.
//!
//! Run it with `cargo run --example grpc_metered`. It serves `demo.Ticker/Ticks` on
//! 127.0.0.1 and calls it with a tonic client: unpaid, the call fails with the gRPC status
//! `UNAUTHENTICATED` and the challenge in its `www-authenticate` metadata; paid for three
//! messages, it streams three and ends with `RESOURCE_EXHAUSTED`, a clean gRPC status.
//!
//! No protoc and no prost: the messages are UTF-8 strings through the hand-written
//! [`TextCodec`], and the service is written out by hand as tonic's codegen would write it.
//!
//! `DemoCredits` below is a **demo-only** payment method: it believes the amounts the
//! client claims to have paid. Real deployments use a method that verifies payments.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use futures_util::Stream;
use http::uri::PathAndQuery;
use serde_json::json;
use tokio::net::TcpListener;
use tollgate::meter::GrpcMessageMeter;
use tollgate::store::MemoryStore;
use tollgate::wire::mpp::{Challenge, Credential};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

#[path = "support/demo_credits.rs"]
mod demo_credits;

pub use demo_credits::DemoCredits;

/// The price of one streamed message, in base units.
pub const PRICE_PER_MESSAGE: u128 = 10;
/// The streaming method's path.
pub const TICKS: &str = "/demo.Ticker/Ticks";

/// The payment layer: 10 base units per streamed message, demo credits.
pub fn layer() -> PaymentLayer<DemoCredits, MemoryStore, Price, GrpcMessageMeter> {
    PaymentLayer::new(
        DemoCredits,
        MemoryStore::new(),
        "grpc.demo.local",
        Secret::new("demo-secret-change-me-to-32-random-bytes"),
    )
    .pricing(Price::per_unit("message", Rate::per_unit(Amount::new(PRICE_PER_MESSAGE))))
    .meter(GrpcMessageMeter::per_message())
}

/// Encodes and decodes messages as UTF-8 text (no protobuf needed for a demo).
#[derive(Clone, Copy, Debug, Default)]
pub struct TextCodec;

impl Codec for TextCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = TextCodec;
    type Decoder = TextCodec;

    fn encoder(&mut self) -> TextCodec {
        TextCodec
    }

    fn decoder(&mut self) -> TextCodec {
        TextCodec
    }
}

impl Encoder for TextCodec {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for TextCodec {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| Status::invalid_argument("not UTF-8"))
    }
}

type Ticks = Pin<Box<dyn Stream<Item = Result<String, Status>> + Send>>;

/// `demo.Ticker`: `Ticks(count)` streams `count` messages, `tick 1` to `tick <count>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ticker;

impl ServerStreamingService<String> for Ticker {
    type Response = String;
    type ResponseStream = Ticks;
    type Future = std::future::Ready<Result<Response<Ticks>, Status>>;

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let Ok(count) = request.get_ref().trim().parse::<u32>() else {
            return std::future::ready(Err(Status::invalid_argument("the request is a count")));
        };
        let ticks: Ticks = Box::pin(futures_util::stream::iter((1..=count).map(|i| Ok(format!("tick {i}")))));
        std::future::ready(Ok(Response::new(ticks)))
    }
}

impl NamedService for Ticker {
    const NAME: &'static str = "demo.Ticker";
}

impl<B> tower::Service<http::Request<B>> for Ticker
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = *self;
        Box::pin(async move {
            if request.uri().path() != TICKS {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            Ok(Grpc::new(TextCodec).server_streaming(service, request).await)
        })
    }
}

/// Serves `demo.Ticker` behind `layer` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, layer: PaymentLayer<DemoCredits, MemoryStore, Price, GrpcMessageMeter>) {
    let served =
        Server::builder().layer(layer).add_service(Ticker).serve_with_incoming(TcpIncoming::from(listener)).await;
    if let Err(error) = served {
        eprintln!("server stopped: {error}");
    }
}

/// Calls `Ticks(count)` at `origin`, with `authorization` when given.
pub async fn ticks(origin: &str, count: u32, authorization: Option<&str>) -> Result<Streaming<String>, Status> {
    ticks_raw(origin, &count.to_string(), authorization).await
}

/// Calls `Ticks` with any request text.
pub async fn ticks_raw(origin: &str, text: &str, authorization: Option<&str>) -> Result<Streaming<String>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(origin.to_owned())
        .map_err(|e| Status::internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = Request::new(text.to_owned());
    if let Some(value) = authorization {
        let value = value.parse().map_err(|_| Status::internal("credential is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let path = PathAndQuery::from_static(TICKS);
    Ok(client.server_streaming(request, path, TextCodec).await?.into_inner())
}

/// The first challenge of a refusal's `www-authenticate` metadata.
pub fn challenge(status: &Status) -> Option<Challenge> {
    let values = status.metadata().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok());
    let values: Vec<http::HeaderValue> = values.filter_map(|v| v.parse().ok()).collect();
    Challenge::parse_all(&values).ok()?.into_iter().next()
}

/// A demo credential answering `challenge` for `paid` base units on `channel`.
pub fn credential(challenge: &Challenge, channel: &str, paid: u128) -> Option<String> {
    let payload = json!({"channel": channel, "paid": paid.to_string()});
    let credential = Credential { challenge: challenge.clone(), payload, source: None };
    Some(credential.to_header_value().to_str().ok()?.to_owned())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(serve(listener, layer()));

    let refused = match ticks(&origin, 10, None).await {
        Ok(_) => return Err("an unpaid call was served".into()),
        Err(status) => status,
    };
    let challenge = challenge(&refused).ok_or("no challenge in the metadata")?;
    println!("unpaid Ticks(10) -> {:?}: {} (challenge {})", refused.code(), refused.message(), challenge.id);

    let paid = 3 * PRICE_PER_MESSAGE;
    let authorization = credential(&challenge, "demo-channel", paid).ok_or("credential")?;
    let mut stream = ticks(&origin, 10, Some(&authorization)).await?;
    println!("paid {paid} for Ticks(10):");
    loop {
        match stream.message().await {
            Ok(Some(message)) => println!("  {message}"),
            Ok(None) => {
                println!("  end: OK");
                break;
            }
            Err(status) => {
                println!("  end: {:?}: {}", status.code(), status.message());
                break;
            }
        }
    }
    server.abort();
    Ok(())
}
