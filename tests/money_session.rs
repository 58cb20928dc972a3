//! Money safety of Tempo sessions (issue 7), on the fake chain and the memory store: every
//! attack or failure of the issue as a regression test, named after its scenario.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

#[path = "money_session/close.rs"]
mod close;
#[path = "money_session/late_voucher.rs"]
mod late_voucher;
#[path = "money_session/settle.rs"]
mod settle;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use fake_chain::Kind;
use http::StatusCode;
use money_support::*;
use serde_json::json;
use tollgate::Amount;
use tollgate::client::SessionClient;
use tollgate::method::{PaymentMethod, Verified, Verify};
use tollgate::store::ChannelStore;
use tollgate::wire::mpp::Credential;
use tollgate::{Price, Quote, Rate};
use tower::ServiceExt;

#[tokio::test]
async fn fake_chain_runs_open_stream_close_with_exact_balances() {
    // Window 0: a voucher per token, so v1 can capture exactly what was delivered.
    let f = Fixture::v1(0);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.chain.balance(f.chain.escrow()), 100_000);
    assert_eq!(f.chain.calls(Kind::Broadcast), 1);

    let (text, _) = f.stream_paying(20, &mut client, &c).await;
    assert_eq!(text.matches("data: tok").count(), 20);
    let spent = PRICE * 20;
    assert_eq!(f.state(channel).await.spent, Amount::new(spent));

    let close = client.close(&c, client.cumulative()).unwrap();
    let response = f.post(close).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert_eq!(on_chain.settled, spent);
    assert_eq!(f.chain.balance(f.payee), spent);
    assert_eq!(f.chain.balance(payer.address()), FUNDS - spent);
    assert_eq!(f.chain.balance(f.chain.escrow()), 0);
    assert_eq!(f.chain.total(), FUNDS, "tokens only moved");
}

/// An open credential for `channel` that proves nothing: junk transaction, a signature by
/// someone else.
fn junk_open(
    c: &tollgate::wire::mpp::Challenge,
    attacker: &PrivateKeySigner,
    channel: B256,
    amount: u128,
) -> http::HeaderValue {
    let mut theirs = SessionClient::with_channel(attacker.clone(), c, channel, 0).unwrap();
    let voucher = theirs.voucher(c, amount).unwrap();
    let credential = tollgate::wire::mpp::Credential::from_headers(&http::HeaderMap::from_iter([(
        http::header::AUTHORIZATION,
        voucher,
    )]))
    .unwrap()
    .unwrap();
    let payload = json!({
        "action": "open", "type": "transaction", "channelId": channel, "transaction": "0x76c0",
        "cumulativeAmount": amount.to_string(), "signature": credential.payload["signature"],
    });
    raw_credential(c, payload, None)
}

#[tokio::test]
async fn scenario_01_open_retry_on_someone_elses_channel_is_refused() {
    let f = Fixture::v1(4);
    let victim = f.payer(1);
    let (mut client, c) = f.open(&victim, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 10_000).unwrap()).await.status(), StatusCode::NO_CONTENT);
    let before = f.state(channel).await;

    let attacker = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x66)).unwrap();
    // Streaming content on the victim's headroom.
    let response = f.get(10, junk_open(&c, &attacker, channel, 60_000)).await;
    let status = response.status();
    let body = text(response).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "served someone else's channel: {body}");
    assert!(!body.contains("data: tok"));
    // A bodiless POST discloses nothing.
    let response = f.post(junk_open(&c, &attacker, channel, 60_000)).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(receipt(&response).is_none(), "no receipt to an unproven request");
    assert!(!text(response).await.contains("10000"), "the victim's accepted amount is not disclosed");
    // Even the victim's own signature on a stale amount is no proof of the current state.
    let stale = junk_open(&c, &victim, channel, 1_000);
    assert_eq!(f.post(stale).await.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(f.state(channel).await, before, "nothing changed");

    // A genuine retried open (its first answer was lost) is still answered.
    let payer = f.payer(2);
    let c = f.challenge().await;
    let mut client = SessionClient::new(payer.clone(), &c).unwrap();
    let open = client.open(&c, 100_000, salt(), tx_params()).unwrap();
    assert_eq!(f.post(open.clone()).await.status(), StatusCode::NO_CONTENT);
    let retried = f.post(open).await;
    assert_eq!(retried.status(), StatusCode::NO_CONTENT, "an honest retry is served");
    assert_eq!(receipt(&retried).unwrap().accepted_cumulative, Some(Amount::new(PRICE)));
}

