//! What the money-metering tests share: a layer over a handler fed by the test, a store
//! whose releases take a turn of the runtime, a method with a settled hook, and a way to
//! drive futures with no runtime at all.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tollgate::method::{PaymentMethod, Settled, Verified, Verify};
use tollgate::store::{ChannelId, ChannelState, ChannelStore, MemoryStore, Reservation, StoreError};
use tollgate::wire::mpp::Challenge;
use tollgate::{Amount, BoxError, PaymentError, PaymentLayer, Quote};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::support::{TestMethod, challenge_of, credential, get};

pub type Slot<B> = Arc<Mutex<Vec<B>>>;

/// A paid service over `layer` whose handler answers with the next body from the slot.
pub fn serve<M, St, MM, B>(
    layer: PaymentLayer<M, St, Quote, MM>,
    content_type: &'static str,
) -> (
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<impl Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send,
    Slot<B>,
)
where
    M: PaymentMethod,
    St: ChannelStore,
    MM: tollgate::meter::MakeMeter,
    B: Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
{
    let slot: Slot<B> = Arc::default();
    let bodies = slot.clone();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_req: Request<tollgate::RequestBody<Full<Bytes>>>| {
            let body = bodies.lock().unwrap().remove(0);
            async move {
                let mut response = Response::new(body);
                response.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        },
    ));
    (svc, slot)
}

/// The challenge a bare GET is answered with.
pub async fn challenge(
    svc: impl Service<Request<Full<Bytes>>, Response = Response<impl Body>, Error = Infallible>,
) -> Challenge {
    let response = svc.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    challenge_of(&response)
}

/// A paid GET carrying `payload`.
pub fn paid_get(challenge: &Challenge, payload: Value) -> Request<Full<Bytes>> {
    Request::get("/").header(header::AUTHORIZATION, credential(challenge, payload)).body(Full::default()).unwrap()
}

/// Reads data frames until `stop` says so or the body ends; returns the text and how it ended.
pub async fn read_until<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
    body: &mut B,
    stop: impl Fn(&str) -> bool,
) -> (String, Option<BoxError>) {
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(std::str::from_utf8(&data).unwrap());
                }
                if stop(&text) {
                    break;
                }
            }
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

/// Polls the body until it would wait; returns the text it gave and whether it ended.
pub fn drain_ready<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B) -> (String, bool) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut text = String::new();
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    text.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return (text, true),
            Poll::Pending => return (text, false),
        }
    }
}

/// Lets spawned tasks run.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

pub async fn state(store: &impl ChannelStore, channel: &str) -> ChannelState {
    store.load(&ChannelId::new(channel)).await.unwrap().unwrap()
}

/// One streamed chat-completion chunk with `content`.
pub fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// OpenAI's last chunk: no choices, the usage.
pub fn usage_chunk(prompt: u64, completion: u64) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n",
        prompt + completion
    )
}

/// A memory store whose releases give the runtime a turn first, as a networked store's do.
#[derive(Clone, Debug, Default)]
pub struct SlowStore {
    pub inner: MemoryStore,
    pub releases: Arc<AtomicUsize>,
}

impl SlowStore {
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }
}

