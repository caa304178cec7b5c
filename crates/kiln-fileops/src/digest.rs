//! The build-cache key of a COPY/ADD source set, and the per-file digest
//! cache that lets a no-change rebuild skip reading file contents.
//!
//! What goes in (as BuildKit's contenthash): each source's path, and for
//! every entry below it its relative path, file type, permission and
//! setuid/setgid/sticky bits, link target, device number and content. Not
//! mtimes or atimes. Owners only for image/stage roots, where COPY keeps them;
//! for the build context they cannot matter (COPY writes 0:0 or `--chown`).
//! What a source's `--exclude` patterns leave out is not read, so editing an
//! excluded file keeps the key (as BuildKit's content checksums do); a
//! `--parents` source adds its kept path and the directories on that path,
//! which the copy recreates.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dirs::{join_rel, list, open_subdir};
use crate::error::{Error, IoContext, Result};
use crate::exclude::{Excludes, leaves_out};
use crate::root::{Lookup, Root, RootKind, is_dir, resolve};
use crate::sources::SourceMatch;

/// Read size for hashing: large enough to run at SHA-NI speed.
const CHUNK: usize = 1 << 20;

/// A file whose mtime or ctime is this recent may still change within the
/// same timestamp tick after we hash it; such digests are not cached.
const RACY_WINDOW: Duration = Duration::from_millis(100);

/// Digests of file contents keyed by path and cheap metadata, saved between
/// builds so that unchanged files are not read again (one cache per root).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct FileDigestCache {
    entries: HashMap<String, CacheEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
    ctime_sec: i64,
    ctime_nsec: i64,
    ino: u64,
    mode: u32,
    sha256: String,
}

impl CacheEntry {
    fn key_of(st: &Stat) -> CacheEntry {
        CacheEntry {
            size: st.st_size as u64,
            mtime_sec: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
            ctime_sec: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec as i64,
            ino: st.st_ino,
            mode: st.st_mode,
            sha256: String::new(),
        }
    }

    fn same_file(&self, other: &CacheEntry) -> bool {
        CacheEntry {
            sha256: String::new(),
            ..self.clone()
        } == *other
    }
}

impl FileDigestCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a cache saved by [`FileDigestCache::save`]; a missing file is an empty cache.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Cache {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io("read", path.display().to_string(), e)),
        }
    }

    /// Saves the cache atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let json = serde_json::to_vec(self).map_err(|source| Error::Cache {
            path: shown.clone(),
            source,
        })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).ctx("write", &tmp.display().to_string())?;
        std::fs::rename(&tmp, path).ctx("rename", &shown)
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a digest computation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DigestStats {
    /// Entries (files, directories, links…) visited.
    pub entries: u64,
    /// Regular files whose contents were read.
    pub files_hashed: u64,
    /// Bytes of content read.
    pub bytes_hashed: u64,
    /// Regular files whose digest came from the cache.
    pub cache_hits: u64,
}

/// A source set's digest and how it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// `sha256:<hex>`.
    pub digest: String,
    pub stats: DigestStats,
}

/// The cache key of copying `matches` out of `root`.
pub fn content_digest(
    root: &Root,
    matches: &[SourceMatch],
    cache: &mut FileDigestCache,
) -> Result<ContentDigest> {
    let mut walker = Walker {
        root,
        cache,
        excludes: None,
        stats: DigestStats::default(),
        outer: Sha256::new(),
        buf: Vec::new(),
    };
    for m in matches {
        walker.record(&["source", &m.path]);
        let (excludes, ex_base) = m.exclude_scope();
        walker.excludes = excludes;
        let mut lookup = Lookup::Follow;
        if let Some((pivot, keep)) = m.pivot() {
            walker.record(&["parents", keep]);
            walker.kept_dirs(pivot, keep)?;
            lookup = Lookup::NoFollow;
        }
        let r = resolve(root, &m.path, lookup)?;
        let st = r
            .stat(root)?
            .ok_or_else(|| Error::SourceNotFound(m.path.clone()))?;
        let parent = r.parent(root);
        let name = r
            .last
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| ".".to_string());
        walker.entry(parent, &name, &st, "", &r.relative(), ex_base)?;
    }
    Ok(ContentDigest {
        digest: format!("sha256:{}", hex::encode(walker.outer.finalize())),
        stats: walker.stats,
    })
}

struct Walker<'a> {
    root: &'a Root,
    cache: &'a mut FileDigestCache,
    /// `--exclude` patterns of the source being walked.
    excludes: Option<Excludes>,
    stats: DigestStats,
    outer: Sha256,
    buf: Vec<u8>,
}

