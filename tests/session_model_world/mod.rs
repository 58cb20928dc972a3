//! The world of tests/session_model.rs: a Tempo v1 session service (two instances, round
//! robin) on the fake chain and the memory store, payers driving it with the crate's `SessionClient`, and a model of the
//! money each channel's payer signed and received.

#![allow(dead_code)]

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::primitives::{Address, B256, address, keccak256};
use alloy::signers::local::PrivateKeySigner;
use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tollgate::client::{SessionClient, TxParams};
use tollgate::meter::EventMeter;
use tollgate::method::tempo::{PATH_USD, SessionConfig, SessionProtocol, TempoSession};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, Credential};
use tollgate::{Amount, PaymentLayer, Price, Rate, Secret};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::fake_chain::FakeChain;

pub const CHAIN_ID: u64 = 4242;
pub const ESCROW: Address = address!("00000000000000000000000000000000e5c70001");
pub const PRICE: u128 = 1_000;
/// Units of headroom a stream asks for beyond the next event.
pub const WINDOW: u64 = 4;
pub const PAYERS: usize = 2;
/// What each payer holds before the test.
pub const FUNDS: u128 = 1_000_000_000;

pub type Layer = PaymentLayer<TempoSession<FakeChain>, MemoryStore, Price, EventMeter>;

/// One channel as the model sees it.
#[derive(Debug)]
pub struct Chan {
    pub id: B256,
    pub owner: usize,
    pub client: SessionClient,
    /// The highest cumulative amount its payer ever signed (close vouchers included).
    pub signed: u128,
    /// What its payer's own streams received.
    pub delivered: u128,
    /// What others' streams received on it.
    pub hijacked: u128,
    /// Streams on it still open.
    pub live: usize,
    pub closed: bool,
}

/// A stream still open.
pub struct Live {
    pub chan: usize,
    pub owner: bool,
    pub body: Body,
}

pub struct World {
    pub chain: FakeChain,
    pub store: MemoryStore,
    /// Two server instances on one store and chain, behind a round-robin balancer: every
    /// request and every settlement goes to the next one.
    pub layers: [Layer; 2],
    turn: std::sync::atomic::AtomicUsize,
    pub payee: Address,
    pub signers: Vec<PrivateKeySigner>,
    pub nonces: Vec<u64>,
    pub chans: Vec<Chan>,
    pub live: Vec<Live>,
    /// Streams that did not end within a generous (paused-time) deadline.
    pub hangs: Vec<String>,
    salt: u64,
}

