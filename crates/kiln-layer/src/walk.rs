//! Overlay upper directory → change list.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::change::{Change, NodeKind, join};
use crate::error::Result;
use crate::scan::{Scanned, scan, sorted_names};

/// Every change a layer directory (overlay upper/lower format) holds, in tar
/// order. The root itself is not a change: its metadata comes from the
/// image's lower layers (containerd and BuildKit leave it out too).
pub fn layer_changes(dir: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(dir, &[], &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &[u8], out: &mut Vec<Change>) -> Result<()> {
    for name in sorted_names(dir)? {
        let source = dir.join(OsStr::from_bytes(&name));
        let path = join(rel, &name);
        match scan(&source)? {
            Scanned::Skip => {}
            Scanned::Whiteout { uid, gid, mtime } => out.push(Change::Whiteout {
                path,
                uid,
                gid,
                mtime,
            }),
            Scanned::Node { meta, opaque } => {
                let is_dir = meta.kind == NodeKind::Dir;
                out.push(Change::Node {
                    path: path.clone(),
                    meta,
                    source: source.clone(),
                    opaque,
                });
                if is_dir {
                    walk(&source, &path, out)?;
                }
            }
        }
    }
    Ok(())
}
