//! What a seller offers for one x402 EVM payment: the chain, the token and its EIP-712 domain,
//! who is paid, how much, and for how long a signature may run.

use alloy::primitives::{Address, B256};

use super::eip712::domain_separator;
use crate::amount::Amount;

/// How the payer's signature moves the tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferMethod {
    /// EIP-3009 `transferWithAuthorization`: x402 `exact`; the signed value is what moves.
    #[default]
    Eip3009,
    /// EIP-2612 `permit` to `payTo`, then `transferFrom(payer, payTo, actual)` for what was
    /// delivered (`actual` ≤ the signed maximum). What @libertai/x402 signs when the offer's
    /// `extra.primaryType` is `"Permit"`.
    Permit,
}

/// How the signed value must compare with the offer's amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueRule {
    /// Equal (x402 v2 `exact`).
    Equal,
    /// At least the amount (x402 v1 `maxAmountRequired`).
    AtLeast,
}

/// One x402 EVM offer, as a seller configures it, with its token's EIP-712 domain separator
/// computed once.
///
/// ```
/// use alloy::primitives::address;
/// use tollgate::amount::Amount;
/// use tollgate::method::x402::EvmOffer;
///
/// let usdc = address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
/// let offer = EvmOffer::new(8453, usdc, "USD Coin", "2", address!("209693Bc6afc0C5328bA36FaF03C514EF312287C"), Amount::new(10_000));
/// assert_eq!(offer.network(), "eip155:8453");
/// assert_eq!(offer.extra(), serde_json::json!({"name": "USD Coin", "version": "2"}));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvmOffer {
    chain_id: u64,
    asset: Address,
    name: String,
    version: String,
    pay_to: Address,
    amount: Amount,
    max_timeout_seconds: u64,
    method: TransferMethod,
    domain: B256,
}

/// The default `maxTimeoutSeconds`: how long a signature the payer makes may run.
pub const DEFAULT_MAX_TIMEOUT_SECONDS: u64 = 300;

impl EvmOffer {
    /// An EIP-3009 offer of `amount` of `asset` (whose EIP-712 domain is `name`, `version`)
    /// on chain `chain_id`, paid to `pay_to`.
    pub fn new(
        chain_id: u64,
        asset: Address,
        name: impl Into<String>,
        version: impl Into<String>,
        pay_to: Address,
        amount: Amount,
    ) -> Self {
        let (name, version) = (name.into(), version.into());
        let domain = domain_separator(&name, &version, chain_id, asset);
        EvmOffer {
            chain_id,
            asset,
            name,
            version,
            pay_to,
            amount,
            max_timeout_seconds: DEFAULT_MAX_TIMEOUT_SECONDS,
            method: TransferMethod::Eip3009,
            domain,
        }
    }

    /// Sets `maxTimeoutSeconds` (default [`DEFAULT_MAX_TIMEOUT_SECONDS`]).
    pub fn max_timeout_seconds(mut self, seconds: u64) -> Self {
        self.max_timeout_seconds = seconds;
        self
    }

    /// Sets how the payment moves the tokens (default [`TransferMethod::Eip3009`]).
    pub fn transfer_method(mut self, method: TransferMethod) -> Self {
        self.method = method;
        self
    }

    /// The same offer for another amount (a per-request quote).
    pub fn with_amount(mut self, amount: Amount) -> Self {
        self.amount = amount;
        self
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The CAIP-2 network, `eip155:<chainId>`.
    pub fn network(&self) -> String {
        format!("eip155:{}", self.chain_id)
    }

    /// The token.
    pub fn asset(&self) -> Address {
        self.asset
    }

    /// The token's EIP-712 `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token's EIP-712 `version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Who is paid.
    pub fn pay_to(&self) -> Address {
        self.pay_to
    }

    /// The amount (exact) or maximum (Permit), in base units.
    pub fn amount(&self) -> Amount {
        self.amount
    }

    /// `maxTimeoutSeconds`.
    pub fn timeout_seconds(&self) -> u64 {
        self.max_timeout_seconds
    }

    /// How the payment moves the tokens.
    pub fn method(&self) -> TransferMethod {
        self.method
    }

    /// The token's EIP-712 domain separator.
    pub fn domain_separator(&self) -> B256 {
        self.domain
    }

    /// The requirement's `extra`: `{name, version}`, plus `primaryType: "Permit"` for a
    /// Permit offer (what @libertai/x402 reads to sign a Permit).
    pub fn extra(&self) -> serde_json::Value {
        let mut extra = serde_json::json!({ "name": self.name, "version": self.version });
        if self.method == TransferMethod::Permit {
            extra["primaryType"] = "Permit".into();
        }
        extra
    }
}
