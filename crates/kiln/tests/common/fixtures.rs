//! Scripted fixtures (built once by a shell script, cached under `.cache/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

use super::process::RunExt;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The tiny busybox image made by `scripts/fixtures/busybox-image.sh`.
#[derive(Debug, Clone)]
pub struct BusyboxImage {
    /// OCI image layout, image tagged `latest`.
    pub oci: PathBuf,
    /// The same image in Docker v2s2 format, as a skopeo `dir:` directory.
    pub v2s2: PathBuf,
    /// `docker save` format, tagged [`BusyboxImage::ARCHIVE_TAG`].
    pub docker_archive: PathBuf,
    /// Digest of the OCI manifest.
    pub digest: String,
}

impl BusyboxImage {
    /// What the image's default command prints.
    pub const HELLO: &'static str = "hello from kiln";
    /// The name the docker archive loads as.
    pub const ARCHIVE_TAG: &'static str = "kiln-fixtures/busybox:latest";

    /// Copies the (cached) fixture into `dest` (created if missing).
    pub fn create(dest: &Path) -> Result<Self> {
        let script = repo_root().join("scripts/fixtures/busybox-image.sh");
        Command::new("bash").arg(&script).arg(dest).run_ok()?;
        let digest = fs::read_to_string(dest.join("digest"))
            .context("fixture digest")?
            .trim()
            .to_owned();
        if !digest.starts_with("sha256:") {
            bail!("bad fixture digest {digest:?}");
        }
        Ok(Self {
            oci: dest.join("oci"),
            v2s2: dest.join("v2s2"),
            docker_archive: dest.join("docker-archive.tar"),
            digest,
        })
    }

    /// `oci:DIR:latest`, for skopeo, podman and buildah.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:latest", self.oci.display())
    }

    /// `dir:DIR` of the v2s2 variant, for skopeo.
    pub fn v2s2_ref(&self) -> String {
        format!("dir:{}", self.v2s2.display())
    }

    /// The raw OCI manifest.
    pub fn manifest(&self) -> Result<Vec<u8>> {
        self.blob(&self.digest)
    }

    /// The raw v2s2 manifest and its digest.
    pub fn v2s2_manifest(&self) -> Result<(Vec<u8>, String)> {
        let raw = fs::read(self.v2s2.join("manifest.json")).context("v2s2 manifest")?;
        let digest = sha256_digest(&raw);
        Ok((raw, digest))
    }

    /// A blob of the OCI layout by digest.
    pub fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let p = self.oci.join("blobs/sha256").join(hex);
        fs::read(&p).with_context(|| format!("read {}", p.display()))
    }
}

/// Reads the manifest digest that an OCI layout's index.json gives `tag`.
pub fn oci_layout_digest(layout: &Path, tag: &str) -> Result<String> {
    let index: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("index.json"))
            .with_context(|| format!("read {}/index.json", layout.display()))?,
    )?;
    let manifests = index["manifests"]
        .as_array()
        .context("index.json without manifests")?;
    for m in manifests {
        let named = m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag);
        if let (true, Some(d)) = (named || manifests.len() == 1, m["digest"].as_str()) {
            return Ok(d.to_owned());
        }
    }
    bail!("tag {tag} not in {}/index.json: {index}", layout.display())
}
