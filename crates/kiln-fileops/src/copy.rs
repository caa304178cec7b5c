//! COPY (and ADD of non-archives) into a destination root, with
//! Docker/BuildKit semantics. See the crate docs for the rules.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::chmod::Chmod;
use crate::dirs::{join_rel, list, open_subdir};
use crate::error::{Error, IoContext, Result};
use crate::exclude::{Excludes, leaves_out};
use crate::meta::{Meta, apply_at, apply_fd, copy_xattrs, finish_fd};
use crate::paths::{Cleaned, destination};
use crate::root::{
    Lookup, NewDirs, Resolved, Root, RootKind, is_dir, mkdir_all, open_resolved, resolve,
};
use crate::sources::SourceMatch;
use crate::users::resolve_user;

/// Flags of a COPY/ADD instruction that change what is written.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown` as written (`app`, `1000`, `app:staff`, `:staff`); names are
    /// looked up in the destination root's /etc/passwd and /etc/group.
    pub chown: Option<String>,
    /// `--chmod` as written (`640`, `0755`, `u+x,go-w`).
    pub chmod: Option<String>,
}

/// One source of a copy: the root it lives in and what matched there.
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    pub root: &'a Root,
    pub source: &'a SourceMatch,
}

/// What a copy wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Files written as a hard link to a file written earlier in the same source.
    pub hardlinks: u64,
    /// FIFOs and device nodes.
    pub specials: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

impl CopyStats {
    pub(crate) fn add(&mut self, o: &CopyStats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.specials += o.specials;
        self.bytes += o.bytes;
    }
}

/// `--chown`/`--chmod` resolved against the destination.
#[derive(Debug, Clone)]
pub(crate) struct Resolved0 {
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
}

impl Resolved0 {
    pub fn new(dest_root: &Root, opts: &CopyOptions) -> Result<Self> {
        Ok(Resolved0 {
            chown: opts
                .chown
                .as_deref()
                .map(|s| resolve_user(dest_root, s))
                .transpose()?,
            chmod: opts.chmod.as_deref().map(Chmod::parse).transpose()?,
        })
    }

    /// Directories created on the way to the destination: 0755, owned by the
    /// `--chown` owner (BuildKit's `MkdirAll(…, 0755, chown)`, buildah's `ChownNew`).
    pub fn new_dirs(&self) -> NewDirs {
        NewDirs {
            mode: 0o755,
            owner: self.chown.unwrap_or((0, 0)),
        }
    }
}

