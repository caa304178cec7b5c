//! The registry's configuration file (TOML). Every field has a default so an
//! empty file, or none, runs a filesystem registry without auth.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::AuthConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub storage: StorageConfig,
    /// fsync blobs, manifests and their directories before acknowledging.
    #[serde(default = "yes")]
    pub fsync: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub gc: GcConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            storage: StorageConfig::default(),
            fsync: true,
            limits: Limits::default(),
            gc: GcConfig::default(),
            cache: CacheConfig::default(),
            auth: None,
            tls: None,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Under `DATA_DIR/store`.
    #[default]
    Filesystem,
    S3(S3Config),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Path-style requests (`endpoint/bucket/key`), needed by most
    /// self-hosted S3 servers.
    #[serde(default = "yes")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_manifest_bytes")]
    pub max_manifest_bytes: usize,
}

fn default_manifest_bytes() -> usize {
    4 * 1024 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: default_manifest_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between periodic collections in `serve`; 0 turns it off.
    #[serde(default)]
    pub interval_secs: u64,
    /// Blobs, and links written, more recently than this are never swept.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// Upload sessions idle for longer than this are abandoned.
    #[serde(default = "default_upload_ttl")]
    pub upload_ttl_secs: u64,
}

fn default_grace() -> u64 {
    3600
}

fn default_upload_ttl() -> u64 {
    24 * 3600
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: 0,
            grace_secs: default_grace(),
            upload_ttl_secs: default_upload_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of manifest content kept in memory.
    #[serde(default = "default_cache_bytes")]
    pub manifest_bytes: usize,
    /// How long a cached tag is trusted. Unset: forever, right when this
    /// process is the only writer; several registries sharing one bucket
    /// should set a few seconds.
    pub tag_ttl_secs: Option<u64>,
}

fn default_cache_bytes() -> usize {
    64 * 1024 * 1024
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            manifest_bytes: default_cache_bytes(),
            tag_ttl_secs: None,
        }
    }
}

/// The `[tls]` table: serve HTTPS instead of plain HTTP. Both files are
/// PEM; they may be one file holding both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
    pub key_file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_filesystem_without_auth() {
        let c = Config::parse("").unwrap();
        assert!(matches!(c.storage, StorageConfig::Filesystem));
        assert!(c.fsync && c.auth.is_none());
        assert_eq!(c.limits.max_manifest_bytes, 4 << 20);
    }

    #[test]
    fn s3_config() {
        let c = Config::parse("[storage]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\n").unwrap();
        let StorageConfig::S3(s3) = c.storage else {
            panic!("not s3")
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str(), s3.path_style),
            ("b", "us-east-1", true)
        );
    }

    #[test]
    fn tls_table_needs_both_files() {
        let c = Config::parse("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n").unwrap();
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                cert_file: "c.pem".into(),
                key_file: "k.pem".into()
            })
        );
        let e = Config::parse("[tls]\ncert_file = \"c.pem\"\n").unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        assert!(Config::parse("").unwrap().tls.is_none());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::parse("fsnyc = false").is_err());
    }
}
