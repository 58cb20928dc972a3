//! The server-side scripts, one per store step, loaded once per process.
//!
//! A ledger step's script is `lua/ledger.lua` (loading, reclaiming, saving) followed by the
//! step. [`Script`] runs it by hash (`EVALSHA`) and loads it on a `NOSCRIPT` answer.

use std::sync::LazyLock;

use redis::Script;

pub(super) struct Scripts {
    pub(super) open: Script,
    pub(super) create: Script,
    pub(super) load: Script,
    pub(super) accept: Script,
    pub(super) reserve: Script,
    pub(super) extend: Script,
    pub(super) commit: Script,
    pub(super) release: Script,
    pub(super) finalize: Script,
    pub(super) renew: Script,
    pub(super) ask: Script,
    pub(super) withdraw_ask: Script,
    pub(super) credit: Script,
    pub(super) release_with_usage: Script,
    pub(super) keep: Script,
    pub(super) discard: Script,
    pub(super) lock: Script,
    pub(super) unlock: Script,
}

const LEDGER: &str = include_str!("lua/ledger.lua");

fn ledger(step: &str) -> Script {
    Script::new(&[LEDGER, step].concat())
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    open: ledger(include_str!("lua/open.lua")),
    create: ledger(include_str!("lua/create.lua")),
    load: ledger(include_str!("lua/load.lua")),
    accept: ledger(include_str!("lua/accept.lua")),
    reserve: ledger(include_str!("lua/reserve.lua")),
    extend: ledger(include_str!("lua/extend.lua")),
    commit: ledger(include_str!("lua/commit.lua")),
    release: ledger(include_str!("lua/release.lua")),
    finalize: ledger(include_str!("lua/finalize.lua")),
    renew: ledger(include_str!("lua/renew.lua")),
    ask: ledger(include_str!("lua/ask.lua")),
    withdraw_ask: ledger(include_str!("lua/withdraw_ask.lua")),
    credit: ledger(include_str!("lua/credit.lua")),
    release_with_usage: ledger(include_str!("lua/release_with_usage.lua")),
    keep: Script::new(include_str!("lua/keep.lua")),
    discard: Script::new(include_str!("lua/discard.lua")),
    lock: Script::new(include_str!("lua/lock.lua")),
    unlock: Script::new(include_str!("lua/unlock.lua")),
});

#[cfg(test)]
mod tests {
    use super::LEDGER;
    use crate::store::MAX_USAGE_RECORDS;

    #[test]
    fn the_ledger_keeps_as_many_usage_records_as_the_store_promises() {
        assert!(LEDGER.contains(&format!("local KEEP = {MAX_USAGE_RECORDS}\n")));
    }
}
