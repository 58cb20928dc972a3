//! Voucher signatures: the canonical Tempo primitive signature envelope, parsed strictly,
//! and signer recovery.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::{Address, B256, b256, hex, keccak256};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use sha2::{Digest, Sha256};

/// secp256k1 group order n.
const K1_N: B256 = b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
/// secp256k1 n/2 (rounded down): the largest low-s value.
const K1_HALF_N: B256 = b256!("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");
/// P-256 group order n.
const P256_N: B256 = b256!("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// P-256 n/2 (rounded down).
const P256_HALF_N: B256 = b256!("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");

/// The length of a secp256k1 envelope.
const K1_LEN: usize = 65;
/// The length of a P-256 envelope, type byte included.
const P256_LEN: usize = 130;

/// A voucher signature in the canonical Tempo primitive envelope, checked for shape and
/// malleability when parsed.
///
/// Accepted envelopes:
///
/// - secp256k1: 65 bytes `r ‖ s ‖ v`, no prefix, `v` ∈ {27, 28} (what viem's
///   `signTypedData` and alloy's signers produce, and what Tempo re-encodes to). `v` as 0/1
///   and the 64-byte EIP-2098 form are valid signatures in a non-canonical encoding and are
///   rejected, as the SDKs' canonical-envelope check does.
/// - P-256: `0x01 ‖ r ‖ s ‖ pubKeyX ‖ pubKeyY ‖ preHash` (130 bytes; `preHash` 0 or 1, and
///   when 1 the signed message is `sha256(digest)`, as WebCrypto signs). The signer is the
///   address of the embedded key once the signature verifies. v2 only.
///
/// On both curves `r` and `s` must be nonzero and below the group order, and `s ≤ n/2`
/// (low-s). WebAuthn (`0x02`) and keychain (`0x03`, `0x04`) envelopes are rejected as
/// [`SignatureError::Unsupported`]. Hex digits may be of either case; the byte encoding must
/// be exactly the canonical one.
///
/// Parse it with [`from_hex`](Self::from_hex) (or `str::parse`) from the payload's
/// `signature`, then check it with [`verify_voucher`](super::verify_voucher).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VoucherSignature(Envelope);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Envelope {
    Secp256k1 { rs: [u8; 64], odd_y: bool },
    P256 { r: B256, s: B256, x: B256, y: B256, pre_hash: bool },
}

/// The kind of a signature envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VoucherSignatureKind {
    /// secp256k1 ECDSA (`r ‖ s ‖ v`).
    Secp256k1,
    /// P-256 ECDSA with the public key embedded (`0x01`).
    P256,
    /// WebAuthn assertion (`0x02`).
    WebAuthn,
    /// Keychain (access key) wrapper (`0x03`, `0x04`).
    Keychain,
}

impl fmt::Display for VoucherSignatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoucherSignatureKind::Secp256k1 => "secp256k1",
            VoucherSignatureKind::P256 => "P-256",
            VoucherSignatureKind::WebAuthn => "WebAuthn",
            VoucherSignatureKind::Keychain => "keychain",
        })
    }
}

