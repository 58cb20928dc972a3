//! Fuzz-style property tests for every parser fed by the network (issue 7): the
//! `Authorization: Payment` credential, `WWW-Authenticate` challenges, `Payment-Receipt`,
//! the SSE scanner and field reader, the OpenAI chunk reader (through
//! `OpenAiTokenMeter`) and the Tempo transaction decoder.
//!
//! Each runs 10,000 cases of arbitrary bytes and of mutated valid inputs, and asserts that
//! nothing panics and, where it applies, that what decodes re-encodes to the same thing.

use std::sync::OnceLock;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::json;
use tollgate::meter::{Meter, OpenAiTokenMeter, SseScanner, sse_data, sse_fields};
use tollgate::wire::mpp::{Challenge, Credential, Receipt};

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(CASES) }
}

/// A mutation of a valid input: flip, insert, delete or truncate at a position.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let len = out.len();
        match *m {
            Mutation::Flip(at, byte) if len > 0 => out[at % len] ^= byte.max(1),
            Mutation::Insert(at, byte) => out.insert(at % (len + 1), byte),
            Mutation::Delete(at) if len > 0 => {
                out.remove(at % len);
            }
            Mutation::Truncate(at) => out.truncate(at % (len + 1)),
            _ => {}
        }
    }
    out
}

fn header(name: http::HeaderName, value: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Some(headers)
}

/// Header text: printable ASCII, quotes and backslashes, and code points above U+00FF
/// (written `\uXXXX`). Latin-1 code points are left out: the encoder writes them as raw
/// bytes, which the parser reads back as UTF-8 where they form a valid sequence (`"Â®"`
/// comes back as `"®"`), the ambiguity header values have.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        chars(TOKEN, 1..24),
        chars(&[' ', '"', '\\', ',', '=', 'a', 'Z', '~', '€', '日', '語'], 1..32),
        Just("a \"quoted\" \\ value".to_owned()),
    ]
}

const TOKEN: &[char] = &['a', 'b', 'z', 'A', 'Z', '0', '9', '-', '_'];

/// Strings of `alphabet`'s characters (cheaper than regex strategies in debug builds).
fn chars(alphabet: &'static [char], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<prop::sample::Index>(), len)
        .prop_map(move |picks| picks.iter().map(|i| *i.get(alphabet)).collect())
}

fn challenge() -> impl Strategy<Value = Challenge> {
    (
        chars(TOKEN, 1..43),
        text(),
        chars(&['a', 'm', 'z'], 1..12),
        chars(&['a', 'Z', '0', '-'], 1..12),
        chars(TOKEN, 0..64),
        proptest::option::of(text()),
        proptest::option::of(Just("2030-01-01T00:00:00Z".to_owned())),
    )
        .prop_map(|(id, realm, method, intent, request, description, expires)| Challenge {
            id,
            realm,
            method,
            intent,
            request,
            description,
            digest: None,
            expires,
            opaque: None,
        })
}

fn valid_challenge() -> Challenge {
    Challenge {
        id: "x8Zq0Yv4s2n9m1Kp3Lr5Tt7Uu9Ww1Yy3Aa5Cc7Ee9Gg".into(),
        realm: "api.example.com".into(),
        method: "tempo".into(),
        intent: "session".into(),
        request: "eyJhbW91bnQiOiIxMCIsImN1cnJlbmN5IjoiMHgyMGMwIn0".into(),
        description: Some("one \"token\"".into()),
        digest: None,
        expires: Some("2030-01-01T00:00:00Z".into()),
        opaque: None,
    }
}

