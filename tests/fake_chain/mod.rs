//! A fake [`TempoChain`] for tests: an in-memory model of the v1 escrow (and the v2 channel
//! reserve) with token balances, call counters and fault injection.
//!
//! - [`FakeChain::broadcast`] decodes the client's signed Tempo transaction with the crate's
//!   codec and applies its calls in order (`approve`, `open`, `topUp`), atomically: a call
//!   that reverts reverts the whole batch (`success: false`, no logs, nothing applied).
//! - [`FakeChain::send`] (the payee's transactions) applies `settle` and `close` with the
//!   escrow's rules: the voucher signature is checked with the crate's `verify_voucher`,
//!   `cumulative − settled` goes to the payee, the rest of the deposit back to the payer on
//!   close; a bad voucher or a capture above the voucher reverts.
//! - [`FakeChain::request_close`] starts a forced close as the payer would.
//! - [`FakeChain::fault`] fails or delays the n-th call of one kind, before or after applying it
//!   (an RPC that dies after the transaction was broadcast).
//!
//! Everything is behind one mutex, so a test sees a consistent view between calls.

#![allow(dead_code, clippy::too_many_arguments)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy::sol_types::{SolCall, SolEvent};
use tollgate::method::tempo::chain::{ChainError, ChainErrorKind, Log, Mined, OnChainChannel, ReserveState};
use tollgate::method::tempo::tx::SignedTempoTx;
use tollgate::method::tempo::{
    ChannelDescriptor, SessionProtocol, TempoChain, VoucherDomain, VoucherSignature, verify_voucher,
};

alloy::sol! {
    interface Escrow {
        function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function topUp(bytes32 channelId, uint256 additionalDeposit) external;
        function close(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address token, address authorizedSigner, bytes32 salt, uint256 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 cumulativeAmount, uint256 deltaPaid, uint256 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 additionalDeposit, uint256 newDeposit);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 settledToPayee, uint256 refundedToPayer);
    }

    interface Reserve {
        struct Descriptor {
            address payer;
            address payee;
            address operator;
            address token;
            bytes32 salt;
            address authorizedSigner;
            bytes32 expiringNonceHash;
        }

        function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(Descriptor descriptor, uint96 cumulativeAmount, bytes signature) external;
        function topUp(Descriptor descriptor, uint96 additionalDeposit) external;
        function close(Descriptor descriptor, uint96 cumulativeAmount, uint96 captureAmount, bytes signature) external;

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address operator, address token, address authorizedSigner, bytes32 salt, bytes32 expiringNonceHash, uint96 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 cumulativeAmount, uint96 deltaPaid, uint96 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 additionalDeposit, uint96 newDeposit);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 settledToPayee, uint96 refundedToPayer);
    }

    interface Token {
        function approve(address spender, uint256 amount) external returns (bool);
    }
}

/// The kinds of [`TempoChain`] calls, for counters and faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `channel` (v1 read).
    Channel,
    /// `reserve_state` (v2 read).
    ReserveState,
    /// `broadcast` (a client transaction).
    Broadcast,
    /// `send` (a payee transaction).
    Send,
    /// `receipt`.
    Receipt,
}

/// What goes wrong with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails as unreachable before doing anything.
    Unavailable,
    /// Refused by the node before doing anything.
    Rejected,
    /// Applies the call (the transaction is mined), then fails as unreachable: the caller
    /// cannot tell it happened.
    AfterApply,
    /// Waits this long (tokio time), then answers normally.
    Delay(Duration),
}

/// One channel as the fake escrow holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeChannel {
    /// The descriptor it was opened with (v1: operator and nonce hash zero).
    pub descriptor: ChannelDescriptor,
    /// Total deposited.
    pub deposit: u128,
    /// Paid to the payee so far.
    pub settled: u128,
    /// Closed and paid out.
    pub finalized: bool,
    /// When a forced close was requested (0: never).
    pub close_requested_at: u64,
}

