//! x402 claims do not pile up forever: every verified payment claims a store channel, and a
//! payer with one funded wallet could sign authorizations without end and walk away before
//! anything was delivered. A claim now lapses an hour after its authorization's validity
//! ends ([`CLAIM_LAPSE_GRACE`]), when the chain and verification refuse it anyway, and a
//! later create sweeps it with its settlement shelves.

#![cfg(all(feature = "x402", feature = "redis"))]

mod chain;
mod x402_support;

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;
use bytes::Bytes;
use tollgate::Amount;
use tollgate::method::tempo::RpcChain;
use tollgate::method::x402::settle::{PENDING_SHELF, SETTLED_SHELF};
use tollgate::method::x402::{CLAIM_LAPSE_GRACE, ValueRule, X402ErrorKind, X402Verifier, claim_id};
use tollgate::store::{ChannelId, ChannelStore, MemoryStore, RedisStore};
use x402_support::{World, sign_permit, unix_now};

const PRICE: u128 = 10;

/// A store on a prefix of its own and a raw connection to look behind it; `None` (after
/// saying why) without a server, except under `CI=true`, where that fails.
async fn redis() -> Option<(RedisStore, redis::aio::MultiplexedConnection)> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let prefix = format!("tollgate-lapse-{}-{nanos}", std::process::id());
    match RedisStore::connect(&url).await {
        Ok(store) => {
            let raw = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
            Some((store.with_prefix(&prefix), raw))
        }
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!("no Redis at {url} under CI: {e}"),
        Err(e) => {
            eprintln!("skipping: no Redis at {url} ({e})");
            None
        }
    }
}

fn verifier<S: ChannelStore + Clone>(world: &World, store: &S) -> X402Verifier<RpcChain, S> {
    X402Verifier::new(world.chain(), store.clone())
}

/// When the lapse index says `claim` lapses (unix ms), if it is listed.
async fn lapse_of(raw: &mut redis::aio::MultiplexedConnection, store: &RedisStore, claim: &ChannelId) -> Option<u64> {
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{}:lapses", store.prefix()))
        .arg(claim.as_str())
        .query_async(raw)
        .await
        .unwrap();
    score.map(|ms| ms as u64)
}

/// What a settlement keeps for `claim` (a pending attempt and its outcome).
async fn settlement_records<S: ChannelStore>(store: &S, claim: &ChannelId, amount: u128) {
    let record = Bytes::from(format!(r#"{{"amount":"{amount}","transaction":null}}"#));
    store.keep(claim, PENDING_SHELF, Amount::new(1), record.clone()).await.unwrap();
    store.keep(claim, SETTLED_SHELF, Amount::new(1), record).await.unwrap();
}

#[tokio::test]
async fn a_verified_payments_claim_lapses_after_its_authorization_and_is_swept_with_its_shelves() {
    let Some((store, mut raw)) = redis().await else { return };
    let world = World::new().await;
    let offer = world.offer(PRICE);
    let a = world.authorization(world.payer.address(), PRICE);
    let valid_before = a.valid_before;
    let payload = world.sign_transfer(&world.payer, a);
    let verified = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap();
    let claim = verified.claim().clone();
    assert_eq!(claim, claim_id(&offer, &payload.authorization));

    // The claim carries its lapse: the authorization's end plus the grace.
    let lapse = (valid_before + CLAIM_LAPSE_GRACE.as_secs()) * 1000;
    assert_eq!(lapse_of(&mut raw, &store, &claim).await, Some(lapse));
    settlement_records(&store, &claim, PRICE).await;
    // While it is there, a replay is refused.
    let replay = verifier(&world, &store).verify(&offer, &payload, ValueRule::Equal).await.unwrap_err();
    assert_eq!(replay.kind(), X402ErrorKind::NonceUsed);

    // An hour after the authorization's end (moved into the past here, as time would), the
    // next verified payment's claim sweeps it.
    let past = (unix_now() - 1) * 1000;
    let _: i64 = redis::cmd("ZADD")
        .arg(format!("{}:lapses", store.prefix()))
        .arg("XX")
        .arg(past)
        .arg(claim.as_str())
        .query_async(&mut raw)
        .await
        .unwrap();
    let next = world.sign_transfer(&world.payer, world.authorization(world.payer.address(), PRICE));
    let later = verifier(&world, &store).verify(&offer, &next, ValueRule::Equal).await.unwrap();

    assert_eq!(store.load(&claim).await.unwrap(), None, "the lapsed claim is gone");
    for shelf in [PENDING_SHELF, SETTLED_SHELF] {
        assert!(store.kept(&claim, shelf).await.unwrap().is_empty(), "its {shelf} records are gone");
        assert!(!store.shelved(shelf).await.unwrap().contains(&claim), "it is no longer listed on {shelf}");
    }
    let left: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:{{{claim}}}*", store.prefix())).query_async(&mut raw).await.unwrap();
    assert!(left.is_empty(), "keys of the swept claim remain: {left:?}");
    assert_eq!(lapse_of(&mut raw, &store, &claim).await, None);
    // The live one is untouched.
    assert!(store.load(later.claim()).await.unwrap().is_some());
    assert!(lapse_of(&mut raw, &store, later.claim()).await.is_some());
}

#[tokio::test]
async fn a_permit_claim_and_its_next_round_lapse_at_their_own_deadlines() {
    let Some((store, mut raw)) = redis().await else { return };
    let world = World::new().await;
    let offer = world.permit_offer(PRICE);
    let deadline = unix_now() + 300;
    let first = sign_permit(&world, &world.payer, PRICE, U256::ZERO, deadline);
    let verified = verifier(&world, &store).verify(&offer, &first, ValueRule::Equal).await.unwrap();
    let base = verified.claim().clone();
    let grace = CLAIM_LAPSE_GRACE.as_secs();
    assert_eq!(lapse_of(&mut raw, &store, &base).await, Some((deadline + grace) * 1000));

    // It settled nothing: the next permit with the same nonce takes the next round, which
    // lapses at its own deadline.
    settlement_records(&store, &base, 0).await;
    let second = sign_permit(&world, &world.payer, PRICE, U256::ZERO, deadline + 60);
    let round = verifier(&world, &store).verify(&offer, &second, ValueRule::Equal).await.unwrap();
    assert_eq!(round.claim(), &ChannelId::new(format!("{base}/1")));
    assert_eq!(lapse_of(&mut raw, &store, round.claim()).await, Some((deadline + 60 + grace) * 1000));
}

/// Rounds lapse by their own deadlines, so an early round may be swept while a later one
/// is still live. The next permit with that nonce must not take the swept round's place:
/// two live claims on one nonce would deliver twice and settle once.
#[tokio::test]
async fn a_swept_early_permit_round_opens_no_second_live_claim() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let offer = world.permit_offer(PRICE);
    let permit = sign_permit(&world, &world.payer, PRICE, U256::ZERO, unix_now() + 300);
    let base = claim_id(&offer, &permit.authorization);
    // Round 0 was void and has been swept; round 1 is live (nothing settled yet).
    let live = SystemTime::now() + CLAIM_LAPSE_GRACE;
    store
        .create_lapsing(&ChannelId::new(format!("{base}/1")), Amount::new(PRICE), Amount::new(PRICE), live)
        .await
        .unwrap();
    assert_eq!(store.load(&base).await.unwrap(), None);

    let refused = verifier(&world, &store).verify(&offer, &permit, ValueRule::Equal).await.unwrap_err();
    assert_eq!(refused.kind(), X402ErrorKind::NonceUsed);
    assert_eq!(store.load(&base).await.unwrap(), None, "the refused permit claimed nothing");
}
