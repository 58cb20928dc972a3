//! Tempo v1 sessions with the crate's own paying client, on anvil: the full flow with exact
//! on-chain accounting, and every bad voucher refused with the right problem, nothing
//! charged or lost.

#![cfg(feature = "client")]

mod chain;
mod tempo_support;

use std::convert::Infallible;
use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tempo_support::onchain::{ESCROW, balance, install_escrow};
use tollgate::client::{SessionClient, TxParams};
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{PATH_USD, RpcChain, SessionConfig, TempoSession};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Receipt};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const CHAIN_ID: u64 = 4242;
const SECRET: &str = "tempo-session-test-secret-of-32-bytes+";
const PRICE: u128 = 1_000;

type Layer = PaymentLayer<TempoSession<RpcChain>, MemoryStore, Price, EventMeter>;

struct Fixture {
    anvil: AnvilInstance,
    store: MemoryStore,
    layer: Layer,
}

impl Fixture {
    async fn new(window: u64, ttl: Duration) -> Self {
        let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
        install_escrow(&anvil).await;
        let payee = chain::dev_signer(&anvil, 1);
        // These tests pay ahead on purpose (several streams on one voucher): allow a voucher
        // to run 50 units further ahead of delivery than the default (two windows, four units).
        let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, payee.address())
            .suggested_deposit(Amount::new(100_000))
            .max_voucher_ahead(Amount::new((2 * u128::from(window) + 54) * PRICE));
        let session =
            TempoSession::new(config, RpcChain::new(&anvil.endpoint(), payee).unwrap()).channel_state_ttl(ttl);
        let store = MemoryStore::new();
        let layer = PaymentLayer::new(session, store.clone(), "api.test", Secret::new(SECRET))
            .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
            .meter(EventMeter::default())
            .voucher_window(window)
            .first_voucher_window(window)
            .pause_deadline(Duration::from_millis(800));
        Fixture { anvil, store, layer }
    }

    fn service(&self, tokens: usize) -> PaidService {
        paid_service(self.layer.clone(), tokens)
    }

    async fn tx(&self, signer: &PrivateKeySigner) -> TxParams {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        let nonce = provider.get_transaction_count(signer.address()).await.unwrap();
        let gas_price = provider.get_gas_price().await.unwrap();
        TxParams { nonce, max_fee_per_gas: gas_price * 2, gas_limit: 1_000_000 }
    }

    async fn state(&self, channel: B256) -> tollgate::store::ChannelState {
        self.store.load(&ChannelId::new(format!("{channel:#x}"))).await.unwrap().unwrap()
    }
}

type PaidService = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// The paid service: `/` streams `tokens` SSE events.
fn paid_service(layer: Layer, tokens: usize) -> PaidService {
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Body>>| async move {
            Ok::<_, Infallible>(tempo_support::token_stream(tokens, Duration::ZERO))
        },
    ));
    tower::util::BoxCloneSyncService::new(svc.map_response(|r| r.map(Body::new)))
}

fn get(auth: Option<HeaderValue>) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    if let Some(auth) = auth {
        request.headers_mut().insert(header::AUTHORIZATION, auth);
    }
    request
}

fn post(auth: HeaderValue) -> Request<Body> {
    Request::post("/").header(header::AUTHORIZATION, auth).body(Body::empty()).unwrap()
}

async fn problem_type<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: Value = serde_json::from_slice(&body).unwrap();
    problem["type"].as_str().unwrap().trim_start_matches("https://paymentauth.org/problems/").to_owned()
}

fn receipt(response: &Response<impl http_body::Body>) -> Receipt {
    Receipt::from_header_value(&response.headers()[tollgate::wire::mpp::PAYMENT_RECEIPT]).unwrap()
}

