//! An attacker's review of the money-safety fixes (issue 7): each test tries one attack on
//! the fake chain and the memory store. A test marked `#[ignore = "FINDING: …"]` fails on
//! this code; the reason says what is lost and where.

#![cfg(feature = "client")]

mod fake_chain;
mod money_support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use money_support::*;
use tollgate::PaymentError;
use tollgate::client::SessionClient;
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{SessionConfig, TempoSession};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret, Usage};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::fake_chain::FakeChain;

/// The documented run-ahead of one voucher with a window of 4 units: two windows and four
/// units (what `max_voucher_ahead` defaults to).
const BOUND: u128 = PRICE * (2 * 4 + 4);

/// A second server instance over the same store and chain (or the same instance after a
/// restart): its own `TempoSession`, the same secret and realm.
fn second_instance(f: &Fixture) -> Layer {
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, tollgate::method::tempo::PATH_USD, f.payee);
    let method = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    PaymentLayer::new(method, f.store.clone(), "api.test", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
        .meter(EventMeter::default())
        .voucher_window(4)
        .pause_deadline(Duration::from_secs(5))
}

#[tokio::test]
async fn review_v1_close_on_a_second_instance_captures_what_was_delivered() {
    let f = Fixture::v1(4);
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 1_000_000).await;
    let channel = client.channel_id().unwrap();
    let (text, _) = f.stream_paying(40, &mut client, &c).await;
    let delivered = PRICE * text.matches("data: tok").count() as u128;
    assert_eq!(delivered, 40 * PRICE);
    assert!(client.cumulative() > delivered, "an honest v1 client pays a little ahead");

    // The close lands on the other instance behind the load balancer.
    let b = paid_service(second_instance(&f), 0, Duration::ZERO);
    let response = b.oneshot(post(client.close(&c, client.cumulative()).unwrap())).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let on_chain = f.chain.channel_state(channel).unwrap();
    assert!(on_chain.finalized);
    assert!(on_chain.settled <= delivered, "never more than delivered");
    assert!(
        delivered - on_chain.settled <= BOUND,
        "captured {} of {delivered} delivered (bound {BOUND})",
        on_chain.settled
    );
}

/// Pricing by header: `x-upfront` units of upfront (an LLM prompt's upper bound), and
/// `x-price` times the base price per token (a pricier route or model of the same realm).
fn priced(head: &http::request::Parts) -> Result<Option<Quote>, PaymentError> {
    let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let price = PRICE * u128::from(header("x-price").unwrap_or(1));
    Ok(Some(
        Quote::new(Price::per_unit("token", Rate::per_unit(Amount::new(price))))
            .upfront(Usage { input: 0, output: header("x-upfront").unwrap_or(0) }),
    ))
}

type PricedLayer = PaymentLayer<
    TempoSession<FakeChain>,
    MemoryStore,
    fn(&http::request::Parts) -> Result<Option<Quote>, PaymentError>,
    EventMeter,
>;

/// The fixture's v1 session with upfronts asked for in the stream; the service streams
/// `x-tokens` events.
fn upfront_service(f: &Fixture) -> PaidService {
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, tollgate::method::tempo::PATH_USD, f.payee);
    let method = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    let pricing: fn(&http::request::Parts) -> Result<Option<Quote>, PaymentError> = priced;
    let layer: PricedLayer = PaymentLayer::new(method, f.store.clone(), "api.test", Secret::new(SECRET))
        .pricing(pricing)
        .meter(EventMeter::default())
        .voucher_window(4)
        .pause_deadline(Duration::from_secs(5))
        .upfront_in_stream();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<tollgate::RequestBody<Body>>| async move {
            let tokens = req.headers().get("x-tokens").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
            Ok::<_, Infallible>(token_stream(tokens, Duration::ZERO))
        },
    ));
    tower::util::BoxCloneSyncService::new(svc.map_response(|r: Response<_>| r.map(Body::new)))
}