#[derive(Debug)]
struct State {
    balances: HashMap<Address, u128>,
    channels: HashMap<B256, FakeChannel>,
    receipts: HashMap<B256, Mined>,
    calls: HashMap<Kind, usize>,
    faults: HashMap<(Kind, usize), Fault>,
    sends: usize,
    clock: u64,
}

/// The fake chain. Clones share state.
#[derive(Clone, Debug)]
pub struct FakeChain {
    protocol: SessionProtocol,
    chain_id: u64,
    escrow: Address,
    token: Address,
    payee: Address,
    domain: VoucherDomain,
    state: Arc<Mutex<State>>,
}

impl FakeChain {
    /// A chain holding one escrow of `protocol` at `escrow`, paying in `token`, whose payee
    /// transactions (`send`) come from `payee`.
    pub fn new(protocol: SessionProtocol, chain_id: u64, escrow: Address, token: Address, payee: Address) -> Self {
        FakeChain {
            protocol,
            chain_id,
            escrow,
            token,
            payee,
            domain: VoucherDomain::new(protocol, chain_id, escrow),
            state: Arc::new(Mutex::new(State {
                balances: HashMap::new(),
                channels: HashMap::new(),
                receipts: HashMap::new(),
                calls: HashMap::new(),
                faults: HashMap::new(),
                sends: 0,
                clock: 1_000,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Credits `owner` with `amount` of the token.
    pub fn fund(&self, owner: Address, amount: u128) {
        *self.lock().balances.entry(owner).or_default() += amount;
    }

    /// `owner`'s token balance (the escrow's own address holds the deposits).
    pub fn balance(&self, owner: Address) -> u128 {
        self.lock().balances.get(&owner).copied().unwrap_or(0)
    }

    /// The channel, if it was ever opened.
    pub fn channel_state(&self, id: B256) -> Option<FakeChannel> {
        self.lock().channels.get(&id).cloned()
    }

    /// How many calls of `kind` were made (faulty ones included).
    pub fn calls(&self, kind: Kind) -> usize {
        self.lock().calls.get(&kind).copied().unwrap_or(0)
    }

    /// Makes the `n`-th call (1-based, counted from the chain's creation) of `kind` go wrong.
    pub fn fault(&self, kind: Kind, n: usize, fault: Fault) {
        self.lock().faults.insert((kind, n), fault);
    }

    /// Makes the next call of `kind` go wrong.
    pub fn fault_next(&self, kind: Kind, fault: Fault) {
        let n = self.calls(kind) + 1;
        self.fault(kind, n, fault);
    }

    /// The payer asks for a forced close (as `requestClose`); a later top-up cancels it.
    pub fn request_close(&self, id: B256) {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        if let Some(channel) = state.channels.get_mut(&id) {
            if !channel.finalized && channel.close_requested_at == 0 {
                channel.close_requested_at = clock;
            }
        }
    }

    /// The escrow's address.
    pub fn escrow(&self) -> Address {
        self.escrow
    }

    /// Counts the call and returns its fault, if one was planted.
    async fn enter(&self, kind: Kind) -> Option<Fault> {
        let fault = {
            let mut state = self.lock();
            let n = state.calls.entry(kind).or_default();
            *n += 1;
            let n = *n;
            state.faults.remove(&(kind, n))
        };
        if let Some(Fault::Delay(d)) = fault {
            tokio::time::sleep(d).await;
            return None;
        }
        fault
    }

    fn record(&self, mined: Mined) -> Mined {
        self.lock().receipts.insert(mined.hash, mined.clone());
        mined
    }

    fn log(&self, data: alloy::primitives::LogData) -> Log {
        Log { address: self.escrow, topics: data.topics().to_vec(), data: data.data }
    }

    /// Runs a batch on a copy of the state; commits it only when every call succeeds.
    fn apply_batch(&self, sender: Address, raw: &SignedTempoTx) -> (bool, Vec<Log>) {
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
    fn payee_call(&self, input: &[u8]) -> Result<Vec<Log>, &'static str> {
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
struct Snapshot {
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

fn u96(amount: u128) -> alloy::primitives::Uint<96, 2> {
    alloy::primitives::Uint::<96, 2>::saturating_from(amount)
}

fn unavailable(why: &'static str) -> ChainError {
    ChainError::new(ChainErrorKind::Unavailable, why)
}

fn rejected(why: &'static str) -> ChainError {
    ChainError::new(ChainErrorKind::Rejected, why)
}

impl TempoChain for FakeChain {
    async fn channel(&self, escrow: Address, id: B256) -> Result<OnChainChannel, ChainError> {
        match self.enter(Kind::Channel).await {
            Some(Fault::Rejected) => return Err(rejected("fault")),
            Some(_) => return Err(unavailable("fault")),
            None => {}
        }
        if escrow != self.escrow || self.protocol != SessionProtocol::V1 {
            return Ok(OnChainChannel::default());
        }
        Ok(self.channel_state(id).map_or_else(OnChainChannel::default, |c| OnChainChannel {
            finalized: c.finalized,
            close_requested_at: c.close_requested_at,
            payer: c.descriptor.payer,
            payee: c.descriptor.payee,
            token: c.descriptor.token,
            authorized_signer: c.descriptor.authorized_signer,
            deposit: c.deposit,
            settled: c.settled,
        }))
    }

    async fn broadcast(&self, raw: Bytes) -> Result<Mined, ChainError> {
        let fault = self.enter(Kind::Broadcast).await;
        match fault {
            Some(Fault::Rejected) => return Err(rejected("fault")),
            Some(Fault::Unavailable) => return Err(unavailable("fault")),
            _ => {}
        }
        let tx = SignedTempoTx::decode(&raw).map_err(|_| rejected("undecodable transaction"))?;
        let sender = tx.sender().map_err(|_| rejected("no sender"))?;
        let hash = tx.tx_hash();
        if self.lock().receipts.contains_key(&hash) {
            return Err(rejected("already known"));
        }
        let (success, logs) = self.apply_batch(sender, &tx);
        let mined = self.record(Mined { hash, from: sender, success, logs });
        match fault {
            Some(Fault::AfterApply) => Err(unavailable("fault after broadcast")),
            _ => Ok(mined),
        }
    }

    async fn receipt(&self, hash: B256) -> Result<Option<Mined>, ChainError> {
        match self.enter(Kind::Receipt).await {
            Some(Fault::Rejected) => return Err(rejected("fault")),
            Some(_) => return Err(unavailable("fault")),
            None => {}
        }
        Ok(self.lock().receipts.get(&hash).cloned())
    }

    async fn send(&self, to: Address, input: Bytes) -> Result<Mined, ChainError> {
        let fault = self.enter(Kind::Send).await;
        match fault {
            Some(Fault::Rejected) => return Err(rejected("fault")),
            Some(Fault::Unavailable) => return Err(unavailable("fault")),
            _ => {}
        }
        let n = {
            let mut state = self.lock();
            state.sends += 1;
            state.sends
        };
        let hash = keccak256(format!("payee-tx-{n}"));
        let (success, logs) = if to == self.escrow {
            match self.payee_call(&input) {
                Ok(logs) => (true, logs),
                Err(_) => (false, Vec::new()),
            }
        } else {
            (false, Vec::new())
        };
        let mined = self.record(Mined { hash, from: self.payee, success, logs });
        match fault {
            Some(Fault::AfterApply) => Err(unavailable("fault after send")),
            _ => Ok(mined),
        }
    }

    async fn reserve_state(&self, reserve: Address, id: B256) -> Result<ReserveState, ChainError> {
        match self.enter(Kind::ReserveState).await {
            Some(Fault::Rejected) => return Err(rejected("fault")),
            Some(_) => return Err(unavailable("fault")),
            None => {}
        }
        if reserve != self.escrow || self.protocol != SessionProtocol::V2 {
            return Ok(ReserveState::default());
        }
        // The reserve deletes closed channels.
        Ok(self.channel_state(id).filter(|c| !c.finalized).map_or_else(ReserveState::default, |c| ReserveState {
            settled: c.settled,
            deposit: c.deposit,
            close_requested_at: c.close_requested_at,
        }))
    }
}