impl Walker<'_> {
    /// One NUL-framed record; names and link targets cannot hold NUL, so
    /// records cannot be confused with one another.
    fn record(&mut self, fields: &[&str]) {
        for f in fields {
            self.outer.update(f.as_bytes());
            self.outer.update([0u8]);
        }
        self.outer.update([b'\n']);
    }

    /// Records the directories on a `--parents` source's kept path (all of
    /// `keep` but its last component, below the directory `pivot`).
    fn kept_dirs(&mut self, pivot: String, keep: &str) -> Result<()> {
        let names: Vec<&str> = keep.split('/').collect();
        let mut lexical = pivot;
        let mut kept = String::new();
        for name in &names[..names.len() - 1] {
            lexical = join_rel(&lexical, name);
            kept = join_rel(&kept, name);
            let shown = format!("/{lexical}");
            let st = resolve(self.root, &shown, Lookup::Follow)?
                .stat(self.root)?
                .filter(is_dir)
                .ok_or_else(|| Error::NotADirectory(shown.clone()))?;
            let (mode, owner) = self.mode_owner(&st);
            self.record(&[&kept, "parent-dir", &mode, &owner]);
        }
        Ok(())
    }

    fn mode_owner(&self, st: &Stat) -> (String, String) {
        let owner = match self.root.kind() {
            RootKind::Image => format!("{}:{}", st.st_uid, st.st_gid),
            RootKind::Context => String::new(),
        };
        (format!("{:o}", st.st_mode & 0o7777), owner)
    }

    /// Hashes the entry `name` in `dir`; `rel` is its path below the source,
    /// `real` its canonical path in the root (the cache and .dockerignore
    /// key), `ex_path` where `--exclude` sees it.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &str,
        st: &Stat,
        rel: &str,
        real: &str,
        ex_path: &str,
    ) -> Result<()> {
        self.stats.entries += 1;
        let ft = FileType::from_raw_mode(st.st_mode);
        let (mode, owner) = self.mode_owner(st);
        let shown = format!("/{real}");
        match ft {
            FileType::Directory => {
                self.record(&[rel, "dir", &mode, &owner]);
                let sub = open_subdir(dir, name, &shown)?;
                for (child, cst) in list(sub.as_fd(), &shown)? {
                    let child_real = join_rel(real, &child);
                    if self.root.is_excluded(&child_real)
                        && !(FileType::from_raw_mode(cst.st_mode) == FileType::Directory
                            && self.root.may_include_under(&child_real))
                    {
                        continue;
                    }
                    let child_ex = join_rel(ex_path, &child);
                    if leaves_out(
                        self.root,
                        self.excludes.as_ref(),
                        sub.as_fd(),
                        &child,
                        &cst,
                        &child_ex,
                        &child_real,
                    )? {
                        continue;
                    }
                    self.entry(
                        sub.as_fd(),
                        &child,
                        &cst,
                        &join_rel(rel, &child),
                        &child_real,
                        &child_ex,
                    )?;
                }
            }
            FileType::RegularFile => {
                let sum = self.file_digest(dir, name, st, real)?;
                self.record(&[rel, "file", &mode, &owner, &st.st_size.to_string(), &sum]);
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(dir, name, Vec::new()).ctx("readlink", &shown)?;
                self.record(&[rel, "symlink", &mode, &owner, &target.to_string_lossy()]);
            }
            other => {
                let kind = format!("{other:?}");
                self.record(&[rel, &kind, &mode, &owner, &st.st_rdev.to_string()]);
            }
        }
        Ok(())
    }

    fn file_digest(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &str,
        st: &Stat,
        real: &str,
    ) -> Result<String> {
        let key = CacheEntry::key_of(st);
        if let Some(hit) = self.cache.entries.get(real)
            && hit.same_file(&key)
        {
            self.stats.cache_hits += 1;
            return Ok(hit.sha256.clone());
        }
        let shown = format!("/{real}");
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", &shown)?;
        let mut file = std::fs::File::from(fd);
        if self.buf.len() != CHUNK {
            self.buf = vec![0u8; CHUNK];
        }
        let mut h = Sha256::new();
        let mut read = 0u64;
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", shown, e)),
            };
            h.update(&self.buf[..n]);
            read += n as u64;
        }
        self.stats.files_hashed += 1;
        self.stats.bytes_hashed += read;
        let sum = hex::encode(h.finalize());
        let after = rustix::fs::fstat(file.as_fd()).ctx("stat", &shown)?;
        if CacheEntry::key_of(&after).same_file(&key) && read == key.size && !is_racy(&after) {
            self.cache.entries.insert(
                real.to_string(),
                CacheEntry {
                    sha256: sum.clone(),
                    ..key
                },
            );
        }
        Ok(sum)
    }
}

fn is_racy(st: &Stat) -> bool {
    let newest = (st.st_mtime, st.st_mtime_nsec as i64).max((st.st_ctime, st.st_ctime_nsec as i64));
    let ts = UNIX_EPOCH
        + Duration::new(
            newest.0.max(0) as u64,
            newest.1.clamp(0, 999_999_999) as u32,
        );
    match SystemTime::now().duration_since(ts) {
        Ok(age) => age < RACY_WINDOW,
        Err(_) => true,
    }
}
