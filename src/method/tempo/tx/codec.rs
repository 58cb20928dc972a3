//! RLP encoding and decoding of a Tempo transaction's fields.
//!
//! Every form shares one field list; they differ only in the fee-payer slot, whether the
//! fee token is written, and whether the sender's signature follows (see the
//! [module docs](super)).

use alloy::eips::eip2930::AccessList;
use alloy::primitives::{Address, Bytes, Signature, TxKind, U256};
use alloy::rlp::{self, Decodable, EMPTY_STRING_CODE, Encodable, Header};

use super::{Call, FEE_PAYER_ENVELOPE_TYPE, FeePayer, TEMPO_TX_TYPE, TempoSignature, TempoTransaction, TxError};

/// What goes into the fee-payer slot (the twelfth field).
#[derive(Clone, Copy, Debug)]
pub(super) enum FeeSlot<'a> {
    /// `0x80`: no fee payer.
    Empty,
    /// `0x00`: a fee payer will sign (the sender's signing form, and a 0x76 awaiting a sponsor).
    Marker,
    /// `[v, r, s]`: the fee payer's signature.
    Signature(&'a Signature),
    /// The sender's address (the 0x78 envelope and the fee payer's signing hash).
    Sender(Address),
}

impl TempoTransaction {
    /// Writes `prefix ‖ rlp([fields…, signature?])`.
    pub(super) fn encode_with(
        &self,
        prefix: u8,
        slot: FeeSlot<'_>,
        skip_fee_token: bool,
        signature: Option<&TempoSignature>,
    ) -> Vec<u8> {
        let mut payload = Vec::with_capacity(256);
        let p = &mut payload;
        self.chain_id.encode(p);
        self.max_priority_fee_per_gas.encode(p);
        self.max_fee_per_gas.encode(p);
        self.gas_limit.encode(p);
        encode_calls(&self.calls, p);
        self.access_list.encode(p);
        self.nonce_key.encode(p);
        self.nonce.encode(p);
        self.valid_before.unwrap_or(0).encode(p);
        self.valid_after.unwrap_or(0).encode(p);
        match self.fee_token {
            Some(token) if !skip_fee_token => token.encode(p),
            _ => p.push(EMPTY_STRING_CODE),
        }
        match slot {
            FeeSlot::Empty => p.push(EMPTY_STRING_CODE),
            FeeSlot::Marker => p.push(0x00),
            FeeSlot::Signature(sig) => {
                let mut vrs = Vec::with_capacity(67);
                u8::from(sig.v()).encode(&mut vrs);
                sig.r().encode(&mut vrs);
                sig.s().encode(&mut vrs);
                wrap_list(&vrs, p);
            }
            FeeSlot::Sender(sender) => sender.encode(p),
        }
        let authorizations: Vec<u8> = self.authorization_list.iter().flat_map(|a| a.iter().copied()).collect();
        wrap_list(&authorizations, p);
        if let Some(key_authorization) = &self.key_authorization {
            p.extend_from_slice(key_authorization);
        }
        if let Some(signature) = signature {
            signature.to_bytes().as_slice().encode(p);
        }
        let mut out = Vec::with_capacity(payload.len() + 10);
        out.push(prefix);
        wrap_list(&payload, &mut out);
        out
    }
}

fn encode_calls(calls: &[Call], out: &mut Vec<u8>) {
    let mut list = Vec::new();
    for call in calls {
        let mut item = Vec::with_capacity(call.input.len() + 60);
        match call.to {
            TxKind::Call(to) => to.encode(&mut item),
            TxKind::Create => item.push(EMPTY_STRING_CODE),
        }
        call.value.encode(&mut item);
        call.input.encode(&mut item);
        wrap_list(&item, &mut list);
    }
    wrap_list(&list, out);
}

fn wrap_list(payload: &[u8], out: &mut Vec<u8>) {
    Header { list: true, payload_length: payload.len() }.encode(out);
    out.extend_from_slice(payload);
}

/// A decoded transaction: its fields, the sender's signature, and the sender an `0x78`
/// envelope names.
pub(super) struct Decoded {
    pub(super) tx: TempoTransaction,
    pub(super) signature: TempoSignature,
    pub(super) envelope_sender: Option<Address>,
}

