//! [`Siwx`]: the sign-in-with-x challenge and the check of its proof.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use alloy::primitives::Address;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::Serialize;

use super::keys::Keys;
use super::nonce::{self, Nonce, rfc3339, unix};
use super::{SignInError, SiwxPayload};
use crate::method::tempo::VoucherSignature;
use crate::secret::Secret;
use crate::store::{ChannelStore, LockHolder};

/// The header a SIWX proof travels in.
pub const SIGN_IN_WITH_X: &str = "sign-in-with-x";

/// The name of the x402 extension that carries a [`SiwxChallenge`].
pub const SIWX_EXTENSION: &str = "sign-in-with-x";

/// How long a challenge may be signed and presented by default.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// How far past its expiry a spent nonce stays claimed: more than the clocks of the
/// instances sharing a store are apart, so none of them still takes it once it lapses.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Sign-in with x (x402's `sign-in-with-x` extension, EIP-4361 messages): issues
/// challenges and checks the proofs signed over them, for one domain and URI.
///
/// A challenge's nonce is an HMAC of its issue time, expiry and random bytes, so issuing
/// one stores nothing; a proof spends its nonce once, by an atomic claim in the store
/// ([`ChannelStore::lock`], lapsing a while after the nonce expires), so a replayed proof
/// (on any instance sharing the store) is refused and spent nonces do not pile up. Accepted signatures:
/// EIP-191 (`personal_sign`) by an externally owned account. Smart-contract wallets
/// (EIP-1271, EIP-6492) are not verified yet: their proofs are refused.
///
/// ```
/// use tollgate::Secret;
/// use tollgate::method::prepaid::Siwx;
///
/// let siwx = Siwx::new(&Secret::new("a long random secret of 32+ bytes"), "api.example.com",
///     "https://api.example.com/v1/sign-in", [8453]);
/// let challenge = siwx.challenge();
/// assert_eq!(challenge.info.domain, "api.example.com");
/// assert_eq!(challenge.supported_chains[0].chain_id, "eip155:8453");
/// ```
#[derive(Clone)]
pub struct Siwx {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    domain: String,
    uri: String,
    statement: Option<String>,
    chains: Vec<u64>,
    ttl: Duration,
}

/// A challenge: what the client signs (`info`) and the chains it may sign for, as the x402
/// `sign-in-with-x` extension lays it out.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SiwxChallenge {
    /// The message fields shared by every chain.
    pub info: SiwxInfo,
    /// The chains a proof may be signed for.
    pub supported_chains: Vec<SupportedChain>,
}

/// The fields of a challenge's EIP-4361 message.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SiwxInfo {
    /// The server's domain (host and port).
    pub domain: String,
    /// The URI the proof is presented to.
    pub uri: String,
    /// A human-readable statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// CAIP-122 version, `"1"`.
    pub version: String,
    /// The single-use nonce.
    pub nonce: String,
    /// When the challenge was issued (RFC 3339).
    pub issued_at: String,
    /// When it expires (RFC 3339).
    pub expiration_time: String,
}

