//! A payment method written for the tests, and helpers to drive the layer.
//!
//! `TestMethod` ("test"/"session") mirrors a payment-channel session without signatures:
//! `open` creates a channel, `voucher` raises what it has paid for, `pay` is a one-shot
//! payment claimed by its nonce. A payload `signature` must read `ok`.

#![allow(dead_code)]

pub mod lapsing;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::method::{Grant, Offer, PaymentMethod, Renewal, Verified, Verify, is_management_request};
use tollgate::store::{ChannelId, ChannelStore, StoreErrorKind};
use tollgate::wire::mpp::{Challenge, Credential, Receipt};
use tollgate::{Amount, PaymentError, PaymentErrorKind, Quote};

pub const SECRET: &str = "test-secret-of-at-least-32-bytes!";
pub const REALM: &str = "api.test";

#[derive(Debug, Default)]
pub struct TestMethod;

impl PaymentMethod for TestMethod {
    type Request = Value;
    type Payload = Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<Value>> {
        let request = json!({
            "amount": quote.price.output.unit_price().to_string(),
            "currency": "test-usd",
            "unitType": quote.price.unit,
        });
        vec![Offer::mpp("test", "session", request).description("test session")]
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, serde_json::Value, serde_json::Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        let payload = verify.payload;
        let field = |name: &str| payload.get(name).and_then(Value::as_str);
        let amount = |name: &str| -> Result<Amount, PaymentError> {
            field(name)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| PaymentError::new(PaymentErrorKind::InvalidPayload, format!("{name} missing")))
        };
        if field("signature") != Some("ok") {
            return Err(PaymentError::new(PaymentErrorKind::InvalidSignature, "bad signature"));
        }
        let challenge_id = verify.challenge().map(|c| c.id.clone()).unwrap_or_default();
        let mut receipt = Receipt::new("test", "ref");
        receipt.intent = Some("session".into());
        receipt.challenge_id = Some(challenge_id);
        let (channel, renewal) = match field("action") {
            Some("open") => {
                let channel = ChannelId::new(field("channel").unwrap_or_default());
                store.open(&channel, amount("cumulative")?, amount("deposit")?).await.map_err(store_error)?;
                (channel, Renewal::Voucher)
            }
            Some("voucher") => {
                let channel = ChannelId::new(field("channel").unwrap_or_default());
                store.accept(&channel, amount("cumulative")?, amount("deposit")?).await.map_err(store_error)?;
                (channel, Renewal::Voucher)
            }
            Some("pay") => {
                // One-shot: the nonce names a fresh account, claimed atomically; a second
                // use (even a concurrent one) is a replay.
                let channel = ChannelId::new(format!("pay:{}", field("nonce").unwrap_or_default()));
                let paid = amount("amount")?;
                store.create(&channel, paid, paid).await.map_err(|e| match e.kind() {
                    StoreErrorKind::Exists => {
                        PaymentError::new(PaymentErrorKind::VerificationFailed, "payment already used")
                    }
                    _ => store_error(e),
                })?;
                (channel, Renewal::Never)
            }
            _ => return Err(PaymentError::new(PaymentErrorKind::InvalidPayload, "unknown action")),
        };
        receipt.reference = channel.to_string();
        if renewal == Renewal::Voucher && is_management_request(verify.head) {
            let state = store.load(&channel).await.map_err(store_error)?.unwrap_or_default();
            receipt.channel_id = Some(channel.to_string());
            receipt.accepted_cumulative = Some(state.accepted);
            receipt.spent = Some(state.spent);
            return Ok(Verified::Respond(receipt));
        }
        Ok(Verified::Serve(Grant::new(channel, renewal, receipt).payer("tester")))
    }
}

fn store_error(e: tollgate::store::StoreError) -> PaymentError {
    match e.kind() {
        StoreErrorKind::NotFound => PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"),
        StoreErrorKind::Finalized => PaymentError::new(PaymentErrorKind::ChannelFinalized, "closed"),
        StoreErrorKind::Invalid => PaymentError::new(PaymentErrorKind::AmountExceedsDeposit, "over deposit"),
        _ => PaymentError::new(PaymentErrorKind::Unavailable, "store down"),
    }
}

/// The first challenge of a 402.
pub fn challenge_of<B>(response: &Response<B>) -> Challenge {
    let mut all = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).expect("challenges parse");
    assert!(!all.is_empty(), "a 402 carries a challenge");
    all.remove(0)
}

/// An `Authorization: Payment` value answering `challenge` with `payload`.
pub fn credential(challenge: &Challenge, payload: Value) -> HeaderValue {
    Credential { challenge: challenge.clone(), payload, source: None }.to_header_value()
}

pub fn open_payload(channel: &str, cumulative: u128, deposit: u128) -> Value {
    json!({"action": "open", "channel": channel, "cumulative": cumulative.to_string(), "deposit": deposit.to_string(), "signature": "ok"})
}

pub fn voucher_payload(channel: &str, cumulative: u128, deposit: u128) -> Value {
    json!({"action": "voucher", "channel": channel, "cumulative": cumulative.to_string(), "deposit": deposit.to_string(), "signature": "ok"})
}

pub fn pay_payload(nonce: &str, amount: u128) -> Value {
    json!({"action": "pay", "nonce": nonce, "amount": amount.to_string(), "signature": "ok"})
}

/// A GET (content request) to `uri`.
pub fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::default()).unwrap()
}

/// A bodiless POST (management request) carrying a credential.
pub fn management(uri: &str, authorization: HeaderValue) -> Request<Full<Bytes>> {
    Request::post(uri).header(header::AUTHORIZATION, authorization).body(Full::default()).unwrap()
}

/// The problem JSON of a refusal.
pub async fn problem<B>(response: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn problem_type(suffix: &str) -> String {
    format!("https://paymentauth.org/problems/{suffix}")
}

/// Counts how often the inner service ran.
#[derive(Clone, Default, Debug)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn ok_status<B>(response: &Response<B>) {
    assert_eq!(response.status(), StatusCode::OK);
}

/// A response body fed by the test through a channel, frame by frame.
#[derive(Debug)]
pub struct ChannelBody {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, &'static str>>,
}

pub fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Result<Bytes, &'static str>>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (tx, ChannelBody { rx })
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = tollgate::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(http_body::Frame::data).map_err(Into::into)))
    }
}

/// A body of fixed frames that reports its end on the last data frame and panics if it is
/// polled after that (as a consumer that trusts `is_end_stream` would never do).
#[derive(Debug)]
pub struct FramesBody {
    frames: std::collections::VecDeque<Bytes>,
}

impl FramesBody {
    pub fn new<I: IntoIterator<Item = B>, B: Into<Bytes>>(frames: I) -> Self {
        FramesBody { frames: frames.into_iter().map(Into::into).collect() }
    }
}

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = tollgate::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = self.frames.pop_front().expect("polled after is_end_stream() said the body ended");
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// `data: <n>\n\n` events numbered from `from`.
pub fn events(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("data: {i}\n\n")).collect()
}
