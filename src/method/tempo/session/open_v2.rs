//! The `open` action on the v2 channel reserve (TIP-1034): one `open` call, the channel
//! bound to its transaction through `expiringNonceHash` (§4.4, §4.6).

use alloy::primitives::{TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent};

use super::hex_bytes;
use super::open::refuse;
use super::{Context, chain_error, store_error};
use crate::amount::Amount;
use crate::error::PaymentError;
use crate::method::Verified;
use crate::method::tempo::chain::TempoChain;
use crate::method::tempo::escrow::{ITip20, ITip20ChannelReserve};
use crate::method::tempo::payload::OpenPayload;
use crate::method::tempo::tx::SignedTempoTx;
use crate::method::tempo::{ChannelDescriptor, SessionProtocol};
use crate::store::ChannelStore;

impl<C: TempoChain, St: ChannelStore> Context<'_, C, St> {
    pub(super) async fn open_v2(&self, open: OpenPayload) -> Result<Verified, PaymentError> {
        let id = super::store_id(open.channel_id);
        let claimed = open.descriptor.ok_or_else(super::no_descriptor)?;
        let tx = SignedTempoTx::decode(&open.transaction).map_err(|e| refuse(format!("open transaction: {e}")))?;
        let sender = tx.sender().map_err(|e| refuse(format!("open transaction sender: {e}")))?;
        let (reserve, currency) = (self.config().escrow, self.config().currency);
        let calls = &tx.tx().calls;
        let (last, before) = calls.split_last().ok_or_else(|| refuse("open transaction has no calls"))?;
        if last.to != TxKind::Call(reserve) || !last.value.is_zero() {
            return Err(refuse("open transaction does not call the channel reserve"));
        }
        let call =
            ITip20ChannelReserve::openCall::abi_decode(&last.input).map_err(|_| refuse("not a reserve open call"))?;
        match before {
            [] => {}
            [approve] if approve.to == TxKind::Call(currency) => {
                let approve = ITip20::approveCall::abi_decode(&approve.input).map_err(|_| refuse("unexpected call"))?;
                if approve.spender != reserve {
                    return Err(refuse("the approval is not for the reserve"));
                }
            }
            _ => return Err(refuse("open transaction has unexpected calls")),
        }
        let deposit = call.deposit.to::<u128>();
        let descriptor = ChannelDescriptor {
            payer: sender,
            payee: call.payee,
            operator: call.operator,
            token: call.token,
            salt: call.salt,
            authorized_signer: call.authorizedSigner,
            expiring_nonce_hash: tx.expiring_nonce_hash(sender),
        };
        if descriptor != claimed {
            return Err(refuse("the descriptor does not match the open transaction"));
        }
        if descriptor.payee != self.config().recipient || descriptor.token != currency || !descriptor.operator.is_zero()
        {
            return Err(refuse("the channel pays someone else, in another token, or through an operator"));
        }
        if descriptor.channel_id(SessionProtocol::V2, reserve, self.config().chain_id) != open.channel_id {
            return Err(refuse("channelId does not match the open transaction"));
        }
        let cumulative = open.cumulative_amount.get();
        self.check_open_amount(open.cumulative_amount, deposit)?;
        self.check_signature(open.channel_id, cumulative, &open.signature, descriptor.expected_signer())?;

        let mined = self.session.chain.broadcast(open.transaction.clone()).await.map_err(chain_error)?;
        let opened = mined.success
            && mined.logs.iter().filter(|log| log.address == reserve).any(|log| {
                ITip20ChannelReserve::ChannelOpened::decode_raw_log(log.topics.iter().copied(), &log.data).is_ok_and(
                    |e| {
                        e.channelId == open.channel_id
                            && e.expiringNonceHash == descriptor.expiring_nonce_hash
                            && U256::from(e.deposit) == U256::from(deposit)
                    },
                )
            });
        if !opened {
            return Err(refuse("no matching ChannelOpened event"));
        }
        // Mined and matching: kept (the reserve needs it on every call), and the channel
        // listed for settlement, before anything is served.
        let book = &self.session.book;
        book.track(self.store, open.channel_id, Some(&descriptor)).await.map_err(store_error)?;
        let channel = self.on_chain(open.channel_id, true, Some(&descriptor)).await?;
        if channel.deposit < deposit {
            return Err(refuse("the channel on chain does not match the open transaction"));
        }
        let signature = hex_bytes(&open.signature)?;
        book.record(self.store, open.channel_id, cumulative, signature).await.map_err(store_error)?;
        let state =
            self.store.open(&id, open.cumulative_amount, Amount::new(channel.deposit)).await.map_err(store_error)?;
        Ok(self.outcome(open.channel_id, &state, Some(mined.hash), &channel))
    }
}
