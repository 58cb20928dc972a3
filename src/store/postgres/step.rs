//! One step on a channel: a short transaction that locks the channel's row, reclaims lapsed
//! leases, runs the step's arithmetic and writes the outcome, announcing a new version to
//! every instance when the figures moved.

use deadpool_postgres::Transaction;
use futures_util::future::{try_join, try_join4};
use tokio_postgres::Row;

use super::PostgresStore;
use super::error::{backend, corrupt, invalid, not_found};
use super::ledger::{AskChange, Held, HeldChange, Ledger, reclaim};
use super::statements::*;
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelState, ReservationId, StoreError, reclaimed_record};

/// The most asks one channel keeps (one per paused stream); past it the oldest goes.
const MAX_ASKS: i64 = 64;

/// What a step works on besides the channel.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    Channel,
    Reservation(ReservationId),
}

/// A step's outcome: its own result, the channel after it, and the reservation it opened.
pub(super) struct Stepped<T> {
    pub(super) out: T,
    pub(super) state: ChannelState,
    pub(super) opened: Option<ReservationId>,
}

impl PostgresStore {
    /// Runs `step` on channel `id` (and `target`) atomically. A refused step changes
    /// nothing but the reclaim of lapsed leases, which stands (and is announced) like any
    /// other change.
    ///
    /// The step runs on a task of its own: it holds the channel's row lock across round
    /// trips, so it must run to its commit or rollback even when the caller stops polling
    /// (a stream whose client stopped reading) or drops the call half-way. Otherwise every
    /// other step on the channel, on every instance, would wait on that lock.
    pub(super) async fn step<T: Send + 'static>(
        &self,
        id: &ChannelId,
        target: Target,
        step: impl FnOnce(&mut Ledger) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Stepped<T>, StoreError> {
        self.step_claiming(id, target, None, step).await
    }

    /// [`step`](Self::step) that first claims the deposit reference `claim` (with the
    /// amount it credits) in the same transaction; the step sees [`Ledger::fresh`] `true`
    /// when this claim made it. A refused step rolls the claim back with everything else.
    pub(super) async fn step_claiming<T: Send + 'static>(
        &self,
        id: &ChannelId,
        target: Target,
        claim: Option<(String, Amount)>,
        step: impl FnOnce(&mut Ledger) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Stepped<T>, StoreError> {
        let (store, id) = (self.clone(), id.clone());
        tokio::spawn(async move { store.step_to_the_end(&id, target, claim, step).await })
            .await
            .unwrap_or_else(|joined| Err(backend(joined)))
    }