/// Why a voucher signature was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The text is not `0x`-prefixed hex with an even number of digits.
    InvalidHex,
    /// No envelope has this length and type byte.
    Malformed {
        /// The decoded length in bytes.
        len: usize,
    },
    /// A secp256k1 `v` that is no recovery id at all (not 0, 1, 27 or 28).
    InvalidRecoveryId {
        /// The last byte of the signature.
        v: u8,
    },
    /// A valid signature in a non-canonical encoding: 64-byte EIP-2098, `v` as 0/1 instead
    /// of 27/28, or a P-256 pre-hash flag other than 0/1.
    NotCanonical,
    /// `r` or `s` is zero or not below the group order.
    ScalarOutOfRange,
    /// `s` is above n/2: the malleable twin of a low-s signature.
    HighS,
    /// An envelope this server does not verify (or not under this protocol generation).
    Unsupported {
        /// The envelope's kind.
        kind: VoucherSignatureKind,
    },
    /// The signature does not verify: no key recovers from it, or the P-256 check fails.
    Invalid,
    /// The signature is valid but was made by someone other than the channel's signer.
    Mismatch {
        /// Who signed.
        recovered: Address,
        /// Who should have.
        expected: Address,
    },
    /// The voucher amount exceeds what the protocol can carry (uint96 for v2).
    AmountTooLarge {
        /// The amount.
        amount: u128,
        /// The protocol's largest amount.
        max: u128,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::InvalidHex => f.write_str("signature is not 0x-prefixed hex"),
            SignatureError::Malformed { len } => write!(f, "no signature envelope is {len} bytes long with this type"),
            SignatureError::InvalidRecoveryId { v } => write!(f, "signature v {v} is not 27 or 28"),
            SignatureError::NotCanonical => f.write_str("signature is not in its canonical encoding"),
            SignatureError::ScalarOutOfRange => f.write_str("signature r or s is zero or not below the curve order"),
            SignatureError::HighS => f.write_str("signature s is above half the curve order (not low-s)"),
            SignatureError::Unsupported { kind } => write!(f, "{kind} voucher signatures are not supported here"),
            SignatureError::Invalid => f.write_str("signature does not verify"),
            SignatureError::Mismatch { recovered, expected } => {
                write!(f, "voucher signed by {recovered}, expected {expected}")
            }
            SignatureError::AmountTooLarge { amount, max } => write!(f, "voucher amount {amount} exceeds {max}"),
        }
    }
}

impl std::error::Error for SignatureError {}

impl VoucherSignature {
    /// Parses `0x`-prefixed hex (either letter case). Allocates nothing.
    pub fn from_hex(text: &str) -> Result<Self, SignatureError> {
        let digits = text.strip_prefix("0x").ok_or(SignatureError::InvalidHex)?.as_bytes();
        if digits.len() % 2 != 0 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(SignatureError::InvalidHex);
        }
        let mut buf = [0u8; P256_LEN];
        let len = digits.len() / 2;
        // Only the two fixed-size envelopes are decoded whole; any other length is
        // rejected by `from_bytes` from its first byte and length alone.
        let take = if len == K1_LEN || len == P256_LEN { len } else { len.min(1) };
        hex::decode_to_slice(&digits[..2 * take], &mut buf[..take]).map_err(|_| SignatureError::InvalidHex)?;
        if take == len { Self::from_bytes(&buf[..len]) } else { Err(classify_other(buf[0], len)) }
    }

    /// Parses the raw envelope bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        match (bytes.len(), bytes.first()) {
            (K1_LEN, _) => parse_secp256k1(bytes),
            (P256_LEN, Some(&0x01)) => parse_p256(&bytes[1..]),
            (len, Some(&first)) => Err(classify_other(first, len)),
            (_, None) => Err(SignatureError::Malformed { len: 0 }),
        }
    }

    /// The envelope's kind.
    pub fn kind(&self) -> VoucherSignatureKind {
        match self.0 {
            Envelope::Secp256k1 { .. } => VoucherSignatureKind::Secp256k1,
            Envelope::P256 { .. } => VoucherSignatureKind::P256,
        }
    }

    /// Who signed `hash`: the recovered secp256k1 signer, or the address of the embedded
    /// P-256 key once the signature verifies against it. One curve operation, no allocation.
    pub fn recover(&self, hash: B256) -> Result<Address, SignatureError> {
        match &self.0 {
            Envelope::Secp256k1 { rs, odd_y } => {
                let id = if *odd_y { RecoveryId::One } else { RecoveryId::Zero };
                let sig = RecoverableSignature::from_compact(rs, id).map_err(|_| SignatureError::ScalarOutOfRange)?;
                let key = secp256k1::SECP256K1
                    .recover_ecdsa(secp256k1::Message::from_digest(hash.0), &sig)
                    .map_err(|_| SignatureError::Invalid)?;
                Ok(Address::from_raw_public_key(&key.serialize_uncompressed()[1..]))
            }
            Envelope::P256 { r, s, x, y, pre_hash } => {
                let message: [u8; 32] = if *pre_hash { Sha256::digest(hash).into() } else { hash.0 };
                let point = p256::EncodedPoint::from_affine_coordinates(&x.0.into(), &y.0.into(), false);
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| SignatureError::Invalid)?;
                let sig =
                    p256::ecdsa::Signature::from_scalars(r.0, s.0).map_err(|_| SignatureError::ScalarOutOfRange)?;
                key.verify_prehash(&message, &sig).map_err(|_| SignatureError::Invalid)?;
                let mut xy = [0u8; 64];
                xy[..32].copy_from_slice(x.as_slice());
                xy[32..].copy_from_slice(y.as_slice());
                Ok(Address::from_word(keccak256(xy)))
            }
        }
    }
}

