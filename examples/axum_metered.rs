//! An axum app whose SSE endpoint is paid per event, driven by an in-process client.
//!
//! Run it with `cargo run --example axum_metered`. It prints the whole flow: the 402 and
//! its challenge, opening a channel, the stream pausing with `payment-need-voucher`, the
//! voucher, the stream resuming on the same response, and the final receipt.
//!
//! `DemoCredits` below is a **demo-only** payment method: it believes the amounts the
//! client claims to have paid. It exists to show how a method plugs into the layer; real
//! deployments use a method that verifies payments (signed vouchers, on-chain transfers).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::meter::EventMeter;
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify, is_management_request};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential, Receipt};
use tollgate::{Amount, PaymentError, PaymentErrorKind, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;

/// Demo only: trusts the client's claimed cumulative payment. Never use it for money.
#[derive(Debug)]
struct DemoCredits;

impl PaymentMethod for DemoCredits {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<Value>> {
        let amount = quote.price.output.unit_price().to_string();
        let request = json!({"amount": amount, "unitType": quote.price.unit});
        vec![Offer::mpp("democredits", "session", request).description("demo credits (not real money)")]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, serde_json::Value, serde_json::Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let payload = verify.payload;
        let invalid = || PaymentError::new(PaymentErrorKind::InvalidPayload, "expected {channel, paid}");
        let channel = ChannelId::new(payload["channel"].as_str().ok_or_else(invalid)?);
        let paid: Amount = payload["paid"].as_str().and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
        let unavailable = |_| PaymentError::new(PaymentErrorKind::Unavailable, "store failed");
        store.open(&channel, Amount::ZERO, Amount::new(u128::MAX)).await.map_err(unavailable)?;
        let state = store.accept(&channel, paid, Amount::new(u128::MAX)).await.map_err(unavailable)?;
        let mut receipt = Receipt::new("democredits", channel.as_str());
        receipt.challenge_id = verify.challenge().map(|c| c.id.clone());
        if is_management_request(verify.head) {
            receipt.accepted_cumulative = Some(state.accepted);
            receipt.spent = Some(state.spent);
            return Ok(Verified::Respond(receipt));
        }
        Ok(Verified::Serve(Grant::new(channel, Renewal::Voucher, receipt)))
    }
}

async fn ticker() -> impl IntoResponse {
    let events: String = (1..=8).map(|i| format!("data: tick {i}\n\n")).collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], events)
}

fn authorization(challenge: &Challenge, paid: u128) -> String {
    let payload: Value = json!({"channel": "demo-channel", "paid": paid.to_string()});
    let credential = Credential { challenge: challenge.clone(), payload, source: None };
    credential.to_header_value().to_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    let layer = PaymentLayer::new(
        DemoCredits,
        MemoryStore::new(),
        "demo.local",
        Secret::new("demo-secret-change-me-to-32-random-bytes"),
    )
    .pricing(Price::per_unit("event", Rate::per_unit(Amount::new(10))))
    .meter(EventMeter::default())
    .voucher_window(3)
    .pause_deadline(Duration::from_secs(10));
    let app = Router::new().route("/ticks", get(ticker)).layer(layer);

    let response = app.clone().oneshot(Request::get("/ticks").body(Body::empty()).unwrap()).await.unwrap();
    let challenge = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);
    println!(
        "GET /ticks -> {} with challenge {} (price {} per event)",
        response.status(),
        challenge.id,
        challenge.decode_request().unwrap()["amount"]
    );

    let open = Request::post("/ticks")
        .header(header::AUTHORIZATION, authorization(&challenge, 30))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(open).await.unwrap();
    println!("POST /ticks (open, paid 30) -> {}", response.status());

    let paid = Request::get("/ticks")
        .header(header::AUTHORIZATION, authorization(&challenge, 30))
        .body(Body::empty())
        .unwrap();
    let mut body = app.clone().oneshot(paid).await.unwrap().into_body();
    let mut paid_so_far = 30;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("stream frame").into_data() else { continue };
        let text = String::from_utf8_lossy(&data).into_owned();
        print!("  stream: {}", text.replace("\n\n", "\n").replace('\n', "\n  stream: ").trim_end_matches("  stream: "));
        if text.contains("payment-need-voucher") {
            let need: Value = serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
            paid_so_far = need["requiredCumulative"].as_str().unwrap().parse().unwrap();
            let voucher = Request::post("/ticks")
                .header(header::AUTHORIZATION, authorization(&challenge, paid_so_far))
                .body(Body::empty())
                .unwrap();
            let status = app.clone().oneshot(voucher).await.unwrap().status();
            println!("POST /ticks (voucher, paid {paid_so_far}) -> {status}");
        }
    }
    println!("done: the client paid {paid_so_far}; the receipt above shows what was spent");
}
