//! `MeteredBody` with the OpenAI token meter vs the bare body, over realistic SSE streams
//! (frames × events per frame), through the whole layer (admission included).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty};
use serde_json::json;
use tollgate::meter::OpenAiTokenMeter;
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential, Receipt};
use tollgate::{Amount, PaymentError, PaymentLayer, Price, Quote, Rate, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Bench-only method: every credential draws on one pre-funded account; `settle_by`: its
/// grant must settle within an hour (as an x402 permit's), so the stream parks its account
/// with a watchdog between polls.
struct Funded {
    settle_by: bool,
}

impl PaymentMethod for Funded {
    type Request = serde_json::Value;
    type Payload = serde_json::Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<serde_json::Value>> {
        let amount = quote.price.output.unit_price().to_string();
        vec![Offer::mpp("bench", "session", json!({"amount": amount}))]
    }

    async fn verify<St: ChannelStore>(
        &self,
        _: Verify<'_, serde_json::Value, serde_json::Value>,
        _: &St,
    ) -> Result<Verified, PaymentError> {
        let grant = Grant::new(ChannelId::new("bench"), Renewal::Never, Receipt::new("bench", "bench"));
        Ok(Verified::Serve(match self.settle_by {
            true => grant.settle_by(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)),
            false => grant,
        }))
    }
}

/// A body of prepared frames, like a proxied upstream.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn chunk(i: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-9xAbC\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    )
}

fn stream(frames: usize, per_frame: usize) -> VecDeque<Bytes> {
    (0..frames).map(|f| Bytes::from((0..per_frame).map(|e| chunk(f * per_frame + e)).collect::<String>())).collect()
}

fn sse(frames: VecDeque<Bytes>) -> Response<Frames> {
    let mut response = Response::new(Frames(frames));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new();
    runtime
        .block_on(store.open(&ChannelId::new("bench"), Amount::new(u128::MAX >> 8), Amount::new(u128::MAX >> 8)))
        .unwrap();
    let price = Price::tokens(Rate::new(Amount::new(15), 100), Rate::new(Amount::new(60), 100));
    let layer = |settle_by: bool| {
        PaymentLayer::new(
            Funded { settle_by },
            store.clone(),
            "bench",
            Secret::new("bench-secret-of-at-least-32-bytes"),
        )
        .pricing(Quote::new(price.clone()))
        .meter(OpenAiTokenMeter::default())
    };

    let mut group = c.benchmark_group("sse_stream");
    for (frames, per_frame) in [(64, 1), (512, 1), (64, 16), (512, 16)] {
        let prepared = stream(frames, per_frame);
        let bytes: usize = prepared.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let id = format!("{frames}x{per_frame}");

        let bare = prepared.clone();
        group.bench_with_input(BenchmarkId::new("bare", &id), &bare, |b, bare| {
            b.to_async(&runtime).iter(|| async {
                let body = sse(bare.clone()).into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), bytes);
            })
        });

        for (name, settle_by) in [("metered_openai", false), ("metered_openai_settle_by", true)] {
            let inner = prepared.clone();
            let svc = ServiceBuilder::new().layer(layer(settle_by)).service(service_fn(
                move |_req: Request<tollgate::RequestBody<Empty<Bytes>>>| {
                    let frames = inner.clone();
                    async move { Ok::<_, Infallible>(sse(frames)) }
                },
            ));
            let first = runtime.block_on(svc.clone().oneshot(Request::new(Empty::new()))).unwrap();
            let challenge = Challenge::parse_all(first.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
            let authorization = Credential { challenge, payload: json!({}), source: None }.to_header_value();
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.to_async(&runtime).iter(|| {
                    let mut svc = svc.clone();
                    let authorization = authorization.clone();
                    async move {
                        let request =
                            Request::builder().header(header::AUTHORIZATION, authorization).body(Empty::new()).unwrap();
                        let response = svc.ready().await.unwrap().call(request).await.unwrap();
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert!(body.len() > bytes, "stream plus receipt");
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