fn content(auth: http::HeaderValue, upfront: u64, tokens: usize) -> Request<Body> {
    Request::get("/")
        .header(http::header::AUTHORIZATION, auth)
        .header("x-upfront", upfront.to_string())
        .header("x-tokens", tokens.to_string())
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn scenario_03_review_a_dropped_upfront_ask_does_not_lift_the_run_ahead_bound() {
    let f = Fixture::v1(4);
    let svc = upfront_service(&f);
    let payer = f.payer(1);
    let c = f.challenge().await;
    let mut client = SessionClient::new(payer.clone(), &c).unwrap();
    let open = client.open(&c, 1_000_000, salt(), tx_params()).unwrap();
    assert_eq!(svc.clone().oneshot(post(open)).await.unwrap().status(), StatusCode::NO_CONTENT);
    let channel = client.channel_id().unwrap();

    // A request with a 500-unit upfront the channel cannot cover: the layer answers 200 and
    // asks for the upfront in the stream. Read the ask, then hang up.
    let retry = client.voucher(&c, client.cumulative()).unwrap();
    let response = svc.clone().oneshot(content(retry, 500, 10)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let ask = need_voucher(std::str::from_utf8(&data).unwrap()).expect("the upfront is asked for in the stream");
    drop(body);

    // Once failing: the ask outlived the stream, so the payer could sign exactly what was
    // asked (far ahead of delivery), spend that headroom on plain requests and leave a v1
    // close only the voucher below it. The ask now goes with the stream that made it.
    let answer = client.answer_need_voucher(&c, &ask).unwrap();
    let answered = svc.clone().oneshot(post(answer)).await.unwrap().status();
    assert_eq!(answered, StatusCode::PAYMENT_REQUIRED, "an ask left by a stream that is gone lifts nothing");
    let state = f.state(channel).await;
    assert!(state.accepted.get() <= state.spent.get() + BOUND, "nothing accepted far ahead: {state:?}");
    assert_eq!(state.asked.get(), 0, "the ask was withdrawn with the stream");
}

#[tokio::test]
#[ignore = "FINDING (documented: set max_voucher_ahead on layers with several prices): the \
            default is the window of the route the voucher is posted to; a voucher posted to a pricier route runs far ahead, the headroom is \
            spent on a cheap route, and a v1 close captures only the voucher below it"]
async fn review_v1_a_voucher_posted_to_a_pricier_route_does_not_lift_the_bound() {
    let f = Fixture::v1(4);
    let svc = upfront_service(&f);
    let payer = f.payer(1);
    let c = f.challenge().await;
    let mut client = SessionClient::new(payer.clone(), &c).unwrap();
    let open = client.open(&c, 2_000_000, salt(), tx_params()).unwrap();
    assert_eq!(svc.clone().oneshot(post(open)).await.unwrap().status(), StatusCode::NO_CONTENT);
    let channel = client.channel_id().unwrap();

    // The pricier route's challenge is free; its run-ahead bound is 100 times larger.
    let pricey = Request::get("/").header("x-price", "100").body(Body::empty()).unwrap();
    let response = svc.clone().oneshot(pricey).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let expensive =
        tollgate::wire::mpp::Challenge::parse_all(response.headers().get_all(http::header::WWW_AUTHENTICATE))
            .unwrap()
            .remove(0);
    let far = PRICE + 1_000_000;
    let voucher = client.voucher(&expensive, far).unwrap();
    let request =
        Request::post("/").header(http::header::AUTHORIZATION, voucher).header("x-price", "100").body(Body::empty());
    let answered = svc.clone().oneshot(request.unwrap()).await.unwrap().status();

    // Spent on the cheap route, no voucher needed.
    let retry = client.voucher(&c, client.cumulative()).unwrap();
    let response = svc.clone().oneshot(content(retry, 0, 900)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let delivered = PRICE * text(response).await.matches("data: tok").count() as u128;

    let response = svc.oneshot(post(client.close(&c, client.cumulative()).unwrap())).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let captured = f.chain.channel_state(channel).unwrap().settled;
    assert!(captured <= delivered);
    assert!(
        delivered - captured <= BOUND,
        "voucher {far} ({answered}); captured {captured} of {delivered} delivered (bound {BOUND})"
    );
}

/// A second v2 instance over the fixture's store and chain (or the same one restarted).
fn second_v2_instance(f: &Fixture) -> PaidService {
    let config = SessionConfig::v2(CHAIN_ID, tollgate::method::tempo::PATH_USD, f.payee);
    let method = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    let layer = PaymentLayer::new(method, f.store.clone(), "api.test", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
        .meter(EventMeter::default())
        .voucher_window(2)
        .pause_deadline(Duration::from_secs(5));
    paid_service(layer, 0, Duration::ZERO)
}

#[tokio::test]
async fn review_v2_close_on_an_instance_without_the_descriptor_captures_what_was_delivered() {
    let f = Fixture::v2(2);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(f.payer(1), f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.post(payer.action(&c, "voucher", 7_000)).await.status(), StatusCode::NO_CONTENT);
    let response = f.get(5, payer.action(&c, "voucher", 7_000)).await;
    let delivered = PRICE * text(response).await.matches("data: tok").count() as u128;
    assert_eq!(delivered, 5_000);

    // The close (with its descriptor, as mppx sends it) reaches an instance that never saw
    // this channel: another replica, or this one after a restart.
    let b = second_v2_instance(&f);
    let response = b.oneshot(post(payer.action(&c, "close", 7_000))).await.unwrap();
    let status = response.status();
    assert_eq!(f.chain.balance(f.payee), delivered, "the close captured what was delivered ({status})");
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.chain.channel_state(payer.channel).is_none_or(|ch| ch.finalized || ch.deposit == 0), "closed on chain");
}

#[tokio::test]
async fn review_v2_forced_close_after_a_restart_is_captured() {
    let f = Fixture::v2(2);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(f.payer(1), f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.post(payer.action(&c, "voucher", 7_000)).await.status(), StatusCode::NO_CONTENT);
    let response = f.get(5, payer.action(&c, "voucher", 7_000)).await;
    let delivered = PRICE * text(response).await.matches("data: tok").count() as u128;
    assert_eq!(delivered, 5_000);

    // The server restarts (same store, same chain); the payer asks the chain for a close.
    let config = SessionConfig::v2(CHAIN_ID, tollgate::method::tempo::PATH_USD, f.payee);
    let restarted = TempoSession::new(config, f.chain.clone()).channel_state_ttl(Duration::ZERO);
    f.chain.request_close(payer.channel);
    let report = restarted.settle_all(&f.store, 0).await;
    assert_eq!(f.chain.balance(f.payee), delivered, "captured before the grace period ends ({report:?})");
}

#[tokio::test]
async fn review_v2_a_stale_close_on_an_instance_without_the_vouchers_captures_what_was_delivered() {
    let f = Fixture::v2(2);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(f.payer(1), f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.post(payer.action(&c, "voucher", 7_000)).await.status(), StatusCode::NO_CONTENT);
    let response = f.get(5, payer.action(&c, "voucher", 7_000)).await;
    let delivered = PRICE * text(response).await.matches("data: tok").count() as u128;
    assert_eq!(delivered, 5_000);

    // A close with the open voucher (below what was delivered) on another instance: the
    // spec wants a close voucher at or above `spent`. Once refused here (the instance held
    // no higher voucher); since issue 10 every instance finds the payer's highest voucher
    // in the store, so the close captures exactly what was delivered.
    let b = second_v2_instance(&f);
    let stale = b.clone().oneshot(post(payer.action(&c, "close", PRICE))).await.unwrap();
    assert_eq!(stale.status(), StatusCode::NO_CONTENT, "the stored voucher covers the delivery");
    assert_eq!(f.chain.balance(f.payee), delivered, "exactly what was delivered");
    assert!(f.state(payer.channel).await.finalized);
}

mod charge {
    //! Pull charges over the fake chain.

    use alloy::primitives::{Address, B256, U256};
    use alloy::signers::local::PrivateKeySigner;
    use alloy::sol_types::SolCall;
    use http::{Request, StatusCode, header};
    use tollgate::method::tempo::tx::TempoTxBuilder;
    use tollgate::method::tempo::{ChargeConfig, PATH_USD, SessionProtocol, TempoCharge, attribution_memo};
    use tollgate::store::MemoryStore;
    use tollgate::wire::mpp::{Challenge, Credential};
    use tollgate::{Amount, PaymentLayer, Price, Secret};
    use tower::ServiceExt;

    use crate::fake_chain::FakeChain;
    use crate::money_support::{CHAIN_ID, ESCROW, SECRET};

    alloy::sol! {
        interface ITip20 {
            function transferWithMemo(address to, uint256 amount, bytes32 memo) external returns (bool);
        }
    }

    #[tokio::test]
    async fn review_a_pull_charge_valid_until_the_end_of_time_does_not_panic() {
        let payee = Address::repeat_byte(0x11);
        let chain = FakeChain::new(SessionProtocol::V1, CHAIN_ID, ESCROW, PATH_USD, payee);
        let charge = TempoCharge::new(ChargeConfig::new(CHAIN_ID, PATH_USD, payee), chain.clone()).unwrap();
        let layer = PaymentLayer::new(charge, MemoryStore::new(), "api.test", Secret::new(SECRET))
            .pricing(Price::per_request(Amount::new(1_000)));
        let svc = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn(
            |_req: Request<tollgate::RequestBody<axum::body::Body>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from("paid")))
            },
        ));
        let get = |credential: Option<Credential>| {
            let mut request = Request::get("/").body(axum::body::Body::empty()).unwrap();
            if let Some(credential) = credential {
                request.headers_mut().insert(header::AUTHORIZATION, credential.to_header_value());
            }
            request
        };
        let response = svc.clone().oneshot(get(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        let challenge = Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0);

        let payer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
        let memo = attribution_memo("api.test", None, &challenge.id);
        let transfer = ITip20::transferWithMemoCall { to: payee, amount: U256::from(1_000u64), memo }.abi_encode();
        let raw = TempoTxBuilder::new(CHAIN_ID)
            .call(PATH_USD, transfer)
            .fee_token(PATH_USD)
            .nonce(U256::ZERO, 0)
            .valid_before(u64::MAX)
            .gas_limit(1_000_000)
            .fees(1, 1)
            .sign(&payer)
            .unwrap();
        let payload =
            serde_json::json!({"type": "transaction", "signature": format!("0x{}", alloy::hex::encode(&raw))});
        let credential = Credential { challenge, payload, source: None };
        // A panic here would kill the connection's task instead of answering.
        let answer = tokio::spawn(svc.oneshot(get(Some(credential)))).await;
        let response = answer.expect("no panic from an untrusted validBefore").unwrap();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "refused: valid after the challenge expires");
    }
}

