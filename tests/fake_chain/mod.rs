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

use alloy::primitives::{Address, B256, Bytes, keccak256};
use tollgate::method::tempo::chain::{ChainError, ChainErrorKind, Mined, OnChainChannel, ReserveState};
use tollgate::method::tempo::tx::SignedTempoTx;
use tollgate::method::tempo::{ChannelDescriptor, SessionProtocol, TempoChain, VoucherDomain};

mod abi;
mod model;

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

    /// Every channel ever opened, in no particular order.
    pub fn channels(&self) -> Vec<(B256, FakeChannel)> {
        self.lock().channels.iter().map(|(id, c)| (*id, c.clone())).collect()
    }

    /// The sum of every balance: constant, since tokens only move (a conservation check
    /// for property tests).
    pub fn total(&self) -> u128 {
        self.lock().balances.values().sum()
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
