//! The EIP-712 hashes a token checks: its domain separator, `TransferWithAuthorization`
//! (EIP-3009) and `Permit` (EIP-2612). Fixed-size stack buffers, no allocation.

use alloy::primitives::{Address, B256, U256, b256, keccak256};

use super::payload::{Authorization, Permit};

/// `keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")`.
const DOMAIN_TYPEHASH: B256 = b256!("8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");
/// `keccak256("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")`.
const TRANSFER_WITH_AUTHORIZATION_TYPEHASH: B256 =
    b256!("7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267");
/// `keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")`.
const PERMIT_TYPEHASH: B256 = b256!("6e71edae12b1b97f4d1f60370fef10105fa2faae0126114a169c64845d6126c9");

/// The domain separator of a token: `{name, version, chainId, verifyingContract: asset}`.
pub(crate) fn domain_separator(name: &str, version: &str, chain_id: u64, asset: Address) -> B256 {
    let mut buf = [0u8; 5 * 32];
    buf[..32].copy_from_slice(DOMAIN_TYPEHASH.as_slice());
    buf[32..64].copy_from_slice(keccak256(name.as_bytes()).as_slice());
    buf[64..96].copy_from_slice(keccak256(version.as_bytes()).as_slice());
    buf[96..128].copy_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    buf[140..160].copy_from_slice(asset.as_slice());
    keccak256(buf)
}

/// The digest a payer signs for `authorization` under `domain`.
pub(crate) fn transfer_digest(domain: B256, a: &Authorization) -> B256 {
    let mut buf = [0u8; 7 * 32];
    buf[..32].copy_from_slice(TRANSFER_WITH_AUTHORIZATION_TYPEHASH.as_slice());
    buf[44..64].copy_from_slice(a.from.as_slice());
    buf[76..96].copy_from_slice(a.to.as_slice());
    buf[96..128].copy_from_slice(&a.value.to_be_bytes::<32>());
    buf[128..160].copy_from_slice(&U256::from(a.valid_after).to_be_bytes::<32>());
    buf[160..192].copy_from_slice(&U256::from(a.valid_before).to_be_bytes::<32>());
    buf[192..224].copy_from_slice(a.nonce.as_slice());
    typed_digest(domain, keccak256(buf))
}

/// The digest an owner signs for `permit` under `domain`.
pub(crate) fn permit_digest(domain: B256, p: &Permit) -> B256 {
    let mut buf = [0u8; 6 * 32];
    buf[..32].copy_from_slice(PERMIT_TYPEHASH.as_slice());
    buf[44..64].copy_from_slice(p.owner.as_slice());
    buf[76..96].copy_from_slice(p.spender.as_slice());
    buf[96..128].copy_from_slice(&p.value.to_be_bytes::<32>());
    buf[128..160].copy_from_slice(&p.nonce.to_be_bytes::<32>());
    buf[160..192].copy_from_slice(&U256::from(p.deadline).to_be_bytes::<32>());
    typed_digest(domain, keccak256(buf))
}

pub(crate) fn typed_digest(domain: B256, struct_hash: B256) -> B256 {
    let mut buf = [0u8; 66];
    buf[..2].copy_from_slice(b"\x19\x01");
    buf[2..34].copy_from_slice(domain.as_slice());
    buf[34..].copy_from_slice(struct_hash.as_slice());
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

    alloy::sol! {
        struct TransferWithAuthorization { address from; address to; uint256 value; uint256 validAfter; uint256 validBefore; bytes32 nonce; }
        struct Permit { address owner; address spender; uint256 value; uint256 nonce; uint256 deadline; }
    }

    fn domain() -> Eip712Domain {
        eip712_domain! { name: "USD Coin", version: "2", chain_id: 8453, verifying_contract: Address::repeat_byte(7), }
    }

    #[test]
    fn type_hashes_are_those_of_the_type_strings() {
        assert_eq!(
            DOMAIN_TYPEHASH,
            keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        );
        assert_eq!(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            keccak256(
                "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
            )
        );
        assert_eq!(
            PERMIT_TYPEHASH,
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)")
        );
    }

    #[test]
    fn digests_equal_alloys_eip712() {
        let separator = domain_separator("USD Coin", "2", 8453, Address::repeat_byte(7));
        assert_eq!(separator, domain().separator());
        let a = Authorization {
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            value: U256::from(10_000u64),
            valid_after: 5,
            valid_before: 1_740_672_154,
            nonce: B256::repeat_byte(9),
        };
        let theirs = TransferWithAuthorization {
            from: a.from,
            to: a.to,
            value: a.value,
            validAfter: U256::from(a.valid_after),
            validBefore: U256::from(a.valid_before),
            nonce: a.nonce,
        };
        assert_eq!(transfer_digest(separator, &a), theirs.eip712_signing_hash(&domain()));
        let p = super::Permit::from(&a);
        let theirs = Permit {
            owner: p.owner,
            spender: p.spender,
            value: p.value,
            nonce: p.nonce,
            deadline: U256::from(p.deadline),
        };
        assert_eq!(permit_digest(separator, &p), theirs.eip712_signing_hash(&domain()));
    }
}