/// Copies `sources` to `dest` inside `dest_root` as `COPY` does.
///
/// `dest` is relative to `workdir` unless absolute. It is a directory when it
/// ends in `/` (or `/.`) or already is one; several sources (after wildcard
/// expansion) need such a destination, and so do `--parents` sources.
/// Otherwise a single non-directory source is written *as* `dest`.
///
/// Entries below a source that its `--exclude` patterns
/// ([`SourceMatch::exclude`]) leave out are not copied. A `--parents`
/// source ([`SourceMatch::parents`]) lands at its kept path below `dest`;
/// the directories on that path are copied from the source's (owner, mode,
/// times, xattrs, as for any copied directory), holding only what was selected.
pub fn copy(
    dest_root: &Root,
    sources: &[CopySource<'_>],
    dest: &str,
    workdir: &str,
    opts: &CopyOptions,
) -> Result<CopyStats> {
    let resolved = Resolved0::new(dest_root, opts)?;
    let (dest_path, dir_hint) = destination(dest, workdir);
    let dest_is_dir = check_dest(dest_root, sources, dest, &dest_path, dir_hint)?;
    let mut stats = CopyStats::default();
    for src in sources {
        let s = copy_one(dest_root, src, &dest_path, dest_is_dir, &resolved)?;
        stats.add(&s);
    }
    Ok(stats)
}

/// [`check_multi`]; `--parents` sources always go *into* the destination,
/// which is then a directory whatever its spelling (as BuildKit does).
pub(crate) fn check_dest(
    dest_root: &Root,
    sources: &[CopySource<'_>],
    dest: &str,
    dest_path: &Cleaned,
    dir_hint: bool,
) -> Result<bool> {
    if sources.iter().any(|s| s.source.parents.is_some()) {
        return Ok(true);
    }
    check_multi(dest_root, sources.len(), dest, dest_path, dir_hint)
}

/// Docker's rule: several sources (written, or from a wildcard) need a
/// destination that ends in `/`; an existing directory is accepted too, as
/// BuildKit copies into it. Returns whether the destination is a directory.
pub(crate) fn check_multi(
    dest_root: &Root,
    count: usize,
    dest: &str,
    dest_path: &Cleaned,
    dir_hint: bool,
) -> Result<bool> {
    if dir_hint || count <= 1 {
        return Ok(dir_hint);
    }
    let existing_dir = match resolve(dest_root, &dest_path.absolute(), Lookup::Follow) {
        Ok(r) => r.stat(dest_root)?.is_some_and(|st| is_dir(&st)),
        Err(_) => false,
    };
    if existing_dir {
        Ok(true)
    } else {
        Err(Error::DestNotDirectory(dest.to_string()))
    }
}

/// Copies one source (following a symlink in its last component, unless
/// it is a `--parents` source).
pub(crate) fn copy_one(
    dest_root: &Root,
    src: &CopySource<'_>,
    dest_path: &Cleaned,
    dest_is_dir: bool,
    opts: &Resolved0,
) -> Result<CopyStats> {
    if let Some((pivot, keep)) = src.source.pivot() {
        return copy_parents(dest_root, src, pivot, keep, dest_path, opts);
    }
    let sr = resolve(src.root, &src.source.path, Lookup::Follow)
        .map_err(|e| not_found_as_source(e, &src.source.path))?;
    let Some(st) = sr.stat(src.root)? else {
        return Err(Error::SourceNotFound(src.source.path.clone()));
    };
    let mut copier = Copier::new(dest_root, src.root, opts);
    let (excludes, ex_base) = src.source.exclude_scope();
    copier.excludes = excludes;
    let src_parent = sr.parent(src.root);
    let src_name = sr
        .last
        .as_ref()
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| ".".to_string());
    if is_dir(&st) {
        // A directory's contents go into dest, which is created (0755, chown
        // owner) but keeps its own metadata if it exists.
        let (dr, _) = mkdir_all(dest_root, &dest_path.absolute(), opts.new_dirs())
            .map_err(|e| non_dir_dest(e, &dest_path.absolute()))?;
        let dst_fd = open_resolved(dest_root, &dr, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let src_fd = open_subdir(src_parent, &src_name, &sr.display())?;
        copier.contents(
            src_fd.as_fd(),
            &sr.relative(),
            dst_fd.as_fd(),
            &dr.relative(),
            ex_base,
        )?;
        return Ok(copier.stats);
    }
    let (dst_dir, dst_name) =
        file_target(dest_root, dest_path, dest_is_dir, &src.source.path, opts)?;
    let dst_fd = open_resolved(dest_root, &dst_dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
    copier.entry(
        src_parent,
        &src_name,
        &st,
        &sr.relative(),
        dst_fd.as_fd(),
        &dst_name,
        &dst_dir.relative(),
        ex_base,
    )?;
    Ok(copier.stats)
}

/// Copies a `--parents` source to `dest/keep` (`keep` below the directory
/// `pivot`): the directories on the way are copied from the source's
/// (created or merged, their metadata set once what they hold is written),
/// the last component as it is.
fn copy_parents(
    dest_root: &Root,
    src: &CopySource<'_>,
    pivot: String,
    keep: &str,
    dest_path: &Cleaned,
    opts: &Resolved0,
) -> Result<CopyStats> {
    let names: Vec<&str> = keep.split('/').collect();
    let Some((last, dirs)) = names.split_last() else {
        return Ok(CopyStats::default());
    };
    let mut copier = Copier::new(dest_root, src.root, opts);
    copier.excludes = src.source.exclude_scope().0;

    let (dr, _) = mkdir_all(dest_root, &dest_path.absolute(), opts.new_dirs())
        .map_err(|e| non_dir_dest(e, &dest_path.absolute()))?;
    let mut dst_rel = dr.relative();
    let mut dst_fd = open_resolved(dest_root, &dr, OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut src_lexical = pivot;
    // (source directory, its stat, destination directory, its path): their
    // metadata is set last, innermost first.
    let mut made = Vec::new();
    for name in dirs {
        src_lexical = join_rel(&src_lexical, name);
        let shown_src = format!("/{src_lexical}");
        let r = resolve(src.root, &shown_src, Lookup::Follow)
            .map_err(|e| not_found_as_source(e, &shown_src))?;
        let st = match r.stat(src.root)? {
            Some(st) if is_dir(&st) => st,
            Some(_) => return Err(Error::NotADirectory(shown_src)),
            None => return Err(Error::SourceNotFound(shown_src)),
        };
        let src_fd = open_resolved(src.root, &r, OFlags::RDONLY | OFlags::DIRECTORY)?;
        dst_rel = join_rel(&dst_rel, name);
        let shown = format!("/{dst_rel}");
        match rustix::fs::statat(&dst_fd, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(ex) if is_dir(&ex) => {}
            Ok(_) => return Err(Error::CopyToNonDirectory(shown)),
            Err(Errno::NOENT) => rustix::fs::mkdirat(&dst_fd, *name, Mode::from_raw_mode(0o700))
                .ctx("mkdir", &shown)?,
            Err(e) => return Err(Error::io("stat", shown, e)),
        }
        let sub = open_subdir(dst_fd.as_fd(), name, &shown)?;
        made.push((src_fd, st, dst_fd, shown));
        dst_fd = sub;
    }
    let leaf = join_rel(&src_lexical, last);
    let shown_leaf = format!("/{leaf}");
    let r = resolve(src.root, &shown_leaf, Lookup::NoFollow)
        .map_err(|e| not_found_as_source(e, &shown_leaf))?;
    let Some(st) = r.stat(src.root)? else {
        return Err(Error::SourceNotFound(shown_leaf));
    };
    let name = r.last.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
    copier.entry(
        r.parent(src.root),
        &name,
        &st,
        &r.relative(),
        dst_fd.as_fd(),
        last,
        &dst_rel,
        keep,
    )?;
    // Each level's fd was kept as the parent of the next: finish innermost first.
    let mut dir_fd = dst_fd;
    while let Some((src_fd, st, parent_fd, shown)) = made.pop() {
        let meta = copier.meta(&st, true, false);
        apply_fd(dir_fd.as_fd(), &meta, &shown)?;
        copy_xattrs(src_fd.as_fd(), dir_fd.as_fd(), &shown)?;
        finish_fd(dir_fd.as_fd(), &meta, &shown)?;
        copier.stats.dirs += 1;
        dir_fd = parent_fd;
    }
    Ok(copier.stats)
}

fn not_found_as_source(e: Error, path: &str) -> Error {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::SourceNotFound(path.to_string())
        }
        other => other,
    }
}

fn non_dir_dest(e: Error, dest: &str) -> Error {
    match e {
        Error::NotADirectory(_) => Error::CopyToNonDirectory(dest.to_string()),
        other => other,
    }
}

/// Where a non-directory source lands: the destination directory and the name in it.
fn file_target(
    dest_root: &Root,
    dest_path: &Cleaned,
    dest_is_dir: bool,
    src_path: &str,
    opts: &Resolved0,
) -> Result<(Resolved, String)> {
    let base = src_path.rsplit('/').next().unwrap_or("").to_string();
    let into_dir = |dir: &str| -> Result<(Resolved, String)> {
        let (dr, _) =
            mkdir_all(dest_root, dir, opts.new_dirs()).map_err(|e| non_dir_dest(e, dir))?;
        Ok((dr, base.clone()))
    };
    if dest_is_dir || dest_path.components.is_empty() {
        return into_dir(&dest_path.absolute());
    }
    let parent = format!(
        "/{}",
        dest_path.components[..dest_path.components.len() - 1].join("/")
    );
    mkdir_all(dest_root, &parent, opts.new_dirs()).map_err(|e| non_dir_dest(e, &parent))?;
    // Resolve dest itself (following a symlink there, as BuildKit's RootPath does).
    let r = resolve(dest_root, &dest_path.absolute(), Lookup::Follow)?;
    match (&r.last, r.stat(dest_root)?) {
        (_, Some(st)) if is_dir(&st) => into_dir(&dest_path.absolute()),
        (Some((name, _)), _) => {
            let name = name.clone();
            let dir = format!("/{}", parent_of(&r.relative()));
            let (dr, _) = mkdir_all(dest_root, &dir, opts.new_dirs())?;
            Ok((dr, name))
        }
        (None, _) => into_dir("/"),
    }
}

fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Copies a tree, remembering hard links within it.
pub(crate) struct Copier<'a> {
    dest_root: &'a Root,
    src_root: &'a Root,
    opts: &'a Resolved0,
    /// (dev, inode) of a multiply linked source file → its copy's path in the destination.
    links: HashMap<(u64, u64), String>,
    reflink: bool,
    /// `--exclude` patterns of the source being copied.
    pub excludes: Option<Excludes>,
    pub stats: CopyStats,
}

impl<'a> Copier<'a> {
    pub fn new(dest_root: &'a Root, src_root: &'a Root, opts: &'a Resolved0) -> Self {
        Copier {
            dest_root,
            src_root,
            opts,
            links: HashMap::new(),
            reflink: true,
            excludes: None,
            stats: CopyStats::default(),
        }
    }

    pub(crate) fn meta(&self, st: &Stat, is_dir: bool, symlink: bool) -> Meta {
        let owner = match (self.opts.chown, self.src_root.kind()) {
            (Some(o), _) => o,
            (None, RootKind::Image) => (st.st_uid, st.st_gid),
            (None, RootKind::Context) => (0, 0),
        };
        let mode = (!symlink).then(|| {
            let own = st.st_mode & 0o7777;
            self.opts
                .chmod
                .as_ref()
                .map(|c| c.apply(own, is_dir))
                .unwrap_or(own)
        });
        let (atime, mtime) = Meta::times_of(st);
        Meta {
            owner,
            mode,
            atime,
            mtime,
        }
    }

    /// Copies the entries of `src` (canonical `src_rel`, seen by `--exclude`
    /// at `ex_rel`) into `dst` (canonical `dst_rel`).
    pub fn contents(
        &mut self,
        src: BorrowedFd<'_>,
        src_rel: &str,
        dst: BorrowedFd<'_>,
        dst_rel: &str,
        ex_rel: &str,
    ) -> Result<()> {
        for (name, st) in list(src, &format!("/{src_rel}"))? {
            let child = join_rel(src_rel, &name);
            if self.src_root.is_excluded(&child)
                && !(is_dir(&st) && self.src_root.may_include_under(&child))
            {
                continue;
            }
            let child_ex = join_rel(ex_rel, &name);
            if leaves_out(
                self.src_root,
                self.excludes.as_ref(),
                src,
                &name,
                &st,
                &child_ex,
                &child,
            )? {
                continue;
            }
            self.entry(src, &name, &st, &child, dst, &name, dst_rel, &child_ex)?;
        }
        Ok(())
    }

    /// Copies one entry `src_dir/name` to `dst_dir/dst_name`; `ex_path` is
    /// where `--exclude` sees it (its entries are matched below that).
    #[allow(clippy::too_many_arguments)]
    pub fn entry(
        &mut self,
        src_dir: BorrowedFd<'_>,
        name: &str,
        st: &Stat,
        src_rel: &str,
        dst_dir: BorrowedFd<'_>,
        dst_name: &str,
        dst_dir_rel: &str,
        ex_path: &str,
    ) -> Result<()> {
        let dst_rel = join_rel(dst_dir_rel, dst_name);
        let shown = format!("/{dst_rel}");
        let src_shown = format!("/{src_rel}");
        let existing = match rustix::fs::statat(dst_dir, dst_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Error::io("stat", shown, e)),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Directory {
            if let Some(ex) = existing
                && !is_dir(&ex)
            {
                return Err(Error::CopyToNonDirectory(shown));
            }
            if existing.is_none() {
                rustix::fs::mkdirat(dst_dir, dst_name, Mode::from_raw_mode(0o700))
                    .ctx("mkdir", &shown)?;
            }
            let dst_fd = open_subdir(dst_dir, dst_name, &shown)?;
            let src_fd = open_subdir(src_dir, name, &src_shown)?;
            self.contents(src_fd.as_fd(), src_rel, dst_fd.as_fd(), &dst_rel, ex_path)?;
            let meta = self.meta(st, true, false);
            apply_fd(dst_fd.as_fd(), &meta, &shown)?;
            copy_xattrs(src_fd.as_fd(), dst_fd.as_fd(), &shown)?;
            finish_fd(dst_fd.as_fd(), &meta, &shown)?;
            self.stats.dirs += 1;
            return Ok(());
        }
        if ft == FileType::Socket {
            // Sockets are runtime objects; Docker's context transfer drops them too.
            return Ok(());
        }
        if let Some(ex) = existing {
            if is_dir(&ex) {
                return Err(Error::ReplaceDirectory(shown));
            }
            rustix::fs::unlinkat(dst_dir, dst_name, AtFlags::empty()).ctx("remove", &shown)?;
        }
        match ft {
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let target = first.clone();
                        return self.hardlink(&target, dst_dir, dst_name, &shown);
                    }
                    self.links.insert(key, dst_rel.clone());
                }
                self.file(src_dir, name, st, &src_shown, dst_dir, dst_name, &shown)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src_dir, name, Vec::new())
                    .ctx("readlink", &src_shown)?;
                rustix::fs::symlinkat(target.as_c_str(), dst_dir, dst_name)
                    .ctx("symlink", &shown)?;
                apply_at(dst_dir, dst_name, &self.meta(st, false, true), &shown)?;
                self.stats.symlinks += 1;
                Ok(())
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                rustix::fs::mknodat(
                    dst_dir,
                    dst_name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    st.st_rdev,
                )
                .ctx("mknod", &shown)?;
                apply_at(dst_dir, dst_name, &self.meta(st, false, false), &shown)?;
                self.stats.specials += 1;
                Ok(())
            }
            _ => Err(Error::UnsupportedFileType {
                path: src_shown,
                kind: "unknown",
            }),
        }
    }

    fn hardlink(
        &mut self,
        first_rel: &str,
        dst_dir: BorrowedFd<'_>,
        dst_name: &str,
        shown: &str,
    ) -> Result<()> {
        // The first copy is in a tree we just wrote; resolving it without
        // following its last component links to that file, never through a link.
        let first = resolve(self.dest_root, &format!("/{first_rel}"), Lookup::NoFollow)?;
        let name = first.last.as_ref().map(|(n, _)| n.as_str()).unwrap_or(".");
        rustix::fs::linkat(
            first.parent(self.dest_root),
            name,
            dst_dir,
            dst_name,
            AtFlags::empty(),
        )
        .ctx("link", shown)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        src_dir: BorrowedFd<'_>,
        name: &str,
        st: &Stat,
        src_shown: &str,
        dst_dir: BorrowedFd<'_>,
        dst_name: &str,
        shown: &str,
    ) -> Result<()> {
        let src = rustix::fs::openat(
            src_dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", src_shown)?;
        let dst = rustix::fs::openat(
            dst_dir,
            dst_name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx("create", shown)?;
        let size = st.st_size as u64;
        let mut cloned = false;
        if self.reflink && size > 0 {
            match rustix::fs::ioctl_ficlone(&dst, &src) {
                Ok(()) => cloned = true,
                // Not a CoW file system (or not the same one): plain copies from now on.
                Err(_) => self.reflink = false,
            }
        }
        if !cloned {
            let mut s = std::fs::File::from(src.try_clone().ctx("dup", src_shown)?);
            let mut d = std::fs::File::from(dst.try_clone().ctx("dup", shown)?);
            // File → File: the standard library uses copy_file_range here.
            std::io::copy(&mut s, &mut d).ctx("copy", shown)?;
        }
        let meta = self.meta(st, false, false);
        apply_fd(dst.as_fd(), &meta, shown)?;
        copy_xattrs(src.as_fd(), dst.as_fd(), shown)?;
        finish_fd(dst.as_fd(), &meta, shown)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        Ok(())
    }
}
