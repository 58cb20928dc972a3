//! The Payment scheme's hot paths: issuing a 402 challenge, and parsing + checking a
//! credential's HMAC-bound challenge.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Request, Response, header};
use http_body_util::Empty;
use serde_json::json;
use tollgate::method::{Offer, PaymentMethod, Verified, Verify};
use tollgate::store::{ChannelStore, MemoryStore};
use tollgate::wire::mpp::{Challenge, ChallengeSigner, Credential, encode_request, format_expires};
use tollgate::{Amount, PaymentError, PaymentErrorKind, PaymentLayer, Price, Pricing, Quote, Secret};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// A session-shaped offer like the Tempo method's.
struct SessionOffer;

impl PaymentMethod for SessionOffer {
    type Request = serde_json::Value;
    type Payload = serde_json::Value;

    fn offers(&self, quote: &Quote) -> Vec<Offer<serde_json::Value>> {
        vec![Offer::mpp(
            "tempo",
            "session",
            json!({
                "amount": quote.price.output.unit_price().to_string(),
                "currency": "0x20c0000000000000000000000000000000000000",
                "methodDetails": {"chainId": 4217, "escrowContract": "0x4d50500000000000000000000000000000000000", "sessionProtocol": "v2"},
                "recipient": "0x742d35cc6634c0532925a3b844bc9e7595f8fe00",
                "suggestedDeposit": "10000000",
                "unitType": quote.price.unit,
            }),
        )]
    }

    async fn verify<St: ChannelStore>(
        &self,
        _: Verify<'_, serde_json::Value, serde_json::Value>,
        _: &St,
    ) -> Result<Verified, PaymentError> {
        Err(PaymentError::new(PaymentErrorKind::VerificationFailed, "bench"))
    }
}

/// A price that changes on every request: every 402 sells a new offer.
struct EverChanging(AtomicU64);

impl Pricing for EverChanging {
    fn quote(&self, _: &http::request::Parts, _: Option<&Bytes>) -> Result<Option<Quote>, PaymentError> {
        let amount = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Quote::new(Price::per_request(Amount::new(u128::from(amount))))))
    }
}

fn credential_headers(signer: &ChallengeSigner) -> HeaderMap {
    let request = encode_request(&json!({
        "amount": "25", "currency": "0x20c0000000000000000000000000000000000000",
        "methodDetails": {"chainId": 4217, "escrowContract": "0x4d50500000000000000000000000000000000000", "sessionProtocol": "v2"},
        "recipient": "0x742d35cc6634c0532925a3b844bc9e7595f8fe00", "suggestedDeposit": "10000000", "unitType": "llm_token"
    }));
    let mut challenge = Challenge {
        id: String::new(),
        realm: "api.example.com".into(),
        method: "tempo".into(),
        intent: "session".into(),
        request,
        description: None,
        digest: None,
        expires: Some(format_expires(SystemTime::now() + Duration::from_secs(300))),
        opaque: None,
    };
    challenge.id = signer.id(&challenge.fields());
    // A voucher payload of realistic size (v2 descriptor + 65-byte signature).
    let payload = json!({
        "action": "voucher",
        "channelId": format!("0x{}", "ab".repeat(32)),
        "cumulativeAmount": "123456789",
        "signature": format!("0x{}", "cd".repeat(65)),
        "descriptor": {
            "payer": "0x3d6885f89100445ca9869d1b0a49c97cfdbafeee", "payee": "0xda2390fee8d9744b39a8a855675649e95617acd8",
            "operator": "0x0000000000000000000000000000000000000000", "token": "0x20c0000000000000000000000000000000000000",
            "salt": format!("0x{}", "fb".repeat(32)), "authorizedSigner": "0xfe9d3d9cbb5f6fbe495b03f7ec90d4adc22126f5",
            "expiringNonceHash": format!("0x{}", "4e".repeat(32))
        }
    });
    let credential = Credential {
        challenge,
        payload,
        source: Some("did:pkh:eip155:4217:0x3d6885f89100445ca9869d1b0a49c97cfdbafeee".into()),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, credential.to_header_value());
    headers
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let layer = PaymentLayer::new(
        SessionOffer,
        MemoryStore::new(),
        "api.example.com",
        Secret::new("bench-secret-of-32-bytes-or-more"),
    )
    .pricing(Price::per_request(Amount::new(25)));
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<tollgate::RequestBody<Empty<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        },
    ));
    c.bench_function("challenge_issue_402", |b| {
        b.to_async(&runtime).iter(|| {
            let mut svc = svc.clone();
            async move {
                let response = svc.ready().await.unwrap().call(Request::new(Empty::new())).await.unwrap();
                assert_eq!(response.status(), 402);
            }
        })
    });

    // The worst case: no 402 issued before sold the same offer.
    let layer = PaymentLayer::new(
        SessionOffer,
        MemoryStore::new(),
        "api.example.com",
        Secret::new("bench-secret-of-32-bytes-or-more"),
    )
    .pricing(EverChanging(AtomicU64::new(1)));
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |_req: Request<tollgate::RequestBody<Empty<Bytes>>>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        },
    ));
    c.bench_function("challenge_issue_402_new_offer", |b| {
        b.to_async(&runtime).iter(|| {
            let mut svc = svc.clone();
            async move {
                let response = svc.ready().await.unwrap().call(Request::new(Empty::new())).await.unwrap();
                assert_eq!(response.status(), 402);
            }
        })
    });

    let signer = ChallengeSigner::new("bench-secret-of-32-bytes-or-more");
    let headers = credential_headers(&signer);
    c.bench_function("credential_parse", |b| b.iter(|| Credential::from_headers(&headers).unwrap().unwrap()));
    c.bench_function("credential_parse_and_hmac_check", |b| {
        b.iter(|| {
            let credential = Credential::from_headers(&headers).unwrap().unwrap();
            assert!(signer.verify(&credential.challenge));
        })
    });
    let challenge = Credential::from_headers(&headers).unwrap().unwrap().challenge;
    c.bench_function("challenge_id_hmac", |b| b.iter(|| signer.id(&challenge.fields())));
    // A signer remembers what verified: this is the check of a challenge seen before.
    c.bench_function("challenge_verify_seen", |b| b.iter(|| assert!(signer.verify(&challenge))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
