//! A paid SSE service over the fake chain and the memory store, driven in process (no
//! sockets): the harness of tests/money_session.rs.

#![allow(dead_code)]

use std::convert::Infallible;
use std::time::Duration;

use alloy::primitives::{Address, B256, address};
use alloy::signers::local::PrivateKeySigner;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate::client::{SessionClient, TxParams};
use tollgate::meter::EventMeter;
use tollgate::method::tempo::tx::{SignedTempoTx, TempoTxBuilder};
use tollgate::method::tempo::{
    CHANNEL_RESERVE, ChannelDescriptor, PATH_USD, SessionConfig, SessionProtocol, TempoSession, VoucherDomain,
};
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential, Receipt};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::fake_chain::FakeChain;

pub const CHAIN_ID: u64 = 4242;
pub const ESCROW: Address = address!("00000000000000000000000000000000e5c70001");
pub const SECRET: &str = "money-session-test-secret-of-32-bytes!";
pub const PRICE: u128 = 1_000;
/// What each payer holds before the test.
pub const FUNDS: u128 = 10_000_000;

pub type Layer = PaymentLayer<TempoSession<FakeChain>, MemoryStore, Price, EventMeter>;
pub type PaidService = tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

pub struct Fixture {
    pub chain: FakeChain,
    pub store: MemoryStore,
    pub layer: Layer,
    pub payee: Address,
}

impl Fixture {
    /// A v1 session on the fake chain, streams asking a window of `window` units.
    pub fn v1(window: u64) -> Self {
        Self::with(window, |config| config, |session| session)
    }

    pub fn with(
        window: u64,
        config: impl FnOnce(SessionConfig) -> SessionConfig,
        session: impl FnOnce(TempoSession<FakeChain>) -> TempoSession<FakeChain>,
    ) -> Self {
        let payee = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).unwrap().address();
        let chain = FakeChain::new(SessionProtocol::V1, CHAIN_ID, ESCROW, PATH_USD, payee);
        let config = config(SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, payee));
        let method = session(TempoSession::new(config, chain.clone()).channel_state_ttl(Duration::ZERO));
        let store = MemoryStore::new();
        let layer = PaymentLayer::new(method, store.clone(), "api.test", Secret::new(SECRET))
            .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
            .meter(EventMeter::default())
            .voucher_window(window)
            .pause_deadline(Duration::from_secs(5));
        Fixture { chain, store, layer, payee }
    }

    /// Payer number `n`, funded with [`FUNDS`].
    pub fn payer(&self, n: u8) -> PrivateKeySigner {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x20 + n)).unwrap();
        self.chain.fund(signer.address(), FUNDS);
        signer
    }

    /// The paid service: `/` streams `tokens` SSE events.
    pub fn service(&self, tokens: usize) -> PaidService {
        paid_service(self.layer.clone(), tokens, Duration::ZERO)
    }

    pub async fn challenge(&self) -> Challenge {
        let response = self.service(0).oneshot(get(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0)
    }

    /// Opens a channel for `payer` with `deposit` through a management POST.
    pub async fn open(&self, payer: &PrivateKeySigner, deposit: u128) -> (SessionClient, Challenge) {
        let c = self.challenge().await;
        let mut client = SessionClient::new(payer.clone(), &c).unwrap();
        let auth = client.open(&c, deposit, salt(), tx_params()).unwrap();
        let response = self.post(auth).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "open accepted");
        (client, c)
    }

    pub async fn post(&self, auth: HeaderValue) -> Response<Body> {
        self.service(0).oneshot(post(auth)).await.unwrap()
    }

    pub async fn get(&self, tokens: usize, auth: HeaderValue) -> Response<Body> {
        self.service(tokens).oneshot(get(Some(auth))).await.unwrap()
    }

    /// Streams `tokens`, paying one more unit up front as mppx's v1 client does on each
    /// request, and answering each need-voucher; returns (text, vouchers sent).
    pub async fn stream_paying(&self, tokens: usize, client: &mut SessionClient, c: &Challenge) -> (String, usize) {
        let auth = client.voucher(c, client.cumulative() + PRICE).unwrap();
        let response = self.get(tokens, auth).await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let (mut out, mut vouchers) = (String::new(), 0);
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else { continue };
            let chunk = String::from_utf8(data.to_vec()).unwrap();
            if let Some(data) = need_voucher(&chunk) {
                let answer = client.answer_need_voucher(c, &data).unwrap();
                let response = self.post(answer).await;
                if response.status() != StatusCode::NO_CONTENT {
                    panic!("voucher refused ({data}): {}", self::text(response).await);
                }
                vouchers += 1;
            }
            out.push_str(&chunk);
        }
        (out, vouchers)
    }

    pub async fn state(&self, channel: B256) -> ChannelState {
        self.store.load(&store_id(channel)).await.unwrap().unwrap()
    }
}

