//! One look at a repository: repomd.xml, and the primary file when it
//! changed, over HTTP(S) or from the local file system.

use std::io;
use std::path::{Path, PathBuf};

use reqwest::{StatusCode, Url};
use tokio::io::AsyncReadExt as _;

use super::primary::{Compression, PrimaryError, read_primary};
use super::repomd::{DataFile, RepoMdError, parse_repomd};
use super::snapshot::{RepoSnapshot, diff};
use crate::domain::rpmver::Nevra;

/// repomd.xml is a few kilobytes; anything this large is not one.
pub const MAX_REPOMD_BYTES: u64 = 8 << 20;
/// The stored (compressed) primary file. Fedora's is some 20 MB.
pub const MAX_PRIMARY_BYTES: u64 = 1 << 30;
/// The primary XML once decompressed: a bound for a file that expands
/// without end. Fedora's is a few hundred MB.
pub const MAX_PRIMARY_XML_BYTES: u64 = 4 << 30;

/// What one poll found.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The primary file is the one of the previous snapshot: nothing to store.
    Unchanged,
    /// First look (no previous snapshot): no updates, only what to remember.
    Baseline(RepoSnapshot),
    /// The primary file changed. `updates` may be empty (packages removed or
    /// downgraded, metadata regenerated); the snapshot is to be stored
    /// either way.
    Changed {
        snapshot: RepoSnapshot,
        updates: Vec<Nevra>,
    },
}

/// Every error names the URL (or path) it is about; HTTP URLs are shown
/// without their password.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    /// Connecting or reading the answer failed.
    #[error("{url}: {}", with_causes(source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url}: no such file (is the base URL a repository, with repodata/ in it?)")]
    NotFound { url: String },
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {actual} bytes, but repomd.xml says {expected}")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{url}: {checksum_type} checksum mismatch: repomd.xml says {expected}, the file has {actual}"
    )]
    ChecksumMismatch {
        url: String,
        checksum_type: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{url}: {checksum_type} checksums cannot be verified here (sha1, sha224, sha256, sha384 and sha512 can)"
    )]
    UnsupportedChecksum { url: String, checksum_type: String },
    #[error("{url}: {source}")]
    RepoMd {
        url: String,
        #[source]
        source: RepoMdError,
    },
    #[error("{url}: {source}")]
    Primary {
        url: String,
        #[source]
        source: PrimaryError,
    },
    /// The blocking parse task panicked or was cancelled.
    #[error("{url}: reading the package list stopped: {reason}")]
    Interrupted { url: String, reason: String },
}

