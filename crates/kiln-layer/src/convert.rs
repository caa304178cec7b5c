//! Change → tar entries: whiteout naming, opaque markers, hardlinks, mtime
//! clamping. Pure: no file is touched, so every rule is unit tested.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::change::{Change, NodeKind};

/// The AUFS-style whiteout prefix the OCI image spec uses.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The marker entry that makes its directory opaque.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// How the tar is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// Clamp every mtime to at most this (seconds since the epoch), as
    /// BuildKit's `rewrite-timestamp` does for `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
}

impl EntryKind {
    pub fn typeflag(self) -> u8 {
        match self {
            EntryKind::Regular => b'0',
            EntryKind::Hardlink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::CharDevice => b'3',
            EntryKind::BlockDevice => b'4',
            EntryKind::Dir => b'5',
            EntryKind::Fifo => b'6',
        }
    }
}

/// One tar entry, ready to be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The name in the archive; directories end in `/`.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky, never the file type bits
    /// (Go's `FileInfoHeader`, so BuildKit and buildah, write the same).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Content size; non-zero only for regular files.
    pub size: u64,
    /// Symlink target or hardlink target path.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Emitted as `SCHILY.xattr.NAME` PAX records.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Where a regular file's content is read from.
    pub content: Option<PathBuf>,
}

/// Converts changes one at a time, remembering the first path of each
/// multiply-linked inode so later paths become hardlink entries.
#[derive(Debug, Default)]
pub struct Converter {
    opts: TarOptions,
    first_path: HashMap<(u64, u64), Vec<u8>>,
}

impl Converter {
    pub fn new(opts: TarOptions) -> Converter {
        Converter {
            opts,
            first_path: HashMap::new(),
        }
    }

    fn clamp(&self, mtime: i64) -> i64 {
        // Pre-1970 mtimes would need GNU base-256 fields; nothing in an
        // image needs them, so they become the epoch.
        let t = mtime.max(0);
        match self.opts.source_date_epoch {
            Some(epoch) => t.min(epoch.max(0)),
            None => t,
        }
    }

    /// The tar entries for one change: one entry, or two for an opaque
    /// directory (the directory, then its `.wh..wh..opq` marker).
    pub fn convert(&mut self, change: &Change) -> Vec<TarEntry> {
        match change {
            Change::Whiteout {
                path,
                uid,
                gid,
                mtime,
            } => {
                let (parent, name) = split_parent(path);
                let mut wh = parent.to_vec();
                wh.extend_from_slice(WHITEOUT_PREFIX);
                wh.extend_from_slice(name);
                vec![TarEntry {
                    path: wh,
                    kind: EntryKind::Regular,
                    mode: 0,
                    uid: *uid,
                    gid: *gid,
                    mtime: self.clamp(*mtime),
                    size: 0,
                    link: Vec::new(),
                    dev_major: 0,
                    dev_minor: 0,
                    xattrs: BTreeMap::new(),
                    content: None,
                }]
            }
            Change::Node {
                path,
                meta,
                source,
                opaque,
            } => {
                let mut entry = TarEntry {
                    path: path.clone(),
                    kind: EntryKind::Regular,
                    mode: meta.mode & 0o7777,
                    uid: meta.uid,
                    gid: meta.gid,
                    mtime: self.clamp(meta.mtime),
                    size: 0,
                    link: Vec::new(),
                    dev_major: 0,
                    dev_minor: 0,
                    xattrs: meta.xattrs.clone(),
                    content: None,
                };
                if meta.kind != NodeKind::Dir && meta.nlink > 1 {
                    match self.first_path.get(&(meta.dev, meta.ino)) {
                        Some(first) => {
                            entry.kind = EntryKind::Hardlink;
                            entry.link = first.clone();
                            // The inode's xattrs travel with its first path.
                            entry.xattrs.clear();
                            return vec![entry];
                        }
                        None => {
                            self.first_path.insert((meta.dev, meta.ino), path.clone());
                        }
                    }
                }
                match &meta.kind {
                    NodeKind::Regular { size } => {
                        entry.size = *size;
                        entry.content = Some(source.clone());
                    }
                    NodeKind::Dir => {
                        entry.kind = EntryKind::Dir;
                        entry.path.push(b'/');
                    }
                    NodeKind::Symlink { target } => {
                        entry.kind = EntryKind::Symlink;
                        entry.link = target.clone();
                    }
                    NodeKind::CharDevice { major, minor } => {
                        entry.kind = EntryKind::CharDevice;
                        (entry.dev_major, entry.dev_minor) = (*major, *minor);
                    }
                    NodeKind::BlockDevice { major, minor } => {
                        entry.kind = EntryKind::BlockDevice;
                        (entry.dev_major, entry.dev_minor) = (*major, *minor);
                    }
                    NodeKind::Fifo => entry.kind = EntryKind::Fifo,
                }
                if *opaque && meta.kind == NodeKind::Dir {
                    // containers/storage writes the marker with the
                    // directory's owner and permissions.
                    let mut marker_path = entry.path.clone();
                    marker_path.extend_from_slice(OPAQUE_MARKER);
                    let marker = TarEntry {
                        path: marker_path,
                        kind: EntryKind::Regular,
                        mode: entry.mode & 0o777,
                        xattrs: BTreeMap::new(),
                        ..entry.clone()
                    };
                    vec![entry, marker]
                } else {
                    vec![entry]
                }
            }
        }
    }
}

