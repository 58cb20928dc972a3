//! [`PaymentLayer`]: configuration and builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::config::{Settings, Shared};
use crate::error::{ConfigError, MIN_SECRET_LEN};
use crate::meter::RequestMeter;
use crate::pricing::Unpriced;
use crate::realm::Realm;
use crate::secret::Secret;
use crate::service::PaymentService;
use crate::wire::mpp::ChallengeSigner;

/// Makes the wrapped service payable. See the [crate docs](crate) for an example.
///
/// Type parameters: the payment method `M`, the channel store `St`, the pricing `P` and
/// the meter maker `MM`. Pricing and meter are swapped with the type-changing
/// [`pricing`](PaymentLayer::pricing) and [`meter`](PaymentLayer::meter) setters; a layer
/// left without pricing refuses every request with a 500 (it fails closed).
///
/// Each paid response holds a reservation in the store, as a lease of the store's
/// [`lease`](crate::store::ChannelStore::lease) (30 s for
/// [`MemoryStore`](crate::store::MemoryStore), see
/// [`with_lease`](crate::store::MemoryStore::with_lease)). The response renews it with what
/// it has delivered so far, once per [voucher window](Self::voucher_window) as the
/// reservation grows, and every third of the lease while it streams slowly, waits for the
/// inner service or is paused for a voucher. So the lease bounds what a crashed instance
/// can lose: its holds come back one lease later, charged what was last renewed (at most
/// one window short of what was delivered, never more). A shorter lease frees a dead
/// instance's holds sooner and costs more renewals; a smaller window loses less on a crash
/// and costs more store round trips (two per window).
pub struct PaymentLayer<M, St, P = Unpriced, MM = RequestMeter> {
    method: Arc<M>,
    store: Arc<St>,
    pricing: Arc<P>,
    make_meter: Arc<MM>,
    settings: Arc<Settings>,
}

impl<M, St> PaymentLayer<M, St> {
    /// A layer for `realm` (the protection space named in challenges, e.g. the API's host)
    /// that binds challenge ids with an HMAC keyed by `secret`, offers `method` and keeps
    /// accounts in `store`.
    ///
    /// Keep `secret` private and stable across instances: every instance of a service must
    /// verify the challenges the others issued. Make it at least [`MIN_SECRET_LEN`] random
    /// bytes: whoever guesses it can mint challenges.
    ///
    /// # Panics
    ///
    /// If `secret` is shorter than [`MIN_SECRET_LEN`] bytes. Use
    /// [`try_new`](Self::try_new) to get an error instead.
    ///
    /// [`MIN_SECRET_LEN`]: crate::MIN_SECRET_LEN
    #[track_caller]
    pub fn new(method: M, store: St, realm: impl Into<Realm>, secret: Secret) -> Self {
        match Self::try_new(method, store, realm, secret) {
            Ok(layer) => layer,
            Err(error) => panic!("PaymentLayer::new: {error}"),
        }
    }

    /// [`new`](Self::new), refusing a `secret` shorter than
    /// [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) bytes with a [`ConfigError`].
    pub fn try_new(method: M, store: St, realm: impl Into<Realm>, secret: Secret) -> Result<Self, ConfigError> {
        let secret = secret.as_bytes();
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort { len: secret.len() });
        }
        Ok(PaymentLayer {
            method: Arc::new(method),
            store: Arc::new(store),
            pricing: Arc::new(Unpriced),
            make_meter: Arc::new(RequestMeter),
            settings: Arc::new(Settings::new(realm.into().into_string(), ChallengeSigner::new(secret))),
        })
    }
}

impl<M, St, P, MM> PaymentLayer<M, St, P, MM> {
    /// Sets how requests are priced (a fixed [`Price`](crate::Price), a
    /// [`Quote`](crate::Quote), or any [`Pricing`](crate::Pricing)).
    pub fn pricing<P2>(self, pricing: P2) -> PaymentLayer<M, St, P2, MM> {
        PaymentLayer {
            method: self.method,
            store: self.store,
            pricing: Arc::new(pricing),
            make_meter: self.make_meter,
            settings: self.settings,
        }
    }

    /// Sets how responses are metered (default: one unit per request).
    pub fn meter<MM2>(self, make_meter: MM2) -> PaymentLayer<M, St, P, MM2> {
        PaymentLayer {
            method: self.method,
            store: self.store,
            pricing: self.pricing,
            make_meter: Arc::new(make_meter),
            settings: self.settings,
        }
    }

