//! An anvil chain (chain id 8453, the id @libertai/x402 hard-codes) with our EIP-3009 /
//! EIP-2612 test token, the real JS x402 clients as signers, the official facilitator as a
//! local server, and a JSON-RPC/HTTP front that fails on cue.

#![allow(dead_code)]
// The token's ABI has 9-argument functions (EIP-3009's v, r, s); `sol!` mirrors them.
#![allow(clippy::too_many_arguments)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolStruct, eip712_domain};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;
use tollgate::Amount;
use tollgate::method::tempo::RpcChain;
use tollgate::method::x402::{Authorization, EvmOffer, ExactPayload, TransferMethod};

use super::chain::{anvil_bin, dev_signer};

pub const CHAIN_ID: u64 = 8453;
pub const NAME: &str = "Test USD";
pub const VERSION: &str = "2";
/// What the payer is minted.
pub const FUNDS: u128 = 1_000_000;

alloy::sol!(
    #[sol(rpc)]
    AuthorizedToken,
    "contracts/artifacts/AuthorizedToken.json"
);

alloy::sol! {
    struct TransferWithAuthorization { address from; address to; uint256 value; uint256 validAfter; uint256 validBefore; bytes32 nonce; }
    struct Permit { address owner; address spender; uint256 value; uint256 nonce; uint256 deadline; }
}

/// A chain with the token deployed and the payer funded.
pub struct World {
    pub anvil: AnvilInstance,
    pub token: Address,
    /// payTo, and the settling key (dev account 1).
    pub payee: PrivateKeySigner,
    /// Holds [`FUNDS`] (dev account 2).
    pub payer: PrivateKeySigner,
    /// Holds nothing of the token (dev account 3).
    pub poor: PrivateKeySigner,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A nonce no other call in this process makes.
pub fn fresh_nonce() -> B256 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let seed = format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    keccak256(seed)
}

pub fn key_hex(signer: &PrivateKeySigner) -> String {
    alloy::hex::encode_prefixed(signer.to_bytes())
}

impl World {
    pub async fn new() -> World {
        let anvil = Anvil::at(anvil_bin()).chain_id(CHAIN_ID).try_spawn().expect("anvil starts");
        let deployer = dev_signer(&anvil, 0);
        let provider = ProviderBuilder::new().wallet(deployer).connect_http(anvil.endpoint_url());
        let token = AuthorizedToken::deploy(&provider, NAME.to_owned(), VERSION.to_owned()).await.unwrap();
        let (payee, payer, poor) = (dev_signer(&anvil, 1), dev_signer(&anvil, 2), dev_signer(&anvil, 3));
        token.mint(payer.address(), U256::from(FUNDS)).send().await.unwrap().get_receipt().await.unwrap();
        World { token: *token.address(), anvil, payee, payer, poor }
    }

    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// The payee's chain access (it settles), at `url` (anvil, or a front).
    pub fn chain_at(&self, url: &str) -> RpcChain {
        RpcChain::new(url, self.payee.clone()).unwrap()
    }

    pub fn chain(&self) -> RpcChain {
        self.chain_at(&self.rpc_url())
    }

    pub fn offer(&self, amount: u128) -> EvmOffer {
        EvmOffer::new(CHAIN_ID, self.token, NAME, VERSION, self.payee.address(), Amount::new(amount))
    }

    pub fn permit_offer(&self, max: u128) -> EvmOffer {
        self.offer(max).transfer_method(TransferMethod::Permit)
    }

    fn reader(&self) -> AuthorizedToken::AuthorizedTokenInstance<DynProvider> {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint_url()).erased();
        AuthorizedToken::new(self.token, provider)
    }

    pub async fn balance(&self, who: Address) -> u128 {
        self.reader().balanceOf(who).call().await.unwrap().to::<u128>()
    }

    pub async fn allowance(&self, owner: Address, spender: Address) -> u128 {
        self.reader().allowance(owner, spender).call().await.unwrap().to::<u128>()
    }

    pub async fn permit_nonce(&self, owner: Address) -> U256 {
        self.reader().nonces(owner).call().await.unwrap()
    }

    pub async fn authorization_used(&self, from: Address, nonce: B256) -> bool {
        self.reader().authorizationState(from, nonce).call().await.unwrap()
    }

    /// How many transactions `who` has sent.
    pub async fn sent(&self, who: Address) -> u64 {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint_url());
        provider.get_transaction_count(who).await.unwrap()
    }

    /// An authorization from `from` to payTo of `value`, valid from 10 min ago for 5 min.
    pub fn authorization(&self, from: Address, value: u128) -> Authorization {
        let now = unix_now();
        Authorization {
            from,
            to: self.payee.address(),
            value: U256::from(value),
            valid_after: now - 600,
            valid_before: now + 300,
            nonce: fresh_nonce(),
        }
    }

    /// `signer` signs `a` as an EIP-3009 transfer under the domain `(name, version, chain)`
    /// of the token (alloy's EIP-712, not ours).
    pub fn sign_transfer_in(
        &self,
        signer: &PrivateKeySigner,
        a: Authorization,
        name: &str,
        version: &str,
        chain: u64,
    ) -> ExactPayload {
        let domain = eip712_domain! {
            name: name.to_owned(), version: version.to_owned(), chain_id: chain, verifying_contract: self.token,
        };
        let message = TransferWithAuthorization {
            from: a.from,
            to: a.to,
            value: a.value,
            validAfter: U256::from(a.valid_after),
            validBefore: U256::from(a.valid_before),
            nonce: a.nonce,
        };
        let signature = signer.sign_hash_sync(&message.eip712_signing_hash(&domain)).unwrap();
        ExactPayload { signature: signature.as_bytes().to_vec().into(), authorization: a }
    }

    pub fn sign_transfer(&self, signer: &PrivateKeySigner, a: Authorization) -> ExactPayload {
        self.sign_transfer_in(signer, a, NAME, VERSION, CHAIN_ID)
    }
}

