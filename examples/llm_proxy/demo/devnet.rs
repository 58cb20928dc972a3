//! A local Tempo chain for the demo: `anvil --network tempo` on 127.0.0.1 with the v1
//! escrow placed by `anvil_setCode` and, DEV-ONLY, the v2 channel reserve stand-in
//! (see [`super::reserve`]), plus balance and nonce reads.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use serde_json::Value;
use tollgate::client::TxParams;
use tollgate::method::tempo::PATH_USD;

/// Where the demo and the tests place the v1 escrow.
pub const ESCROW: Address = address!("00000000000000000000000000000000e5c70001");

/// Where `npm ci` puts anvil (the `@foundry-rs/anvil` package pinned in package.json).
const NPM_ANVIL: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

alloy::sol! {
    function balanceOf(address owner) external view returns (uint256);
}

/// A running chain; anvil is killed when this drops.
#[derive(Debug)]
pub struct Devnet {
    /// DEV-ONLY: the gas-raising JSON-RPC front clients are pointed at (see
    /// [`super::rpc_front`]); dropped before anvil.
    front: crate::proxy::Running,
    anvil: AnvilInstance,
    provider: DynProvider,
    /// Its chain id.
    pub chain_id: u64,
}

impl Devnet {
    /// Starts anvil in Tempo mode and installs the escrow.
    pub async fn start(chain_id: u64) -> Result<Devnet, String> {
        Devnet::start_on(chain_id, None).await
    }

    /// [`Devnet::start`] with anvil on `port` (`None`: any free one), as `serve --chain local`
    /// runs it: on the port of the configuration's `rpc_url`.
    pub async fn start_on(chain_id: u64, port: Option<u16>) -> Result<Devnet, String> {
        let anvil = Anvil::at(anvil_bin()?);
        let anvil = match port {
            Some(port) => anvil.port(port),
            None => anvil,
        };
        let anvil = anvil
            .chain_id(chain_id)
            .args(["--network", "tempo"])
            .try_spawn()
            .map_err(|e| format!("could not start anvil --network tempo: {e}"))?;
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url()).erased();
        // Tempo mode starts the clock at 1; mine a block now so `validAfter` checks pass.
        let _: String = provider.raw_request("evm_mine".into(), (unix_now(),)).await.map_err(|e| e.to_string())?;
        let front = super::rpc_front::start(anvil.endpoint()).await.map_err(|e| e.to_string())?;
        let devnet = Devnet { front, anvil, provider, chain_id };
        devnet.install_escrow().await?;
        super::reserve::install(&devnet.provider).await?;
        for n in 0..devnet.anvil.addresses().len() {
            super::reserve::approve_for(&devnet.provider, devnet.signer(n).address()).await?;
        }
        Ok(devnet)
    }

    /// DEV-ONLY: the step the proxy runs before each broadcast so the v2 reserve stand-in
    /// learns each open's expiring-nonce hash (sent from dev account 0).
    pub fn stand_in_opens(&self) -> super::reserve::StandInOpens {
        super::reserve::StandInOpens { provider: self.provider.clone(), from: self.signer(0).address() }
    }

    /// The JSON-RPC URL.
    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    /// DEV-ONLY: the JSON-RPC URL to give clients that estimate gas with the chain (the
    /// mppx CLI): anvil's, behind a front that raises its too-low Tempo estimates.
    pub fn client_rpc_url(&self) -> String {
        self.front.url("")
    }

    /// The `n`th dev account (each holds pathUSD in Tempo mode).
    pub fn signer(&self, n: usize) -> PrivateKeySigner {
        let key = self.anvil.nth_key(n).expect("anvil has 10 dev accounts");
        PrivateKeySigner::from_bytes(&B256::from_slice(&key.to_bytes())).expect("a valid dev key")
    }

    /// The `n`th dev key as `0x…` hex.
    pub fn key_hex(&self, n: usize) -> String {
        format!("0x{}", alloy::hex::encode(self.anvil.nth_key(n).expect("a dev account").to_bytes()))
    }

    /// `owner`'s pathUSD balance in base units.
    pub async fn balance(&self, owner: Address) -> Result<u128, String> {
        let call = TransactionRequest::default().to(PATH_USD).input(balanceOfCall { owner }.abi_encode().into());
        let output = self.provider.call(call).await.map_err(|e| e.to_string())?;
        let balance = balanceOfCall::abi_decode_returns(&output).map_err(|e| e.to_string())?;
        Ok(balance.to::<u128>())
    }

    /// Nonce and fees for a transaction from `from`.
    pub async fn tx_params(&self, from: Address) -> Result<TxParams, String> {
        let nonce = self.provider.get_transaction_count(from).await.map_err(|e| e.to_string())?;
        let gas_price = self.provider.get_gas_price().await.map_err(|e| e.to_string())?;
        Ok(TxParams { nonce, max_fee_per_gas: gas_price * 2, gas_limit: 1_000_000 })
    }

    /// Places the v1 escrow's runtime code at [`ESCROW`] (it has no constructor).
    async fn install_escrow(&self) -> Result<(), String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/artifacts/StreamChannelEscrow.json");
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let artifact: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let code = artifact["deployedBytecode"]["object"].as_str().ok_or("the artifact has no deployedBytecode")?;
        let code = if code.starts_with("0x") { code.to_owned() } else { format!("0x{code}") };
        let _: Value =
            self.provider.raw_request("anvil_setCode".into(), (ESCROW, code)).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// `$ANVIL_BIN`, else the npm-installed anvil, else `anvil` on the PATH.
fn anvil_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ANVIL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let npm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(NPM_ANVIL);
    if npm.is_file() {
        return Ok(npm);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("anvil"))
        .find(|path| path.is_file());
    on_path.ok_or_else(|| {
        "anvil not found: run `npm ci` in the crate root (it installs anvil 1.7.1) or set ANVIL_BIN".into()
    })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
