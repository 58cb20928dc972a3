//! Stateless challenge ids: an HMAC-SHA256 over the challenge's fields, so a server can
//! tell its own challenges from forged ones without storing them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::request::{canonical, decode_request};
use super::{Challenge, ChallengeFields};

type HmacSha256 = Hmac<Sha256>;

/// Makes and checks challenge ids: `base64url_nopad(HMAC-SHA256(secret, input))` where
/// `input` is the seven slots `realm|method|intent|request|expires|digest|opaque`
/// (absent ones empty), as mppx and mpp-rs compute them. Ids are 43 characters.
///
/// For secret rotation, [`with_previous`](Self::with_previous) keeps accepting ids made
/// with the old secret; keep it until those challenges have expired.
///
/// A signer remembers the last challenges that verified (exactly as echoed), shared with
/// its clones, so a client that echoes one challenge on every request of a session costs
/// one HMAC, not one per request.
///
/// Debug output never shows the secrets.
///
/// See the [module docs](super) for an example.
#[derive(Clone)]
pub struct ChallengeSigner {
    // Keyed HMAC states, built once: cloning one skips re-hashing the key per use.
    current: HmacSha256,
    previous: Option<HmacSha256>,
    verified: Arc<Verified>,
}

impl ChallengeSigner {
    /// A signer with the server secret `secret` (its raw bytes are the HMAC key, as
    /// mppx's `secretKey` string is).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        ChallengeSigner { current: keyed(secret.as_ref()), previous: None, verified: Arc::default() }
    }

    /// Also accept ids made with `secret`, the secret this one replaces. A later call
    /// replaces the earlier previous secret.
    pub fn with_previous(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous = Some(keyed(secret.as_ref()));
        // What verified with the replaced secret may not verify now.
        self.verified = Arc::default();
        self
    }

    /// The id of a challenge with these fields, made with the current secret.
    pub fn id(&self, fields: &ChallengeFields<'_>) -> String {
        let tag = mac(&self.current, fields, fields.request).finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// The keyed state fed with every slot but `opaque` (`fields.opaque` is ignored), from
    /// which [`IdPrefix::id`] makes the id of these fields with any `opaque` in one step.
    pub(crate) fn prefix(&self, fields: &ChallengeFields<'_>) -> IdPrefix {
        // An absent seventh slot is fed as nothing after its separator: the state ends at `|`.
        IdPrefix(mac(&self.current, &ChallengeFields { opaque: None, ..*fields }, fields.request))
    }

    /// Whether `challenge.id` is the id this server made for its fields, with the current
    /// or the previous secret. Compared in constant time.
    ///
    /// The echoed `request` is tried as sent, then re-canonicalized (decoded, JCS,
    /// re-encoded, as mppx does), so a client that re-encoded it (with padding, the
    /// `+/` alphabet, other key order) still verifies. The id itself is decoded strictly,
    /// so one id has one spelling and can key replay stores.
    pub fn verify(&self, challenge: &Challenge) -> bool {
        let Some(tag) = decode_id(&challenge.id) else {
            return false;
        };
        let fields = challenge.fields();
        if self.verified.contains(&tag, &fields) {
            return true;
        }
        let valid = self.matches(&fields, fields.request, &tag)
            || match decode_request(fields.request).ok().as_ref().and_then(canonical) {
                Some(request) if request != fields.request => self.matches(&fields, &request, &tag),
                _ => false,
            };
        if valid {
            self.verified.insert(tag, challenge);
        }
        valid
    }

    fn matches(&self, fields: &ChallengeFields<'_>, request: &str, tag: &[u8; 32]) -> bool {
        let check = |key: &HmacSha256| mac(key, fields, request).verify_slice(tag).is_ok();
        check(&self.current) || self.previous.as_ref().is_some_and(check)
    }
}

