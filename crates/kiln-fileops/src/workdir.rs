//! WORKDIR: make sure the directory exists.

use crate::error::{Error, Result};
use crate::paths::clean;
use crate::root::{NewDirs, Root, mkdir_all};

/// Creates `path` (absolute, or relative to "/") and its missing parents in
/// `root`, mode 0755, owned by `owner` (the current USER's ids, resolved by
/// the caller with [`crate::resolve_user`]; `None` is root). Symlinks on the
/// way are followed inside the root. Existing directories keep their owner
/// and mode. Returns whether anything was created.
pub fn mkdir_workdir(root: &Root, path: &str, owner: Option<(u32, u32)>) -> Result<bool> {
    let p = clean(path).absolute();
    let new = NewDirs {
        mode: 0o755,
        owner: owner.unwrap_or((0, 0)),
    };
    match mkdir_all(root, &p, new) {
        Ok((_, created)) => Ok(created),
        Err(Error::NotADirectory(at)) => Err(Error::NotADirectory(format!("WORKDIR {p}: {at}"))),
        Err(e) => Err(e),
    }
}
