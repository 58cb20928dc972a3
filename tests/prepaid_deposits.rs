//! Prepaid deposits verified on anvil (our ERC-20 test token): a transfer to the treasury
//! is credited to its sender once, even with two instances (two stores' handles on one
//! Redis) racing on its hash; a transfer of another token, to another address, a reverted
//! one and one not mined yet are each refused with their status, and credit nothing.

#![cfg(all(feature = "prepaid", feature = "redis"))]

mod chain;

use std::sync::Arc;

use alloy::network::TransactionBuilder;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate::method::prepaid::{DepositError, Deposits, Prepaid, PrepaidApi, Siwx};
use tollgate::store::{ChannelStore, MemoryStore, RedisStore};
use tollgate::{Amount, Secret};
use tower::ServiceExt;

use chain::{anvil_bin, dev_signer};

alloy::sol!(
    #[sol(rpc)]
    #[allow(clippy::too_many_arguments)]
    AuthorizedToken,
    "contracts/artifacts/AuthorizedToken.json"
);

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
const FUNDS: u128 = 1_000_000;

/// Anvil with the deposit token and another token, the depositor funded with both.
struct World {
    anvil: AnvilInstance,
    token: Address,
    other_token: Address,
    treasury: Address,
    depositor: PrivateKeySigner,
}

impl World {
    async fn new() -> World {
        let anvil = Anvil::at(anvil_bin()).chain_id(31337).try_spawn().expect("anvil starts");
        let deployer = dev_signer(&anvil, 0);
        let provider = ProviderBuilder::new().wallet(deployer).connect_http(anvil.endpoint_url());
        let token = AuthorizedToken::deploy(&provider, "Test USD".to_owned(), "2".to_owned()).await.unwrap();
        let other = AuthorizedToken::deploy(&provider, "Other USD".to_owned(), "2".to_owned()).await.unwrap();
        let depositor = dev_signer(&anvil, 2);
        for t in [&token, &other] {
            t.mint(depositor.address(), U256::from(FUNDS)).send().await.unwrap().get_receipt().await.unwrap();
        }
        let treasury = dev_signer(&anvil, 1).address();
        World { token: *token.address(), other_token: *other.address(), treasury, depositor, anvil }
    }

    fn wallet(&self) -> DynProvider {
        ProviderBuilder::new().wallet(self.depositor.clone()).connect_http(self.anvil.endpoint_url()).erased()
    }

    fn deposits(&self) -> Deposits {
        Deposits::new(&self.anvil.endpoint(), self.token, self.treasury).unwrap()
    }

    /// Sends `value` of `token` to `to` and waits for the receipt; its hash.
    async fn transfer(&self, token: Address, to: Address, value: u128) -> B256 {
        let token = AuthorizedToken::new(token, self.wallet());
        let pending = token.transfer(to, U256::from(value)).send().await.unwrap();
        pending.get_receipt().await.unwrap().transaction_hash
    }

    async fn balance(&self, who: Address) -> u128 {
        let token = AuthorizedToken::new(self.token, self.wallet());
        token.balanceOf(who).call().await.unwrap().to::<u128>()
    }
}

fn api<St: ChannelStore>(world: &World, store: St) -> PrepaidApi<St> {
    let siwx = Siwx::new(&Secret::new(SECRET), "api.test", "http://api.test/v1/sign-in", [31337]);
    PrepaidApi::new(Prepaid::new(siwx), store).deposits(world.deposits())
}

/// POSTs `{"txHash": hash}` to the deposits endpoint: status, `Retry-After`, JSON body.
async fn post_deposit<St: ChannelStore>(api: &PrepaidApi<St>, hash: &str) -> (StatusCode, Option<String>, Value) {
    let body = json!({ "txHash": hash }).to_string();
    let request = Request::post("/v1/deposits").header("content-type", "application/json").body(Body::from(body));
    let response = api.clone().oneshot(request.unwrap()).await.unwrap();
    let status = response.status();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}

