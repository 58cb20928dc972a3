//! Review 13: attack review of the prepaid balances (SIWX sign-in, session tokens), x402
//! upto and gRPC metering merged this session. Each test names the finding it covers.

#![cfg(all(feature = "prepaid", feature = "x402", feature = "redis", feature = "postgres"))]

mod chain;
mod x402_support;

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tollgate::method::prepaid::{Prepaid, SignInError, Siwx, SiwxChallenge, UsageRecord};
use tollgate::store::{ChannelStore, LockHolder, MemoryStore, PostgresStore, RedisStore};
use tollgate::{Amount, PaymentLayer, Price, Quote, Rate, Secret};

const SECRET: &str = "review13-secret-of-at-least-32-bytes!";
const DOMAIN: &str = "api.review13.test";
const URI: &str = "https://api.review13.test/v1/sign-in";
const CHAIN: u64 = 8453;

fn salt() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn siwx() -> Siwx {
    Siwx::new(&Secret::new(SECRET), DOMAIN, URI, [CHAIN])
}

/// A `SIGN-IN-WITH-X` header value: `challenge` signed by `signer` (EIP-191 over the
/// EIP-4361 message, laid out as the `siwe` library writes it).
fn proof(challenge: &SiwxChallenge, signer: &PrivateKeySigner) -> String {
    let info = &challenge.info;
    let address = signer.address().to_checksum(None);
    let message = format!(
        "{} wants you to sign in with your Ethereum account:\n{address}\n\n\nURI: {}\nVersion: 1\nChain ID: {CHAIN}\n\
         Nonce: {}\nIssued At: {}\nExpiration Time: {}",
        info.domain, info.uri, info.nonce, info.issued_at, info.expiration_time
    );
    let signature = signer.sign_message_sync(message.as_bytes()).unwrap();
    let payload = serde_json::json!({
        "domain": info.domain, "address": address, "uri": info.uri, "version": "1",
        "chainId": format!("eip155:{CHAIN}"), "type": "eip191", "nonce": info.nonce,
        "issuedAt": info.issued_at, "expirationTime": info.expiration_time,
        "signature": format!("0x{}", alloy::hex::encode(signature.as_bytes())),
    });
    STANDARD.encode(payload.to_string())
}

async fn redis() -> Option<(redis::aio::MultiplexedConnection, RedisStore, RedisStore, String)> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("tollgate-review13-{}-{}", std::process::id(), salt());
    let (one, two) = match (RedisStore::connect(&url).await, RedisStore::connect(&url).await) {
        (Ok(one), Ok(two)) => (one.with_prefix(&prefix), two.with_prefix(&prefix)),
        (Err(e), _) | (_, Err(e)) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("no Redis at {url} under CI: {e}")
        }
        _ => return None,
    };
    let connection = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    Some((connection, one, two, prefix))
}

/// Finding 01: a SIWX sign-in spent its nonce by creating a store channel
/// (`siwx-nonce:<nonce>`) that was never removed. Anyone can mint wallets for free and
/// sign in again and again, so an outsider grew the store (Redis keys, PostgreSQL rows,
/// the memory store's map) without bound. A nonce is now spent with a claim that lapses
/// once the nonce can no longer be accepted anyway; a replay within its window is still
/// refused on every instance sharing the store.
#[tokio::test]
async fn finding_01_a_siwx_sign_in_leaves_no_permanent_key_and_is_still_single_use() {
    let Some((mut redis, one, two, prefix)) = redis().await else { return eprintln!("skipping: no Redis") };
    let siwx = siwx();
    let signer = PrivateKeySigner::random();
    let header = proof(&siwx.challenge(), &signer);
    assert_eq!(siwx.sign_in(&header, &one).await.unwrap(), signer.address());
    // The same proof, replayed here and on another instance sharing the store.
    assert!(matches!(siwx.sign_in(&header, &one).await, Err(SignInError::Replayed)));
    assert!(matches!(siwx.sign_in(&header, &two).await, Err(SignInError::Replayed)));
    // Every key the sign-in wrote expires on its own.
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut redis).await.unwrap();
    assert!(!keys.is_empty(), "the nonce claim is somewhere in Redis");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut redis).await.unwrap();
        assert!(ttl > 0, "{key} never expires (PTTL {ttl})");
    }
    // A balance-less sign-in leaves no balance behind.
    assert_eq!(one.load(&Prepaid::account(signer.address())).await.unwrap(), None);
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
}

