//! Scenario 5 of issue 7, in process: the prompt is paid before the upstream is called. A
//! channel with one unit of headroom sends a 1 MiB prompt and never answers the stream's
//! need-voucher: the upstream is never called, nothing is charged, the reservation is
//! released.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Secret, Usage};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::proxy::catalog::Catalog;
use crate::proxy::chat::ChatRequest;
use crate::proxy::payment::{PaymentSettings, configure};
use crate::support::{config, settings};
use crate::test_support::{Calls, REALM, SECRET, TestMethod, challenge_of, credential, open_payload};

const MIB: usize = 1 << 20;

#[tokio::test(start_paused = true)]
async fn scenario_05_a_prompt_is_paid_before_the_upstream_is_called() {
    let catalog = Arc::new(Catalog::from_config(&config(""), true).unwrap());
    let model = catalog.get("tollgate-sim").unwrap().clone();
    let (store, calls) = (MemoryStore::new(), Calls::default());
    let settings = PaymentSettings {
        voucher_window: 16,
        pause_deadline: Duration::from_secs(10),
        keep_alive: Duration::from_secs(3),
        ..settings()
    };
    let layer = configure(PaymentLayer::new(TestMethod, store.clone(), REALM, Secret::new(SECRET)), &settings, catalog);
    let upstream = calls.clone();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            upstream.hit();
            async move {
                let mut response = Response::new(Full::from(
                    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
                ));
                response.headers_mut().insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        },
    ));

    // A 1 MiB prompt; the channel opened with one unit (what mppx's open pays).
    let body =
        json!({ "model": "tollgate-sim", "messages": [{ "role": "user", "content": "x".repeat(MIB) }] }).to_string();
    let chat = Arc::new(ChatRequest::parse(body.as_bytes()).unwrap());
    let request = |authorization: Option<http::HeaderValue>| {
        let mut builder = Request::post("/v1/chat/completions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let mut request = builder.body(Full::from(body.clone())).unwrap();
        request.extensions_mut().insert(chat.clone());
        request
    };
    let unpaid = svc.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(unpaid.status(), StatusCode::PAYMENT_REQUIRED);
    let challenge = challenge_of(&unpaid);
    let unit = model.price.output.unit_price().get();
    let channel = "0xc4a11e1";
    let paid = request(Some(credential(&challenge, open_payload(channel, unit, 1_000_000_000))));
    let response = svc.oneshot(paid).await.unwrap();

    // However the layer answers, the client never pays more: read to the end.
    let status = response.status();
    let text = match tokio::time::timeout(Duration::from_secs(60), response.into_body().collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Ok(Err(error)) => format!("<body error: {error}>"),
        Err(_) => "<body never ended>".to_owned(),
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let state = store.load(&ChannelId::new(channel)).await.unwrap().unwrap();
    assert_eq!(
        calls.count(),
        0,
        "the upstream was called for an unpaid prompt ({status}):\n{}",
        &text[..text.len().min(600)]
    );
    assert_eq!((state.spent, state.reserved), (Amount::ZERO, Amount::ZERO), "nothing charged, nothing held");
    let prompt = model.price.cost(Usage { input: chat.prompt_tokens, output: 0 }).unwrap();
    assert!(prompt > Amount::new(unit), "the prompt costs more than the headroom");
    // The layer asked for the prompt in band, and ended the stream with an error when no
    // voucher came.
    assert_eq!(status, StatusCode::OK);
    let need = text.split("\n\n").find(|e| e.starts_with("event: payment-need-voucher")).expect("a need-voucher event");
    let data: serde_json::Value = serde_json::from_str(need.split_once("data: ").unwrap().1).unwrap();
    let required: u128 = data["requiredCumulative"].as_str().unwrap().parse().unwrap();
    assert!(required >= prompt.get(), "asks for at least the prompt: {required} < {prompt}");
    assert!(text.contains("event: payment-error") || text.contains("\"error\""), "ends with an error: {text}");
}