/// Decodes `0x76 ‖ rlp(…)` or `0x78 ‖ rlp(…)`; the caller checks size and canonicality.
pub(super) fn decode(raw: &[u8]) -> Result<Decoded, TxError> {
    let (&ty, mut rest) = raw.split_first().ok_or(TxError::Empty)?;
    if ty != TEMPO_TX_TYPE && ty != FEE_PAYER_ENVELOPE_TYPE {
        return Err(TxError::UnknownType(ty));
    }
    let mut b = Header::decode_bytes(&mut rest, true)?;
    if !rest.is_empty() {
        return Err(TxError::TrailingBytes { extra: rest.len() });
    }
    let buf = &mut b;
    let chain_id = u64::decode(buf)?;
    let max_priority_fee_per_gas = u128::decode(buf)?;
    let max_fee_per_gas = u128::decode(buf)?;
    let gas_limit = u64::decode(buf)?;
    let calls = decode_calls(buf)?;
    let access_list = AccessList::decode(buf)?;
    let nonce_key = U256::decode(buf)?;
    let nonce = u64::decode(buf)?;
    let valid_before = Some(u64::decode(buf)?).filter(|t| *t != 0);
    let valid_after = Some(u64::decode(buf)?).filter(|t| *t != 0);
    let fee_token = match peek(buf)? {
        EMPTY_STRING_CODE => {
            skip_one(buf);
            None
        }
        _ => Some(Address::decode(buf)?),
    };
    let (fee_payer, envelope_sender) = if ty == FEE_PAYER_ENVELOPE_TYPE {
        (FeePayer::AwaitingSponsor, Some(Address::decode(buf)?))
    } else {
        (decode_fee_payer(buf)?, None)
    };
    let authorization_list = split_list(Header::decode_bytes(buf, true)?)?;
    let key_authorization = match peek(buf)? {
        0xc0.. => Some(Bytes::copy_from_slice(take_item(buf)?)),
        _ => None,
    };
    let signature = TempoSignature::from_bytes(Header::decode_bytes(buf, false)?)?;
    if !buf.is_empty() {
        return Err(TxError::Invalid("unexpected field after the signature"));
    }
    let tx = TempoTransaction {
        chain_id,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas_limit,
        calls,
        access_list,
        nonce_key,
        nonce,
        valid_before,
        valid_after,
        fee_token,
        fee_payer,
        authorization_list,
        key_authorization,
    };
    tx.validate()?;
    Ok(Decoded { tx, signature, envelope_sender })
}

fn decode_calls(buf: &mut &[u8]) -> Result<Vec<Call>, TxError> {
    let mut list = Header::decode_bytes(buf, true)?;
    let mut calls = Vec::new();
    while !list.is_empty() {
        let mut item = Header::decode_bytes(&mut list, true)?;
        let to = match Header::decode_bytes(&mut item, false)? {
            [] => TxKind::Create,
            to if to.len() == 20 => TxKind::Call(Address::from_slice(to)),
            _ => return Err(TxError::Invalid("call target is not an address")),
        };
        let value = U256::decode(&mut item)?;
        let input = Bytes::decode(&mut item)?;
        if !item.is_empty() {
            return Err(TxError::Invalid("call has more than three fields"));
        }
        calls.push(Call { to, value, input });
    }
    Ok(calls)
}

fn decode_fee_payer(buf: &mut &[u8]) -> Result<FeePayer, TxError> {
    match peek(buf)? {
        EMPTY_STRING_CODE => {
            skip_one(buf);
            Ok(FeePayer::SelfPaid)
        }
        0x00 => {
            skip_one(buf);
            Ok(FeePayer::AwaitingSponsor)
        }
        _ => {
            let mut vrs = Header::decode_bytes(buf, true)?;
            let parity = match u8::decode(&mut vrs)? {
                0 => false,
                1 => true,
                _ => return Err(TxError::Invalid("fee payer signature parity is not 0 or 1")),
            };
            let r = U256::decode(&mut vrs)?;
            let s = U256::decode(&mut vrs)?;
            if !vrs.is_empty() {
                return Err(TxError::Invalid("fee payer signature has more than three fields"));
            }
            Ok(FeePayer::Sponsored(Signature::new(r, s, parity)))
        }
    }
}

fn peek(buf: &[u8]) -> Result<u8, TxError> {
    buf.first().copied().ok_or(TxError::Rlp(rlp::Error::InputTooShort))
}

/// Skips one byte the caller has peeked at.
fn skip_one(buf: &mut &[u8]) {
    *buf = &buf[1..];
}

/// Takes one whole RLP item (header and payload) off `buf`.
fn take_item<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], TxError> {
    let start = *buf;
    let header = Header::decode(buf)?;
    *buf = &buf[header.payload_length..];
    Ok(&start[..start.len() - buf.len()])
}

/// Splits a list payload into its raw items, each of which must itself be a list.
fn split_list(mut payload: &[u8]) -> Result<Vec<Bytes>, TxError> {
    let mut items = Vec::new();
    while !payload.is_empty() {
        if peek(payload)? < 0xc0 {
            return Err(TxError::Rlp(rlp::Error::UnexpectedString));
        }
        items.push(Bytes::copy_from_slice(take_item(&mut payload)?));
    }
    Ok(items)
}