/// Finding 01 (PostgreSQL): the claims are `tollgate_locks` rows, and a lapsed lock row
/// was only ever replaced by a lock of the same name, never removed: the claims would
/// have piled up there instead. Taking a lock now clears lapsed rows of other names.
#[tokio::test]
async fn finding_01_postgres_lapsed_locks_do_not_pile_up() {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("review13_{}_{}", std::process::id(), salt() % 1_000_000);
    let store = match PostgresStore::connect_in(&url, &schema).await {
        Ok(store) => store,
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("no PostgreSQL under CI: {e}"),
        Err(e) => return eprintln!("skipping: no PostgreSQL ({e})"),
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let counting = format!("SELECT count(*) FROM {schema}.tollgate_locks");
    let siwx = siwx();
    for _ in 0..3 {
        let signer = PrivateKeySigner::random();
        let header = proof(&siwx.challenge(), &signer);
        assert_eq!(siwx.sign_in(&header, &store).await.unwrap(), signer.address());
        assert!(matches!(siwx.sign_in(&header, &store).await, Err(SignInError::Replayed)));
    }
    assert_eq!(client.query_one(&counting, &[]).await.unwrap().get::<_, i64>(0), 3, "three live nonce claims");
    // Lapse them (as time would), then take any other lock.
    client
        .execute(&format!("UPDATE {schema}.tollgate_locks SET expires = now() - interval '1 hour'"), &[])
        .await
        .unwrap();
    assert!(store.lock("a-job", LockHolder::new(), std::time::Duration::from_secs(30)).await.unwrap());
    assert_eq!(client.query_one(&counting, &[]).await.unwrap().get::<_, i64>(0), 1, "only the live lock is left");
    client.execute(&format!("DROP SCHEMA {schema} CASCADE"), &[]).await.unwrap();
}

/// Finding 02: session tokens were keyed by the layer's secret alone, so a token signed
/// in on one domain spent the same payer's balance on any other service run with the same
/// secret (staging and production, two APIs of one operator): whoever the payer handed a
/// token for one of them could spend on all. A token is now bound to the sign-in's domain.
#[tokio::test]
async fn finding_02_a_session_token_works_only_on_the_domain_it_was_signed_in_on() {
    let here = Prepaid::new(siwx());
    let elsewhere = Prepaid::new(Siwx::new(
        &Secret::new(SECRET),
        "other.review13.test",
        "https://other.review13.test/v1/sign-in",
        [CHAIN],
    ));
    let payer = PrivateKeySigner::random().address();
    let token = here.tokens().issue(payer);
    assert_eq!(here.tokens().check(&token.token), Some(payer));
    assert_eq!(elsewhere.tokens().check(&token.token), None, "a token of another domain is refused");
    let theirs = elsewhere.tokens().issue(payer);
    assert_eq!(here.tokens().check(&theirs.token), None);
}

/// Finding 03: a usage record carried the request path (and the model a request named)
/// whole. A path is the client's to choose (up to 64 KiB), the store keeps 1000 records
/// per balance, and a request the upstream fails costs nothing but is still recorded: a
/// payer with a dust balance made the store keep ~64 MiB per balance (Redis, PostgreSQL
/// or this process's memory) for free. A record now keeps at most 256 bytes of each.
#[tokio::test]
async fn finding_03_a_usage_record_stays_small_whatever_the_request_path() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use tower::ServiceExt;

    let prepaid = Prepaid::new(siwx()).model_with(|head| Some(head.uri.path().to_owned()));
    let store = MemoryStore::new();
    let layer = PaymentLayer::new(prepaid.clone(), store.clone(), DOMAIN, Secret::new(SECRET))
        .pricing(Quote::new(Price::per_request(Amount::new(5))));
    // The upstream fails: nothing is charged, a record is written all the same.
    let app =
        axum::Router::new().route("/{*rest}", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }).route_layer(layer));
    let payer = PrivateKeySigner::random().address();
    store.credit(&Prepaid::account(payer), Amount::new(5), "deposit:review13-f03").await.unwrap();
    let bearer = format!("Bearer {}", prepaid.tokens().issue(payer).token);
    let path = format!("/{}", "é".repeat(8 * 1024));
    let request = Request::post(&path).header("authorization", &bearer).body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    // The release runs detached: wait for its record.
    let mut records = Vec::new();
    for _ in 0..200 {
        records = store.usage(&Prepaid::account(payer), 10).await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(records.len(), 1, "one record for the one request");
    assert!(records[0].len() <= 1024, "a record of {} bytes", records[0].len());
    let record = UsageRecord::from_bytes(&records[0]).unwrap();
    assert_eq!(record.cost, Amount::ZERO, "an upstream error costs nothing");
    assert!(path.starts_with(&record.path) && record.path.len() <= 256);
    assert_eq!(store.load(&Prepaid::account(payer)).await.unwrap().unwrap().spent, Amount::ZERO);
}

