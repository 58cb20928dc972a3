//! The schema, brought up to date when a store connects.

use deadpool_postgres::Object;

use super::error::backend;
use crate::store::StoreError;

/// Every migration, in order; a migration's version is its place in this list, counted from
/// one. Append only: an applied migration is never edited, a change is a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_ledger.sql"),
    include_str!("migrations/0002_prepaid.sql"),
    include_str!("migrations/0003_lock_expiry.sql"),
    include_str!("migrations/0004_usage_heads.sql"),
    include_str!("migrations/0005_lapses.sql"),
];

/// Creates `schema` if it is missing and applies the migrations it has not seen yet, in one
/// transaction under an advisory lock per schema: instances that start together queue up,
/// and the later ones find the work done. Each migration is idempotent on its own as well.
pub(super) async fn migrate(client: &mut Object, schema: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('tollgate migrations ' || $1, 0))", &[&schema])
        .await
        .map_err(backend)?;
    let exists = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&schema])
        .await
        .map_err(backend)?;
    // `schema` is a checked identifier (see `config::check_schema`), so it is safe to splice.
    let mut setup = String::new();
    if !exists.try_get::<_, bool>(0).map_err(backend)? {
        setup.push_str(&format!("CREATE SCHEMA {schema};"));
    }
    setup.push_str(&format!(
        "SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS tollgate_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ));
    tx.batch_execute(&setup).await.map_err(backend)?;
    let applied: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM tollgate_migrations", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend)?;
    for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(applied).unwrap_or(usize::MAX)) {
        tx.batch_execute(sql).await.map_err(backend)?;
        tx.execute("INSERT INTO tollgate_migrations (version) VALUES ($1)", &[&version]).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}
