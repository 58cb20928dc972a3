//! A paid reverse proxy: `PaymentLayer` in front of any HTTP upstream.
//!
//! ```text
//! cargo run --example paid_reverse_proxy -- proxy.toml
//! ```
//!
//! with a `proxy.toml` such as
//!
//! ```toml
//! listen = "127.0.0.1:8402"
//! upstream = "http://127.0.0.1:3000"
//! realm = "api.example.com"
//! secret = "at-least-32-bytes-of-random-secret!"
//! # "request", "byte" (response body bytes) or "event" (SSE events with data)
//! per = "byte"
//! # base units per unit
//! price = "1"
//! ```
//!
//! Every request is forwarded as it comes, streaming both ways without buffering: the
//! URI and `Host` are rewritten to the upstream, hop-by-hop headers are dropped, and the
//! client's `Payment` credential never reaches the upstream. The response is metered as it
//! streams; an upstream that fails (no answer, or not 2xx) is not charged.
//!
//! The payment method is `DemoCredits` (examples/support/demo_credits.rs), **demo only**: it
//! believes what the client says it paid. Swap in a real method for money.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::net::TcpListener;
use tollgate::meter::{ByteMeter, EventMeter, MakeMeter, Meter, RequestMeter};
use tollgate::store::MemoryStore;
use tollgate::{Amount, BoxError, PaymentLayer, Price, Quote, Rate, Secret, Usage};

#[path = "support/demo_credits.rs"]
mod demo_credits;

pub use demo_credits::DemoCredits;

/// The proxy's configuration (a TOML file).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The upstream origin, `http://host:port`.
    pub upstream: String,
    /// The realm in the challenges.
    pub realm: String,
    /// The challenge-signing secret (at least 32 bytes).
    pub secret: String,
    /// What is charged for.
    pub per: Per,
    /// Base units per unit, as a decimal string.
    pub price: String,
}

/// What the proxy charges for.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// Each request, once.
    Request,
    /// Each response body byte.
    Byte,
    /// Each SSE event with data.
    Event,
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, BoxError> {
        let config: Config = toml::from_str(text)?;
        config.upstream()?;
        config.price()?;
        Ok(config)
    }

    fn upstream(&self) -> Result<(Scheme, Authority), BoxError> {
        let uri: Uri = self.upstream.parse()?;
        let scheme = uri.scheme().cloned().ok_or("upstream needs a scheme")?;
        if scheme != Scheme::HTTP {
            return Err("this example proxies to http:// upstreams".into());
        }
        let authority = uri.authority().cloned().ok_or("upstream needs a host")?;
        Ok((scheme, authority))
    }

    fn price(&self) -> Result<Price, BoxError> {
        let amount: Amount = self.price.parse().map_err(|_| "price must be a whole number of base units")?;
        Ok(match self.per {
            Per::Request => Price::per_request(amount),
            Per::Byte => Price::per_unit("byte", Rate::per_unit(amount)),
            Per::Event => Price::per_unit("event", Rate::per_unit(amount)),
        })
    }

    /// The payment layer this configuration describes.
    pub fn layer(&self) -> Result<PaymentLayer<DemoCredits, MemoryStore, Price, ProxyMeter>, BoxError> {
        let layer =
            PaymentLayer::try_new(DemoCredits, MemoryStore::new(), self.realm.as_str(), Secret::new(&self.secret))?;
        Ok(layer.pricing(self.price()?).meter(ProxyMeter(self.per)))
    }
}

/// The meter for [`Per`]: one of the crate's meters, chosen by the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ProxyMeter(Per);

/// A [`ProxyMeter`]'s meter for one response.
#[derive(Debug)]
pub enum AnyMeter {
    /// Per request.
    Request(RequestMeter),
    /// Per byte.
    Byte(ByteMeter),
    /// Per SSE event.
    Event(EventMeter),
}

impl AnyMeter {
    fn meter(&mut self) -> &mut dyn Meter {
        match self {
            AnyMeter::Request(meter) => meter,
            AnyMeter::Byte(meter) => meter,
            AnyMeter::Event(meter) => meter,
        }
    }
}

impl Meter for AnyMeter {
    fn on_response(&mut self, head: &http::response::Parts) -> Usage {
        self.meter().on_response(head)
    }