impl ChannelStore for SlowStore {
    async fn open(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        self.inner.open(id, accepted, deposit).await
    }
    async fn create(&self, id: &ChannelId, accepted: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        self.inner.create(id, accepted, deposit).await
    }
    async fn create_lapsing(
        &self,
        id: &ChannelId,
        accepted: Amount,
        deposit: Amount,
        lapses_at: std::time::SystemTime,
    ) -> Result<ChannelState, StoreError> {
        self.inner.create_lapsing(id, accepted, deposit, lapses_at).await
    }
    async fn load(&self, id: &ChannelId) -> Result<Option<ChannelState>, StoreError> {
        self.inner.load(id).await
    }
    async fn accept(&self, id: &ChannelId, cumulative: Amount, deposit: Amount) -> Result<ChannelState, StoreError> {
        self.inner.accept(id, cumulative, deposit).await
    }
    async fn reserve(&self, id: &ChannelId, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        self.inner.reserve(id, min, max).await
    }
    async fn extend(&self, r: &Reservation, min: Amount, max: Amount) -> Result<Reservation, StoreError> {
        self.inner.extend(r, min, max).await
    }
    async fn commit(&self, r: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        self.inner.commit(r, used, units).await
    }
    async fn release(&self, r: &Reservation, used: Amount, units: u64) -> Result<ChannelState, StoreError> {
        tokio::task::yield_now().await;
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(r, used, units).await
    }
    async fn finalize(&self, id: &ChannelId) -> Result<ChannelState, StoreError> {
        self.inner.finalize(id).await
    }
    async fn ask(
        &self,
        id: &ChannelId,
        asker: tollgate::store::AskId,
        cumulative: Amount,
        ttl: std::time::Duration,
    ) -> Result<ChannelState, StoreError> {
        self.inner.ask(id, asker, cumulative, ttl).await
    }
    async fn withdraw_ask(&self, id: &ChannelId, asker: tollgate::store::AskId) -> Result<ChannelState, StoreError> {
        self.inner.withdraw_ask(id, asker).await
    }
    async fn changed(&self, id: &ChannelId, seen: u64) -> Result<ChannelState, StoreError> {
        self.inner.changed(id, seen).await
    }
    fn lease(&self) -> std::time::Duration {
        self.inner.lease()
    }
    async fn renew(
        &self,
        r: &tollgate::store::Reservation,
        delivered: tollgate::Amount,
        units: u64,
    ) -> Result<(), tollgate::store::StoreError> {
        self.inner.renew(r, delivered, units).await
    }
    async fn keep(
        &self,
        id: &ChannelId,
        shelf: &str,
        key: tollgate::Amount,
        value: bytes::Bytes,
    ) -> Result<(), tollgate::store::StoreError> {
        self.inner.keep(id, shelf, key, value).await
    }
    async fn kept(
        &self,
        id: &ChannelId,
        shelf: &str,
    ) -> Result<Vec<(tollgate::Amount, bytes::Bytes)>, tollgate::store::StoreError> {
        self.inner.kept(id, shelf).await
    }
    async fn discard(
        &self,
        id: &ChannelId,
        shelf: &str,
        keys: Option<&[tollgate::Amount]>,
    ) -> Result<(), tollgate::store::StoreError> {
        self.inner.discard(id, shelf, keys).await
    }
    async fn shelved(&self, shelf: &str) -> Result<Vec<ChannelId>, tollgate::store::StoreError> {
        self.inner.shelved(shelf).await
    }
    async fn lock(
        &self,
        name: &str,
        holder: tollgate::store::LockHolder,
        ttl: std::time::Duration,
    ) -> Result<bool, tollgate::store::StoreError> {
        self.inner.lock(name, holder, ttl).await
    }
    async fn unlock(&self, name: &str, holder: tollgate::store::LockHolder) -> Result<(), tollgate::store::StoreError> {
        self.inner.unlock(name, holder).await
    }
}

/// [`TestMethod`] whose grants record their settlement.
#[derive(Clone, Debug, Default)]
pub struct Hooked {
    pub settled: Arc<Mutex<Vec<Settled>>>,
}

impl Hooked {
    pub fn settled(&self) -> Vec<Settled> {
        self.settled.lock().unwrap().clone()
    }
}

impl PaymentMethod for Hooked {
    type Request = serde_json::Value;
    type Payload = serde_json::Value;

    fn offers(&self, quote: &Quote) -> Vec<tollgate::method::Offer<serde_json::Value>> {
        TestMethod.offers(quote)
    }

    async fn verify<St: ChannelStore>(
        &self,
        verify: Verify<'_, serde_json::Value, serde_json::Value>,
        store: &St,
    ) -> Result<Verified, PaymentError> {
        match TestMethod.verify(verify, store).await? {
            Verified::Serve(grant) => {
                let settled = self.settled.clone();
                Ok(Verified::Serve(grant.on_settled(move |s| settled.lock().unwrap().push(s))))
            }
            other => Ok(other),
        }
    }
}

/// Runs `future` on this thread with no runtime: the way a body is driven by an
/// executor that is not tokio's.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

/// Reads one frame with no runtime.
pub fn frame_outside_runtime<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B) -> Option<Frame<Bytes>> {
    block_on(body.frame()).and_then(Result::ok)
}