/// reqwest's own message is only the outer layer ("error sending
/// request"); the cause ("Connection refused") is what a person needs.
fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// Looks at the repository at `baseurl` once.
///
/// `baseurl` is `http://…`, `https://…`, `file:///abs/path` or an absolute
/// path, as in a `.repo` file's `baseurl` (without dnf variables). Reads
/// `repodata/repomd.xml`; when the primary file's checksum is the one in
/// `previous`, stops there ([`PollOutcome::Unchanged`]). Otherwise
/// downloads the primary file, checks its size and checksum against
/// repomd.xml, parses it and compares it with `previous`.
///
/// `http` is used for HTTP(S) only; its timeouts are the caller's: give it a
/// connect and read timeout, or a stalled server stalls the poll.
pub async fn poll(
    http: &reqwest::Client,
    baseurl: &str,
    previous: Option<&RepoSnapshot>,
) -> Result<PollOutcome, RepoError> {
    let base = Base::parse(baseurl)?;
    let repomd_source = base.join("repodata/repomd.xml")?;
    let repomd_bytes = fetch(http, &repomd_source, MAX_REPOMD_BYTES).await?;
    let repomd = parse_repomd(&repomd_bytes).map_err(|source| RepoError::RepoMd {
        url: repomd_source.shown.clone(),
        source,
    })?;
    let primary = repomd.primary;
    let checksum = format!("{}:{}", primary.checksum_type, primary.checksum);
    if previous.is_some_and(|p| p.primary_checksum == checksum) {
        tracing::debug!(repo = %base.shown(), %checksum, "repository unchanged");
        return Ok(PollOutcome::Unchanged);
    }

    let source = base.join(&primary.location)?;
    // Everything that can be refused from repomd.xml alone is, before a
    // possibly large download.
    let compression =
        Compression::from_location(&primary.location).map_err(|e| source.primary_error(e))?;
    if !VERIFIABLE_CHECKSUMS.contains(&primary.checksum_type.as_str()) {
        return Err(RepoError::UnsupportedChecksum {
            url: source.shown,
            checksum_type: primary.checksum_type,
        });
    }
    if primary.size.is_some_and(|size| size > MAX_PRIMARY_BYTES) {
        return Err(RepoError::TooLarge {
            url: source.shown,
            limit: MAX_PRIMARY_BYTES,
        });
    }
    let data = fetch(http, &source, MAX_PRIMARY_BYTES).await?;

    let url = source.shown.clone();
    let previous = previous.cloned();
    let revision = repomd.revision;
    // Hashing and parsing take seconds for a large repository: not on the
    // async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        verify(&data, &primary, &source.shown)?;
        let packages = read_primary(&data[..], compression, MAX_PRIMARY_XML_BYTES)
            .map_err(|e| source.primary_error(e))?;
        let (mut snapshot, updates) = diff(
            previous.as_ref().unwrap_or(&RepoSnapshot::default()),
            &packages,
        );
        snapshot.revision = revision;
        snapshot.primary_checksum = checksum;
        Ok::<_, RepoError>(match previous {
            None => PollOutcome::Baseline(snapshot),
            Some(_) => PollOutcome::Changed { snapshot, updates },
        })
    })
    .await
    .map_err(|e| RepoError::Interrupted {
        url,
        reason: e.to_string(),
    })??;
    match &outcome {
        PollOutcome::Changed { updates, .. } => {
            tracing::debug!(repo = %base.shown(), updates = updates.len(), "repository changed");
        }
        PollOutcome::Baseline(snapshot) => {
            tracing::debug!(repo = %base.shown(), packages = snapshot.latest.len(), "repository baseline");
        }
        PollOutcome::Unchanged => {}
    }
    Ok(outcome)
}

/// The size and checksum repomd.xml gives for the file.
fn verify(data: &[u8], file: &DataFile, url: &str) -> Result<(), RepoError> {
    let actual_size = data.len() as u64;
    if let Some(expected) = file.size
        && expected != actual_size
    {
        return Err(RepoError::SizeMismatch {
            url: url.to_string(),
            expected,
            actual: actual_size,
        });
    }
    let actual =
        digest_hex(&file.checksum_type, data).ok_or_else(|| RepoError::UnsupportedChecksum {
            url: url.to_string(),
            checksum_type: file.checksum_type.clone(),
        })?;
    if actual != file.checksum {
        return Err(RepoError::ChecksumMismatch {
            url: url.to_string(),
            checksum_type: file.checksum_type.clone(),
            expected: file.checksum.clone(),
            actual,
        });
    }
    Ok(())
}

/// The checksum types [`digest_hex`] computes: not md5 (no implementation
/// in the dependency tree, and no current repository uses it).
const VERIFIABLE_CHECKSUMS: &[&str] = &["sha1", "sha224", "sha256", "sha384", "sha512"];

/// The lowercase hex digest of `data`; `None` for a type not in
/// [`VERIFIABLE_CHECKSUMS`].
fn digest_hex(checksum_type: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest as _;
    Some(match checksum_type {
        "sha1" => hex::encode(sha1::Sha1::digest(data)),
        "sha224" => hex::encode(sha2::Sha224::digest(data)),
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha384" => hex::encode(sha2::Sha384::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        _ => return None,
    })
}

/// A repository's base, checked once.
enum Base {
    Http(Url),
    /// A local directory; `as_url` when it was given as `file://`, so that
    /// messages show it the way it was given.
    Dir {
        path: PathBuf,
        as_url: bool,
    },
}

/// One file of the repository.
struct Source {
    location: Location,
    /// For messages: the URL without its password, or the path.
    shown: String,
}

