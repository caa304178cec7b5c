//! Storage over object_store. The local filesystem (the default) gets fast
//! paths: small objects are written durably (temp file, fsync, rename, fsync
//! of the directory), blobs are committed by renaming the staged upload, and
//! read by streaming the file directly.

pub mod keys;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::S3Config;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn io_err(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.as_ref().display().to_string();
    move |source| StorageError::Io { path, source }
}

/// An entry found by listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A blob's bytes as a stream, and how many there are.
pub struct BlobStream {
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Set when `store` is a LocalFileSystem rooted here.
    local_root: Option<PathBuf>,
    fsync: bool,
}

const READ_CHUNK: usize = 1 << 20;

impl Storage {
    pub fn filesystem(root: &Path, fsync: bool) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        let root = root.canonicalize().map_err(io_err(root))?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Storage {
            store: Arc::new(store),
            local_root: Some(root),
            fsync,
        })
    }

    pub fn s3(cfg: &S3Config) -> Result<Storage, StorageError> {
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.allow_http)
            .with_virtual_hosted_style_request(!cfg.path_style);
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = &cfg.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &cfg.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(b.build()?);
        let store = if cfg.prefix.is_empty() {
            store
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                store,
                cfg.prefix.as_str(),
            ))
        };
        Ok(Storage {
            store,
            local_root: None,
            fsync: true,
        })
    }

    /// Any object store (for tests and embedding).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Storage {
        Storage {
            store,
            local_root: None,
            fsync: true,
        }
    }

    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    fn local(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(key))
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        if let Some(path) = self.local(key) {
            let fsync = self.fsync;
            return tokio::task::spawn_blocking(move || write_durably(&path, &data, fsync)).await?;
        }
        self.store
            .put(&ObjPath::from(key), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        if let Some(path) = self.local(key) {
            return match tokio::fs::read(&path).await {
                Ok(v) => Ok(Some(Bytes::from(v))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&path)(e)),
            };
        }
        match self.store.get(&ObjPath::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Size and modification time, or None when absent.
    pub async fn head(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        if let Some(path) = self.local(key) {
            return match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => Ok(Some(Entry {
                    key: key.to_string(),
                    size: m.len(),
                    modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&path)(e)),
            };
        }
        match self.store.head(&ObjPath::from(key)).await {
            Ok(m) => Ok(Some(Entry {
                key: key.to_string(),
                size: m.size,
                modified: m.last_modified.into(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key`; absent keys are not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if let Some(path) = self.local(key) {
            return match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(&path)(e)),
            };
        }
        match self.store.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix`, at any depth.
    pub fn list(&self, prefix: &str) -> BoxStream<'_, Result<Entry, StorageError>> {
        let prefix = ObjPath::from(prefix.trim_end_matches('/'));
        self.store
            .list(Some(&prefix))
            .map_ok(|m| Entry {
                key: m.location.to_string(),
                size: m.size,
                modified: m.last_modified.into(),
            })
            .map_err(StorageError::from)
            .boxed()
    }

    /// The names of the objects directly under `prefix` (not deeper).
    pub async fn list_names(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let p = ObjPath::from(prefix.trim_end_matches('/'));
        let r = match self.store.list_with_delimiter(Some(&p)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(r.objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }

    /// Moves a fully written and verified staged file to `key`. The staged
    /// file must be on the data directory's filesystem.
    pub async fn commit_file(&self, staged: PathBuf, key: &str) -> Result<(), StorageError> {
        if let Some(dest) = self.local(key) {
            let fsync = self.fsync;
            return tokio::task::spawn_blocking(move || rename_durably(&staged, &dest, fsync))
                .await?;
        }
        let mut upload = self.store.put_multipart(&ObjPath::from(key)).await?;
        let mut file = tokio::fs::File::open(&staged)
            .await
            .map_err(io_err(&staged))?;
        let mut buf = vec![0u8; 8 << 20];
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(io_err(&staged))?;
            if n == 0 {
                break;
            }
            if let Err(e) = upload.put_part(PutPayload::from(buf[..n].to_vec())).await {
                let _ = upload.abort().await;
                return Err(e.into());
            }
        }
        upload.complete().await?;
        tokio::fs::remove_file(&staged)
            .await
            .map_err(io_err(&staged))?;
        Ok(())
    }

    /// Streams `key`, whole or the inclusive byte range `range`.
    pub async fn read(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<BlobStream>, StorageError> {
        if let Some(path) = self.local(key) {
            return read_local(path, range).await;
        }
        let loc = ObjPath::from(key);
        let opts = object_store::GetOptions {
            range: range.map(|(s, e)| object_store::GetRange::Bounded(s..e + 1)),
            ..Default::default()
        };
        let r = match self.store.get_opts(&loc, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = r.range.end - r.range.start;
        Ok(Some(BlobStream {
            size,
            stream: r.into_stream().map_err(StorageError::from).boxed(),
        }))
    }
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt as _;
    let mut n = 0;
    while n < buf.len() {
        let m = file.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}

async fn read_local(
    path: PathBuf,
    range: Option<(u64, u64)>,
) -> Result<Option<BlobStream>, StorageError> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let len = file.metadata().await.map_err(io_err(&path))?.len();
    let (start, size) = match range {
        // The caller has checked the range against the blob's size.
        Some((s, e)) => (s, (e + 1).saturating_sub(s).min(len.saturating_sub(s))),
        None => (0, len),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_err(&path))?;
    }
    let reader = file.take(size);
    let shown = path.display().to_string();
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
        .map_err(move |source| StorageError::Io {
            path: shown.clone(),
            source,
        })
        .boxed();
    Ok(Some(BlobStream { size, stream }))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn write_durably(path: &Path, data: &[u8], fsync: bool) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        if fsync {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

fn rename_durably(staged: &Path, dest: &Path, fsync: bool) -> Result<(), StorageError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if fsync {
        std::fs::File::open(staged)
            .and_then(|f| f.sync_all())
            .map_err(io_err(staged))?;
    }
    std::fs::rename(staged, dest).map_err(io_err(dest))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}
