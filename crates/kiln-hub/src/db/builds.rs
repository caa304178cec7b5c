//! Builds: submission, lookup, NVR assignment, results, state changes.

use sqlx::{AssertSqlSafe, Row};

use super::error::is_unique_violation;
use super::rows::{self, BUILD_COLUMNS, PACKAGE_COLUMNS};
use super::{Db, DbError, Tx, to_json};
use crate::domain::nvr::ImageIdentity;
use crate::domain::release::{ReleaseError, ReleaseSource, check_flags, resolve_release};
use crate::domain::state::{self, StateError};
use crate::model::{Build, BuildState, Nvr, Package, PackageKind, Task};

/// What a submission asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBuild {
    pub component: String,
    pub source_url: String,
    pub source_ref: String,
    pub target: String,
    pub owner: String,
    pub scratch: bool,
    pub isolated: bool,
    /// `--isolated --release R`.
    pub release_override: Option<String>,
    /// How many lost leases the build survives before it fails.
    pub max_attempts: u32,
    /// Build without the layer cache.
    pub no_cache: bool,
    /// `registry/repo@digest` the final stage's FROM is pinned to.
    pub parent_pin: Option<String>,
    /// The automatic rebuild item this build is an attempt of.
    pub rebuild_item_id: Option<i64>,
}

/// What a finished build produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildResult {
    pub manifest_digest: String,
    pub config_digest: String,
    pub image_size: i64,
    pub layers: Vec<String>,
    /// Full references pushed.
    pub tags: Vec<String>,
    pub packages: Vec<Package>,
}

/// Filters of [`Db::list_builds`]; all optional, combined with AND. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildFilter {
    pub state: Option<BuildState>,
    pub component: Option<String>,
    pub owner: Option<String>,
    /// Matches the start of `name-version-release`.
    pub nvr_prefix: Option<String>,
    pub scratch: Option<bool>,
    /// Only builds with a smaller id (paging).
    pub before_id: Option<i64>,
    /// Default 100.
    pub limit: Option<u32>,
}

/// A build holding a package ("which images contain X").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageHit {
    pub build_id: i64,
    pub nvr: Option<Nvr>,
    pub package: Package,
}

/// The package column `builds_with` searches.
#[derive(Debug, Clone, Copy)]
enum PackageColumn {
    Name,
    SourceName,
}

/// The source package's name of an RPM, for the index.
pub(crate) fn source_name(p: &Package) -> Option<String> {
    match p.kind {
        PackageKind::Rpm => p
            .source
            .as_deref()
            .and_then(crate::domain::rpmver::source_package_name),
        PackageKind::Deb => None,
    }
}

enum Arg {
    I64(i64),
    Text(String),
}

/// Tries of a bumped release lost to concurrent builds before giving up.
const NVR_RETRIES: usize = 16;

impl Db {
    /// Records a submission (state queued) and its task, in one transaction.
    pub async fn create_build(&self, req: &NewBuild) -> Result<(Build, Task), DbError> {
        let mut tx = self.begin_write().await?;
        let created = self.create_build_in(&mut tx, req).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(crate) async fn create_build_in(
        &self,
        tx: &mut Tx,
        req: &NewBuild,
    ) -> Result<(Build, Task), DbError> {
        check_flags(req.scratch, req.isolated, req.release_override.as_deref())?;
        for (table, what, key) in [
            ("components", "component", &req.component),
            ("targets", "target", &req.target),
        ] {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE name = $1");
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(key)
                .fetch_one(&mut **tx)
                .await?;
            if n == 0 {
                return Err(DbError::not_found(what, key));
            }
        }
        let now = self.now_text()?;
        let sql = format!(
            "INSERT INTO builds (state, component, source_url, source_ref, target, owner, scratch, \
             isolated, release_override, layers, tags, created_at, no_cache, parent_pin, \
             rebuild_item_id) \
             VALUES ('queued', $1, $2, $3, $4, $5, $6, $7, $8, '[]', '[]', $9, $10, $11, $12) \
             RETURNING {BUILD_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&req.component)
            .bind(&req.source_url)
            .bind(&req.source_ref)
            .bind(&req.target)
            .bind(&req.owner)
            .bind(i64::from(req.scratch))
            .bind(i64::from(req.isolated))
            .bind(&req.release_override)
            .bind(&now)
            .bind(i64::from(req.no_cache))
            .bind(&req.parent_pin)
            .bind(req.rebuild_item_id)
            .fetch_one(&mut **tx)
            .await?;
        let build = rows::build(&row)?;
        let task = self.insert_task(tx, build.id, req.max_attempts).await?;
        self.build_state_event(tx, &build).await?;
        Ok((build, task))
    }

    pub(crate) async fn build_in(&self, tx: &mut Tx, id: i64) -> Result<Build, DbError> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| DbError::not_found("build", id))?;
        rows::build(&row)
    }