/// Finding 04: a prepaid response whose lease lapsed (its instance crashed mid-stream, or
/// the store was out of reach longer than the lease) is charged by the reclaim (what was
/// last renewed as delivered), but its usage record was written only by
/// `release_with_usage`, which finds the reservation gone and appends nothing: the balance
/// was debited with no usage record, and `GET /v1/usage` no longer added up to what was
/// spent. Fixed: a prepaid response reserves with `reserve_recording`, keeping a record head
/// with the reservation, and the reclaim completes and appends it in the step that debits
/// (every backend runs the same case in the store conformance suite).
#[tokio::test(start_paused = true)]
async fn finding_04_a_reclaimed_prepaid_reservation_still_leaves_its_usage_record() {
    let store = MemoryStore::new().with_lease(std::time::Duration::from_secs(30));
    let account = Prepaid::account(PrivateKeySigner::random().address());
    store.credit(&account, Amount::new(100), "deposit:review13-f04").await.unwrap();
    // Reserved as a prepaid response is: with the head of the record a reclaim completes.
    let head = bytes::Bytes::from_static(br#"{"at":0,"path":"/v1/chat","promptTokens":0"#);
    let lease = store.reserve_recording(&account, Amount::new(10), Amount::new(10), head).await.unwrap();
    store.renew(&lease, Amount::new(7), 7).await.unwrap();
    // The holder is gone past its lease; the next step on the channel reclaims.
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    let state = store.load(&account).await.unwrap().unwrap();
    let record =
        UsageRecord::from_bytes(br#"{"at":0,"path":"/v1/chat","promptTokens":0,"units":7,"cost":"7"}"#).unwrap();
    // A late release by a holder that came back changes nothing (the lease is gone).
    let _ = store.release_with_usage(&lease, Amount::new(7), 7, record.to_bytes()).await;
    let state = store.load(&account).await.unwrap().map_or(state, |s| s);
    assert_eq!(state.spent, Amount::new(7), "the reclaim charged what was delivered");
    let recorded: u128 = store
        .usage(&account, 10)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| UsageRecord::from_bytes(r))
        .map(|r| r.cost.get())
        .sum();
    assert_eq!(recorded, 7, "the usage records add up to what was spent");
    let records = store.usage(&account, 10).await.unwrap();
    let record = UsageRecord::from_bytes(&records[0]).unwrap();
    assert_eq!((records.len(), record.units, record.reclaimed), (1, 7, true), "one record, marked reclaimed");
}

alloy::sol! {
    function invalidateUnorderedNonces(uint256 wordPos, uint256 mask) external;
}

// Permit2's own EIP-712 names, kept apart from the crate's `TokenPermissions`.
mod typed {
    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }
}

/// A body that sends `first`, then waits for ever (an upstream with more to say).
struct Hanging(Option<bytes::Bytes>);

impl http_body::Body for Hanging {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first)))),
            None => std::task::Poll::Pending,
        }
    }
}

const PER_EVENT: u128 = 10;
const MAX_EVENTS: u64 = 100;

/// An x402 `upto` route on anvil whose upstream sends one SSE event and then hangs, and
/// a payment for it signed by the world's payer.
struct Upto {
    world: x402_support::World,
    app: axum::Router,
    settled: tokio::sync::mpsc::UnboundedReceiver<tollgate::method::x402::SettlementOutcome>,
    requirement: serde_json::Value,
}

