//! Extended attributes of a path, without following a final symlink.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{lgetxattr, lgetxattr_query, llistxattr, llistxattr_query};

/// All xattrs of `path` (lstat semantics). A file system without xattr
/// support simply has none.
pub(crate) fn list(path: &Path) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match read_sized(|| llistxattr_query(path), |buf| llistxattr(path, buf)) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) => {
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = OsStr::from_bytes(name);
        match read_sized(
            || lgetxattr_query(path, cname),
            |buf| lgetxattr(path, cname, buf),
        ) {
            Ok(value) => {
                out.insert(name.to_vec(), value);
            }
            // Removed between list and get: it is not there any more.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls a size-probing xattr syscall until the buffer is big enough (the
/// value may grow between the probe and the read).
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    call: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_user_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        rustix::fs::lsetxattr(&f, "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        rustix::fs::lsetxattr(&f, "user.bb", b"22", rustix::fs::XattrFlags::empty()).unwrap();
        let all = super::list(&f).unwrap();
        assert_eq!(all.get(&b"user.a"[..]), Some(&b"1".to_vec()), "{all:?}");
        assert_eq!(all.get(&b"user.bb"[..]), Some(&b"22".to_vec()));
    }
}
