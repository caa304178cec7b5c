//! Tasks: the queue workers claim from, with leases.
//!
//! A claim holds for `lease_secs`; the holder renews it with heartbeats.
//! A lease that lapses (the worker died or lost the network) is reaped: the
//! task goes back to the queue and its build back to queued, or — once it
//! has lost `max_attempts` leases — both fail with the reason. `attempts`
//! counts lost leases.

use sqlx::AssertSqlSafe;

use super::rows::{self, TASK_COLUMNS};
use super::{Backend, Db, DbError, Tx};
use crate::model::{Build, BuildState, Task, TaskState};

/// A claimed task and its build (now building).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub task: Task,
    pub build: Build,
}

/// What reaping did to one task whose lease lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub task: Task,
    /// `Queued` when it will be retried, `Failed` when out of attempts.
    pub build_state: BuildState,
    /// The worker that lost the lease.
    pub worker: Option<String>,
}

impl Db {
    pub(crate) async fn insert_task(
        &self,
        tx: &mut Tx,
        build_id: i64,
        max_attempts: u32,
    ) -> Result<Task, DbError> {
        let now = self.now_text()?;
        let sql = format!(
            "INSERT INTO tasks (build_id, state, attempts, max_attempts, created_at, updated_at) \
             VALUES ($1, 'free', 0, $2, $3, $3) RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(build_id)
            .bind(i64::from(max_attempts.max(1)))
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
        rows::task(&row)
    }

    /// Queues another task for a queued build that has no open task (a
    /// repair tool's operation; [`Db::create_build`] enqueues by itself).
    pub async fn enqueue_task(&self, build_id: i64, max_attempts: u32) -> Result<Task, DbError> {
        let mut tx = self.begin_write().await?;
        let build = self.build_in(&mut tx, build_id).await?;
        if build.state != BuildState::Queued {
            return Err(DbError::BuildState {
                build_id,
                state: build.state,
                what: "only queued builds can be enqueued",
            });
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE build_id = $1 AND state IN ('free', 'claimed')",
        )
        .bind(build_id)
        .fetch_one(&mut *tx)
        .await?;
        if open > 0 {
            return Err(DbError::AlreadyExists {
                what: "open task of build",
                key: build_id.to_string(),
            });
        }
        let task = self.insert_task(&mut tx, build_id, max_attempts).await?;
        tx.commit().await?;
        Ok(task)
    }

    pub async fn get_task(&self, task_id: i64) -> Result<Task, DbError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("task", task_id))?;
        rows::task(&row)
    }

    pub async fn tasks_of_build(&self, build_id: i64) -> Result<Vec<Task>, DbError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE build_id = $1 ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(build_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Claims the oldest free task for `worker` for `lease_secs`, moving its
    /// build to building; `None` when the queue is empty. Concurrent claims
    /// never get the same task.
    pub async fn claim_task(
        &self,
        worker: &str,
        lease_secs: i64,
    ) -> Result<Option<Claim>, DbError> {
        let mut tx = self.begin_write().await?;
        let now = self.now();
        // SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL:
        // SKIP LOCKED lets concurrent claimers pass rows another is taking.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE tasks SET state = 'claimed', worker = $1, lease_until = $2, updated_at = $3 \
             WHERE id = (SELECT id FROM tasks WHERE state = 'free' ORDER BY id LIMIT 1 {lock}) \
             AND state = 'free' RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(now.saturating_add(lease_secs))
            .bind(self.now_text()?)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let task = rows::task(&row)?;
        let build = self
            .transition_in(&mut tx, task.build_id, BuildState::Building, None)
            .await?;
        self.build_state_event(&mut tx, &build).await?;
        tx.commit().await?;
        Ok(Some(Claim { task, build }))
    }

    /// Why `worker` does not hold `task_id`, read inside `tx`.
    async fn not_held(&self, tx: &mut Tx, task_id: i64, worker: &str) -> DbError {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = match sqlx::query(AssertSqlSafe(sql))
            .bind(task_id)
            .fetch_optional(&mut **tx)
            .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return DbError::not_found("task", task_id),
            Err(e) => return e.into(),
        };
        match rows::task(&row) {
            Ok(task) => DbError::LeaseNotHeld {
                task_id,
                worker: worker.to_string(),
                state: task.state,
                holder: task.worker.filter(|_| task.state == TaskState::Claimed),
            },
            Err(e) => e,
        }
    }

    /// Renews the lease of `worker` on `task_id` for `lease_secs` from now.
    /// Fails with [`DbError::LeaseNotHeld`] when the task was reaped, given
    /// to another worker or canceled: the worker must stop.
    pub async fn heartbeat(
        &self,
        task_id: i64,
        worker: &str,
        lease_secs: i64,
    ) -> Result<Task, DbError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE tasks SET lease_until = $1, updated_at = $2 \
             WHERE id = $3 AND worker = $4 AND state = 'claimed' RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(self.now().saturating_add(lease_secs))
            .bind(self.now_text()?)
            .bind(task_id)
            .bind(worker)
            .fetch_optional(&mut *tx)
            .await?;
        let task = match row {
            Some(row) => rows::task(&row)?,
            None => return Err(self.not_held(&mut tx, task_id, worker).await),
        };
        tx.commit().await?;
        Ok(task)
    }

    /// Closes a task held by `worker` inside `tx` (`done` or `failed`).
    pub(crate) async fn close_task_in(
        &self,
        tx: &mut Tx,
        task_id: i64,
        worker: &str,
        state: &'static str,
        reason: Option<&str>,
    ) -> Result<Task, DbError> {
        let sql = format!(
            "UPDATE tasks SET state = $1, reason = $2, lease_until = NULL, updated_at = $3 \
             WHERE id = $4 AND worker = $5 AND state = 'claimed' RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(state)
            .bind(reason)
            .bind(self.now_text()?)
            .bind(task_id)
            .bind(worker)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => rows::task(&row),
            None => Err(self.not_held(tx, task_id, worker).await),
        }
    }

    /// Returns every task whose lease lapsed to the queue, or fails it when
    /// it has lost `max_attempts` leases. Safe to run from several hubs at
    /// once: each task is reaped by one of them.
    pub async fn reap_expired(&self) -> Result<Vec<Reaped>, DbError> {
        let now = self.now();
        let expired: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE state = 'claimed' AND lease_until < $1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut reaped = Vec::new();
        for task_id in expired {
            if let Some(r) = self.reap_one(task_id, now).await? {
                reaped.push(r);
            }
        }
        Ok(reaped)
    }

    async fn reap_one(&self, task_id: i64, now: i64) -> Result<Option<Reaped>, DbError> {
        let mut tx = self.begin_write().await?;
        // The lease is checked again under the write lock: a heartbeat may
        // have renewed it, or another reaper taken it, since the scan.
        let sql = format!(
            "UPDATE tasks SET attempts = attempts + 1, updated_at = $1, \
             state = CASE WHEN attempts + 1 >= max_attempts THEN 'failed' ELSE 'free' END, \
             reason = CASE WHEN attempts + 1 >= max_attempts \
                 THEN 'lease of worker ' || worker || ' expired; no attempts left' ELSE reason END, \
             worker = CASE WHEN attempts + 1 >= max_attempts THEN worker ELSE NULL END, \
             lease_until = NULL \
             WHERE id = $2 AND state = 'claimed' AND lease_until < $3 RETURNING {TASK_COLUMNS}"
        );
        let before_worker: Option<String> =
            sqlx::query_scalar("SELECT worker FROM tasks WHERE id = $1")
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(self.now_text()?)
            .bind(task_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let task = rows::task(&row)?;
        let (to, reason) = if task.state == TaskState::Failed {
            (
                BuildState::Failed,
                Some(format!(
                    "worker {} stopped answering and the build has used all {} attempts",
                    before_worker.as_deref().unwrap_or("?"),
                    task.max_attempts
                )),
            )
        } else {
            (BuildState::Queued, None)
        };
        let build = self
            .transition_in(&mut tx, task.build_id, to, reason.as_deref())
            .await?;
        self.build_state_event(&mut tx, &build).await?;
        tx.commit().await?;
        Ok(Some(Reaped {
            task,
            build_state: build.state,
            worker: before_worker,
        }))
    }
}