/// One chain a proof may be signed for.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SupportedChain {
    /// CAIP-2 id, `eip155:<id>`.
    pub chain_id: String,
    /// The signature algorithm, `eip191`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl Siwx {
    /// Challenges for `domain` (the host clients reach, with its port if not the default)
    /// and `uri` (where proofs are presented), signable on the EIP-155 `chains`; nonces are
    /// bound with a key derived from `secret` (the same on every instance).
    pub fn new(
        secret: &Secret,
        domain: impl Into<String>,
        uri: impl Into<String>,
        chains: impl IntoIterator<Item = u64>,
    ) -> Self {
        let domain = domain.into();
        let inner = Inner {
            keys: Keys::new(secret, &domain),
            domain,
            uri: uri.into(),
            statement: None,
            chains: chains.into_iter().collect(),
            ttl: CHALLENGE_TTL,
        };
        Siwx { inner: Arc::new(inner) }
    }

    /// Sets the statement the message shows the signer.
    pub fn statement(mut self, statement: impl Into<String>) -> Self {
        self.inner_mut().statement = Some(statement.into());
        self
    }

    /// How long a challenge may be signed and presented (default five minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.inner_mut().ttl = ttl;
        self
    }

    fn inner_mut(&mut self) -> &mut Inner {
        // Builders run before the value is shared; a shared one is copied.
        if Arc::get_mut(&mut self.inner).is_none() {
            let i = &self.inner;
            let copy = Inner {
                keys: i.keys.clone(),
                domain: i.domain.clone(),
                uri: i.uri.clone(),
                statement: i.statement.clone(),
                chains: i.chains.clone(),
                ttl: i.ttl,
            };
            self.inner = Arc::new(copy);
        }
        Arc::get_mut(&mut self.inner).unwrap_or_else(|| unreachable!())
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// A fresh challenge.
    pub fn challenge(&self) -> SiwxChallenge {
        self.challenge_at(SystemTime::now())
    }

    fn challenge_at(&self, now: SystemTime) -> SiwxChallenge {
        let i = &self.inner;
        let nonce = nonce::issue(&i.keys, now, i.ttl);
        let info = SiwxInfo {
            domain: i.domain.clone(),
            uri: i.uri.clone(),
            statement: i.statement.clone(),
            version: "1".to_owned(),
            nonce: nonce.text,
            issued_at: rfc3339(nonce.issued),
            expiration_time: rfc3339(nonce.expires),
        };
        let supported_chains = i
            .chains
            .iter()
            .map(|chain| SupportedChain { chain_id: format!("eip155:{chain}"), kind: "eip191".to_owned() })
            .collect();
        SiwxChallenge { info, supported_chains }
    }

    /// Checks the proof in a `SIGN-IN-WITH-X` header value (base64 JSON) and spends its
    /// nonce: the address that signed in. Every check runs before the store is touched.
    pub async fn sign_in<St: ChannelStore>(&self, header: &str, store: &St) -> Result<Address, SignInError> {
        let payload = decode(header)?;
        let now = SystemTime::now();
        let (address, nonce) = self.check(&payload, now)?;
        // Spent once, store-wide: of two racing sign-ins with one proof, one wins (each
        // claims with a holder of its own). The claim lapses once the nonce has expired on
        // every instance's clock, so sign-ins (anyone can make wallets) leave nothing
        // behind for good.
        let ttl = Duration::from_secs(nonce.expires.saturating_sub(unix(now))) + CLOCK_SKEW;
        match store.lock(&format!("siwx-nonce:{}", nonce.text), LockHolder::new(), ttl).await {
            Ok(true) => Ok(address),
            Ok(false) => Err(SignInError::Replayed),
            Err(e) => Err(SignInError::Unavailable(e)),
        }
    }

    /// Everything but the nonce's spending: the signer and the nonce.
    fn check(&self, p: &SiwxPayload, now: SystemTime) -> Result<(Address, Nonce), SignInError> {
        let i = &self.inner;
        if p.domain != i.domain {
            return Err(SignInError::Domain);
        }
        if p.uri != i.uri {
            return Err(SignInError::Uri);
        }
        if p.version != "1" || p.kind != "eip191" {
            return Err(SignInError::Unsupported);
        }
        if p.signature_scheme.as_deref().is_some_and(|scheme| scheme != "eip191") {
            return Err(SignInError::Unsupported);
        }
        let chain = p.chain_id.strip_prefix("eip155:").and_then(|id| id.parse::<u64>().ok());
        let chain = chain.filter(|chain| i.chains.contains(chain)).ok_or(SignInError::Chain)?;
        let nonce = nonce::open(&i.keys, &p.nonce).ok_or(SignInError::Nonce)?;
        // The window is the nonce's own, which the server bound: a client cannot stretch it.
        if p.issued_at != rfc3339(nonce.issued) || p.expiration_time.as_deref() != Some(&*rfc3339(nonce.expires)) {
            return Err(SignInError::Nonce);
        }
        if unix(now) >= nonce.expires {
            return Err(SignInError::Expired);
        }
        if p.not_before.is_some() {
            // The challenge never sets one; a proof that adds one signed something else.
            return Err(SignInError::Unsupported);
        }
        let claimed: Address = p.address.parse().map_err(|_| SignInError::Malformed)?;
        let message = super::message::eip4361(p, chain);
        let hash = alloy::primitives::eip191_hash_message(message.as_bytes());
        let signature = VoucherSignature::from_hex(&p.signature).map_err(|_| SignInError::Signature)?;
        let signer = signature.recover(hash).map_err(|_| SignInError::Signature)?;
        if signer != claimed {
            return Err(SignInError::Signature);
        }
        Ok((signer, nonce))
    }
}

/// The payload in a header value: base64 (either alphabet, padded or not) of JSON.
fn decode(header: &str) -> Result<SiwxPayload, SignInError> {
    let header = header.trim();
    if header.len() > 8 * 1024 {
        return Err(SignInError::Malformed);
    }
    let unpadded = header.trim_end_matches('=');
    let json = STANDARD
        .decode(header)
        .or_else(|_| URL_SAFE.decode(header))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
        .map_err(|_| SignInError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| SignInError::Malformed)
}

impl fmt::Debug for Siwx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Siwx").field("domain", &i.domain).field("uri", &i.uri).field("chains", &i.chains).finish()
    }
}
