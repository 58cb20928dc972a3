//! The test's load balancer on 127.0.0.1: forwards each request to one of several proxy
//! instances as a routing rule says, streaming answers through, and counts what it sent
//! where (requests, and the content bytes streamed back).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

/// One request, as the routing rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// A bodiless POST with a credential: open, voucher, top-up, close.
    pub management: bool,
    /// The how-manieth request of its kind (management or not) this is, from 0.
    pub nth: usize,
}

/// Which instance (an index into the front's targets) serves a call.
pub type Rule = Box<dyn Fn(Call) -> usize + Send + Sync>;

/// Content requests to instance 0, payment management (the in-band vouchers) to instance 1.
pub fn split() -> Rule {
    Box::new(|call| usize::from(call.management))
}

/// Everything alternates between the instances, each kind on its own turn.
pub fn round_robin(instances: usize) -> Rule {
    Box::new(move |call| call.nth % instances)
}

/// The load balancer; stops when dropped.
pub struct Front {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    targets: Mutex<Vec<String>>,
    rule: Mutex<Rule>,
    content: AtomicUsize,
    management: AtomicUsize,
    /// Per target: management requests sent, content requests sent, bytes streamed back,
    /// `payment-need-voucher` events streamed back.
    counts: Vec<[AtomicU64; 4]>,
    /// Management requests refused (4xx, 5xx): target, status and the answer's body.
    refusals: Mutex<Vec<String>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Front {
    /// A front for `targets` (`http://host:port`), routing by `rule`.
    pub async fn start(targets: Vec<String>, rule: Rule) -> Front {
        let counts = targets.iter().map(|_| Default::default()).collect();
        let shared = Arc::new(Shared {
            targets: Mutex::new(targets),
            rule: Mutex::new(rule),
            content: AtomicUsize::new(0),
            management: AtomicUsize::new(0),
            counts,
            refusals: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let app = Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Front { addr, shared, task }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Points target `index` at `url` (a restarted instance).
    pub fn retarget(&self, index: usize, url: String) {
        self.shared.targets.lock().unwrap()[index] = url;
    }

    /// Routes by `rule` from now on.
    pub fn reroute(&self, rule: Rule) {
        *self.shared.rule.lock().unwrap() = rule;
    }

    /// Management requests sent to target `index`.
    pub fn management_to(&self, index: usize) -> u64 {
        self.shared.counts[index][0].load(Ordering::SeqCst)
    }

    /// Content requests sent to target `index`.
    pub fn content_to(&self, index: usize) -> u64 {
        self.shared.counts[index][1].load(Ordering::SeqCst)
    }

    /// Bytes of answers streamed back from target `index`.
    pub fn bytes_from(&self, index: usize) -> u64 {
        self.shared.counts[index][2].load(Ordering::SeqCst)
    }
}

impl Front {
    /// The management requests refused so far: target, status, body.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.refusals.lock().unwrap().clone()
    }

    /// `payment-need-voucher` events streamed back from target `index` (mppx's fetch hides
    /// them from the client).
    pub fn needs_from(&self, index: usize) -> u64 {
        self.shared.counts[index][3].load(Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let management =
        head.method == http::Method::POST && body.is_empty() && head.headers.contains_key(header::AUTHORIZATION);
    let counter = if management { &shared.management } else { &shared.content };
    let call = Call { management, nth: counter.fetch_add(1, Ordering::SeqCst) };
    let index = (shared.rule.lock().unwrap())(call);
    let Some(target) = shared.targets.lock().unwrap().get(index).cloned() else {
        return status(StatusCode::BAD_GATEWAY);
    };
    shared.counts[index][usize::from(!management)].fetch_add(1, Ordering::SeqCst);
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outbound = http::Request::builder().method(head.method.clone()).uri(format!("{target}{path}"));
    for (name, value) in &head.headers {
        if name != header::HOST {
            outbound = outbound.header(name, value);
        }
    }
    let Ok(outbound) = outbound.body(Full::new(body)) else { return status(StatusCode::BAD_REQUEST) };
    let Ok(answer) = shared.client.request(outbound).await else { return status(StatusCode::BAD_GATEWAY) };
    if management && (answer.status().is_client_error() || answer.status().is_server_error()) {
        // A refusal is small (a problem document): keep it for the test's failure message.
        let (head, body) = answer.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        shared.refusals.lock().unwrap().push(format!("target {index}: {} {text}", head.status));
        return Response::from_parts(head, Body::from(bytes));
    }
    let counted = shared.clone();
    answer.map(move |body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counted.counts[index][2].fetch_add(data.len() as u64, Ordering::SeqCst);
                let needs = memchr::memmem::find_iter(data, b"event: payment-need-voucher").count();
                counted.counts[index][3].fetch_add(needs as u64, Ordering::SeqCst);
            }
            frame
        }))
    })
}

fn status(status: StatusCode) -> Response {
    Response::builder().status(status).body(Body::empty()).unwrap()
}