/// `a/b/c` → (`a/b/`, `c`); `c` → (``, `c`).
fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&[], path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::NodeMeta;

    fn meta(kind: NodeKind) -> NodeMeta {
        NodeMeta {
            kind,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000,
            mtime_nsec: 123,
            dev: 1,
            ino: 10,
            nlink: 1,
            xattrs: BTreeMap::new(),
        }
    }

    fn node(path: &str, meta: NodeMeta) -> Change {
        Change::Node {
            path: path.as_bytes().to_vec(),
            meta,
            source: PathBuf::from("/src").join(path),
            opaque: false,
        }
    }

    fn names(entries: &[TarEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect()
    }

    #[test]
    fn whiteout_becomes_empty_wh_file_in_the_same_directory() {
        let mut c = Converter::default();
        let e = c.convert(&Change::Whiteout {
            path: b"etc/old.conf".to_vec(),
            uid: 0,
            gid: 0,
            mtime: 5,
        });
        assert_eq!(names(&e), ["etc/.wh.old.conf"]);
        assert_eq!(
            (e[0].kind, e[0].size, e[0].mode),
            (EntryKind::Regular, 0, 0)
        );
        let top = c.convert(&Change::Whiteout {
            path: b"tmp".to_vec(),
            uid: 0,
            gid: 0,
            mtime: 5,
        });
        assert_eq!(names(&top), [".wh.tmp"]);
    }

    #[test]
    fn opaque_dir_is_followed_by_its_marker() {
        let mut c = Converter::default();
        let mut m = meta(NodeKind::Dir);
        m.mode = 0o2755;
        let e = c.convert(&Change::Node {
            path: b"var/cache".to_vec(),
            meta: m,
            source: PathBuf::from("/x"),
            opaque: true,
        });
        assert_eq!(names(&e), ["var/cache/", "var/cache/.wh..wh..opq"]);
        assert_eq!(e[0].kind, EntryKind::Dir);
        assert_eq!(e[0].mode, 0o2755);
        assert_eq!(
            (e[1].kind, e[1].mode, e[1].uid),
            (EntryKind::Regular, 0o755, 1000)
        );
    }

    #[test]
    fn second_path_of_an_inode_is_a_hardlink_to_the_first() {
        let mut c = Converter::default();
        let mut m = meta(NodeKind::Regular { size: 3 });
        m.nlink = 2;
        m.xattrs.insert(b"user.a".to_vec(), b"1".to_vec());
        let a = c.convert(&node("bin/a", m.clone()));
        let b = c.convert(&node("bin/b", m));
        assert_eq!((a[0].kind, a[0].size), (EntryKind::Regular, 3));
        assert_eq!(
            a[0].content.as_deref(),
            Some(std::path::Path::new("/src/bin/a"))
        );
        assert_eq!((b[0].kind, b[0].size), (EntryKind::Hardlink, 0));
        assert_eq!(b[0].link, b"bin/a");
        assert!(b[0].xattrs.is_empty());
        assert!(b[0].content.is_none());
    }

    #[test]
    fn single_link_files_with_equal_inodes_are_not_hardlinks() {
        // nlink == 1: the inode number may be reused across trees.
        let mut c = Converter::default();
        let m = meta(NodeKind::Regular { size: 1 });
        c.convert(&node("a", m.clone()));
        assert_eq!(c.convert(&node("b", m))[0].kind, EntryKind::Regular);
    }

    #[test]
    fn mode_keeps_special_bits_and_mtime_is_clamped() {
        let mut c = Converter::new(TarOptions {
            source_date_epoch: Some(1_000),
        });
        let mut m = meta(NodeKind::Regular { size: 0 });
        m.mode = 0o4755;
        let e = c.convert(&node("usr/bin/su", m.clone()));
        assert_eq!((e[0].mode, e[0].mtime), (0o4755, 1_000));
        m.mtime = 10;
        assert_eq!(c.convert(&node("old", m.clone()))[0].mtime, 10);
        m.mtime = -5;
        assert_eq!(c.convert(&node("older", m))[0].mtime, 0);
    }

    #[test]
    fn symlinks_devices_and_fifos() {
        let mut c = Converter::default();
        let s = c.convert(&node(
            "lib",
            meta(NodeKind::Symlink {
                target: b"usr/lib".to_vec(),
            }),
        ));
        assert_eq!(
            (s[0].kind, s[0].link.as_slice()),
            (EntryKind::Symlink, &b"usr/lib"[..])
        );
        let d = c.convert(&node(
            "dev/null",
            meta(NodeKind::CharDevice { major: 1, minor: 3 }),
        ));
        assert_eq!(
            (d[0].kind, d[0].dev_major, d[0].dev_minor),
            (EntryKind::CharDevice, 1, 3)
        );
        let b = c.convert(&node(
            "dev/sda",
            meta(NodeKind::BlockDevice { major: 8, minor: 0 }),
        ));
        assert_eq!(b[0].kind, EntryKind::BlockDevice);
        assert_eq!(
            c.convert(&node("p", meta(NodeKind::Fifo)))[0].kind,
            EntryKind::Fifo
        );
    }
}
