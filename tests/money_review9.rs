//! Attack review of issue 9's reshaping (typed methods, management before pricing, x402
//! wire forms, metering reshaped): each finding as a regression test, `finding_NN_…`.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use http::StatusCode;
use money_support::*;
use tollgate::Amount;

/// The amount a session offers for a whole request (the `amount` hook): fifty units.
const WHOLE: u128 = 50 * PRICE;

/// A v1 session whose offers ask for a whole request's maximum (`TempoSession::amount`),
/// with no configured run-ahead bound: streams ask a window of 64 units.
fn whole_request_session() -> Fixture {
    Fixture::with(64, |config| config, |session| session.amount(|_| Some(Amount::new(WHOLE))))
}

#[tokio::test]
async fn finding_01_a_management_voucher_runs_no_further_ahead_than_a_content_one() {
    // With the `amount` hook the challenge's `amount` is a whole request's maximum, not a
    // unit price. A content request's voucher may run two windows at the quote's rate plus
    // four `amount`s ahead of delivery (64 units each window: 128 + 200 units). The
    // management path, priced by nothing, took the window at the challenge's `amount`:
    // 64 × 50 units a window, so a v1 payer could park a voucher thousands of units ahead,
    // consume up to just below it and close: the payee captures the voucher before it.
    let f = whole_request_session();
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 8_000 * PRICE).await;
    let channel = client.channel_id().unwrap();
    let accepted = f.state(channel).await.accepted;

    // Far ahead (1 000 units over what was accepted, nothing delivered): the content path
    // refuses it...
    let far = accepted.get() + 1_000 * PRICE;
    let response = f.get(1, client.voucher(&c, far).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "content path refuses a voucher that far ahead");
    assert_eq!(f.state(channel).await.accepted, accepted);
    // ... and so must the management path.
    let response = f.post(client.voucher(&c, far).unwrap()).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "management path refuses it too");
    assert_eq!(f.state(channel).await.accepted, accepted, "nothing changed");

    // An honest management voucher (one more `amount`, as mppx signs) still goes through.
    let mut honest = tollgate::client::SessionClient::with_channel(payer, &c, channel, accepted.get()).unwrap();
    let response = f.post(honest.voucher(&c, accepted.get() + WHOLE).unwrap()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.state(channel).await.accepted, Amount::new(accepted.get() + WHOLE));
}

#[tokio::test]
async fn finding_02_a_post_whose_body_has_content_is_never_a_management_request() {
    // HTTP/1.1 without `Content-Length` or `Transfer-Encoding` has no body on the wire, but
    // in process a layer in front (request decompression, say) drops `Content-Length` and
    // hands on a body that has content. Such a request was classified by its headers
    // alone as a bodiless management request: recognised before pricing, priced as
    // bodiless, and (for the session) answered 204 instead of served. Whether the body is
    // known empty is the body's to say.
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100 * PRICE).await;
    let auth = client.voucher(&c, 5 * PRICE).unwrap();
    let request = http::Request::post("/")
        .header(http::header::AUTHORIZATION, auth)
        .body(axum::body::Body::from(r#"{"prompt":"a request with content"}"#))
        .unwrap();
    assert!(request.headers().get(http::header::CONTENT_LENGTH).is_none());
    let response = tower::ServiceExt::oneshot(f.service(2), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "served as content, metered");
    let text = text(response).await;
    assert!(text.contains("tok1"), "{text}");
    let state = f.state(client.channel_id().unwrap()).await;
    assert_eq!(state.spent, Amount::new(2 * PRICE), "charged for what it delivered");
}
