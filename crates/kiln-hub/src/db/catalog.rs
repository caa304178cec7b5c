//! Components and build targets: what may be built, and how.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, from_json, to_json};
use crate::model::{Component, Target};

fn component(row: &AnyRow) -> Result<Component, DbError> {
    let name: String = row.try_get("name")?;
    let owners: String = row.try_get("owners")?;
    Ok(Component {
        owners: from_json(&format!("component {name} owners"), &owners)?,
        git_url: row.try_get("git_url")?,
        name,
    })
}

fn target(row: &AnyRow) -> Result<Target, DbError> {
    let name: String = row.try_get("name")?;
    let parents: String = row.try_get("allowed_parents")?;
    let repos: String = row.try_get("repos")?;
    Ok(Target {
        allowed_parents: from_json(&format!("target {name} allowed_parents"), &parents)?,
        repos: from_json(&format!("target {name} repos"), &repos)?,
        dest_tag: row.try_get("dest_tag")?,
        registry: row.try_get("registry")?,
        autorebuild: row.try_get::<i64, _>("autorebuild")? != 0,
        name,
    })
}

impl Db {
    /// Creates or replaces a component.
    pub async fn put_component(&self, c: &Component) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO components (name, git_url, owners) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET git_url = excluded.git_url, owners = excluded.owners",
        )
        .bind(&c.name)
        .bind(&c.git_url)
        .bind(to_json("owners", &c.owners)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_component(&self, name: &str) -> Result<Component, DbError> {
        let row = sqlx::query("SELECT name, git_url, owners FROM components WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("component", name))?;
        component(&row)
    }

    pub async fn list_components(&self) -> Result<Vec<Component>, DbError> {
        let rows = sqlx::query("SELECT name, git_url, owners FROM components ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(component).collect()
    }

    /// Removes a component; its builds stay on record.
    pub async fn delete_component(&self, name: &str) -> Result<(), DbError> {
        let done = sqlx::query("DELETE FROM components WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::not_found("component", name));
        }
        Ok(())
    }

    /// Creates or replaces a target, and creates its destination tag if new.
    pub async fn put_target(&self, t: &Target) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO targets (name, allowed_parents, repos, dest_tag, registry, autorebuild) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             allowed_parents = excluded.allowed_parents, repos = excluded.repos, \
             dest_tag = excluded.dest_tag, registry = excluded.registry, \
             autorebuild = excluded.autorebuild",
        )
        .bind(&t.name)
        .bind(to_json("allowed_parents", &t.allowed_parents)?)
        .bind(to_json("repos", &t.repos)?)
        .bind(&t.dest_tag)
        .bind(&t.registry)
        .bind(i64::from(t.autorebuild))
        .execute(&mut *tx)
        .await?;
        self.ensure_tag_in(&mut tx, &t.dest_tag).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_target(&self, name: &str) -> Result<Target, DbError> {
        let row = sqlx::query(
            "SELECT name, allowed_parents, repos, dest_tag, registry, autorebuild FROM targets \
             WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| DbError::not_found("target", name))?;
        target(&row)
    }

    pub async fn list_targets(&self) -> Result<Vec<Target>, DbError> {
        let rows = sqlx::query(
            "SELECT name, allowed_parents, repos, dest_tag, registry, autorebuild FROM targets \
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(target).collect()
    }

    pub async fn delete_target(&self, name: &str) -> Result<(), DbError> {
        let done = sqlx::query("DELETE FROM targets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::not_found("target", name));
        }
        Ok(())
    }
}