    fn on_data(&mut self, data: &[u8]) -> Usage {
        self.meter().on_data(data)
    }

    fn on_event(&mut self, event: &[u8]) -> Usage {
        self.meter().on_event(event)
    }

    fn on_end(&mut self) -> Usage {
        self.meter().on_end()
    }

    fn cutoff(&self) -> Option<Bytes> {
        match self {
            AnyMeter::Request(meter) => meter.cutoff(),
            AnyMeter::Byte(meter) => meter.cutoff(),
            AnyMeter::Event(meter) => meter.cutoff(),
        }
    }
}

impl MakeMeter for ProxyMeter {
    type Meter = AnyMeter;

    fn make_meter(&self, request: &http::request::Parts, quote: &Quote) -> AnyMeter {
        match self.0 {
            Per::Request => AnyMeter::Request(RequestMeter.make_meter(request, quote)),
            Per::Byte => AnyMeter::Byte(ByteMeter::new()),
            Per::Event => AnyMeter::Event(EventMeter::new()),
        }
    }
}

type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Forwards each request to the upstream and streams its answer back.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpConnector, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
}

impl Proxy {
    /// A proxy to `config`'s upstream.
    pub fn new(config: &Config) -> Result<Self, BoxError> {
        let (scheme, authority) = config.upstream()?;
        let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Proxy { client, scheme, authority })
    }

    fn forward<B>(&self, request: Request<B>) -> Result<Request<ProxyBody>, BoxError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut head, body) = request.into_parts();
        let path = head.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        head.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()?;
        head.version = http::Version::HTTP_11;
        remove_hop_by_hop(&mut head.headers);
        head.headers.insert(header::HOST, HeaderValue::from_str(self.authority.as_str())?);
        // The payment is between the client and this proxy: the upstream never sees it.
        let is_payment = |v: &HeaderValue| v.as_bytes().get(..8).is_some_and(|s| s.eq_ignore_ascii_case(b"payment "));
        if head.headers.get(header::AUTHORIZATION).is_some_and(is_payment) {
            head.headers.remove(header::AUTHORIZATION);
        }
        Ok(Request::from_parts(head, body.map_err(Into::into).boxed_unsync()))
    }
}

/// Drops the hop-by-hop headers (RFC 9110 §7.6.1), and any the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| name.trim().parse().ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"] {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
}

fn bad_gateway(why: &str) -> Response<ProxyBody> {
    let body =
        Full::new(Bytes::from(format!("upstream failed: {why}\n"))).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

impl<B> tower::Service<Request<B>> for Proxy
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let forwarded = self.forward(request);
        let client = self.client.clone();
        Box::pin(async move {
            let request = match forwarded {
                Ok(request) => request,
                Err(error) => return Ok(bad_gateway(&error.to_string())),
            };
            // A failed upstream answers 502: not 2xx, so nothing is charged.
            let response = match client.request(request).await {
                Ok(response) => response,
                Err(error) => return Ok(bad_gateway(&error.to_string())),
            };
            let (mut head, body) = response.into_parts();
            remove_hop_by_hop(&mut head.headers);
            Ok(Response::from_parts(head, body.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// Serves the paid proxy described by `config` on `listener`, until the task is dropped.
pub async fn serve(listener: TcpListener, config: Config) -> Result<(), BoxError> {
    let layer = config.layer()?;
    serve_with(listener, layer, Proxy::new(&config)?).await
}

/// Serves `proxy` behind `layer` on `listener` (the layer given, so a caller keeps its store).
pub async fn serve_with(
    listener: TcpListener,
    layer: PaymentLayer<DemoCredits, MemoryStore, Price, ProxyMeter>,
    proxy: Proxy,
) -> Result<(), BoxError> {
    let service = tower::ServiceBuilder::new().layer(layer).service(proxy);
    let app = axum::Router::new().fallback_service(service);
    axum::serve(listener, app).await?;
    Ok(())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::args().nth(1).ok_or("usage: paid_reverse_proxy <config.toml>")?;
    let config = Config::from_toml(&std::fs::read_to_string(path)?)?;
    let listener = TcpListener::bind(config.listen).await?;
    println!(
        "paid proxy on http://{} -> {} ({} base units per {:?})",
        config.listen, config.upstream, config.price, config.per
    );
    serve(listener, config).await
}