fn valid_credential() -> Credential {
    Credential {
        challenge: valid_challenge(),
        payload: json!({"action": "voucher", "channelId": "0x01", "cumulativeAmount": "1000", "signature": "0x02"}),
        source: Some("did:pkh:eip155:4217:0x1111111111111111111111111111111111111111".into()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn credential_from_arbitrary_bytes(prefix in prop_oneof![Just(&b"Payment "[..]), Just(&b""[..])],
                                       bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut value = prefix.to_vec();
        value.extend_from_slice(&bytes);
        if let Some(headers) = header(AUTHORIZATION, &value) {
            let _ = Credential::is_present(&headers);
            let _ = Credential::from_headers(&headers);
        }
    }

    #[test]
    fn credential_mutated_and_round_trips(mutations in proptest::collection::vec(mutation(), 0..4),
                                          challenge in challenge(),
                                          amount in any::<u128>(),
                                          source in proptest::option::of(text())) {
        let valid = valid_credential().to_header_value();
        if let Some(headers) = header(AUTHORIZATION, &mutate(valid.as_bytes(), &mutations)) {
            let _ = Credential::from_headers(&headers);
        }
        let credential = Credential { challenge, payload: json!({"cumulativeAmount": amount.to_string()}), source };
        let headers = header(AUTHORIZATION, credential.to_header_value().as_bytes()).unwrap();
        prop_assert_eq!(Credential::from_headers(&headers).unwrap(), Some(credential));
    }

    #[test]
    fn challenge_from_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Some(headers) = header(WWW_AUTHENTICATE, &bytes) {
            let _ = Challenge::parse_all(headers.get_all(WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn challenge_mutated_and_round_trips(mutations in proptest::collection::vec(mutation(), 0..4),
                                         challenge in challenge()) {
        let valid = valid_challenge().to_header_value().unwrap();
        let mut two = b"Bearer realm=\"x\", ".to_vec();
        two.extend_from_slice(valid.as_bytes());
        for input in [valid.as_bytes(), &two[..]] {
            if let Some(headers) = header(WWW_AUTHENTICATE, &mutate(input, &mutations)) {
                let _ = Challenge::parse_all(headers.get_all(WWW_AUTHENTICATE));
            }
        }
        if let Ok(value) = challenge.to_header_value() {
            let parsed = Challenge::parse_all([&value]).unwrap();
            prop_assert_eq!(parsed, vec![challenge]);
        }
    }

    #[test]
    fn receipt_from_arbitrary_and_mutated_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                                mutations in proptest::collection::vec(mutation(), 0..4),
                                                reference in text(), units in any::<u64>()) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = Receipt::from_header_value(&value);
        }
        let mut receipt = Receipt::new("tempo", reference);
        receipt.units = Some(units);
        let value = receipt.to_header_value();
        prop_assert_eq!(Receipt::from_header_value(&value).unwrap(), receipt);
        if let Ok(value) = HeaderValue::from_bytes(&mutate(value.as_bytes(), &mutations)) {
            let _ = Receipt::from_header_value(&value);
        }
    }

    /// Boundaries do not depend on how the stream is cut into chunks, and each is within
    /// the chunk it is reported for.
    #[test]
    fn sse_scanner_is_chunking_independent(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                           cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        // Mostly line ends, so that events end often; any byte otherwise.
        let stream: Vec<u8> =
            bytes.iter().map(|&b| match b % 8 { 0 | 1 => b'\n', 2 | 3 => b'\r', 4 => b'a', _ => b }).collect();
        let boundaries = |chunks: &[&[u8]]| {
            let (mut scanner, mut found, mut offset) = (SseScanner::new(), Vec::new(), 0);
            for chunk in chunks {
                let mut rest = *chunk;
                while let Some(n) = scanner.next_boundary(rest) {
                    assert!(n > 0 && n <= rest.len(), "boundary {n} outside a chunk of {}", rest.len());
                    offset += n;
                    found.push(offset);
                    rest = &rest[n..];
                }
                offset += rest.len();
            }
            found
        };
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&stream[start..cut]);
            start = cut;
        }
        chunks.push(&stream[start..]);
        let found = boundaries(&[&stream[..]]);
        prop_assert_eq!(boundaries(&chunks), found.clone());
        // Every event (and the unfinished tail) reads as fields without panicking.
        let mut start = 0;
        for end in found.into_iter().chain([stream.len()]) {
            let event = &stream[start..end];
            prop_assert!(sse_fields(event).all(|field| field.value.len() <= event.len()));
            let _ = sse_data(event, &mut Vec::new());
            start = end;
        }
    }
}

