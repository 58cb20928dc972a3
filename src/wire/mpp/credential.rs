//! The credential a client sends: `Authorization: Payment <base64url(JSON)>`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Challenge;
use super::request::encode_request;
use crate::error::{PaymentError, PaymentErrorKind};

/// The largest credential token we decode (mpp-rs caps at 16 KiB too).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A `Payment` credential: the echoed challenge, the method's proof, and who paid.
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    /// The challenge being answered, echoed as the server sent it.
    pub challenge: Challenge,
    /// The method-specific proof (a signed transaction, a voucher, …).
    pub payload: serde_json::Value,
    /// The payer, as a DID such as `did:pkh:eip155:4217:0x…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Credential {
    /// The `Payment` credential of a request's `Authorization` headers, if it has one.
    ///
    /// Every `Authorization` value is split on `,` (base64url has no commas), and parts
    /// starting with `Payment ` (any case) are credentials. Several of them are a
    /// [`BadRequest`](PaymentErrorKind::BadRequest). A token over 16 KiB, bad base64url,
    /// bad JSON or missing challenge fields are a
    /// [`MalformedCredential`](PaymentErrorKind::MalformedCredential).
    ///
    /// `challenge.request` is not decoded here: check the id with
    /// [`ChallengeSigner::verify`](super::ChallengeSigner::verify) first, then decode.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential>, PaymentError> {
        let mut found = None;
        for token in payment_tokens(headers) {
            if found.replace(token).is_some() {
                return Err(PaymentError::new(PaymentErrorKind::BadRequest, "more than one Payment credential"));
            }
        }
        found.map(Credential::decode).transpose()
    }

    /// Whether `headers` carry a `Payment` credential at all, without decoding it (the
    /// cheap test the layer makes before answering an unpaid request).
    pub fn is_present(headers: &HeaderMap) -> bool {
        payment_tokens(headers).next().is_some()
    }

    fn decode(token: &[u8]) -> Result<Credential, PaymentError> {
        let malformed = |detail: Cow<'static, str>| PaymentError::new(PaymentErrorKind::MalformedCredential, detail);
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("credential is larger than 16 KiB".into()));
        }
        // The decoded JSON goes into a buffer kept per thread (taken fresh if it is in use).
        DECODED
            .with(|buf| match buf.try_borrow_mut() {
                Ok(mut buf) => Credential::parse(token, &mut buf),
                Err(_) => Credential::parse(token, &mut Vec::new()),
            })
            .map_err(malformed)
    }

    fn parse(token: &[u8], json: &mut Vec<u8>) -> Result<Credential, Cow<'static, str>> {
        decode_token(token, json).ok_or("credential is not base64url")?;
        // One UTF-8 check of the whole JSON spares serde one per string; JSON that is not
        // UTF-8 throughout is left to `from_slice`, which judges it as it always did.
        let parsed = match std::str::from_utf8(json) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(json),
        };
        parsed.map_err(|e| format!("credential is not valid: {e}").into())
    }

    /// The `Authorization` value: `Payment ` and the base64url (no padding) of the JSON.
    pub fn to_header_value(&self) -> HeaderValue {
        let json = serde_json::to_vec(self).expect("strings and JSON values always serialize");
        let mut value = String::with_capacity(8 + json.len().div_ceil(3) * 4);
        value.push_str("Payment ");
        URL_SAFE_NO_PAD.encode_string(json, &mut value);
        HeaderValue::try_from(value).expect("base64url is a valid header value")
    }

    /// The chain id and `0x` address of a `did:pkh:eip155:<chainId>:<address>` source.
    pub fn source_address(&self) -> Option<(u64, &str)> {
        let rest = self.source.as_deref()?.strip_prefix("did:pkh:eip155:")?;
        let (chain, address) = rest.split_once(':')?;
        let canonical = chain == "0" || !chain.starts_with('0');
        if chain.is_empty() || !canonical || !chain.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hex = address.strip_prefix("0x")?;
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((chain.parse().ok()?, address))
    }
}

/// The tokens of every `Payment` part of every `Authorization` value (split on `,`: the
/// base64url alphabet has none).
fn payment_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(AUTHORIZATION).iter().flat_map(|value| {
        let value = value.as_bytes();
        let ends = memchr::memchr_iter(b',', value).chain([value.len()]);
        ends.scan(0, move |start, end| Some(&value[std::mem::replace(start, end + 1)..end]))
            .filter_map(|part| payment_token(part.trim_ascii()))
    })
}

/// The token of a `Payment <token>` part (the token may be empty: still a credential).
fn payment_token(part: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = part.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"payment") || rest.first().is_some_and(|&b| b != b' ' && b != b'\t') {
        return None;
    }
    Some(rest.trim_ascii_start())
}

/// The symbol values of both base64 alphabets (`-_` and `+/`); [`BAD`] for other bytes.
const SYMBOLS: [u8; 256] = {
    let mut table = [BAD; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        if i < 10 {
            table[b'0' as usize + i] = 52 + i as u8;
        }
        i += 1;
    }
    (table[b'-' as usize], table[b'+' as usize], table[b'_' as usize], table[b'/' as usize]) = (62, 62, 63, 63);
    table
};

