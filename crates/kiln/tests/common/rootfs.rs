//! Snapshots of unpacked root filesystems, and readable differences.
//!
//! A [`Snapshot`] records, for every path below a root directory, what an
//! image build decides: the kind of file, permission bits (setuid, setgid
//! and sticky included), owner, size, content digest, symlink target,
//! device numbers, extended attributes, and which paths share an inode
//! (hardlinks). It leaves out what a build does not decide: timestamps,
//! inode numbers, directory sizes.
//!
//! [`diff`] compares two snapshots and returns a [`Diff`] whose `Display`
//! is bounded, so a broken build fails with a short report instead of a
//! dump of the whole image. Paths are image paths (`/etc/passwd`); the
//! root itself is `/`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Char => "char device",
            Kind::Block => "block device",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        })
    }
}

/// What a snapshot records about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes of files and symlinks; `None` for the rest (a
    /// directory's size is the filesystem's business).
    pub size: Option<u64>,
    /// `sha256:<hex>` of a regular file's content.
    pub sha256: Option<String>,
    /// A symlink's target, as stored.
    pub target: Option<String>,
    /// `(major, minor)` of a device node.
    pub rdev: Option<(u32, u32)>,
    /// For files with more than one link inside the tree: the smallest path
    /// of the group of paths sharing the inode. Two trees hardlink alike
    /// exactly when every path names the same group.
    pub hardlink_group: Option<String>,
    /// Extended attributes, name → hex of the value.
    pub xattrs: BTreeMap<String, String>,
}

/// Every path below a root directory and what it holds.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: PathBuf,
    pub entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// Walks `root` (without following symlinks) and records every entry.
    pub fn take(root: &Path) -> Result<Self> {
        let root = &root
            .canonicalize()
            .with_context(|| format!("snapshot root {}", root.display()))?;
        let mut entries = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
        walk(root, root, &mut entries, &mut inodes)?;
        for mut paths in inodes.into_values() {
            if paths.len() < 2 {
                continue;
            }
            paths.sort();
            let group = paths[0].clone();
            for p in &paths {
                if let Some(e) = entries.get_mut(p) {
                    e.hardlink_group = Some(group.clone());
                }
            }
        }
        for (path, attrs) in all_xattrs(root)? {
            if let Some(e) = entries.get_mut(&path) {
                e.xattrs = attrs;
            }
        }
        Ok(Self {
            root: root.to_owned(),
            entries,
        })
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    entries: &mut BTreeMap<String, Entry>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) -> Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("lstat {}", dir.display()))?;
    let dir_path = image_path(root, dir);
    entries.insert(dir_path, entry(dir, &meta)?);
    let mut children: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("read dir {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("read dir {}", dir.display()))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let meta =
            fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, entries, inodes)?;
            continue;
        }
        let image_path = image_path(root, &path);
        if meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(image_path.clone());
        }
        entries.insert(image_path, entry(&path, &meta)?);
    }
    Ok(())
}

/// `/` + the path relative to `root`.
fn image_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.to_string_lossy())
}

fn entry(path: &Path, meta: &fs::Metadata) -> Result<Entry> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    };
    let (size, sha256, target, rdev) = match kind {
        Kind::File => (Some(meta.len()), Some(file_sha256(path)?), None, None),
        Kind::Symlink => {
            let t = fs::read_link(path).with_context(|| format!("readlink {}", path.display()))?;
            (
                Some(meta.len()),
                None,
                Some(t.to_string_lossy().into_owned()),
                None,
            )
        }
        Kind::Char | Kind::Block => {
            let dev = meta.rdev();
            (None, None, None, Some(major_minor(dev)))
        }
        _ => (None, None, None, None),
    };
    Ok(Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        sha256,
        target,
        rdev,
        hardlink_group: None,
        xattrs: BTreeMap::new(),
    })
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Extended attributes of every path below `root`, from one `getfattr`
/// run (std has no xattr API): image path → name → hex of the value.
fn all_xattrs(root: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let out = Command::new("getfattr")
        .args([
            "--recursive",
            "--physical",
            "--no-dereference",
            "--absolute-names",
        ])
        .args(["--dump", "--match=-", "--encoding=hex"])
        .arg(root)
        .output()
        .context("cannot run getfattr (package attr; scripts/install-test-deps.sh)")?;
    if !out.status.success() {
        bail!(
            "getfattr -R {} failed ({}): {}",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut all: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(file) = line.strip_prefix("# file: ") {
            let file = PathBuf::from(unescape_octal(file));
            current = Some(image_path(root, &file));
        } else if let (Some(path), Some((name, value))) = (&current, line.split_once('=')) {
            let value = value.strip_prefix("0x").unwrap_or(value);
            all.entry(path.clone())
                .or_default()
                .insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(all)
}

/// getfattr prints unusual bytes of file names as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if octal {
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

/// Linux's encoding of device numbers (glibc `gnu_dev_major/minor`).
fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// Paths a comparison skips: glob patterns over image paths. `*` matches
/// within one path component, `**` any number of components (so `/run/**`
/// is everything below `/run`), `?` one character.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<String>,
}

impl Ignore {
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    pub fn add(&mut self, pattern: impl Into<String>) -> &mut Self {
        self.patterns.push(pattern.into());
        self
    }

    pub fn extend(&mut self, other: &Ignore) -> &mut Self {
        self.patterns.extend(other.patterns.iter().cloned());
        self
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn matches(&self, path: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob_match(p.as_bytes(), path.as_bytes()))
    }
}

/// Glob matching over `/`-separated paths (see [`Ignore`]).
pub fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            // `**/` also matches zero components.
            let rest = &rest[1..];
            let after_slash = rest.strip_prefix(b"/");
            (0..=path.len()).any(|i| {
                glob_match(rest, &path[i..])
                    || after_slash.is_some_and(|r| glob_match(r, &path[i..]))
            })
        }
        Some((b'*', rest)) => {
            let limit = path.iter().position(|c| *c == b'/').unwrap_or(path.len());
            (0..=limit).any(|i| glob_match(rest, &path[i..]))
        }
        Some((b'?', rest)) => {
            matches!(path.split_first(), Some((c, tail)) if *c != b'/' && glob_match(rest, tail))
        }
        Some((c, rest)) => {
            matches!(path.split_first(), Some((p, tail)) if p == c && glob_match(rest, tail))
        }
    }
}