enum Location {
    Http(Url),
    File(PathBuf),
}

impl Base {
    fn parse(baseurl: &str) -> Result<Base, RepoError> {
        let bad = |reason: String| RepoError::BaseUrl {
            url: baseurl.to_string(),
            reason,
        };
        if baseurl.starts_with('/') {
            return Ok(Base::Dir {
                path: PathBuf::from(baseurl),
                as_url: false,
            });
        }
        let mut url = Url::parse(baseurl).map_err(|e| {
            bad(format!(
                "{e} (expected http://, https://, file:// or an absolute path)"
            ))
        })?;
        match url.scheme() {
            "http" | "https" => {
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(bad(
                        "a query or fragment would be lost on the repository's file URLs"
                            .to_string(),
                    ));
                }
                // Without the slash, joining replaces the last segment.
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                Ok(Base::Http(url))
            }
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(bad(
                        "file URLs on another host are not supported".to_string()
                    ));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not a local absolute path".to_string()))?;
                Ok(Base::Dir { path, as_url: true })
            }
            other => Err(bad(format!(
                "unsupported scheme {other:?} (expected http://, https://, file:// or an absolute path)"
            ))),
        }
    }

    /// `href` is relative and stays inside the repository (repomd.xml's
    /// locations are checked when parsed).
    fn join(&self, href: &str) -> Result<Source, RepoError> {
        match self {
            Base::Http(base) => {
                let url = base.join(href).map_err(|e| RepoError::BaseUrl {
                    url: shown_url(base),
                    reason: format!("cannot add {href:?}: {e}"),
                })?;
                Ok(Source {
                    shown: shown_url(&url),
                    location: Location::Http(url),
                })
            }
            Base::Dir { path, as_url } => {
                let path = path.join(href);
                Ok(Source {
                    shown: shown_path(&path, *as_url),
                    location: Location::File(path),
                })
            }
        }
    }

    fn shown(&self) -> String {
        match self {
            Base::Http(url) => shown_url(url),
            Base::Dir { path, as_url } => shown_path(path, *as_url),
        }
    }
}

impl Source {
    fn primary_error(&self, source: PrimaryError) -> RepoError {
        RepoError::Primary {
            url: self.shown.clone(),
            source,
        }
    }
}

fn shown_url(url: &Url) -> String {
    let mut url = url.clone();
    // Fails only for URLs that cannot have credentials: nothing to hide.
    let _ = url.set_password(None);
    url.to_string()
}

fn shown_path(path: &Path, as_url: bool) -> String {
    if as_url {
        format!("file://{}", path.display())
    } else {
        path.display().to_string()
    }
}