/// The data of a need-voucher event in `chunk`, if any.
pub fn need_voucher(chunk: &str) -> Option<String> {
    let at = chunk.find("event: payment-need-voucher\ndata: ")?;
    Some(chunk[at..].lines().nth(1)?.trim_start_matches("data: ").to_owned())
}

pub fn store_id(channel: B256) -> ChannelId {
    ChannelId::new(format!("{channel:#x}"))
}

pub fn tx_params() -> TxParams {
    TxParams { nonce: 0, max_fee_per_gas: 1, gas_limit: 1_000_000 }
}

pub fn salt() -> B256 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    alloy::primitives::keccak256(format!("salt-{n}"))
}

pub fn paid_service(layer: Layer, tokens: usize, gap: Duration) -> PaidService {
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Body>>| async move { Ok::<_, Infallible>(token_stream(tokens, gap)) },
    ));
    tower::util::BoxCloneSyncService::new(svc.map_response(|r| r.map(Body::new)))
}

/// `tokens` SSE events `data: tok<i>`, `gap` apart, then `data: [DONE]`.
pub fn token_stream(tokens: usize, gap: Duration) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for i in 0..tokens {
            if tx.send(Ok(bytes::Bytes::from(format!("data: tok{i}\n\n")))).await.is_err() {
                return;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
        let _ = tx.send(Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let stream = ReceiverBody(rx);
    Response::builder().header("content-type", "text/event-stream").body(Body::new(stream)).unwrap()
}

struct ReceiverBody(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl http_body::Body for ReceiverBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

pub fn get(auth: Option<HeaderValue>) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    if let Some(auth) = auth {
        request.headers_mut().insert(header::AUTHORIZATION, auth);
    }
    request
}

pub fn post(auth: HeaderValue) -> Request<Body> {
    Request::post("/").header(header::AUTHORIZATION, auth).body(Body::empty()).unwrap()
}

pub async fn problem_type(response: Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    problem["type"].as_str().unwrap_or("").trim_start_matches("https://paymentauth.org/problems/").to_owned()
}

pub fn receipt(response: &Response<Body>) -> Option<Receipt> {
    Receipt::from_header_value(response.headers().get(tollgate::wire::mpp::PAYMENT_RECEIPT)?).ok()
}

/// The fixture's protocol switch: a v2 (channel reserve) session on the fake chain.
impl Fixture {
    pub fn v2(window: u64) -> Self {
        Self::v2_with(window, |session| session)
    }

    pub fn v2_with(window: u64, session: impl FnOnce(TempoSession<FakeChain>) -> TempoSession<FakeChain>) -> Self {
        let payee = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).unwrap().address();
        let chain = FakeChain::new(SessionProtocol::V2, CHAIN_ID, CHANNEL_RESERVE, PATH_USD, payee);
        let config = SessionConfig::v2(CHAIN_ID, PATH_USD, payee);
        let method = session(TempoSession::new(config, chain.clone()).channel_state_ttl(Duration::ZERO));
        let store = MemoryStore::new();
        let layer = PaymentLayer::new(method, store.clone(), "api.test", Secret::new(SECRET))
            .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
            .meter(EventMeter::default())
            .voucher_window(window)
            .pause_deadline(Duration::from_secs(5));
        Fixture { chain, store, layer, payee }
    }
}

alloy::sol! {
    function reserveOpen(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32);
}

/// A v2 payer: opens on the reserve and signs v2 vouchers (the crate's client is v1 only).
pub struct V2Payer {
    pub signer: PrivateKeySigner,
    pub descriptor: ChannelDescriptor,
    pub channel: B256,
    domain: VoucherDomain,
}

impl V2Payer {
    /// Builds the open transaction for `deposit`; returns the payer and the open credential
    /// (first voucher: one unit).
    pub fn open(signer: PrivateKeySigner, payee: Address, c: &Challenge, deposit: u128) -> (Self, HeaderValue) {
        let call = reserveOpenCall {
            payee,
            operator: Address::ZERO,
            token: PATH_USD,
            deposit: alloy::primitives::Uint::<96, 2>::from(deposit),
            salt: salt(),
            authorizedSigner: Address::ZERO,
        };
        // The reserve's `open` selector, not this helper's renamed function's.
        let mut input = alloy::sol_types::SolCall::abi_encode(&call);
        input[..4].copy_from_slice(
            &alloy::primitives::keccak256("open(address,address,address,uint96,bytes32,address)")[..4],
        );
        let raw = TempoTxBuilder::new(CHAIN_ID)
            .call(CHANNEL_RESERVE, input)
            .fee_token(PATH_USD)
            .expiring(4_000_000_000)
            .gas_limit(1_000_000)
            .fees(1, 1)
            .sign(&signer)
            .unwrap();
        let tx = SignedTempoTx::decode(&raw).unwrap();
        let descriptor = ChannelDescriptor {
            payer: signer.address(),
            payee,
            token: PATH_USD,
            salt: call.salt,
            expiring_nonce_hash: tx.expiring_nonce_hash(signer.address()),
            ..ChannelDescriptor::default()
        };
        let channel = descriptor.channel_id(SessionProtocol::V2, CHANNEL_RESERVE, CHAIN_ID);
        let payer = V2Payer {
            signer,
            descriptor,
            channel,
            domain: VoucherDomain::new(SessionProtocol::V2, CHAIN_ID, CHANNEL_RESERVE),
        };
        let payload = serde_json::json!({
            "action": "open", "type": "transaction", "channelId": channel,
            "transaction": format!("0x{}", alloy::hex::encode(&raw)),
            "cumulativeAmount": PRICE.to_string(), "signature": payer.sign(PRICE), "descriptor": descriptor,
        });
        let auth = payer.credential(c, payload);
        (payer, auth)
    }

    pub fn sign(&self, amount: u128) -> String {
        let hash = self.domain.signing_hash(self.channel, amount).unwrap();
        let signature = alloy::signers::SignerSync::sign_hash_sync(&self.signer, &hash).unwrap();
        format!("0x{}", alloy::hex::encode(signature.as_bytes()))
    }

    pub fn action(&self, c: &Challenge, action: &str, amount: u128) -> HeaderValue {
        let payload = serde_json::json!({
            "action": action, "channelId": self.channel, "cumulativeAmount": amount.to_string(),
            "signature": self.sign(amount), "descriptor": self.descriptor,
        });
        self.credential(c, payload)
    }

    pub fn credential(&self, c: &Challenge, payload: Value) -> HeaderValue {
        let source = format!("did:pkh:eip155:{CHAIN_ID}:{}", self.signer.address());
        Credential { challenge: c.clone(), payload, source: Some(source) }.to_header_value()
    }
}

/// A credential with any payload, as an attacker would send it.
pub fn raw_credential(c: &Challenge, payload: Value, source: Option<String>) -> HeaderValue {
    Credential { challenge: c.clone(), payload, source }.to_header_value()
}

/// Reads the whole body as text.
pub async fn text(response: Response<Body>) -> String {
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}
