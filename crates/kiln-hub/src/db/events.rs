//! The event log: every build state change, tag change and what else the
//! hub wants followers (SSE clients, a broker bridge) to see.

use sqlx::Row;

use super::{Backend, Db, DbError, EVENT_LOCK_KEY, Tx, from_json, to_json};
use crate::model::{Build, Event};

impl Db {
    /// Appends inside `tx`; must be the transaction's last statement on
    /// PostgreSQL (it takes the ordering lock until commit).
    pub(crate) async fn append_event_tx(
        &self,
        tx: &mut Tx,
        kind: &str,
        build_id: Option<i64>,
        payload: &serde_json::Value,
    ) -> Result<i64, DbError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(EVENT_LOCK_KEY)
                .execute(&mut **tx)
                .await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO events (at, kind, build_id, payload) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(self.now_text()?)
        .bind(kind)
        .bind(build_id)
        .bind(to_json("event payload", payload)?)
        .fetch_one(&mut **tx)
        .await?;
        Ok(id)
    }

    /// The `build.state` event of `build`, appended inside `tx`.
    pub(crate) async fn build_state_event(
        &self,
        tx: &mut Tx,
        build: &Build,
    ) -> Result<i64, DbError> {
        let payload = serde_json::json!({
            "id": build.id,
            "state": build.state,
            "component": build.component,
            "nvr": build.nvr.as_ref().map(ToString::to_string),
            "owner": build.owner,
            "scratch": build.scratch,
            "reason": build.reason,
        });
        self.append_event_tx(tx, "build.state", Some(build.id), &payload)
            .await
    }

    /// Appends an event of the caller's own kind.
    pub async fn append_event(
        &self,
        kind: &str,
        build_id: Option<i64>,
        payload: &serde_json::Value,
    ) -> Result<i64, DbError> {
        let mut tx = self.begin_write().await?;
        let id = self
            .append_event_tx(&mut tx, kind, build_id, payload)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Events with an id above `after`, oldest first, at most `limit`.
    pub async fn events_since(&self, after: i64, limit: u32) -> Result<Vec<Event>, DbError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, build_id, payload FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                let payload: String = row.try_get("payload")?;
                Ok(Event {
                    id,
                    at: row.try_get("at")?,
                    kind: row.try_get("kind")?,
                    build_id: row.try_get("build_id")?,
                    payload: from_json(&format!("event {id} payload"), &payload)?,
                })
            })
            .collect()
    }

    /// The id of the newest event (0 when there is none): where a new
    /// follower starts.
    pub async fn last_event_id(&self) -> Result<i64, DbError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }
}