    /// Also accepts challenges bound with `secret`, the key used before a rotation, until
    /// they expire. It is accepted whatever its length, so a service can rotate away from a
    /// short secret.
    pub fn previous_secret(mut self, secret: Secret) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.signer = settings.signer.clone().with_previous(secret.as_bytes());
        self
    }

    /// How long a challenge stays valid (default 5 minutes).
    pub fn challenge_ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.settings).challenge_ttl = ttl;
        self
    }

    /// The most request body bytes read to price a request (default 1 MiB); a larger body
    /// is refused with 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).body_limit = bytes;
        self
    }

    /// How long reading a request body to price it may take in all (default 30 s); a body
    /// that takes longer is answered `408` with no challenge.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).body_timeout = timeout;
        self
    }

    /// Asks a payment-channel session for an upfront cost it cannot cover in the response
    /// stream instead of with a `402` (off by default). Turn it on for routes that answer
    /// with an event stream and whose upfront the server pays the moment it calls the
    /// inner service (an LLM prompt sent upstream).
    ///
    /// When a session's headroom is short of the quote's upfront, the layer answers `200
    /// text/event-stream` at once with one `payment-need-voucher` event (the upfront plus
    /// a [voucher window](Self::voucher_window)), sends keep-alive comments, and waits up to
    /// the [pause deadline](Self::pause_deadline) for the voucher. Only once the upfront is
    /// reserved does it call the inner service; its 2xx event stream is then metered as
    /// usual. No voucher in time, a closed channel, a failing inner service or one that
    /// answers other than a 2xx event stream: the stream ends with an `event:
    /// payment-error` (problem JSON) and nothing is charged.
    ///
    /// The reference clients never raise a voucher in answer to a `402`, but mppx's v2
    /// fetch and its session managers' `.sse()` answer this event.
    pub fn upfront_in_stream(mut self) -> Self {
        Arc::make_mut(&mut self.settings).upfront_in_stream = true;
        self
    }

    /// The most units of headroom a stream asks for beyond its next frame when it runs
    /// out (default 256), so a client signs a voucher per window, not per token.
    ///
    /// A stream asks for [`first_voucher_window`](Self::first_voucher_window) units at
    /// first and then a quarter of what it has delivered, up to this: short responses pay
    /// in small steps, long ones in few vouchers.
    pub fn voucher_window(mut self, units: u64) -> Self {
        Arc::make_mut(&mut self.settings).policy.window_units = units;
        self
    }

    /// The units of headroom a stream asks for at first (default 16; never more than
    /// [`voucher_window`](Self::voucher_window)). Small first asks keep what a v1 session
    /// close can leave uncaptured small (the v1 escrow pays out a voucher exactly, so the
    /// payee captures the last voucher at or below what was delivered); set it to the
    /// voucher window for fixed steps (v2 sessions capture exactly either way).
    pub fn first_voucher_window(mut self, units: u64) -> Self {
        Arc::make_mut(&mut self.settings).policy.first_window_units = units;
        self
    }

    /// How long a paused stream waits for a voucher before it ends cleanly (default 60 s).
    /// The deadline holds on the wall clock: a paused stream whose client stops reading is
    /// released then (charged what it delivered), and at once if its channel is closed.
    pub fn pause_deadline(mut self, deadline: Duration) -> Self {
        Arc::make_mut(&mut self.settings).policy.pause_deadline = deadline;
        self
    }

    /// How long a stream that asks for its upfront in the stream
    /// ([`upfront_in_stream`](Self::upfront_in_stream)), having delivered nothing yet, waits
    /// for that first voucher (default: the [pause deadline](Self::pause_deadline)).
    ///
    /// A client that answers in-band `payment-need-voucher` events does so at once (mppx's
    /// v2 fetch, the session managers' `.sse()`); one that cannot (mppx's v1 `sessionLegacy`
    /// with a plain fetch) never will. A few seconds here ends such a stream quickly with a
    /// `payment-error` event saying why, instead of an empty stream held open for the
    /// whole pause deadline. Nothing is charged either way.
    pub fn first_voucher_deadline(mut self, deadline: Duration) -> Self {
        Arc::make_mut(&mut self.settings).policy.first_voucher_deadline = Some(deadline);
        self
    }

    /// How often a paused SSE stream sends a keep-alive comment (default 15 s).
    pub fn keep_alive(mut self, every: Duration) -> Self {
        Arc::make_mut(&mut self.settings).policy.keep_alive = every;
        self
    }

    /// The longest SSE event a metered upstream may send (default 1 MiB). An event still
    /// unfinished past it ends the stream with an [`EventTooLarge`](crate::meter::EventTooLarge)
    /// error, charged only for the events before it: the layer buffers one event at a time,
    /// and this bounds that buffer. It bounds gRPC messages (prefix included) the same way:
    /// raise it for services that stream messages over 1 MiB.
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).policy.max_event_bytes = bytes;
        self
    }

    /// The longest plain (non-SSE) answer held back whole while its payment settles, for a
    /// payment method that proves its settlement ([`Grant::proven_by`](crate::method::Grant::proven_by),
    /// x402 `exact`): default 8 MiB. A longer answer is not delivered, not charged, and
    /// answered `502`; the layer holds at most this much per such response.
    pub fn held_answer_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).policy.held_answer_bytes = bytes;
        self
    }

    /// How long a response waits for its settlement's proof (default 30 s): past it, a
    /// stream ends with a `pending` receipt and the settlement runs on.
    pub fn proof_wait(mut self, wait: Duration) -> Self {
        Arc::make_mut(&mut self.settings).policy.proof_wait = wait;
        self
    }

    /// The store the layer keeps accounts in.
    pub fn store(&self) -> &Arc<St> {
        &self.store
    }

    /// The payment method (to run its settlement, for instance).
    pub fn method(&self) -> &Arc<M> {
        &self.method
    }
}

impl<M, St, P, MM> Clone for PaymentLayer<M, St, P, MM> {
    fn clone(&self) -> Self {
        PaymentLayer {
            method: self.method.clone(),
            store: self.store.clone(),
            pricing: self.pricing.clone(),
            make_meter: self.make_meter.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<M, St: fmt::Debug, P, MM> fmt::Debug for PaymentLayer<M, St, P, MM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentLayer")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S, M, St, P, MM> Layer<S> for PaymentLayer<M, St, P, MM> {
    type Service = PaymentService<S, M, St, P, MM>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Shared {
            method: self.method.clone(),
            store: self.store.clone(),
            pricing: self.pricing.clone(),
            make_meter: self.make_meter.clone(),
            settings: self.settings.clone(),
        };
        PaymentService::new(inner, Arc::new(shared))
    }
}