/// A typical OpenAI stream chunk.
fn openai_chunk(text: &str, usage: bool) -> String {
    let mut chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
    });
    if usage {
        chunk["usage"] = json!({"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10});
    }
    chunk.to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn openai_meter_takes_any_event_or_data(events in proptest::collection::vec(
                                                (any::<bool>(), chars(&['a', ' ', '"', '\\', '\n', '日', '😀', '\u{0}'], 0..24),
                                                 proptest::collection::vec(mutation(), 0..3),
                                                 proptest::collection::vec(any::<u8>(), 0..64)),
                                                1..5)) {
        let mut sse = OpenAiTokenMeter::new();
        let mut plain = OpenAiTokenMeter::with_prompt_estimate(5);
        let (head, _) = http::Response::new(()).into_parts();
        let _ = sse.on_response(&head);
        for (usage, text, mutations, junk) in &events {
            let event = format!("data: {}\n\n", openai_chunk(text, *usage));
            let mutated = mutate(event.as_bytes(), mutations);
            let before = sse.on_event(event.as_bytes());
            let after = sse.on_event(&mutated);
            let _ = sse.on_event(junk);
            let _ = plain.on_data(&mutated);
            let _ = plain.on_data(junk);
            // Without a reported usage, what was counted is never taken back.
            if !*usage {
                prop_assert!(after.output >= before.output || after.input != before.input);
            }
        }
        let _ = (sse.on_end(), plain.on_end(), sse.cutoff(), plain.cutoff());
    }
}

#[cfg(feature = "tempo")]
mod tempo_tx {
    use alloy::primitives::{Address, U256};
    use alloy::signers::local::PrivateKeySigner;
    use tollgate::method::tempo::tx::{FeePayer, TempoTransaction, TempoTxBuilder};

    use super::*;

    /// A few valid transactions of each shape, signed once.
    fn samples() -> &'static [Vec<u8>] {
        static SAMPLES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        SAMPLES.get_or_init(|| {
            let signer = PrivateKeySigner::from_bytes(&[7u8; 32].into()).unwrap();
            let base = || {
                TempoTxBuilder::new(4217)
                    .call(Address::repeat_byte(0x20), vec![0xa9, 0x05, 0x9c, 0xbb, 1, 2, 3])
                    .gas_limit(500_000)
                    .fees(20_000_000_000, 1)
            };
            vec![
                base().fee_token(Address::repeat_byte(0x20)).nonce(U256::ZERO, 3).sign(&signer).unwrap(),
                base().expiring(1_900_000_000).valid_after(1_800_000_000).sign(&signer).unwrap(),
                base()
                    .call(Address::repeat_byte(0x21), vec![])
                    .nonce(U256::from(9), 1)
                    .sponsored()
                    .sign(&signer)
                    .unwrap(),
            ]
        })
    }

    /// Decodes `raw`; `verify` also recovers the sender (slow in debug builds, so only a
    /// share of the cases do).
    fn decode_checks(raw: &[u8], verify: bool) {
        if let Ok(tx) = TempoTransaction::decode(raw) {
            // Canonical: what decodes re-encodes to the same bytes.
            assert_eq!(tx.raw(), raw);
            if tx.tx().fee_payer != FeePayer::AwaitingSponsor {
                assert_eq!(tx.encode_2718(), raw);
            }
            let _ = (tx.tx_hash(), tx.signing_hash());
            if verify {
                let _ = (tx.sender(), tx.sponsor_address());
            }
            assert!(tx.tx().validate().is_ok(), "a decoded transaction is valid");
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn tx_decoder_takes_arbitrary_bytes(kind in prop_oneof![Just(0x76u8), Just(0x78u8), any::<u8>()],
                                            bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut raw = vec![kind];
            raw.extend_from_slice(&bytes);
            decode_checks(&raw, true);
        }

        #[test]
        fn tx_decoder_takes_mutated_transactions(sample in 0..3usize,
                                                 mutations in proptest::collection::vec(mutation(), 1..4),
                                                 verify in prop::bool::weighted(0.1)) {
            decode_checks(&mutate(&samples()[sample], &mutations), verify);
        }
    }

    #[test]
    fn tx_samples_decode_and_recover() {
        let signer = PrivateKeySigner::from_bytes(&[7u8; 32].into()).unwrap();
        for raw in samples() {
            decode_checks(raw, true);
            assert_eq!(TempoTransaction::decode(raw).unwrap().sender().unwrap(), signer.address());
        }
    }
}
