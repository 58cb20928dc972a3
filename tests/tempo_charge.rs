//! Tempo charges on anvil (`--network tempo`, pathUSD) through `PaymentLayer`: a client
//! pays each request with one TIP-20 transfer, pulled (the server broadcasts) or pushed
//! (the client does). Every refusal is checked to have charged nothing.

#![cfg(feature = "tempo")]

mod chain;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::method::tempo::tx::TempoTxBuilder;
use tollgate::method::tempo::{ChargeConfig, PATH_USD, RpcChain, TempoCharge, attribution_memo};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential, PAYMENT_RECEIPT, Receipt};
use tollgate::{Amount, PaymentLayer, Price, Secret};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const CHAIN_ID: u64 = 4242;
const REALM: &str = "api.test";
const SECRET: &str = "tempo-charge-test-secret-of-32-bytes+";
const PRICE: u64 = 1_000;
/// anvil's gas estimate ignores a Tempo transaction's calls, so no estimate is used.
const GAS_LIMIT: u64 = 1_000_000;

sol! {
    interface ITip20 {
        function transfer(address to, uint256 amount) external returns (bool);
        function transferWithMemo(address to, uint256 amount, bytes32 memo) external;
        function balanceOf(address account) external view returns (uint256);
    }
}

type Layer = PaymentLayer<TempoCharge<RpcChain>, MemoryStore, Price>;

struct Fixture {
    anvil: AnvilInstance,
    provider: RootProvider,
    store: MemoryStore,
    payee: Address,
    payer: PrivateKeySigner,
    served: Arc<AtomicUsize>,
}

impl Fixture {
    async fn new() -> Self {
        let anvil = chain::spawn_anvil_tempo(CHAIN_ID).await;
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url()).root().clone();
        let (payee, payer) = (chain::dev_signer(&anvil, 1).address(), chain::dev_signer(&anvil, 2));
        Fixture { anvil, provider, store: MemoryStore::new(), payee, payer, served: Arc::default() }
    }

    /// The charge method over `rpc` (this fixture's chain unless given).
    fn layer_at(&self, price: u64, rpc: &str) -> Layer {
        let chain = RpcChain::new(rpc, chain::dev_signer(&self.anvil, 1)).unwrap();
        let charge = TempoCharge::new(ChargeConfig::new(CHAIN_ID, PATH_USD, self.payee), chain).unwrap();
        PaymentLayer::new(charge, self.store.clone(), REALM, Secret::new(SECRET))
            .pricing(Price::per_request(Amount::new(price.into())))
    }

    fn layer(&self, price: u64) -> Layer {
        self.layer_at(price, &self.anvil.endpoint())
    }

    /// Sends `request` through `layer` to a service that counts what it serves.
    async fn call(&self, layer: Layer, request: Request<Full<bytes::Bytes>>) -> Response<bytes::Bytes> {
        let served = self.served.clone();
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            move |_: Request<tollgate::RequestBody<Full<bytes::Bytes>>>| {
                served.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(b"paid content")))) }
            },
        ));
        let response = svc.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }

    async fn challenge(&self, layer: Layer) -> Challenge {
        let response = self.call(layer, get(None)).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    async fn balance(&self, who: Address) -> U256 {
        let data = ITip20::balanceOfCall { account: who }.abi_encode();
        let out: Bytes = self
            .provider
            .raw_request("eth_call".into(), (json!({"to": PATH_USD, "data": Bytes::from(data)}), "latest"))
            .await
            .unwrap();
        ITip20::balanceOfCall::abi_decode_returns(&out).unwrap()
    }

    async fn nonce(&self) -> u64 {
        self.provider.get_transaction_count(self.payer.address()).await.unwrap()
    }

    /// The payer's transaction making `calls` on pathUSD: protocol nonce, fees in pathUSD.
    async fn transaction(&self, calls: Vec<Vec<u8>>) -> Bytes {
        let fee_cap = self.provider.get_gas_price().await.unwrap() * 2;
        let mut builder = TempoTxBuilder::new(CHAIN_ID);
        for call in calls {
            builder = builder.call(PATH_USD, call);
        }
        let builder = builder.fee_token(PATH_USD).nonce(U256::ZERO, self.nonce().await).gas_limit(GAS_LIMIT);
        builder.fees(fee_cap, 1).sign(&self.payer).unwrap().into()
    }

    /// The transaction a reference client sends for `challenge`: one bound transfer.
    async fn payment(&self, challenge: &Challenge, amount: u64) -> Bytes {
        let memo = attribution_memo(REALM, None, &challenge.id);
        self.transaction(vec![with_memo(self.payee, amount, memo)]).await
    }

    /// Broadcasts `raw` as the client itself and waits until it is mined.
    async fn broadcast(&self, raw: &Bytes) -> B256 {
        let hash: B256 = self.provider.raw_request("eth_sendRawTransaction".into(), (raw.clone(),)).await.unwrap();
        for _ in 0..200 {
            let receipt: Value = self.provider.raw_request("eth_getTransactionReceipt".into(), (hash,)).await.unwrap();
            if !receipt.is_null() {
                assert_eq!(receipt["status"], "0x1", "receipt: {receipt}");
                return hash;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("transaction {hash} was not mined");
    }

    fn source(&self) -> String {
        format!("did:pkh:eip155:{CHAIN_ID}:{}", self.payer.address())
    }
}

fn with_memo(to: Address, amount: u64, memo: B256) -> Vec<u8> {
    ITip20::transferWithMemoCall { to, amount: U256::from(amount), memo }.abi_encode()
}

fn pull(challenge: &Challenge, raw: &Bytes) -> Request<Full<bytes::Bytes>> {
    let payload = json!({"type": "transaction", "signature": raw});
    get(Some(Credential { challenge: challenge.clone(), payload, source: None }))
}

fn push(challenge: &Challenge, hash: B256, source: Option<String>) -> Request<Full<bytes::Bytes>> {
    get(Some(Credential { challenge: challenge.clone(), payload: json!({"type": "hash", "hash": hash}), source }))
}

fn get(credential: Option<Credential>) -> Request<Full<bytes::Bytes>> {
    let mut request = Request::get("/").body(Full::default()).unwrap();
    if let Some(credential) = credential {
        request.headers_mut().insert(header::AUTHORIZATION, credential.to_header_value());
    }
    request
}

/// The problem type suffix of a refusal, which must carry a fresh challenge.
#[track_caller]
fn refused(response: &Response<bytes::Bytes>) -> String {
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED, "{:?}", response.body());
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE), "a 402 carries a challenge");
    let problem: Value = serde_json::from_slice(response.body()).unwrap();
    problem["type"].as_str().unwrap().trim_start_matches("https://paymentauth.org/problems/").to_owned()
}

