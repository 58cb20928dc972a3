//! Property tests of the Tempo session method against a model of the money (issue 7).
//!
//! Random interleavings of open / voucher / top-up / stream / read / disconnect / close /
//! settle, with several streams and two payers (one of whom may try the other's channel),
//! run on the fake chain and the memory store with the crate's paying `SessionClient`. Two
//! server instances share the store and the chain behind a round-robin balancer (issue 10):
//! every request and every settlement goes to the next one. After every step, and after a
//! final honest close of every channel:
//!
//! - **no panic** from a request, a spawned release or `TempoSession::settle`;
//! - **chain**: tokens are conserved, the payee holds exactly what was settled and the
//!   escrow what live channels hold;
//! - **store**: accepted ≤ deposit, spent + reserved ≤ accepted, nothing reserved on a
//!   channel without a live stream, and the store's deposit is the chain's;
//! - **signed**: the payee is never paid more than the highest voucher the payer signed;
//! - **delivered**: the payer is never charged (in the store or on chain) for units its
//!   own streams did not receive;
//! - **captured**: once closed, the payee holds at least what was delivered less the
//!   documented bound, [`AHEAD`]: the v1 escrow pays out a signed voucher exactly, the
//!   payee uses the highest one at or below delivery, and no voucher is accepted more than
//!   `max_voucher_ahead` (default two windows and four units) beyond `spent + reserved`.
//!   Payers that only answer need-vouchers lose the payee at most [`ONE_WINDOW`].
//!
//! Each property is its own test over the same generator, so each shrinks to its own
//! minimal case. Tests marked `KNOWN FAILING` are ignored; run them with
//! `cargo nextest run --all-features --test session_model --run-ignored all`.

#![cfg(feature = "client")]

mod fake_chain;
mod session_model_world;

use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use session_model_world::{FUNDS, PAYERS, PRICE, WINDOW, World, catching};
use tollgate::store::ChannelStore;

/// How far below what was delivered a v1 close may capture (`SessionConfig::
/// max_voucher_ahead`'s default: two windows and four units).
const AHEAD: u128 = (2 * WINDOW as u128 + 4) * PRICE;
/// What a payer that only answers need-vouchers leaves uncaptured at most: one window and
/// the event that triggered the ask.
const ONE_WINDOW: u128 = (WINDOW as u128 + 1) * PRICE;

#[derive(Clone, Debug)]
enum Action {
    Open {
        payer: usize,
        deposit: u64,
    },
    Voucher {
        payer: usize,
        add: u64,
    },
    TopUp {
        payer: usize,
        add: u64,
    },
    Stream {
        payer: usize,
        tokens: usize,
    },
    Read {
        stream: usize,
        frames: usize,
    },
    Finish {
        stream: usize,
    },
    Disconnect {
        stream: usize,
    },
    Close {
        payer: usize,
        at_highest: bool,
        reading: bool,
    },
    Settle {
        payer: usize,
    },
    Hijack {
        attacker: usize,
        tokens: usize,
    },
    /// The next payee transaction never reaches the chain.
    FailNextSend,
    /// The next payee transaction is mined but its answer is lost.
    LoseNextSendAnswer,
}

/// Which kinds of action a test generates.
#[derive(Clone, Copy)]
struct Mix {
    /// Vouchers the client signs on its own, of any size (beyond answering need-vouchers).
    free_vouchers: bool,
    /// Closes before the end, while the client reads its live streams.
    early_closes: bool,
    /// Closes before the end while the client leaves its live streams unread.
    stalled_closes: bool,
    /// Another payer streaming on a channel it does not own.
    hijacks: bool,
    /// A payee transaction that fails to reach the chain.
    chain_faults: bool,
}

const EVERYTHING: Mix =
    Mix { free_vouchers: true, early_closes: true, stalled_closes: true, hijacks: true, chain_faults: true };
const HONEST: Mix =
    Mix { free_vouchers: false, early_closes: false, stalled_closes: false, hijacks: false, chain_faults: false };

