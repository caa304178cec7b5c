use crate::domain::release::{FlagError, ReleaseError};
use crate::domain::state::StateError;
use crate::domain::time::TimeOutOfRange;
use crate::model::{BuildState, Nvr, TaskState};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database URL {0:?}: use sqlite://PATH?mode=rwc or postgres://USER:PASSWORD@HOST[:PORT]/DB"
    )]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{what} {key:?} already exists")]
    AlreadyExists { what: &'static str, key: String },
    #[error("NVR {nvr} already exists{}", .existing.map(|id| format!(" (build {id})")).unwrap_or_default())]
    DuplicateNvr { nvr: Nvr, existing: Option<i64> },
    #[error("build {build_id}: {source}")]
    State { build_id: i64, source: StateError },
    #[error("build {build_id} is {state}: {what}")]
    BuildState {
        build_id: i64,
        state: BuildState,
        what: &'static str,
    },
    #[error(
        "task {task_id} is not held by worker {worker:?} (task is {state}{})",
        .holder.as_ref().map(|h| format!(", held by {h:?}")).unwrap_or_default()
    )]
    LeaseNotHeld {
        task_id: i64,
        worker: String,
        state: TaskState,
        holder: Option<String>,
    },
    #[error(transparent)]
    Flags(#[from] FlagError),
    #[error("build {build_id}: {source}")]
    Release { build_id: i64, source: ReleaseError },
    #[error("build {build_id} is not in tag {tag:?}")]
    NotTagged { tag: String, build_id: i64 },
    #[error("build {build_id} is already in tag {tag:?}")]
    AlreadyTagged { tag: String, build_id: i64 },
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: String, detail: String },
    #[error(transparent)]
    Time(#[from] TimeOutOfRange),
    #[error("the system gave no randomness for a token: {0}")]
    Random(String),
}

impl DbError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> Self {
        DbError::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> Self {
        DbError::NotFound {
            what,
            key: key.to_string(),
        }
    }
}

/// True for a UNIQUE (or primary key) violation, on either backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
