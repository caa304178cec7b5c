//! Layers in and out of the store: a step's upper directory becomes a
//! compressed blob plus a layer directory (no copy: the directory is moved),
//! and a pulled blob is unpacked once into a layer directory.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use kiln_layer::{Expected, ImageFormat, TarOptions, UnpackMode};
use kiln_oci::{Descriptor, Digest};

use crate::error::{BuildError, io_err};
use crate::image::Format;
use crate::options::Compression;
use crate::store::{LayerInfo, Store, remove_any};

pub fn layer_compression(c: Compression) -> kiln_layer::Compression {
    c
}

pub fn layer_format(f: Format) -> ImageFormat {
    match f {
        Format::Oci => ImageFormat::Oci,
        Format::Docker => ImageFormat::Docker,
    }
}

/// Whether an upper directory holds any change at all.
pub fn is_empty_dir(dir: &Path) -> Result<bool, BuildError> {
    let mut rd = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    Ok(rd.next().is_none())
}

/// How a layer blob is written: compression, manifest format, timestamps.
#[derive(Debug, Clone, Copy)]
pub struct BlobSpec {
    pub compression: Compression,
    pub format: Format,
    pub source_date_epoch: Option<i64>,
}

/// Writes the tar that `produce` emits as a compressed blob into the store
/// (staged, then renamed to its digest) and records its layer info.
/// `check` sees the result before it is committed.
fn store_blob(
    store: &Store,
    spec: BlobSpec,
    produce: impl FnOnce(
        &mut kiln_layer::LayerBlobWriter<std::io::BufWriter<File>>,
        &TarOptions,
    ) -> kiln_layer::Result<kiln_layer::TarStats>,
    check: impl FnOnce(&kiln_layer::LayerBlob) -> Result<(), BuildError>,
) -> Result<LayerInfo, BuildError> {
    // Staged inside a locked scratch directory: another build opening the
    // same store clears `tmp/` of everything not locked.
    let scratch = store.scratch("blob")?;
    let staging = scratch.path().join("blob");
    let opts = TarOptions {
        source_date_epoch: spec.source_date_epoch,
    };
    let (blob, _) = kiln_layer::compress_to_file(
        &staging,
        layer_compression(spec.compression),
        layer_format(spec.format),
        |w| produce(w, &opts),
    )?;
    if let Err(e) = check(&blob) {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    store.commit_blob_file(&staging, &blob.digest)?;
    let info = LayerInfo {
        digest: blob.digest,
        diff_id: blob.diff_id,
        size: blob.size,
        media_type: blob.media_type.to_string(),
    };
    store.put_layer_info(&info)?;
    Ok(info)
}

/// Turns `upper` into a stored layer: the tar is written and compressed in
/// one pass, the blob stored under its digest, and `upper` itself moved into
/// the store as the layer's directory.
pub fn commit_upper(store: &Store, upper: &Path, spec: BlobSpec) -> Result<LayerInfo, BuildError> {
    let info = store_blob(
        store,
        spec,
        |w, opts| kiln_layer::write_layer(upper, opts, w),
        |_| Ok(()),
    )?;
    store.commit_layer_dir(upper, &info.diff_id)?;
    Ok(info)
}

/// Re-creates the blob of a stored layer directory in another compression
/// (the tar is deterministic, so the diff_id is the same).
pub fn recompress(
    store: &Store,
    diff_id: &Digest,
    spec: BlobSpec,
) -> Result<LayerInfo, BuildError> {
    let dir = store.layer_dir(diff_id);
    store_blob(
        store,
        spec,
        |w, opts| kiln_layer::write_layer(&dir, opts, w),
        |blob| {
            if &blob.diff_id == diff_id {
                Ok(())
            } else {
                Err(BuildError::Internal(format!(
                    "layer directory {} no longer matches its diff_id {diff_id} (now {})",
                    dir.display(),
                    blob.diff_id
                )))
            }
        },
    )
}

/// Unpacks a stored blob into the layer directory of `diff_id`, verifying
/// both digests on the way. Idempotent.
pub fn unpack_blob(store: &Store, desc: &Descriptor, diff_id: &Digest) -> Result<(), BuildError> {
    if store.has_layer_dir(diff_id) {
        return Ok(());
    }
    let blob = store.blob_path(&desc.digest);
    let file = File::open(&blob).map_err(|e| io_err(&blob, e))?;
    let scratch = store.scratch("unpack")?;
    let dest = scratch.path().join("layer");
    std::fs::create_dir(&dest).map_err(|e| io_err(&dest, e))?;
    let expected = Expected {
        digest: Some(desc.digest.clone()),
        diff_id: Some(diff_id.clone()),
        size: u64::try_from(desc.size).ok(),
    };
    kiln_layer::unpack_layer(
        BufReader::with_capacity(1 << 20, file),
        Some(&expected),
        &dest,
        UnpackMode::Layer,
    )
    .map_err(|e| BuildError::BaseLayer {
        digest: desc.digest.clone(),
        error: e,
    })?;
    store.commit_layer_dir(&dest, diff_id)?;
    Ok(())
}

/// Removes paths the sandbox created as mount points and could not remove
/// itself, so they do not end up in the layer.
pub fn drop_stubs(upper: &Path, stubs: &[std::path::PathBuf]) {
    for stub in stubs {
        let rel = stub.strip_prefix("/").unwrap_or(stub);
        if rel.as_os_str().is_empty() || rel.components().any(|c| c.as_os_str() == "..") {
            continue;
        }
        let _ = remove_any(&upper.join(rel));
    }
}

/// Builds a full root filesystem in `dest` from layer directories (topmost
/// first, as overlay takes them): the copying snapshotter's view of a stack.
/// Each layer is streamed as its tar straight into an apply-mode unpack, so
/// whiteouts delete and opaque directories clear exactly as in an image.
pub fn materialize(lowers: &[std::path::PathBuf], dest: &Path) -> Result<(), BuildError> {
    materialize_filtered(lowers, dest, &|_| true)
}

/// [`materialize`] restricted to the paths `keep` accepts (layer-relative,
/// `/`-separated, no leading slash): a content scan needs the package
/// databases, not the whole image.
pub fn materialize_filtered(
    lowers: &[std::path::PathBuf],
    dest: &Path,
    keep: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<(), BuildError> {
    std::fs::create_dir_all(dest).map_err(|e| io_err(dest, e))?;
    for layer in lowers.iter().rev() {
        let changes: Vec<kiln_layer::Change> = kiln_layer::layer_changes(layer)?
            .into_iter()
            .filter(|c| keep(c.path()))
            .collect();
        if changes.is_empty() {
            continue;
        }
        let (reader, writer) = std::io::pipe().map_err(|e| io_err(layer, e))?;
        let applied = std::thread::scope(|scope| {
            let producer = scope.spawn(|| {
                let w = std::io::BufWriter::with_capacity(1 << 20, writer);
                kiln_layer::write_changes(&changes, &TarOptions::default(), w)
            });
            let applied = kiln_layer::unpack_layer(
                BufReader::with_capacity(1 << 20, reader),
                None,
                dest,
                UnpackMode::Apply,
            );
            let produced = producer
                .join()
                .map_err(|_| BuildError::Internal("layer writer thread panicked".into()));
            (applied, produced)
        });
        let (applied, produced) = applied;
        produced??;
        applied?;
    }
    Ok(())
}

/// Whether `path` (layer-relative) is one of `dirs` (absolute), lies below
/// one, or is a directory on the way to one (which may be a symlink that
/// the scan must follow).
pub fn on_the_way_to(path: &[u8], dirs: &[&str]) -> bool {
    dirs.iter().any(|d| {
        let d = d.trim_start_matches('/').as_bytes();
        path == d
            || (path.starts_with(d) && path.get(d.len()) == Some(&b'/'))
            || (d.starts_with(path) && d.get(path.len()) == Some(&b'/'))
    })
}

/// The copying snapshotter's commit: the changes from `old` to `new` become
/// a blob, and the blob is unpacked into the layer's directory so the store
/// looks the same as with overlay. `None` when nothing changed.
pub fn commit_tree_diff(
    store: &Store,
    old: &Path,
    new: &Path,
    spec: BlobSpec,
) -> Result<Option<LayerInfo>, BuildError> {
    let changes = kiln_layer::tree_changes(old, new)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let info = store_blob(
        store,
        spec,
        |w, opts| kiln_layer::write_changes(&changes, opts, w),
        |_| Ok(()),
    )?;
    let desc = Descriptor {
        media_type: info.media_type.clone(),
        digest: info.digest.clone(),
        size: i64::try_from(info.size).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        artifact_type: None,
        platform: None,
    };
    unpack_blob(store, &desc, &info.diff_id)?;
    Ok(Some(info))
}

/// A copy of a root filesystem, reflinked where the filesystem can.
pub fn copy_rootfs(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let status = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(src)
        .arg(dest)
        .status()
        .map_err(|e| io_err(src, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Internal(format!(
            "copying the root filesystem {} failed ({status})",
            src.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::on_the_way_to;

    #[test]
    fn paths_on_the_way_to_package_databases() {
        let dirs = ["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
        for yes in [
            "var",
            "var/lib",
            "var/lib/rpm",
            "var/lib/rpm/rpmdb.sqlite",
            "usr/lib/sysimage",
        ] {
            assert!(on_the_way_to(yes.as_bytes(), &dirs), "{yes}");
        }
        for no in ["var/lib/rpmx", "var/log", "etc", "usr/bin/sh", "var/lib/rp"] {
            assert!(!on_the_way_to(no.as_bytes(), &dirs), "{no}");
        }
    }
}
