//! Temporary directories that clean up after container tools.
//!
//! podman, buildah and dockerd leave mounts behind (overlay mounts of a
//! container that was not removed, dockerd's `netns` bind mount); a plain
//! recursive delete fails on them. [`Scratch`] unmounts everything below
//! itself before deleting. Set `KILN_TEST_KEEP=1` to keep the directories
//! for inspection (their paths are printed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new empty directory under the system temp dir (`$TMPDIR` or /tmp).
    pub fn new(label: &str) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), label)
    }

    /// A new empty directory under `/tmp` whatever `$TMPDIR` says: for
    /// Unix sockets, whose paths must stay under 108 bytes.
    pub fn new_short(label: &str) -> Result<Self> {
        Self::new_in(Path::new("/tmp"), label)
    }

    /// A new directory `kiln-{label}-{unique}` in `parent`. The name is
    /// lowercase on purpose: podman and buildah derive image names from
    /// `oci:` paths, and image names must be lowercase.
    pub fn new_in(parent: &Path, label: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
        let label = label.to_lowercase();
        for _ in 0..100 {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("kiln-{label}-{}-{n}-{nanos:x}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
            }
        }
        anyhow::bail!("cannot create a unique temp dir in {}", parent.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates (with parents) and returns `self/rel`.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let p = self.join(rel);
        fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.path);
        if std::env::var_os("KILN_TEST_KEEP").is_some() {
            eprintln!("KILN_TEST_KEEP: keeping {}", self.path.display());
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Lazily unmounts every mount point at or below `root`, deepest first.
pub fn unmount_below(root: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&p)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
