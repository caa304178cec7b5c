#![allow(clippy::unwrap_used, dead_code)]
//! Helpers shared by the integration tests: building layer directories with
//! real whiteouts and xattrs, reading tars back, and hand-made tars.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_layer::{EntryKind, TarEntry, encode_header};
use rustix::fs::{CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

/// mknod, chown and trusted.* xattrs need root; tests that need them print
/// why they skip instead of failing on an unprivileged machine.
pub fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        true
    } else {
        eprintln!("skipping {test}: needs root (mknod, chown, trusted.* xattrs)");
        false
    }
}

/// A temporary directory on the target's file system (ext4 here), which
/// supports every xattr namespace tmpfs may not.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

pub fn mknod(path: &Path, ft: FileType, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        path,
        ft,
        Mode::from_raw_mode(0o644),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

pub fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

pub fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

pub fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// (name, type flag, link target, mtime) of every entry.
pub fn list(tar_bytes: &[u8]) -> Vec<(String, char, String, u64)> {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        out.push((
            String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            char::from(e.header().entry_type().as_byte()),
            link,
            e.header().mtime().unwrap(),
        ));
    }
    out
}

/// One hand-made entry for hostile tars.
pub fn raw(path: &str, kind: EntryKind, link: &str, content: &[u8]) -> (TarEntry, Vec<u8>) {
    let entry = TarEntry {
        path: path.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        size: content.len() as u64,
        link: link.as_bytes().to_vec(),
        dev_major: 0,
        dev_minor: 0,
        xattrs: BTreeMap::new(),
        content: None,
    };
    (entry, content.to_vec())
}

/// A tar of hand-made entries: any name, `..` included, can be written.
pub fn raw_tar(entries: &[(TarEntry, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (entry, content) in entries {
        out.extend_from_slice(&encode_header(entry).unwrap());
        out.extend_from_slice(content);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Every path below `dir` with its type and content, to prove that nothing
/// changed there.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let desc = if md.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                let mut s = String::new();
                std::fs::File::open(&p)
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                s
            };
            out.push((p, desc));
        }
    }
    out
}
