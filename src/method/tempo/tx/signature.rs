//! The sender's signature envelope: the last item of a Tempo transaction, an RLP byte
//! string whose length and first byte tell its kind.

use std::fmt;

use alloy::primitives::{Address, B256, Bytes, Signature};

use super::TxError;

const P256_TYPE: u8 = 0x01;
const WEBAUTHN_TYPE: u8 = 0x02;
const KEYCHAIN_V1_TYPE: u8 = 0x03;
const KEYCHAIN_V2_TYPE: u8 = 0x04;
const SECP256K1_LEN: usize = 65;
/// `r ‖ s ‖ x ‖ y`, the fixed tail of P-256 and WebAuthn envelopes.
const P256_CORE_LEN: usize = 128;
const MAX_WEBAUTHN_LEN: usize = 2048;

/// A Tempo signature envelope, as carried by a transaction.
///
/// | kind | bytes |
/// |---|---|
/// | secp256k1 | exactly 65: `r ‖ s ‖ v` with `v` ∈ {27, 28}, no type byte |
/// | P-256 | `0x01 ‖ r ‖ s ‖ x ‖ y ‖ pre_hash` (130) |
/// | WebAuthn | `0x02 ‖ authenticatorData ‖ clientDataJSON ‖ r ‖ s ‖ x ‖ y` (129 to 2049) |
/// | keychain | `0x03` (v1) or `0x04` (v2) `‖ user_address ‖ inner envelope` |
///
/// A 65-byte envelope is always secp256k1, whatever its first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TempoSignature {
    /// An Ethereum ECDSA signature; the sender is recovered from it.
    Secp256k1(Signature),
    /// A P-256 (secp256r1) signature with its public key embedded.
    P256(P256Signature),
    /// A WebAuthn assertion over P-256.
    WebAuthn(WebAuthnSignature),
    /// An access key signing for a root account.
    Keychain(KeychainSignature),
}

/// A P-256 signature envelope (`0x01`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P256Signature {
    /// The signature's `r`.
    pub r: B256,
    /// The signature's `s`.
    pub s: B256,
    /// The public key's x coordinate.
    pub pub_key_x: B256,
    /// The public key's y coordinate.
    pub pub_key_y: B256,
    /// Whether the signed digest is `sha256(signing_hash)` (WebCrypto) rather than the hash itself.
    pub pre_hash: bool,
}

/// A WebAuthn signature envelope (`0x02`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebAuthnSignature {
    /// `authenticatorData ‖ clientDataJSON`.
    pub webauthn_data: Bytes,
    /// The signature's `r`.
    pub r: B256,
    /// The signature's `s`.
    pub s: B256,
    /// The public key's x coordinate.
    pub pub_key_x: B256,
    /// The public key's y coordinate.
    pub pub_key_y: B256,
}

/// A keychain (access key) signature envelope (`0x03` or `0x04`).
///
/// The transaction's sender is `user_address`, but only if the chain's AccountKeychain
/// precompile authorizes the inner key for it, which cannot be checked offline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeychainSignature {
    /// Which hash the inner signature signs.
    pub version: KeychainVersion,
    /// The root account the transaction runs for.
    pub user_address: Address,
    /// The access key's own signature (never another keychain envelope).
    pub inner: Box<TempoSignature>,
}

/// The version of a keychain envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeychainVersion {
    /// `0x03`: the inner signature signs the transaction's signing hash itself.
    V1,
    /// `0x04`: the inner signature signs `keccak256(0x04 ‖ signing_hash ‖ user_address)`.
    V2,
}

/// The kind of a [`TempoSignature`], without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxSignatureKind {
    /// [`TempoSignature::Secp256k1`].
    Secp256k1,
    /// [`TempoSignature::P256`].
    P256,
    /// [`TempoSignature::WebAuthn`].
    WebAuthn,
    /// [`TempoSignature::Keychain`].
    Keychain,
}

impl fmt::Display for TxSignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxSignatureKind::Secp256k1 => "secp256k1",
            TxSignatureKind::P256 => "p256",
            TxSignatureKind::WebAuthn => "webauthn",
            TxSignatureKind::Keychain => "keychain",
        })
    }
}

