//! What a layer and its services share: the parts and the settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::metering::StreamPolicy;
use crate::method::encoded::EncodedRequests;
use crate::wire::mpp::{ChallengeSigner, IssuedChallenges};

/// Settings of a [`PaymentLayer`](crate::PaymentLayer), set through its builder methods.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) realm: String,
    pub(crate) signer: ChallengeSigner,
    pub(crate) challenge_ttl: Duration,
    pub(crate) body_limit: usize,
    /// How long reading the body to price it may take.
    pub(crate) body_timeout: Duration,
    /// Ask a session for an upfront it cannot cover in the stream, not with a 402.
    pub(crate) upfront_in_stream: bool,
    pub(crate) policy: StreamPolicy,
    /// The challenges issued lately, reused while the same offers are sold.
    pub(crate) issued: IssuedChallenges,
    /// The JCS encodings of the offers made lately.
    pub(crate) encoded: Arc<EncodedRequests>,
}

impl Settings {
    pub(crate) fn new(realm: String, signer: ChallengeSigner) -> Self {
        Settings {
            realm,
            signer,
            challenge_ttl: Duration::from_secs(300),
            body_limit: 1 << 20,
            body_timeout: Duration::from_secs(30),
            upfront_in_stream: false,
            policy: StreamPolicy {
                window_units: 256,
                first_window_units: 16,
                pause_deadline: Duration::from_secs(60),
                first_voucher_deadline: None,
                keep_alive: Duration::from_secs(15),
                max_event_bytes: 1 << 20,
                held_answer_bytes: 8 << 20,
                proof_wait: Duration::from_secs(30),
            },
            issued: IssuedChallenges::default(),
            encoded: Arc::default(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("realm", &self.realm)
            .field("challenge_ttl", &self.challenge_ttl)
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_timeout)
            .field("upfront_in_stream", &self.upfront_in_stream)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Everything a service needs per request, behind one `Arc` so cloning a service is cheap.
pub(crate) struct Shared<M, St, P, MM> {
    pub(crate) method: Arc<M>,
    pub(crate) store: Arc<St>,
    pub(crate) pricing: Arc<P>,
    pub(crate) make_meter: Arc<MM>,
    pub(crate) settings: Arc<Settings>,
}

impl<M, St: fmt::Debug, P, MM> fmt::Debug for Shared<M, St, P, MM> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("store", &self.store).field("settings", &self.settings).finish_non_exhaustive()
    }
}
