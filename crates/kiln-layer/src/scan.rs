//! Reading one file's metadata from disk into a [`NodeMeta`], and listing a
//! directory in the order layer tars use.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::change::{NodeKind, NodeMeta, is_overlay_xattr};
use crate::error::{Result, io_err};
use crate::xattr;

/// What a file in a layer directory stands for.
pub(crate) enum Scanned {
    Node {
        meta: NodeMeta,
        opaque: bool,
    },
    /// An overlay whiteout: a 0/0 character device, or a regular file
    /// carrying the `overlay.whiteout` xattr (the kernel's xattr form).
    Whiteout {
        uid: u64,
        gid: u64,
        mtime: i64,
    },
    /// Sockets cannot be archived; they are left out.
    Skip,
}

/// lstat + xattrs of `path`, interpreted in overlay's on-disk format.
pub(crate) fn scan(path: &Path) -> Result<Scanned> {
    scan_with(path, true)
}

/// lstat + xattrs of `path` in an ordinary tree: a 0/0 character device is
/// just a device and overlay xattrs mean nothing.
pub(crate) fn scan_plain(path: &Path) -> Result<Scanned> {
    scan_with(path, false)
}

fn scan_with(path: &Path, overlay: bool) -> Result<Scanned> {
    let md = fs::symlink_metadata(path).map_err(io_err("lstat", path))?;
    let ft = md.file_type();
    let rdev = md.rdev();
    let kind = if ft.is_file() {
        NodeKind::Regular { size: md.len() }
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("readlink", path))?;
        NodeKind::Symlink {
            target: target.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_char_device() {
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        if overlay && major == 0 && minor == 0 {
            return Ok(Scanned::Whiteout {
                uid: md.uid().into(),
                gid: md.gid().into(),
                mtime: md.mtime(),
            });
        }
        NodeKind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        NodeKind::BlockDevice {
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        }
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        return Ok(Scanned::Skip);
    };

    let all = xattr::list(path).map_err(io_err("listxattr", path))?;
    let flag = |suffix: &[u8]| {
        [b"trusted.overlay.".as_slice(), b"user.overlay."]
            .iter()
            .find_map(|prefix| all.get(&[*prefix, suffix].concat()))
    };
    if overlay && matches!(kind, NodeKind::Regular { .. }) && flag(b"whiteout").is_some() {
        return Ok(Scanned::Whiteout {
            uid: md.uid().into(),
            gid: md.gid().into(),
            mtime: md.mtime(),
        });
    }
    // "y" is opaque; newer kernels also write "x" meaning "holds xattr
    // whiteouts", which is not opaque.
    let opaque =
        overlay && kind == NodeKind::Dir && flag(b"opaque").is_some_and(|v| v.as_slice() == b"y");
    let xattrs = all
        .into_iter()
        .filter(|(name, _)| !is_overlay_xattr(name))
        .collect();

    Ok(Scanned::Node {
        meta: NodeMeta {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid().into(),
            gid: md.gid().into(),
            mtime: md.mtime(),
            mtime_nsec: u32::try_from(md.mtime_nsec()).unwrap_or(0),
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            xattrs,
        },
        opaque,
    })
}

/// The names in `dir`, sorted by their bytes. Walking depth-first in this
/// order gives what Go's `filepath.Walk` gives containerd, BuildKit and
/// containers/storage: a directory right before its contents, siblings in
/// byte order.
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        names.push(entry.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}