    async fn step_to_the_end<T>(
        &self,
        id: &ChannelId,
        target: Target,
        claim: Option<(String, Amount)>,
        step: impl FnOnce(&mut Ledger) -> Result<T, StoreError>,
    ) -> Result<Stepped<T>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Sent together (one round trip), run in order: every read after the row lock sees
        // what the step before it committed.
        let held_id = match target {
            Target::Reservation(rid) => i64::try_from(rid.0).ok(),
            Target::Channel => None,
        };
        let (locked, lapsed, held, asked) = try_join4(
            query_opt(&tx, LOCK_CHANNEL, &[&id.as_str()]),
            query(&tx, LAPSED, &[&id.as_str()]),
            async {
                match held_id {
                    Some(rid) => query_opt(&tx, HELD, &[&id.as_str(), &rid]).await,
                    None => Ok(None),
                }
            },
            query_one(&tx, ASKED, &[&id.as_str()]),
        )
        .await?;
        let before = channel_state(&locked.ok_or_else(not_found)?)?;
        // After the row lock, so racing claims of one reference on one channel queue up; a
        // claim on another channel waits on the reference's key until this one commits.
        let fresh = match &claim {
            Some((reference, amount)) => {
                let params: Params<'_> = &[reference, &id.as_str(), &amount.to_string()];
                query_opt(&tx, CLAIM_CREDIT, params).await?.is_some()
            }
            None => false,
        };
        let heads = lapsed.iter().map(|row| row.try_get::<_, Option<Vec<u8>>>(6)).collect::<Result<Vec<_>, _>>();
        let heads = heads.map_err(backend)?;
        let lapsed = lapsed.iter().map(held_row).collect::<Result<Vec<_>, _>>()?;
        let mut reclaimed_state = before.clone();
        let reclaimed = reclaim(&mut reclaimed_state, &lapsed);
        // A reclaimed lease with a head is recorded in this transaction, like its debit.
        let mut records: Vec<Vec<u8>> = lapsed
            .iter()
            .zip(&heads)
            .filter(|((rid, _), _)| reclaimed.contains(rid))
            .filter_map(|((_, held), head)| {
                let (used, units) = held.reclaimed();
                head.as_deref().map(|head| reclaimed_record(head, used, units))
            })
            .collect();
        let held = match held.as_ref().map(held_row).transpose()? {
            Some((rid, held)) if !reclaimed.contains(&rid) => Some(held),
            _ => None,
        };
        let mut ledger = Ledger {
            state: reclaimed_state.clone(),
            held,
            held_change: HeldChange::Untouched,
            ask_change: AskChange::Untouched,
            usage: None,
            opened_head: None,
            fresh,
        };
        let outcome = match step(&mut ledger) {
            Ok(out) => Ok(out),
            // Nothing to keep (or a claim that must not stand): dropping `tx` rolls back.
            Err(error) if reclaimed.is_empty() || fresh => return Err(error),
            // Keep (and announce) the reclaim alone.
            Err(error) => {
                ledger.state = reclaimed_state;
                (ledger.held_change, ledger.ask_change) = (HeldChange::Untouched, AskChange::Untouched);
                ledger.usage = None;
                Err(error)
            }
        };
        let mut state = ledger.state;
        let moved = unversioned(&state) != unversioned(&before);
        if moved {
            state.version = before.version.checked_add(1).ok_or_else(invalid)?;
        }
        // The writes touch different rows, so they go out together too.
        let (opened, (), (), asked) = try_join4(
            self.write_held(&tx, id, target, ledger.held_change, ledger.held, ledger.opened_head.as_deref()),
            async {
                match reclaimed.is_empty() {
                    true => Ok(()),
                    false => execute(&tx, DROP_RESERVATIONS, &[&reclaimed]).await,
                }
            },
            async {
                match moved {
                    true => self.write_channel(&tx, id, &state).await,
                    false => Ok(()),
                }
            },
            async {
                match ledger.ask_change {
                    AskChange::Untouched => Ok(asked),
                    change => {
                        write_ask(&tx, id, change).await?;
                        query_one(&tx, ASKED, &[&id.as_str()]).await
                    }
                }
            },
        )
        .await?;
        state.asked = optional_amount(&asked, 0)?.unwrap_or(Amount::ZERO);
        records.extend(ledger.usage);
        for record in &records {
            execute(&tx, APPEND_USAGE, &[&id.as_str(), record]).await?;
        }
        if !records.is_empty() {
            let keep = i64::try_from(crate::store::MAX_USAGE_RECORDS).unwrap_or(i64::MAX);
            execute(&tx, TRIM_USAGE, &[&id.as_str(), &keep]).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Stepped { out: outcome?, state, opened })
    }

    /// Writes what the step did to the reservation it names; the id of one it opened.
    async fn write_held(
        &self,
        tx: &Transaction<'_>,
        id: &ChannelId,
        target: Target,
        change: HeldChange,
        held: Option<Held>,
        head: Option<&[u8]>,
    ) -> Result<Option<ReservationId>, StoreError> {
        match (target, change, held) {
            (_, HeldChange::Opened(amount), _) => {
                let lease = micros(self.lease);
                let params: Params<'_> = &[&id.as_str(), &amount.to_string(), &lease, &head];
                let row = query_one(tx, OPEN_RESERVATION, params).await?;
                let rid: i64 = row.try_get(0).map_err(backend)?;
                Ok(Some(ReservationId(u64::try_from(rid).map_err(|_| corrupt("reservation id"))?)))
            }
            (Target::Reservation(rid), HeldChange::Renewed, Some(held)) => {
                self.write_reservation(tx, rid, &held).await.map(|()| None)
            }
            (Target::Reservation(rid), HeldChange::Released, _) => {
                let rid = i64::try_from(rid.0).map_err(|_| not_found())?;
                execute(tx, DROP_RESERVATIONS, &[&vec![rid]]).await.map(|()| None)
            }
            _ => Ok(None),
        }
    }

    async fn write_channel(
        &self,
        tx: &Transaction<'_>,
        id: &ChannelId,
        state: &ChannelState,
    ) -> Result<(), StoreError> {
        let version = i64::try_from(state.version).map_err(|_| invalid())?;
        let figures = [state.accepted, state.deposit, state.spent, state.reserved].map(|a| a.to_string());
        let [accepted, deposit, spent, reserved] = &figures;
        let units = state.units.to_string();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
            [&id.as_str(), accepted, deposit, spent, reserved, &units, &state.finalized, &version];
        let channel = self.notify_channel();
        // The notification is delivered with the commit, to this and every other instance.
        try_join(execute(tx, WRITE_CHANNEL, &params), execute(tx, NOTIFY, &[&channel, &id.as_str()])).await.map(drop)
    }

    async fn write_reservation(&self, tx: &Transaction<'_>, rid: ReservationId, held: &Held) -> Result<(), StoreError> {
        let rid = i64::try_from(rid.0).map_err(|_| not_found())?;
        let figures = [held.amount, held.committed, held.delivered].map(|a| a.to_string());
        let [amount, committed, delivered] = &figures;
        let (units, delivered_units) = (held.units.to_string(), held.delivered_units.to_string());
        let lease = micros(self.lease);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&rid, amount, committed, &units, delivered, &delivered_units, &lease];
        execute(tx, WRITE_RESERVATION, &params).await
    }
}

