//! Pricing by body ([`PriceByBody`]): the core reads the body, capped, prices it, and
//! hands the inner service the very bytes it priced. The same request is quoted the same
//! twice (the quote and the offers it makes), a body over the cap is refused with 413
//! before anything is priced or called, and a challenge for a cheap body never pays for a
//! dear one.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header, request};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::*;
use tollgate::store::MemoryStore;
use tollgate::wire::mpp::Challenge;
use tollgate::{
    Amount, PaymentContext, PaymentError, PaymentErrorKind, PaymentLayer, Price, PriceByBody, Quote, Secret,
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const LIMIT: usize = 64;

/// Every quote the pricing made, in order.
type Quotes = Arc<Mutex<Vec<Quote>>>;

/// What the inner service saw of each paid request: its payment context and its body.
type Seen = Arc<Mutex<Vec<(Option<PaymentContext>, Bytes)>>>;

/// `{"model": "small"|"large", "max_tokens": n}`: 1 or 10 per token, times `max_tokens`.
fn price(_: &request::Parts, body: &Bytes) -> Result<Option<Quote>, PaymentError> {
    let bad = || PaymentError::new(PaymentErrorKind::BadRequest, "not a chat request");
    let json: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let per_token = match json["model"].as_str() {
        Some("small") => 1,
        Some("large") => 10,
        _ => return Ok(None),
    };
    let tokens = json["max_tokens"].as_u64().ok_or_else(bad)?;
    Ok(Some(Quote::new(Price::per_request(Amount::new(per_token * u128::from(tokens))))))
}

fn service<B>(
    calls: Calls,
    quotes: Quotes,
    seen: Seen,
) -> impl Service<
    Request<B>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = tollgate::BoxError>>,
    Error = Infallible,
> + Clone
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tollgate::BoxError>,
{
    let pricing = PriceByBody(move |head: &request::Parts, body: &Bytes| {
        let quote = price(head, body)?;
        quotes.lock().unwrap().extend(quote.clone());
        Ok(quote)
    });
    let layer = PaymentLayer::new(TestMethod, MemoryStore::new(), REALM, Secret::new(SECRET))
        .pricing(pricing)
        .body_limit(LIMIT);
    ServiceBuilder::new().layer(layer).service(service_fn(move |request: Request<tollgate::RequestBody<B>>| {
        calls.hit();
        let seen = seen.clone();
        async move {
            let context = request.extensions().get::<PaymentContext>().cloned();
            let body = request.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            seen.lock().unwrap().push((context, body));
            Ok::<_, Infallible>(Response::new(Full::from("answer")))
        }
    }))
}

fn chat(body: &str) -> Request<Full<Bytes>> {
    Request::post("/v1/chat").body(Full::from(body.to_owned())).unwrap()
}

fn paid_chat(body: &str, challenge: &Challenge, nonce: &str, amount: u128) -> Request<Full<Bytes>> {
    Request::post("/v1/chat")
        .header(header::AUTHORIZATION, credential(challenge, pay_payload(nonce, amount)))
        .body(Full::from(body.to_owned()))
        .unwrap()
}

/// What a challenge offers, without what makes each one unique (its id, nonce, expiry).
fn offered(challenge: &Challenge) -> (String, String, String, String, Option<String>) {
    let c = challenge;
    (c.realm.clone(), c.method.clone(), c.intent.clone(), c.request.clone(), c.description.clone())
}

#[tokio::test]
async fn the_same_body_is_quoted_the_same_twice_and_the_inner_service_gets_the_bytes_priced() {
    let (calls, quotes, seen) = (Calls::default(), Quotes::default(), Seen::default());
    let svc = service(calls.clone(), quotes.clone(), seen.clone());
    let body = r#"{"model":"small","max_tokens":7}"#;

    let first = svc.clone().oneshot(chat(body)).await.unwrap();
    let second = svc.clone().oneshot(chat(body)).await.unwrap();
    assert_eq!(first.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(second.status(), StatusCode::PAYMENT_REQUIRED);
    let (a, b) = (challenge_of(&first), challenge_of(&second));
    assert_eq!(offered(&a), offered(&b), "the same offers, encoded request and all");
    {
        let quotes = quotes.lock().unwrap();
        assert_eq!(quotes.len(), 2);
        assert_eq!(quotes[0], quotes[1], "the whole quote");
        assert_eq!(quotes[0], Quote::new(Price::per_request(Amount::new(7))));
    }

    // Paying the first challenge: priced a third time, the same; the handler sees that
    // quote and the very bytes that were priced.
    let response = svc.clone().oneshot(paid_chat(body, &a, "n1", 7)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.into_body().collect().await.unwrap();
    assert_eq!(calls.count(), 1);
    let quotes = quotes.lock().unwrap().clone();
    assert_eq!(quotes.len(), 3);
    assert_eq!(quotes[2], quotes[0]);
    let seen = seen.lock().unwrap().clone();
    let (context, received) = &seen[0];
    assert_eq!(context.as_ref().map(|c| &c.quote), Some(&quotes[0]));
    assert_eq!(received, &Bytes::from(body));
}

#[tokio::test]
async fn a_challenge_for_a_cheap_body_never_pays_for_a_dear_one() {
    let (calls, quotes, seen) = (Calls::default(), Quotes::default(), Seen::default());
    let svc = service(calls.clone(), quotes.clone(), seen.clone());
    let cheap = r#"{"model":"small","max_tokens":7}"#;
    let dear = r#"{"model":"large","max_tokens":7}"#;

    let cheap_challenge = challenge_of(&svc.clone().oneshot(chat(cheap)).await.unwrap());
    let dear_challenge = challenge_of(&svc.clone().oneshot(chat(dear)).await.unwrap());
    assert_ne!(cheap_challenge.request, dear_challenge.request, "the body changes the offer");

    // The cheap challenge, paid at its price, sent with the dear body: refused, with the
    // dear body's challenge, and the inner service never runs.
    let response = svc.clone().oneshot(paid_chat(dear, &cheap_challenge, "n1", 7)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(offered(&challenge_of(&response)), offered(&dear_challenge));
    assert_eq!(problem(response).await["type"], problem_type("invalid-challenge"));
    assert_eq!(calls.count(), 0);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_body_over_the_cap_gets_413_and_is_neither_priced_nor_served() {
    let (calls, quotes, seen) = (Calls::default(), Quotes::default(), Seen::default());
    let svc = service(calls.clone(), quotes.clone(), seen.clone());
    let padding = " ".repeat(LIMIT);
    let over = format!(r#"{{"model":"small","max_tokens":7}}{padding}"#);
    assert!(over.len() > LIMIT);

    let response = svc.clone().oneshot(chat(&over)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none(), "no challenge: nothing was priced");
    let problem = problem(response).await;
    assert_eq!(problem["status"], 413);
    assert_eq!(problem["type"], problem_type("bad-request"));

    // The same with a credential (a valid challenge): still 413, nothing charged or called.
    let small = r#"{"model":"small","max_tokens":7}"#;
    let challenge = challenge_of(&svc.clone().oneshot(chat(small)).await.unwrap());
    let response = svc.clone().oneshot(paid_chat(&over, &challenge, "n1", 7)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(quotes.lock().unwrap().len(), 1, "only the small body was priced");
    assert_eq!(calls.count(), 0);

    // A body exactly at the cap is read and priced.
    let at = format!("{small}{}", " ".repeat(LIMIT - small.len()));
    let response = svc.clone().oneshot(chat(&at)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(quotes.lock().unwrap().len(), 2);
}

/// A body of unknown length that arrives in small frames, forever if nobody stops reading.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"model\":")))))
    }
}

#[tokio::test]
async fn a_streamed_body_with_no_length_is_cut_at_the_cap() {
    let (calls, quotes, seen) = (Calls::default(), Quotes::default(), Seen::default());
    let svc = service(calls.clone(), quotes.clone(), seen.clone());
    let response = svc.oneshot(Request::post("/v1/chat").body(Endless).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(quotes.lock().unwrap().is_empty());
    assert_eq!(calls.count(), 0);

    // Frames of a stream that ends under the cap are joined and priced whole.
    let (calls, quotes, seen) = (Calls::default(), Quotes::default(), Seen::default());
    let svc = service(calls, quotes.clone(), seen);
    let body = Pieces(vec![r#"{"model":"#, r#""large","max"#, r#"_tokens":2}"#].into());
    let response = svc.oneshot(Request::post("/v1/chat").body(body).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(quotes.lock().unwrap().as_slice(), [Quote::new(Price::per_request(Amount::new(20)))]);
}

/// A body of unknown length in these frames.
struct Pieces(std::collections::VecDeque<&'static str>);

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(Bytes::from_static(piece.as_bytes())))))
    }
}
