//! x402 `upto` through the PaymentLayer on anvil (chain id 8453, our test token), with the
//! project's Permit2 and x402UptoPermit2Proxy stand-ins installed at their canonical
//! addresses (`anvil_setCode`), paid by the REAL client: `@x402/fetch` with `@x402/evm`
//! 2.27.0's `UptoEvmScheme`. The route streams SSE metered per event; the payee gains
//! exactly the metered amount (below the signed maximum), a client that hangs up pays what
//! it received, and bad payments never reach the inner service and settle nothing.

#![cfg(feature = "x402")]

mod chain;
mod x402_support;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolStruct, eip712_domain};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tollgate::meter::EventMeter;
use tollgate::method::tempo::RpcChain;
use tollgate::method::x402::{
    Facilitator, PERMIT2_ADDRESS, Permit2Authorization, SettlementOutcome, TokenPermissions, UPTO_PROXY_ADDRESS,
    UptoPayload, UptoWitness, X402Upto,
};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::wire::x402::{PAYMENT_REQUIRED, PAYMENT_SIGNATURE};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};
use tower::ServiceExt;
use x402_support::{CHAIN_ID, FacilitatorProcess, FailingFront, World, install_upto, key_hex, unix_now};

/// What one SSE event costs, and how many a request may use: the maximum is their product.
const PER_EVENT: u128 = 10;
const MAX_EVENTS: u64 = 100;
const MAX: u128 = PER_EVENT * MAX_EVENTS as u128;
const SECRET: &str = "test-secret-of-at-least-32-bytes!";

/// Five chat chunks, then `[DONE]` (free).
fn events() -> String {
    let mut text = String::new();
    for word in ["Hi", " there", ",", " friend", "!"] {
        let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]});
        text.push_str(&format!("data: {chunk}\n\n"));
    }
    text + "data: [DONE]\n\n"
}

alloy::sol! {
    function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    function mint(address to, uint256 value) external;
}

// The EIP-712 names must be Permit2's own; a second `sol!` scope keeps them apart from the
// `TokenPermissions` the crate exports.
mod typed {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }
}

/// Mints `value` of the test token to `to` (anyone may, on the test token).
async fn mint(world: &World, to: Address, value: u128) {
    let deployer = chain::dev_signer(&world.anvil, 0);
    let provider =
        ProviderBuilder::new().wallet(EthereumWallet::from(deployer)).connect_http(world.anvil.endpoint_url());
    let call = mintCall { to, value: U256::from(value) };
    let request = alloy::rpc::types::TransactionRequest::default().to(world.token).input(call.abi_encode().into());
    assert!(provider.send_transaction(request).await.unwrap().get_receipt().await.unwrap().status());
}

/// Whether Permit2 marked `owner`'s `nonce` used.
async fn nonce_used(world: &World, owner: Address, nonce: U256) -> bool {
    let provider = ProviderBuilder::new().connect_http(world.anvil.endpoint_url());
    let call = nonceBitmapCall { owner, wordPos: nonce >> 8 };
    let request = alloy::rpc::types::TransactionRequest::default().to(PERMIT2_ADDRESS).input(call.abi_encode().into());
    let word = nonceBitmapCall::abi_decode_returns(&provider.call(request).await.unwrap()).unwrap();
    word & (U256::from(1) << (nonce & U256::from(0xff)).to::<usize>()) != U256::ZERO
}

/// A body that sends `first`, then waits for ever (an upstream with more to say).
struct Hanging {
    first: Option<Bytes>,
}

impl http_body::Body for Hanging {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(bytes) => Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            None => Poll::Pending,
        }
    }
}

/// Who settles: the payee's own key through `chain`, or the facilitator at a URL whose key
/// has the address.
enum Settling {
    Own(RpcChain),
    Facilitator(String, Address),
}

