//! The fake escrow's rules: what a client transaction and a payee transaction do.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolCall, SolEvent};
use tollgate::method::tempo::chain::Log;
use tollgate::method::tempo::tx::SignedTempoTx;
use tollgate::method::tempo::{ChannelDescriptor, SessionProtocol, VoucherSignature, verify_voucher};

use super::abi::{Escrow, Reserve, Token};
use super::{FakeChain, FakeChannel};
use alloy::primitives::TxKind;
use std::collections::HashMap;

impl FakeChain {
    pub(super) fn log(&self, data: alloy::primitives::LogData) -> Log {
        Log { address: self.escrow, topics: data.topics().to_vec(), data: data.data }
    }

    /// Runs a batch on a copy of the state; commits it only when every call succeeds.
    pub(super) fn apply_batch(&self, sender: Address, raw: &SignedTempoTx) -> (bool, Vec<Log>) {
        let mut state = self.lock();
        let mut next =
            Snapshot { balances: state.balances.clone(), channels: state.channels.clone(), logs_out: Vec::new() };
        let mut logs = Vec::new();
        for call in &raw.tx().calls {
            let TxKind::Call(to) = call.to else { return (false, Vec::new()) };
            let result = if to == self.token {
                Token::approveCall::abi_decode(&call.input).map(drop).map_err(|_| "bad token call")
            } else if to == self.escrow {
                self.payer_call(&mut next, sender, &call.input, raw)
            } else {
                Err("unknown target")
            };
            match result {
                Ok(()) => {}
                Err(_) => return (false, Vec::new()),
            }
            logs.append(&mut next.logs_out);
        }
        state.balances = next.balances;
        state.channels = next.channels;
        (true, logs)
    }

