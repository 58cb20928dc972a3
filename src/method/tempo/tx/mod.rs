//! Tempo transactions (EIP-2718 type `0x76`) and the fee-payer envelope (`0x78`): decode
//! and inspect the ones clients send before broadcasting them, and build and sign our own.
//!
//! # Example
//!
//! ```
//! use alloy::primitives::{Address, U256, address};
//! use alloy::signers::local::PrivateKeySigner;
//! use tollgate::method::tempo::tx::{TempoTransaction, TempoTxBuilder};
//!
//! let path_usd = address!("0x20c0000000000000000000000000000000000000");
//! let signer = PrivateKeySigner::random();
//! let raw = TempoTxBuilder::new(4217)
//!     .call(path_usd, vec![0xa9, 0x05, 0x9c, 0xbb]) // transfer(…) calldata
//!     .fee_token(path_usd)
//!     .expiring(1_900_000_000)
//!     .gas_limit(500_000)
//!     .fees(20_000_000_000, 1)
//!     .sign(&signer)?;
//!
//! let tx = TempoTransaction::decode(&raw)?;
//! assert_eq!(tx.sender()?, signer.address());
//! assert_eq!(tx.tx().calls[0].to.to(), Some(&path_usd));
//! assert!(tx.tx().is_expiring_nonce());
//! let channel_binding = tx.expiring_nonce_hash(signer.address());
//! # let _ = (channel_binding, Address::ZERO, U256::ZERO);
//! # Ok::<(), tollgate::method::tempo::tx::TxError>(())
//! ```
//!
//! # Format
//!
//! A Tempo transaction is `0x76 ‖ rlp([fields…, signature])`, with the fields in this order:
//!
//! | # | field | encoding |
//! |---|---|---|
//! | 1 | `chain_id` | integer |
//! | 2 | `max_priority_fee_per_gas` | integer |
//! | 3 | `max_fee_per_gas` | integer |
//! | 4 | `gas_limit` | integer |
//! | 5 | `calls` | list of `[to, value, input]`; `to` is 20 bytes or empty (`CREATE`) |
//! | 6 | `access_list` | EIP-2930 list |
//! | 7 | `nonce_key` | integer (256 bits; 2²⁵⁶−1 = expiring nonce) |
//! | 8 | `nonce` | integer |
//! | 9 | `valid_before` | integer, `0x80` when unset |
//! | 10 | `valid_after` | integer, `0x80` when unset |
//! | 11 | `fee_token` | 20 bytes, `0x80` when unset |
//! | 12 | fee-payer slot | `0x80` (sender pays), or the sponsor's signature `[v, r, s]` |
//! | 13 | `authorization_list` | list (Tempo EIP-7702 authorizations; kept raw here) |
//! | 14 | `key_authorization` | an RLP list, present only when set (kept raw here) |
//! | 15 | signature | byte string: a [`TempoSignature`] envelope |
//!
//! Hashes:
//!
//! - **Signing hash** (what the sender signs): `keccak256(0x76 ‖ rlp(fields 1–14))`. When a
//!   fee payer is involved, field 11 is written `0x80` and field 12 as the `0x00` marker,
//!   so the sender commits to neither the fee token nor the sponsor.
//! - **Fee payer's hash**: `keccak256(0x78 ‖ rlp(fields 1–14))` with the fee token written
//!   and the sender's address in field 12.
//! - **Transaction hash**: `keccak256` of the whole `0x76` encoding.
//! - **`expiringNonceHash`**: `keccak256(signing preimage ‖ sender)`, the chain's replay key
//!   for expiring nonces and the value a session-v2 channel id is bound to.
//!
//! The **fee-payer envelope** a client sends when asking to be sponsored is
//! `0x78 ‖ rlp([fields 1–11, sender, fields 13–15])`: field 12 holds the sender's address
//! instead. It is not broadcastable; [`SignedTempoTx::sponsor`] turns it into a `0x76`.
//! Both forms decode into the same [`SignedTempoTx`] view, with
//! [`FeePayer::AwaitingSponsor`]. A `0x76` carrying the `0x00` marker in field 12 (the form
//! the spec describes for sponsorship requests) reads the same way.
//!
//! # Limits
//!
//! Senders signing with secp256k1, P-256 or WebAuthn are recovered (and their signatures
//! verified); a keychain (access key) envelope parses, but [`SignedTempoTx::sender`] returns
//! [`TxError::Unsupported`], since only the chain knows which keys an account authorized.
//! Authorizations and key authorizations are carried through unparsed, and the `0x05`
//! multisig envelope of newer ox releases is not known here.

mod builder;
mod codec;
mod error;
mod passkey;
mod signature;
mod signed;
mod transaction;

pub use builder::TempoTxBuilder;
pub use error::TxError;
pub use signature::{
    KeychainSignature, KeychainVersion, P256Signature, TempoSignature, TxSignatureKind, WebAuthnSignature,
};
pub use signed::SignedTempoTx;
pub use transaction::{Call, FeePayer, TempoTransaction};

use alloy::primitives::U256;

/// The EIP-2718 type byte of a Tempo transaction.
pub const TEMPO_TX_TYPE: u8 = 0x76;

/// The first byte of a fee-payer envelope, also the domain byte of the fee payer's hash.
pub const FEE_PAYER_ENVELOPE_TYPE: u8 = 0x78;

/// The nonce key (2²⁵⁶−1) that makes a transaction's nonce expiring.
pub const EXPIRING_NONCE_KEY: U256 = U256::MAX;

/// The longest raw transaction [`TempoTransaction::decode`] reads: 128 KiB.
pub const MAX_RAW_TX_LEN: usize = 128 * 1024;

#[cfg(test)]
mod tests;
