//! The `open` action: check the client's open transaction, broadcast it, confirm the
//! channel on chain, and accept the first voucher (§4.6).

use alloy::primitives::{Address, B256, TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent};

use super::hex_bytes;
use super::{Context, chain_error, store_error};
use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::{Mined, TempoChain};
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20};
use crate::method::tempo::payload::{OpenPayload, VoucherPayload};
use crate::method::tempo::tx::SignedTempoTx;
use crate::method::tempo::{ChannelDescriptor, SessionProtocol};
use crate::store::ChannelStore;

pub(super) fn refuse(detail: impl Into<std::borrow::Cow<'static, str>>) -> PaymentError {
    PaymentError::new(PaymentErrorKind::VerificationFailed, detail)
}

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn open(&self, open: OpenPayload) -> Result<Verified, PaymentError> {
        if let Some(descriptor) = &open.descriptor {
            self.check_descriptor(descriptor, open.channel_id)?;
        }
        let id = super::store_id(open.channel_id);
        if self.store.load(&id).await.map_err(store_error)?.is_some() {
            // A retried open (the first answer was lost), or anyone naming a known channel:
            // channel ids are public, so it must prove what a voucher proves (the signer's
            // signature, at or above what was accepted) before it is served or told anything.
            let voucher = VoucherPayload {
                channel_id: open.channel_id,
                cumulative_amount: open.cumulative_amount,
                signature: open.signature,
                descriptor: open.descriptor,
            };
            return self.retried_open(voucher).await;
        }
        match self.config().protocol {
            SessionProtocol::V1 => self.open_v1(open).await,
            SessionProtocol::V2 => self.open_v2(open).await,
        }
    }

    async fn open_v1(&self, open: OpenPayload) -> Result<Verified, PaymentError> {
        let id = super::store_id(open.channel_id);
        let tx = SignedTempoTx::decode(&open.transaction).map_err(|e| refuse(format!("open transaction: {e}")))?;
        let sender = tx.sender().map_err(|e| refuse(format!("open transaction sender: {e}")))?;
        let call = self.open_call(&tx)?;
        if let Some(signer) = open.authorized_signer {
            if signer != call.authorizedSigner {
                return Err(refuse("authorizedSigner differs from the transaction's"));
            }
        }
        let descriptor = ChannelDescriptor {
            payer: sender,
            payee: call.payee,
            operator: Address::ZERO,
            token: call.token,
            salt: call.salt,
            authorized_signer: call.authorizedSigner,
            expiring_nonce_hash: B256::ZERO,
        };
        if descriptor.channel_id(SessionProtocol::V1, self.config().escrow, self.config().chain_id) != open.channel_id {
            return Err(refuse("channelId does not match the open transaction"));
        }
        let deposit = call.deposit;
        let cumulative = open.cumulative_amount.get();
        self.check_open_amount(open.cumulative_amount, deposit)?;
        self.check_signature(open.channel_id, cumulative, &open.signature, descriptor.expected_signer())?;

        let mined = self.session.chain.broadcast(open.transaction.clone()).await.map_err(chain_error)?;
        self.confirm_opened(&mined, open.channel_id, deposit)?;
        let channel = self.on_chain(open.channel_id, true, None).await?;
        if channel.deposit < deposit || channel.payer != sender {
            return Err(refuse("the channel on chain does not match the open transaction"));
        }
        // Listed for settlement and its voucher kept before the store opens the channel.
        let book = &self.session.book;
        book.track(self.store, open.channel_id, None).await.map_err(store_error)?;
        let signature = hex_bytes(&open.signature)?;
        book.record(self.store, open.channel_id, cumulative, signature).await.map_err(store_error)?;
        let state =
            self.store.open(&id, open.cumulative_amount, Amount::new(channel.deposit)).await.map_err(store_error)?;
        Ok(self.outcome(open.channel_id, &state, Some(mined.hash), &channel))
    }

    /// The transaction must hold one `open` on our escrow for our payee and token, and
    /// nothing but an `approve` of the escrow before it.
    fn open_call(&self, tx: &SignedTempoTx) -> Result<IStreamChannelEscrow::openCall, PaymentError> {
        let (escrow, currency) = (self.config().escrow, self.config().currency);
        let calls = &tx.tx().calls;
        let (last, before) = calls.split_last().ok_or_else(|| refuse("open transaction has no calls"))?;
        if last.to != TxKind::Call(escrow) || !last.value.is_zero() {
            return Err(refuse("open transaction does not call the escrow"));
        }
        let open =
            IStreamChannelEscrow::openCall::abi_decode(&last.input).map_err(|_| refuse("not an escrow open call"))?;
        match before {
            [] => {}
            [approve] if approve.to == TxKind::Call(currency) && approve.value.is_zero() => {
                let approve = ITip20::approveCall::abi_decode(&approve.input)
                    .map_err(|_| refuse("unexpected call before open"))?;
                if approve.spender != escrow || approve.amount < U256::from(open.deposit) {
                    return Err(refuse("the approval does not cover the deposit"));
                }
            }
            _ => return Err(refuse("open transaction has unexpected calls")),
        }
        if open.payee != self.config().recipient || open.token != currency {
            return Err(refuse("the channel pays someone else or in another token"));
        }
        if open.deposit == 0 {
            return Err(refuse("the deposit is zero"));
        }
        Ok(open)
    }

    fn confirm_opened(&self, mined: &Mined, channel: B256, deposit: u128) -> Result<(), PaymentError> {
        if !mined.success {
            return Err(refuse("the open transaction reverted"));
        }
        let opened = mined.logs.iter().filter(|log| log.address == self.config().escrow).find_map(|log| {
            IStreamChannelEscrow::ChannelOpened::decode_raw_log(log.topics.iter().copied(), &log.data).ok()
        });
        match opened {
            Some(event) if event.channelId == channel && event.deposit == U256::from(deposit) => Ok(()),
            _ => Err(refuse("no matching ChannelOpened event")),
        }
    }
}
