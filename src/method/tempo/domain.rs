//! The EIP-712 domain of session vouchers, per protocol generation, computed once.

use std::fmt;

use alloy::primitives::{Address, B256, keccak256};
use serde::{Deserialize, Serialize};

use super::signature::SignatureError;

/// The EIP-712 domain type string shared by both protocol generations.
const DOMAIN_TYPE: &str = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

/// The domain `version` of both generations.
const DOMAIN_VERSION: &str = "1";

/// The session protocol generation (`methodDetails.sessionProtocol`): which escrow holds the
/// channel and which EIP-712 domain and voucher type its vouchers are signed under.
///
/// Serialized as `"v1"` / `"v2"`, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionProtocol {
    /// The legacy `TempoStreamChannel` escrow contract: domain `Tempo Stream Channel`,
    /// `Voucher(bytes32 channelId,uint128 cumulativeAmount)`, secp256k1 signatures only.
    V1,
    /// The TIP-1034 channel reserve precompile: domain `TIP20 Channel Reserve`,
    /// `Voucher(bytes32 channelId,uint96 cumulativeAmount)`, any Tempo primitive signature.
    V2,
}

impl SessionProtocol {
    /// The wire name: `"v1"` or `"v2"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionProtocol::V1 => "v1",
            SessionProtocol::V2 => "v2",
        }
    }

    /// The EIP-712 domain `name`.
    pub const fn domain_name(self) -> &'static str {
        match self {
            SessionProtocol::V1 => "Tempo Stream Channel",
            SessionProtocol::V2 => "TIP20 Channel Reserve",
        }
    }

    /// The EIP-712 voucher type string.
    pub const fn voucher_type(self) -> &'static str {
        match self {
            SessionProtocol::V1 => "Voucher(bytes32 channelId,uint128 cumulativeAmount)",
            SessionProtocol::V2 => "Voucher(bytes32 channelId,uint96 cumulativeAmount)",
        }
    }

    /// The largest cumulative amount a voucher can carry: `2^128 − 1` (v1), `2^96 − 1` (v2).
    pub const fn max_amount(self) -> u128 {
        match self {
            SessionProtocol::V1 => u128::MAX,
            SessionProtocol::V2 => (1 << 96) - 1,
        }
    }
}

impl fmt::Display for SessionProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The EIP-712 domain vouchers of one escrow on one chain are signed under, with its domain
/// separator and voucher type hash computed once at construction.
///
/// Build one per (protocol, chain, escrow) at startup and keep it: [`signing_hash`] then
/// costs two keccak256 calls over stack buffers and allocates nothing.
///
/// [`signing_hash`]: VoucherDomain::signing_hash
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoucherDomain {
    protocol: SessionProtocol,
    chain_id: u64,
    verifying_contract: Address,
    separator: B256,
    type_hash: B256,
}

impl VoucherDomain {
    /// The domain of `protocol` vouchers for the escrow `verifying_contract` on `chain_id`
    /// (for v2, the channel reserve precompile `0x4D50…0000`).
    pub fn new(protocol: SessionProtocol, chain_id: u64, verifying_contract: Address) -> Self {
        let mut encoded = [0u8; 5 * 32];
        encoded[..32].copy_from_slice(keccak256(DOMAIN_TYPE).as_slice());
        encoded[32..64].copy_from_slice(keccak256(protocol.domain_name()).as_slice());
        encoded[64..96].copy_from_slice(keccak256(DOMAIN_VERSION).as_slice());
        encoded[120..128].copy_from_slice(&chain_id.to_be_bytes());
        encoded[140..160].copy_from_slice(verifying_contract.as_slice());
        VoucherDomain {
            protocol,
            chain_id,
            verifying_contract,
            separator: keccak256(encoded),
            type_hash: keccak256(protocol.voucher_type()),
        }
    }

    /// The protocol generation.
    pub const fn protocol(&self) -> SessionProtocol {
        self.protocol
    }

