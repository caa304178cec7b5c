//! Automatic rebuilds: events, their items, the images that take rebuilds,
//! and what the repository watcher last saw.
//!
//! Every change of an event or item is a compare-and-set on its state and
//! appends a `rebuild.event` / `rebuild.item` event in the same
//! transaction, so a hub restarted at any point resumes from the database.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AssertSqlSafe, Row};

use super::builds::NewBuild;
use super::rows::{self, EVENT_COLUMNS, ITEM_COLUMNS, PACKAGE_COLUMNS};
use super::{Backend, Db, DbError, Tx, to_json};
use crate::domain::cascade::{Coalesce, NewItem, ParentLink};
use crate::domain::planner::ImageNode;
use crate::model::{
    Build, Package, RebuildEvent, RebuildEventState, RebuildItem, RebuildItemState, RebuildTrigger,
};

/// A package-update or parent-build event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRebuildEvent {
    pub trigger: RebuildTrigger,
    pub updates: Vec<String>,
    pub repo: Option<String>,
    pub trigger_build_id: Option<i64>,
    pub replaced_build_id: Option<i64>,
    pub submitter: String,
    /// Events with the same key are one event.
    pub dedup_key: String,
}

/// One image on a tag: the latest build of its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedImage {
    pub tag: String,
    pub build_id: i64,
    pub repository: String,
    pub component: String,
    pub nvr: String,
    pub parent_build_id: Option<i64>,
    pub autorebuild: Option<bool>,
}

/// With `names`: the CTE `reach` of the builds holding a package named one
/// of them (binary or source name, `$1…$n`) and the builds made on them.
fn reach_clause(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let list = placeholders(1, names.len());
    format!(
        "WITH RECURSIVE reach(id) AS (\
         SELECT build_id FROM build_packages WHERE name IN ({list}) OR source_name IN ({list}) \
         UNION SELECT b.id FROM builds b JOIN reach r ON b.parent_build_id = r.id)"
    )
}

