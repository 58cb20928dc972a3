//! A local Tempo chain for integration tests: anvil 1.7.1 in `--network tempo` mode.
//!
//! The binary comes from the `ANVIL_BIN` environment variable, or else from the npm
//! package pinned in `package.json` (`npm ci` puts it under `node_modules`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

/// Where `npm ci` installs the anvil binary, relative to the crate root.
const NPM_ANVIL: &str = "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// The anvil binary: `$ANVIL_BIN`, or the one `npm ci` installs. Panics with a hint when
/// neither exists.
pub fn anvil_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ANVIL_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "ANVIL_BIN={} is not a file", path.display());
        return path;
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(NPM_ANVIL);
    assert!(
        path.is_file(),
        "anvil not found at {}: run `npm ci` in the crate root (package.json pins @foundry-rs/anvil 1.7.1), \
         or set ANVIL_BIN to an anvil 1.7.x binary",
        path.display()
    );
    path
}

/// Spawns `anvil --network tempo` on 127.0.0.1 with `chain_id`; it is killed when the
/// handle drops.
///
/// Tempo mode starts the chain clock at timestamp 1, which makes transactions with a
/// `validAfter` (and expiring nonces) invalid, so a block is mined at the current time
/// first.
pub async fn spawn_anvil_tempo(chain_id: u64) -> AnvilInstance {
    let anvil = Anvil::at(anvil_bin())
        .chain_id(chain_id)
        .args(["--network", "tempo"])
        .try_spawn()
        .unwrap_or_else(|e| panic!("could not start anvil --network tempo: {e}"));
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let _: String = provider.raw_request("evm_mine".into(), (unix_now(),)).await.expect("evm_mine at the current time");
    anvil
}

/// The current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// The signer of the anvil instance's `n`th dev account (each holds pathUSD in Tempo mode).
pub fn dev_signer(anvil: &AnvilInstance, n: usize) -> PrivateKeySigner {
    let key = anvil.nth_key(n).expect("anvil has 10 dev accounts");
    PrivateKeySigner::from_bytes(&B256::from_slice(&key.to_bytes())).expect("a valid dev key")
}