/// One differing field of a path present on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    pub field: &'static str,
    pub left: String,
    pub right: String,
}

/// Differences between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    pub left_name: String,
    pub right_name: String,
    pub only_left: Vec<String>,
    pub only_right: Vec<String>,
    pub changed: Vec<(String, Vec<FieldDiff>)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.only_left.is_empty() && self.only_right.is_empty() && self.changed.is_empty()
    }

    /// How many paths differ in any way.
    pub fn count(&self) -> usize {
        self.only_left.len() + self.only_right.len() + self.changed.len()
    }
}

/// How many paths of each section [`Diff`]'s `Display` lists.
const REPORT_LIMIT: usize = 40;

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "{} and {} are equal", self.left_name, self.right_name);
        }
        writeln!(
            f,
            "{} paths differ between {} and {}:",
            self.count(),
            self.left_name,
            self.right_name
        )?;
        for (label, paths) in [
            (format!("only in {}", self.left_name), &self.only_left),
            (format!("only in {}", self.right_name), &self.only_right),
        ] {
            if paths.is_empty() {
                continue;
            }
            writeln!(f, "  {label} ({}):", paths.len())?;
            for p in paths.iter().take(REPORT_LIMIT) {
                writeln!(f, "    {p}")?;
            }
            if paths.len() > REPORT_LIMIT {
                writeln!(f, "    ... and {} more", paths.len() - REPORT_LIMIT)?;
            }
        }
        if !self.changed.is_empty() {
            writeln!(
                f,
                "  different ({}), as {} | {}:",
                self.changed.len(),
                self.left_name,
                self.right_name
            )?;
            for (path, fields) in self.changed.iter().take(REPORT_LIMIT) {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|d| format!("{} {} | {}", d.field, d.left, d.right))
                    .collect();
                writeln!(f, "    {path}: {}", fields.join("; "))?;
            }
            if self.changed.len() > REPORT_LIMIT {
                writeln!(f, "    ... and {} more", self.changed.len() - REPORT_LIMIT)?;
            }
        }
        Ok(())
    }
}

/// Compares `left` with `right`, skipping paths `ignore` matches. The names
/// label the sides in the report (e.g. "buildah", "kiln").
pub fn diff(
    left_name: &str,
    left: &Snapshot,
    right_name: &str,
    right: &Snapshot,
    ignore: &Ignore,
) -> Diff {
    let mut d = Diff {
        left_name: left_name.to_owned(),
        right_name: right_name.to_owned(),
        ..Diff::default()
    };
    for (path, l) in &left.entries {
        if ignore.matches(path) {
            continue;
        }
        match right.entries.get(path) {
            None => d.only_left.push(path.clone()),
            Some(r) => {
                let fields = entry_diff(l, r, ignore);
                if !fields.is_empty() {
                    d.changed.push((path.clone(), fields));
                }
            }
        }
    }
    for path in right.entries.keys() {
        if !ignore.matches(path) && !left.entries.contains_key(path) {
            d.only_right.push(path.clone());
        }
    }
    d
}

fn entry_diff(l: &Entry, r: &Entry, ignore: &Ignore) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, a: String, b: String| {
        if a != b {
            out.push(FieldDiff {
                field: name,
                left: a,
                right: b,
            });
        }
    };
    field("kind", l.kind.to_string(), r.kind.to_string());
    field("mode", format!("{:04o}", l.mode), format!("{:04o}", r.mode));
    field(
        "owner",
        format!("{}:{}", l.uid, l.gid),
        format!("{}:{}", r.uid, r.gid),
    );
    field("size", opt(&l.size), opt(&r.size));
    field("sha256", opt(&l.sha256), opt(&r.sha256));
    field("target", opt(&l.target), opt(&r.target));
    field("rdev", format!("{:?}", l.rdev), format!("{:?}", r.rdev));
    // A hardlink partner that is ignored on both sides says nothing.
    let group = |g: &Option<String>| match g {
        Some(g) if !ignore.matches(g) => g.clone(),
        Some(_) => "(ignored path)".to_owned(),
        None => "-".to_owned(),
    };
    field(
        "hardlinked with",
        group(&l.hardlink_group),
        group(&r.hardlink_group),
    );
    field(
        "xattrs",
        format!("{:?}", l.xattrs),
        format!("{:?}", r.xattrs),
    );
    out
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}
