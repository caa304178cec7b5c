//! Users and their API tokens. A token is 32 random bytes shown once; only
//! its sha256 is stored, and lookups hash the presented token.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Db, DbError};
use crate::model::User;

/// Prefix of every token, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "kiln_";

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Db {
    /// Creates or updates a user.
    pub async fn put_user(&self, user: &User) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO users (name, admin, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET admin = excluded.admin",
        )
        .bind(&user.name)
        .bind(i64::from(user.admin))
        .bind(self.now_text()?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_user(&self, name: &str) -> Result<User, DbError> {
        let row = sqlx::query("SELECT name, admin FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::not_found("user", name))?;
        Ok(User {
            name: row.try_get("name")?,
            admin: row.try_get::<i64, _>("admin")? != 0,
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        let rows = sqlx::query("SELECT name, admin FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(User {
                    name: row.try_get("name")?,
                    admin: row.try_get::<i64, _>("admin")? != 0,
                })
            })
            .collect()
    }

    /// A new token for `user`; the only time the token itself is seen.
    pub async fn create_token(&self, user: &str, description: &str) -> Result<String, DbError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| DbError::Random(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
        let res = sqlx::query(
            "INSERT INTO tokens (token_sha256, user_name, description, created_at) \
             SELECT $1, name, $2, $3 FROM users WHERE name = $4",
        )
        .bind(token_hash(&token))
        .bind(description)
        .bind(self.now_text()?)
        .bind(user)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(DbError::not_found("user", user));
        }
        Ok(token)
    }

    /// The user a token belongs to; `None` for an unknown or revoked token.
    pub async fn user_for_token(&self, token: &str) -> Result<Option<User>, DbError> {
        let row = sqlx::query(
            "SELECT u.name, u.admin FROM tokens t JOIN users u ON u.name = t.user_name \
             WHERE t.token_sha256 = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(User {
                name: row.try_get("name")?,
                admin: row.try_get::<i64, _>("admin")? != 0,
            })
        })
        .transpose()
    }

    /// Revokes one token; `false` when it was not known.
    pub async fn revoke_token(&self, token: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM tokens WHERE token_sha256 = $1")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
