//! Two full root file systems → change list, for the copying fallback where
//! a step runs on a copy of the rootfs instead of an overlay.
//!
//! A path counts as changed when its type, permission bits, owner, xattrs,
//! symlink target, device numbers, size or mtime (to the nanosecond) differ.
//! When all of them are equal the file is unchanged, except when its mtime
//! has no sub-second part in both trees: whole-second mtimes are what tools
//! that set times explicitly leave (tar, rpm, `cp -p` to some file systems,
//! `touch -d`), so a rewrite with the same size could hide behind them and
//! the contents are compared byte for byte. This is containerd's rule
//! (continuity `sameFile`); a nanosecond mtime that matches exactly is not
//! produced by an ordinary write.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::change::{Change, NodeKind, NodeMeta, join};
use crate::error::{Result, io_err};
use crate::scan::{Scanned, scan_plain, sorted_names};

/// The changes that turn the tree at `old` into the tree at `new`, in tar
/// order. Deleted paths become whiteouts owned by root with the mtime of the
/// directory they were deleted from (in `new`).
pub fn tree_changes(old: &Path, new: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_dir(old, new, &[], &mut out)?;
    add_hardlink_siblings(new, &mut out)?;
    Ok(out)
}

/// A new hard link to a file the old tree already had (`ln /lower/f /g`)
/// shows up as one added path; overlay would have copied the file up and
/// put both names in the layer. Do the same: every other name of a changed
/// multiply-linked file joins the change list, so the tar links them.
fn add_hardlink_siblings(new: &Path, out: &mut Vec<Change>) -> Result<()> {
    use std::collections::{BTreeSet, HashSet};
    let mut wanted = HashSet::new();
    let mut present = BTreeSet::new();
    for c in out.iter() {
        present.insert(c.path().to_vec());
        if let Change::Node { meta, .. } = c
            && matches!(meta.kind, NodeKind::Regular { .. })
            && meta.nlink > 1
        {
            wanted.insert((meta.dev, meta.ino));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut found = Vec::new();
    find_links(new, &[], &wanted, &present, &mut found)?;
    if found.is_empty() {
        return Ok(());
    }
    out.extend(found);
    // Tar order: depth first, names in byte order within a directory.
    out.sort_by(|a, b| {
        a.path()
            .split(|&c| c == b'/')
            .cmp(b.path().split(|&c| c == b'/'))
    });
    Ok(())
}

fn find_links(
    dir: &Path,
    rel: &[u8],
    wanted: &std::collections::HashSet<(u64, u64)>,
    present: &std::collections::BTreeSet<Vec<u8>>,
    found: &mut Vec<Change>,
) -> Result<()> {
    for name in sorted_names(dir)? {
        let path = join(rel, &name);
        let full = dir.join(OsStr::from_bytes(&name));
        let Scanned::Node { meta, .. } = scan_plain(&full)? else {
            continue;
        };
        match meta.kind {
            NodeKind::Dir => find_links(&full, &path, wanted, present, found)?,
            NodeKind::Regular { .. }
                if meta.nlink > 1
                    && wanted.contains(&(meta.dev, meta.ino))
                    && !present.contains(&path) =>
            {
                found.push(node(path, meta, &full));
            }
            _ => {}
        }
    }
    Ok(())
}

fn diff_dir(old: &Path, new: &Path, rel: &[u8], out: &mut Vec<Change>) -> Result<()> {
    let old_names = sorted_names(old)?;
    let new_names = sorted_names(new)?;
    let parent_mtime = std::fs::symlink_metadata(new)
        .map_err(io_err("lstat", new))?
        .mtime();
    let (mut i, mut j) = (0, 0);
    while i < old_names.len() || j < new_names.len() {
        let order = match (old_names.get(i), new_names.get(j)) {
            (Some(o), Some(n)) => o.cmp(n),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let name = match order {
            std::cmp::Ordering::Less => &old_names[i],
            _ => &new_names[j],
        };
        let path = join(rel, name);
        let old_path = old.join(OsStr::from_bytes(name));
        let new_path = new.join(OsStr::from_bytes(name));
        let whiteout = Change::Whiteout {
            path: path.clone(),
            uid: 0,
            gid: 0,
            mtime: parent_mtime,
        };
        match order {
            std::cmp::Ordering::Less => {
                if !matches!(scan_plain(&old_path)?, Scanned::Skip) {
                    out.push(whiteout);
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                add_subtree(&new_path, path, out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                let (old_meta, new_meta) = match (scan_plain(&old_path)?, scan_plain(&new_path)?) {
                    (_, Scanned::Skip) | (_, Scanned::Whiteout { .. }) => {
                        out.push(whiteout);
                        continue;
                    }
                    (Scanned::Node { meta: o, .. }, Scanned::Node { meta: n, .. }) => (o, n),
                    _ => {
                        add_subtree(&new_path, path, out)?;
                        continue;
                    }
                };
                let both_dirs = old_meta.kind == NodeKind::Dir && new_meta.kind == NodeKind::Dir;
                if both_dirs {
                    if !same_meta(&old_meta, &new_meta) {
                        out.push(node(path.clone(), new_meta, &new_path));
                    }
                    diff_dir(&old_path, &new_path, &path, out)?;
                } else if new_meta.kind == NodeKind::Dir {
                    add_subtree(&new_path, path, out)?;
                } else if !same_file(&old_meta, &old_path, &new_meta, &new_path)? {
                    out.push(node(path, new_meta, &new_path));
                }
            }
        }
    }
    Ok(())
}

fn node(path: Vec<u8>, meta: NodeMeta, source: &Path) -> Change {
    Change::Node {
        path,
        meta,
        source: source.to_path_buf(),
        opaque: false,
    }
}

/// Adds `source` and, for a directory, everything below it.
fn add_subtree(source: &Path, path: Vec<u8>, out: &mut Vec<Change>) -> Result<()> {
    let Scanned::Node { meta, .. } = scan_plain(source)? else {
        return Ok(());
    };
    let is_dir = meta.kind == NodeKind::Dir;
    out.push(node(path.clone(), meta, source));
    if is_dir {
        for name in sorted_names(source)? {
            let child = source.join(OsStr::from_bytes(&name));
            add_subtree(&child, join(&path, &name), out)?;
        }
    }
    Ok(())
}

fn same_meta(a: &NodeMeta, b: &NodeMeta) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
        && a.mtime_nsec == b.mtime_nsec
        && a.xattrs == b.xattrs
}

fn same_file(a: &NodeMeta, a_path: &Path, b: &NodeMeta, b_path: &Path) -> Result<bool> {
    if !same_meta(a, b) {
        return Ok(false);
    }
    let whole_seconds = a.mtime_nsec == 0 && b.mtime_nsec == 0;
    if matches!(a.kind, NodeKind::Regular { .. }) && whole_seconds {
        return same_content(a_path, b_path);
    }
    Ok(true)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = BufReader::with_capacity(64 * 1024, File::open(a).map_err(io_err("open", a))?);
    let mut fb = BufReader::with_capacity(64 * 1024, File::open(b).map_err(io_err("open", b))?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io_err("read", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io_err("read", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
