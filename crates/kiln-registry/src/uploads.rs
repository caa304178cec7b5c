//! Blob upload sessions. Bytes are staged in `DATA_DIR/uploads/<id>/data`,
//! hashed as they are written (one pass over the socket's bytes), and survive
//! a restart: a session found on disk but not in memory is re-hashed once.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kiln_oci::{Algorithm, Digest, Hasher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const WRITE_CHUNK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload session {0} is unknown, finished or belongs to another repository")]
    Unknown(String),
    #[error("chunk starts at byte {got} but the upload has {have} bytes")]
    OutOfOrder { got: u64, have: u64 },
    #[error("request body ended early after {received} bytes: {reason}")]
    Incomplete { received: u64, reason: String },
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("upload I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upload task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UploadError + '_ {
    move |source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    repo: String,
}

pub struct Session {
    pub id: Uuid,
    pub repo: String,
    dir: PathBuf,
    offset: u64,
    /// None after a restart until the staged bytes are hashed again.
    hasher: Option<Hasher>,
}

impl Session {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

pub type SessionHandle = Arc<tokio::sync::Mutex<Session>>;

pub struct Uploads {
    dir: PathBuf,
    fsync: bool,
    open: Mutex<HashMap<Uuid, SessionHandle>>,
}

/// A finished upload: its verified digest and the staged file holding it.
pub struct Finished {
    pub digest: Digest,
    pub size: u64,
    pub staged: PathBuf,
    dir: PathBuf,
}

impl Finished {
    /// Removes what is left of the session once the blob is committed.
    pub async fn cleanup(self) {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

impl Uploads {
    pub fn new(dir: PathBuf, fsync: bool) -> Result<Uploads, UploadError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Uploads {
            dir,
            fsync,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, SessionHandle>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn create(&self, repo: &str) -> Result<SessionHandle, UploadError> {
        let id = Uuid::new_v4();
        let dir = self.dir.join(id.to_string());
        let meta = serde_json::to_vec(&Meta {
            repo: repo.to_string(),
        })
        .unwrap_or_default();
        let fsync = self.fsync;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), UploadError> {
            std::fs::create_dir(&d).map_err(io_err(&d))?;
            std::fs::File::create(d.join("data")).map_err(io_err(&d))?;
            let mut f = std::fs::File::create(d.join("meta.json")).map_err(io_err(&d))?;
            f.write_all(&meta).map_err(io_err(&d))?;
            if fsync {
                f.sync_all().map_err(io_err(&d))?;
            }
            Ok(())
        })
        .await??;
        let s = Arc::new(tokio::sync::Mutex::new(Session {
            id,
            repo: repo.to_string(),
            dir,
            offset: 0,
            hasher: Some(Algorithm::Sha256.hasher()),
        }));
        self.sessions().insert(id, s.clone());
        Ok(s)
    }

    /// The session `id` of `repo`, from memory or, after a restart, from disk.
    pub async fn get(&self, repo: &str, id: &str) -> Result<SessionHandle, UploadError> {
        let unknown = || UploadError::Unknown(id.to_string());
        let uuid = Uuid::parse_str(id).map_err(|_| unknown())?;
        let found = self.sessions().get(&uuid).cloned();
        if let Some(s) = found {
            if s.lock().await.repo == repo {
                return Ok(s);
            }
            return Err(unknown());
        }
        let dir = self.dir.join(uuid.to_string());
        let meta = match tokio::fs::read(dir.join("meta.json")).await {
            Ok(m) => m,
            Err(_) => return Err(unknown()),
        };
        let meta: Meta = serde_json::from_slice(&meta).map_err(|_| unknown())?;
        if meta.repo != repo {
            return Err(unknown());
        }
        let offset = tokio::fs::metadata(dir.join("data"))
            .await
            .map_err(|_| unknown())?
            .len();
        let s = Arc::new(tokio::sync::Mutex::new(Session {
            id: uuid,
            repo: meta.repo,
            dir,
            offset,
            hasher: None,
        }));
        // Another request may have loaded it meanwhile; keep the first.
        Ok(self.sessions().entry(uuid).or_insert(s).clone())
    }

    /// Appends a request body. `start`, from `Content-Range`, must equal the
    /// bytes already received. On a broken body the session is rolled back to
    /// where it was, so a retry can resume cleanly.
    pub async fn append<S, E>(
        &self,
        session: &mut Session,
        start: Option<u64>,
        body: S,
    ) -> Result<u64, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(got) = start
            && got != session.offset
        {
            return Err(UploadError::OutOfOrder {
                got,
                have: session.offset,
            });
        }
        let hasher = match session.hasher.take() {
            Some(h) => h,
            None => rehash(session.data(), Algorithm::Sha256).await?,
        };
        let path = session.data();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let before = (session.offset, hasher.clone());
        let early = self.fsync.then_some(session.offset);
        match write_stream(file, hasher, body, early).await {
            Ok((n, hasher)) => {
                session.offset += n;
                session.hasher = Some(hasher);
                Ok(session.offset)
            }
            Err(e) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(before.0).map_err(io_err(&path))?;
                session.hasher = Some(before.1);
                Err(e)
            }
        }
    }