impl Fixture {
    /// A served response whose one-shot account was funded with exactly the price and
    /// used all of it.
    async fn paid(&self, response: &Response<bytes::Bytes>, hash: B256) {
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
        assert_eq!(response.body().as_ref(), b"paid content");
        // `charge:<hash>`, or `charge:<hash>:<n>` after `n` released attempts.
        let mut account = None;
        for n in 0..8 {
            let id = if n == 0 { format!("charge:{hash:#x}") } else { format!("charge:{hash:#x}:{n}") };
            match self.store.load(&ChannelId::new(id)).await.unwrap() {
                Some(state) if state.finalized && state.accepted.is_zero() => continue,
                found => {
                    account = found;
                    break;
                }
            }
        }
        let account = account.expect("the payment's account");
        let price = Amount::new(PRICE.into());
        assert_eq!((account.accepted, account.spent, account.reserved), (price, price, Amount::ZERO));
        // The layer writes no `Payment-Receipt` on plain (non-SSE) responses yet; check it
        // when it does.
        if let Some(value) = response.headers().get(PAYMENT_RECEIPT) {
            let receipt = Receipt::from_header_value(value).unwrap();
            assert_eq!((receipt.method.as_str(), receipt.intent.as_deref()), ("tempo", Some("charge")));
            assert_eq!((receipt.status.as_str(), receipt.reference.clone()), ("success", format!("{hash:#x}")));
        }
    }
}