/// A paid SSE `/v1/chat/completions` on 127.0.0.1, stopped when dropped.
struct Paid {
    app: Router,
    url: String,
    called: Arc<AtomicUsize>,
    settled: mpsc::UnboundedReceiver<SettlementOutcome>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Paid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Paid {
    /// The route behind `upto` with its own store; the inner service answers `status` with
    /// [`events`], or, when `hang`, with the first event and then nothing.
    async fn start(world: &World, status: StatusCode, hang: bool) -> Paid {
        Self::start_with(world, status, hang, Settling::Own(world.chain())).await
    }

    /// [`start`](Self::start), settled as `settling` says.
    async fn start_with(world: &World, status: StatusCode, hang: bool, settling: Settling) -> Paid {
        Self::start_on(world, status, hang, settling, MemoryStore::new()).await
    }

    /// [`start_with`](Self::start_with), on `store`.
    async fn start_on<S: ChannelStore + Clone>(
        world: &World,
        status: StatusCode,
        hang: bool,
        settling: Settling,
        store: S,
    ) -> Paid {
        let (tx, settled) = mpsc::unbounded_channel();
        let offer = world.offer(0);
        let method = match settling {
            Settling::Own(chain) => X402Upto::new(offer, chain, store.clone()),
            Settling::Facilitator(url, address) => {
                let facilitator = Facilitator::new(url, world.chain(), store.clone()).unwrap();
                X402Upto::with_facilitator(offer, world.chain(), facilitator, address)
            }
        };
        let method = method.on_settlement(move |outcome| {
            let _ = tx.send(outcome);
        });
        let called = Arc::new(AtomicUsize::new(0));
        let counter = called.clone();
        let inner = post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = if hang {
                    let first = events().split_inclusive("\n\n").next().unwrap().to_owned();
                    Body::new(Hanging { first: Some(Bytes::from(first)) })
                } else {
                    Body::from(events())
                };
                Response::builder().status(status).header("content-type", "text/event-stream").body(body).unwrap()
            }
        });
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(PER_EVENT)))).max_output(MAX_EVENTS);
        let layer = PaymentLayer::new(method, store, "api.test", Secret::new(SECRET));
        let app = Router::new()
            .route("/v1/chat/completions", inner)
            .route_layer(layer.pricing(quote).meter(EventMeter::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
        let served = app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, served).await.unwrap();
        });
        Paid { app, url, called, settled, task }
    }

    fn called(&self) -> usize {
        self.called.load(Ordering::SeqCst)
    }

    async fn next_settlement(&mut self) -> SettlementOutcome {
        tokio::time::timeout(Duration::from_secs(60), self.settled.recv())
            .await
            .expect("the settlement hook ran")
            .expect("the method is alive")
    }

    fn no_settlement(&mut self) {
        assert!(self.settled.try_recv().is_err(), "a refused payment reached settlement");
    }

    /// POSTs the chat request with `payment` (a `PAYMENT-SIGNATURE`), in process, read to the end.
    async fn post(&self, payment: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut request =
            Request::post("/v1/chat/completions").header("host", "api.test").header("content-type", "application/json");
        if let Some(payment) = payment {
            request = request.header(&PAYMENT_SIGNATURE, payment);
        }
        let body = r#"{"model":"test-model","messages":[{"role":"user","content":"Hello!"}],"stream":true}"#;
        let response = self.app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let (head, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (head.status, head.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The v2 requirement the route offers now.
    async fn requirement(&self) -> Value {
        let (status, headers, _) = self.post(None).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let required = STANDARD.decode(headers[PAYMENT_REQUIRED].as_bytes()).unwrap();
        serde_json::from_slice::<Value>(&required).unwrap()["accepts"][0].clone()
    }
}

/// Runs tests/js/x402_upto.mjs in `mode` with the payer's key.
async fn js_upto(mode: &str, world: &World, env: &[(&str, String)]) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg("tests/js/x402_upto.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MODE", mode)
        .env("PRIVATE_KEY", key_hex(&world.payer))
        .env("ASSET", world.token.to_checksum(None));
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().await.expect("node runs");
    assert!(out.status.success(), "x402_upto.mjs {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

fn header(requirement: &Value, payload: &Value) -> String {
    let payment = json!({
        "x402Version": 2,
        "resource": {"url": "http://api.test/v1/chat/completions"},
        "accepted": requirement,
        "payload": payload,
    });
    STANDARD.encode(payment.to_string())
}

/// `signer` signs `a` under the Permit2 domain (alloy's EIP-712, not the crate's).
fn sign(signer: &PrivateKeySigner, a: Permit2Authorization) -> Value {
    let domain = eip712_domain! { name: "Permit2", chain_id: CHAIN_ID, verifying_contract: PERMIT2_ADDRESS, };
    let message = typed::PermitWitnessTransferFrom {
        permitted: typed::TokenPermissions { token: a.permitted.token, amount: a.permitted.amount },
        spender: a.spender,
        nonce: a.nonce,
        deadline: U256::from(a.deadline),
        witness: typed::Witness {
            to: a.witness.to,
            facilitator: a.witness.facilitator,
            validAfter: U256::from(a.witness.valid_after),
        },
    };
    let signature = signer.sign_hash_sync(&message.eip712_signing_hash(&domain)).unwrap();
    serde_json::to_value(UptoPayload { signature: signature.as_bytes().to_vec().into(), permit2_authorization: a })
        .unwrap()
}

async fn balances(world: &World) -> (u128, u128) {
    (world.balance(world.payee.address()).await, world.balance(world.payer.address()).await)
}

#[tokio::test]
async fn the_upto_client_pays_exactly_the_metered_events() {
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start(&world, StatusCode::OK, false).await;
    let requirement = paid.requirement().await;
    assert_eq!(requirement["scheme"], "upto");
    assert_eq!(requirement["amount"], MAX.to_string());
    assert_eq!(requirement["extra"]["facilitatorAddress"], world.payee.address().to_checksum(None));
    let before = balances(&world).await;
    let out = js_upto("pay", &world, &[("URL", paid.url.clone())]).await;
    assert_eq!(out["status"], 200, "{out}");
    let body = out["body"].as_str().unwrap();
    assert!(body.starts_with(&events()), "the whole stream: {body}");
    assert_eq!(paid.called(), 1);
    let metered = 5 * PER_EVENT;
    let settlement = paid.next_settlement().await.expect("delivered: settled").expect("settled on chain");
    assert_eq!(settlement.amount, Amount::new(metered));
    assert!(metered < MAX, "less than the signed maximum");
    assert_eq!(settlement.payer, world.payer.address());
    assert!(settlement.transaction.is_some(), "one proxy settle");
    assert_eq!(balances(&world).await, (before.0 + metered, before.1 - metered));
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_pays_exactly_what_it_received() {
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start(&world, StatusCode::OK, true).await;
    let before = balances(&world).await;
    let out = js_upto("disconnect", &world, &[("URL", paid.url.clone())]).await;
    assert_eq!(out["status"], 200, "{out}");
    let received = out["received"].as_str().unwrap();
    let first = events().split_inclusive("\n\n").next().unwrap().to_owned();
    assert_eq!(received, first, "it read the first event and left");
    let settlement = paid.next_settlement().await.expect("one event delivered").expect("settled on chain");
    assert_eq!(settlement.amount, Amount::new(PER_EVENT));
    assert_eq!(balances(&world).await, (before.0 + PER_EVENT, before.1 - PER_EVENT));
}

#[tokio::test]
async fn an_upstream_500_settles_nothing_and_sends_no_transaction() {
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start(&world, StatusCode::INTERNAL_SERVER_ERROR, false).await;
    let before = balances(&world).await;
    let sent = world.sent(world.payee.address()).await;
    let out = js_upto("pay", &world, &[("URL", paid.url.clone())]).await;
    assert_eq!(out["status"], 500, "{out}");
    assert_eq!(paid.called(), 1);
    assert!(paid.next_settlement().await.is_none(), "nothing delivered, nothing settled");
    assert_eq!(balances(&world).await, before);
    assert_eq!(world.sent(world.payee.address()).await, sent, "no transaction");
}

#[tokio::test]
async fn bad_upto_payments_are_refused_before_the_inner_service_and_settle_nothing() {
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start(&world, StatusCode::OK, false).await;
    let requirement = paid.requirement().await;
    let before = balances(&world).await;
    let payer = world.payer.address();
    let good = Permit2Authorization {
        from: payer,
        permitted: TokenPermissions { token: world.token, amount: U256::from(MAX) },
        spender: UPTO_PROXY_ADDRESS,
        nonce: U256::from(unix_now()) << 64,
        deadline: unix_now() + 300,
        witness: UptoWitness { to: world.payee.address(), facilitator: world.payee.address(), valid_after: 0 },
    };
    let mut wrong_spender = good;
    wrong_spender.spender = world.poor.address();
    let mut lower = good;
    lower.permitted.amount = U256::from(MAX - 1);
    let mut wrong_pay_to = good;
    wrong_pay_to.witness.to = world.poor.address();
    let mut other_facilitator = good;
    other_facilitator.witness.facilitator = world.poor.address();
    let mut expired = good;
    expired.deadline = unix_now() + 5;
    let mut endless = good;
    endless.deadline = u64::MAX;
    let mut early = good;
    early.witness.valid_after = unix_now() + 600;
    // The poor account: first without funds, then funded but without a Permit2 approval.
    let mut poor = good;
    poor.from = world.poor.address();
    let cases = [
        ("forged", sign(&world.poor, good), "not the payer's"),
        ("wrong spender", sign(&world.payer, wrong_spender), "spender is not the x402 upto proxy"),
        ("lower amount", sign(&world.payer, lower), "is not the offered"),
        ("wrong payTo", sign(&world.payer, wrong_pay_to), "pays someone else"),
        ("another facilitator", sign(&world.payer, other_facilitator), "another facilitator"),
        ("expiring", sign(&world.payer, expired), "expires before"),
        ("valid for ever", sign(&world.payer, endless), "longer than the offer's maxTimeoutSeconds"),
        ("not yet valid", sign(&world.payer, early), "not valid yet"),
        ("no funds", sign(&world.poor, poor), "holds less"),
    ];
    for (case, payload, why) in cases {
        let (status, headers, body) = paid.post(Some(&header(&requirement, &payload))).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{case}");
        assert!(headers.contains_key(PAYMENT_REQUIRED), "{case}: fresh offers");
        assert!(body.contains(why), "{case}: {body}");
    }
    mint(&world, world.poor.address(), MAX).await;
    let (status, _, body) = paid.post(Some(&header(&requirement, &sign(&world.poor, poor)))).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(body.contains("not approved Permit2"), "{body}");
    let (status, _, _) = paid.post(Some("not base64 at all!")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(paid.called(), 0);
    paid.no_settlement();
    assert!(!nonce_used(&world, payer, good.nonce).await);

    // The real client's signature: served once, settled once; its replay is refused, here
    // (the store's claim) and on a layer with a fresh store (Permit2's nonce bitmap).
    let signed = js_upto("sign", &world, &[("REQUIREMENT", requirement.to_string())]).await;
    let payment = header(&requirement, &signed["payload"]);
    let (status, _, body) = paid.post(Some(&payment)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let settlement = paid.next_settlement().await.expect("settled").unwrap();
    assert_eq!(settlement.amount, Amount::new(5 * PER_EVENT));
    let (status, _, body) = paid.post(Some(&payment)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "replay, same store");
    assert!(body.contains("already used for a payment"), "{body}");
    let mut other = Paid::start(&world, StatusCode::OK, false).await;
    let (status, _, body) = other.post(Some(&payment)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "replay, fresh store");
    assert!(body.contains("Permit2 has used this nonce"), "{body}");
    assert_eq!((paid.called(), other.called()), (1, 0));
    paid.no_settlement();
    other.no_settlement();
    let nonce: U256 = signed["payload"]["permit2Authorization"]["nonce"].as_str().unwrap().parse().unwrap();
    assert!(nonce_used(&world, payer, nonce).await);
    assert_eq!(balances(&world).await, (before.0 + 5 * PER_EVENT, before.1 - 5 * PER_EVENT));
}

#[tokio::test]
async fn a_settle_whose_answer_is_lost_is_confirmed_by_the_nonce_not_paid_twice() {
    let world = World::new().await;
    install_upto(&world).await;
    let payee = world.payee.address();
    for forward in [true, false] {
        // forward: the node mines the settle and the answer is lost; else the node never gets
        // it. Either way Permit2's nonce decides, and the payee gains the metered amount once.
        let front = FailingFront::start(&world.rpc_url(), "eth_sendRawTransaction", 0, forward).await;
        let mut paid =
            Paid::start_with(&world, StatusCode::OK, false, Settling::Own(world.chain_at(&front.url()))).await;
        let (before, sent) = (balances(&world).await, world.sent(payee).await);
        let out = js_upto("pay", &world, &[("URL", paid.url.clone())]).await;
        assert_eq!(out["status"], 200, "{out}");
        let settlement = paid.next_settlement().await.expect("delivered").expect("settled");
        assert_eq!(front.failed(), 1);
        assert_eq!(settlement.amount, Amount::new(5 * PER_EVENT));
        assert_eq!(settlement.transaction.is_none(), forward, "known from the nonce, not from the lost answer");
        assert_eq!(world.sent(payee).await, sent + 1, "one settle mined");
        assert_eq!(balances(&world).await, (before.0 + 5 * PER_EVENT, before.1 - 5 * PER_EVENT), "paid once");
    }
}

#[tokio::test]
async fn the_official_facilitator_settles_exactly_the_metered_events() {
    let world = World::new().await;
    install_upto(&world).await;
    let gas_payer = chain::dev_signer(&world.anvil, 4);
    let process = FacilitatorProcess::start(&world, &gas_payer).await;
    let supported = Facilitator::new(process.url.clone(), world.chain(), MemoryStore::new()).unwrap();
    let supported = supported.supported().await.unwrap();
    let upto = supported.kinds.iter().find(|k| k.scheme == "upto").expect("the facilitator settles upto");
    let address = gas_payer.address();
    assert_eq!(upto.extra.as_ref().unwrap()["facilitatorAddress"], address.to_checksum(None));

    let settling = Settling::Facilitator(process.url.clone(), address);
    let mut paid = Paid::start_with(&world, StatusCode::OK, false, settling).await;
    assert_eq!(paid.requirement().await["extra"]["facilitatorAddress"], address.to_checksum(None));
    let before = balances(&world).await;
    let out = js_upto("pay", &world, &[("URL", paid.url.clone())]).await;
    assert_eq!(out["status"], 200, "{out}");
    let settlement = paid.next_settlement().await.expect("delivered").expect("the facilitator settled");
    assert_eq!(settlement.amount, Amount::new(5 * PER_EVENT));
    assert!(settlement.transaction.is_some());
    assert_eq!(balances(&world).await, (before.0 + 5 * PER_EVENT, before.1 - 5 * PER_EVENT));
    assert_eq!((world.sent(address).await, world.sent(world.payee.address()).await), (1, 0), "the facilitator sent it");
}

#[tokio::test]
async fn one_permit_raced_on_one_store_serves_one_request() {
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start(&world, StatusCode::OK, false).await;
    let requirement = paid.requirement().await;
    let signed = js_upto("sign", &world, &[("REQUIREMENT", requirement.to_string())]).await;
    let payment = header(&requirement, &signed["payload"]);
    let before = balances(&world).await;
    let (a, b) = tokio::join!(paid.post(Some(&payment)), paid.post(Some(&payment)));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PAYMENT_REQUIRED]);
    assert_eq!(paid.called(), 1);
    assert_eq!(paid.next_settlement().await.expect("settled").unwrap().amount, Amount::new(5 * PER_EVENT));
    paid.no_settlement();
    assert_eq!(balances(&world).await, (before.0 + 5 * PER_EVENT, before.1 - 5 * PER_EVENT));
}

/// An upto claim lapses an hour after its Permit2 deadline (tests/x402_claims_lapse.rs has
/// the sweep): a payer signing permits and walking away leaves the store no bigger.
#[cfg(feature = "redis")]
#[tokio::test]
async fn an_upto_claim_lapses_an_hour_after_its_permit_deadline() {
    use tollgate::method::x402::{CLAIM_LAPSE_GRACE, upto_claim_id};
    use tollgate::store::RedisStore;

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = match RedisStore::connect(&url).await {
        Ok(store) => store.with_prefix(&format!("tollgate-upto-lapse-{}-{}", std::process::id(), unix_now())),
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("no Redis at {url} under CI: {e}"),
        Err(e) => return eprintln!("skipping: no Redis at {url} ({e})"),
    };
    let world = World::new().await;
    install_upto(&world).await;
    let mut paid = Paid::start_on(&world, StatusCode::OK, false, Settling::Own(world.chain()), store.clone()).await;
    let requirement = paid.requirement().await;
    let permit = Permit2Authorization {
        from: world.payer.address(),
        permitted: TokenPermissions { token: world.token, amount: U256::from(MAX) },
        spender: UPTO_PROXY_ADDRESS,
        nonce: U256::from(unix_now()) << 64,
        deadline: unix_now() + 300,
        witness: UptoWitness { to: world.payee.address(), facilitator: world.payee.address(), valid_after: 0 },
    };
    let (status, _, _) = paid.post(Some(&header(&requirement, &sign(&world.payer, permit)))).await;
    assert_eq!(status, StatusCode::OK);
    paid.next_settlement().await.expect("delivered: settled").expect("settled on chain");

    let claim = upto_claim_id(CHAIN_ID, &permit);
    assert!(store.load(&claim).await.unwrap().is_some(), "claimed");
    let mut raw = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let lapse: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{}:lapses", store.prefix()))
        .arg(claim.as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(lapse.map(|ms| ms as u64), Some((permit.deadline + CLAIM_LAPSE_GRACE.as_secs()) * 1000));
}
