//! The builder's local content store.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>          compressed layers, configs, manifests (content-addressed)
//! ROOT/layers/<diff-id hex>/        one unpacked layer in overlay format (a lower directory)
//! ROOT/layerinfo/<blob hex>.json    blob digest → diff_id, media type, size
//! ROOT/cache/<key hex>.json         build cache: step key → its result
//! ROOT/images/<sha256(ref)>.json    image reference → manifest (local images, pull policy)
//! ROOT/mounts/cache/<id>/           RUN --mount=type=cache directories
//! ROOT/context/<sha256(path)>.json  file digest cache of a build context
//! ROOT/tmp/                         step scratch (upper/work dirs, downloads)
//! ```
//! Everything becomes visible by rename once complete, so a killed build
//! leaves at worst garbage in `tmp/`, which the next build clears.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kiln_oci::{Digest, Hasher};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{BuildError, io_err};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What the store knows about one layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, BuildError> {
        for sub in [
            "blobs/sha256",
            "layers",
            "layerinfo",
            "cache",
            "images",
            "mounts/cache",
            "context",
            "tmp",
        ] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        store.clear_tmp();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    // Leftovers of killed builds; entries another live build uses are
    // protected by a lock file held while they exist.
    fn clear_tmp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            if is_locked(&path) {
                continue;
            }
            let _ = remove_any(&path);
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BuildError> {
        let p = self.blob_path(digest);
        let data = fs::read(&p).map_err(|e| io_err(&p, e))?;
        let actual = Digest::of(digest.algorithm(), &data);
        if &actual != digest {
            return Err(BuildError::CorruptBlob {
                path: p,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Stores small content (configs, manifests) under its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, BuildError> {
        let digest = Digest::sha256_of(data);
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            self.write_atomic(&dest, data)?;
        }
        Ok(digest)
    }

    /// Moves a finished file (already verified by the caller) into place.
    pub fn commit_blob_file(&self, tmp: &Path, digest: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            let _ = fs::remove_file(tmp);
        } else {
            fs::rename(tmp, &dest).map_err(|e| io_err(&dest, e))?;
        }
        Ok(dest)
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub fn has_layer_dir(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    /// Publishes a complete layer directory (an overlay upper dir or an
    /// unpacked blob). When another build got there first the copy is dropped:
    /// same diff_id, same content.
    pub fn commit_layer_dir(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            remove_any(dir).map_err(|e| io_err(dir, e))?;
            return Ok(dest);
        }
        match fs::rename(dir, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.exists() => {
                remove_any(dir).map_err(|e| io_err(dir, e))?;
                Ok(dest)
            }
            Err(e) => Err(io_err(&dest, e)),
        }
    }

    pub fn layer_info(&self, blob: &Digest) -> Option<LayerInfo> {
        self.read_json(
            &self
                .root
                .join("layerinfo")
                .join(format!("{}.json", blob.hex())),
        )
    }

    pub fn put_layer_info(&self, info: &LayerInfo) -> Result<(), BuildError> {
        let p = self
            .root
            .join("layerinfo")
            .join(format!("{}.json", info.digest.hex()));
        self.write_json(&p, info)
    }

    /// The blob of a layer in one media type (compression and format): the
    /// same layer directory gives one blob per compression.
    pub fn blob_of_layer(&self, diff_id: &Digest, media_type: &str) -> Option<LayerInfo> {
        self.read_json(&self.blob_of_layer_path(diff_id, media_type))
    }

    pub fn put_blob_of_layer(&self, info: &LayerInfo) -> Result<(), BuildError> {
        self.write_json(
            &self.blob_of_layer_path(&info.diff_id, &info.media_type),
            info,
        )
    }

    fn blob_of_layer_path(&self, diff_id: &Digest, media_type: &str) -> PathBuf {
        let media = Digest::sha256_of(media_type.as_bytes());
        self.root
            .join("layerinfo")
            .join(format!("{}-{}.json", diff_id.hex(), &media.hex()[..16]))
    }

    pub fn cache_get<T: DeserializeOwned>(&self, key: &Digest) -> Option<T> {
        self.read_json(&self.root.join("cache").join(format!("{}.json", key.hex())))
    }

    pub fn cache_put<T: Serialize>(&self, key: &Digest, value: &T) -> Result<(), BuildError> {
        let p = self.root.join("cache").join(format!("{}.json", key.hex()));
        self.write_json(&p, value)
    }

    pub fn image_get<T: DeserializeOwned>(&self, reference: &str) -> Option<T> {
        self.read_json(&self.image_path(reference))
    }

    pub fn image_put<T: Serialize>(&self, reference: &str, value: &T) -> Result<(), BuildError> {
        self.write_json(&self.image_path(reference), value)
    }

    fn image_path(&self, reference: &str) -> PathBuf {
        let d = Digest::sha256_of(reference.as_bytes());
        self.root.join("images").join(format!("{}.json", d.hex()))
    }

    pub fn context_digest_cache_path(&self, context: &Path) -> PathBuf {
        let d = Digest::sha256_of(context.as_os_str().as_encoded_bytes());
        self.root.join("context").join(format!("{}.json", d.hex()))
    }

    /// A cache-mount directory, created on first use. The id is hashed so
    /// that a hostile id cannot name a path outside the store.
    pub fn cache_mount_dir(&self, id: &str) -> Result<PathBuf, BuildError> {
        let d = Digest::sha256_of(id.as_bytes());
        let p = self.root.join("mounts/cache").join(&d.hex()[..32]);
        fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        Ok(p)
    }

    /// A fresh scratch directory, removed when the guard drops.
    pub fn scratch(&self, label: &str) -> Result<Scratch, BuildError> {
        let base = self.root.join("tmp");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{label}-"))
            .tempdir_in(&base)
            .map_err(|e| io_err(&base, e))?;
        let lock_path = dir.path().join(".lock");
        let lock = fs::File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_err(&lock_path, e.into()))?;
        Ok(Scratch {
            dir: Some(dir),
            _lock: lock,
        })
    }

    fn read_json<T: DeserializeOwned>(&self, p: &Path) -> Option<T> {
        let data = fs::read(p).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn write_json<T: Serialize>(&self, p: &Path, value: &T) -> Result<(), BuildError> {
        let data =
            serde_json::to_vec_pretty(value).map_err(|e| BuildError::Internal(e.to_string()))?;
        self.write_atomic(p, &data)
    }

    fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<(), BuildError> {
        let dir = dest.parent().unwrap_or(&self.root);
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, e))?;
        tmp.write_all(data).map_err(|e| io_err(dest, e))?;
        tmp.as_file().sync_all().map_err(|e| io_err(dest, e))?;
        tmp.persist(dest).map_err(|e| io_err(dest, e.error))?;
        Ok(())
    }
}