impl TempoSignature {
    /// Parses an envelope from its bytes (the payload of the transaction's last RLP item).
    pub fn from_bytes(data: &[u8]) -> Result<Self, TxError> {
        Self::parse(data, true)
    }

    fn parse(data: &[u8], allow_keychain: bool) -> Result<Self, TxError> {
        if data.len() == SECP256K1_LEN {
            return Signature::from_raw(data)
                .map(TempoSignature::Secp256k1)
                .map_err(|_| TxError::MalformedSignature("invalid secp256k1 recovery id"));
        }
        let Some((&ty, body)) = data.split_first() else {
            return Err(TxError::MalformedSignature("empty signature"));
        };
        match ty {
            P256_TYPE => {
                if body.len() != P256_CORE_LEN + 1 {
                    return Err(TxError::MalformedSignature("p256 signature must be 130 bytes"));
                }
                let [r, s, x, y] = words(&body[..P256_CORE_LEN]);
                Ok(TempoSignature::P256(P256Signature { r, s, pub_key_x: x, pub_key_y: y, pre_hash: body[128] != 0 }))
            }
            WEBAUTHN_TYPE => {
                if !(P256_CORE_LEN..=MAX_WEBAUTHN_LEN).contains(&body.len()) {
                    return Err(TxError::MalformedSignature("webauthn signature length out of range"));
                }
                let (webauthn_data, core) = body.split_at(body.len() - P256_CORE_LEN);
                let [r, s, x, y] = words(core);
                let webauthn_data = Bytes::copy_from_slice(webauthn_data);
                Ok(TempoSignature::WebAuthn(WebAuthnSignature { webauthn_data, r, s, pub_key_x: x, pub_key_y: y }))
            }
            KEYCHAIN_V1_TYPE | KEYCHAIN_V2_TYPE if allow_keychain => {
                if body.len() < 20 {
                    return Err(TxError::MalformedSignature("keychain signature too short"));
                }
                let (user, inner) = body.split_at(20);
                let version = if ty == KEYCHAIN_V1_TYPE { KeychainVersion::V1 } else { KeychainVersion::V2 };
                let inner = Box::new(Self::parse(inner, false)?);
                Ok(TempoSignature::Keychain(KeychainSignature {
                    version,
                    user_address: Address::from_slice(user),
                    inner,
                }))
            }
            _ => Err(TxError::MalformedSignature("unknown signature type")),
        }
    }

    /// The envelope's bytes, as carried in the transaction.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            TempoSignature::Secp256k1(sig) => sig.as_bytes().to_vec(),
            TempoSignature::P256(p) => {
                let mut out = Vec::with_capacity(1 + P256_CORE_LEN + 1);
                out.push(P256_TYPE);
                for word in [p.r, p.s, p.pub_key_x, p.pub_key_y] {
                    out.extend_from_slice(word.as_slice());
                }
                out.push(u8::from(p.pre_hash));
                out
            }
            TempoSignature::WebAuthn(w) => {
                let mut out = Vec::with_capacity(1 + w.webauthn_data.len() + P256_CORE_LEN);
                out.push(WEBAUTHN_TYPE);
                out.extend_from_slice(&w.webauthn_data);
                for word in [w.r, w.s, w.pub_key_x, w.pub_key_y] {
                    out.extend_from_slice(word.as_slice());
                }
                out
            }
            TempoSignature::Keychain(k) => {
                let mut out = vec![match k.version {
                    KeychainVersion::V1 => KEYCHAIN_V1_TYPE,
                    KeychainVersion::V2 => KEYCHAIN_V2_TYPE,
                }];
                out.extend_from_slice(k.user_address.as_slice());
                out.extend_from_slice(&k.inner.to_bytes());
                out
            }
        }
    }

    /// The envelope's kind.
    pub fn kind(&self) -> TxSignatureKind {
        match self {
            TempoSignature::Secp256k1(_) => TxSignatureKind::Secp256k1,
            TempoSignature::P256(_) => TxSignatureKind::P256,
            TempoSignature::WebAuthn(_) => TxSignatureKind::WebAuthn,
            TempoSignature::Keychain(_) => TxSignatureKind::Keychain,
        }
    }

    /// Recovers the address that signed `hash`, with Tempo's rules: low `s` on both curves;
    /// for P-256 and WebAuthn, the signature must verify against the embedded key, whose
    /// address is returned; WebAuthn also checks its flags, `type` and challenge.
    ///
    /// A keychain envelope gives [`TxError::Unsupported`]: its sender is `user_address`
    /// only if the chain's AccountKeychain precompile authorizes the inner key.
    pub fn recover(&self, hash: &B256) -> Result<Address, TxError> {
        match self {
            TempoSignature::Secp256k1(sig) => recover_secp256k1(sig, hash),
            TempoSignature::P256(sig) => super::passkey::recover_p256(sig, hash),
            TempoSignature::WebAuthn(sig) => super::passkey::recover_webauthn(sig, hash),
            TempoSignature::Keychain(_) => Err(TxError::Unsupported(TxSignatureKind::Keychain)),
        }
    }
}