impl fmt::Debug for ChallengeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChallengeSigner")
            .field("secret", &"<redacted>")
            .field("previous", &self.previous.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The HMAC state of a challenge's fields up to its `opaque` slot: ids of challenges that
/// differ only in `opaque` cost one short update and a finalization each.
#[derive(Clone)]
pub(crate) struct IdPrefix(HmacSha256);

impl IdPrefix {
    /// The id of the challenge whose `opaque` is `opaque`, written into `id`.
    pub(crate) fn write_id(&self, opaque: &[u8], id: &mut [u8; 43]) {
        let mut mac = self.0.clone();
        mac.update(opaque);
        // 32 bytes always make 43 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(mac.finalize().into_bytes(), id);
    }

    /// The id of the challenge whose `opaque` is `opaque`.
    #[cfg(test)]
    pub(crate) fn id(&self, opaque: &str) -> String {
        let mut id = [0; 43];
        self.write_id(opaque.as_bytes(), &mut id);
        String::from_utf8_lossy(&id).into_owned()
    }
}

/// How many verified challenges a signer remembers.
const REMEMBERED: usize = 128;

/// Challenges that verified, by the 32 bytes of their id (an id has one spelling), with
/// the fields it was checked against; only what verified is kept, oldest out first.
#[derive(Default)]
struct Verified {
    recent: RwLock<Recent>,
}

#[derive(Default)]
struct Recent {
    by_tag: HashMap<[u8; 32], Challenge>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    fn contains(&self, tag: &[u8; 32], fields: &ChallengeFields<'_>) -> bool {
        let Ok(recent) = self.recent.read() else { return false };
        recent.by_tag.get(tag).is_some_and(|known| known.fields() == *fields)
    }

    fn insert(&self, tag: [u8; 32], challenge: &Challenge) {
        // A poisoned lock only loses the memory, never a verdict.
        let Ok(mut recent) = self.recent.write() else { return };
        let Recent { by_tag, order } = &mut *recent;
        let known = Challenge { description: None, ..challenge.clone() };
        if by_tag.insert(tag, known).is_none() {
            order.push_back(tag);
        }
        if order.len() > REMEMBERED {
            if let Some(oldest) = order.pop_front() {
                by_tag.remove(&oldest);
            }
        }
    }
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The keyed state fed with the seven slots; `request` overrides `fields.request`.
fn mac(key: &HmacSha256, fields: &ChallengeFields<'_>, request: &str) -> HmacSha256 {
    let mut mac = key.clone();
    let slots = [
        fields.realm,
        fields.method,
        fields.intent,
        request,
        fields.expires.unwrap_or(""),
        fields.digest.unwrap_or(""),
        fields.opaque.unwrap_or(""),
    ];
    for (i, slot) in slots.iter().enumerate() {
        if i > 0 {
            mac.update(b"|");
        }
        mac.update(slot.as_bytes());
    }
    mac
}

/// The 32 bytes of a 43-character id, or `None` for any other spelling.
fn decode_id(id: &str) -> Option<[u8; 32]> {
    if id.len() != 43 {
        return None;
    }
    // 43 characters carry 32 bytes and 2 bits; the strict engine wants those bits zero.
    let mut buf = [0; 33];
    match URL_SAFE_NO_PAD.decode_slice(id.as_bytes(), &mut buf) {
        Ok(32) => buf[..32].try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode_request;
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-vector-secret";
    const EXPIRES: &str = "2025-01-06T12:00:00Z";
    const DIGEST: &str = "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE";

    /// A §7.1 challenge: realm `api.example.com`, `tempo`/`charge`, amount 1000000.
    fn base() -> Challenge {
        Challenge {
            id: String::new(),
            realm: "api.example.com".into(),
            method: "tempo".into(),
            intent: "charge".into(),
            request: encode_request(&json!({"amount": "1000000"})),
            description: None,
            digest: None,
            expires: None,
            opaque: None,
        }
    }

    /// Checks the vector both ways: `id` makes it and `verify` accepts it.
    fn assert_vector(mut c: Challenge, expected: &str) {
        let signer = ChallengeSigner::new(SECRET);
        assert_eq!(signer.id(&c.fields()), expected);
        c.id = expected.to_owned();
        assert!(signer.verify(&c));
    }

    macro_rules! vectors {
        ($($name:ident: |$c:ident| $edit:expr => $id:literal;)*) => {$(
            #[test]
            fn $name() {
                let mut $c = base();
                $edit;
                assert_vector($c, $id);
            }
        )*};
    }

    vectors! {
        v01_required_only: |c| c.description = None => "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4";
        v02_expires: |c| c.expires = Some(EXPIRES.into()) => "ChPX33RkKSZoSUyZcu8ai4hhkvjZJFkZVnvWs5s0iXI";
        v03_digest: |c| c.digest = Some(DIGEST.into()) => "JHB7EFsPVb-xsYCo8LHcOzeX1gfXWVoUSzQsZhKAfKM";
        v04_expires_digest: |c| { c.expires = Some(EXPIRES.into()); c.digest = Some(DIGEST.into()) }
            => "m39jbWWCIfmfJZSwCfvKFFtBl0Qwf9X4nOmDb21peLA";
        v05_opaque: |c| c.opaque = Some(encode_request(&json!({"pi": "pi_3abc123XYZ"})))
            => "rxzKZ2qjXvinqCH96RORTZEPs1KXsA-0AUjrCAPFOWc";
        v06_opaque_expires: |c| {
            c.opaque = Some(encode_request(&json!({"pi": "pi_3abc123XYZ"})));
            c.expires = Some(EXPIRES.into())
        } => "KAfoMrA4fnzS1DPWN_cUv_b3_yHxCizdp6OhH7gluMY";
        v07_empty_opaque: |c| c.opaque = Some(encode_request(&json!({})))
            => "vb4IyH-0LdJ3s7L0QAw8jIzcZkyxksPhIvEfmHmzA9k";
        v08_multi_key_opaque: |c| c.opaque = Some(encode_request(&json!({"pi": "pi_3abc123XYZ", "deposit": "dep_456"})))
            => "aKskU8sadR5ZuFbUCsIwhO-ENxuVpTw17FdwHEXsJDk";
        v09_description_is_not_bound: |c| c.description = Some("Test payment".into())
            => "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4";
        v10_multi_field_request: |c| c.request = encode_request(&json!({"amount": "1000000", "currency": "0x1234", "recipient": "0xabcd"}))
            => "_H5TOnnlW0zduQ5OhQ3EyLVze_TqxLDPda2CGZPZxOc";
        v11_nested_request: |c| c.request = encode_request(&json!({"amount": "1000000", "currency": "0x1234", "methodDetails": {"chainId": 42431}}))
            => "TqujwpuDDg_zsWGINAd5XObO2rRe6uYufpqvtDmr6N8";
        v12_empty_request: |c| c.request = encode_request(&json!({}))
            => "yLN7yChAejW9WNmb54HpJIWpdb1WWXeA3_aCx4dxmkU";
        v13_other_realm: |c| c.realm = "payments.other.com".into() => "3F5bOo2a9RUihdwKk4hGRvBvzQmVPBMDvW0YM-8GD00";
        v14_other_method: |c| c.method = "stripe".into() => "o0ra2sd7HcB4Ph0Vns69gRDUhSj5WNOnUopcDqKPLz4";
        v15_other_intent: |c| c.intent = "session".into() => "aAY7_IEDzsznNYplhOSE8cERQxvjFcT4Lcn-7FHjLVE";
    }

    #[test]
    fn mpp_rs_extra_vector() {
        let mut c = base();
        c.request = encode_request(&json!({
            "amount": "1000000",
            "currency": "0x20c0000000000000000000000000000000000000",
            "recipient": "0x1234567890abcdef1234567890abcdef12345678",
        }));
        let signer = ChallengeSigner::new("test-secret-key-12345");
        assert_eq!(signer.id(&c.fields()), "XmJ98SdsAdzwP9Oa-8In322Uh6yweMO6rywdomWk_V4");
        c.id = "XmJ98SdsAdzwP9Oa-8In322Uh6yweMO6rywdomWk_V4".into();
        assert!(signer.verify(&c));
    }

    #[test]
    fn row_one_hmac_input_is_the_seven_slots() {
        assert_eq!(base().request, "eyJhbW91bnQiOiIxMDAwMDAwIn0");
        let mut mac = keyed(SECRET.as_bytes());
        mac.update(b"api.example.com|tempo|charge|eyJhbW91bnQiOiIxMDAwMDAwIn0|||");
        let id = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(id, "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4");
    }

    fn signed(signer: &ChallengeSigner) -> Challenge {
        let mut c = base();
        c.expires = Some(EXPIRES.into());
        c.id = signer.id(&c.fields());
        c
    }

    #[test]
    fn rotation_accepts_the_previous_secret_only() {
        let old = ChallengeSigner::new("old");
        let rotated = ChallengeSigner::new("new").with_previous("old");
        let c = signed(&old);
        assert!(rotated.verify(&c));
        assert!(!ChallengeSigner::new("new").verify(&c));
        assert!(!ChallengeSigner::new("newer").with_previous("new").verify(&c));
        // New ids come from the current secret.
        assert_eq!(rotated.id(&c.fields()), ChallengeSigner::new("new").id(&c.fields()));
    }

    #[test]
    fn re_encoded_requests_still_verify() {
        let signer = ChallengeSigner::new(SECRET);
        let c = signed(&signer);
        let json = br#"{ "amount" : "1000000" }"#;
        for request in [
            format!("{}=", c.request),
            base64::engine::general_purpose::STANDARD.encode(json),
            URL_SAFE_NO_PAD.encode(json),
        ] {
            assert!(signer.verify(&Challenge { request: request.clone(), ..c.clone() }), "{request}");
        }
        let other = encode_request(&json!({"amount": "1"}));
        assert!(!signer.verify(&Challenge { request: other, ..c.clone() }));
        assert!(!signer.verify(&Challenge { request: "not base64!".into(), ..c }));
    }

    #[test]
    fn forged_or_misspelled_ids_fail() {
        let signer = ChallengeSigner::new(SECRET);
        let c = signed(&signer);
        assert!(signer.verify(&c));
        let tampered = [
            Challenge { expires: None, ..c.clone() },
            Challenge { realm: "evil.example".into(), ..c.clone() },
            Challenge { digest: Some("sha-256=x".into()), ..c.clone() },
            Challenge { id: format!("{}=", c.id), ..c.clone() },
            Challenge { id: c.id[..42].to_owned(), ..c.clone() },
            Challenge { id: String::new(), ..c.clone() },
        ];
        for t in &tampered {
            assert!(!signer.verify(t), "{t:?}");
        }
        // The last character carries 2 spare bits: another spelling of the same bytes.
        let mut id = c.id.clone().into_bytes();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&a| a == id[42]).unwrap();
        id[42] = alphabet[pos ^ 1];
        assert!(!signer.verify(&Challenge { id: String::from_utf8(id).unwrap(), ..c }));
    }

    #[test]
    fn remembered_verdicts_follow_the_secrets() {
        let old = ChallengeSigner::new("old");
        let c = signed(&old);
        let rotated = ChallengeSigner::new("new").with_previous("old");
        assert!(rotated.verify(&c) && rotated.verify(&c));
        // Clones share what verified; replacing the previous secret forgets it.
        assert!(rotated.clone().verify(&c));
        let replaced = rotated.clone().with_previous("other");
        assert!(!replaced.verify(&c));
        assert!(rotated.verify(&c));
        // A remembered id does not vouch for other fields, nor another spelling of it.
        for tampered in [Challenge { expires: None, ..c.clone() }, Challenge { id: format!("{}=", c.id), ..c.clone() }]
        {
            assert!(!rotated.verify(&tampered));
        }
        // Only what verified is remembered, and only so many.
        let signer = ChallengeSigner::new(SECRET);
        assert!(!signer.verify(&Challenge { id: c.id.clone(), ..base() }));
        for n in 0..REMEMBERED + 10 {
            let mut c = Challenge { request: encode_request(&json!({"amount": n.to_string()})), ..base() };
            c.id = signer.id(&c.fields());
            assert!(signer.verify(&c));
        }
        let recent = signer.verified.recent.read().unwrap();
        assert_eq!((recent.by_tag.len(), recent.order.len()), (REMEMBERED, REMEMBERED));
    }

    #[test]
    fn a_prefix_makes_the_id_of_any_opaque() {
        let signer = ChallengeSigner::new(SECRET);
        let mut c = signed(&signer);
        let prefix = signer.prefix(&c.fields());
        for opaque in ["", "e30", "eyJuIjoiYWJjIn0"] {
            c.opaque = Some(opaque.into());
            c.id = prefix.id(opaque);
            assert_eq!(c.id, signer.id(&c.fields()));
            assert!(signer.verify(&c));
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let debug = format!("{:?}", ChallengeSigner::new("hunter2").with_previous("hunter1"));
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