#[tokio::test]
async fn review_a_close_with_an_endless_drain_timeout_does_not_panic() {
    // `Duration::MAX` reads as "wait as long as it takes"; it must not panic the close
    // after the store was finalized (a stranded, closing channel).
    let f = Fixture::with(4, |config| config, |session| session.close_drain_timeout(Duration::MAX));
    let payer = f.payer(1);
    let (mut client, c) = f.open(&payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let (_, _) = f.stream_paying(3, &mut client, &c).await;
    let close = client.close(&c, client.cumulative()).unwrap();
    let service = f.service(0);
    let answer = tokio::spawn(async move { service.oneshot(post(close)).await }).await;
    let response = answer.expect("no panic in the close").unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(f.chain.channel_state(channel).unwrap().finalized);
}

#[tokio::test]
async fn review_an_endless_ask_does_not_panic() {
    let f = Fixture::v1(4);
    let (client, _) = f.open(&f.payer(1), 100_000).await;
    let id = store_id(client.channel_id().unwrap());
    let store = f.store.clone();
    let asked =
        tokio::spawn(
            async move { store.ask(&id, tollgate::store::AskId::new(), Amount::new(PRICE), Duration::MAX).await },
        )
        .await;
    assert!(asked.expect("no panic").is_ok());
}

alloy::sol! {
    struct ReserveDescriptor {
        address payer;
        address payee;
        address operator;
        address token;
        bytes32 salt;
        address authorizedSigner;
        bytes32 expiringNonceHash;
    }
    function topUp(ReserveDescriptor descriptor, uint96 additionalDeposit) external;
}

#[tokio::test]
async fn review_v2_top_up_on_an_instance_without_the_descriptor_is_served() {
    let f = Fixture::v2(2);
    let signer = f.payer(1);
    let c = f.challenge().await;
    let (payer, open) = V2Payer::open(signer.clone(), f.payee, &c, 100_000);
    assert_eq!(f.post(open).await.status(), StatusCode::NO_CONTENT);

    // The payer tops up through another replica (or after a restart), as mppx sends it.
    let d = payer.descriptor;
    let descriptor = ReserveDescriptor {
        payer: d.payer,
        payee: d.payee,
        operator: d.operator,
        token: d.token,
        salt: d.salt,
        authorizedSigner: d.authorized_signer,
        expiringNonceHash: d.expiring_nonce_hash,
    };
    let call = topUpCall { descriptor, additionalDeposit: alloy::primitives::Uint::<96, 2>::from(50_000u64) };
    let raw = tollgate::method::tempo::tx::TempoTxBuilder::new(CHAIN_ID)
        .call(tollgate::method::tempo::CHANNEL_RESERVE, alloy::sol_types::SolCall::abi_encode(&call))
        .fee_token(tollgate::method::tempo::PATH_USD)
        .expiring(4_000_000_001)
        .gas_limit(1_000_000)
        .fees(1, 1)
        .sign(&signer)
        .unwrap();
    let payload = serde_json::json!({
        "action": "topUp", "type": "transaction", "channelId": payer.channel,
        "transaction": format!("0x{}", alloy::hex::encode(&raw)), "descriptor": payer.descriptor,
        "additionalDeposit": "50000",
    });
    let response = second_v2_instance(&f).oneshot(post(payer.credential(&c, payload))).await.unwrap();
    let status = response.status();
    assert_eq!(status, StatusCode::NO_CONTENT, "{}", text(response).await);
    assert_eq!(f.state(payer.channel).await.deposit, Amount::new(150_000));
}
