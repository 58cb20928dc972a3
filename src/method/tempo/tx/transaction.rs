//! The unsigned Tempo transaction: its fields, hashes and signing.

use alloy::eips::eip2930::AccessList;
use alloy::primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use alloy::signers::SignerSync;

use super::codec::FeeSlot;
use super::{EXPIRING_NONCE_KEY, FEE_PAYER_ENVELOPE_TYPE, SignedTempoTx, TEMPO_TX_TYPE, TempoSignature, TxError};

/// One call of a transaction's batch; the calls run atomically, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The target, or [`TxKind::Create`] to deploy a contract (first call only).
    pub to: TxKind,
    /// The native value sent with the call (Tempo has none to speak of; keep it zero).
    pub value: U256,
    /// The calldata.
    pub input: Bytes,
}

impl Call {
    /// A call to `to` with `input` and no value.
    pub fn new(to: Address, input: impl Into<Bytes>) -> Self {
        Call { to: TxKind::Call(to), value: U256::ZERO, input: input.into() }
    }
}

/// Who pays the transaction's fees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeePayer {
    /// The sender pays; the fee-payer slot is empty and the sender signs the fee token.
    #[default]
    SelfPaid,
    /// A sponsor will pay and has not signed yet: the transaction came as a `0x78`
    /// envelope (or a `0x76` with the `0x00` marker). The sender did not sign the fee token.
    AwaitingSponsor,
    /// The sponsor's signature over [`TempoTransaction::fee_payer_signing_hash`].
    Sponsored(Signature),
}

/// The fields of a Tempo transaction (type `0x76`), without the sender's signature.
///
/// Build one with [`TempoTxBuilder`](super::TempoTxBuilder) or fill the fields; decode
/// signed bytes with [`TempoTransaction::decode`]. See the [module docs](super) for the
/// wire format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TempoTransaction {
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// EIP-1559 priority fee per gas (Tempo prices gas in attodollars).
    pub max_priority_fee_per_gas: u128,
    /// EIP-1559 fee cap per gas.
    pub max_fee_per_gas: u128,
    /// The gas limit for the whole batch.
    pub gas_limit: u64,
    /// The batch; never empty.
    pub calls: Vec<Call>,
    /// The EIP-2930 access list.
    pub access_list: AccessList,
    /// The 2D nonce's key: `0` is the protocol nonce, [`EXPIRING_NONCE_KEY`] marks an
    /// expiring-nonce transaction (replay protection by hash until `valid_before`).
    pub nonce_key: U256,
    /// The nonce under `nonce_key` (`0` for expiring-nonce transactions).
    pub nonce: u64,
    /// The transaction is valid only in blocks with `timestamp < valid_before`.
    pub valid_before: Option<u64>,
    /// The transaction is valid only in blocks with `timestamp >= valid_after`.
    pub valid_after: Option<u64>,
    /// The TIP-20 token fees are paid in (`None`: the account's default).
    pub fee_token: Option<Address>,
    /// Who pays the fees.
    pub fee_payer: FeePayer,
    /// The Tempo EIP-7702 authorizations, each kept as its raw RLP list, unparsed.
    pub authorization_list: Vec<Bytes>,
    /// A key authorization provisioning an access key, kept as its raw RLP list, unparsed.
    pub key_authorization: Option<Bytes>,
}

impl TempoTransaction {
    /// Decodes a signed `0x76` transaction or a `0x78` fee-payer envelope.
    ///
    /// The input must be canonical (re-encoding it gives the same bytes) and structurally
    /// valid ([`validate`](Self::validate)). The signature is parsed but not verified; call
    /// [`SignedTempoTx::sender`] for that.
    pub fn decode(raw: &[u8]) -> Result<SignedTempoTx, TxError> {
        SignedTempoTx::decode(raw)
    }

    /// Checks the structural rules Tempo applies when decoding: at least one call, a
    /// `CREATE` only as the first call and never beside authorizations, and
    /// `valid_before > valid_after` when both are set.
    pub fn validate(&self) -> Result<(), TxError> {
        let Some((first, rest)) = self.calls.split_first() else {
            return Err(TxError::Invalid("calls list is empty"));
        };
        if first.to.is_create() && !self.authorization_list.is_empty() {
            return Err(TxError::Invalid("create call beside an authorization list"));
        }
        if rest.iter().any(|c| c.to.is_create()) {
            return Err(TxError::Invalid("create call after the first call"));
        }
        match (self.valid_before, self.valid_after) {
            (Some(before), Some(after)) if before <= after => {
                Err(TxError::Invalid("valid_before is not after valid_after"))
            }
            _ => Ok(()),
        }
    }

