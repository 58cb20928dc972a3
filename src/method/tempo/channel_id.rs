//! The channel descriptor of a session and the channel id derived from it.

use alloy::primitives::{Address, B256, keccak256};
use serde::{Deserialize, Serialize};

use super::domain::SessionProtocol;

/// The seven fields that identify a payment channel: the credential's `descriptor` object
/// (v2), with its camelCase field names and `0x`-prefixed hex values (any letter case is
/// accepted on input).
///
/// A server recomputes the channel id from it ([`channel_id`]) and rejects a credential
/// whose `channelId` differs. A v1 channel has no operator or expiring-nonce hash: leave
/// them zero.
///
/// [`channel_id`]: ChannelDescriptor::channel_id
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDescriptor {
    /// Who deposited the funds.
    pub payer: Address,
    /// Who is paid (the challenge's `recipient`).
    pub payee: Address,
    /// The payee-side operator (v2), or the zero address.
    pub operator: Address,
    /// The TIP-20 token (the challenge's `currency`).
    pub token: Address,
    /// The payer's salt that makes the id unique.
    pub salt: B256,
    /// The key that signs vouchers, or the zero address when the payer signs them.
    pub authorized_signer: Address,
    /// The hash binding the channel to its `open` transaction (v2), or zero.
    pub expiring_nonce_hash: B256,
}

impl ChannelDescriptor {
    /// Who must have signed this channel's vouchers: the authorized signer, or the payer when
    /// that is the zero address.
    pub fn expected_signer(&self) -> Address {
        if self.authorized_signer.is_zero() { self.payer } else { self.authorized_signer }
    }

    /// The channel id under `protocol` for the escrow `escrow` on `chain_id` (the same triple
    /// as the channel's [`VoucherDomain`](super::VoucherDomain)):
    ///
    /// - v1: `keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, escrow, chainId))`;
    ///   the operator and expiring-nonce hash are not part of it.
    /// - v2: `keccak256(abi.encode(payer, payee, operator, token, salt, authorizedSigner,
    ///   expiringNonceHash, escrow, uint256 chainId))`.
    pub fn channel_id(&self, protocol: SessionProtocol, escrow: Address, chain_id: u64) -> B256 {
        match protocol {
            SessionProtocol::V1 => {
                let mut words = [[0u8; 32]; 7];
                put_address(&mut words[0], self.payer);
                put_address(&mut words[1], self.payee);
                put_address(&mut words[2], self.token);
                words[3] = self.salt.0;
                put_address(&mut words[4], self.authorized_signer);
                put_address(&mut words[5], escrow);
                words[6][24..].copy_from_slice(&chain_id.to_be_bytes());
                keccak256(words.as_flattened())
            }
            SessionProtocol::V2 => {
                let mut words = [[0u8; 32]; 9];
                put_address(&mut words[0], self.payer);
                put_address(&mut words[1], self.payee);
                put_address(&mut words[2], self.operator);
                put_address(&mut words[3], self.token);
                words[4] = self.salt.0;
                put_address(&mut words[5], self.authorized_signer);
                words[6] = self.expiring_nonce_hash.0;
                put_address(&mut words[7], escrow);
                words[8][24..].copy_from_slice(&chain_id.to_be_bytes());
                keccak256(words.as_flattened())
            }
        }
    }
}

/// ABI-encodes an address into a 32-byte word (left-padded with zeros).
fn put_address(word: &mut [u8; 32], address: Address) {
    word[12..].copy_from_slice(address.as_slice());
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{address, b256};
    use alloy::sol_types::SolValue;

    use super::*;

    fn descriptor() -> ChannelDescriptor {
        ChannelDescriptor {
            payer: address!("3d6885f89100445ca9869d1b0a49c97cfdbafeee"),
            payee: address!("da2390fEE8d9744b39A8A855675649e95617aCd8"),
            operator: Address::ZERO,
            token: address!("20C0000000000000000000000000000000000000"),
            salt: b256!("fb05173ba9285aef8a91f275930f68ad3565a491edb810c07baa60b643fdd378"),
            authorized_signer: address!("FE9d3D9cBb5f6FBe495b03f7Ec90d4Adc22126f5"),
            expiring_nonce_hash: b256!("4e40183cda8c676032af4f7b038178505d877ae1c36b374239fe20ac3485c3ab"),
        }
    }

    const RESERVE: Address = address!("4D50500000000000000000000000000000000000");

    #[test]
    fn v2_channel_id_matches_the_golden_vector() {
        assert_eq!(
            descriptor().channel_id(SessionProtocol::V2, RESERVE, 42431),
            b256!("b3946b996bd166db3b61fba0f6af2918b6687bc054e2f4bae979edffc7bd0b4d")
        );
    }

    #[test]
    fn v1_channel_id_is_the_abi_encoding_of_seven_words() {
        let d = descriptor();
        let escrow = address!("e1c4d3dce17bc111181ddf716f75bae49e61a336");
        let chain = alloy::primitives::U256::from(42431u64);
        let expected = keccak256((d.payer, d.payee, d.token, d.salt, d.authorized_signer, escrow, chain).abi_encode());
        assert_eq!(d.channel_id(SessionProtocol::V1, escrow, 42431), expected);
        let with_v2_fields = ChannelDescriptor { operator: d.payee, ..d };
        assert_eq!(with_v2_fields.channel_id(SessionProtocol::V1, escrow, 42431), expected);
    }

    #[test]
    fn the_payer_signs_when_no_signer_is_authorized() {
        let d = descriptor();
        assert_eq!(d.expected_signer(), d.authorized_signer);
        let own = ChannelDescriptor { authorized_signer: Address::ZERO, ..d };
        assert_eq!(own.expected_signer(), d.payer);
    }

    #[test]
    fn the_descriptor_reads_the_wire_object() {
        let json = serde_json::json!({
            "payer": "0x3d6885f89100445ca9869d1b0a49c97cfdbafeee",
            "payee": "0xDA2390FEE8D9744B39A8A855675649E95617ACD8",
            "operator": "0x0000000000000000000000000000000000000000",
            "token": "0x20c0000000000000000000000000000000000000",
            "salt": "0xfb05173ba9285aef8a91f275930f68ad3565a491edb810c07baa60b643fdd378",
            "authorizedSigner": "0xfe9d3d9cbb5f6fbe495b03f7ec90d4adc22126f5",
            "expiringNonceHash": "0x4e40183cda8c676032af4f7b038178505d877ae1c36b374239fe20ac3485c3ab",
        });
        let parsed: ChannelDescriptor = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, descriptor());
        let back = serde_json::to_value(parsed).unwrap();
        assert_eq!(serde_json::from_value::<ChannelDescriptor>(back).unwrap(), parsed);
        let missing = serde_json::json!({ "payer": "0x3d6885f89100445ca9869d1b0a49c97cfdbafeee" });
        assert!(serde_json::from_value::<ChannelDescriptor>(missing).is_err());
    }
}
