//! Tags: named sets of builds, with the history of every change.

use sqlx::{AssertSqlSafe, Row};

use super::error::is_unique_violation;
use super::rows::{self, BUILD_COLUMNS};
use super::{Db, DbError, Tx};
use crate::model::{Build, BuildState, TagAction, TagEvent, TagInfo};

impl Db {
    pub async fn create_tag(&self, name: &str) -> Result<(), DbError> {
        let res = sqlx::query("INSERT INTO tags (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(self.now_text()?)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(DbError::AlreadyExists {
                what: "tag",
                key: name.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_tags(&self) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar("SELECT name FROM tags ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every tag with its own `autorebuild` setting.
    pub async fn list_tag_info(&self) -> Result<Vec<TagInfo>, DbError> {
        let rows = sqlx::query("SELECT name, autorebuild FROM tags ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TagInfo {
                    name: r.try_get("name")?,
                    autorebuild: r.try_get::<i64, _>("autorebuild")? != 0,
                })
            })
            .collect()
    }

    /// Turns automatic rebuilds of a tag's latest images on or off
    /// (creating the tag when it is new).
    pub async fn set_tag_autorebuild(&self, name: &str, on: bool) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        self.ensure_tag_in(&mut tx, name).await?;
        sqlx::query("UPDATE tags SET autorebuild = $1 WHERE name = $2")
            .bind(i64::from(on))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn ensure_tag_in(&self, tx: &mut Tx, name: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO tags (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(self.now_text()?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn history_in(
        &self,
        tx: &mut Tx,
        tag: &str,
        build_id: i64,
        action: TagAction,
        user: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO tag_history (tag, build_id, action, user_name, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tag)
        .bind(build_id)
        .bind(action.as_str())
        .bind(user)
        .bind(self.now_text()?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Adds a build to a tag inside `tx` (no event: callers append one).
    pub(crate) async fn tag_in(
        &self,
        tx: &mut Tx,
        tag: &str,
        build_id: i64,
        user: &str,
    ) -> Result<(), DbError> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE name = $1")
            .bind(tag)
            .fetch_one(&mut **tx)
            .await?;
        if exists == 0 {
            return Err(DbError::not_found("tag", tag));
        }
        let res = sqlx::query(
            "INSERT INTO tag_builds (tag, build_id, tagged_by, tagged_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tag)
        .bind(build_id)
        .bind(user)
        .bind(self.now_text()?)
        .execute(&mut **tx)
        .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(DbError::AlreadyTagged {
                    tag: tag.to_string(),
                    build_id,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.history_in(tx, tag, build_id, TagAction::Tag, user)
            .await
    }

    /// Tags a complete build (as koji: only complete builds are tagged).
    pub async fn tag_build(&self, tag: &str, build_id: i64, user: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let build = self.build_in(&mut tx, build_id).await?;
        if build.state != BuildState::Complete {
            return Err(DbError::BuildState {
                build_id,
                state: build.state,
                what: "only complete builds can be tagged",
            });
        }
        self.tag_in(&mut tx, tag, build_id, user).await?;
        let payload =
            serde_json::json!({"tag": tag, "build_id": build_id, "action": "tag", "user": user});
        self.append_event_tx(&mut tx, "tag.changed", Some(build_id), &payload)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn untag_build(&self, tag: &str, build_id: i64, user: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM tag_builds WHERE tag = $1 AND build_id = $2")
            .bind(tag)
            .bind(build_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotTagged {
                tag: tag.to_string(),
                build_id,
            });
        }
        self.history_in(&mut tx, tag, build_id, TagAction::Untag, user)
            .await?;
        let payload =
            serde_json::json!({"tag": tag, "build_id": build_id, "action": "untag", "user": user});
        self.append_event_tx(&mut tx, "tag.changed", Some(build_id), &payload)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The builds in `tag`, most recently tagged first (without packages).
    pub async fn list_tagged(&self, tag: &str) -> Result<Vec<Build>, DbError> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE name = $1")
            .bind(tag)
            .fetch_one(&self.pool)
            .await?;
        if exists == 0 {
            return Err(DbError::not_found("tag", tag));
        }
        let cols = BUILD_COLUMNS
            .split(", ")
            .map(|c| format!("b.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM tag_builds t JOIN builds b ON b.id = t.build_id \
             WHERE t.tag = $1 ORDER BY t.tagged_at DESC, b.id DESC"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(tag)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::build).collect()
    }

    /// Changes of `tag` (all tags when `None`), oldest first.
    pub async fn tag_history(&self, tag: Option<&str>) -> Result<Vec<TagEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT tag, build_id, action, user_name, at FROM tag_history \
             WHERE $1 IS NULL OR tag = $1 ORDER BY id",
        )
        .bind(tag)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let action: String = row.try_get("action")?;
                Ok(TagEvent {
                    tag: row.try_get("tag")?,
                    build_id: row.try_get("build_id")?,
                    action: action
                        .parse()
                        .map_err(|e| DbError::corrupt("tag history action", e))?,
                    user: row.try_get("user_name")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }
}