    /// Verifies the staged bytes against `expected` and ends the session.
    pub async fn finish(
        &self,
        session: &mut Session,
        expected: &Digest,
    ) -> Result<Finished, UploadError> {
        let actual = match session.hasher.take() {
            Some(h) if h.algorithm() == expected.algorithm() => h.finish(),
            _ => rehash(session.data(), expected.algorithm()).await?.finish(),
        };
        if &actual != expected {
            // Keep the session usable: the client may fix its digest.
            session.hasher = None;
            return Err(UploadError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.sessions().remove(&session.id);
        let _ = tokio::fs::remove_file(session.dir.join("meta.json")).await;
        Ok(Finished {
            digest: actual,
            size: session.offset,
            staged: session.data(),
            dir: session.dir.clone(),
        })
    }

    pub async fn cancel(&self, session: &Session) {
        self.sessions().remove(&session.id);
        let _ = tokio::fs::remove_dir_all(&session.dir).await;
    }

    pub fn open_count(&self) -> usize {
        self.sessions().len()
    }

    /// Removes sessions idle for longer than `ttl`; returns how many.
    pub async fn sweep(&self, ttl: Duration, dry_run: bool) -> Result<usize, UploadError> {
        let mut removed = 0;
        let mut dirs = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(io_err(&self.dir))?;
        while let Some(entry) = dirs.next_entry().await.map_err(io_err(&self.dir))? {
            let path = entry.path();
            let newest = ["data", "meta.json"]
                .iter()
                .filter_map(|f| {
                    std::fs::metadata(path.join(f))
                        .and_then(|m| m.modified())
                        .ok()
                })
                .max()
                .or_else(|| std::fs::metadata(&path).and_then(|m| m.modified()).ok());
            let idle = newest
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if idle < ttl {
                continue;
            }
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok())
            {
                let busy = self
                    .sessions()
                    .get(&id)
                    .is_some_and(|s| s.try_lock().is_err());
                if busy {
                    continue;
                }
                if !dry_run {
                    self.sessions().remove(&id);
                }
            }
            if !dry_run {
                let _ = tokio::fs::remove_dir_all(&path).await;
            }
            removed += 1;
        }
        Ok(removed)
    }
}

async fn rehash(path: PathBuf, alg: Algorithm) -> Result<Hasher, UploadError> {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(io_err(&path))?;
            if n == 0 {
                return Ok(h);
            }
            h.update(&buf[..n]);
        }
    })
    .await?
}

/// Asks the kernel to start writing `len` bytes at `offset` to the disk now
/// (sync_file_range with SYNC_FILE_RANGE_WRITE: no waiting, no metadata).
/// Only a head start: the fsync when the blob is stored is what makes it
/// durable, so a failure here is ignored.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is owned by `file`, open for the whole call;
    // sync_file_range reads no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

type WriteJob = tokio::task::JoinHandle<Result<(std::fs::File, Hasher), UploadError>>;

/// Writes the stream to `file` while hashing it; the disk write of one chunk
/// overlaps receiving the next. The body's frames are written as they came
/// (one `writev` per chunk of about WRITE_CHUNK bytes), never copied into a
/// buffer of ours first. With `writeback_from` (the file offset the stream
/// starts at; set when blobs are fsynced), each chunk's writeback to the
/// disk starts as soon as it is written, so the fsync at the end waits for
/// the last chunks only instead of the whole blob.
async fn write_stream<S, E>(
    file: std::fs::File,
    hasher: Hasher,
    mut body: S,
    writeback_from: Option<u64>,
) -> Result<(u64, Hasher), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut state = Some((file, hasher));
    let mut pending: Option<WriteJob> = None;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut buffered = 0usize;
    let mut total = 0u64;
    let mut written = 0u64;
    let mut spawn = |file: std::fs::File, mut hasher: Hasher, frames: Vec<Bytes>| -> WriteJob {
        let len: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let at = writeback_from.map(|start| start + written);
        written += len;
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            write_frames(&mut file, &frames).map_err(|source| UploadError::Io {
                path: PathBuf::from("upload data"),
                source,
            })?;
            if let Some(at) = at {
                start_writeback(&file, at, len);
            }
            for f in &frames {
                hasher.update(f);
            }
            Ok((file, hasher))
        })
    };
    let unfinished = |total| UploadError::Incomplete {
        received: total,
        reason: "internal".into(),
    };
    loop {
        match body.next().await {
            Some(Ok(bytes)) => {
                if bytes.is_empty() {
                    continue;
                }
                total += bytes.len() as u64;
                buffered += bytes.len();
                frames.push(bytes);
                if buffered < WRITE_CHUNK {
                    continue;
                }
            }
            Some(Err(e)) => {
                if let Some(p) = pending.take() {
                    let _ = p.await;
                }
                return Err(UploadError::Incomplete {
                    received: total,
                    reason: e.to_string(),
                });
            }
            None => break,
        }
        let (file, hasher) = match pending.take() {
            Some(p) => p.await??,
            None => state.take().ok_or_else(|| unfinished(total))?,
        };
        buffered = 0;
        pending = Some(spawn(file, hasher, std::mem::take(&mut frames)));
    }
    let (file, hasher) = match pending.take() {
        Some(p) => p.await??,
        None => state.take().ok_or_else(|| unfinished(total))?,
    };
    let (_, hasher) = if frames.is_empty() {
        (file, hasher)
    } else {
        spawn(file, hasher, frames).await??
    };
    Ok((total, hasher))
}