    fn payer_call(
        &self,
        s: &mut Snapshot,
        sender: Address,
        input: &[u8],
        raw: &SignedTempoTx,
    ) -> Result<(), &'static str> {
        match self.protocol {
            SessionProtocol::V1 => {
                if let Ok(open) = Escrow::openCall::abi_decode(input) {
                    let descriptor = ChannelDescriptor {
                        payer: sender,
                        payee: open.payee,
                        token: open.token,
                        salt: open.salt,
                        authorized_signer: open.authorizedSigner,
                        ..ChannelDescriptor::default()
                    };
                    let id = descriptor.channel_id(SessionProtocol::V1, self.escrow, self.chain_id);
                    self.open(s, id, descriptor, open.deposit)?;
                    s.logs_out.push(
                        self.log(
                            Escrow::ChannelOpened {
                                channelId: id,
                                payer: sender,
                                payee: open.payee,
                                token: open.token,
                                authorizedSigner: open.authorizedSigner,
                                salt: open.salt,
                                deposit: U256::from(open.deposit),
                            }
                            .encode_log_data(),
                        ),
                    );
                    return Ok(());
                }
                if let Ok(top_up) = Escrow::topUpCall::abi_decode(input) {
                    let add = u128::try_from(top_up.additionalDeposit).map_err(|_| "overflow")?;
                    let (payer, payee, deposit) = self.top_up(s, top_up.channelId, sender, add)?;
                    s.logs_out.push(
                        self.log(
                            Escrow::TopUp {
                                channelId: top_up.channelId,
                                payer,
                                payee,
                                additionalDeposit: U256::from(add),
                                newDeposit: U256::from(deposit),
                            }
                            .encode_log_data(),
                        ),
                    );
                    return Ok(());
                }
                Err("unknown escrow call")
            }
            SessionProtocol::V2 => {
                if let Ok(open) = Reserve::openCall::abi_decode(input) {
                    let descriptor = ChannelDescriptor {
                        payer: sender,
                        payee: open.payee,
                        operator: open.operator,
                        token: open.token,
                        salt: open.salt,
                        authorized_signer: open.authorizedSigner,
                        expiring_nonce_hash: raw.expiring_nonce_hash(sender),
                    };
                    let id = descriptor.channel_id(SessionProtocol::V2, self.escrow, self.chain_id);
                    let deposit = open.deposit.to::<u128>();
                    self.open(s, id, descriptor, deposit)?;
                    s.logs_out.push(
                        self.log(
                            Reserve::ChannelOpened {
                                channelId: id,
                                payer: sender,
                                payee: open.payee,
                                operator: open.operator,
                                token: open.token,
                                authorizedSigner: open.authorizedSigner,
                                salt: open.salt,
                                expiringNonceHash: descriptor.expiring_nonce_hash,
                                deposit: open.deposit,
                            }
                            .encode_log_data(),
                        ),
                    );
                    return Ok(());
                }
                if let Ok(top_up) = Reserve::topUpCall::abi_decode(input) {
                    let id = self.reserve_id(&top_up.descriptor);
                    let add = top_up.additionalDeposit.to::<u128>();
                    let (payer, payee, deposit) = self.top_up(s, id, sender, add)?;
                    s.logs_out.push(
                        self.log(
                            Reserve::TopUp {
                                channelId: id,
                                payer,
                                payee,
                                additionalDeposit: top_up.additionalDeposit,
                                newDeposit: alloy::primitives::Uint::<96, 2>::from(deposit),
                            }
                            .encode_log_data(),
                        ),
                    );
                    return Ok(());
                }
                Err("unknown reserve call")
            }
        }
    }

    fn open(&self, s: &mut Snapshot, id: B256, d: ChannelDescriptor, deposit: u128) -> Result<(), &'static str> {
        if d.payee.is_zero() || deposit == 0 || d.token != self.token {
            return Err("invalid open");
        }
        if s.channels.contains_key(&id) {
            return Err("channel exists");
        }
        s.transfer(d.payer, self.escrow, deposit)?;
        s.channels.insert(id, FakeChannel { descriptor: d, deposit, ..FakeChannel::default() });
        Ok(())
    }

    fn top_up(
        &self,
        s: &mut Snapshot,
        id: B256,
        sender: Address,
        add: u128,
    ) -> Result<(Address, Address, u128), &'static str> {
        let channel = s.channels.get(&id).filter(|c| !c.finalized).ok_or("no channel")?;
        if channel.descriptor.payer != sender || add == 0 {
            return Err("not the payer");
        }
        let (payer, payee) = (channel.descriptor.payer, channel.descriptor.payee);
        let deposit = channel.deposit.checked_add(add).ok_or("overflow")?;
        s.transfer(sender, self.escrow, add)?;
        let channel = s.channels.get_mut(&id).ok_or("no channel")?;
        channel.deposit = deposit;
        channel.close_requested_at = 0;
        Ok((payer, payee, deposit))
    }

    fn reserve_id(&self, d: &Reserve::Descriptor) -> B256 {
        descriptor_of(d).channel_id(SessionProtocol::V2, self.escrow, self.chain_id)
    }

    fn check_voucher(&self, c: &FakeChannel, id: B256, cumulative: u128, signature: &[u8]) -> Result<(), &'static str> {
        let signature = VoucherSignature::from_bytes(signature).map_err(|_| "bad signature")?;
        verify_voucher(&self.domain, id, cumulative, &signature, c.descriptor.expected_signer())
            .map_err(|_| "invalid signature")
    }

    /// A payee transaction: settle or close.
    pub(super) fn payee_call(&self, input: &[u8]) -> Result<Vec<Log>, &'static str> {
        let mut state = self.lock();
        let mut s =
            Snapshot { balances: state.balances.clone(), channels: state.channels.clone(), logs_out: Vec::new() };
        let logs = match self.protocol {
            SessionProtocol::V1 => {
                if let Ok(settle) = Escrow::settleCall::abi_decode(input) {
                    let c = live(&s, settle.channelId)?;
                    if settle.cumulativeAmount <= c.settled {
                        return Err("amount not increasing");
                    }
                    vec![self.pay(&mut s, settle.channelId, settle.cumulativeAmount, &settle.signature)?]
                } else if let Ok(close) = Escrow::closeCall::abi_decode(input) {
                    let c = live(&s, close.channelId)?;
                    let mut logs = Vec::new();
                    if close.cumulativeAmount > c.settled {
                        logs.push(self.pay(&mut s, close.channelId, close.cumulativeAmount, &close.signature)?);
                    }
                    logs.push(self.finalize(&mut s, close.channelId, None)?);
                    logs
                } else {
                    return Err("unknown escrow call");
                }
            }
            SessionProtocol::V2 => {
                if let Ok(settle) = Reserve::settleCall::abi_decode(input) {
                    let id = self.reserve_id(&settle.descriptor);
                    let c = live(&s, id)?;
                    if c.descriptor != descriptor_of(&settle.descriptor) {
                        return Err("descriptor");
                    }
                    let amount = settle.cumulativeAmount.to::<u128>();
                    if amount <= c.settled {
                        return Err("amount not increasing");
                    }
                    vec![self.pay(&mut s, id, amount, &settle.signature)?]
                } else if let Ok(close) = Reserve::closeCall::abi_decode(input) {
                    let id = self.reserve_id(&close.descriptor);
                    let c = live(&s, id)?.clone();
                    let (cumulative, capture) = (close.cumulativeAmount.to::<u128>(), close.captureAmount.to::<u128>());
                    if capture < c.settled || capture > cumulative || capture > c.deposit {
                        return Err("capture amount invalid");
                    }
                    if capture > c.settled {
                        self.check_voucher(&c, id, cumulative, &close.signature)?;
                    }
                    vec![self.finalize(&mut s, id, Some(capture))?]
                } else {
                    return Err("unknown reserve call");
                }
            }
        };
        state.balances = s.balances;
        state.channels = s.channels;
        Ok(logs)
    }

    /// Pays the payee up to `cumulative` against a checked voucher.
    fn pay(&self, s: &mut Snapshot, id: B256, cumulative: u128, signature: &[u8]) -> Result<Log, &'static str> {
        let c = live(s, id)?.clone();
        if cumulative > c.deposit {
            return Err("amount exceeds deposit");
        }
        self.check_voucher(&c, id, cumulative, signature)?;
        let delta = cumulative - c.settled;
        s.transfer(self.escrow, c.descriptor.payee, delta)?;
        s.channels.get_mut(&id).ok_or("no channel")?.settled = cumulative;
        let (payer, payee) = (c.descriptor.payer, c.descriptor.payee);
        Ok(match self.protocol {
            SessionProtocol::V1 => self.log(
                Escrow::Settled {
                    channelId: id,
                    payer,
                    payee,
                    cumulativeAmount: U256::from(cumulative),
                    deltaPaid: U256::from(delta),
                    newSettled: U256::from(cumulative),
                }
                .encode_log_data(),
            ),
            SessionProtocol::V2 => self.log(
                Reserve::Settled {
                    channelId: id,
                    payer,
                    payee,
                    cumulativeAmount: u96(cumulative),
                    deltaPaid: u96(delta),
                    newSettled: u96(cumulative),
                }
                .encode_log_data(),
            ),
        })
    }

    /// Closes: v1 at what is settled; v2 at `capture` (paid to the payee first).
    fn finalize(&self, s: &mut Snapshot, id: B256, capture: Option<u128>) -> Result<Log, &'static str> {
        let c = live(s, id)?.clone();
        let settled = capture.unwrap_or(c.settled);
        let to_payee = settled - c.settled;
        if to_payee > 0 {
            s.transfer(self.escrow, c.descriptor.payee, to_payee)?;
        }
        let refund = c.deposit - settled;
        if refund > 0 {
            s.transfer(self.escrow, c.descriptor.payer, refund)?;
        }
        let channel = s.channels.get_mut(&id).ok_or("no channel")?;
        channel.settled = settled;
        channel.finalized = true;
        channel.close_requested_at = 0;
        let (payer, payee) = (c.descriptor.payer, c.descriptor.payee);
        Ok(match self.protocol {
            SessionProtocol::V1 => self.log(
                Escrow::ChannelClosed {
                    channelId: id,
                    payer,
                    payee,
                    settledToPayee: U256::from(settled),
                    refundedToPayer: U256::from(refund),
                }
                .encode_log_data(),
            ),
            SessionProtocol::V2 => self.log(
                Reserve::ChannelClosed {
                    channelId: id,
                    payer,
                    payee,
                    settledToPayee: u96(settled),
                    refundedToPayer: u96(refund),
                }
                .encode_log_data(),
            ),
        })
    }
}