#[tokio::test]
async fn scenario_03_one_big_voucher_cannot_run_far_ahead_of_delivery() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let deposit = 1_000_000;
    let (mut client, c) = f.open(&payer, deposit).await;
    let channel = client.channel_id().unwrap();
    // One voucher for the whole deposit, nothing delivered yet.
    let response = f.post(client.voucher(&c, deposit).unwrap()).await;
    let refused = response.status() == StatusCode::PAYMENT_REQUIRED;
    if refused {
        // Honest vouchers, as asked, pay for the stream.
        client = SessionClient::with_channel(payer.clone(), &c, channel, PRICE).unwrap();
    }
    let (text, _) = f.stream_paying(999, &mut client, &c).await;
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert_eq!(delivered, 999_000);
    let response = f.post(client.close(&c, client.cumulative()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let captured = f.chain.channel_state(channel).unwrap().settled;
    assert!(captured <= delivered, "never more than delivered");
    // The documented bound: the run-ahead of one voucher (two windows and four units here).
    let bound = PRICE * (2 * 4 + 4);
    assert!(delivered - captured <= bound, "captured {captured} of {delivered} delivered");
    assert!(refused, "a voucher far ahead of delivery is refused");
}

#[tokio::test]
async fn scenario_14_a_replayed_voucher_without_proof_gets_no_receipt() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    assert_eq!(f.post(client.voucher(&c, 5_000).unwrap()).await.status(), StatusCode::NO_CONTENT);
    // Equal amount, bad signature, no source.
    let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": "5000",
                         "signature": format!("0x{}", "11".repeat(65))});
    let response = f.post(raw_credential(&c, payload, None)).await;
    assert_ne!(response.status(), StatusCode::NO_CONTENT);
    assert!(receipt(&response).is_none(), "no receipt for an unverified voucher");
    // Unsigned vouchers below and above what was accepted get the same answer: the
    // accepted amount cannot be probed.
    let mut answers = Vec::new();
    for amount in ["4000", "6000"] {
        let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": amount,
                             "signature": format!("0x{}", "11".repeat(65))});
        answers.push(problem_type(f.post(raw_credential(&c, payload, None)).await).await);
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn scenario_14_an_http2_post_with_a_body_and_no_length_is_content() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let request = http::Request::post("/")
        .version(http::Version::HTTP_2)
        .header(http::header::AUTHORIZATION, client.voucher(&c, 5_000).unwrap())
        .body(axum::body::Body::new(OneFrame(Some(b"{\"q\":1}"))))
        .unwrap();
    let response = f.service(3).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "content, served and charged as content");
    assert_eq!(text(response).await.matches("data: tok").count(), 3);
    assert_eq!(f.state(channel).await.spent, Amount::new(3 * PRICE));
    // The same POST with an empty body (END_STREAM on its headers) is management.
    let request = http::Request::post("/")
        .version(http::Version::HTTP_2)
        .header(http::header::AUTHORIZATION, client.voucher(&c, 6_000).unwrap())
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(f.service(3).oneshot(request).await.unwrap().status(), StatusCode::NO_CONTENT);
}

/// A body of one frame whose end is not known up front (as an HTTP/2 stream's).
struct OneFrame(Option<&'static [u8]>);

impl http_body::Body for OneFrame {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|d| Ok(http_body::Frame::data(bytes::Bytes::from_static(d)))))
    }
}

