//! Owner, mode, xattrs and times of a written entry, in the order the kernel
//! needs: chown first (it clears setuid bits and file capabilities), then
//! xattrs, then the mode, then times (every other change touches ctime only).

use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Gid, Mode, Stat, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

/// Metadata to give an entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub owner: (u32, u32),
    /// Permission and special bits; `None` for symlinks.
    pub mode: Option<u32>,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
}

impl Meta {
    pub fn times_of(st: &Stat) -> ((i64, i64), (i64, i64)) {
        (
            (st.st_atime, st.st_atime_nsec as i64),
            (st.st_mtime, st.st_mtime_nsec as i64),
        )
    }

    fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: self.atime.0,
                tv_nsec: self.atime.1 as _,
            },
            last_modification: Timespec {
                tv_sec: self.mtime.0,
                tv_nsec: self.mtime.1 as _,
            },
        }
    }
}

/// Xattrs that describe the lower file system, not the file, and that an
/// overlay mount refuses to have set through it.
fn skip_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name == b"security.selinux"
}

/// Copies extended attributes between two open files. Only a lost
/// `security.capability` is an error: other namespaces may be unsupported by
/// the destination file system, which Docker ignores too.
pub(crate) fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, shown: &str) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(src, &mut names[..]) {
        Ok(n) => n,
        Err(Errno::RANGE) => {
            let len = rustix::fs::flistxattr_query(src).ctx("list xattrs", shown)?;
            names = vec![0u8; len];
            rustix::fs::flistxattr(src, &mut names[..]).ctx("list xattrs", shown)?
        }
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(Error::io("list xattrs", shown, e)),
    };
    let mut value = vec![0u8; 65536];
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        if skip_xattr(name) {
            continue;
        }
        let cname = std::ffi::CString::new(name)
            .map_err(|e| Error::io("get xattr", shown, std::io::Error::other(e)))?;
        let len = match rustix::fs::fgetxattr(src, cname.as_c_str(), &mut value[..]) {
            Ok(len) => len,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(Error::io("get xattr", shown, e)),
        };
        let set = rustix::fs::fsetxattr(
            dst,
            cname.as_c_str(),
            &value[..len],
            rustix::fs::XattrFlags::empty(),
        );
        if let Err(e) = set
            && name == b"security.capability"
        {
            return Err(Error::io("set xattr security.capability on", shown, e));
        }
    }
    Ok(())
}

/// Applies metadata to an open file or directory.
pub(crate) fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
    rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(meta.owner.0)),
        Some(Gid::from_raw(meta.owner.1)),
    )
    .ctx("chown", shown)?;
    Ok(())
}

/// The part of [`apply_fd`] that must follow the xattrs.
pub(crate) fn finish_fd(fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
    if let Some(mode) = meta.mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).ctx("chmod", shown)?;
    }
    rustix::fs::futimens(fd, &meta.timestamps()).ctx("set times of", shown)
}

/// Applies metadata to a symlink or special file that cannot be opened.
pub(crate) fn apply_at(dir: BorrowedFd<'_>, name: &str, meta: &Meta, shown: &str) -> Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(meta.owner.0)),
        Some(Gid::from_raw(meta.owner.1)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .ctx("chown", shown)?;
    if let Some(mode) = meta.mode {
        // Only for special files we just created, never symlinks: plain chmodat is safe.
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
            .ctx("chmod", shown)?;
    }
    rustix::fs::utimensat(dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
        .ctx("set times of", shown)
}
