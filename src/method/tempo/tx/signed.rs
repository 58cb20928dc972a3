//! A signed Tempo transaction: fields, the sender's signature, and the exact bytes.

use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::signers::SignerSync;

use super::codec;
use super::{FeePayer, MAX_RAW_TX_LEN, TEMPO_TX_TYPE, TempoSignature, TempoTransaction, TxError};

/// A signed Tempo transaction, decoded from a `0x76` transaction or a `0x78` fee-payer
/// envelope (both read into the same view), or produced by
/// [`TempoTransaction::into_signed`].
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTempoTx {
    tx: TempoTransaction,
    signature: TempoSignature,
    envelope_sender: Option<Address>,
    raw: Bytes,
}

impl SignedTempoTx {
    /// Decodes a signed `0x76` transaction or a `0x78` fee-payer envelope; see
    /// [`TempoTransaction::decode`].
    pub fn decode(raw: &[u8]) -> Result<Self, TxError> {
        if raw.len() > MAX_RAW_TX_LEN {
            return Err(TxError::TooLarge { len: raw.len() });
        }
        let codec::Decoded { tx, signature, envelope_sender } = codec::decode(raw)?;
        if tx.encode_signed(&signature, envelope_sender) != raw {
            return Err(TxError::NonCanonical);
        }
        Ok(SignedTempoTx { tx, signature, envelope_sender, raw: Bytes::copy_from_slice(raw) })
    }

    pub(super) fn from_parts(
        tx: TempoTransaction,
        signature: TempoSignature,
        envelope_sender: Option<Address>,
    ) -> Self {
        let raw = tx.encode_signed(&signature, envelope_sender).into();
        SignedTempoTx { tx, signature, envelope_sender, raw }
    }

    /// The transaction's fields.
    pub fn tx(&self) -> &TempoTransaction {
        &self.tx
    }

    /// The sender's signature envelope.
    pub fn signature(&self) -> &TempoSignature {
        &self.signature
    }

    /// The sender a `0x78` fee-payer envelope names (`None` for a `0x76`). It is a claim
    /// until [`sender`](Self::sender) has checked it.
    pub fn envelope_sender(&self) -> Option<Address> {
        self.envelope_sender
    }

    /// The exact bytes this was decoded from (or signed into): `0x76…` or `0x78…`.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The `0x76` encoding, which is [`raw`](Self::raw) unless this is a `0x78` envelope.
    ///
    /// Broadcastable unless the fee payer is [`FeePayer::AwaitingSponsor`]: then the
    /// fee-payer slot holds the `0x00` marker, which the chain refuses; see
    /// [`sponsor`](Self::sponsor).
    pub fn encode_2718(&self) -> Vec<u8> {
        if self.raw.first() == Some(&TEMPO_TX_TYPE) {
            return self.raw.to_vec();
        }
        self.tx.encode_signed(&self.signature, None)
    }

    /// `keccak256(encode_2718())`: the hash the chain reports for this transaction, once
    /// broadcastable (see [`encode_2718`](Self::encode_2718)). A sponsor's signature
    /// changes it; use [`expiring_nonce_hash`](Self::expiring_nonce_hash) for a hash that
    /// stays put.
    pub fn tx_hash(&self) -> B256 {
        keccak256(self.encode_2718())
    }

    /// See [`TempoTransaction::encode_for_signing`].
    pub fn encode_for_signing(&self) -> Vec<u8> {
        self.tx.encode_for_signing()
    }

    /// See [`TempoTransaction::signing_hash`].
    pub fn signing_hash(&self) -> B256 {
        self.tx.signing_hash()
    }

    /// See [`TempoTransaction::expiring_nonce_hash`]; pass [`sender`](Self::sender).
    pub fn expiring_nonce_hash(&self, sender: Address) -> B256 {
        self.tx.expiring_nonce_hash(sender)
    }

    /// Recovers and checks the sender from its signature over [`signing_hash`](Self::signing_hash).
    ///
    /// See [`TempoSignature::recover`] for the rules (keychain envelopes give
    /// [`TxError::Unsupported`]). For a `0x78` envelope the recovered address must equal
    /// the one the envelope names.
    pub fn sender(&self) -> Result<Address, TxError> {
        let recovered = self.signature.recover(&self.signing_hash())?;
        match self.envelope_sender {
            Some(claimed) if claimed != recovered => Err(TxError::SenderMismatch { claimed, recovered }),
            _ => Ok(recovered),
        }
    }

    /// Co-signs a transaction [awaiting a sponsor](FeePayer::AwaitingSponsor) as its fee
    /// payer, setting the fee token first when `fee_token` is given.
    ///
    /// The sender's signature stays valid (it does not cover the fee token); the result
    /// is a broadcastable `0x76` with a new [`tx_hash`](Self::tx_hash).
    pub fn sponsor<S: SignerSync + ?Sized>(&self, fee_token: Option<Address>, fee_payer: &S) -> Result<Self, TxError> {
        if self.tx.fee_payer != FeePayer::AwaitingSponsor {
            return Err(TxError::NotAwaitingSponsor);
        }
        let sender = self.sender()?;
        let mut tx = self.tx.clone();
        tx.fee_token = fee_token.or(tx.fee_token);
        let hash = tx.fee_payer_signing_hash(sender);
        let signature = fee_payer.sign_hash_sync(&hash).map_err(TxError::Signer)?;
        tx.fee_payer = FeePayer::Sponsored(signature);
        Ok(SignedTempoTx::from_parts(tx, self.signature.clone(), None))
    }

    /// Recovers the sponsor from a [`FeePayer::Sponsored`] signature (`None` otherwise).
    pub fn sponsor_address(&self) -> Result<Option<Address>, TxError> {
        let FeePayer::Sponsored(signature) = &self.tx.fee_payer else {
            return Ok(None);
        };
        let hash = self.tx.fee_payer_signing_hash(self.sender()?);
        super::signature::recover_secp256k1(signature, &hash).map(Some)
    }

    /// Splits into the fields and the sender's signature.
    pub fn into_parts(self) -> (TempoTransaction, TempoSignature) {
        (self.tx, self.signature)
    }
}
