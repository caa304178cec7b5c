//! Writing a built image as an OCI image layout directory or archive
//! (`--output oci-dir:PATH`, `--output oci-archive:PATH`).

use std::fs;
use std::path::{Path, PathBuf};

use kiln_oci::{Descriptor, media};

use crate::error::{BuildError, io_err};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    OciDir(PathBuf),
    OciArchive(PathBuf),
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("oci-dir", p)) if !p.is_empty() => Ok(Output::OciDir(p.into())),
            Some(("oci-archive", p)) if !p.is_empty() => Ok(Output::OciArchive(p.into())),
            _ => Err(format!(
                "unknown output {s:?}: use oci-dir:PATH or oci-archive:PATH"
            )),
        }
    }
}

/// Everything an output needs: the manifest's descriptor and every blob it
/// references (config first), all present in the store.
pub struct ImageBlobs<'a> {
    pub manifest: &'a Descriptor,
    pub blobs: Vec<&'a Descriptor>,
    pub ref_name: Option<&'a str>,
}

pub fn write(store: &Store, image: &ImageBlobs<'_>, output: &Output) -> Result<(), BuildError> {
    match output {
        Output::OciDir(dir) => write_layout(store, image, dir),
        Output::OciArchive(path) => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let staging = tempfile::tempdir_in(parent).map_err(|e| io_err(parent, e))?;
            write_layout(store, image, staging.path())?;
            let tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| io_err(parent, e))?;
            {
                let mut builder = tar::Builder::new(tmp.as_file());
                builder.follow_symlinks(false);
                builder
                    .append_dir_all(".", staging.path())
                    .map_err(|e| io_err(path, e))?;
                builder.finish().map_err(|e| io_err(path, e))?;
            }
            tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
            tmp.persist(path).map_err(|e| io_err(path, e.error))?;
            Ok(())
        }
    }
}

fn write_layout(store: &Store, image: &ImageBlobs<'_>, dir: &Path) -> Result<(), BuildError> {
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(|e| io_err(&blob_dir, e))?;
    for desc in image.blobs.iter().copied().chain([image.manifest]) {
        let src = store.blob_path(&desc.digest);
        let dest = blob_dir.join(desc.digest.hex());
        if dest.exists() {
            continue;
        }
        // A hard link costs nothing when the layout is on the store's disk.
        if fs::hard_link(&src, &dest).is_err() {
            fs::copy(&src, &dest).map_err(|e| io_err(&src, e))?;
        }
    }
    let layout = dir.join("oci-layout");
    fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| io_err(&layout, e))?;

    // Keep other images already in the layout, replacing one with the same name.
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
        .unwrap_or_default();
    let mut entry =
        serde_json::to_value(image.manifest).map_err(|e| BuildError::Internal(e.to_string()))?;
    if let Some(name) = image.ref_name {
        manifests.retain(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(|v| v.as_str())
                != Some(name)
        });
        entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": name });
    }
    manifests.push(entry);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let data = serde_json::to_vec(&index).map_err(|e| BuildError::Internal(e.to_string()))?;
    fs::write(&index_path, data).map_err(|e| io_err(&index_path, e))?;
    Ok(())
}