/// Runs tests/js/x402_sign.mjs: the real client `client` signs `requirement` with `key`.
/// Returns the whole printed payment (`payload` inside).
pub async fn js_sign(client: &str, requirement: &Value, key: &PrivateKeySigner, rpc: &str) -> Value {
    let out = tokio::process::Command::new("node")
        .arg("tests/js/x402_sign.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CLIENT", client)
        .env("REQUIREMENT", requirement.to_string())
        .env("PRIVATE_KEY", key_hex(key))
        .env("RPC_URL", rpc)
        .output()
        .await
        .expect("node runs");
    assert!(out.status.success(), "x402_sign.mjs {client} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON payment")
}

/// The official facilitator (tests/js/x402_facilitator.mjs) on 127.0.0.1; killed on drop.
pub struct FacilitatorProcess {
    pub url: String,
    _child: tokio::process::Child,
}

impl FacilitatorProcess {
    pub async fn start(world: &World, gas_payer: &PrivateKeySigner) -> FacilitatorProcess {
        let mut child = tokio::process::Command::new("node")
            .arg("tests/js/x402_facilitator.mjs")
            .arg("0")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RPC_URL", world.rpc_url())
            .env("PRIVATE_KEY", key_hex(gas_payer))
            .env("CHAIN_ID", CHAIN_ID.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the facilitator says where it listens");
        let port = serde_json::from_str::<Value>(&first).unwrap()["port"].as_u64().unwrap();
        // Keep draining its request log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        FacilitatorProcess { url: format!("http://127.0.0.1:{port}"), _child: child }
    }
}

/// An HTTP front that forwards everything to `target`, except that the `nth` (0-based)
/// request whose path or body contains `marker` fails with a 502: after forwarding it
/// (`forward`: the upstream acted, the caller cannot know) or without.
pub struct FailingFront {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FailingFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Front {
    target: String,
    marker: &'static str,
    nth: usize,
    forward: bool,
    seen: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    http: alloy::transports::http::reqwest::Client,
}

impl FailingFront {
    pub async fn start(target: &str, marker: &'static str, nth: usize, forward: bool) -> FailingFront {
        let hits = Arc::new(AtomicUsize::new(0));
        let front = Front {
            target: target.trim_end_matches('/').to_owned(),
            marker,
            nth,
            forward,
            seen: Arc::default(),
            hits: hits.clone(),
            http: Default::default(),
        };
        let app = axum::Router::new().fallback(relay).with_state(front);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FailingFront { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it failed.
    pub fn failed(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn relay(State(front): State<Front>, method: axum::http::Method, uri: Uri, body: Bytes) -> (StatusCode, Bytes) {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let marked = path.contains(front.marker) || String::from_utf8_lossy(&body).contains(front.marker);
    let fail = marked && front.seen.fetch_add(1, Ordering::SeqCst) == front.nth;
    if fail && !front.forward {
        front.hits.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_GATEWAY, Bytes::from_static(b"dropped"));
    }
    let answer = front
        .http
        .request(method, format!("{}{path}", front.target))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let (status, bytes) = match answer {
        Ok(r) => (StatusCode::from_u16(r.status().as_u16()).unwrap(), r.bytes().await.unwrap_or_default()),
        Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
    };
    if fail {
        front.hits.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_GATEWAY, Bytes::from_static(b"lost after forwarding"));
    }
    (status, bytes)
}

/// Signs a Permit(owner, spender, value, nonce, deadline) under the token's domain and
/// carries it as @libertai/x402 does.
pub fn sign_permit(world: &World, owner: &PrivateKeySigner, value: u128, nonce: U256, deadline: u64) -> ExactPayload {
    let domain = eip712_domain! {
        name: NAME.to_owned(), version: VERSION.to_owned(), chain_id: CHAIN_ID, verifying_contract: world.token,
    };
    let message = Permit {
        owner: owner.address(),
        spender: world.payee.address(),
        value: U256::from(value),
        nonce,
        deadline: U256::from(deadline),
    };
    let signature = owner.sign_hash_sync(&message.eip712_signing_hash(&domain)).unwrap();
    ExactPayload {
        signature: signature.as_bytes().to_vec().into(),
        authorization: Authorization {
            from: owner.address(),
            to: world.payee.address(),
            value: U256::from(value),
            valid_after: 0,
            valid_before: deadline,
            nonce: B256::from(nonce.to_be_bytes::<32>()),
        },
    }
}

/// Installs the project's Permit2 and x402UptoPermit2Proxy stand-ins at their canonical
/// addresses (`anvil_setCode`) and has the payer approve Permit2 on the token (the one-time
/// step the x402 `upto` client expects done).
pub async fn install_upto(world: &World) {
    use tollgate::method::x402::{PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS};
    let provider = ProviderBuilder::new().connect_http(world.anvil.endpoint_url());
    for (name, at) in [("Permit2StandIn", PERMIT2_ADDRESS), ("UptoPermit2ProxyStandIn", UPTO_PROXY_ADDRESS)] {
        let path = format!("{}/contracts/artifacts/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let artifact: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let code = artifact["deployedBytecode"]["object"].as_str().unwrap().to_owned();
        let _: Value = provider.raw_request("anvil_setCode".into(), (at, code)).await.unwrap();
    }
    let payer = ProviderBuilder::new().wallet(world.payer.clone()).connect_http(world.anvil.endpoint_url());
    let token = AuthorizedToken::new(world.token, payer);
    token.approve(PERMIT2_ADDRESS, U256::MAX).send().await.unwrap().get_receipt().await.unwrap();
}
