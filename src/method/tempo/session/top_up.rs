//! The `topUp` action: more deposit without closing (§4.6). Always a management action.

use alloy::primitives::{TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent};

use super::{Context, chain_error, store_error};
use crate::amount::Amount;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20, ITip20ChannelReserve};
use crate::method::tempo::payload::TopUpPayload;
use crate::method::tempo::tx::SignedTempoTx;
use crate::method::tempo::{ChannelDescriptor, SessionProtocol};
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
        let additional = U256::from(top_up.additional_deposit.get());
        // v2: the call names the channel by its descriptor, which must hash to the id; it
        // is then as good as one from a signed voucher (this instance may not know it yet).
        let (matches, call_descriptor) = match self.config().protocol {
            SessionProtocol::V1 => {
                let matches = IStreamChannelEscrow::topUpCall::abi_decode(&last.input)
                    .is_ok_and(|call| call.channelId == top_up.channel_id && call.additionalDeposit == additional);
                (matches, None)
            }
            SessionProtocol::V2 => match ITip20ChannelReserve::topUpCall::abi_decode(&last.input) {
                Ok(call) => {
                    let d = call.descriptor;
                    let descriptor = ChannelDescriptor {
                        payer: d.payer,
                        payee: d.payee,
                        operator: d.operator,
                        token: d.token,
                        salt: d.salt,
                        authorized_signer: d.authorizedSigner,
                        expiring_nonce_hash: d.expiringNonceHash,
                    };
                    let config = self.config();
                    let matches = descriptor.channel_id(config.protocol, config.escrow, config.chain_id)
                        == top_up.channel_id
                        && U256::from(call.additionalDeposit) == additional;
                    (matches, Some(descriptor))
                }
                Err(_) => (false, None),
            },
        };
        if !matches {
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
        let descriptor = match (call_descriptor, self.config().protocol) {
            (Some(descriptor), _) => Some(descriptor),
            (None, SessionProtocol::V2) => self.stored_descriptor(top_up.channel_id).await?,
            (None, SessionProtocol::V1) => None,
        };
        let before = self
            .session
            .cache
            .refresh(&self.session.chain, self.config(), top_up.channel_id, descriptor.as_ref())
            .await
            .map_err(chain_error)?;
        if !before.exists() || before.finalized {
            return Err(PaymentError::new(PaymentErrorKind::ChannelNotFound, "channel not open on chain"));
        }
        let topped_up = Amount::new(before.deposit).saturating_add(top_up.additional_deposit);
        self.check_storable(topped_up)?;
        let mined = self.session.chain.broadcast(top_up.transaction.clone()).await.map_err(chain_error)?;
        let topped = mined.success
            && mined.logs.iter().filter(|log| log.address == escrow).any(|log| {
                let (topics, data) = (log.topics.iter().copied(), &log.data);
                IStreamChannelEscrow::TopUp::decode_raw_log(topics.clone(), data)
                    .map(|e| e.channelId)
                    .or_else(|_| ITip20ChannelReserve::TopUp::decode_raw_log(topics, data).map(|e| e.channelId))
                    .is_ok_and(|id| id == top_up.channel_id)
            });
        if !topped {
            return Err(refuse("the topUp transaction did not top up this channel"));
        }
        if let Some(descriptor) = &call_descriptor {
            let book = &self.session.book;
            book.remember(self.store, top_up.channel_id, descriptor).await.map_err(store_error)?;
        }
        let channel = self.on_chain(top_up.channel_id, true, descriptor.as_ref()).await?;
        let state = self.store.accept(&id, stored.accepted, Amount::new(channel.deposit)).await.map_err(store_error)?;
        Ok(Verified::Respond(self.receipt(top_up.channel_id, &state, Some(mined.hash))))
    }
}