async fn write_ask(tx: &Transaction<'_>, id: &ChannelId, change: AskChange) -> Result<(), StoreError> {
    match change {
        AskChange::Untouched => Ok(()),
        AskChange::Put { asker, cumulative, ttl } => {
            let asker = bits(asker.0);
            execute(tx, DROP_LAPSED_ASKS, &[&id.as_str()]).await?;
            execute(tx, PUT_ASK, &[&id.as_str(), &asker, &cumulative.to_string(), &micros(ttl)]).await?;
            execute(tx, TRIM_ASKS, &[&id.as_str(), &asker, &(MAX_ASKS - 1)]).await
        }
        AskChange::Withdrawn(asker) => execute(tx, WITHDRAW_ASK, &[&id.as_str(), &bits(asker.0)]).await,
    }
}

pub(super) type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

async fn query_opt(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query_opt(&statement, params).await.map_err(backend)
}

async fn query_one(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query_one(&statement, params).await.map_err(backend)
}

async fn query(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.query(&statement, params).await.map_err(backend)
}

async fn execute(tx: &Transaction<'_>, sql: &str, params: Params<'_>) -> Result<(), StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(backend)?;
    tx.execute(&statement, params).await.map(drop).map_err(backend)
}

/// The state without its version, to tell whether a step moved anything.
fn unversioned(state: &ChannelState) -> ChannelState {
    ChannelState { version: 0, asked: Amount::ZERO, ..state.clone() }
}

/// A duration in whole microseconds, capped at a century (past it a timestamp overflows).
pub(super) fn micros(duration: std::time::Duration) -> i64 {
    const CENTURY_MICROS: u128 = 100 * 366 * 24 * 3600 * 1_000_000;
    i64::try_from(duration.as_micros().min(CENTURY_MICROS)).unwrap_or(i64::MAX)
}

/// A u64 id (an asker, a lock holder) in a bigint column: the same 64 bits.
pub(super) fn bits(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

/// The figures of a channel row in the column order of `LOCK_CHANNEL` / `PEEK_CHANNEL`.
pub(super) fn channel_state(row: &Row) -> Result<ChannelState, StoreError> {
    let version: i64 = row.try_get(6).map_err(backend)?;
    Ok(ChannelState {
        accepted: amount(row, 0)?,
        deposit: amount(row, 1)?,
        spent: amount(row, 2)?,
        reserved: amount(row, 3)?,
        units: count(row, 4)?,
        asked: Amount::ZERO,
        finalized: row.try_get(5).map_err(backend)?,
        version: u64::try_from(version).map_err(|_| corrupt("version"))?,
    })
}

fn held_row(row: &Row) -> Result<(i64, Held), StoreError> {
    let held = Held {
        amount: amount(row, 1)?,
        committed: amount(row, 2)?,
        units: count(row, 3)?,
        delivered: amount(row, 4)?,
        delivered_units: count(row, 5)?,
    };
    Ok((row.try_get(0).map_err(backend)?, held))
}

pub(super) fn amount(row: &Row, column: usize) -> Result<Amount, StoreError> {
    optional_amount(row, column)?.ok_or_else(|| corrupt("amount"))
}

pub(super) fn optional_amount(row: &Row, column: usize) -> Result<Option<Amount>, StoreError> {
    let text: Option<&str> = row.try_get(column).map_err(backend)?;
    text.map(|text| text.parse().map_err(|_| corrupt("amount"))).transpose()
}

fn count(row: &Row, column: usize) -> Result<u64, StoreError> {
    let text: &str = row.try_get(column).map_err(backend)?;
    text.parse().map_err(|_| corrupt("unit count"))
}
