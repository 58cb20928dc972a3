//! What can be told about a client's transaction before broadcasting it: whether it could
//! ever be mined as sent. One that could not would sit in the pool while a request waits
//! for its receipt, so it is refused up front.

use alloy::primitives::{Address, U256};

use super::{ChainError, ChainErrorKind};
use crate::method::tempo::tx::SignedTempoTx;

/// How far ahead of our clock a `valid_after` may be (clock skew, block time).
const SKEW_SECS: u64 = 5;

/// The sender and protocol nonce to compare with the sender's next nonce, when the
/// transaction uses the protocol nonce and its sender can be recovered here.
pub(super) type ProtocolNonce = Option<(Address, u64)>;

fn refused(why: String) -> ChainError {
    ChainError::new(ChainErrorKind::Rejected, why)
}

/// Decodes `raw` and refuses it when its validity window is not open at `now` (unix
/// seconds) or already closed.
pub(super) fn precheck(raw: &[u8], now: u64) -> Result<ProtocolNonce, ChainError> {
    let tx = SignedTempoTx::decode(raw).map_err(|e| refused(format!("transaction: {e}")))?;
    let fields = tx.tx();
    if let Some(after) = fields.valid_after {
        if after > now.saturating_add(SKEW_SECS) {
            return Err(refused(format!("the transaction is not valid before {after} (now {now})")));
        }
    }
    if let Some(before) = fields.valid_before {
        if before <= now {
            return Err(refused(format!("the transaction expired at {before} (now {now})")));
        }
    }
    if fields.nonce_key != U256::ZERO {
        // 2D and expiring nonces: the chain orders and deduplicates these.
        return Ok(None);
    }
    Ok(tx.sender().ok().map(|sender| (sender, fields.nonce)))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use alloy::signers::local::PrivateKeySigner;

    use super::*;
    use crate::method::tempo::tx::TempoTxBuilder;

    fn builder() -> TempoTxBuilder {
        TempoTxBuilder::new(1).call(Address::repeat_byte(1), vec![1]).gas_limit(21_000).fees(10, 1)
    }

    #[test]
    fn windows_and_nonces() {
        let signer = PrivateKeySigner::random();
        let now = 1_800_000_000;
        let raw = builder().nonce(U256::ZERO, 7).sign(&signer).unwrap();
        assert_eq!(precheck(&raw, now).unwrap(), Some((signer.address(), 7)));
        let raw = builder().expiring(now + 20).sign(&signer).unwrap();
        assert_eq!(precheck(&raw, now).unwrap(), None);
        let raw = builder().expiring(now + 20).valid_after(now + 10).sign(&signer).unwrap();
        assert_eq!(precheck(&raw, now).unwrap_err().kind(), ChainErrorKind::Rejected);
        let raw = builder().expiring(now).sign(&signer).unwrap();
        assert_eq!(precheck(&raw, now).unwrap_err().kind(), ChainErrorKind::Rejected);
        assert_eq!(precheck(&[0x76, 0xc0], now).unwrap_err().kind(), ChainErrorKind::Rejected);
    }
}
