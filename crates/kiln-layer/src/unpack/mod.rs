//! Layer blob → directory, safely. Two modes:
//!
//! - [`UnpackMode::Layer`]: into an empty directory in overlay's lower
//!   format (`.wh.NAME` → 0/0 character device NAME, `.wh..wh..opq` →
//!   `trusted.overlay.opaque=y` on the directory), for stacking as a lower
//!   layer.
//! - [`UnpackMode::Apply`]: onto a full root file system (the copying
//!   fallback): whiteouts delete, an opaque marker empties the directory of
//!   everything this layer did not itself put there.
//!
//! Layers are hostile input. Names with a `..` component are refused, a
//! leading `/` is stripped (as Docker and containerd do), every path is
//! resolved beneath the destination's descriptor without following any
//! symlink (an entry `link/x` where `link` is a symlink is refused), and
//! hardlink targets are resolved the same way. A hardlink to a symlink
//! links the symlink itself (`linkat` without `AT_SYMLINK_FOLLOW`, as
//! containerd does), which never reaches outside. Overlay xattrs found in
//! the tar are dropped: only whiteout markers may make a directory opaque.

mod fsops;
mod path;
mod read;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use kiln_oci::Digest;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::blob::Compression;
use crate::change::is_overlay_xattr;
use crate::error::{LayerError, Result, io_err};
use fsops::{entry_err, lstat_at, os};
use path::Name;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackMode {
    /// Into an empty directory, in overlay lower format.
    Layer,
    /// Onto an existing root file system.
    Apply,
}

/// What the blob must hash to; `None` fields are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// The compressed blob's digest (the manifest descriptor's).
    pub digest: Option<Digest>,
    /// The uncompressed tar's digest (the config's `rootfs.diff_ids`).
    pub diff_id: Option<Digest>,
    /// The compressed blob's size.
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub compression: Compression,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub uncompressed_size: u64,
}