#[tokio::test]
async fn scenario_14_grant_payer_is_the_verified_channel_payer() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    // A content request whose credential names someone else as `source`, or no one: the
    // grant names the payer the chain knows.
    let voucher = client.voucher(&c, 3_000).unwrap();
    let mut credential =
        Credential::from_headers(&http::HeaderMap::from_iter([(http::header::AUTHORIZATION, voucher)]))
            .unwrap()
            .unwrap();
    let expected = format!("did:pkh:eip155:{CHAIN_ID}:{}", payer.address());
    let session = f.layer.method().clone();
    let head = http::Request::get("/").body(()).unwrap().into_parts().0;
    let request: tollgate::method::tempo::SessionRequest =
        serde_json::from_value(credential.challenge.decode_request().unwrap()).unwrap();
    let payload: tollgate::method::tempo::SessionPayload = serde_json::from_value(credential.payload.clone()).unwrap();
    let quote = Quote::new(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))));
    for source in [None, Some(format!("did:pkh:eip155:{CHAIN_ID}:{}", payer.address().to_string().to_lowercase()))] {
        credential.source = source;
        let presented = tollgate::wire::Presented::Mpp(credential.clone());
        let verify = Verify::new(&presented, &request, &payload, &head, Some(&quote));
        let Verified::Serve(grant) = PaymentMethod::verify(&*session, verify, &f.store).await.unwrap() else {
            panic!("a content request is served")
        };
        assert_eq!(grant.payer_id(), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn scenario_03_min_voucher_delta_defaults_to_one_unit() {
    let f = Fixture::v1(4);
    let (mut client, c) = f.open(&f.payer(1), 100_000).await;
    let channel = client.channel_id().unwrap();
    let response = f.post(client.voucher(&c, PRICE + PRICE / 2).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(problem_type(response).await, "session/delta-too-small");
    assert_eq!(f.state(channel).await.accepted, Amount::new(PRICE));
    assert_eq!(f.post(client.voucher(&c, 2 * PRICE).unwrap()).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(start_paused = true)]
async fn scenario_03_a_voucher_may_run_up_to_what_a_live_stream_asked() {
    // The layer asks for more than the run-ahead bound when an upfront (a prompt) or a
    // hidden-output allowance is larger than a window; the store remembers the ask for a
    // while, and a voucher answering it is accepted. Without an ask, or once it lapsed,
    // the same voucher is refused.
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let id = store_id(client.channel_id().unwrap());
    let far = 100 * PRICE;
    let refused = f.post(client.voucher(&c, far).unwrap()).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED, "no ask: far ahead of delivery");
    assert_eq!(f.store.load(&id).await.unwrap().unwrap().accepted, Amount::new(PRICE), "nothing accepted");

    f.store.ask(&id, tollgate::store::AskId::new(), Amount::new(far), std::time::Duration::from_secs(5)).await.unwrap();
    let asked = f.post(client.voucher(&c, far).unwrap()).await;
    assert_eq!(asked.status(), StatusCode::NO_CONTENT, "a voucher answering a live ask is accepted");
    assert_eq!(f.store.load(&id).await.unwrap().unwrap().accepted, Amount::new(far));

    // Beyond the ask (and the run-ahead bound) it is refused again; so is any voucher once
    // the ask lapsed.
    let beyond = f.post(client.voucher(&c, far + 50 * PRICE).unwrap()).await;
    assert_eq!(beyond.status(), StatusCode::PAYMENT_REQUIRED);
    tokio::time::advance(std::time::Duration::from_secs(6)).await;
    let lapsed = f.post(client.voucher(&c, far + 20 * PRICE).unwrap()).await;
    assert_eq!(lapsed.status(), StatusCode::PAYMENT_REQUIRED, "the ask lapsed");
    assert_eq!(f.store.load(&id).await.unwrap().unwrap().accepted, Amount::new(far));
}

#[tokio::test]
async fn scenario_03_a_stream_asking_more_than_the_run_ahead_bound_is_still_paid() {
    // The stream asks for a window of 100 units while a voucher may run only 5 ahead on its
    // own: the ask is recorded in the store before the need-voucher goes out, so the
    // payer's answer is accepted and the stream completes.
    let f = Fixture::with(100, |config| config.max_voucher_ahead(Amount::new(5 * PRICE)), |session| session);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let (text, vouchers) = f.stream_paying(150, &mut client, &c).await;
    assert_eq!(text.matches("data: tok").count(), 150, "every token paid and delivered");
    assert!(vouchers >= 1, "the stream paused for a voucher");
    let state = f.state(client.channel_id().unwrap()).await;
    assert_eq!((state.spent, state.reserved), (Amount::new(150 * PRICE), Amount::ZERO));
    assert!(state.accepted > Amount::new(100 * PRICE), "a voucher far ahead of delivery, as asked, was accepted");
}

/// A route that can price nothing without its body (and counts how often it is asked).
#[derive(Clone, Default)]
struct NeedsBody(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl tollgate::Pricing for NeedsBody {
    fn quote(
        &self,
        _: &http::request::Parts,
        _: Option<&bytes::Bytes>,
    ) -> Result<Option<Quote>, tollgate::PaymentError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(tollgate::PaymentError::new(tollgate::PaymentErrorKind::Unpriced, "priced by the body only"))
    }
}

#[tokio::test]
async fn issue9_a_sessions_management_requests_are_verified_without_pricing() {
    // The session recognises its own bodiless voucher and close before pricing: checked by
    // HMAC, realm, expiry and its own rules, with no price for the route.
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let pricing = NeedsBody::default();
    let layer = f.layer.clone().pricing(pricing.clone());
    let svc = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn(|_: http::Request<_>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from("content")))
    }));
    let response = svc.clone().oneshot(post(client.voucher(&c, 2 * PRICE).unwrap())).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.state(client.channel_id().unwrap()).await.accepted, Amount::new(2 * PRICE));
    // The session's own rules still hold: too small a step is refused (no challenge can be
    // priced, so the problem comes alone), and nothing changes.
    let response = svc.clone().oneshot(post(client.voucher(&c, 2 * PRICE + 1).unwrap())).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "https://paymentauth.org/problems/session/delta-too-small");
    assert_eq!(f.state(client.channel_id().unwrap()).await.accepted, Amount::new(2 * PRICE));
    let asked = pricing.0.load(std::sync::atomic::Ordering::SeqCst);
    // A challenge forged with another secret is not recognised: it is priced like any
    // request (here: refused, since nothing can be priced without a body).
    let forged = {
        let mut forged = c.clone();
        forged.id =
            tollgate::wire::mpp::ChallengeSigner::new("another secret of thirty-two bytes!!").id(&forged.fields());
        client.voucher(&forged, 3 * PRICE).unwrap()
    };
    let response = svc.oneshot(post(forged)).await.unwrap();
    assert_ne!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(pricing.0.load(std::sync::atomic::Ordering::SeqCst), asked + 1, "the forged one was priced");
    assert_eq!(f.state(client.channel_id().unwrap()).await.accepted, Amount::new(2 * PRICE));
}
