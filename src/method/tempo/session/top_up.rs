//! The `topUp` action: more deposit without closing (§4.6). Always a management action.

use alloy::primitives::{TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent};

use super::{Context, chain_error, store_error};
use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20};
use crate::method::tempo::payload::TopUpPayload;
use crate::method::tempo::tx::SignedTempoTx;
use crate::store::ChannelStore;

fn refuse(detail: impl Into<std::borrow::Cow<'static, str>>) -> PaymentError {
    PaymentError::new(PaymentErrorKind::VerificationFailed, detail)
}

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn top_up(&self, top_up: TopUpPayload) -> Result<Verified, PaymentError> {
        let id = super::store_id(top_up.channel_id);
        let Some(stored) = self.store.load(&id).await.map_err(store_error)? else {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "unknown channel"));
        };
        if stored.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelFinalized, "channel is closed"));
        }
        let tx = SignedTempoTx::decode(&top_up.transaction).map_err(|e| refuse(format!("topUp transaction: {e}")))?;
        let (escrow, currency) = (self.config().escrow, self.config().currency);
        let calls = &tx.tx().calls;
        let (last, before) = calls.split_last().ok_or_else(|| refuse("topUp transaction has no calls"))?;
        if last.to != TxKind::Call(escrow) {
            return Err(refuse("topUp transaction does not call the escrow"));
        }
        let call =
            IStreamChannelEscrow::topUpCall::abi_decode(&last.input).map_err(|_| refuse("not an escrow topUp call"))?;
        if call.channelId != top_up.channel_id || call.additionalDeposit != U256::from(top_up.additional_deposit.get())
        {
            return Err(refuse("the topUp call does not match the payload"));
        }
        match before {
            [] => {}
            [approve] if approve.to == TxKind::Call(currency) => {
                let approve = ITip20::approveCall::abi_decode(&approve.input).map_err(|_| refuse("unexpected call"))?;
                if approve.spender != escrow {
                    return Err(refuse("the approval is not for the escrow"));
                }
            }
            _ => return Err(refuse("topUp transaction has unexpected calls")),
        }
        // A top-up may rescue a channel whose close is pending, so read without the check.
        let before = self.session.chain.channel(escrow, top_up.channel_id).await.map_err(chain_error)?;
        if !before.exists() || before.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not open on chain"));
        }
        let mined = self.session.chain.broadcast(top_up.transaction.clone()).await.map_err(chain_error)?;
        let topped = mined.success
            && mined.logs.iter().filter(|log| log.address == escrow).any(|log| {
                IStreamChannelEscrow::TopUp::decode_raw_log(log.topics.iter().copied(), &log.data)
                    .is_ok_and(|e| e.channelId == top_up.channel_id)
            });
        if !topped {
            return Err(refuse("the topUp transaction did not top up this channel"));
        }
        let channel = self.on_chain(top_up.channel_id, true).await?;
        let state = self.store.accept(&id, stored.accepted, Amount::new(channel.deposit)).await.map_err(store_error)?;
        Ok(Verified::Respond(self.receipt(top_up.channel_id, &state, Some(mined.hash))))
    }
}