impl World {
    pub fn new() -> Self {
        let payee = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).unwrap().address();
        let chain = FakeChain::new(SessionProtocol::V1, CHAIN_ID, ESCROW, PATH_USD, payee);
        let config = SessionConfig::v1(CHAIN_ID, ESCROW, PATH_USD, payee);
        let store = MemoryStore::new();
        let instance = || {
            let method = TempoSession::new(config.clone(), chain.clone()).channel_state_ttl(Duration::ZERO);
            PaymentLayer::new(method, store.clone(), "api.test", Secret::new("session-model-secret-of-32-bytes!!"))
                .pricing(Price::per_unit("token", Rate::per_unit(Amount::new(PRICE))))
                .meter(EventMeter::default())
                .voucher_window(WINDOW)
                .pause_deadline(Duration::from_secs(5))
        };
        let layers = [instance(), instance()];
        let signers: Vec<PrivateKeySigner> =
            (0..PAYERS).map(|n| PrivateKeySigner::from_bytes(&B256::repeat_byte(0x20 + n as u8)).unwrap()).collect();
        for signer in &signers {
            chain.fund(signer.address(), FUNDS);
        }
        World {
            chain,
            store,
            layers,
            turn: std::sync::atomic::AtomicUsize::new(0),
            payee,
            nonces: vec![0; PAYERS],
            signers,
            chans: Vec::new(),
            live: Vec::new(),
            hangs: Vec::new(),
            salt: 0,
        }
    }

    /// The next instance's session method.
    pub fn method(&self) -> &TempoSession<FakeChain> {
        self.next().method()
    }

    fn next(&self) -> &Layer {
        &self.layers[self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2]
    }

    /// The channel `payer` opened last.
    pub fn latest(&self, payer: usize) -> Option<usize> {
        self.chans.iter().rposition(|c| c.owner == payer)
    }

    /// One request through the layer; `/` streams `tokens` events.
    pub async fn send(&self, request: Request<Body>, tokens: usize) -> Response<Body> {
        let svc = ServiceBuilder::new().layer(self.next().clone()).service(service_fn(
            move |_req: Request<tollgate::RequestBody<Body>>| async move { Ok::<_, Infallible>(token_stream(tokens)) },
        ));
        svc.map_response(|r| r.map(Body::new)).oneshot(request).await.unwrap()
    }

    pub async fn challenge(&self) -> Challenge {
        let response = self.send(get(None), 0).await;
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        Challenge::parse_all(response.headers().get_all(header::WWW_AUTHENTICATE)).unwrap().remove(0)
    }

    pub fn tx(&mut self, payer: usize) -> TxParams {
        self.nonces[payer] += 1;
        TxParams { nonce: self.nonces[payer], max_fee_per_gas: 1, gas_limit: 1_000_000 }
    }

    pub fn salt(&mut self) -> B256 {
        self.salt += 1;
        keccak256(format!("session-model-salt-{}", self.salt))
    }

    pub async fn open(&mut self, payer: usize, deposit: u128) {
        let c = self.challenge().await;
        let mut client = SessionClient::new(self.signers[payer].clone(), &c).unwrap();
        let (salt, tx) = (self.salt(), self.tx(payer));
        let auth = client.open(&c, deposit, salt, tx).unwrap();
        if self.send(post(auth), 0).await.status() == StatusCode::NO_CONTENT {
            let id = client.channel_id().unwrap();
            let signed = client.cumulative();
            self.chans.push(Chan {
                id,
                owner: payer,
                client,
                signed,
                delivered: 0,
                hijacked: 0,
                live: 0,
                closed: false,
            });
        }
    }

    /// Signs and posts a voucher `add` above the payer's highest.
    pub async fn voucher(&mut self, chan: usize, add: u128) {
        let c = self.challenge().await;
        let ch = &mut self.chans[chan];
        // The client refuses to sign past its deposit: nothing to send then.
        let Ok(auth) = ch.client.voucher(&c, ch.client.cumulative() + add) else { return };
        ch.signed = ch.signed.max(ch.client.cumulative());
        self.send(post(auth), 0).await;
    }

    pub async fn top_up(&mut self, chan: usize, add: u128) {
        let c = self.challenge().await;
        let tx = self.tx(self.chans[chan].owner);
        let auth = self.chans[chan].client.top_up(&c, add, tx).unwrap();
        self.send(post(auth), 0).await;
    }

    /// Starts a stream of `tokens` on the channel with the payer's current voucher.
    pub async fn start(&mut self, chan: usize, tokens: usize) {
        let c = self.challenge().await;
        let ch = &mut self.chans[chan];
        let auth = ch.client.voucher(&c, ch.client.cumulative()).unwrap();
        let response = self.send(get(Some(auth)), tokens).await;
        if response.status() == StatusCode::OK {
            self.chans[chan].live += 1;
            self.live.push(Live { chan, owner: true, body: response.into_body() });
        }
    }

    /// Starts a stream on `chan` as `attacker`: an `open` credential naming the victim's
    /// channel with the attacker's own junk transaction and signature.
    pub async fn hijack(&mut self, attacker: usize, chan: usize, tokens: usize) {
        let c = self.challenge().await;
        let mut client = SessionClient::new(self.signers[attacker].clone(), &c).unwrap();
        let (salt, tx) = (self.salt(), self.tx(attacker));
        let auth = client.open(&c, PRICE, salt, tx).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        let mut credential = Credential::from_headers(&headers).unwrap().unwrap();
        credential.payload["channelId"] = format!("{:#x}", self.chans[chan].id).into();
        credential.source = None;
        let response = self.send(get(Some(credential.to_header_value())), tokens).await;
        if response.status() == StatusCode::OK {
            self.chans[chan].live += 1;
            self.live.push(Live { chan, owner: false, body: response.into_body() });
        }
    }

    /// Reads up to `frames` frames (all, if `None`) of live stream `n`, the owner answering
    /// every need-voucher; an attacker stops at the first one.
    pub async fn read(&mut self, n: usize, frames: Option<usize>) {
        let mut read = 0;
        while frames.is_none_or(|max| read < max) {
            let Some(live) = self.live.get_mut(n) else { return };
            let frame = match tokio::time::timeout(Duration::from_secs(600), live.body.frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    self.hangs.push(format!("stream on channel {} never ended", live.chan));
                    return self.end(n);
                }
            };
            let Some(Ok(frame)) = frame else { return self.end(n) };
            let Ok(data) = frame.into_data() else { continue };
            read += 1;
            let text = String::from_utf8_lossy(&data).into_owned();
            let (chan, owner) = (live.chan, live.owner);
            let events = text.matches("data: tok").count() as u128 * PRICE;
            let ch = &mut self.chans[chan];
            if owner {
                ch.delivered += events
            } else {
                ch.hijacked += events
            }
            let Some(ask) = need_voucher(&text) else { continue };
            if !owner {
                return self.end(n);
            }
            let c = self.challenge().await;
            let ch = &mut self.chans[chan];
            // An ask past the deposit (or the client's caps) is refused: the payer leaves.
            let Ok(auth) = ch.client.answer_need_voucher(&c, &ask) else { return self.end(n) };
            ch.signed = ch.signed.max(ch.client.cumulative());
            self.send(post(auth), 0).await;
        }
    }

    /// Drops live stream `n` (the client disconnects).
    pub fn end(&mut self, n: usize) {
        if n < self.live.len() {
            let live = self.live.remove(n);
            self.chans[live.chan].live -= 1;
        }
    }

    /// Closes with a voucher for `cumulative`; whether the server said so.
    pub async fn close(&mut self, chan: usize, cumulative: u128) -> bool {
        self.close_reading(chan, cumulative, false).await
    }

    /// Closes with a voucher for `cumulative`; when `reading`, the channel's live streams
    /// are read to their end meanwhile (without answering need-vouchers), as a client
    /// still consuming them would. Whether the server said it closed.
    pub async fn close_reading(&mut self, chan: usize, cumulative: u128, reading: bool) -> bool {
        let c = self.challenge().await;
        let ch = &mut self.chans[chan];
        let auth = ch.client.close(&c, cumulative).unwrap();
        ch.signed = ch.signed.max(cumulative);
        let (streams, rest) = std::mem::take(&mut self.live).into_iter().partition(|l| reading && l.chan == chan);
        self.live = rest;
        let (response, texts) = tokio::join!(self.send(post(auth), 0), read_all(streams));
        let closed = response.status() == StatusCode::NO_CONTENT;
        for (owner, text, hung) in texts {
            let events = text.matches("data: tok").count() as u128 * PRICE;
            let ch = &mut self.chans[chan];
            ch.live -= 1;
            if owner {
                ch.delivered += events
            } else {
                ch.hijacked += events
            }
            if hung {
                self.hangs.push(format!("stream on channel {chan} never ended"));
            }
        }
        self.chans[chan].closed |= closed;
        closed
    }

    /// What the store says the channel spent (what the payer's last receipt said).
    pub async fn spent(&self, chan: usize) -> u128 {
        let id = tollgate::store::ChannelId::new(format!("{:#x}", self.chans[chan].id));
        self.store.load(&id).await.ok().flatten().map_or(0, |s| s.spent.get())
    }

    /// Lets spawned releases run.
    pub async fn quiesce(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
}