fn actions(mix: Mix) -> impl Strategy<Value = Vec<Action>> {
    let payer = || 0..PAYERS;
    let mut all: Vec<(u32, BoxedStrategy<Action>)> = vec![
        (2, (payer(), 3u64..40).prop_map(|(payer, deposit)| Action::Open { payer, deposit }).boxed()),
        (1, (payer(), 1u64..20).prop_map(|(payer, add)| Action::TopUp { payer, add }).boxed()),
        (5, (payer(), 1usize..32).prop_map(|(payer, tokens)| Action::Stream { payer, tokens }).boxed()),
        (3, (0usize..3, 1usize..24).prop_map(|(stream, frames)| Action::Read { stream, frames }).boxed()),
        (2, (0usize..3).prop_map(|stream| Action::Finish { stream }).boxed()),
        (1, (0usize..3).prop_map(|stream| Action::Disconnect { stream }).boxed()),
        (1, payer().prop_map(|payer| Action::Settle { payer }).boxed()),
    ];
    if mix.free_vouchers {
        all.push((2, (payer(), 1u64..30).prop_map(|(payer, add)| Action::Voucher { payer, add }).boxed()));
    }
    if mix.early_closes || mix.stalled_closes {
        // Reading closes only, stalled closes only, or both.
        let reading = match (mix.early_closes, mix.stalled_closes) {
            (true, true) => any::<bool>().boxed(),
            (reading, _) => Just(reading).boxed(),
        };
        let close = (payer(), any::<bool>(), reading).prop_map(|(payer, at_highest, reading)| Action::Close {
            payer,
            at_highest,
            reading,
        });
        all.push((2, close.boxed()));
    }
    if mix.hijacks {
        let hijack = (payer(), 1usize..10).prop_map(|(attacker, tokens)| Action::Hijack { attacker, tokens });
        all.push((1, hijack.boxed()));
    }
    if mix.chain_faults {
        all.push((1, Just(Action::FailNextSend).boxed()));
        all.push((1, Just(Action::LoseNextSendAnswer).boxed()));
    }
    proptest::collection::vec(prop::strategy::Union::new_weighted(all), 1..16)
}

/// What went wrong, by property.
#[derive(Default, Debug)]
struct Found {
    panic: Vec<String>,
    store: Vec<String>,
    signed: Vec<String>,
    delivered: Vec<String>,
    /// Tokens created or lost on chain.
    chain: Vec<String>,
    /// Beyond [`AHEAD`].
    captured: Vec<String>,
    /// Beyond [`ONE_WINDOW`].
    captured_window: Vec<String>,
}

async fn step(w: &mut World, action: &Action) {
    let n = |stream: usize| stream % w.live.len().max(1);
    match *action {
        Action::Open { payer, deposit } => w.open(payer, u128::from(deposit) * PRICE).await,
        Action::Voucher { payer, add } => {
            if let Some(c) = w.latest(payer) {
                w.voucher(c, u128::from(add) * PRICE).await;
            }
        }
        Action::TopUp { payer, add } => {
            if let Some(c) = w.latest(payer) {
                w.top_up(c, u128::from(add) * PRICE).await;
            }
        }
        Action::Stream { payer, tokens } => {
            if let Some(c) = w.latest(payer) {
                w.start(c, tokens).await;
            }
        }
        Action::Read { stream, frames } => w.read(n(stream), Some(frames)).await,
        Action::Finish { stream } => w.read(n(stream), None).await,
        Action::Disconnect { stream } => w.end(n(stream)),
        Action::Close { payer, at_highest, reading } => {
            if let Some(c) = w.latest(payer) {
                // An honest client closes at what its last receipt said was spent; mppx
                // closes at its highest voucher.
                let cumulative = if at_highest { w.chans[c].client.cumulative() } else { w.spent(c).await };
                w.close_reading(c, cumulative, reading).await;
            }
        }
        Action::Settle { payer } => {
            if let Some(c) = w.latest(payer) {
                let _ = w.method().settle(&w.store, w.chans[c].id, 0).await;
            }
        }
        Action::Hijack { attacker, tokens } => {
            if let Some(victim) = (0..PAYERS).filter(|&p| p != attacker).find_map(|p| w.latest(p)) {
                w.hijack(attacker, victim, tokens).await;
                let last = w.live.len().saturating_sub(1);
                w.read(last, None).await;
            }
        }
        Action::FailNextSend => w.chain.fault_next(fake_chain::Kind::Send, fake_chain::Fault::Unavailable),
        Action::LoseNextSendAnswer => w.chain.fault_next(fake_chain::Kind::Send, fake_chain::Fault::AfterApply),
    }
}