    /// Whether this is an expiring-nonce transaction (`nonce_key` = 2²⁵⁶−1).
    pub fn is_expiring_nonce(&self) -> bool {
        self.nonce_key == EXPIRING_NONCE_KEY
    }

    /// The bytes the sender signs: `0x76 ‖ rlp(fields)` with an empty signature slot.
    ///
    /// When a fee payer is involved ([`FeePayer::AwaitingSponsor`] or
    /// [`FeePayer::Sponsored`]) the fee token is left out and the fee-payer slot holds the
    /// `0x00` marker, so the sponsor's signature and fee token never change this encoding.
    pub fn encode_for_signing(&self) -> Vec<u8> {
        if self.fee_payer == FeePayer::SelfPaid {
            self.encode_with(TEMPO_TX_TYPE, FeeSlot::Empty, false, None)
        } else {
            self.encode_with(TEMPO_TX_TYPE, FeeSlot::Marker, true, None)
        }
    }

    /// The hash the sender signs: `keccak256(encode_for_signing())`.
    pub fn signing_hash(&self) -> B256 {
        keccak256(self.encode_for_signing())
    }

    /// `keccak256(encode_for_signing() ‖ sender)`: the chain's replay key for expiring
    /// nonces, and the `expiringNonceHash` a TIP-1034 (session v2) channel opened by this
    /// transaction is bound to.
    ///
    /// The fee payer's signature is not part of it (see
    /// [`encode_for_signing`](Self::encode_for_signing)), as in mppx.
    pub fn expiring_nonce_hash(&self, sender: Address) -> B256 {
        let mut preimage = self.encode_for_signing();
        preimage.extend_from_slice(sender.as_slice());
        keccak256(preimage)
    }

    /// The hash a sponsor signs to pay for `sender`'s transaction:
    /// `keccak256(0x78 ‖ rlp(fields))` with the fee token included and `sender` in the
    /// fee-payer slot.
    pub fn fee_payer_signing_hash(&self, sender: Address) -> B256 {
        keccak256(self.encode_with(FEE_PAYER_ENVELOPE_TYPE, FeeSlot::Sender(sender), false, None))
    }

    /// Signs the transaction and returns its raw bytes.
    ///
    /// A [`FeePayer::SelfPaid`] or [`FeePayer::Sponsored`] transaction gives a `0x76`
    /// ready for `eth_sendRawTransaction`; a [`FeePayer::AwaitingSponsor`] one gives the
    /// `0x78` envelope a sponsoring server expects.
    pub fn sign<S: SignerSync + ?Sized>(&self, signer: &S) -> Result<Vec<u8>, TxError> {
        Ok(self.clone().into_signed(signer)?.raw().to_vec())
    }

    /// Signs the transaction, keeping the decoded view (see [`sign`](Self::sign)).
    pub fn into_signed<S: SignerSync + ?Sized>(self, signer: &S) -> Result<SignedTempoTx, TxError> {
        self.validate()?;
        let hash = self.signing_hash();
        let signature = signer.sign_hash_sync(&hash).map_err(TxError::Signer)?;
        let sender = super::signature::recover_secp256k1(&signature, &hash)?;
        let envelope_sender = (self.fee_payer == FeePayer::AwaitingSponsor).then_some(sender);
        Ok(SignedTempoTx::from_parts(self, TempoSignature::Secp256k1(signature), envelope_sender))
    }

    /// The wire bytes with this signature: a `0x78` envelope when `envelope_sender` is
    /// set, a `0x76` otherwise.
    pub(super) fn encode_signed(&self, signature: &TempoSignature, envelope_sender: Option<Address>) -> Vec<u8> {
        match (envelope_sender, &self.fee_payer) {
            (Some(sender), _) => {
                self.encode_with(FEE_PAYER_ENVELOPE_TYPE, FeeSlot::Sender(sender), false, Some(signature))
            }
            (None, FeePayer::SelfPaid) => self.encode_with(TEMPO_TX_TYPE, FeeSlot::Empty, false, Some(signature)),
            (None, FeePayer::AwaitingSponsor) => {
                self.encode_with(TEMPO_TX_TYPE, FeeSlot::Marker, false, Some(signature))
            }
            (None, FeePayer::Sponsored(sig)) => {
                self.encode_with(TEMPO_TX_TYPE, FeeSlot::Signature(sig), false, Some(signature))
            }
        }
    }
}