async fn challenge(
    svc: impl Service<Request<Body>, Response = Response<impl http_body::Body>, Error = Infallible>,
) -> Challenge {
    let response = svc.oneshot(get(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0)
}

/// Opens a channel for `payer` with `deposit` through a management POST.
async fn open(f: &Fixture, payer: &PrivateKeySigner, deposit: u128) -> (SessionClient, Challenge) {
    let svc = f.service(0);
    let c = challenge(svc.clone()).await;
    let mut client = SessionClient::new(payer.clone(), &c).unwrap();
    let auth = client.open(&c, deposit, random_b256(), f.tx(payer).await).unwrap();
    let response = svc.oneshot(post(auth)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(receipt(&response).tx_hash.is_some(), "the open receipt names its transaction");
    (client, c)
}

/// Streams with `auth`, answering each need-voucher; returns (text, vouchers sent).
async fn stream_paying(svc: PaidService, client: &mut SessionClient, c: &Challenge) -> (String, usize) {
    let auth = client.voucher(c, client.cumulative()).unwrap();
    let response = svc.clone().oneshot(get(Some(auth))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut text, mut vouchers) = (String::new(), 0);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        let chunk = String::from_utf8(data.to_vec()).unwrap();
        if let Some(at) = chunk.find("event: payment-need-voucher\ndata: ") {
            let data = chunk[at..].lines().nth(1).unwrap().trim_start_matches("data: ").to_owned();
            let answer = client.answer_need_voucher(c, &data).unwrap();
            let response = svc.clone().oneshot(post(answer)).await.unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "voucher accepted");
            vouchers += 1;
        }
        text.push_str(&chunk);
    }
    (text, vouchers)
}

