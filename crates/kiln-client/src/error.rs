//! The client's one error type.

use std::fmt;
use std::path::PathBuf;

use kiln_oci::Digest;

/// One `{"code", "message"}` entry of a registry's error body (the
/// distribution spec's error format).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RegistryErrorCode {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl fmt::Display for RegistryErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// Renders a list of registry error codes for messages ("" when empty).
pub(crate) struct Codes<'a>(pub &'a [RegistryErrorCode]);

impl fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { " (" } else { "; " })?;
            write!(f, "{c}")?;
        }
        if !self.0.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be sent or its response not read. The message
    /// carries the whole cause chain (reqwest's own text alone rarely says
    /// what went wrong), so the error is not also exposed as `source`.
    #[error("{method} {url}: {}", chain(error))]
    Http {
        method: String,
        url: String,
        error: reqwest::Error,
    },
    /// The registry answered with a status the operation does not expect.
    #[error("{method} {url}: registry answered {status}{}", Codes(errors))]
    Status {
        method: String,
        status: u16,
        url: String,
        errors: Vec<RegistryErrorCode>,
    },
    /// Credentials are missing or wrong (401 after authenticating).
    #[error(
        "{registry}: not authorized for repository {repository:?}{}: {detail}",
        if *.had_credentials { " with the configured credentials" } else { " (no credentials configured for this registry)" }
    )]
    Unauthorized {
        registry: String,
        repository: String,
        had_credentials: bool,
        detail: String,
    },
    /// Authenticated, but not allowed to do this (403, `DENIED`).
    #[error(
        "{registry}: access to repository {repository:?} denied{}",
        Codes(errors)
    )]
    Denied {
        registry: String,
        repository: String,
        errors: Vec<RegistryErrorCode>,
    },
    /// The manifest, blob or repository does not exist.
    #[error("{what} not found on {registry}{}", Codes(errors))]
    NotFound {
        registry: String,
        /// e.g. `manifest 127.0.0.1:5000/app:1.0` or `blob sha256:… in app`.
        what: String,
        errors: Vec<RegistryErrorCode>,
    },
    #[error("{url}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        url: String,
    },
    #[error("{url}: content is {actual} bytes, expected {expected} (descriptor of {digest})")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
        url: String,
    },
    #[error("{url}: {reason}")]
    ManifestInvalid { url: String, reason: String },
    #[error("{reference}: no image for platform {wanted}; the index has: {}", available.join(", "))]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth file {}: {reason}", path.display())]
    AuthFile { path: PathBuf, reason: String },
    /// A registry handed us something unusable as a URL (a `Location`, a
    /// token realm) or gave a token response we cannot read.
    #[error("{registry}: {reason}")]
    Protocol { registry: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Setup(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether trying again may help: the connection broke, nothing the
    /// server said was wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { error, .. } => {
                error.is_connect() || error.is_timeout() || error.is_body() || error.is_request()
            }
            Error::Status { status, .. } => matches!(status, 502..=504 | 429),
            _ => false,
        }
    }
}

/// `outer: inner: innermost`, skipping causes that repeat their parent.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_message_lists_registry_codes() {
        let e = Error::Status {
            method: "PUT".into(),
            status: 400,
            url: "http://r/v2/x/manifests/1".into(),
            errors: vec![
                RegistryErrorCode {
                    code: "MANIFEST_INVALID".into(),
                    message: "bad".into(),
                },
                RegistryErrorCode {
                    code: "BLOB_UNKNOWN".into(),
                    message: String::new(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "PUT http://r/v2/x/manifests/1: registry answered 400 (MANIFEST_INVALID: bad; BLOB_UNKNOWN)"
        );
    }
}