/// The whole file, refused beyond `limit` bytes.
async fn fetch(http: &reqwest::Client, source: &Source, limit: u64) -> Result<Vec<u8>, RepoError> {
    let url = || source.shown.clone();
    let too_large = || RepoError::TooLarge { url: url(), limit };
    match &source.location {
        Location::File(path) => {
            let io_error = |e: io::Error| match e.kind() {
                io::ErrorKind::NotFound => RepoError::NotFound { url: url() },
                _ => RepoError::Io {
                    url: url(),
                    source: e,
                },
            };
            let file = tokio::fs::File::open(path).await.map_err(io_error)?;
            let length = file.metadata().await.map_err(io_error)?.len();
            if length > limit {
                return Err(too_large());
            }
            let mut data = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
            // The file may grow between the size check and the read.
            file.take(limit.saturating_add(1))
                .read_to_end(&mut data)
                .await
                .map_err(io_error)?;
            if data.len() as u64 > limit {
                return Err(too_large());
            }
            Ok(data)
        }
        Location::Http(target) => {
            let http_error = |e: reqwest::Error| RepoError::Http {
                url: url(),
                // The URL is in the message already (without password).
                source: e.without_url(),
            };
            let mut response = http
                .get(target.clone())
                // Checksums are of the stored bytes: no transparent
                // decompression by the server or the client.
                .header(reqwest::header::ACCEPT_ENCODING, "identity")
                .send()
                .await
                .map_err(http_error)?;
            let status = response.status();
            if !status.is_success() {
                return Err(RepoError::Status { url: url(), status });
            }
            if response.content_length().is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            let mut data = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(http_error)? {
                if (data.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                data.extend_from_slice(&chunk);
            }
            Ok(data)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn shown(baseurl: &str, href: &str) -> String {
        Base::parse(baseurl).unwrap().join(href).unwrap().shown
    }

    #[test]
    fn base_urls_in_every_accepted_form() {
        assert_eq!(
            shown(
                "https://mirror.example/fedora/40/x86_64/os",
                "repodata/repomd.xml"
            ),
            "https://mirror.example/fedora/40/x86_64/os/repodata/repomd.xml"
        );
        assert_eq!(
            shown("http://mirror.example/repo/", "repodata/repomd.xml"),
            "http://mirror.example/repo/repodata/repomd.xml"
        );
        assert_eq!(
            shown(
                "http://user:secret@mirror.example/repo",
                "repodata/p.xml.gz"
            ),
            "http://user@mirror.example/repo/repodata/p.xml.gz"
        );
        assert_eq!(
            shown("file:///srv/my%20repo", "repodata/repomd.xml"),
            "file:///srv/my repo/repodata/repomd.xml"
        );
        assert_eq!(
            shown("file://localhost/srv/repo/", "repodata/repomd.xml"),
            "file:///srv/repo/repodata/repomd.xml"
        );
        assert_eq!(
            shown("/srv/repo", "repodata/repomd.xml"),
            "/srv/repo/repodata/repomd.xml"
        );
        let Location::File(path) = Base::parse("file:///srv/my%20repo")
            .unwrap()
            .join("repodata/repomd.xml")
            .unwrap()
            .location
        else {
            panic!("not a file")
        };
        assert_eq!(path, Path::new("/srv/my repo/repodata/repomd.xml"));
    }

    #[test]
    fn refuses_other_base_urls() {
        let cases: &[(&str, &str)] = &[
            ("srv/repo", "absolute path"),
            ("", "absolute path"),
            ("ftp://mirror.example/repo", "unsupported scheme \"ftp\""),
            ("https://mirror.example/repo?token=1", "query"),
            ("file://otherhost/srv/repo", "another host"),
            ("https://", "expected http://"),
        ];
        for (baseurl, message) in cases {
            let Err(err) = Base::parse(baseurl) else {
                panic!("{baseurl:?} accepted")
            };
            assert!(
                matches!(err, RepoError::BaseUrl { .. }),
                "{baseurl}: {err:?}"
            );
            assert!(err.to_string().contains(message), "{baseurl}: {err}");
        }
    }

    #[test]
    fn digests_of_every_verifiable_type() {
        // The digests of "abc" from FIPS 180.
        let cases = [
            ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                "sha224",
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                "sha256",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "sha384",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                "sha512",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(digest_hex(kind, b"abc").as_deref(), Some(want), "{kind}");
        }
        let kinds: Vec<&str> = cases.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, VERIFIABLE_CHECKSUMS);
        assert_eq!(digest_hex("md5", b"abc"), None);
    }

    #[test]
    fn verify_checks_size_then_checksum() {
        let file = DataFile {
            location: "p.xml".to_string(),
            checksum: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .to_string(),
            checksum_type: "sha256".to_string(),
            size: Some(3),
        };
        verify(b"abc", &file, "u").unwrap();
        let err = verify(b"abcd", &file, "u").unwrap_err();
        assert_eq!(err.to_string(), "u: 4 bytes, but repomd.xml says 3");
        let err = verify(b"abd", &file, "u").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RepoError::ChecksumMismatch { .. }), "{err:?}");
        assert!(
            text.contains(&file.checksum) && text.contains("sha256"),
            "{text}"
        );
        let md5 = DataFile {
            checksum_type: "md5".to_string(),
            size: None,
            ..file
        };
        assert!(matches!(
            verify(b"abc", &md5, "u"),
            Err(RepoError::UnsupportedChecksum { .. })
        ));
    }
}
