//! Voucher verification: the signing hash under a precomputed domain, one signature
//! check, and a comparison with the channel's signer.

use alloy::primitives::{Address, B256};

use super::domain::{SessionProtocol, VoucherDomain};
use super::signature::{SignatureError, VoucherSignature, VoucherSignatureKind};

/// Checks that `signature` is `expected`'s voucher for `cumulative` base units on
/// `channel_id` under `domain`.
///
/// `expected` must come from stored or on-chain channel state
/// ([`ChannelDescriptor::expected_signer`](super::ChannelDescriptor::expected_signer) of a
/// descriptor whose id was checked), never from the payload alone. v1 escrows verify
/// secp256k1 signatures only, so another envelope under a v1 domain is
/// [`Unsupported`](SignatureError::Unsupported).
///
/// One curve operation (secp256k1 recovery or P-256 verification) and three keccak256
/// calls; no allocation. Run it outside any lock.
pub fn verify_voucher(
    domain: &VoucherDomain,
    channel_id: B256,
    cumulative: u128,
    signature: &VoucherSignature,
    expected: Address,
) -> Result<(), SignatureError> {
    let kind = signature.kind();
    if domain.protocol() == SessionProtocol::V1 && kind != VoucherSignatureKind::Secp256k1 {
        return Err(SignatureError::Unsupported { kind });
    }
    let hash = domain.signing_hash(channel_id, cumulative)?;
    let recovered = signature.recover(hash)?;
    if recovered == expected { Ok(()) } else { Err(SignatureError::Mismatch { recovered, expected }) }
}