impl Upto {
    async fn start(settle_margin: u64) -> Upto {
        use axum::body::Body;
        use axum::http::StatusCode;
        use axum::routing::post;
        use tollgate::meter::EventMeter;
        use tollgate::method::x402::X402Upto;
        use tollgate::wire::x402::PAYMENT_REQUIRED;
        use tower::ServiceExt;

        let world = x402_support::World::new().await;
        x402_support::install_upto(&world).await;
        let store = MemoryStore::new();
        let (tx, settled) = tokio::sync::mpsc::unbounded_channel();
        let method = X402Upto::new(world.offer(0), world.chain(), store.clone())
            .settle_margin(settle_margin)
            .on_settlement(move |outcome| {
                let _ = tx.send(outcome);
            });
        let inner = post(|| async {
            let body = Body::new(Hanging(Some(bytes::Bytes::from_static(b"data: {\"n\":1}\n\n"))));
            axum::http::Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
        });
        let quote = Quote::new(Price::per_unit("event", Rate::per_unit(Amount::new(PER_EVENT)))).max_output(MAX_EVENTS);
        let layer = PaymentLayer::new(method, store, "api.test", Secret::new(SECRET))
            .pricing(quote)
            .meter(EventMeter::default());
        let app = axum::Router::new().route("/v1/chat", inner).route_layer(layer);
        let refused = app.clone().oneshot(Self::request(None)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
        let required = STANDARD.decode(refused.headers()[PAYMENT_REQUIRED].as_bytes()).unwrap();
        let requirement = serde_json::from_slice::<serde_json::Value>(&required).unwrap()["accepts"][0].clone();
        Upto { world, app, settled, requirement }
    }

    fn request(payment: Option<String>) -> axum::http::Request<axum::body::Body> {
        let mut request = axum::http::Request::post("/v1/chat").header("host", "api.test");
        if let Some(payment) = payment {
            request = request.header(&tollgate::wire::x402::PAYMENT_SIGNATURE, payment);
        }
        request.body(axum::body::Body::empty()).unwrap()
    }

    /// The payer's permit for the maximum with `nonce`, valid until `deadline`.
    fn payment(&self, nonce: alloy::primitives::U256, deadline: u64) -> String {
        use alloy::primitives::U256;
        use alloy::sol_types::{SolStruct, eip712_domain};
        use tollgate::method::x402::{
            PERMIT2_ADDRESS, Permit2Authorization, TokenPermissions, UPTO_PROXY_ADDRESS, UptoPayload, UptoWitness,
        };
        let world = &self.world;
        let a = Permit2Authorization {
            from: world.payer.address(),
            permitted: TokenPermissions { token: world.token, amount: U256::from(PER_EVENT * u128::from(MAX_EVENTS)) },
            spender: UPTO_PROXY_ADDRESS,
            nonce,
            deadline,
            witness: UptoWitness { to: world.payee.address(), facilitator: world.payee.address(), valid_after: 0 },
        };
        let domain =
            eip712_domain! { name: "Permit2", chain_id: x402_support::CHAIN_ID, verifying_contract: PERMIT2_ADDRESS, };
        let message = typed::PermitWitnessTransferFrom {
            permitted: typed::TokenPermissions { token: a.permitted.token, amount: a.permitted.amount },
            spender: a.spender,
            nonce: a.nonce,
            deadline: U256::from(a.deadline),
            witness: typed::Witness {
                to: a.witness.to,
                facilitator: a.witness.facilitator,
                validAfter: U256::from(a.witness.valid_after),
            },
        };
        let signature = world.payer.sign_hash_sync(&message.eip712_signing_hash(&domain)).unwrap();
        let payload = UptoPayload { signature: signature.as_bytes().to_vec().into(), permit2_authorization: a };
        let payment = serde_json::json!({
            "x402Version": 2, "resource": {"url": "http://api.test/v1/chat"}, "accepted": self.requirement,
            "payload": payload,
        });
        STANDARD.encode(payment.to_string())
    }

    /// The paid response's body, after its first event was read.
    async fn first_event(&self, payment: String) -> axum::body::Body {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = self.app.clone().oneshot(Self::request(Some(payment))).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let mut body = response.into_body();
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&frame).contains("\"n\":1"), "the first event was delivered");
        body
    }

    async fn next_settlement(&mut self) -> tollgate::method::x402::SettlementOutcome {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.settled.recv()).await.unwrap().unwrap()
    }

    async fn balances(&self) -> (u128, u128) {
        (self.world.balance(self.world.payee.address()).await, self.world.balance(self.world.payer.address()).await)
    }
}

