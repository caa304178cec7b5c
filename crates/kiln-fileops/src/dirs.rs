//! Directory listing from file descriptors, shared by source matching,
//! digests and copies.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use crate::error::{Error, IoContext, Result};

/// Opens a subdirectory for reading, refusing to follow a symlink.
pub(crate) fn open_subdir(parent: BorrowedFd<'_>, name: &str, shown: &str) -> Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open directory", shown)
}

/// The entries of a directory with their `lstat`, sorted by name so that
/// walks, digests and hardlink choices are deterministic.
pub(crate) fn list(dir: BorrowedFd<'_>, shown: &str) -> Result<Vec<(String, Stat)>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open directory", shown)?;
    let mut names = Vec::new();
    let rd = rustix::fs::Dir::new(fd).ctx("read directory", shown)?;
    for entry in rd {
        let entry = entry.ctx("read directory", shown)?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let name = std::str::from_utf8(raw)
            .map_err(|_| {
                Error::io(
                    "read directory",
                    shown,
                    std::io::Error::other(format!(
                        "file name {:?} is not valid UTF-8",
                        String::from_utf8_lossy(raw)
                    )),
                )
            })?
            .to_string();
        names.push(name);
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("stat", &join(shown, &name))?;
        out.push((name, st));
    }
    Ok(out)
}

/// Joins a display path and a name.
pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() || base == "/" {
        format!("/{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// Joins a root-relative path and a name ("" is the root).
pub(crate) fn join_rel(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}
