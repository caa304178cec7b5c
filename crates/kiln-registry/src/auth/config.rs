//! The `[auth]` table of the registry configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rules::Action;

/// The `[auth]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The token audience, sent to clients in the challenge.
    pub service: String,
    /// The token endpoint URL; by default `http://{Host header}/token`
    /// (`https://` when the registry serves TLS).
    pub realm: Option<String>,
    pub token_ttl_secs: u64,
    /// Lifetime of refresh ("identity") tokens, handed out on `docker login`
    /// so Docker stores one instead of the password; 0 disables them.
    pub refresh_token_ttl_secs: u64,
    /// Anyone, logged in or not, may pull every repository.
    pub anonymous_pull: bool,
    /// The token signing key; by default `DATA_DIR/auth/token.key`.
    pub key_file: Option<PathBuf>,
    pub users: Vec<UserConfig>,
    pub grants: Vec<GrantConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "kiln".to_owned(),
            realm: None,
            token_ttl_secs: 300,
            refresh_token_ttl_secs: 90 * 24 * 3600,
            anonymous_pull: false,
            key_file: None,
            users: Vec::new(),
            grants: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Where the signing key lives for a registry whose data is in `data_dir`.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("auth").join("token.key"))
    }
}

/// One `[[auth.users]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string (`kiln registry hash-password`).
    pub password_hash: String,
    /// Admins may do everything, including listing the whole catalog.
    #[serde(default)]
    pub admin: bool,
}

// Hand-written so the hash never lands in logs.
impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("admin", &self.admin)
            .finish()
    }
}

/// One `[[auth.grants]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// User names; `*` is any logged-in user, `anonymous` everyone.
    pub users: Vec<String>,
    /// Patterns: `x/*` one level below `x`, `x/**` any depth below, else exact.
    pub repositories: Vec<String>,
    pub actions: Vec<Action>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        auth: AuthConfig,
    }

    #[test]
    fn full_table_parses() {
        let text = r#"
            [auth]
            service = "reg"
            realm = "https://reg.example/token"
            token_ttl_secs = 60
            anonymous_pull = true
            key_file = "/keys/token.key"
            [[auth.users]]
            name = "alice"
            password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"
            admin = true
            [[auth.grants]]
            users = ["alice", "*"]
            repositories = ["alice/*"]
            actions = ["pull", "push", "delete"]
        "#;
        let config = toml::from_str::<File>(text).expect("valid config").auth;
        assert_eq!(config.service, "reg");
        assert_eq!(config.realm.as_deref(), Some("https://reg.example/token"));
        assert_eq!(config.token_ttl_secs, 60);
        assert!(config.anonymous_pull);
        assert_eq!(
            config.key_path(Path::new("/data")),
            PathBuf::from("/keys/token.key")
        );
        assert!(config.users[0].admin);
        assert_eq!(config.grants[0].actions, Action::ALL.to_vec());
        assert!(!format!("{:?}", config.users[0]).contains("argon2"));
    }

    #[test]
    fn defaults() {
        let config = toml::from_str::<File>("[auth]\n")
            .expect("valid config")
            .auth;
        assert_eq!(config.service, "kiln");
        assert_eq!(config.realm, None);
        assert_eq!(config.token_ttl_secs, 300);
        assert!(!config.anonymous_pull);
        assert!(config.users.is_empty());
        assert_eq!(
            config.key_path(Path::new("/data")),
            PathBuf::from("/data/auth/token.key")
        );
    }

    #[test]
    fn unknown_fields_and_actions_are_rejected() {
        assert!(toml::from_str::<File>("[auth]\nservise = \"x\"\n").is_err());
        let text =
            "[auth]\n[[auth.grants]]\nusers=[\"*\"]\nrepositories=[\"*\"]\nactions=[\"pul\"]\n";
        assert!(toml::from_str::<File>(text).is_err());
        let text = "[auth]\n[[auth.users]]\nname=\"a\"\npassword_hash=\"x\"\nadmn=true\n";
        assert!(toml::from_str::<File>(text).is_err());
    }
}