/// Finding 05: an x402 `upto` settlement took "Permit2 has used the permit's nonce" as
/// "the transfer happened", even on a fresh attempt that had sent nothing yet. Permit2
/// nonces are the owner's: a payer who burns the nonce during the stream
/// (`invalidateUnorderedNonces`, one cheap transaction) was recorded as paid with nothing
/// moved, and kept the content. (The EIP-3009 `exact` settler was fixed for the same
/// thing with `cancelAuthorization`.) Now only a transaction of this settler, or an
/// earlier attempt's that may have landed, lets the nonce decide.
#[tokio::test]
async fn finding_05_an_upto_payer_who_burns_the_permit2_nonce_mid_stream_is_not_recorded_as_paid() {
    use alloy::primitives::U256;
    use alloy::providers::{Provider, ProviderBuilder};
    use alloy::sol_types::SolCall;
    use tollgate::method::x402::PERMIT2_ADDRESS;

    let mut upto = Upto::start(30).await;
    let nonce = (U256::from(x402_support::unix_now()) << 64) + U256::from(7);
    let payment = upto.payment(nonce, x402_support::unix_now() + 300);
    let before = upto.balances().await;
    let body = upto.first_event(payment).await;
    // The payer burns the permit's nonce on Permit2, then hangs up.
    let wallet = ProviderBuilder::new().wallet(upto.world.payer.clone()).connect_http(upto.world.anvil.endpoint_url());
    let mask = U256::from(1) << (nonce & U256::from(0xff)).to::<usize>();
    let burn = invalidateUnorderedNoncesCall { wordPos: nonce >> 8, mask };
    let burn = alloy::rpc::types::TransactionRequest::default().to(PERMIT2_ADDRESS).input(burn.abi_encode().into());
    assert!(wallet.send_transaction(burn).await.unwrap().get_receipt().await.unwrap().status());
    drop(body);
    let outcome = upto.next_settlement().await;
    assert_eq!(upto.balances().await, before, "nothing moved");
    assert!(matches!(outcome, Some(Err(_))), "a payment that moved nothing is not recorded as settled: {outcome:?}");
}

/// Finding 06: an x402 `upto` stream had no end tied to its permit's deadline.
/// Verification asked only that the deadline be `settle_margin` away; the settlement ran
/// when the stream ended, which the payer controls (a slow or paused reader holds it open,
/// and a long completion takes longer than 30 s anyway). Past the deadline Permit2 refuses
/// the settle: everything delivered went unpaid. The grant now says when it must settle
/// (`Grant::settle_by`, `settle_margin` before the deadline): the stream ends there cleanly
/// and what it delivered settles in time.
#[tokio::test]
async fn finding_06_an_upto_stream_held_past_its_permit_deadline_is_still_paid() {
    use alloy::primitives::U256;
    use http_body_util::BodyExt;

    // A short margin keeps the test short: the permit is valid 4 s, the payer holds 6 s.
    let mut upto = Upto::start(2).await;
    let nonce = (U256::from(x402_support::unix_now()) << 64) + U256::from(8);
    let payment = upto.payment(nonce, x402_support::unix_now() + 4);
    let before = upto.balances().await;
    let mut body = upto.first_event(payment).await;
    // The payer stops reading (or the upstream keeps going) past the deadline.
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(6), async { while body.frame().await.is_some() {} }).await;
    drop(body);
    let outcome = upto.next_settlement().await;
    assert!(matches!(outcome, Some(Ok(_))), "the delivered event settles: {outcome:?}");
    assert_eq!(upto.balances().await, (before.0 + PER_EVENT, before.1 - PER_EVENT), "one event paid");
}

/// Finding 06, the client that stops reading: a body nobody polls cannot end itself, so
/// the stream's account is held by a watchdog between polls, which releases it at the
/// deadline; the settlement lands while the payer still holds the connection open.
#[tokio::test]
async fn finding_06_an_upto_payer_who_stops_reading_cannot_hold_the_settlement_past_the_deadline() {
    use alloy::primitives::U256;
    use http_body_util::BodyExt;

    let mut upto = Upto::start(2).await;
    let nonce = (U256::from(x402_support::unix_now()) << 64) + U256::from(9);
    let payment = upto.payment(nonce, x402_support::unix_now() + 4);
    let before = upto.balances().await;
    let body = upto.first_event(payment).await;
    // The body is held, never polled, until the settlement is over.
    let outcome = upto.next_settlement().await;
    assert!(matches!(outcome, Some(Ok(_))), "the delivered event settles without the body: {outcome:?}");
    assert_eq!(upto.balances().await, (before.0 + PER_EVENT, before.1 - PER_EVENT), "one event paid");
    // The stream is over when the payer looks again: its receipt, and no more content.
    let rest = tokio::time::timeout(std::time::Duration::from_secs(60), body.collect()).await.unwrap().unwrap();
    let rest = String::from_utf8_lossy(&rest.to_bytes()).into_owned();
    assert!(!rest.contains("\"n\":1"), "nothing more is delivered: {rest:?}");
    assert!(rest.contains("payment-receipt"), "the stream ends with its receipt: {rest:?}");
}
