//! Registry credentials: given explicitly per host, or read from the auth
//! files podman, skopeo, buildah and docker write (`podman login`,
//! `docker login`).
//!
//! Credential helpers (`credHelpers`, `credsStore`) and identity tokens are
//! not supported; entries using them are skipped. Keys scoped to a
//! repository (`host/namespace/repo`, a containers/image extension) are
//! skipped too: credentials here are per registry host.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl Login {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Login {
        Login {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(raw))
    }
}

// Hand-written so passwords never reach logs.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Logins by registry host (`host[:port]`, as in image references;
/// Docker Hub is `docker.io`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_host: HashMap<String, Login>,
}

/// Where the auth files are looked for: the environment of a process, made
/// explicit so tests need not change the real one.
#[derive(Clone, Debug, Default)]
pub struct AuthFileEnv {
    /// `$REGISTRY_AUTH_FILE`: when set, the only file read.
    pub registry_auth_file: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    /// `$DOCKER_CONFIG`: the directory holding docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl AuthFileEnv {
    /// Reads the variables of this process.
    pub fn from_process() -> AuthFileEnv {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        AuthFileEnv {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
        }
    }

    /// The files to read, first match winning, in containers/image's order:
    /// `$REGISTRY_AUTH_FILE` alone if set; otherwise
    /// `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config`),
    /// `$DOCKER_CONFIG/config.json` (`~/.docker`).
    pub fn paths(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.registry_auth_file {
            return vec![p.clone()];
        }
        let mut paths = Vec::new();
        if let Some(run) = &self.xdg_runtime_dir {
            paths.push(run.join("containers/auth.json"));
        }
        match (&self.xdg_config_home, &self.home) {
            (Some(cfg), _) => paths.push(cfg.join("containers/auth.json")),
            (None, Some(home)) => paths.push(home.join(".config/containers/auth.json")),
            (None, None) => {}
        }
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => paths.push(dir.join("config.json")),
            (None, Some(home)) => paths.push(home.join(".docker/config.json")),
            (None, None) => {}
        }
        paths
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

impl Credentials {
    pub fn new() -> Credentials {
        Credentials::default()
    }

    /// Sets the login for `host`, replacing any read from a file.
    pub fn insert(&mut self, host: &str, login: Login) {
        self.by_host.insert(normalize_host(host), login);
    }

    pub fn with(mut self, host: &str, login: Login) -> Credentials {
        self.insert(host, login);
        self
    }

    pub fn get(&self, host: &str) -> Option<&Login> {
        self.by_host.get(&normalize_host(host))
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Reads the auth files of this process's environment (see
    /// [`AuthFileEnv::paths`]). Missing files are skipped; unreadable or
    /// malformed ones are errors naming the file.
    pub fn from_auth_files() -> Result<Credentials> {
        Self::from_auth_files_in(&AuthFileEnv::from_process())
    }

    pub fn from_auth_files_in(env: &AuthFileEnv) -> Result<Credentials> {
        let mut creds = Credentials::new();
        for path in env.paths() {
            match Self::load_file(&path) {
                Ok(found) => {
                    // Earlier files win, as in containers/image.
                    for (host, login) in found.by_host {
                        creds.by_host.entry(host).or_insert(login);
                    }
                }
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(creds)
    }

    /// Reads one auth file (`auth.json` or docker's `config.json`).
    pub fn load_file(path: &Path) -> Result<Credentials> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse_auth_file(&text).map_err(|reason| Error::AuthFile {
            path: path.to_owned(),
            reason,
        })
    }

    fn parse_auth_file(text: &[u8]) -> Result<Credentials, String> {
        let file: AuthFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut creds = Credentials::new();
        for (key, entry) in file.auths {
            let Some(host) = host_of_key(&key) else {
                tracing::debug!(key, "skipping repository-scoped auth entry");
                continue;
            };
            let Some(auth) = entry.auth.filter(|a| !a.is_empty()) else {
                continue;
            };
            let decoded = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| format!("auths[{key:?}].auth is not base64 of UTF-8 text"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auths[{key:?}].auth does not decode to user:password"))?;
            creds.by_host.insert(host, Login::new(user, password));
        }
        Ok(creds)
    }
}

/// The registry host an `auths` key names, or `None` for a key scoped to a
/// repository. Keys with a scheme are docker's legacy URLs
/// (`https://index.docker.io/v1/`): only their host counts.
fn host_of_key(key: &str) -> Option<String> {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let host = match stripped {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None if key.contains('/') => return None,
        None => key,
    };
    (!host.is_empty()).then(|| normalize_host(host))
}

/// Docker Hub answers to several names; credentials use `docker.io`.
pub(crate) fn normalize_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn parses_podman_and_docker_files() {
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"auth": "{}"}},
                "quay.io/team/repo": {{"auth": "{}"}},
                "helper.example": {{}}
            }}, "credHelpers": {{"gcr.io": "gcloud"}}}}"#,
            b64("hub:pw"),
            b64("alice:a:b"),
            b64("x:y")
        );
        let c = Credentials::parse_auth_file(text.as_bytes()).unwrap();
        assert_eq!(c.get("docker.io"), Some(&Login::new("hub", "pw")));
        assert_eq!(
            c.get("registry-1.docker.io"),
            Some(&Login::new("hub", "pw"))
        );
        // Only the first colon separates user from password.
        assert_eq!(c.get("127.0.0.1:5000"), Some(&Login::new("alice", "a:b")));
        assert_eq!(c.get("quay.io"), None);
        assert_eq!(c.get("helper.example"), None);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let bad = format!(r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#, b64("nocolon"));
        assert!(Credentials::parse_auth_file(bad.as_bytes()).is_err());
        assert!(Credentials::parse_auth_file(br#"{"auths": {"h": {"auth": "!!"}}}"#).is_err());
        assert!(Credentials::parse_auth_file(b"{").is_err());
    }

    #[test]
    fn search_order_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let run = dir.path().join("run");
        let write = |path: PathBuf, user: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = format!(
                r#"{{"auths": {{"reg.example": {{"auth": "{}"}}, "{user}.example": {{"auth": "{}"}}}}}}"#,
                b64(&format!("{user}:pw")),
                b64(&format!("{user}:pw"))
            );
            std::fs::write(path, text).unwrap();
        };
        write(run.join("containers/auth.json"), "runtime");
        write(home.join(".docker/config.json"), "docker");
        let env = AuthFileEnv {
            xdg_runtime_dir: Some(run.clone()),
            home: Some(home.clone()),
            ..AuthFileEnv::default()
        };
        let c = Credentials::from_auth_files_in(&env).unwrap();
        assert_eq!(c.get("reg.example").unwrap().username, "runtime");
        assert_eq!(c.get("docker.example").unwrap().username, "docker");
        assert_eq!(c.get("runtime.example").unwrap().username, "runtime");

        let only = dir.path().join("only.json");
        write(only.clone(), "only");
        let env = AuthFileEnv {
            registry_auth_file: Some(only),
            ..env
        };
        let c = Credentials::from_auth_files_in(&env).unwrap();
        assert_eq!(c.get("reg.example").unwrap().username, "only");
        assert_eq!(c.get("docker.example"), None);
    }

    #[test]
    fn malformed_file_error_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        std::fs::write(&path, "not json").unwrap();
        let err = Credentials::load_file(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Credentials::new().with("h", Login::new("u", "secret"));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
