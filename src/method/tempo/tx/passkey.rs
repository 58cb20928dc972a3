//! Sender recovery for P-256 and WebAuthn envelopes: verify the signature against the
//! embedded key, then derive the address from that key.

use alloy::primitives::{Address, B256, keccak256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256};

use super::{P256Signature, TxError, WebAuthnSignature};

/// n/2 for P-256: Tempo refuses signatures with a larger `s`.
const P256_HALF_N: B256 =
    alloy::primitives::b256!("0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");
/// `rpIdHash ‖ flags ‖ signCount`: Tempo allows no extensions and no attested data.
const AUTHENTICATOR_DATA_LEN: usize = 37;
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

pub(super) fn recover_p256(sig: &P256Signature, hash: &B256) -> Result<Address, TxError> {
    let message: [u8; 32] = if sig.pre_hash { Sha256::digest(hash).into() } else { hash.0 };
    verify(sig.r, sig.s, sig.pub_key_x, sig.pub_key_y, &message)
}

/// Checks the WebAuthn assertion the way Tempo does: user presence or verification, no
/// attested data or extensions, `type` `webauthn.get`, and the challenge equal to the
/// base64url signing hash; the key signs `sha256(authenticatorData ‖ sha256(clientDataJSON))`.
pub(super) fn recover_webauthn(sig: &WebAuthnSignature, hash: &B256) -> Result<Address, TxError> {
    let data = &sig.webauthn_data[..];
    if data.len() < AUTHENTICATOR_DATA_LEN + 32 {
        return Err(TxError::MalformedSignature("webauthn data too short"));
    }
    let flags = data[32];
    if flags & (FLAG_UP | FLAG_UV) == 0 || flags & (FLAG_AT | FLAG_ED) != 0 {
        return Err(TxError::MalformedSignature("webauthn flags not allowed"));
    }
    let (authenticator_data, client_data) = data.split_at(AUTHENTICATOR_DATA_LEN);
    #[derive(serde::Deserialize)]
    struct ClientData<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        challenge: &'a str,
    }
    let parsed: ClientData<'_> =
        serde_json::from_slice(client_data).map_err(|_| TxError::MalformedSignature("clientDataJSON is not json"))?;
    if parsed.kind != "webauthn.get" || parsed.challenge != URL_SAFE_NO_PAD.encode(hash) {
        return Err(TxError::Recovery);
    }
    let message: [u8; 32] =
        Sha256::new().chain_update(authenticator_data).chain_update(Sha256::digest(client_data)).finalize().into();
    verify(sig.r, sig.s, sig.pub_key_x, sig.pub_key_y, &message)
}

fn verify(r: B256, s: B256, x: B256, y: B256, message: &[u8; 32]) -> Result<Address, TxError> {
    if s > P256_HALF_N {
        return Err(TxError::HighS);
    }
    let point = p256::EncodedPoint::from_affine_coordinates(&x.0.into(), &y.0.into(), false);
    let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| TxError::Recovery)?;
    let signature = p256::ecdsa::Signature::from_scalars(r.0, s.0).map_err(|_| TxError::Recovery)?;
    key.verify_prehash(message, &signature).map_err(|_| TxError::Recovery)?;
    let mut xy = [0u8; 64];
    xy[..32].copy_from_slice(x.as_slice());
    xy[32..].copy_from_slice(y.as_slice());
    Ok(Address::from_word(keccak256(xy)))
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    use super::*;
    use crate::method::tempo::tx::TempoSignature;

    fn key() -> (SigningKey, B256, B256, Address) {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (B256::from_slice(point.x().unwrap()), B256::from_slice(point.y().unwrap()));
        let mut xy = [0u8; 64];
        xy[..32].copy_from_slice(x.as_slice());
        xy[32..].copy_from_slice(y.as_slice());
        (key, x, y, Address::from_word(keccak256(xy)))
    }

    fn sign(key: &SigningKey, message: &[u8; 32]) -> (B256, B256) {
        let sig: p256::ecdsa::Signature = key.sign_prehash(message).unwrap();
        let sig = sig.normalize_s().unwrap_or(sig);
        let (r, s) = sig.split_bytes();
        (B256::from_slice(&r), B256::from_slice(&s))
    }

    #[test]
    fn p256_recovers_the_embedded_key_with_and_without_pre_hash() {
        let (key, x, y, address) = key();
        let hash = B256::repeat_byte(0x42);
        for pre_hash in [false, true] {
            let message: [u8; 32] = if pre_hash { Sha256::digest(hash).into() } else { hash.0 };
            let (r, s) = sign(&key, &message);
            let sig = TempoSignature::P256(P256Signature { r, s, pub_key_x: x, pub_key_y: y, pre_hash });
            assert_eq!(sig.recover(&hash).unwrap(), address);
            assert!(matches!(sig.recover(&B256::ZERO), Err(TxError::Recovery)));
        }
    }

    #[test]
    fn webauthn_checks_the_challenge_and_flags() {
        let (key, x, y, address) = key();
        let hash = B256::repeat_byte(0x24);
        let envelope = |flags: u8, challenge: &B256| {
            let mut data = vec![0u8; 32];
            data.extend([flags, 0, 0, 0, 1]);
            let client = format!(r#"{{"type":"webauthn.get","challenge":"{}"}}"#, URL_SAFE_NO_PAD.encode(challenge));
            let message: [u8; 32] =
                Sha256::new().chain_update(&data).chain_update(Sha256::digest(client.as_bytes())).finalize().into();
            data.extend(client.as_bytes());
            let (r, s) = sign(&key, &message);
            TempoSignature::WebAuthn(WebAuthnSignature { webauthn_data: data.into(), r, s, pub_key_x: x, pub_key_y: y })
        };
        assert_eq!(envelope(FLAG_UP, &hash).recover(&hash).unwrap(), address);
        assert!(matches!(envelope(FLAG_UP, &B256::ZERO).recover(&hash), Err(TxError::Recovery)));
        assert!(matches!(envelope(FLAG_UP | FLAG_ED, &hash).recover(&hash), Err(TxError::MalformedSignature(_))));
        assert!(matches!(envelope(0, &hash).recover(&hash), Err(TxError::MalformedSignature(_))));
    }
}
