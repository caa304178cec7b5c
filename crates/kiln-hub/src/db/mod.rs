//! The hub's database: SQLite by default, PostgreSQL at scale, one code path.
//!
//! Every query goes through `sqlx::Any` with `$N` placeholders, which both
//! drivers accept, so there is one SQL text per operation. The few places
//! where the engines must differ ask [`Backend`]: how a write transaction
//! starts (SQLite takes the write lock up front with `BEGIN IMMEDIATE`, so
//! read-then-write transactions serialise instead of failing with
//! `SQLITE_BUSY`), how a task is claimed (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), and the event-log ordering lock (below). A trait with two
//! implementations would duplicate every query for those three differences.
//!
//! Schemas live in `migrations/{sqlite,postgres}` and are applied on open.
//!
//! Invariants the SQL keeps, not the callers:
//! - an NVR exists once among live non-scratch builds (a partial UNIQUE index);
//! - build state changes are compare-and-set (`UPDATE … WHERE state IN (…)`)
//!   with the allowed sources from [`crate::domain::state`];
//! - a task is held by one worker; only the holder may renew or finish it;
//! - every build state change appends an event in the same transaction, and
//!   event ids become visible in increasing order (PostgreSQL: appends take a
//!   transaction-scoped advisory lock as their last step, so a reader
//!   following "events after id N" never skips a later-committed smaller id).

pub(crate) mod builds;
mod catalog;
mod clock;
mod error;
mod events;
mod rebuilds;
mod rows;
mod tags;
mod tasks;
mod users;

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor, SqlSafeStr, Transaction};

pub use builds::{BuildFilter, BuildResult, NewBuild, PackageHit};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::DbError;
pub use rebuilds::{NewRebuildEvent, TaggedImage};
pub use tasks::{Claim, Reaped};

use crate::domain::time::rfc3339;

/// Each backend's migrations, in order (version = position + 1).
const SQLITE_MIGRATIONS: [(&str, &str); 2] = [
    (
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "rebuilds",
        include_str!("../../migrations/sqlite/0002_rebuilds.sql"),
    ),
];
const POSTGRES_MIGRATIONS: [(&str, &str); 2] = [
    (
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "rebuilds",
        include_str!("../../migrations/postgres/0002_rebuilds.sql"),
    ),
];

/// Arbitrary key of the advisory lock that orders event appends on PostgreSQL.
const EVENT_LOCK_KEY: i64 = 0x6b69_6c6e_6576; // "kilnev"

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone (a connection pool inside).
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

type Tx = Transaction<'static, Any>;

impl Db {
    /// Opens `sqlite://PATH?mode=rwc` or `postgres://…` and brings the schema
    /// up to date.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        Db::open_with_clock(url, Arc::new(SystemClock)).await
    }

    pub async fn open_with_clock(url: &str, clock: Arc<dyn Clock>) -> Result<Db, DbError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_string()));
        };
        install_default_drivers();
        let mut options = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // WAL lets readers run beside the single writer; the busy timeout
            // makes writers queue for the lock instead of failing.
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        let db = Db {
            pool,
            backend,
            clock,
        };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Unix seconds, from the database's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrator = Migrator::with_migrations(
            migrations
                .into_iter()
                .zip(1..)
                .map(|((name, sql), version)| {
                    Migration::new(
                        version,
                        name.into(),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        );
        migrator.run(&self.pool).await?;
        self.fill_source_names().await?;
        Ok(())
    }

    /// A transaction that will write.
    async fn begin_write(&self) -> Result<Tx, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    fn now_text(&self) -> Result<String, DbError> {
        Ok(rfc3339(self.clock.now())?)
    }
}

pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::corrupt(what, e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::corrupt(what, e))
}
