//! An EOA's EIP-712 signature as x402 clients send it, checked for shape and malleability,
//! and signer recovery with libsecp256k1.

use alloy::primitives::{Address, B256, b256};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};

/// secp256k1 group order n.
const N: B256 = b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
/// n/2 rounded down: the largest low-s value.
const HALF_N: B256 = b256!("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");

/// A 65-byte `r ‖ s ‖ v` secp256k1 signature with `v` ∈ {27, 28} (or 0/1, which some signers
/// write), `0 < r < n` and `0 < s ≤ n/2` (low-s: tokens refuse the malleable twin, so a
/// server must too, or it would accept what cannot settle).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EvmSignature {
    rs: [u8; 64],
    odd_y: bool,
}

/// Why a signature was refused before recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadSignature {
    Length,
    RecoveryId,
    Scalar,
    HighS,
}

impl EvmSignature {
    /// Parses the raw 65 bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, BadSignature> {
        let bytes: &[u8; 65] = bytes.try_into().map_err(|_| BadSignature::Length)?;
        let odd_y = match bytes[64] {
            0 | 27 => false,
            1 | 28 => true,
            _ => return Err(BadSignature::RecoveryId),
        };
        let (r, s) = (&bytes[..32], &bytes[32..64]);
        let zero = [0u8; 32];
        // Big-endian bytes compare as the numbers do.
        if r == zero || s == zero || r >= N.as_slice() || s >= N.as_slice() {
            return Err(BadSignature::Scalar);
        }
        if s > HALF_N.as_slice() {
            return Err(BadSignature::HighS);
        }
        let mut rs = [0u8; 64];
        rs.copy_from_slice(&bytes[..64]);
        Ok(EvmSignature { rs, odd_y })
    }

    /// `r`, `s` and `v` (27/28) as a token's `(v, r, s)` arguments take them.
    pub(crate) fn vrs(&self) -> (u8, B256, B256) {
        (27 + u8::from(self.odd_y), B256::from_slice(&self.rs[..32]), B256::from_slice(&self.rs[32..]))
    }

    /// Who signed `digest`; `None` when no key recovers. One curve operation.
    pub(crate) fn recover(&self, digest: B256) -> Option<Address> {
        let id = if self.odd_y { RecoveryId::One } else { RecoveryId::Zero };
        let sig = RecoverableSignature::from_compact(&self.rs, id).ok()?;
        let key = secp256k1::SECP256K1.recover_ecdsa(secp256k1::Message::from_digest(digest.0), &sig).ok()?;
        Some(Address::from_raw_public_key(&key.serialize_uncompressed()[1..]))
    }
}

impl std::fmt::Debug for EvmSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (v, r, s) = self.vrs();
        f.debug_struct("EvmSignature").field("r", &r).field("s", &s).field("v", &v).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    #[test]
    fn recovers_the_signer_with_v_as_27_28_or_0_1() {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
        let digest = B256::repeat_byte(3);
        let mut bytes = signer.sign_hash_sync(&digest).unwrap().as_bytes();
        let sig = EvmSignature::from_bytes(&bytes).unwrap();
        assert_eq!(sig.recover(digest), Some(signer.address()));
        bytes[64] -= 27;
        assert_eq!(EvmSignature::from_bytes(&bytes).unwrap().recover(digest), Some(signer.address()));
        bytes[64] = 29;
        assert_eq!(EvmSignature::from_bytes(&bytes), Err(BadSignature::RecoveryId));
    }

    #[test]
    fn refuses_high_s_bad_scalars_and_lengths() {
        let signer = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
        let digest = B256::repeat_byte(3);
        let bytes = signer.sign_hash_sync(&digest).unwrap().as_bytes();
        // The malleable twin: s' = n − s, v flipped.
        let s = alloy::primitives::U256::from_be_slice(&bytes[32..64]);
        let twin_s = alloy::primitives::U256::from_be_bytes(N.0) - s;
        let mut twin = bytes;
        twin[32..64].copy_from_slice(&twin_s.to_be_bytes::<32>());
        twin[64] = if bytes[64] == 27 { 28 } else { 27 };
        assert_eq!(EvmSignature::from_bytes(&twin), Err(BadSignature::HighS));
        let mut zero_r = bytes;
        zero_r[..32].fill(0);
        assert_eq!(EvmSignature::from_bytes(&zero_r), Err(BadSignature::Scalar));
        assert_eq!(EvmSignature::from_bytes(&bytes[..64]), Err(BadSignature::Length));
        assert_eq!(EvmSignature::from_bytes(&[]), Err(BadSignature::Length));
    }
}
