//! Pulling: manifests (verified against the digest asked for or announced),
//! platform resolution through indexes, and blobs streamed to disk.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kiln_oci::{Descriptor, Digest, Manifest, Reference, media};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::client::{Call, Client, Endpoint, Repo, pull_scope, read_limited};
use crate::error::{Error, Result};
use crate::partial::PartialFile;
use crate::platform::{self, Platform};

/// Registries (distribution, kiln) refuse manifests above 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Image configs are JSON held in memory; anything bigger is refused.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The header a registry names a manifest's digest in.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    /// From `Content-Type`, else the body's `mediaType` field ("" if neither).
    pub media_type: String,
    /// The digest of `bytes` (sha256 unless the reference used sha512).
    pub digest: Digest,
}

/// A single-platform image ready to be unpacked: manifest and config read
/// and verified, layers described.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference asked for.
    pub reference: Reference,
    /// The index (or manifest list) the manifest was chosen from, if any.
    pub index_digest: Option<Digest>,
    pub manifest_digest: Digest,
    pub manifest_bytes: Bytes,
    pub manifest: Manifest,
    pub media_type: String,
    pub config_bytes: Bytes,
    pub config_digest: Digest,
    pub layers: Vec<Descriptor>,
}

impl ResolvedImage {
    /// `registry/repository@manifest_digest`: what was resolved, pinned.
    pub fn pinned(&self) -> Reference {
        Reference {
            tag: None,
            digest: Some(self.manifest_digest.clone()),
            ..self.reference.clone()
        }
    }
}

pub(crate) fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn size_of(d: &Descriptor, url: &Url) -> Result<u64> {
    u64::try_from(d.size).map_err(|_| Error::ManifestInvalid {
        url: url.to_string(),
        reason: format!("descriptor {} has a negative size", d.digest),
    })
}

