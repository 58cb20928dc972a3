//! The EIP-712 digest a payer signs for an `upto` payment: Permit2's
//! `PermitWitnessTransferFrom` with the `upto` witness, under the Permit2 domain. Fixed-size
//! stack buffers, no allocation.

use alloy::primitives::{B256, U256, b256, keccak256};

use super::PERMIT2_ADDRESS;
use super::payload::Permit2Authorization;
use crate::method::x402::eip712::typed_digest;

/// `keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)")`.
const DOMAIN_TYPEHASH: B256 = b256!("8cad95687ba82c2ce50e74f7b754645e5117c3a5bec8151c0726d5857980a866");
/// `keccak256("Permit2")`.
const NAME_HASH: B256 = b256!("9ac997416e8ff9d2ff6bebeb7149f65cdae5e32e2b90440b566bb3044041d36a");
/// `keccak256("PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)")`.
const PERMIT_WITNESS_TYPEHASH: B256 = b256!("51dff6974ad4388c499e7fcfe838d2bd767162553a144098ce20ea661d70c2ee");
/// `keccak256("TokenPermissions(address token,uint256 amount)")`.
const TOKEN_PERMISSIONS_TYPEHASH: B256 = b256!("618358ac3db8dc274f0cd8829da7e234bd48cd73c4a740aede1adec9846d06a1");
/// `keccak256("Witness(address to,address facilitator,uint256 validAfter)")`.
const WITNESS_TYPEHASH: B256 = b256!("d4171c445a74218b01d4fd8af34ff1106580ea1e36ff837e64484bfaa2253b75");

/// The Permit2 domain separator on chain `chain_id`.
pub(crate) fn permit2_domain(chain_id: u64) -> B256 {
    let mut buf = [0u8; 4 * 32];
    buf[..32].copy_from_slice(DOMAIN_TYPEHASH.as_slice());
    buf[32..64].copy_from_slice(NAME_HASH.as_slice());
    buf[64..96].copy_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    buf[108..128].copy_from_slice(PERMIT2_ADDRESS.as_slice());
    keccak256(buf)
}

/// The digest `a.from` signs for `a` under `domain` ([`permit2_domain`]).
pub(crate) fn upto_digest(domain: B256, a: &Permit2Authorization) -> B256 {
    let mut permitted = [0u8; 3 * 32];
    permitted[..32].copy_from_slice(TOKEN_PERMISSIONS_TYPEHASH.as_slice());
    permitted[44..64].copy_from_slice(a.permitted.token.as_slice());
    permitted[64..96].copy_from_slice(&a.permitted.amount.to_be_bytes::<32>());
    let mut witness = [0u8; 4 * 32];
    witness[..32].copy_from_slice(WITNESS_TYPEHASH.as_slice());
    witness[44..64].copy_from_slice(a.witness.to.as_slice());
    witness[76..96].copy_from_slice(a.witness.facilitator.as_slice());
    witness[96..128].copy_from_slice(&U256::from(a.witness.valid_after).to_be_bytes::<32>());
    let mut buf = [0u8; 6 * 32];
    buf[..32].copy_from_slice(PERMIT_WITNESS_TYPEHASH.as_slice());
    buf[32..64].copy_from_slice(keccak256(permitted).as_slice());
    buf[76..96].copy_from_slice(a.spender.as_slice());
    buf[96..128].copy_from_slice(&a.nonce.to_be_bytes::<32>());
    buf[128..160].copy_from_slice(&U256::from(a.deadline).to_be_bytes::<32>());
    buf[160..192].copy_from_slice(keccak256(witness).as_slice());
    typed_digest(domain, keccak256(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::x402::upto::payload as p;
    use alloy::primitives::Address;
    use alloy::sol_types::{SolStruct, eip712_domain};

    alloy::sol! {
        struct TokenPermissions { address token; uint256 amount; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        struct PermitWitnessTransferFrom { TokenPermissions permitted; address spender; uint256 nonce; uint256 deadline; Witness witness; }
    }

    #[test]
    fn type_hashes_are_those_of_the_type_strings() {
        assert_eq!(DOMAIN_TYPEHASH, keccak256("EIP712Domain(string name,uint256 chainId,address verifyingContract)"));
        assert_eq!(NAME_HASH, keccak256("Permit2"));
        assert_eq!(TOKEN_PERMISSIONS_TYPEHASH, keccak256("TokenPermissions(address token,uint256 amount)"));
        assert_eq!(WITNESS_TYPEHASH, keccak256("Witness(address to,address facilitator,uint256 validAfter)"));
        assert_eq!(
            PERMIT_WITNESS_TYPEHASH,
            keccak256(
                "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)"
            )
        );
    }

    #[test]
    fn the_digest_equals_alloys_eip712() {
        let a = Permit2Authorization {
            from: Address::repeat_byte(1),
            permitted: p::TokenPermissions { token: Address::repeat_byte(2), amount: U256::from(10_000u64) },
            spender: Address::repeat_byte(3),
            nonce: U256::from(0xdead_beef_u64) << 200,
            deadline: 1_740_672_154,
            witness: p::UptoWitness {
                to: Address::repeat_byte(4),
                facilitator: Address::repeat_byte(5),
                valid_after: 7,
            },
        };
        let domain = eip712_domain! { name: "Permit2", chain_id: 8453, verifying_contract: PERMIT2_ADDRESS, };
        assert_eq!(permit2_domain(8453), domain.separator());
        let theirs = PermitWitnessTransferFrom {
            permitted: TokenPermissions { token: a.permitted.token, amount: a.permitted.amount },
            spender: a.spender,
            nonce: a.nonce,
            deadline: U256::from(a.deadline),
            witness: Witness { to: a.witness.to, facilitator: a.witness.facilitator, validAfter: U256::from(7) },
        };
        assert_eq!(upto_digest(permit2_domain(8453), &a), theirs.eip712_signing_hash(&domain));
    }
}