#[tokio::test]
async fn pull_pays_once_and_a_replay_is_refused() {
    let f = Fixture::new().await;
    let challenge = f.challenge(f.layer(PRICE)).await;
    let request = challenge.decode_request().unwrap();
    assert_eq!(request["amount"], PRICE.to_string());
    assert_eq!(request["methodDetails"], json!({"chainId": CHAIN_ID}));
    assert_eq!(request["recipient"].as_str().unwrap().parse::<Address>().unwrap(), f.payee);
    let before = f.balance(f.payee).await;

    let raw = f.payment(&challenge, PRICE).await;
    let hash = keccak256(&raw);
    f.paid(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await, hash).await;
    assert_eq!(f.balance(f.payee).await, before + U256::from(PRICE), "the payee got exactly the price");
    assert_eq!(f.served(), 1);

    // The same transaction again, pulled or pushed: refused, nothing charged or served.
    let nonce = f.nonce().await;
    assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await), "verification-failed");
    assert_eq!(refused(&f.call(f.layer(PRICE), push(&challenge, hash, None)).await), "verification-failed");
    assert_eq!(f.balance(f.payee).await, before + U256::from(PRICE));
    assert_eq!((f.nonce().await, f.served()), (nonce, 1));
}

#[tokio::test]
async fn bad_transactions_are_refused_and_never_broadcast() {
    let f = Fixture::new().await;
    let challenge = f.challenge(f.layer(PRICE)).await;
    let (before, nonce) = (f.balance(f.payee).await, f.nonce().await);
    let bound = attribution_memo(REALM, None, &challenge.id);
    let stranger = Address::repeat_byte(0x5e);
    let unbound = ITip20::transferCall { to: f.payee, amount: U256::from(PRICE) }.abi_encode();
    let cases = [
        ("payment-insufficient", vec![with_memo(f.payee, PRICE - 1, bound)]),
        ("verification-failed", vec![with_memo(stranger, PRICE, bound)]),
        ("verification-failed", vec![unbound]),
        ("verification-failed", vec![with_memo(f.payee, PRICE, attribution_memo(REALM, None, "another"))]),
        ("verification-failed", vec![with_memo(f.payee, PRICE, bound), with_memo(stranger, 1, bound)]),
    ];
    for (problem, calls) in cases {
        let raw = f.transaction(calls).await;
        assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await), problem);
    }
    let garbage = Bytes::from_static(&[0x76, 0xc0]);
    assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &garbage)).await), "invalid-payload");
    assert_eq!((f.balance(f.payee).await, f.nonce().await, f.served()), (before, nonce, 0), "nothing broadcast");

    // The nonce those used is still free: a good payment with it goes through.
    let raw = f.payment(&challenge, PRICE).await;
    f.paid(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await, keccak256(&raw)).await;
    assert_eq!(f.balance(f.payee).await, before + U256::from(PRICE));
}

#[tokio::test]
async fn push_pays_once_and_a_bad_attempt_does_not_use_up_the_hash() {
    let f = Fixture::new().await;
    let challenge = f.challenge(f.layer(PRICE)).await;
    let before = f.balance(f.payee).await;
    let raw = f.payment(&challenge, PRICE).await;
    let hash = f.broadcast(&raw).await;
    assert_eq!(f.balance(f.payee).await, before + U256::from(PRICE));

    // Presented with a source that did not send it, or against another challenge: refused,
    // and the hash stays usable by its owner.
    let other = format!("did:pkh:eip155:{CHAIN_ID}:{}", Address::repeat_byte(0x5e));
    assert_eq!(refused(&f.call(f.layer(PRICE), push(&challenge, hash, Some(other))).await), "verification-failed");
    let another_challenge = f.challenge(f.layer(PRICE)).await;
    assert_ne!(another_challenge.id, challenge.id);
    assert_eq!(refused(&f.call(f.layer(PRICE), push(&another_challenge, hash, None)).await), "verification-failed");
    assert_eq!(
        refused(&f.call(f.layer(PRICE), push(&challenge, B256::repeat_byte(7), None)).await),
        "verification-failed"
    );
    assert_eq!(f.served(), 0);

    f.paid(&f.call(f.layer(PRICE), push(&challenge, hash, Some(f.source()))).await, hash).await;
    assert_eq!(f.served(), 1);
    assert_eq!(refused(&f.call(f.layer(PRICE), push(&challenge, hash, Some(f.source()))).await), "verification-failed");
    assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await), "verification-failed");
    assert_eq!((f.balance(f.payee).await, f.served()), (before + U256::from(PRICE), 1));
}