fn store_id(id: alloy::primitives::B256) -> tollgate::store::ChannelId {
    tollgate::store::ChannelId::new(format!("{id:#x}"))
}

/// Checks every channel; `at` names the step for the messages.
async fn check(w: &World, at: &str, found: &mut Found) {
    w.quiesce().await;
    let (channels, escrow) = (w.chain.channels(), w.chain.balance(w.chain.escrow()));
    let settled: u128 = channels.iter().map(|(_, c)| c.settled).sum();
    let held: u128 = channels.iter().filter(|(_, c)| !c.finalized).map(|(_, c)| c.deposit - c.settled).sum();
    if w.chain.total() != FUNDS * PAYERS as u128 || w.chain.balance(w.payee) != settled || escrow != held {
        let payee = w.chain.balance(w.payee);
        found.chain.push(format!("{at}: payee {payee} ≠ settled {settled}, or escrow {escrow} ≠ held {held}"));
    }
    for ch in &w.chans {
        let on_chain = w.chain.channel_state(ch.id).unwrap_or_default();
        let name = format!("{at}, channel {} of payer {}", &format!("{:#x}", ch.id)[..8], ch.owner);
        if on_chain.settled > ch.signed {
            found.signed.push(format!("{name}: paid {} on chain, highest voucher {}", on_chain.settled, ch.signed));
        }
        if on_chain.settled > ch.delivered {
            let m = format!("{name}: paid {} on chain, delivered {} to the payer", on_chain.settled, ch.delivered);
            found.delivered.push(m);
        }
        let Ok(Some(s)) = w.store.load(&store_id(ch.id)).await else { continue };
        if s.spent.get() > ch.delivered {
            let m = format!("{name}: spent {} in the store, delivered {} to the payer", s.spent, ch.delivered);
            found.delivered.push(m);
        }
        if s.accepted > s.deposit || s.deposit.get() > on_chain.deposit {
            let m = format!("{name}: accepted {} / deposit {} / on chain {}", s.accepted, s.deposit, on_chain.deposit);
            found.store.push(m);
        }
        if s.spent.checked_add(s.reserved).is_none_or(|used| used > s.accepted) {
            found.store.push(format!("{name}: spent {} + reserved {} > accepted {}", s.spent, s.reserved, s.accepted));
        }
        if ch.live == 0 && !s.reserved.is_zero() {
            found.store.push(format!("{name}: {} reserved with no live stream", s.reserved));
        }
    }
}

/// Runs `actions`, then finishes every stream and closes every channel: at the payer's
/// highest voucher (as mppx does), else at what the last receipt said was spent, retried
/// once (a close whose chain call failed).
async fn run(actions: &[Action]) -> Found {
    let mut found = Found::default();
    let mut w = World::new();
    for (i, action) in actions.iter().enumerate() {
        let at = format!("after step {i} {action:?}");
        found.panic.extend(catching(step(&mut w, action)).await.into_iter().map(|p| format!("{at}: {p}")));
        check(&w, &at, &mut found).await;
    }
    let mut panics = Vec::new();
    while !w.live.is_empty() {
        let before = w.live.len();
        panics.extend(catching(w.read(0, None)).await);
        if w.live.len() == before {
            w.end(0);
        }
    }
    for c in 0..w.chans.len() {
        panics.extend(
            catching(async {
                if w.chans[c].closed || w.close(c, w.chans[c].client.cumulative()).await {
                    return;
                }
                if !w.close(c, w.spent(c).await).await {
                    w.close(c, w.spent(c).await).await;
                }
            })
            .await,
        );
    }
    found.panic.extend(panics.into_iter().map(|p| format!("at the final close: {p}")));
    check(&w, "after the final close", &mut found).await;
    for ch in &w.chans {
        let captured = w.chain.channel_state(ch.id).unwrap_or_default().settled;
        let (id, closed) = (&format!("{:#x}", ch.id)[..8], ch.closed);
        let m = format!(
            "channel {id} of payer {}: delivered {}, captured {captured} (closed: {closed})",
            ch.owner, ch.delivered
        );
        if captured + AHEAD < ch.delivered {
            found.captured.push(m.clone());
        }
        if captured + ONE_WINDOW < ch.delivered {
            found.captured_window.push(m);
        }
    }
    // A stream that never ends holds its reservation forever.
    found.store.extend(w.hangs.iter().cloned());
    found
}