    /// One build with its packages.
    pub async fn get_build(&self, id: i64) -> Result<Build, DbError> {
        let mut build = self.get_build_record(id).await?;
        build.packages = self.packages_of(id).await?;
        Ok(build)
    }

    /// One build without its packages (state, NVR, digests…), for callers
    /// that look at many builds often.
    pub async fn get_build_record(&self, id: i64) -> Result<Build, DbError> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("build", id))?;
        rows::build(&row)
    }

    /// The build of an NVR (`name-version-release`), with its packages: the
    /// live non-scratch one when there is one, else the newest.
    pub async fn get_build_by_nvr(&self, nvr: &str) -> Result<Build, DbError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM builds WHERE nvr = $1 ORDER BY scratch, \
             CASE WHEN state IN ('failed', 'canceled') THEN 1 ELSE 0 END, id DESC LIMIT 1",
        )
        .bind(nvr)
        .fetch_optional(&self.pool)
        .await?;
        match id {
            Some(id) => self.get_build(id).await,
            None => Err(DbError::not_found("build", nvr)),
        }
    }

    async fn packages_of(&self, build_id: i64) -> Result<Vec<Package>, DbError> {
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM build_packages WHERE build_id = $1 ORDER BY name, arch"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(build_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| rows::package(r, build_id)).collect()
    }

    /// Builds matching `filter`, newest first, without their packages (ask
    /// [`Db::get_build`] for those).
    pub async fn list_builds(&self, filter: &BuildFilter) -> Result<Vec<Build>, DbError> {
        let mut conds: Vec<String> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        // Each call returns the placeholder of the argument it adds.
        fn next(args: &mut Vec<Arg>, arg: Arg) -> String {
            args.push(arg);
            format!("${}", args.len())
        }
        if let Some(s) = filter.state {
            conds.push(format!(
                "state = {}",
                next(&mut args, Arg::Text(s.as_str().into()))
            ));
        }
        if let Some(c) = &filter.component {
            conds.push(format!(
                "component = {}",
                next(&mut args, Arg::Text(c.clone()))
            ));
        }
        if let Some(o) = &filter.owner {
            conds.push(format!("owner = {}", next(&mut args, Arg::Text(o.clone()))));
        }
        if let Some(p) = &filter.nvr_prefix {
            // substr rather than LIKE: no wildcard escaping, same on both engines.
            let prefix = next(&mut args, Arg::Text(p.clone()));
            conds.push(format!("substr(nvr, 1, length({prefix})) = {prefix}"));
        }
        if let Some(s) = filter.scratch {
            conds.push(format!(
                "scratch = {}",
                next(&mut args, Arg::I64(i64::from(s)))
            ));
        }
        if let Some(b) = filter.before_id {
            conds.push(format!("id < {}", next(&mut args, Arg::I64(b))));
        }
        let where_clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds {where_clause} ORDER BY id DESC LIMIT {}",
            filter.limit.unwrap_or(100)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = match a {
                Arg::I64(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(rows::build).collect()
    }

    /// Complete builds holding a package named `name`, newest first.
    pub async fn builds_with_package(&self, name: &str) -> Result<Vec<PackageHit>, DbError> {
        self.builds_with(PackageColumn::Name, name).await
    }

    /// Complete builds holding a package built from the source package
    /// `name`, newest first.
    pub async fn builds_with_source_package(&self, name: &str) -> Result<Vec<PackageHit>, DbError> {
        self.builds_with(PackageColumn::SourceName, name).await
    }

    async fn builds_with(&self, by: PackageColumn, name: &str) -> Result<Vec<PackageHit>, DbError> {
        let column = match by {
            PackageColumn::Name => "name",
            PackageColumn::SourceName => "source_name",
        };
        let sql = format!(
            "SELECT p.build_id, b.nvr_name, b.nvr_version, b.nvr_release, {} \
             FROM build_packages p JOIN builds b ON b.id = p.build_id \
             WHERE p.{column} = $1 AND b.state = 'complete' ORDER BY p.build_id DESC, p.arch",
            PACKAGE_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let build_id: i64 = row.try_get("build_id")?;
                let nvr = match (
                    row.try_get::<Option<String>, _>("nvr_name")?,
                    row.try_get::<Option<String>, _>("nvr_version")?,
                    row.try_get::<Option<String>, _>("nvr_release")?,
                ) {
                    (Some(name), Some(version), Some(release)) => Some(Nvr {
                        name,
                        version,
                        release,
                    }),
                    _ => None,
                };
                Ok(PackageHit {
                    build_id,
                    nvr,
                    package: rows::package(row, build_id)?,
                })
            })
            .collect()
    }

    /// Records the `autorebuild` of the build's container.yaml.
    pub async fn set_autorebuild(&self, build_id: i64, on: Option<bool>) -> Result<(), DbError> {
        sqlx::query("UPDATE builds SET autorebuild = $1 WHERE id = $2")
            .bind(on.map(i64::from))
            .bind(build_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Fills `source_name` of package rows recorded before the column
    /// existed (once; later rows get it on insert).
    pub(crate) async fn fill_source_names(&self) -> Result<(), DbError> {
        loop {
            let rows = sqlx::query(
                "SELECT DISTINCT source FROM build_packages \
                 WHERE source_name IS NULL AND source IS NOT NULL AND kind = 'rpm' LIMIT 1000",
            )
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self.begin_write().await?;
            for row in &rows {
                let source: String = row.try_get("source")?;
                // Unparseable names get "" so that they are not looked at again.
                let name = crate::domain::rpmver::source_package_name(&source).unwrap_or_default();
                sqlx::query(
                    "UPDATE build_packages SET source_name = $1 \
                     WHERE source = $2 AND source_name IS NULL",
                )
                .bind(name)
                .bind(&source)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }

    /// Records the commit the submitted ref resolved to.
    pub async fn set_commit(&self, build_id: i64, commit: &str) -> Result<(), DbError> {
        let done = sqlx::query("UPDATE builds SET commit_id = $1 WHERE id = $2")
            .bind(commit)
            .bind(build_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::not_found("build", build_id));
        }
        Ok(())
    }

    /// Records the parent image (final stage FROM as written, and the
    /// manifest digest pulled) and links the kiln build that produced that
    /// manifest, when there is one. Returns the parent build's id.
    pub async fn set_parent(
        &self,
        build_id: i64,
        parent_ref: &str,
        parent_digest: Option<&str>,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        let parent_build_id = match parent_digest {
            Some(d) => self.build_by_manifest(&mut tx, d).await?,
            None => None,
        };
        let done = sqlx::query(
            "UPDATE builds SET parent_ref = $1, parent_digest = $2, parent_build_id = $3 WHERE id = $4",
        )
        .bind(parent_ref)
        .bind(parent_digest)
        .bind(parent_build_id)
        .bind(build_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::not_found("build", build_id));
        }
        tx.commit().await?;
        Ok(parent_build_id)
    }

    /// The oldest complete build that pushed manifest `digest`.
    async fn build_by_manifest(&self, tx: &mut Tx, digest: &str) -> Result<Option<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE manifest_digest = $1 AND state = 'complete' ORDER BY id LIMIT 1",
        )
        .bind(digest)
        .fetch_optional(&mut **tx)
        .await?)
    }

    /// Gives a build its NVR from the Dockerfile's labels: the release is the
    /// `--release` override, else the label, else the next free one, picked
    /// and written in one transaction. The UNIQUE index has the last word:
    /// of two builds racing for one NVR, one gets [`DbError::DuplicateNvr`]
    /// (a bumped release is re-picked instead). Calling it again for a retried
    /// build that already holds an NVR of the same name-version returns that.
    pub async fn assign_nvr(
        &self,
        build_id: i64,
        identity: &ImageIdentity,
    ) -> Result<Nvr, DbError> {
        for _ in 0..NVR_RETRIES {
            let mut tx = self.begin_write().await?;
            let build = self.build_in(&mut tx, build_id).await?;
            if state::is_terminal(build.state) {
                return Err(DbError::BuildState {
                    build_id,
                    state: build.state,
                    what: "its NVR can no longer change",
                });
            }
            if let Some(nvr) = &build.nvr {
                let wanted = build
                    .release_override
                    .as_ref()
                    .or(identity.release.as_ref());
                if nvr.name == identity.component
                    && nvr.version == identity.version
                    && wanted.is_none_or(|r| *r == nvr.release)
                {
                    return Ok(nvr.clone());
                }
            }
            let used: Vec<String> = sqlx::query_scalar(
                "SELECT nvr_release FROM builds WHERE nvr_name = $1 AND nvr_version = $2 \
                 AND scratch = 0 AND state IN ('queued', 'building', 'complete') AND id <> $3",
            )
            .bind(&identity.component)
            .bind(&identity.version)
            .bind(build_id)
            .fetch_all(&mut *tx)
            .await?;
            let resolved = match resolve_release(
                identity.release.as_deref(),
                build.release_override.as_deref(),
                build.scratch,
                &used,
            ) {
                Ok(r) => r,
                Err(ReleaseError::Taken { release }) => {
                    let nvr = identity.nvr(&release);
                    let existing = self.live_build_of(&mut tx, &nvr).await?;
                    return Err(DbError::DuplicateNvr { nvr, existing });
                }
                Err(source) => return Err(DbError::Release { build_id, source }),
            };
            let nvr = identity.nvr(&resolved.release);
            let update = sqlx::query(
                "UPDATE builds SET nvr_name = $1, nvr_version = $2, nvr_release = $3, nvr = $4 \
                 WHERE id = $5",
            )
            .bind(&nvr.name)
            .bind(&nvr.version)
            .bind(&nvr.release)
            .bind(nvr.to_string())
            .bind(build_id)
            .execute(&mut *tx)
            .await;
            match update {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(nvr);
                }
                Err(e) if is_unique_violation(&e) => {
                    // Only PostgreSQL gets here: a concurrent build committed
                    // the same NVR between our read and our write.
                    drop(tx);
                    if resolved.source == ReleaseSource::Bumped {
                        continue;
                    }
                    let existing = self.live_build_of_pool(&nvr).await?;
                    return Err(DbError::DuplicateNvr { nvr, existing });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DbError::Release {
            build_id,
            source: ReleaseError::Exhausted {
                release: format!("{NVR_RETRIES} tries lost to concurrent builds"),
            },
        })
    }

    async fn live_build_of(&self, tx: &mut Tx, nvr: &Nvr) -> Result<Option<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE nvr = $1 AND scratch = 0 \
             AND state IN ('queued', 'building', 'complete') ORDER BY id LIMIT 1",
        )
        .bind(nvr.to_string())
        .fetch_optional(&mut **tx)
        .await?)
    }

    async fn live_build_of_pool(&self, nvr: &Nvr) -> Result<Option<i64>, DbError> {
        let mut tx = self.pool.begin().await?;
        let id = self.live_build_of(&mut tx, nvr).await?;
        tx.rollback().await?;
        Ok(id)
    }

    /// Compare-and-set of a build's state inside `tx`, checked against the
    /// state machine; sets `reason` when given and the matching timestamp.
    pub(crate) async fn transition_in(
        &self,
        tx: &mut Tx,
        build_id: i64,
        to: BuildState,
        reason: Option<&str>,
    ) -> Result<Build, DbError> {
        let sources = state::sources(to);
        let source_params: Vec<String> =
            (0..sources.len()).map(|i| format!("${}", i + 4)).collect();
        let stamp_param = format!("${}", sources.len() + 4);
        let stamp = match to {
            BuildState::Building => format!(", started_at = {stamp_param}"),
            BuildState::Complete | BuildState::Failed | BuildState::Canceled => {
                format!(", completed_at = {stamp_param}")
            }
            BuildState::Queued => String::new(),
        };
        let sql = format!(
            "UPDATE builds SET state = $1, reason = COALESCE($2, reason){stamp} \
             WHERE id = $3 AND state IN ({}) RETURNING {BUILD_COLUMNS}",
            source_params.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(reason)
            .bind(build_id);
        for s in sources {
            q = q.bind(s.as_str());
        }
        if !stamp.is_empty() {
            q = q.bind(self.now_text()?);
        }
        match q.fetch_optional(&mut **tx).await? {
            Some(row) => rows::build(&row),
            None => {
                let current = self.build_in(tx, build_id).await?;
                Err(DbError::State {
                    build_id,
                    source: StateError {
                        from: current.state,
                        to,
                    },
                })
            }
        }
    }

    /// Cancels a queued or building build and closes its task; the worker
    /// holding it learns at its next heartbeat.
    pub async fn cancel_build(&self, build_id: i64, reason: &str) -> Result<Build, DbError> {
        let mut tx = self.begin_write().await?;
        let build = self
            .transition_in(&mut tx, build_id, BuildState::Canceled, Some(reason))
            .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'canceled', reason = $1, lease_until = NULL, updated_at = $2 \
             WHERE build_id = $3 AND state IN ('free', 'claimed')",
        )
        .bind(reason)
        .bind(self.now_text()?)
        .bind(build_id)
        .execute(&mut *tx)
        .await?;
        self.build_state_event(&mut tx, &build).await?;
        tx.commit().await?;
        Ok(build)
    }

    /// Finishes the build of task `task_id` held by `worker`: records what it
    /// produced, links the parent build, tags it into the target's
    /// destination tag (non-scratch builds), all in one transaction.
    pub async fn complete_build(
        &self,
        task_id: i64,
        worker: &str,
        result: &BuildResult,
    ) -> Result<Build, DbError> {
        let mut tx = self.begin_write().await?;
        let task = self
            .close_task_in(&mut tx, task_id, worker, "done", None)
            .await?;
        let build_id = task.build_id;
        let before = self.build_in(&mut tx, build_id).await?;
        let parent_build_id = match (&before.parent_build_id, &before.parent_digest) {
            (Some(id), _) => Some(*id),
            (None, Some(d)) => self.build_by_manifest(&mut tx, d).await?,
            (None, None) => None,
        };
        sqlx::query(
            "UPDATE builds SET manifest_digest = $1, config_digest = $2, image_size = $3, \
             layers = $4, tags = $5, parent_build_id = $6 WHERE id = $7",
        )
        .bind(&result.manifest_digest)
        .bind(&result.config_digest)
        .bind(result.image_size)
        .bind(to_json("layers", &result.layers)?)
        .bind(to_json("tags", &result.tags)?)
        .bind(parent_build_id)
        .bind(build_id)
        .execute(&mut *tx)
        .await?;
        for p in &result.packages {
            sqlx::query(
                "INSERT INTO build_packages (build_id, kind, name, epoch, version, release, arch, \
                 source, license, signing_key, source_name) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(build_id)
            .bind(p.kind.as_str())
            .bind(&p.name)
            .bind(p.epoch.map(i64::from))
            .bind(&p.version)
            .bind(&p.release)
            .bind(&p.arch)
            .bind(&p.source)
            .bind(&p.license)
            .bind(&p.signing_key)
            .bind(source_name(p))
            .execute(&mut *tx)
            .await?;
        }
        let build = self
            .transition_in(&mut tx, build_id, BuildState::Complete, None)
            .await?;
        if !build.scratch {
            let dest: Option<String> =
                sqlx::query_scalar("SELECT dest_tag FROM targets WHERE name = $1")
                    .bind(&build.target)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(tag) = dest {
                self.ensure_tag_in(&mut tx, &tag).await?;
                self.tag_in(&mut tx, &tag, build_id, &build.owner).await?;
            }
        }
        self.build_state_event(&mut tx, &build).await?;
        tx.commit().await?;
        self.get_build(build_id).await
    }

    /// Fails the build of task `task_id` held by `worker`, with the reason
    /// users will read.
    pub async fn fail_build(
        &self,
        task_id: i64,
        worker: &str,
        reason: &str,
    ) -> Result<Build, DbError> {
        let mut tx = self.begin_write().await?;
        let task = self
            .close_task_in(&mut tx, task_id, worker, "failed", Some(reason))
            .await?;
        let build = self
            .transition_in(&mut tx, task.build_id, BuildState::Failed, Some(reason))
            .await?;
        self.build_state_event(&mut tx, &build).await?;
        tx.commit().await?;
        Ok(build)
    }
}