fn final_receipt(text: &str) -> Value {
    let at = text.rfind("event: payment-receipt\ndata: ").expect("a receipt event");
    serde_json::from_str(text[at..].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_streams_1000_tokens_with_few_vouchers_then_tops_up_and_closes_exactly() {
    let f = Fixture::new(256, Duration::from_secs(5)).await;
    let payer = chain::dev_signer(&f.anvil, 3);
    let payee = chain::dev_signer(&f.anvil, 1).address();
    let payee_before = balance(&f.anvil, payee).await;
    let (mut client, c) = open(&f, &payer, 2_000_000).await;
    let channel = client.channel_id().unwrap();

    let svc = f.service(1000);
    let (text, vouchers) = stream_paying(svc.clone(), &mut client, &c).await;
    assert_eq!(text.matches("data: tok").count(), 1000, "every token delivered");
    // 1000 tokens, a window of 256: four round trips, where a one-unit ask would need 999.
    assert_eq!(vouchers, 4, "voucher round trips per 1000 tokens");
    let spent = PRICE * 1000;
    assert_eq!(final_receipt(&text)["spent"], spent.to_string());
    let state = f.state(channel).await;
    assert_eq!((state.spent, state.reserved), (Amount::new(spent), Amount::ZERO));

    let top_up = client.top_up(&c, 500_000, f.tx(&payer).await).unwrap();
    let response = svc.clone().oneshot(post(top_up)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.state(channel).await.deposit, Amount::new(2_500_000));
    assert_eq!(tempo_support::onchain::channel(&f.anvil, channel).await._6, 2_500_000);

    let close = client.close(&c, spent).unwrap();
    let response = svc.oneshot(post(close)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(receipt(&response).tx_hash.is_some());
    let on_chain = tempo_support::onchain::channel(&f.anvil, channel).await;
    assert!(on_chain._0, "finalized");
    assert_eq!(on_chain._7, spent, "captured exactly what was delivered");
    assert_eq!(balance(&f.anvil, payee).await - payee_before, spent, "the payee got exactly what was delivered");
    assert_eq!(balance(&f.anvil, ESCROW).await, 0, "the payer got the rest back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_vouchers_are_refused_and_change_nothing() {
    let f = Fixture::new(0, Duration::from_secs(5)).await;
    let payer = chain::dev_signer(&f.anvil, 4);
    let (mut client, c) = open(&f, &payer, 50_000).await;
    let channel = client.channel_id().unwrap();
    let svc = f.service(0);
    let good = client.voucher(&c, 10_000).unwrap();
    assert_eq!(svc.clone().oneshot(post(good.clone())).await.unwrap().status(), StatusCode::NO_CONTENT);
    let before = f.state(channel).await;

    // Replayed: an idempotent retry, answered with the current state, nothing changes.
    let response = svc.clone().oneshot(post(good)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(receipt(&response).accepted_cumulative, Some(Amount::new(10_000)));
    assert_eq!(f.state(channel).await.version, before.version);
    // Lowered (a concurrent stream's older voucher arriving late): idempotent too (issue 8).
    let response = svc.clone().oneshot(post(voucher_as(&payer, &c, channel, 5_000))).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(receipt(&response).accepted_cumulative, Some(Amount::new(10_000)));
    assert_eq!(f.state(channel).await.version, before.version);

    let forger = PrivateKeySigner::random();
    let cases: Vec<(&str, HeaderValue, StatusCode, &str)> = vec![
        (
            "over deposit",
            voucher_as(&payer, &c, channel, 60_000),
            StatusCode::PAYMENT_REQUIRED,
            "session/amount-exceeds-deposit",
        ),
        (
            "forged (another key, claiming the payer)",
            forged(&forger, &payer, &c, channel, 20_000),
            StatusCode::PAYMENT_REQUIRED,
            "session/invalid-signature",
        ),
        (
            "someone else's channel",
            voucher_as(&forger, &c, channel, 20_000),
            StatusCode::PAYMENT_REQUIRED,
            "session/signer-mismatch",
        ),
        (
            "wrong domain",
            wrong_domain(&payer, &c, channel, 20_000),
            StatusCode::PAYMENT_REQUIRED,
            "session/invalid-signature",
        ),
        (
            "unknown channel",
            voucher_as(&payer, &c, random_b256(), 20_000),
            StatusCode::GONE,
            "session/channel-not-found",
        ),
    ];
    for (case, auth, status, problem) in cases {
        let response = svc.clone().oneshot(post(auth)).await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE), "{case}: a fresh challenge");
        assert_eq!(problem_type(response).await, problem, "{case}");
    }
    let after = f.state(channel).await;
    assert_eq!(
        (after.accepted, after.spent, after.version),
        (before.accepted, before.spent, before.version),
        "nothing changed"
    );
}

fn random_b256() -> B256 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    alloy::primitives::keccak256(format!("{n}:{:?}:{}", std::time::SystemTime::now(), std::process::id()))
}

/// A voucher for `channel` signed by `signer`.
fn voucher_as(signer: &PrivateKeySigner, c: &Challenge, channel: B256, amount: u128) -> HeaderValue {
    SessionClient::with_channel(signer.clone(), c, channel, 0).unwrap().voucher(c, amount).unwrap()
}

/// A voucher signed by `forger` but presented as `payer`'s (source names the payer).
fn forged(
    forger: &PrivateKeySigner,
    payer: &PrivateKeySigner,
    c: &Challenge,
    channel: B256,
    amount: u128,
) -> HeaderValue {
    let signed = voucher_as(forger, c, channel, amount);
    let mut credential =
        tollgate::wire::mpp::Credential::from_headers(&http::HeaderMap::from_iter([(header::AUTHORIZATION, signed)]))
            .unwrap()
            .unwrap();
    credential.source = Some(format!("did:pkh:eip155:{CHAIN_ID}:{}", payer.address()));
    credential.to_header_value()
}

/// A voucher signed for the right channel but another chain id (another EIP-712 domain).
fn wrong_domain(payer: &PrivateKeySigner, c: &Challenge, channel: B256, amount: u128) -> HeaderValue {
    let mut other = c.clone();
    let mut request = other.decode_request().unwrap();
    request["methodDetails"]["chainId"] = serde_json::json!(CHAIN_ID + 1);
    other.request = tollgate::wire::mpp::encode_request(&request);
    let signed = voucher_as(payer, &other, channel, amount);
    let mut credential =
        tollgate::wire::mpp::Credential::from_headers(&http::HeaderMap::from_iter([(header::AUTHORIZATION, signed)]))
            .unwrap()
            .unwrap();
    credential.challenge = c.clone();
    credential.source = Some(format!("did:pkh:eip155:{CHAIN_ID}:{}", payer.address()));
    credential.to_header_value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_channel_never_overspend() {
    let f = Fixture::new(2, Duration::from_secs(5)).await;
    let payer = chain::dev_signer(&f.anvil, 5);
    let (mut client, c) = open(&f, &payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let svc = f.service(10);
    assert_eq!(
        svc.clone().oneshot(post(client.voucher(&c, 9_000).unwrap())).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // Six streams of ten tokens each want 60; 9 are paid for. Nobody answers the pauses.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (svc, auth) = (svc.clone(), client.voucher(&c, 9_000).unwrap());
        tasks.push(tokio::spawn(async move {
            let response = svc.oneshot(get(Some(auth))).await.unwrap();
            if response.status() != StatusCode::OK {
                return 0;
            }
            let body = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(body.to_vec()).unwrap().matches("data: tok").count()
        }));
    }
    let mut delivered = 0;
    for task in tasks {
        delivered += task.await.unwrap() as u128;
    }
    let state = f.state(channel).await;
    assert_eq!(delivered, 9, "exactly the paid tokens were delivered");
    assert_eq!(state.spent, Amount::new(PRICE * delivered));
    assert_eq!(state.reserved, Amount::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_requested_on_chain_mid_stream_stops_vouchers_and_charges_only_delivered() {
    let f = Fixture::new(0, Duration::ZERO).await;
    let payer = chain::dev_signer(&f.anvil, 6);
    let (mut client, c) = open(&f, &payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let svc = f.service(10);
    let response = svc.clone().oneshot(get(Some(client.voucher(&c, 3_000).unwrap()))).await.unwrap();
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("payment-need-voucher") {
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        text.push_str(std::str::from_utf8(&data).unwrap());
    }
    // The payer asks the escrow for a forced close.
    let provider = ProviderBuilder::new().wallet(payer.clone()).connect_http(f.anvil.endpoint_url());
    let call = tempo_support::onchain::requestCloseCall { channelId: channel };
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(ESCROW)
        .input(alloy::sol_types::SolCall::abi_encode(&call).into());
    assert!(provider.send_transaction(tx).await.unwrap().get_receipt().await.unwrap().status());
    let response = svc.clone().oneshot(post(client.voucher(&c, 10_000).unwrap())).await.unwrap();
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(problem_type(response).await, "session/channel-finalized");
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert_eq!(text.matches("data: tok").count(), 3);
    assert_eq!(final_receipt(&text)["spent"], "3000");
    let state = f.state(channel).await;
    assert_eq!((state.spent, state.accepted, state.reserved), (Amount::new(3_000), Amount::new(3_000), Amount::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_down_is_a_503_without_challenge_and_charges_nothing() {
    let store = MemoryStore::new();
    let payee = PrivateKeySigner::random();
    // Nothing listens on port 9 of loopback.
    let chain = RpcChain::new("http://127.0.0.1:9", payee.clone()).unwrap();
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, payee.address());
    let layer = PaymentLayer::new(TempoSession::new(config, chain), store.clone(), "api.test", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
        .meter(EventMeter::default());
    let svc =
        ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<tollgate::RequestBody<Body>>| async {
            Ok::<_, Infallible>(tempo_support::token_stream(3, Duration::ZERO))
        }));
    let c = challenge(svc.clone()).await;
    let payer = PrivateKeySigner::random();
    let channel = random_b256();
    let id = ChannelId::new(format!("{channel:#x}"));
    store.open(&id, Amount::new(1_000), Amount::new(10_000)).await.unwrap();
    let auth = voucher_as(&payer, &c, channel, 5_000);
    let response = svc.oneshot(get(Some(auth))).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE), "the client must not pay again");
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!((state.accepted, state.spent), (Amount::new(1_000), Amount::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_settlement_never_captures_more_than_delivered() {
    let f = Fixture::new(3, Duration::from_secs(5)).await;
    let payer = chain::dev_signer(&f.anvil, 7);
    let (mut client, c) = open(&f, &payer, 100_000).await;
    let channel = client.channel_id().unwrap();
    let svc = f.service(10);
    let (_, vouchers) = stream_paying(svc, &mut client, &c).await;
    assert!(vouchers >= 2);
    let spent = f.state(channel).await.spent.get();
    assert!(client.cumulative() > spent, "the client signed ahead of delivery");
    let session = f.layer.method().clone();
    let settler = session.spawn_settlement(
        f.store.clone(),
        tollgate::method::tempo::SettlementPolicy { every: Duration::from_millis(100), min_amount: 1 },
    );
    let mut settled = 0;
    for _ in 0..100 {
        settled = tempo_support::onchain::channel(&f.anvil, channel).await._7;
        if settled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settler.abort();
    assert!(settled > 0, "the timer settled");
    assert!(settled <= spent, "settled {settled} never exceeds delivered {spent}");
}

/// A second instance of the fixture's server: its own `TempoSession` and `RpcChain` with the
/// same payee key, on the same store.
fn second_instance(f: &Fixture) -> Layer {
    let payee = chain::dev_signer(&f.anvil, 1);
    let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, payee.address())
        .suggested_deposit(Amount::new(100_000))
        .max_voucher_ahead(Amount::new((2 * 3 + 54) * PRICE));
    let session = TempoSession::new(config, RpcChain::new(&f.anvil.endpoint(), payee).unwrap());
    PaymentLayer::new(session, f.store.clone(), "api.test", Secret::new(SECRET))
        .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
        .meter(EventMeter::default())
        .voucher_window(3)
        .first_voucher_window(3)
        .pause_deadline(Duration::from_millis(800))
}

#[tokio::test]
async fn two_instances_settle_and_close_in_parallel_with_one_payee_key() {
    let f = Fixture::new(3, Duration::ZERO).await;
    let b = second_instance(&f);
    let mut channels = Vec::new();
    for n in 0..4 {
        let payer = chain::dev_signer(&f.anvil, 6 + n);
        let (mut client, c) = open(&f, &payer, 100_000).await;
        let (_, _) = stream_paying(f.service(10), &mut client, &c).await;
        channels.push((client, c));
    }
    let ids: Vec<B256> = channels.iter().map(|(client, _)| client.channel_id().unwrap()).collect();

    // Both instances' settlement passes at once: each channel settled by one of them.
    let (a_session, b_session) = (f.layer.method().clone(), b.method().clone());
    let (ra, rb) = tokio::join!(a_session.settle_all(&f.store, 1), b_session.settle_all(&f.store, 1));
    assert!(ra.failures.is_empty() && rb.failures.is_empty(), "{ra:?} {rb:?}");
    assert_eq!(ra.settled.len() + rb.settled.len(), 4, "{ra:?} {rb:?}");
    for id in &ids {
        let settled = tempo_support::onchain::channel(&f.anvil, *id).await._7;
        assert!(settled > 0 && settled <= f.state(*id).await.spent.get());
    }

    // Then two closes on A and two on B, all at once, from the same payee key.
    let closes: Vec<_> = channels
        .iter_mut()
        .enumerate()
        .map(|(n, (client, c))| {
            let layer = if n % 2 == 0 { f.layer.clone() } else { b.clone() };
            let auth = client.close(c, client.cumulative()).unwrap();
            tokio::spawn(async move { paid_service(layer, 0).oneshot(post(auth)).await.unwrap().status() })
        })
        .collect();
    for close in closes {
        assert_eq!(close.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let mut captured = 0;
    for id in &ids {
        let on_chain = tempo_support::onchain::channel(&f.anvil, *id).await;
        let spent = f.state(*id).await.spent.get();
        assert!(on_chain._0, "finalized");
        assert!(on_chain._7 <= spent && spent - on_chain._7 < (2 * 3 + 54) * PRICE);
        captured += on_chain._7;
    }
    assert!(captured > 0);
}