/// Runs the generator against one property; panics with the minimal failing case. The
/// seed is fixed (so a failure reproduces) unless `PROPTEST_RNG_SEED` says otherwise;
/// `PROPTEST_CASES` raises the case count.
fn property(mix: Mix, cases: u32, pick: fn(&Found) -> &Vec<String>) {
    let mut config = Config { max_shrink_iters: 1_000, failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5e55_1011);
    }
    let mut runner = TestRunner::new(config);
    let result = runner.run(&actions(mix), |actions| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let found = runtime.block_on(run(&actions));
        let wrong = pick(&found);
        if wrong.is_empty() {
            return Ok(());
        }
        let mut message = String::new();
        for line in wrong.iter().take(6) {
            let _ = writeln!(message, "  {line}");
        }
        Err(TestCaseError::fail(message))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

const CASES: u32 = 64;

#[test]
fn no_panic_from_any_interleaving() {
    property(EVERYTHING, CASES, |f| &f.panic);
}

#[test]
fn store_invariants_hold_after_every_step() {
    property(EVERYTHING, CASES, |f| &f.store);
}

#[test]
fn tokens_are_conserved_on_chain() {
    property(EVERYTHING, CASES, |f| &f.chain);
}

#[test]
fn payee_is_never_paid_more_than_the_payer_signed() {
    property(EVERYTHING, CASES, |f| &f.signed);
}

#[test]
fn payer_is_never_charged_for_undelivered_units() {
    property(EVERYTHING, CASES, |f| &f.delivered);
}

/// Closes mid-stream that lose more than [`AHEAD`] need a long stalled stream, which this
/// generator rarely builds: [`close_while_its_stream_is_stalled_captures_what_was_delivered`]
/// pins that case.
#[test]
fn payee_captures_what_was_delivered_within_the_documented_bound() {
    property(EVERYTHING, CASES, |f| &f.captured);
}

#[test]
fn payee_captures_within_the_documented_bound_when_closes_come_last() {
    property(Mix { early_closes: false, stalled_closes: false, ..EVERYTHING }, CASES, |f| &f.captured);
}

#[test]
fn payee_captures_within_one_window_from_payers_that_answer_need_vouchers() {
    property(HONEST, CASES, |f| &f.captured_window);
}

#[test]
fn payee_captures_within_one_window_when_payers_close_while_reading() {
    property(Mix { early_closes: true, ..HONEST }, 2 * CASES, |f| &f.captured_window);
}

/// Payers that close while leaving their own stream unread. Once failing (minimal case:
/// open 13 units, stream 12, read 3 frames, close at what was spent (0) leaving the stream
/// unread: delivered 6,000, captured 0); the close now counts a lease that did not drain
/// as delivered.
#[test]
fn payee_captures_within_one_window_when_payers_close_mid_stream() {
    property(Mix { stalled_closes: true, ..HONEST }, 4 * CASES, |f| &f.captured_window);
}

/// A payer streams 21 units, stops reading its live stream and closes at its highest
/// voucher. Once failing: the close waited for `reserved` to drain, which never happens
/// while the body is not polled, then captured the best voucher at or below `spent` = 0.
/// The close now counts a lease that did not drain within the timeout as delivered.
#[test]
fn close_while_its_stream_is_stalled_captures_what_was_delivered() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let mut w = World::new();
        w.open(0, 40 * PRICE).await;
        w.start(0, 30).await;
        w.read(0, Some(25)).await;
        let delivered = w.chans[0].delivered;
        assert_eq!(delivered, 21 * PRICE, "21 tokens and 4 need-vouchers");
        assert!(w.close(0, w.chans[0].client.cumulative()).await, "the close goes through");
        let captured = w.chain.channel_state(w.chans[0].id).unwrap().settled;
        assert!(captured + AHEAD >= delivered, "delivered {delivered} before the close, captured {captured}");
    });
}
