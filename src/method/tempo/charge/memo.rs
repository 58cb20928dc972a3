//! The MPP attribution memo: the `bytes32` a charge's `transferWithMemo` carries when the
//! challenge fixes no memo, binding the payment to this server and this challenge (§5.4).
//!
//! | bytes | content |
//! |---|---|
//! | `[0..4)` | `keccak256("mpp")[0..4]` (`0xef1ed712`) |
//! | `[4]` | version `0x01` |
//! | `[5..15)` | `keccak256(realm)[0..10]` |
//! | `[15..25)` | `keccak256(clientId)[0..10]`, or zeros |
//! | `[25..32)` | `keccak256(challengeId)[0..7]` |

use alloy::primitives::{B256, keccak256};

/// `keccak256("mpp")[0..4]`.
const TAG: [u8; 4] = [0xef, 0x1e, 0xd7, 0x12];

/// The memo layout's version.
const VERSION: u8 = 0x01;

/// The MPP attribution memo for a payment answering challenge `challenge_id` of `realm`,
/// from the client named `client_id` (`None`: anonymous), as the reference clients write
/// it into their `transferWithMemo` when the challenge names no `memo`.
///
/// ```
/// use tollgate::method::tempo::attribution_memo;
///
/// let memo = attribution_memo("api.example.com", None, "challenge-123");
/// assert_eq!(
///     format!("{memo:#x}"),
///     "0xef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269",
/// );
/// ```
pub fn attribution_memo(realm: &str, client_id: Option<&str>, challenge_id: &str) -> B256 {
    let mut memo = [0u8; 32];
    memo[..4].copy_from_slice(&TAG);
    memo[4] = VERSION;
    memo[5..15].copy_from_slice(&keccak256(realm.as_bytes())[..10]);
    if let Some(client) = client_id {
        memo[15..25].copy_from_slice(&keccak256(client.as_bytes())[..10]);
    }
    memo[25..].copy_from_slice(&keccak256(challenge_id.as_bytes())[..7]);
    B256::from(memo)
}

/// Whether `memo` is an attribution memo of `realm` bound to `challenge_id` (any client).
pub(crate) fn is_challenge_bound(memo: &B256, realm: &str, challenge_id: &str) -> bool {
    memo[..4] == TAG
        && memo[4] == VERSION
        && memo[5..15] == keccak256(realm.as_bytes())[..10]
        && memo[25..] == keccak256(challenge_id.as_bytes())[..7]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_the_keccak_of_mpp() {
        assert_eq!(keccak256(b"mpp")[..4], TAG);
    }

    #[test]
    fn matches_the_reference_vector() {
        // §7.2: challengeId `challenge-123`, realm `api.example.com`, no client.
        let memo = attribution_memo("api.example.com", None, "challenge-123");
        let expected: B256 = "0xef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269".parse().unwrap();
        assert_eq!(memo, expected);
        assert!(is_challenge_bound(&memo, "api.example.com", "challenge-123"));
    }

    #[test]
    fn binds_realm_and_challenge_but_not_the_client() {
        let memo = attribution_memo("api.example.com", Some("my-app"), "c1");
        assert_eq!(memo[15..25], keccak256(b"my-app")[..10]);
        assert!(is_challenge_bound(&memo, "api.example.com", "c1"));
        assert!(!is_challenge_bound(&memo, "api.example.com", "c2"), "another challenge");
        assert!(!is_challenge_bound(&memo, "api.other.com", "c1"), "another server");
        let mut wrong_version = memo;
        wrong_version[4] = 0x02;
        assert!(!is_challenge_bound(&wrong_version, "api.example.com", "c1"));
        let mut wrong_tag = memo;
        wrong_tag[0] ^= 1;
        assert!(!is_challenge_bound(&wrong_tag, "api.example.com", "c1"));
        assert!(!is_challenge_bound(&B256::ZERO, "api.example.com", "c1"));
    }
}