/// `FROM … WHERE …` of the latest complete build of each name on each tag
/// (of `tags`, bound after the names), within `reach` when `names` is given;
/// `tb` is the tag row, `b` the build.
fn latest_from(names: &[String], tags: Option<&[String]>) -> String {
    let mut sql = String::from(
        "FROM tag_builds tb JOIN builds b ON b.id = tb.build_id \
         WHERE b.state = 'complete' AND b.nvr_name IS NOT NULL",
    );
    if !names.is_empty() {
        // Narrowed, the newest build of a name may be missing from the
        // rows (it no longer holds the package): decide "latest" here.
        sql.push_str(
            " AND b.id IN (SELECT id FROM reach) AND b.id = (SELECT MAX(b2.id) \
             FROM tag_builds t2 JOIN builds b2 ON b2.id = t2.build_id WHERE t2.tag = tb.tag \
             AND b2.nvr_name = b.nvr_name AND b2.state = 'complete')",
        );
    }
    if let Some(t) = tags {
        sql.push_str(&format!(
            " AND tb.tag IN ({})",
            placeholders(names.len() + 1, t.len())
        ));
    }
    sql
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn merged(mut a: Vec<String>, b: &[String]) -> Vec<String> {
    for s in b {
        if !a.contains(s) {
            a.push(s.clone());
        }
    }
    a
}

impl Db {
    /// Records an event, or returns the one recorded earlier with the same
    /// key (`false`: nothing changed).
    pub async fn create_rebuild_event(
        &self,
        e: &NewRebuildEvent,
    ) -> Result<(RebuildEvent, bool), DbError> {
        let mut tx = self.begin_write().await?;
        let out = self.create_rebuild_event_in(&mut tx, e).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn create_rebuild_event_in(
        &self,
        tx: &mut Tx,
        e: &NewRebuildEvent,
    ) -> Result<(RebuildEvent, bool), DbError> {
        let now = self.now_text()?;
        // An event that failed or had no effect may be reported again (to
        // retry, or after a tag opted in): the old one gives up its key.
        sqlx::query(
            "UPDATE rebuild_events SET dedup_key = dedup_key || ' (superseded by a later report)' \
             WHERE dedup_key = $1 AND state IN ('failed', 'no-effect')",
        )
        .bind(&e.dedup_key)
        .execute(&mut **tx)
        .await?;
        let sql = format!(
            "INSERT INTO rebuild_events (trigger_kind, dedup_key, state, updates, repo, \
             trigger_build_id, replaced_build_id, submitter, created_at, updated_at) \
             VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING {EVENT_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(e.trigger.as_str())
            .bind(&e.dedup_key)
            .bind(to_json("updates", &e.updates)?)
            .bind(&e.repo)
            .bind(e.trigger_build_id)
            .bind(e.replaced_build_id)
            .bind(&e.submitter)
            .bind(&now)
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(row) => {
                let ev = rows::rebuild_event(&row)?;
                self.rebuild_event_event(tx, &ev).await?;
                Ok((ev, true))
            }
            None => {
                let sql =
                    format!("SELECT {EVENT_COLUMNS} FROM rebuild_events WHERE dedup_key = $1");
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(&e.dedup_key)
                    .fetch_one(&mut **tx)
                    .await?;
                Ok((rows::rebuild_event(&row)?, false))
            }
        }
    }

    async fn rebuild_event_event(&self, tx: &mut Tx, ev: &RebuildEvent) -> Result<i64, DbError> {
        let payload = serde_json::json!({
            "id": ev.id,
            "trigger": ev.trigger,
            "state": ev.state,
            "updates": ev.updates,
            "message": ev.message,
        });
        self.append_event_tx(tx, "rebuild.event", None, &payload)
            .await
    }

    async fn rebuild_item_event(&self, tx: &mut Tx, it: &RebuildItem) -> Result<i64, DbError> {
        let payload = serde_json::json!({
            "id": it.id,
            "event_id": it.event_id,
            "repository": it.repository,
            "state": it.state,
            "build_id": it.build_id,
            "attempts": it.attempts,
            "message": it.message,
        });
        self.append_event_tx(tx, "rebuild.item", it.build_id, &payload)
            .await
    }

    pub async fn get_rebuild_event(&self, id: i64) -> Result<RebuildEvent, DbError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM rebuild_events WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("rebuild event", id))?;
        rows::rebuild_event(&row)
    }

    /// Events newest first.
    pub async fn list_rebuild_events(
        &self,
        state: Option<RebuildEventState>,
        limit: u32,
    ) -> Result<Vec<RebuildEvent>, DbError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM rebuild_events WHERE ($1 = '' OR state = $1) \
             ORDER BY id DESC LIMIT {limit}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(state.map_or("", |s| s.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::rebuild_event).collect()
    }

    /// Events in `state`, oldest first.
    pub async fn rebuild_events_in(
        &self,
        state: RebuildEventState,
    ) -> Result<Vec<RebuildEvent>, DbError> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM rebuild_events WHERE state = $1 ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::rebuild_event).collect()
    }

    pub async fn rebuild_items(&self, event_id: i64) -> Result<Vec<RebuildItem>, DbError> {
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM rebuild_items WHERE event_id = $1 ORDER BY id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(event_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::rebuild_item).collect()
    }

    pub async fn get_rebuild_item(&self, id: i64) -> Result<RebuildItem, DbError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM rebuild_items WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("rebuild item", id))?;
        rows::rebuild_item(&row)
    }

    /// Items not finished yet (waiting, building, coalesced), oldest first.
    pub async fn unfinished_rebuild_items(&self) -> Result<Vec<RebuildItem>, DbError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM rebuild_items \
             WHERE state IN ('waiting', 'building', 'coalesced') ORDER BY id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::rebuild_item).collect()
    }

    /// Updates a pending event's message (what it waits for), when it changed.
    pub async fn set_rebuild_event_message(&self, id: i64, message: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE rebuild_events SET message = $1, updated_at = $2 \
             WHERE id = $3 AND (message IS NULL OR message <> $1) RETURNING {EVENT_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(message)
            .bind(self.now_text()?)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            self.rebuild_event_event(&mut tx, &rows::rebuild_event(&row)?)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Turns a pending event's plan into items, adds coalesced reasons to
    /// other events' waiting items, and moves the event on, in one
    /// transaction. `false` when the event was no longer pending.
    pub async fn admit_rebuild_event(
        &self,
        event_id: i64,
        new_items: &[NewItem],
        coalesce: &[Coalesce],
        state: RebuildEventState,
        message: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let now = self.now_text()?;
        let sql = format!(
            "UPDATE rebuild_events SET state = $1, message = $2, updated_at = $3 \
             WHERE id = $4 AND state = 'pending' RETURNING {EVENT_COLUMNS}"
        );
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(message)
            .bind(&now)
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let ev = rows::rebuild_event(&row)?;
        for c in coalesce {
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM rebuild_items WHERE id = $1 AND state = 'waiting'"
            );
            let Some(row) = sqlx::query(AssertSqlSafe(sql))
                .bind(c.item_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                // Started meanwhile (another hub): plan this event again.
                return Ok(false);
            };
            let it = rows::rebuild_item(&row)?;
            sqlx::query(
                "UPDATE rebuild_items SET reasons = $1, expect = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(to_json("reasons", &merged(it.reasons, &c.reasons))?)
            .bind(to_json("expect", &merged(it.expect, &c.expect))?)
            .bind(&now)
            .bind(c.item_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut ids: Vec<i64> = Vec::with_capacity(new_items.len());
        for n in new_items {
            let parent = match n.parent {
                ParentLink::None => None,
                ParentLink::Existing(id) => Some(id),
                ParentLink::New(i) => ids.get(i).copied(),
            };
            let sql = format!(
                "INSERT INTO rebuild_items (event_id, original_build_id, repository, depth, \
                 parent_item_id, reasons, expect, state, coalesced_into, message, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                 RETURNING {ITEM_COLUMNS}"
            );
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(event_id)
                .bind(n.original_build_id)
                .bind(&n.repository)
                .bind(i64::from(n.depth))
                .bind(parent)
                .bind(to_json("reasons", &n.reasons)?)
                .bind(to_json("expect", &n.expect)?)
                .bind(n.state.as_str())
                .bind(n.coalesced_into)
                .bind(&n.message)
                .bind(&now)
                .fetch_one(&mut *tx)
                .await?;
            ids.push(row.try_get("id")?);
        }
        self.rebuild_event_event(&mut tx, &ev).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Submits a rebuild of an item: compare-and-set from `from` (waiting,
    /// or building with the failed attempt's build), one more attempt, the
    /// build and its task created in the same transaction. None when the
    /// item moved on meanwhile.
    pub async fn start_rebuild_item(
        &self,
        item_id: i64,
        from: RebuildItemState,
        previous_build: Option<i64>,
        build: &NewBuild,
    ) -> Result<Option<Build>, DbError> {
        let mut tx = self.begin_write().await?;
        // Two hubs on one PostgreSQL must not both start the item: the row
        // stays locked until the build exists (SQLite's write transaction
        // already holds the database).
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM rebuild_items WHERE id = $1 AND state = $2 \
             AND (build_id = $3 OR (build_id IS NULL AND $3 = 0)){lock}"
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(item_id)
            .bind(from.as_str())
            .bind(previous_build.unwrap_or(0))
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(None);
        }
        let mut req = build.clone();
        req.rebuild_item_id = Some(item_id);
        let (created, _task) = self.create_build_in(&mut tx, &req).await?;
        let sql = format!(
            "UPDATE rebuild_items SET state = 'building', build_id = $1, attempts = attempts + 1, \
             updated_at = $2 WHERE id = $3 RETURNING {ITEM_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(created.id)
            .bind(self.now_text()?)
            .bind(item_id)
            .fetch_one(&mut *tx)
            .await?;
        self.rebuild_item_event(&mut tx, &rows::rebuild_item(&row)?)
            .await?;
        tx.commit().await?;
        Ok(Some(created))
    }

    /// Ends an item (complete, failed, held) and every item coalesced into
    /// it; `false` when it was already finished.
    pub async fn finish_rebuild_item(
        &self,
        item_id: i64,
        state: RebuildItemState,
        message: Option<&str>,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let now = self.now_text()?;
        let sql = format!(
            "UPDATE rebuild_items SET state = $1, message = COALESCE($2, message), updated_at = $3 \
             WHERE id = $4 AND state IN ('waiting', 'building') RETURNING {ITEM_COLUMNS}"
        );
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(message)
            .bind(&now)
            .bind(item_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let finished = rows::rebuild_item(&row)?;
        self.rebuild_item_event(&mut tx, &finished).await?;
        let sql = format!(
            "UPDATE rebuild_items SET state = $1, build_id = $2, updated_at = $3 \
             WHERE coalesced_into = $4 AND state = 'coalesced' RETURNING {ITEM_COLUMNS}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(finished.build_id)
            .bind(&now)
            .bind(item_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            self.rebuild_item_event(&mut tx, &rows::rebuild_item(row)?)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a running event.
    pub async fn finish_rebuild_event(
        &self,
        event_id: i64,
        state: RebuildEventState,
        message: &str,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE rebuild_events SET state = $1, message = $2, updated_at = $3 \
             WHERE id = $4 AND state = 'running' RETURNING {EVENT_COLUMNS}"
        );
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(message)
            .bind(self.now_text()?)
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        self.rebuild_event_event(&mut tx, &rows::rebuild_event(&row)?)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Tags whose latest images take automatic rebuilds: opted in
    /// themselves, or the destination of a target that is.
    pub async fn autorebuild_tags(&self) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM tags WHERE autorebuild = 1 \
             UNION SELECT dest_tag FROM targets WHERE autorebuild = 1 AND dest_tag <> '' \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest complete build of each image name on each of `tags` (all
    /// tags when None).
    pub async fn latest_tagged(
        &self,
        tags: Option<&[String]>,
    ) -> Result<Vec<TaggedImage>, DbError> {
        self.latest_reaching(tags, &[]).await
    }

    /// [`Db::latest_tagged`], narrowed (when `names` is not empty) to the
    /// builds holding a package of one of `names` (binary or source name)
    /// and the builds made on top of those: all a plan for updates of
    /// `names` can reach, read without reading every image of the tags.
    pub async fn latest_reaching(
        &self,
        tags: Option<&[String]>,
        names: &[String],
    ) -> Result<Vec<TaggedImage>, DbError> {
        if tags == Some(&[]) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{} SELECT tb.tag, b.id, b.nvr_name, b.nvr, b.component, b.parent_build_id, \
             b.autorebuild {}",
            reach_clause(names),
            latest_from(names, tags)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for n in names {
            q = q.bind(n);
        }
        for t in tags.unwrap_or_default() {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut latest: BTreeMap<(String, String), TaggedImage> = BTreeMap::new();
        for row in &rows {
            let image = TaggedImage {
                tag: row.try_get("tag")?,
                build_id: row.try_get("id")?,
                repository: row.try_get("nvr_name")?,
                component: row.try_get("component")?,
                nvr: row.try_get("nvr")?,
                parent_build_id: row.try_get("parent_build_id")?,
                autorebuild: row
                    .try_get::<Option<i64>, _>("autorebuild")?
                    .map(|v| v != 0),
            };
            let key = (image.tag.clone(), image.repository.clone());
            match latest.get(&key) {
                Some(have) if have.build_id > image.build_id => {}
                _ => {
                    latest.insert(key, image);
                }
            }
        }
        Ok(latest.into_values().collect())
    }

    /// The packages named (binary or source name) one of `names` in the
    /// latest images of `tags` (every tag when None), by build.
    pub async fn packages_named(
        &self,
        tags: Option<&[String]>,
        names: &[String],
    ) -> Result<HashMap<i64, Vec<Package>>, DbError> {
        let mut out: HashMap<i64, Vec<Package>> = HashMap::new();
        if names.is_empty() || tags == Some(&[]) {
            return Ok(out);
        }
        let list = placeholders(1, names.len());
        // Only the latest images' rows: older builds of an image hold the
        // same packages many times over.
        let sql = format!(
            "{} SELECT p.build_id, {} FROM build_packages p \
             WHERE (p.name IN ({list}) OR p.source_name IN ({list})) \
             AND p.build_id IN (SELECT b.id {})",
            reach_clause(names),
            PACKAGE_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            latest_from(names, tags)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for n in names {
            q = q.bind(n);
        }
        for t in tags.unwrap_or_default() {
            q = q.bind(t);
        }
        for row in q.fetch_all(&self.pool).await? {
            let build_id: i64 = row.try_get("build_id")?;
            out.entry(build_id)
                .or_default()
                .push(rows::package(&row, build_id)?);
        }
        Ok(out)
    }

    /// The images that take automatic rebuilds, as the planner sees them,
    /// with only the packages named `names` (by binary or source name):
    /// the planner looks at no others. With `names`, only the images a plan
    /// for them can reach; without, every image (for a parent-build plan).
    pub async fn autorebuild_images(&self, names: &[String]) -> Result<Vec<ImageNode>, DbError> {
        let tags = self.autorebuild_tags().await?;
        let images = self.latest_reaching(Some(&tags), names).await?;
        let mut packages = self.packages_named(Some(&tags), names).await?;
        let mut nodes = Vec::with_capacity(images.len());
        for i in images {
            nodes.push(ImageNode {
                build_id: i.build_id,
                component: i.component,
                repository: i.repository,
                tag: i.tag,
                // The graph reads a build's packages from its first listing.
                packages: packages.remove(&i.build_id).unwrap_or_default(),
                parent_build_id: i.parent_build_id,
                autorebuild: i.autorebuild.unwrap_or(true),
            });
        }
        Ok(nodes)
    }

    /// The build of the same image name that was the latest on a tag of
    /// `build`'s before it, when `build` is the latest there now.
    pub async fn replaced_build(&self, build: &Build) -> Result<Option<(i64, String)>, DbError> {
        let Some(nvr) = &build.nvr else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT MAX(b.id) AS id, tb.tag FROM tag_builds tb JOIN builds b ON b.id = tb.build_id \
             WHERE b.nvr_name = $1 AND b.state = 'complete' AND b.id < $2 AND tb.tag IN \
             (SELECT tag FROM tag_builds WHERE build_id = $2) GROUP BY tb.tag ORDER BY 1 DESC LIMIT 1",
        )
        .bind(&nvr.name)
        .bind(build.id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(r
                .try_get::<Option<i64>, _>("id")?
                .map(|id| (id, r.try_get("tag").unwrap_or_default()))),
            None => Ok(None),
        }
    }

    /// Complete builds whose parent is `build_id`.
    pub async fn children_of(&self, build_id: i64) -> Result<Vec<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM builds WHERE parent_build_id = $1 AND state = 'complete' ORDER BY id",
        )
        .bind(build_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Base URLs of the package repositories of targets that take
    /// automatic rebuilds.
    pub async fn autorebuild_repos(&self) -> Result<Vec<String>, DbError> {
        let mut urls: Vec<String> = Vec::new();
        for t in self.list_targets().await? {
            if t.autorebuild {
                urls.extend(t.repos.into_iter().map(|r| r.baseurl));
            }
        }
        urls.sort();
        urls.dedup();
        Ok(urls)
    }

    /// What the watcher last saw of a repository (its JSON snapshot).
    pub async fn repo_snapshot(&self, baseurl: &str) -> Result<Option<String>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT snapshot FROM watched_repos WHERE baseurl = $1")
                .bind(baseurl)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a repository's new snapshot and, in the same transaction, the
    /// event for the updates found, so that a crash neither loses nor
    /// repeats them.
    pub async fn record_repo_poll(
        &self,
        baseurl: &str,
        snapshot: Option<&str>,
        error: Option<&str>,
        event: Option<&NewRebuildEvent>,
    ) -> Result<Option<(RebuildEvent, bool)>, DbError> {
        let mut tx = self.begin_write().await?;
        let now = self.now_text()?;
        match snapshot {
            Some(s) => {
                sqlx::query(
                    "INSERT INTO watched_repos (baseurl, snapshot, checked_at, error) \
                     VALUES ($1, $2, $3, NULL) ON CONFLICT (baseurl) DO UPDATE SET \
                     snapshot = excluded.snapshot, checked_at = excluded.checked_at, error = NULL",
                )
                .bind(baseurl)
                .bind(s)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE watched_repos SET checked_at = $1, error = $2 WHERE baseurl = $3",
                )
                .bind(&now)
                .bind(error)
                .bind(baseurl)
                .execute(&mut *tx)
                .await?;
            }
        }
        let out = match event {
            Some(e) => Some(self.create_rebuild_event_in(&mut tx, e).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(out)
    }
}