/// Unpacks the layer blob read from `reader` (gzip, zstd or plain tar,
/// detected by magic bytes) into `dest`, checking `expected` on the way.
///
/// The hashes are only known once the whole blob is read, so a mismatch is
/// found after extraction: in `Layer` mode the destination directory is
/// then removed (on any error, not only mismatches), so a half-written or
/// unverified layer never stays in the content store. In `Apply` mode the
/// rootfs is left as it is and must be discarded by the caller.
pub fn unpack_layer(
    reader: impl Read,
    expected: Option<&Expected>,
    dest: &Path,
    mode: UnpackMode,
) -> Result<UnpackStats> {
    if mode == UnpackMode::Layer {
        let mut items = std::fs::read_dir(dest).map_err(io_err("open unpack destination", dest))?;
        if items.next().is_some() {
            return Err(LayerError::DestinationNotEmpty(dest.to_path_buf()));
        }
    }
    let result = unpack_inner(reader, expected, dest, mode);
    if result.is_err() && mode == UnpackMode::Layer {
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

fn unpack_inner(
    reader: impl Read,
    expected: Option<&Expected>,
    dest: &Path,
    mode: UnpackMode,
) -> Result<UnpackStats> {
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open unpack destination", dest)(e.into()))?;
    let (decoder, compression) = read::Decoder::new(reader).map_err(LayerError::Read)?;
    let mut archive = tar::Archive::new(read::HashRead::new(decoder));
    let mut state = Unpacker {
        root: root.as_fd(),
        mode,
        created: HashSet::new(),
        dir_times: HashMap::new(),
    };
    let mut entries = 0;
    for entry in archive.entries().map_err(LayerError::Read)? {
        let mut entry = entry.map_err(LayerError::Read)?;
        if state.entry(&mut entry)? {
            entries += 1;
        }
    }
    state.finish_dir_times()?;

    let mut tar_stream = archive.into_inner();
    // Bytes after the end-of-archive blocks are still part of the diff_id.
    io::copy(&mut tar_stream, &mut io::sink()).map_err(LayerError::Read)?;
    let (diff_id, uncompressed_size, decoder) = tar_stream.finish();
    let (digest, size) = decoder.finish().map_err(LayerError::Read)?;
    if let Some(exp) = expected {
        if let Some(want) = &exp.digest
            && *want != digest
        {
            return Err(LayerError::DigestMismatch {
                expected: want.clone(),
                actual: digest,
            });
        }
        if let Some(want) = exp.size
            && want != size
        {
            return Err(LayerError::SizeMismatch {
                expected: want,
                actual: size,
            });
        }
        if let Some(want) = &exp.diff_id
            && *want != diff_id
        {
            return Err(LayerError::DiffIdMismatch {
                expected: want.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(UnpackStats {
        entries,
        compression,
        digest,
        diff_id,
        size,
        uncompressed_size,
    })
}

/// Header values with PAX overrides applied.
struct Attrs {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn attrs<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Attrs> {
    let bad = |what: &'static str| LayerError::BadPath {
        entry: name.to_string(),
        reason: what,
    };
    let h = entry.header();
    let mut a = Attrs {
        mode: h.mode().map_err(|_| bad("unreadable mode field"))? & 0o7777,
        uid: h.uid().map_err(|_| bad("unreadable uid field"))?,
        gid: h.gid().map_err(|_| bad("unreadable gid field"))?,
        mtime: i64::try_from(h.mtime().map_err(|_| bad("unreadable mtime field"))?).unwrap_or(0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(LayerError::Read)? {
        for ext in exts {
            let ext = ext.map_err(LayerError::Read)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
                if !is_overlay_xattr(xname) {
                    a.xattrs.push((xname.to_vec(), value.to_vec()));
                }
            } else if key == b"uid" {
                a.uid = number()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad("bad PAX uid"))?;
            } else if key == b"gid" {
                a.gid = number()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad("bad PAX gid"))?;
            } else if key == b"mtime" {
                a.mtime = number().ok_or_else(|| bad("bad PAX mtime"))?;
            }
        }
    }
    Ok(a)
}

struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    mode: UnpackMode,
    /// Paths this layer created; in `Apply` mode an opaque marker keeps them.
    created: HashSet<Vec<u8>>,
    /// Directory mtimes, set last: creating entries inside moves them.
    dir_times: HashMap<Vec<u8>, i64>,
}

impl Unpacker<'_> {
    /// Handles one entry; false when it was skipped.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<bool> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let etype = entry.header().entry_type();
        match etype {
            EntryType::XGlobalHeader => return Ok(false),
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Link
            | EntryType::Symlink
            | EntryType::Char
            | EntryType::Block
            | EntryType::Directory
            | EntryType::Fifo => {}
            other => {
                return Err(LayerError::UnsupportedEntry {
                    entry: name,
                    kind: char::from(other.as_byte()),
                });
            }
        }
        let comps = path::components(&raw).map_err(|reason| LayerError::BadPath {
            entry: name.clone(),
            reason,
        })?;
        let attrs = attrs(entry, &name)?;
        let Some((last, parents)) = comps.split_last() else {
            if etype != EntryType::Directory {
                return Err(LayerError::BadPath {
                    entry: name,
                    reason: "a non-directory entry names the destination itself",
                });
            }
            return self.root_dir(&attrs, &name).map(|()| true);
        };
        let kind = path::classify(last).map_err(|reason| LayerError::BadPath {
            entry: name.clone(),
            reason,
        })?;
        let parent = fsops::walk_dirs(self.root, parents, true, &name)?;
        let parent_path = parents.join(&b'/');
        match kind {
            Name::AufsMeta => return Ok(false),
            Name::Opaque => self.opaque(&parent, parents, &parent_path, &name)?,
            Name::Whiteout(target) => self.whiteout(&parent, target, &attrs, &name)?,
            Name::Plain(file) => {
                let full = if parent_path.is_empty() {
                    file.to_vec()
                } else {
                    [parent_path.as_slice(), b"/", file].concat()
                };
                self.node(entry, etype, &parent, file, &full, &attrs, &name)?;
                if self.mode == UnpackMode::Apply {
                    self.created.insert(full);
                }
            }
        }
        Ok(true)
    }

    fn root_dir(&mut self, attrs: &Attrs, name: &str) -> Result<()> {
        let fd = fsops::open_dir(self.root, b".").map_err(entry_err(name, "open destination"))?;
        set_owner_mode_fd(fd.as_fd(), attrs, name)?;
        set_xattrs_fd(fd.as_fd(), attrs, name)?;
        self.dir_times.insert(Vec::new(), attrs.mtime);
        Ok(())
    }

    fn opaque(
        &mut self,
        parent: &OwnedFd,
        parents: &[&[u8]],
        parent_path: &[u8],
        name: &str,
    ) -> Result<()> {
        match self.mode {
            UnpackMode::Layer => {
                fsops::set_xattr_fd(parent.as_fd(), b"trusted.overlay.opaque", b"y")
                    .map_err(entry_err(name, "mark directory opaque"))
            }
            UnpackMode::Apply => {
                let Some((dir_name, grand)) = parents.split_last() else {
                    // An opaque root hides every lower layer.
                    let keep = |child: &[u8]| self.created.contains(child);
                    return fsops::clear_dir(self.root, b".", &keep)
                        .map_err(entry_err(name, "clear opaque directory"));
                };
                let gp = fsops::walk_dirs(self.root, grand, false, name)?;
                let keep =
                    |child: &[u8]| self.created.contains(&[parent_path, b"/", child].concat());
                fsops::clear_dir(gp.as_fd(), dir_name, &keep)
                    .map_err(entry_err(name, "clear opaque directory"))
            }
        }
    }

    fn whiteout(
        &mut self,
        parent: &OwnedFd,
        target: &[u8],
        attrs: &Attrs,
        name: &str,
    ) -> Result<()> {
        fsops::remove_all_at(parent.as_fd(), target)
            .map_err(entry_err(name, "remove whited-out path"))?;
        if self.mode == UnpackMode::Layer {
            rustix::fs::mknodat(
                parent.as_fd(),
                os(target),
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(entry_err(name, "create whiteout device"))?;
            rustix::fs::chownat(
                parent.as_fd(),
                os(target),
                Some(uid(attrs.uid)),
                Some(gid(attrs.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(entry_err(name, "chown"))?;
            set_time_at(parent.as_fd(), target, attrs.mtime, name)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        etype: EntryType,
        parent: &OwnedFd,
        file: &[u8],
        full: &[u8],
        attrs: &Attrs,
        name: &str,
    ) -> Result<()> {
        let dir = parent.as_fd();
        let existing = lstat_at(dir, file).map_err(entry_err(name, "lstat"))?;
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|st| fsops::file_type(st) == FileType::Directory);
        if etype == EntryType::Directory {
            if existing.is_some() && !existing_is_dir {
                rustix::fs::unlinkat(dir, os(file), AtFlags::empty())
                    .map_err(entry_err(name, "replace"))?;
            }
            if !existing_is_dir {
                rustix::fs::mkdirat(dir, os(file), Mode::from_raw_mode(0o700))
                    .map_err(entry_err(name, "mkdir"))?;
            }
            let fd = fsops::open_dir(dir, file).map_err(entry_err(name, "open directory"))?;
            set_owner_mode_fd(fd.as_fd(), attrs, name)?;
            set_xattrs_fd(fd.as_fd(), attrs, name)?;
            self.dir_times.insert(full.to_vec(), attrs.mtime);
            return Ok(());
        }
        if existing.is_some() {
            fsops::remove_all_at(dir, file).map_err(entry_err(name, "replace"))?;
        }
        match etype {
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    dir,
                    os(file),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(entry_err(name, "create file"))?;
                let mut out = std::fs::File::from(fd);
                io::copy(entry, &mut out).map_err(LayerError::Read)?;
                set_owner_mode_fd(out.as_fd(), attrs, name)?;
                set_xattrs_fd(out.as_fd(), attrs, name)?;
                rustix::fs::futimens(&out, &fsops::timestamps(attrs.mtime))
                    .map_err(entry_err(name, "set mtime"))?;
                return Ok(());
            }
            EntryType::Link => return self.hardlink(entry, dir, file, name),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| LayerError::BadPath {
                    entry: name.to_string(),
                    reason: "symlink without a target",
                })?;
                rustix::fs::symlinkat(os(&target), dir, os(file))
                    .map_err(entry_err(name, "create symlink"))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ft = match etype {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                rustix::fs::mknodat(
                    dir,
                    os(file),
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(entry_err(name, "create device node"))?;
            }
            _ => {}
        }
        // Owner before mode: chown clears setuid/setgid bits.
        rustix::fs::chownat(
            dir,
            os(file),
            Some(uid(attrs.uid)),
            Some(gid(attrs.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(entry_err(name, "chown"))?;
        if etype != EntryType::Symlink {
            rustix::fs::chmodat(
                dir,
                os(file),
                Mode::from_raw_mode(attrs.mode),
                AtFlags::empty(),
            )
            .map_err(entry_err(name, "chmod"))?;
        }
        for (key, value) in &attrs.xattrs {
            match fsops::set_xattr_at(dir, file, key, value) {
                Ok(()) => {}
                // Linux allows no user.* xattrs on symlinks and devices.
                Err(Errno::PERM) if key.starts_with(b"user.") => {}
                Err(e) => return Err(entry_err(name, "set xattr")(e)),
            }
        }
        set_time_at(dir, file, attrs.mtime, name)
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        file: &[u8],
        name: &str,
    ) -> Result<()> {
        let raw = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let target = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason: String| LayerError::BadHardlink {
            entry: name.to_string(),
            target: target.clone(),
            reason,
        };
        let comps = path::components(&raw).map_err(|r| bad(r.to_string()))?;
        let Some((tname, tparents)) = comps.split_last() else {
            return Err(bad("names the destination itself".into()));
        };
        let tdir =
            fsops::walk_dirs(self.root, tparents, false, name).map_err(|e| bad(e.to_string()))?;
        rustix::fs::linkat(tdir.as_fd(), os(tname), dir, os(file), AtFlags::empty()).map_err(|e| {
            match e {
                Errno::NOENT => bad("target does not exist in the layer".into()),
                Errno::PERM => bad("target is a directory".into()),
                e => bad(io::Error::from(e).to_string()),
            }
        })
    }

    fn finish_dir_times(&mut self) -> Result<()> {
        for (path, mtime) in &self.dir_times {
            let name = String::from_utf8_lossy(path).into_owned();
            if path.is_empty() {
                rustix::fs::futimens(self.root, &fsops::timestamps(*mtime))
                    .map_err(entry_err(&name, "set mtime"))?;
                continue;
            }
            let comps = path::components(path).map_err(|reason| LayerError::BadPath {
                entry: name.clone(),
                reason,
            })?;
            let Some((last, parents)) = comps.split_last() else {
                continue;
            };
            // A directory may have been replaced or removed by a later entry.
            let Ok(parent) = fsops::walk_dirs(self.root, parents, false, &name) else {
                continue;
            };
            match lstat_at(parent.as_fd(), last) {
                Ok(Some(st)) if fsops::file_type(&st) == FileType::Directory => {
                    set_time_at(parent.as_fd(), last, *mtime, &name)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn uid(id: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u32::try_from(id).unwrap_or(u32::MAX))
}

fn gid(id: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(id).unwrap_or(u32::MAX))
}

fn set_owner_mode_fd(fd: BorrowedFd<'_>, attrs: &Attrs, name: &str) -> Result<()> {
    rustix::fs::fchown(fd, Some(uid(attrs.uid)), Some(gid(attrs.gid)))
        .map_err(entry_err(name, "chown"))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(attrs.mode)).map_err(entry_err(name, "chmod"))
}

fn set_xattrs_fd(fd: BorrowedFd<'_>, attrs: &Attrs, name: &str) -> Result<()> {
    for (key, value) in &attrs.xattrs {
        fsops::set_xattr_fd(fd, key, value).map_err(entry_err(name, "set xattr"))?;
    }
    Ok(())
}

fn set_time_at(dir: BorrowedFd<'_>, file: &[u8], mtime: i64, name: &str) -> Result<()> {
    rustix::fs::utimensat(
        dir,
        os(file),
        &fsops::timestamps(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(entry_err(name, "set mtime"))
}
