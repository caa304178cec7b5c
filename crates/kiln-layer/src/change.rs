//! The change list: what a layer holds, as produced by a walk of an overlay
//! upper directory or by comparing two trees, and consumed by the tar writer.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What kind of file a node is, with the data that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Regular { size: u64 },
    Dir,
    Symlink { target: Vec<u8> },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// The metadata of one file, as much as a layer tar can carry plus what
/// hardlink detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub kind: NodeKind,
    /// Permission bits plus setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Device and inode, to recognise hardlinks (same pair, `nlink > 1`).
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Extended attributes by name. Overlay's own (`trusted.overlay.*`,
    /// `user.overlay.*`) are never kept here.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// One change of a layer. `path` is relative to the layer root, `/`-separated,
/// without a leading `./` or `/` and without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file, directory, link or device present in the layer. `source` is
    /// where a regular file's content is read from. `opaque` (directories
    /// only) hides everything lower layers had below it.
    Node {
        path: Vec<u8>,
        meta: NodeMeta,
        source: PathBuf,
        opaque: bool,
    },
    /// A path deleted by this layer. Owner and mtime are kept for the
    /// whiteout entry (containers/storage does the same), so that a layer
    /// directory round-trips to identical bytes.
    Whiteout {
        path: Vec<u8>,
        uid: u64,
        gid: u64,
        mtime: i64,
    },
}

impl Change {
    pub fn path(&self) -> &[u8] {
        match self {
            Change::Node { path, .. } | Change::Whiteout { path, .. } => path,
        }
    }
}

/// Overlay's own xattrs describe the overlay, not the file; they never go
/// into a layer tar and are never taken from one.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Joins a parent path and a name the way change paths are spelled.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
        p.extend_from_slice(parent);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}
