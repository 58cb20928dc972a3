//! [`SiwxPayload`]: the proof a client sends in `SIGN-IN-WITH-X`.

use serde::Deserialize;

/// A SIWX proof (x402 `sign-in-with-x` extension, CAIP-122): the challenge's fields the
/// client signed, who signed them and the signature. It travels as base64 JSON in the
/// [`SIGN_IN_WITH_X`](super::SIGN_IN_WITH_X) header.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SiwxPayload {
    /// The server's domain (host), as the challenge gave it.
    pub domain: String,
    /// The signer's address.
    pub address: String,
    /// The human-readable statement, if the challenge had one.
    pub statement: Option<String>,
    /// The resource URI, as the challenge gave it.
    pub uri: String,
    /// The CAIP-122 version, `"1"`.
    pub version: String,
    /// The CAIP-2 chain the signer chose (`eip155:<id>`).
    pub chain_id: String,
    /// The signature algorithm, `eip191` for an Ethereum account.
    #[serde(rename = "type")]
    pub kind: String,
    /// The challenge's nonce.
    pub nonce: String,
    /// The challenge's issue time.
    pub issued_at: String,
    /// The challenge's expiry.
    pub expiration_time: Option<String>,
    /// Not valid before this time.
    pub not_before: Option<String>,
    /// A correlation id.
    pub request_id: Option<String>,
    /// Associated resources.
    pub resources: Option<Vec<String>>,
    /// A scheme hint (`eip191`, `eip1271`, …).
    pub signature_scheme: Option<String>,
    /// The signature over the EIP-4361 message, `0x` hex.
    pub signature: String,
}
