//! Matching a payment against what the charge asks for: the calls of a signed transaction
//! (before it is broadcast) and the TIP-20 transfer logs of a mined one (§5.4, §5.5).

use std::fmt;

use alloy::primitives::{Address, B256, TxKind, U256};
use alloy::sol_types::{SolCall, SolEvent};

use super::memo::is_challenge_bound;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::tempo::chain::Log;
use crate::method::tempo::escrow::ITip20;
use crate::method::tempo::tx::Call;

/// One TIP-20 transfer: asked for, called, or logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) recipient: Address,
    pub(crate) amount: U256,
    /// Asked for: the memo required (`None`: any or none). Found: the memo carried.
    pub(crate) memo: Option<B256>,
}

/// What a payment must show: these transfers, and, when the request fixes no memo, an
/// attribution memo bound to this `(realm, challenge id)` on one of them.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    pub(crate) transfers: Vec<Transfer>,
    pub(crate) binding: Option<(&'a str, &'a str)>,
}

/// Why a payment does not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Call `index` is not a plain transfer of the currency.
    ForeignCall(usize),
    /// The transaction makes another number of transfers than asked for.
    Count { expected: usize, found: usize },
    /// Nothing pays this transfer; `short` when the recipient is paid less.
    Missing { transfer: Transfer, short: bool },
    /// No matched transfer carries a memo bound to this challenge.
    Unbound,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::ForeignCall(index) => write!(f, "call {index} is not a transfer of the charge's currency"),
            Mismatch::Count { expected, found } => write!(f, "expected {expected} transfers, found {found}"),
            Mismatch::Missing { transfer: t, short: true } => {
                write!(f, "{:#x} is paid less than {}", t.recipient, t.amount)
            }
            Mismatch::Missing { transfer: t, short: false } => match t.memo {
                Some(memo) => write!(f, "no transfer of {} to {:#x} with memo {memo:#x}", t.amount, t.recipient),
                None => write!(f, "no transfer of {} to {:#x}", t.amount, t.recipient),
            },
            Mismatch::Unbound => f.write_str("no transfer carries a memo bound to this challenge"),
        }
    }
}

impl Mismatch {
    /// `payment-insufficient` for a short amount, `verification-failed` otherwise.
    pub(crate) fn into_error(self) -> PaymentError {
        let kind = match self {
            Mismatch::Missing { short: true, .. } => PaymentErrorKind::PaymentInsufficient,
            _ => PaymentErrorKind::VerificationFailed,
        };
        PaymentError::new(kind, format!("payment does not match the charge: {self}"))
    }
}

impl Expected<'_> {
    /// Every call must be a transfer of `currency`, and together they must make exactly the
    /// transfers asked for.
    pub(crate) fn check_calls(&self, calls: &[Call], currency: Address) -> Result<(), Mismatch> {
        let found = calls
            .iter()
            .enumerate()
            .map(|(index, call)| call_transfer(call, currency).ok_or(Mismatch::ForeignCall(index)))
            .collect::<Result<Vec<_>, _>>()?;
        if found.len() != self.transfers.len() {
            return Err(Mismatch::Count { expected: self.transfers.len(), found: found.len() });
        }
        self.assign(found)
    }

    /// The logs of a mined transaction must show the transfers asked for, from `sender`,
    /// in `currency` (other logs, such as the fee's, are ignored).
    pub(crate) fn check_logs(&self, logs: &[Log], currency: Address, sender: Address) -> Result<(), Mismatch> {
        self.assign(log_transfers(logs, currency, sender))
    }

    fn bound(&self, found: &Transfer) -> bool {
        match (self.binding, found.memo) {
            (Some((realm, challenge)), Some(memo)) => is_challenge_bound(&memo, realm, challenge),
            _ => false,
        }
    }

    /// Pairs each transfer asked for with a distinct one found, memo-specific ones first so
    /// a wildcard does not take a transfer they need, and bound memos preferred.
    fn assign(&self, mut found: Vec<Transfer>) -> Result<(), Mismatch> {
        let mut wanted: Vec<&Transfer> = self.transfers.iter().collect();
        wanted.sort_by_key(|t| t.memo.is_none());
        let mut bound = self.binding.is_none();
        for want in wanted {
            let pays = |f: &Transfer| f.recipient == want.recipient && f.amount == want.amount;
            let fits = |f: &Transfer| pays(f) && (want.memo.is_none() || f.memo == want.memo);
            let Some(index) =
                found.iter().position(|f| fits(f) && self.bound(f)).or_else(|| found.iter().position(fits))
            else {
                let short = found.iter().any(|f| f.recipient == want.recipient && f.amount < want.amount);
                return Err(Mismatch::Missing { transfer: want.clone(), short });
            };
            let taken = found.swap_remove(index);
            bound |= self.bound(&taken);
        }
        if bound { Ok(()) } else { Err(Mismatch::Unbound) }
    }
}

/// A call's transfer, if it is a plain `transfer` / `transferWithMemo` of `currency`.
fn call_transfer(call: &Call, currency: Address) -> Option<Transfer> {
    if call.to != TxKind::Call(currency) || !call.value.is_zero() {
        return None;
    }
    if let Ok(t) = ITip20::transferCall::abi_decode(&call.input) {
        return Some(Transfer { recipient: t.to, amount: t.amount, memo: None });
    }
    let t = ITip20::transferWithMemoCall::abi_decode(&call.input).ok()?;
    Some(Transfer { recipient: t.to, amount: t.amount, memo: Some(t.memo) })
}

/// The transfers `sender` made in `currency`, from a receipt's logs. A `transferWithMemo`
/// may log a `Transfer` and a `TransferWithMemo` side by side; the pair counts once.
fn log_transfers(logs: &[Log], currency: Address, sender: Address) -> Vec<Transfer> {
    struct Logged {
        index: usize,
        from: Address,
        transfer: Transfer,
        paired: bool,
    }
    let mut out: Vec<Logged> = Vec::new();
    for (index, log) in logs.iter().enumerate().filter(|(_, log)| log.address == currency) {
        let topics = || log.topics.iter().copied();
        let (from, transfer) = if let Ok(e) = ITip20::Transfer::decode_raw_log(topics(), &log.data) {
            (e.from, Transfer { recipient: e.to, amount: e.amount, memo: None })
        } else if let Ok(e) = ITip20::TransferWithMemo::decode_raw_log(topics(), &log.data) {
            (e.from, Transfer { recipient: e.to, amount: e.amount, memo: Some(e.memo) })
        } else {
            continue;
        };
        if let Some(last) = out.last_mut().filter(|last| {
            !last.paired
                && last.index + 1 == index
                && last.from == from
                && last.transfer.recipient == transfer.recipient
                && last.transfer.amount == transfer.amount
                && last.transfer.memo.is_none() != transfer.memo.is_none()
        }) {
            last.transfer.memo = last.transfer.memo.or(transfer.memo);
            last.paired = true;
            continue;
        }
        out.push(Logged { index, from, transfer, paired: false });
    }
    out.into_iter().filter(|l| l.from == sender).map(|l| l.transfer).collect()
}

#[cfg(test)]
mod tests;