/// The error for an envelope that is neither 65 bytes nor a 130-byte P-256 one.
fn classify_other(first: u8, len: usize) -> SignatureError {
    match (first, len) {
        (_, 64) => SignatureError::NotCanonical,
        (0x02, _) => SignatureError::Unsupported { kind: VoucherSignatureKind::WebAuthn },
        (0x03 | 0x04, _) => SignatureError::Unsupported { kind: VoucherSignatureKind::Keychain },
        _ => SignatureError::Malformed { len },
    }
}

fn parse_secp256k1(bytes: &[u8]) -> Result<VoucherSignature, SignatureError> {
    let odd_y = match bytes[64] {
        27 => false,
        28 => true,
        0 | 1 => return Err(SignatureError::NotCanonical),
        v => return Err(SignatureError::InvalidRecoveryId { v }),
    };
    check_scalars(&bytes[..32], &bytes[32..64], &K1_N, &K1_HALF_N)?;
    let mut rs = [0u8; 64];
    rs.copy_from_slice(&bytes[..64]);
    Ok(VoucherSignature(Envelope::Secp256k1 { rs, odd_y }))
}

fn parse_p256(body: &[u8]) -> Result<VoucherSignature, SignatureError> {
    let pre_hash = match body[128] {
        0 => false,
        1 => true,
        _ => return Err(SignatureError::NotCanonical),
    };
    check_scalars(&body[..32], &body[32..64], &P256_N, &P256_HALF_N)?;
    let word = |i: usize| B256::from_slice(&body[32 * i..32 * (i + 1)]);
    Ok(VoucherSignature(Envelope::P256 { r: word(0), s: word(1), x: word(2), y: word(3), pre_hash }))
}

/// `0 < r < n` and `0 < s ≤ n/2`, on big-endian bytes (lexicographic order is numeric order).
fn check_scalars(r: &[u8], s: &[u8], n: &B256, half_n: &B256) -> Result<(), SignatureError> {
    let zero = [0u8; 32];
    if r == zero || s == zero || r >= n.as_slice() || s >= n.as_slice() {
        return Err(SignatureError::ScalarOutOfRange);
    }
    if s > half_n.as_slice() {
        return Err(SignatureError::HighS);
    }
    Ok(())
}

impl FromStr for VoucherSignature {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

impl fmt::Display for VoucherSignature {
    /// The canonical hex encoding (lowercase, `0x`-prefixed), exactly the accepted input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; P256_LEN];
        let bytes: &[u8] = match &self.0 {
            Envelope::Secp256k1 { rs, odd_y } => {
                buf[..64].copy_from_slice(rs);
                buf[64] = 27 + u8::from(*odd_y);
                &buf[..K1_LEN]
            }
            Envelope::P256 { r, s, x, y, pre_hash } => {
                buf[0] = 0x01;
                for (i, word) in [r, s, x, y].into_iter().enumerate() {
                    buf[1 + 32 * i..33 + 32 * i].copy_from_slice(word.as_slice());
                }
                buf[129] = u8::from(*pre_hash);
                &buf[..]
            }
        };
        f.write_str("0x")?;
        bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for VoucherSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VoucherSignature({}, {self})", self.kind())
    }
}

impl<'de> serde::Deserialize<'de> for VoucherSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = VoucherSignature;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 0x-prefixed hex voucher signature")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                VoucherSignature::from_hex(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

impl serde::Serialize for VoucherSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