/// Balances and channels being changed by one transaction.
pub(super) struct Snapshot {
    balances: HashMap<Address, u128>,
    channels: HashMap<B256, FakeChannel>,
    /// The logs of the call being applied.
    logs_out: Vec<Log>,
}

impl Snapshot {
    fn transfer(&mut self, from: Address, to: Address, amount: u128) -> Result<(), &'static str> {
        let have = self.balances.get(&from).copied().unwrap_or(0);
        let left = have.checked_sub(amount).ok_or("insufficient balance")?;
        self.balances.insert(from, left);
        *self.balances.entry(to).or_default() += amount;
        Ok(())
    }
}

fn live(s: &Snapshot, id: B256) -> Result<&FakeChannel, &'static str> {
    s.channels.get(&id).filter(|c| !c.finalized).ok_or("channel not live")
}

fn descriptor_of(d: &Reserve::Descriptor) -> ChannelDescriptor {
    ChannelDescriptor {
        payer: d.payer,
        payee: d.payee,
        operator: d.operator,
        token: d.token,
        salt: d.salt,
        authorized_signer: d.authorizedSigner,
        expiring_nonce_hash: d.expiringNonceHash,
    }
}

pub(super) fn u96(amount: u128) -> alloy::primitives::Uint<96, 2> {
    alloy::primitives::Uint::<96, 2>::saturating_from(amount)
}