/// Not a base64 symbol.
const BAD: u8 = 0xff;

thread_local! {
    /// Decoded credential JSON, reused per thread (tokens are at most 16 KiB).
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decodes a credential token into `out` as [`decode_base64`](super::request::decode_base64)
/// does (either alphabet, even mixed; any trailing `=` dropped; stray low bits in the last
/// symbol tolerated), in one pass with one table. `None`: not base64.
fn decode_token(token: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let token = &token[..end];
    if token.len() % 4 == 1 {
        return None;
    }
    out.clear();
    out.resize(token.len() / 4 * 3 + (token.len() % 4).saturating_sub(1), 0);
    let mut bad = 0;
    // Eight symbols make six bytes; the last few go bit by bit.
    let (blocks, rest) = token.split_at(token.len() / 8 * 8);
    let (out_blocks, out_rest) = out.split_at_mut(blocks.len() / 8 * 6);
    for (symbols, bytes) in blocks.chunks_exact(8).zip(out_blocks.chunks_exact_mut(6)) {
        // One load of eight symbols, then one table load each.
        let w = u64::from_le_bytes(symbols.try_into().expect("blocks of eight"));
        let v: [u8; 8] = std::array::from_fn(|i| SYMBOLS[(w >> (8 * i)) as usize & 0xff]);
        // Written as trees, not chains, so the symbols are combined in parallel.
        bad |= (v[0] | v[1]) | (v[2] | v[3]) | ((v[4] | v[5]) | (v[6] | v[7]));
        let quad = |v: &[u8]| u32::from(v[0]) << 18 | u32::from(v[1]) << 12 | u32::from(v[2]) << 6 | u32::from(v[3]);
        let n = u64::from(quad(&v[..4])) << 24 | u64::from(quad(&v[4..]));
        bytes.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    let (mut n, mut bits, mut at) = (0u32, 0, 0);
    for &s in rest {
        let v = SYMBOLS[usize::from(s)];
        bad |= v;
        (n, bits) = (n << 6 | u32::from(v & 0x3f), bits + 6);
        if bits >= 8 {
            bits -= 8;
            out_rest[at] = (n >> bits) as u8;
            at += 1;
        }
    }
    // Symbols are below 64; `BAD` has the top bits set.
    (bad & 0xc0 == 0).then_some(())
}

/// `opaque` as a base64url string, or the legacy expanded `{string: string}` object older
/// mppx clients echo, normalized to the JCS base64url the id binds.
pub(super) fn deserialize_opaque<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Opaque;

    impl<'de> Visitor<'de> for Opaque {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a base64url string or an object of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let object: serde_json::Map<String, serde_json::Value> =
                Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
            if !object.values().all(serde_json::Value::is_string) {
                return Err(de::Error::custom("opaque values must be strings"));
            }
            Ok(Some(encode_request(&serde_json::Value::Object(object))))
        }
    }

    d.deserialize_any(Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credential() -> Credential {
        let challenge = Challenge {
            id: "X6v1eo7fJ76gAxqY0xN9Jd__4lUyDDYmriryOM-5FO4".into(),
            realm: "api.example.com".into(),
            method: "tempo".into(),
            intent: "charge".into(),
            request: "eyJhbW91bnQiOiIxMDAwMDAwIn0".into(),
            description: None,
            digest: None,
            expires: Some("2026-01-01T00:05:00.000Z".into()),
            opaque: None,
        };
        Credential { challenge, payload: json!({"type": "hash", "hash": "0x01"}), source: None }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, v.parse().unwrap());
        }
        map
    }

    fn token(json: &serde_json::Value) -> String {
        format!("Payment {}", URL_SAFE_NO_PAD.encode(json.to_string()))
    }

    #[test]
    fn round_trips_and_finds_payment_among_other_schemes() {
        let c = credential();
        let value = c.to_header_value();
        assert!(value.to_str().unwrap().starts_with("Payment ey"));
        let mixed = format!("Bearer abc, {}", value.to_str().unwrap().replace("Payment", "pAyMeNt"));
        for map in [headers(&[value.to_str().unwrap()]), headers(&["Basic eA==", &mixed])] {
            assert_eq!(Credential::from_headers(&map).unwrap(), Some(c.clone()));
        }
        assert_eq!(Credential::from_headers(&headers(&["Bearer abc"])).unwrap(), None);
        assert_eq!(Credential::from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn several_credentials_are_a_bad_request() {
        let v = credential().to_header_value();
        let v = v.to_str().unwrap();
        for map in [headers(&[v, v]), headers(&[&format!("{v}, {v}")])] {
            assert_eq!(Credential::from_headers(&map).unwrap_err().kind(), PaymentErrorKind::BadRequest);
        }
    }

    #[test]
    fn malformed_credentials() {
        let mut missing = serde_json::to_value(credential()).unwrap();
        missing["challenge"].as_object_mut().unwrap().remove("realm");
        let too_big = format!("Payment {}", "A".repeat(MAX_TOKEN_LEN + 1));
        for bad in [
            "Payment",
            "Payment !!!",
            too_big.as_str(),
            &format!("Payment {}", URL_SAFE_NO_PAD.encode("{not json")),
            &token(&json!({"payload": {}})),
            &token(&missing),
            &token(&json!({"challenge": {"opaque": 1}, "payload": {}})),
        ] {
            let e = Credential::from_headers(&headers(&[bad])).unwrap_err();
            assert_eq!(e.kind(), PaymentErrorKind::MalformedCredential, "{bad}: {e}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_in_ignored_fields_are_ignored() {
        let json = serde_json::to_vec(&credential()).unwrap();
        let with_extra = [&json[..json.len() - 1], b",\"extra\":\"\xff\"}"].concat();
        let token = format!("Payment {}", URL_SAFE_NO_PAD.encode(&with_extra));
        assert_eq!(Credential::from_headers(&headers(&[&token])).unwrap(), Some(credential()));
        let bad_source = [&json[..json.len() - 1], b",\"source\":\"\xff\"}"].concat();
        let token = format!("Payment {}", URL_SAFE_NO_PAD.encode(&bad_source));
        let e = Credential::from_headers(&headers(&[&token])).unwrap_err();
        assert_eq!(e.kind(), PaymentErrorKind::MalformedCredential);
    }

    #[test]
    fn accepts_padded_and_standard_base64() {
        let json = serde_json::to_vec(&credential()).unwrap();
        let padded = format!("Payment {}", base64::engine::general_purpose::STANDARD.encode(json));
        assert_eq!(Credential::from_headers(&headers(&[&padded])).unwrap(), Some(credential()));
    }

    /// [`decode_token`] into a fresh buffer.
    fn decoded(token: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![7; 3];
        decode_token(token, &mut out).map(|()| out)
    }

    #[test]
    fn tokens_decode_as_the_shared_lenient_decoder_does() {
        use super::super::request::decode_base64;
        let json = serde_json::to_vec(&credential()).unwrap();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            URL_SAFE_NO_PAD,
        ];
        for len in 0..json.len().min(40) {
            for engine in &engines {
                let token = engine.encode(&json[..len]);
                assert_eq!(decoded(token.as_bytes()), decode_base64(token.as_bytes()), "{token}");
                assert_eq!(decoded(token.as_bytes()).as_deref(), Some(&json[..len]));
            }
        }
        for token in [
            "", "=", "A", "AB", "AB=", "AB==", "AB===", "ABC", "ABC=", "ABCD", "AB=C", "A=BC", "AB.C", "A-_+/", "AP",
            "AP//",
        ] {
            assert_eq!(decoded(token.as_bytes()), decode_base64(token.as_bytes()), "{token}");
        }
    }

    mod props {
        use super::super::super::request::decode_base64;
        use super::decoded;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_token_decodes_as_the_shared_decoder_does(token in "[A-Za-z0-9_+/=.\\-]{0,24}") {
                prop_assert_eq!(decoded(token.as_bytes()), decode_base64(token.as_bytes()));
            }

            #[test]
            fn any_bytes_decode_as_the_shared_decoder_does(token in proptest::collection::vec(any::<u8>(), 0..24)) {
                prop_assert_eq!(decoded(&token), decode_base64(&token));
            }
        }
    }

    #[test]
    fn legacy_object_opaque_is_normalized() {
        let mut wire = serde_json::to_value(credential()).unwrap();
        wire["challenge"]["opaque"] = json!({"pi": "pi_3abc123XYZ", "deposit": "dep_456"});
        let parsed = Credential::from_headers(&headers(&[&token(&wire)])).unwrap().unwrap();
        let expected = encode_request(&json!({"deposit": "dep_456", "pi": "pi_3abc123XYZ"}));
        assert_eq!(parsed.challenge.opaque, Some(expected));

        wire["challenge"]["opaque"] = json!({"pi": 1});
        let e = Credential::from_headers(&headers(&[&token(&wire)])).unwrap_err();
        assert_eq!(e.kind(), PaymentErrorKind::MalformedCredential);
    }

    #[test]
    fn source_address_parses_did_pkh() {
        let address = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1";
        let with = |s: &str| Credential { source: Some(s.into()), ..credential() };
        let c = with(&format!("did:pkh:eip155:42431:{address}"));
        assert_eq!(c.source_address(), Some((42431, address)));
        assert_eq!(with(&format!("did:pkh:eip155:0:{address}")).source_address(), Some((0, address)));
        for bad in [
            format!("did:pkh:eip155:042431:{address}"),
            format!("did:pkh:eip155::{address}"),
            format!("did:pkh:eip155:1:{}", &address[..41]),
            format!("did:pkh:eip155:1:{}g", &address[..41]),
            format!("did:pkh:solana:1:{address}"),
            "did:pkh:eip155:99999999999999999999:0x0000000000000000000000000000000000000000".into(),
        ] {
            assert_eq!(with(&bad).source_address(), None, "{bad}");
        }
        assert_eq!(credential().source_address(), None);
    }
}