/// A scratch directory under `ROOT/tmp`, locked while alive so that a
/// concurrent build's clean-up leaves it alone.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    _lock: fs::File,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new("/nonexistent"),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let path = d.keep();
            let _ = remove_any(&path);
        }
    }
}

fn is_locked(dir: &Path) -> bool {
    let Ok(f) = fs::File::open(dir.join(".lock")) else {
        return false;
    };
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

/// Removes a file or a directory tree; directories made read-only inside a
/// build are made writable first.
pub fn remove_any(p: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(p);
    }
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(_) => {
            make_writable(p);
            fs::remove_dir_all(p)
        }
    }
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(p)
        && m.is_dir()
    {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Streams `src` into `dest_tmp` while hashing; returns digest and size.
pub fn copy_hashing(src: &Path, dest: &Path) -> Result<(Digest, u64), BuildError> {
    let mut input = fs::File::open(src).map_err(|e| io_err(src, e))?;
    let mut out = fs::File::create(dest).map_err(|e| io_err(dest, e))?;
    let mut hasher = Hasher::Sha256(Default::default());
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = io::Read::read(&mut input, &mut buf).map_err(|e| io_err(src, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(dest, e))?;
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_blob(b"hello").unwrap();
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        fs::write(store.blob_path(&d), b"jello").unwrap();
        let err = store.read_blob(&d).unwrap_err().to_string();
        assert!(err.contains(&d.to_string()), "{err}");
    }

    #[test]
    fn scratch_dirs_survive_a_concurrent_open_and_vanish_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store.scratch("step").unwrap();
        let p = s.path().to_path_buf();
        fs::create_dir_all(p.join("upper/a")).unwrap();
        // Another build opening the store must not delete a live scratch.
        let _again = Store::open(dir.path()).unwrap();
        assert!(p.join("upper/a").is_dir());
        drop(s);
        assert!(!p.exists());
        // A dead build's leftovers are cleared.
        fs::create_dir_all(dir.path().join("tmp/dead/upper")).unwrap();
        let _third = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("tmp/dead").exists());
    }

    #[test]
    fn cache_mount_ids_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = store.cache_mount_dir("../../etc").unwrap();
        assert!(p.starts_with(dir.path().join("mounts/cache")));
    }
}