impl From<Signature> for TempoSignature {
    fn from(sig: Signature) -> Self {
        TempoSignature::Secp256k1(sig)
    }
}

/// Recovers a secp256k1 signer, refusing high-`s` signatures.
pub(super) fn recover_secp256k1(sig: &Signature, hash: &B256) -> Result<Address, TxError> {
    if sig.normalize_s().is_some() {
        return Err(TxError::HighS);
    }
    sig.recover_address_from_prehash(hash).map_err(|_| TxError::Recovery)
}

/// Splits 128 bytes into four 32-byte words.
fn words(core: &[u8]) -> [B256; 4] {
    std::array::from_fn(|i| B256::from_slice(&core[i * 32..(i + 1) * 32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256_bytes(pre_hash: u8) -> Vec<u8> {
        let mut v = vec![P256_TYPE];
        v.extend((0..128).map(|i| i as u8));
        v.push(pre_hash);
        v
    }

    #[test]
    fn every_kind_round_trips() {
        let mut webauthn = vec![WEBAUTHN_TYPE];
        webauthn.extend(std::iter::repeat_n(7u8, 40 + 128));
        let mut secp = vec![0x11; 64];
        secp.push(28);
        let mut keychain = vec![KEYCHAIN_V2_TYPE];
        keychain.extend([0xaa; 20]);
        keychain.extend(&secp);
        for (bytes, kind) in [
            (secp.clone(), TxSignatureKind::Secp256k1),
            (p256_bytes(1), TxSignatureKind::P256),
            (webauthn, TxSignatureKind::WebAuthn),
            (keychain, TxSignatureKind::Keychain),
        ] {
            let sig = TempoSignature::from_bytes(&bytes).unwrap();
            assert_eq!(sig.kind(), kind);
            assert_eq!(sig.to_bytes(), bytes);
        }
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        let mut nested = vec![KEYCHAIN_V1_TYPE];
        nested.extend([0; 20]);
        nested.push(KEYCHAIN_V1_TYPE);
        nested.extend([0; 40]);
        let mut bad_v = vec![0; 64];
        bad_v.push(5);
        for bytes in [vec![], vec![0x01], p256_bytes(0)[..100].to_vec(), vec![0x09; 10], nested, bad_v] {
            assert!(matches!(TempoSignature::from_bytes(&bytes), Err(TxError::MalformedSignature(_))), "{bytes:?}");
        }
    }

    #[test]
    fn keychains_and_high_s_do_not_recover() {
        let mut keychain = vec![KEYCHAIN_V1_TYPE];
        keychain.extend([0xaa; 20]);
        keychain.extend(p256_bytes(0));
        let sig = TempoSignature::from_bytes(&keychain).unwrap();
        assert!(matches!(sig.recover(&B256::ZERO), Err(TxError::Unsupported(TxSignatureKind::Keychain))));
        let garbage = TempoSignature::from_bytes(&p256_bytes(0)).unwrap();
        assert!(matches!(garbage.recover(&B256::ZERO), Err(TxError::Recovery)));
        let high_s = Signature::new(alloy::primitives::U256::from(1), alloy::primitives::U256::MAX, false);
        assert!(matches!(TempoSignature::from(high_s).recover(&B256::ZERO), Err(TxError::HighS)));
    }
}