    /// The chain id.
    pub const fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The verifying contract (the escrow).
    pub const fn verifying_contract(&self) -> Address {
        self.verifying_contract
    }

    /// The EIP-712 domain separator.
    pub const fn separator(&self) -> B256 {
        self.separator
    }

    /// The voucher type hash: `keccak256` of [`SessionProtocol::voucher_type`].
    pub const fn type_hash(&self) -> B256 {
        self.type_hash
    }

    /// The digest a voucher for `cumulative` base units on `channel_id` signs:
    /// `keccak256(0x1901 ‖ separator ‖ keccak256(abi.encode(typeHash, channelId, cumulative)))`.
    ///
    /// Fails with [`SignatureError::AmountTooLarge`] when `cumulative` exceeds the protocol's
    /// bound ([`SessionProtocol::max_amount`]), since no valid voucher can carry it.
    pub fn signing_hash(&self, channel_id: B256, cumulative: u128) -> Result<B256, SignatureError> {
        let max = self.protocol.max_amount();
        if cumulative > max {
            return Err(SignatureError::AmountTooLarge { amount: cumulative, max });
        }
        let mut voucher = [0u8; 3 * 32];
        voucher[..32].copy_from_slice(self.type_hash.as_slice());
        voucher[32..64].copy_from_slice(channel_id.as_slice());
        voucher[80..96].copy_from_slice(&cumulative.to_be_bytes());
        let mut digest = [0u8; 2 + 2 * 32];
        digest[..2].copy_from_slice(&[0x19, 0x01]);
        digest[2..34].copy_from_slice(self.separator.as_slice());
        digest[34..].copy_from_slice(keccak256(voucher).as_slice());
        Ok(keccak256(digest))
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{address, b256};

    use super::*;

    const RESERVE: Address = address!("4D50500000000000000000000000000000000000");

    #[test]
    fn v2_separators_match_the_precomputed_ones() {
        let mainnet = VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE);
        assert_eq!(mainnet.separator(), b256!("6465ffa0b0c1e7cfc1a894ba54d79615bc06fd7cc9cfec558f3df82189d17367"));
        let moderato = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
        assert_eq!(moderato.separator(), b256!("a3aa475070603a80823360e5a4a0d3b4fe2cd4e82a109ee3c21a4640a199688d"));
    }

    #[test]
    fn type_hashes_match_the_reference_prefixes() {
        let v2 = VoucherDomain::new(SessionProtocol::V2, 4217, RESERVE).type_hash().to_string();
        assert!(v2.starts_with("0x4730b4b2") && v2.ends_with("bbe8"), "{v2}");
        let v1 = VoucherDomain::new(SessionProtocol::V1, 4217, RESERVE).type_hash().to_string();
        assert!(v1.starts_with("0xe97c93f0") && v1.ends_with("a68a"), "{v1}");
    }

    #[test]
    fn the_amount_bound_is_per_protocol() {
        let v2 = VoucherDomain::new(SessionProtocol::V2, 42431, RESERVE);
        let max = SessionProtocol::V2.max_amount();
        assert!(v2.signing_hash(B256::ZERO, max).is_ok());
        assert_eq!(v2.signing_hash(B256::ZERO, max + 1), Err(SignatureError::AmountTooLarge { amount: max + 1, max }));
        let v1 = VoucherDomain::new(SessionProtocol::V1, 42431, RESERVE);
        assert!(v1.signing_hash(B256::ZERO, u128::MAX).is_ok());
    }

    #[test]
    fn protocols_serialize_as_on_the_wire() {
        assert_eq!(serde_json::to_string(&SessionProtocol::V2).unwrap(), "\"v2\"");
        assert_eq!(serde_json::from_str::<SessionProtocol>("\"v1\"").unwrap(), SessionProtocol::V1);
        assert!(serde_json::from_str::<SessionProtocol>("\"V2\"").is_err());
    }
}
