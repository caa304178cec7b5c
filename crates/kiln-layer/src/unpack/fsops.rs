//! File-system operations relative to directory file descriptors. Every
//! path is resolved one component at a time with `O_NOFOLLOW`, starting at
//! the destination's descriptor, so no symlink — planted by an earlier
//! entry or already in a rootfs — is ever followed, and nothing outside the
//! destination can be reached.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{LayerError, Result};

pub(crate) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

pub(crate) fn entry_err(entry: &str, op: &'static str) -> impl FnOnce(Errno) -> LayerError {
    let entry = entry.to_string();
    move |e| LayerError::Entry {
        entry,
        op,
        source: e.into(),
    }
}

/// Opens a directory beneath `parent` without following a symlink.
pub(crate) fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        os(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// lstat relative to a directory; `None` when absent.
pub(crate) fn lstat_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> rustix::io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// The directory `comps` names beneath `root`, walked component by
/// component. Missing directories are created (mode 0755, like containerd's
/// implicit parents) when `create` is set. A symlink or non-directory on
/// the way is refused, naming `entry`.
pub(crate) fn walk_dirs(
    root: BorrowedFd<'_>,
    comps: &[&[u8]],
    create: bool,
    entry: &str,
) -> Result<OwnedFd> {
    let mut cur = open_dir(root, b".").map_err(entry_err(entry, "open destination"))?;
    for comp in comps {
        let next = match open_dir(cur.as_fd(), comp) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(cur.as_fd(), os(comp), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(entry_err(entry, "create parent directory")(e)),
                }
                open_dir(cur.as_fd(), comp).map_err(entry_err(entry, "open parent directory"))?
            }
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let component = String::from_utf8_lossy(comp).into_owned();
                let entry = entry.to_string();
                let is_link = lstat_at(cur.as_fd(), comp)
                    .ok()
                    .flatten()
                    .is_some_and(|st| file_type(&st) == FileType::Symlink);
                return Err(if is_link {
                    LayerError::SymlinkInPath { entry, component }
                } else {
                    LayerError::NotADirectory { entry, component }
                });
            }
            Err(e) => return Err(entry_err(entry, "open parent directory")(e)),
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// never following symlinks. Absent is fine.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if file_type(&st) == FileType::Directory {
        clear_dir(dir, name, &|_| false)?;
        rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(dir, os(name), AtFlags::empty())
    }
}

/// Removes every child of the directory `name` in `dir` for which `keep`
/// is false.
pub(crate) fn clear_dir(
    dir: BorrowedFd<'_>,
    name: &[u8],
    keep: &dyn Fn(&[u8]) -> bool,
) -> rustix::io::Result<()> {
    let fd = open_dir(dir, name)?;
    let mut children = Vec::new();
    for item in Dir::read_from(fd.as_fd())? {
        let item = item?;
        let child = item.file_name().to_bytes();
        if child != b"." && child != b".." && !keep(child) {
            children.push(child.to_vec());
        }
    }
    for child in children {
        remove_all_at(fd.as_fd(), &child)?;
    }
    Ok(())
}

pub(crate) fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets an xattr on `name` in `dir` without following a symlink. The
/// `/proc/self/fd/N/name` path reaches the entry through the held directory
/// descriptor, so nothing above it is re-resolved.
pub(crate) fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    key: &[u8],
    value: &[u8],
) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    rustix::fs::lsetxattr(os(&path), os(key), value, XattrFlags::empty())
}

pub(crate) fn set_xattr_fd(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> rustix::io::Result<()> {
    rustix::fs::fsetxattr(fd, os(key), value, XattrFlags::empty())
}
