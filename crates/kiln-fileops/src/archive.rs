//! ADD of local tar archives: detection by magic bytes and extraction that
//! never leaves the destination directory.
//!
//! Following Docker: a local source is an archive when, after decompressing,
//! a first tar header can be read; anything else (an empty tar included) is
//! copied as a plain file. URLs are never extracted (the builder downloads
//! them and calls [`crate::copy`]). Entries keep the archive's modes, owners
//! and mtimes (`--chown` replaces owners, as BuildKit does; `--chmod` does not
//! apply to extracted entries). Existing files are replaced; an existing
//! directory is merged with a directory entry and removed for anything else.
//!
//! Refused, with an error naming the entry: names that climb out with `..`,
//! relative symlinks whose target climbs out of the destination (Docker's
//! "invalid symlink"), hard links to outside it, and entries whose parent
//! resolves outside it through a symlink (an archive's own `x -> /etc`
//! followed by `x/passwd`, or such a link already in the image).

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::copy::{CopyOptions, CopySource, CopyStats, Resolved0, check_dest, copy_one};
use crate::dirs::{list, open_subdir};
use crate::error::{Error, IoContext, Result};
use crate::meta::{Meta, apply_at, apply_fd, finish_fd};
use crate::paths::{clean, destination};
use crate::root::{Lookup, Root, is_dir, mkdir_all, open_resolved, resolve};
use crate::sources::SourceMatch;

/// Compression of an archive, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    Gzip,
    Zstd,
    /// Recognised but not extracted (no decoder built in).
    Bzip2,
    /// Recognised but not extracted (no decoder built in).
    Xz,
}

fn format_of(magic: &[u8]) -> ArchiveFormat {
    if magic.starts_with(&[0x1f, 0x8b]) {
        ArchiveFormat::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ArchiveFormat::Zstd
    } else if magic.starts_with(b"BZh") {
        ArchiveFormat::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveFormat::Xz
    } else {
        ArchiveFormat::Tar
    }
}

fn open_source(root: &Root, source: &SourceMatch) -> Result<std::fs::File> {
    let r = resolve(root, &source.path, Lookup::Follow)?;
    let fd = open_resolved(root, &r, OFlags::RDONLY)?;
    Ok(std::fs::File::from(fd))
}

fn decoder(mut file: std::fs::File, shown: &str) -> Result<(ArchiveFormat, Box<dyn Read>)> {
    let mut magic = [0u8; 6];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", shown, e)),
        }
    }
    let fmt = format_of(&magic[..got]);
    let stream = std::io::Cursor::new(magic[..got].to_vec()).chain(file);
    let reader: Box<dyn Read> = match fmt {
        ArchiveFormat::Tar => Box::new(stream),
        ArchiveFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        ArchiveFormat::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(stream).ctx("zstd", shown)?)
        }
        ArchiveFormat::Bzip2 | ArchiveFormat::Xz => Box::new(std::io::empty()),
    };
    Ok((fmt, reader))
}

/// Whether a local source is a tar archive ADD would extract, and its compression.
pub fn detect_archive(root: &Root, source: &SourceMatch) -> Result<Option<ArchiveFormat>> {
    if source.is_dir {
        return Ok(None);
    }
    let file = open_source(root, source)?;
    let (fmt, reader) = decoder(file, &source.path)?;
    if matches!(fmt, ArchiveFormat::Bzip2 | ArchiveFormat::Xz) {
        return Ok(Some(fmt));
    }
    let mut ar = tar::Archive::new(reader);
    let first = match ar.entries() {
        Ok(mut entries) => matches!(entries.next(), Some(Ok(_))),
        Err(_) => false,
    };
    Ok(first.then_some(fmt))
}

/// `ADD` of local sources: archives are extracted into `dest` (a directory),
/// other sources are copied exactly as [`crate::copy`] copies them.
pub fn add(
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
        // `--parents` keeps paths, which extraction has none of (BuildKit's
        // ADD does not take the flag).
        let archive = match src.source.parents {
            Some(_) => None,
            None => detect_archive(src.root, src.source)?,
        };
        let s = match archive {
            Some(fmt @ (ArchiveFormat::Bzip2 | ArchiveFormat::Xz)) => {
                return Err(Error::Archive {
                    archive: src.source.path.clone(),
                    message: format!(
                        "{fmt:?}-compressed archives are not supported by ADD here; use gzip or zstd"
                    ),
                });
            }
            Some(_) => extract(dest_root, src, &dest_path.absolute(), &resolved)?,
            None => copy_one(dest_root, src, &dest_path, dest_is_dir, &resolved)?,
        };
        stats.add(&s);
    }
    Ok(stats)
}