/// Reads each stream to its end: (owner, text, whether it hung).
async fn read_all(streams: Vec<Live>) -> Vec<(bool, String, bool)> {
    let mut out = Vec::new();
    for mut live in streams {
        let mut text = String::new();
        let hung = loop {
            match tokio::time::timeout(Duration::from_secs(600), live.body.frame()).await {
                Err(_) => break true,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                Ok(_) => break false,
            }
        };
        out.push((live.owner, text, hung));
    }
    out
}

fn need_voucher(text: &str) -> Option<String> {
    let at = text.find("event: payment-need-voucher\ndata: ")?;
    Some(text[at..].lines().nth(1)?.trim_start_matches("data: ").to_owned())
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

/// `tokens` events `data: tok<i>`, then `data: [DONE]`, one per frame.
fn token_stream(tokens: usize) -> Response<Body> {
    let frames = (0..tokens).map(|i| format!("data: tok{i}\n\n")).chain(["data: [DONE]\n\n".to_owned()]);
    let stream = Frames(frames.map(bytes::Bytes::from).collect());
    Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(Body::new(stream)).unwrap()
}

struct Frames(std::collections::VecDeque<bytes::Bytes>);

impl http_body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

thread_local! {
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `f`, catching panics of the future itself and of tasks it spawned on this thread;
/// returns the panic messages.
pub async fn catching<F: Future<Output = ()>>(f: F) -> Vec<String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = PANICS.with(|p| match &mut *p.borrow_mut() {
                Some(panics) => {
                    panics.push(info.to_string());
                    true
                }
                None => false,
            });
            if !quiet {
                previous(info);
            }
        }));
    });
    PANICS.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let mut f = Box::pin(f);
    std::future::poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
        Ok(poll) => poll,
        Err(_) => Poll::Ready(()),
    })
    .await;
    PANICS.with(|p| p.borrow_mut().take().unwrap_or_default())
}