impl Client {
    /// Fetches a manifest by tag or digest. The bytes must hash to the
    /// reference's digest when it has one, else to `Docker-Content-Digest`
    /// when the registry sends it.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<FetchedManifest> {
        let repo = Repo::from(reference);
        let ep = self.endpoint(&repo.registry).await?;
        let url = ep.url(&format!(
            "/v2/{}/manifests/{}",
            repo.name,
            reference.manifest_ref()
        ))?;
        let call = Call::new(Method::GET, url.clone(), &repo.name, pull_scope(&repo.name))
            .header(ACCEPT, accept.join(", "));
        let resp = self.execute(&ep, &call).await?;
        if !resp.status().is_success() {
            let what = format!("manifest {reference}");
            return Err(self
                .status_error(&ep, "GET", &url, resp, &repo.name, &what)
                .await);
        }
        let content_type = header_str(&resp, CONTENT_TYPE.as_str())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|c| !c.is_empty());
        let announced = match header_str(&resp, DOCKER_CONTENT_DIGEST) {
            Some(d) => Some(d.parse::<Digest>().map_err(|e| Error::ManifestInvalid {
                url: url.to_string(),
                reason: format!("Docker-Content-Digest header: {e}"),
            })?),
            None => None,
        };
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| e.into_error("GET", &url))?;
        let expected = reference.digest.clone().or(announced);
        let algorithm = expected
            .as_ref()
            .map_or(kiln_oci::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                expected,
                actual: digest,
                url: url.to_string(),
            });
        }
        let media_type = content_type
            .or_else(|| media_type_field(&bytes))
            .unwrap_or_default();
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Resolves `reference` to one image for `platform`, following an OCI
    /// index or Docker manifest list, and reads its config.
    pub async fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        let repo = Repo::from(reference);
        let top = self.get_manifest(reference, &media::MANIFEST_TYPES).await?;
        let parsed = parse_manifest(&top, reference)?;
        let (index_digest, fetched, manifest) = if parsed.kind.is_index() {
            let chosen = platform::choose(&parsed.manifests, platform).ok_or_else(|| {
                Error::NoMatchingPlatform {
                    reference: reference.to_string(),
                    wanted: platform.to_string(),
                    available: platform::available(&parsed.manifests),
                }
            })?;
            let child_ref = Reference {
                digest: Some(chosen.digest.clone()),
                ..reference.clone()
            };
            let child = self
                .get_manifest(&child_ref, &media::MANIFEST_TYPES)
                .await?;
            if i64::try_from(child.bytes.len()).ok() != Some(chosen.size) {
                return Err(Error::SizeMismatch {
                    digest: chosen.digest.clone(),
                    expected: chosen.size.max(0).unsigned_abs(),
                    actual: child.bytes.len() as u64,
                    url: child_ref.to_string(),
                });
            }
            let manifest = parse_manifest(&child, &child_ref)?;
            if manifest.kind.is_index() {
                return Err(Error::ManifestInvalid {
                    url: child_ref.to_string(),
                    reason: "an index entry for a platform is itself an index".to_owned(),
                });
            }
            (Some(top.digest), child, manifest)
        } else {
            (None, top, parsed)
        };
        let config = manifest
            .config
            .clone()
            .ok_or_else(|| Error::ManifestInvalid {
                url: reference.to_string(),
                reason: "image manifest has no config".to_owned(),
            })?;
        let config_bytes = self
            .fetch_blob_bytes(&repo, &config, MAX_CONFIG_BYTES)
            .await?;
        Ok(ResolvedImage {
            reference: reference.clone(),
            index_digest,
            manifest_digest: fetched.digest,
            manifest_bytes: fetched.bytes,
            media_type: fetched.media_type,
            config_digest: config.digest,
            config_bytes,
            layers: manifest.layers.clone(),
            manifest,
        })
    }

    /// Reads a small blob (a config) into memory, checking size and digest.
    pub async fn fetch_blob_bytes(
        &self,
        repo: &Repo,
        desc: &Descriptor,
        max: u64,
    ) -> Result<Bytes> {
        let ep = self.endpoint(&repo.registry).await?;
        let url = blob_url(&ep, repo, &desc.digest)?;
        let size = size_of(desc, &url)?;
        if size > max {
            return Err(Error::ManifestInvalid {
                url: url.to_string(),
                reason: format!(
                    "blob {} is {size} bytes, more than the {max} read into memory",
                    desc.digest
                ),
            });
        }
        let resp = self.get_blob(&ep, repo, &desc.digest, &url).await?;
        let limit = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let bytes = read_limited(resp, limit).await.map_err(|e| match e {
            crate::client::ReadError::TooLarge(_) => Error::SizeMismatch {
                digest: desc.digest.clone(),
                expected: size,
                actual: size + 1,
                url: url.to_string(),
            },
            other => other.into_error("GET", &url),
        })?;
        check_size(desc, size, bytes.len() as u64, &url)?;
        let actual = Digest::of(desc.digest.algorithm(), &bytes);
        if actual != desc.digest {
            return Err(Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
                url: url.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Downloads a blob to `dest`: written to `dest.partial` while hashed,
    /// size and digest checked, fsynced, then renamed into place. On any
    /// failure no file is left behind. Transient failures (broken
    /// connection, 502-504) are retried from the start, up to
    /// [`ClientOptions::retries`](crate::ClientOptions) more times;
    /// `progress` gets the bytes written so far (from 0 again on a retry).
    pub async fn fetch_blob(
        &self,
        repo: &Repo,
        desc: &Descriptor,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.fetch_blob_once(repo, desc, dest, progress).await {
                Err(e) if e.is_transient() && attempt < self.inner.options.retries => {
                    attempt += 1;
                    tracing::warn!(%e, attempt, "blob download failed, retrying");
                    tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_blob_once(
        &self,
        repo: &Repo,
        desc: &Descriptor,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        let ep = self.endpoint(&repo.registry).await?;
        let url = blob_url(&ep, repo, &desc.digest)?;
        let size = size_of(desc, &url)?;
        let mut resp = self.get_blob(&ep, repo, &desc.digest, &url).await?;
        let mut file = PartialFile::create(dest).await?;
        let mut hasher = desc.digest.algorithm().hasher();
        let mut written: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|error| Error::Http {
            method: "GET".to_owned(),
            url: url.to_string(),
            error,
        })? {
            written += chunk.len() as u64;
            // Stop a server that sends more than announced before it fills the disk.
            if written > size {
                return Err(Error::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: size,
                    actual: written,
                    url: url.to_string(),
                });
            }
            hasher.update(&chunk);
            file.write(&chunk).await?;
            progress(written);
        }
        check_size(desc, size, written, &url)?;
        let actual = hasher.finish();
        if actual != desc.digest {
            return Err(Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
                url: url.to_string(),
            });
        }
        file.commit().await
    }

    /// GET of a blob, redirects followed (to object storage, without our
    /// `Authorization`: reqwest drops it on a change of host).
    async fn get_blob(
        &self,
        ep: &Endpoint,
        repo: &Repo,
        digest: &Digest,
        url: &Url,
    ) -> Result<reqwest::Response> {
        let call = Call::new(Method::GET, url.clone(), &repo.name, pull_scope(&repo.name));
        let resp = self.execute(ep, &call).await?;
        if !resp.status().is_success() {
            let what = format!("blob {digest} in {}", repo.name);
            return Err(self
                .status_error(ep, "GET", url, resp, &repo.name, &what)
                .await);
        }
        Ok(resp)
    }
}

pub(crate) fn blob_url(ep: &Endpoint, repo: &Repo, digest: &Digest) -> Result<Url> {
    ep.url(&format!("/v2/{}/blobs/{digest}", repo.name))
}

fn check_size(desc: &Descriptor, expected: u64, actual: u64, url: &Url) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected,
            actual,
            url: url.to_string(),
        })
    }
}

fn parse_manifest(m: &FetchedManifest, reference: &Reference) -> Result<Manifest> {
    let content_type = Some(m.media_type.as_str()).filter(|t| !t.is_empty());
    Manifest::parse(&m.bytes, content_type).map_err(|e| Error::ManifestInvalid {
        url: format!("{}@{}", Repo::from(reference), m.digest),
        reason: e.to_string(),
    })
}

/// The `mediaType` field of a manifest body, if it has one.
fn media_type_field(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}