struct Extractor<'a> {
    dest_root: &'a Root,
    /// Canonical root-relative path of the extraction directory.
    base: String,
    archive: String,
    opts: &'a Resolved0,
    stats: CopyStats,
    /// Directory entries whose metadata is set last, once nothing more is written inside them.
    dirs: Vec<(String, Meta)>,
}

fn extract(
    dest_root: &Root,
    src: &CopySource<'_>,
    dest: &str,
    opts: &Resolved0,
) -> Result<CopyStats> {
    let (dr, _) = mkdir_all(dest_root, dest, opts.new_dirs())?;
    let file = open_source(src.root, src.source)?;
    let (_, reader) = decoder(file, &src.source.path)?;
    let mut ex = Extractor {
        dest_root,
        base: dr.relative(),
        archive: src.source.path.clone(),
        opts,
        stats: CopyStats::default(),
        dirs: Vec::new(),
    };
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(|e| ex.bad(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ex.bad(e))?;
        ex.entry(&mut entry)?;
    }
    ex.finish_dirs()?;
    Ok(ex.stats)
}

fn within(base: &str, rel: &str) -> bool {
    base.is_empty() || rel == base || rel.starts_with(&format!("{base}/"))
}

impl Extractor<'_> {
    fn bad(&self, e: std::io::Error) -> Error {
        Error::Archive {
            archive: self.archive.clone(),
            message: e.to_string(),
        }
    }

    fn breakout(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::ArchiveBreakout {
            archive: self.archive.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw).map_err(|e| {
            self.breakout(
                &String::from_utf8_lossy(e.as_bytes()),
                "has a name that is not valid UTF-8",
            )
        })?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let cleaned = clean(&name);
        if cleaned.escaped {
            return Err(self.breakout(&name, "would be extracted outside the destination"));
        }
        let Some((leaf, parents)) = cleaned.components.split_last() else {
            return Ok(()); // "./" itself: Docker leaves the destination's metadata alone.
        };
        let in_base = |rel: &str| {
            if self.base.is_empty() {
                rel.to_string()
            } else {
                format!("{}/{rel}", self.base)
            }
        };
        let parent_rel = in_base(&parents.join("/"));
        let parent_rel = parent_rel.trim_end_matches('/').to_string();
        let (pr, _) = mkdir_all(
            self.dest_root,
            &format!("/{parent_rel}"),
            self.opts.new_dirs(),
        )?;
        if !within(&self.base, &pr.relative()) {
            return Err(self.breakout(
                &name,
                format!(
                    "resolves outside the destination through a symlink (to /{})",
                    pr.relative()
                ),
            ));
        }
        let dir_fd = open_resolved(self.dest_root, &pr, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let dir = dir_fd.as_fd();
        let rel = crate::dirs::join_rel(&pr.relative(), leaf);
        let shown = format!("/{rel}");

        let existing = match rustix::fs::statat(dir, leaf.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Error::io("stat", shown, e)),
        };
        let entry_is_dir = kind == tar::EntryType::Directory;
        if let Some(ex) = existing {
            if is_dir(&ex) && !entry_is_dir {
                remove_all(dir, leaf, &shown)?;
            } else if !is_dir(&ex) {
                rustix::fs::unlinkat(dir, leaf.as_str(), AtFlags::empty()).ctx("remove", &shown)?;
            }
        }
        let mode = header.mode().map_err(|e| self.bad(e))? & 0o7777;
        let owner = match self.opts.chown {
            Some(o) => o,
            None => (
                header.uid().map_err(|e| self.bad(e))? as u32,
                header.gid().map_err(|e| self.bad(e))? as u32,
            ),
        };
        let mtime = header.mtime().map_err(|e| self.bad(e))? as i64;
        let meta = Meta {
            owner,
            mode: Some(mode),
            atime: (mtime, 0),
            mtime: (mtime, 0),
        };
        match kind {
            tar::EntryType::Directory => {
                if existing.is_none_or(|ex| !is_dir(&ex)) {
                    rustix::fs::mkdirat(dir, leaf.as_str(), Mode::from_raw_mode(0o700))
                        .ctx("mkdir", &shown)?;
                }
                self.set_pax_xattrs(entry, dir, leaf, &shown)?;
                self.dirs.push((rel, meta));
                self.stats.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    dir,
                    leaf.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .ctx("create", &shown)?;
                let mut file = std::fs::File::from(fd);
                let n = std::io::copy(entry, &mut file).map_err(|e| self.bad(e))?;
                apply_fd(file.as_fd(), &meta, &shown)?;
                self.set_pax_xattrs(entry, dir, leaf, &shown)?;
                finish_fd(file.as_fd(), &meta, &shown)?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8(target).map_err(|_| {
                    self.breakout(&name, "has a link target that is not valid UTF-8")
                })?;
                if !target.starts_with('/') {
                    let joined = clean(&format!("{}/{}", parents.join("/"), target));
                    if joined.escaped {
                        return Err(self.breakout(
                            &name,
                            format!("is an invalid symlink to {target:?} outside the destination"),
                        ));
                    }
                }
                rustix::fs::symlinkat(target.as_str(), dir, leaf.as_str())
                    .ctx("symlink", &shown)?;
                apply_at(dir, leaf, &Meta { mode: None, ..meta }, &shown)?;
                self.stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8(target).map_err(|_| {
                    self.breakout(&name, "has a link target that is not valid UTF-8")
                })?;
                let t = clean(&target);
                if t.escaped {
                    return Err(self.breakout(
                        &name,
                        format!("is a hard link to {target:?} outside the destination"),
                    ));
                }
                let tr = resolve(
                    self.dest_root,
                    &format!("/{}", in_base(&t.relative())),
                    Lookup::NoFollow,
                );
                let tr = match tr {
                    Ok(tr) if within(&self.base, &tr.relative()) => tr,
                    Ok(_) => {
                        return Err(self.breakout(
                            &name,
                            format!("is a hard link to {target:?} outside the destination"),
                        ));
                    }
                    Err(_) => {
                        return Err(self.breakout(
                            &name,
                            format!("is a hard link to {target:?}, which is not in the archive"),
                        ));
                    }
                };
                match tr.stat(self.dest_root)? {
                    Some(st) if !is_dir(&st) => {}
                    _ => {
                        return Err(self.breakout(
                            &name,
                            format!(
                                "is a hard link to {target:?}, which is not a file in the archive"
                            ),
                        ));
                    }
                }
                let tname = tr.last.as_ref().map(|(n, _)| n.as_str()).unwrap_or(".");
                rustix::fs::linkat(
                    tr.parent(self.dest_root),
                    tname,
                    dir,
                    leaf.as_str(),
                    AtFlags::empty(),
                )
                .ctx("link", &shown)?;
                self.stats.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                rustix::fs::mknodat(dir, leaf.as_str(), ft, Mode::from_raw_mode(0o600), dev)
                    .ctx("mknod", &shown)?;
                apply_at(dir, leaf, &meta, &shown)?;
                self.stats.specials += 1;
            }
            other => {
                return Err(Error::Archive {
                    archive: self.archive.clone(),
                    message: format!("entry {name:?} has an unsupported type {other:?}"),
                });
            }
        }
        Ok(())
    }

    /// Applies `SCHILY.xattr.*` PAX records (how tar carries file capabilities).
    fn set_pax_xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        leaf: &str,
        shown: &str,
    ) -> Result<()> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        let mut attrs = Vec::new();
        for ext in exts.flatten() {
            if let Ok(key) = ext.key()
                && let Some(attr) = key.strip_prefix("SCHILY.xattr.")
            {
                attrs.push((attr.to_string(), ext.value_bytes().to_vec()));
            }
        }
        if attrs.is_empty() {
            return Ok(());
        }
        let fd = rustix::fs::openat(
            dir,
            leaf,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", shown)?;
        for (k, v) in attrs {
            rustix::fs::fsetxattr(&fd, k.as_str(), &v, rustix::fs::XattrFlags::empty())
                .ctx("set xattr", &format!("{shown} ({k})"))?;
        }
        Ok(())
    }

    /// Directory metadata last (children changed their mtimes), deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, meta) in dirs {
            let shown = format!("/{rel}");
            let r = resolve(self.dest_root, &shown, Lookup::NoFollow)?;
            let Some(name) = r.last.as_ref().map(|(n, _)| n.clone()) else {
                continue;
            };
            // A later entry may have replaced the directory; then it has its own metadata.
            let Ok(fd) = open_subdir(r.parent(self.dest_root), &name, &shown) else {
                continue;
            };
            apply_fd(fd.as_fd(), &meta, &shown)?;
            finish_fd(fd.as_fd(), &meta, &shown)?;
        }
        Ok(())
    }
}

/// Removes a directory tree from descriptors, never following a symlink.
fn remove_all(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<()> {
    let sub = open_subdir(dir, name, shown)?;
    for (child, st) in list(sub.as_fd(), shown)? {
        let child_shown = format!("{shown}/{child}");
        if is_dir(&st) {
            remove_all(sub.as_fd(), &child, &child_shown)?;
        } else {
            rustix::fs::unlinkat(&sub, child.as_str(), AtFlags::empty())
                .ctx("remove", &child_shown)?;
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).ctx("remove", shown)
}