/// Writes every frame, in order, with as few `writev` calls as the kernel allows.
fn write_frames(file: &mut std::fs::File, frames: &[Bytes]) -> std::io::Result<()> {
    // The kernel takes at most IOV_MAX (1024) slices per call.
    const MAX_SLICES: usize = 1024;
    let mut slices: Vec<std::io::IoSlice<'_>> =
        frames.iter().map(|f| std::io::IoSlice::new(f)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_SLICES);
        match file.write_vectored(&rest[..n]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => std::io::IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn frames_are_written_in_order_past_the_slice_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let mut f = std::fs::File::create(&path).unwrap();
        // More frames than one writev takes, of uneven sizes.
        let frames: Vec<Bytes> = (0..2500u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i % 7) as usize + 1]))
            .collect();
        write_frames(&mut f, &frames).unwrap();
        let want: Vec<u8> = frames.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[tokio::test]
    async fn chunked_upload_verifies_and_survives_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let up = Uploads::new(tmp.path().join("u"), false).unwrap();
        let s = up.create("a/b").await.unwrap();
        let id = s.lock().await.id.to_string();
        assert_eq!(
            up.append(&mut *s.lock().await, Some(0), chunks(&[b"hello ", b"wor"]))
                .await
                .unwrap(),
            9
        );
        let err = up
            .append(&mut *s.lock().await, Some(3), chunks(&[b"x"]))
            .await
            .unwrap_err();
        assert!(matches!(err, UploadError::OutOfOrder { got: 3, have: 9 }));

        // A new process sees the session on disk and re-hashes it.
        let up2 = Uploads::new(tmp.path().join("u"), false).unwrap();
        assert!(up2.get("other/repo", &id).await.is_err());
        let s2 = up2.get("a/b", &id).await.unwrap();
        assert_eq!(s2.lock().await.offset(), 9);
        up2.append(&mut *s2.lock().await, None, chunks(&[b"ld"]))
            .await
            .unwrap();
        let wrong = Digest::sha256_of(b"nope");
        assert!(matches!(
            up2.finish(&mut *s2.lock().await, &wrong).await,
            Err(UploadError::DigestMismatch { .. })
        ));
        let f = up2
            .finish(&mut *s2.lock().await, &Digest::sha256_of(b"hello world"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&f.staged).unwrap(), b"hello world");
        assert!(
            up2.get("a/b", &id).await.is_err(),
            "a finished session is gone"
        );
    }

    #[tokio::test]
    async fn broken_body_rolls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let up = Uploads::new(tmp.path().to_path_buf(), false).unwrap();
        let s = up.create("r").await.unwrap();
        up.append(&mut *s.lock().await, None, chunks(&[b"abc"]))
            .await
            .unwrap();
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"def")),
            Err("connection reset".to_string()),
        ]);
        let err = up
            .append(&mut *s.lock().await, None, broken)
            .await
            .unwrap_err();
        assert!(matches!(err, UploadError::Incomplete { received: 3, .. }));
        assert_eq!(s.lock().await.offset(), 3);
        let f = up
            .finish(&mut *s.lock().await, &Digest::sha256_of(b"abc"))
            .await
            .unwrap();
        assert_eq!(f.size, 3);
    }

    #[tokio::test]
    async fn large_body_in_many_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let up = Uploads::new(tmp.path().to_path_buf(), false).unwrap();
        let s = up.create("r").await.unwrap();
        let data: Vec<u8> = (0..(10 << 20)).map(|i| (i % 251) as u8).collect();
        let body = futures::stream::iter(
            data.chunks(65536)
                .map(|c| Ok::<_, String>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        up.append(&mut *s.lock().await, None, body).await.unwrap();
        let f = up
            .finish(&mut *s.lock().await, &Digest::sha256_of(&data))
            .await
            .unwrap();
        assert_eq!(f.size, data.len() as u64);
    }
}