async fn redis() -> Option<RedisStore> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match RedisStore::connect(&url).await {
        // Anvil is deterministic (the same hashes every run): a prefix of this run's own.
        Ok(store) => Some(store.with_prefix(&format!("prepaid-deposits-{}-{}", std::process::id(), chain::unix_now()))),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("no Redis at {url}: {e}"),
        Err(e) => {
            eprintln!("skipping: no Redis at {url}: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposit_is_credited_once_to_its_sender_even_with_two_instances_racing() {
    let Some(store) = redis().await else { return };
    let world = World::new().await;
    let hash = world.transfer(world.token, world.treasury, 250_000).await;
    assert_eq!(world.balance(world.treasury).await, 250_000);
    // Two instances: two connections to one Redis, each with its own endpoints.
    let twin = RedisStore::connect("redis://127.0.0.1:6379").await.unwrap().with_prefix(store.prefix());
    let (first, second) = (Arc::new(api(&world, store.clone())), Arc::new(api(&world, twin)));
    let hash = format!("{hash:#x}");
    let (one, two) = tokio::join!(post_deposit(&first, &hash), post_deposit(&second, &hash));
    assert_eq!((one.0, two.0), (StatusCode::OK, StatusCode::OK), "{one:?} {two:?}");
    let fresh = [&one.2, &two.2].iter().filter(|answer| answer["fresh"] == true).count();
    assert_eq!(fresh, 1, "exactly one claim credits: {one:?} {two:?}");
    let payer = format!("{:#x}", world.depositor.address());
    assert!(one.2["payer"] == payer && two.2["payer"] == payer);
    // A later claim answers the existing credit.
    let (status, _, again) = post_deposit(&first, &hash).await;
    assert_eq!((status, &again["fresh"], &again["amount"]), (StatusCode::OK, &json!(false), &json!("250000")));
    let balance = store.load(&Prepaid::account(world.depositor.address())).await.unwrap().unwrap();
    assert_eq!(
        (balance.accepted, balance.deposit, balance.spent),
        (Amount::new(250_000), Amount::new(250_000), Amount::ZERO)
    );
    // A second deposit adds to it.
    let more = world.transfer(world.token, world.treasury, 5).await;
    let (status, _, credited) = post_deposit(&second, &format!("{more:#x}")).await;
    assert_eq!((status, &credited["balance"]["available"]), (StatusCode::OK, &json!("250005")));
}

#[tokio::test]
async fn wrong_token_wrong_recipient_reverted_and_unmined_deposits_are_refused_and_credit_nothing() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let api = api(&world, store.clone());
    let payer = Prepaid::account(world.depositor.address());

    let other_token = world.transfer(world.other_token, world.treasury, 100).await;
    let other_recipient = world.transfer(world.token, world.anvil.addresses()[5], 100).await;
    for (hash, code) in [(other_token, "wrong-token"), (other_recipient, "wrong-recipient")] {
        let (status, retry, problem) = post_deposit(&api, &format!("{hash:#x}")).await;
        assert_eq!((status, retry), (StatusCode::BAD_REQUEST, None), "{problem}");
        assert_eq!(problem["type"], format!("https://tollgate.rs/problems/prepaid/{code}"));
    }

    // A transfer of more than the depositor holds: mined, reverted (sent with a fixed gas
    // limit, so no estimate refuses it first).
    let call = AuthorizedToken::transferCall { to: world.treasury, value: U256::from(FUNDS * 2) };
    let tx = TransactionRequest::default()
        .with_to(world.token)
        .with_input(alloy::sol_types::SolCall::abi_encode(&call))
        .with_gas_limit(200_000);
    let receipt = world.wallet().send_transaction(tx).await.unwrap().get_receipt().await.unwrap();
    assert!(!receipt.status());
    let (status, _, problem) = post_deposit(&api, &format!("{:#x}", receipt.transaction_hash)).await;
    assert_eq!(
        (status, &problem["type"]),
        (StatusCode::BAD_REQUEST, &json!("https://tollgate.rs/problems/prepaid/tx-reverted"))
    );

    // Not mined yet: 404 with a retry hint; once mined, credited.
    let wallet = world.wallet();
    let _: () = wallet.raw_request("evm_setAutomine".into(), (false,)).await.unwrap();
    let token = AuthorizedToken::new(world.token, wallet.clone());
    let pending = token.transfer(world.treasury, U256::from(700)).send().await.unwrap();
    let hash = format!("{:#x}", pending.tx_hash());
    let (status, retry, problem) = post_deposit(&api, &hash).await;
    assert_eq!((status, retry.as_deref()), (StatusCode::NOT_FOUND, Some("5")), "{problem}");
    assert_eq!(problem["type"], "https://tollgate.rs/problems/prepaid/tx-not-found");
    assert_eq!(store.load(&payer).await.unwrap(), None, "nothing credited so far");
    let _: String = wallet.raw_request("evm_mine".into(), ()).await.unwrap();
    let (status, _, credited) = post_deposit(&api, &hash).await;
    assert_eq!((status, &credited["amount"], &credited["fresh"]), (StatusCode::OK, &json!("700"), &json!(true)));
    assert_eq!(store.load(&payer).await.unwrap().unwrap().accepted, Amount::new(700));

    // Not a hash at all: refused before the chain is asked.
    let (status, _, _) = post_deposit(&api, "0x1234").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(matches!(world.deposits().claim("nothex", &store).await, Err(DepositError::BadHash)));
}

#[tokio::test]
async fn a_deposit_needs_its_confirmations() {
    let world = World::new().await;
    let store = MemoryStore::new();
    let deposits = world.deposits().confirmations(3);
    let hash = format!("{:#x}", world.transfer(world.token, world.treasury, 9).await);
    match deposits.claim(&hash, &store).await {
        Err(DepositError::NotConfirmed { confirmations: 1, needed: 3 }) => {}
        other => panic!("expected not confirmed, got {other:?}"),
    }
    let _: Value = world.wallet().raw_request("anvil_mine".into(), (2,)).await.unwrap();
    let credited = deposits.claim(&hash, &store).await.unwrap();
    assert_eq!((credited.amount, credited.fresh, credited.payer), (Amount::new(9), true, world.depositor.address()));
}