#[tokio::test]
async fn a_cheap_challenge_is_refused_on_a_pricier_route() {
    let f = Fixture::new().await;
    let cheap = f.challenge(f.layer(PRICE)).await;
    let (before, nonce) = (f.balance(f.payee).await, f.nonce().await);
    let raw = f.payment(&cheap, PRICE).await;
    assert_eq!(refused(&f.call(f.layer(2 * PRICE), pull(&cheap, &raw)).await), "invalid-challenge");
    assert_eq!((f.balance(f.payee).await, f.nonce().await, f.served()), (before, nonce, 0));
}

#[tokio::test]
async fn rpc_down_is_a_503_and_the_payment_can_be_retried() {
    let f = Fixture::new().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let challenge = f.challenge(f.layer_at(PRICE, &closed)).await;
    let (before, nonce) = (f.balance(f.payee).await, f.nonce().await);
    let raw = f.payment(&challenge, PRICE).await;

    let down = f.call(f.layer_at(PRICE, &closed), pull(&challenge, &raw)).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!down.headers().contains_key(header::WWW_AUTHENTICATE), "no challenge: the client must not pay again");
    assert_eq!((f.balance(f.payee).await, f.nonce().await, f.served()), (before, nonce, 0));

    // The claim was released: once the chain is back, the same credential pays.
    f.paid(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await, keccak256(&raw)).await;
    assert_eq!(f.balance(f.payee).await, before + U256::from(PRICE));
    assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await), "verification-failed");
    assert_eq!(f.served(), 1);
}

#[tokio::test]
async fn scenario_10_junk_pulls_leave_no_store_entries_and_a_future_nonce_is_never_broadcast() {
    let f = Fixture::new().await;
    let challenge = f.challenge(f.layer(PRICE)).await;
    let memo = attribution_memo(REALM, None, &challenge.id);
    let fee_cap = f.provider.get_gas_price().await.unwrap() * 2;
    // Well-formed, correctly signed payments from accounts that hold nothing: the chain
    // refuses them, and nothing stays behind.
    for _ in 0..20 {
        let junk = PrivateKeySigner::random();
        let raw: Bytes = TempoTxBuilder::new(CHAIN_ID)
            .call(PATH_USD, with_memo(f.payee, PRICE, memo))
            .fee_token(PATH_USD)
            .nonce(U256::ZERO, 0)
            .gas_limit(GAS_LIMIT)
            .fees(fee_cap, 1)
            .sign(&junk)
            .unwrap()
            .into();
        assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await), "verification-failed");
    }
    assert_eq!(format!("{:?}", f.store), "MemoryStore { channels: Some(0) }");

    // The payer's own payment with a nonce ahead of its next one would wait in the pool:
    // refused before broadcast, and the same payment with the right nonce goes through.
    let (before, nonce) = (f.balance(f.payee).await, f.nonce().await);
    let ahead: Bytes = TempoTxBuilder::new(CHAIN_ID)
        .call(PATH_USD, with_memo(f.payee, PRICE, memo))
        .fee_token(PATH_USD)
        .nonce(U256::ZERO, nonce + 1)
        .gas_limit(GAS_LIMIT)
        .fees(fee_cap, 1)
        .sign(&f.payer)
        .unwrap()
        .into();
    assert_eq!(refused(&f.call(f.layer(PRICE), pull(&challenge, &ahead)).await), "verification-failed");
    let pending: String =
        f.provider.raw_request("eth_getTransactionCount".into(), (f.payer.address(), "pending")).await.unwrap();
    assert_eq!(u64::from_str_radix(pending.trim_start_matches("0x"), 16).unwrap(), nonce, "nothing pooled");
    assert_eq!(format!("{:?}", f.store), "MemoryStore { channels: Some(0) }");
    let raw = f.payment(&challenge, PRICE).await;
    f.paid(&f.call(f.layer(PRICE), pull(&challenge, &raw)).await, keccak256(&raw)).await;
    assert_eq!((f.balance(f.payee).await, f.served()), (before + U256::from(PRICE), 1));
}
