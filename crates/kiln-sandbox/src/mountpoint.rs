//! Mount targets inside the root: resolving container paths without leaving the root,
//! creating missing targets, and removing those placeholders ("stubs") after the run
//! so they do not end up in the layer — what BuildKit's `MountStubsCleaner` does.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::kernel::{FileKind, Kernel, Times};

const MAX_SYMLINKS: u32 = 40;

/// Resolves `path` (a path inside the container) to a path under `root`, following
/// symlinks as if `root` were `/`: absolute link targets and `..` never leave the root.
/// Components that do not exist are taken literally.
pub fn resolve_in_root<K: Kernel>(k: &mut K, root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = normal_parts(path).collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        if k.lstat(&root.join(&candidate))? == Some(FileKind::Symlink) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("too many symlinks resolving {}", path.display()),
                ));
            }
            let target = k.read_link(&root.join(&candidate))?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            for (i, p) in normal_parts(&target).enumerate() {
                pending.insert(i, p);
            }
        } else {
            resolved = candidate;
        }
    }
    Ok(root.join(resolved))
}

/// `.` dropped, `..` kept as a part (the resolver handles it against what it resolved).
fn normal_parts(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(p) => Some(p.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Dir,
    File,
}

/// A path the setup created in the root; `parent_times` is the parent's times before the
/// creation when the parent already existed (restored after removal, so the parent does
/// not look modified either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    /// Relative to the root.
    pub path: PathBuf,
    pub dir: bool,
    pub parent_times: Option<Times>,
}

/// Makes sure `container_path` exists under `root` as a directory or file to mount on,
/// creating what is missing and recording it in `stubs`. Returns the host-side path.
pub fn ensure<K: Kernel>(
    k: &mut K,
    root: &Path,
    container_path: &str,
    want: Want,
    stubs: &mut Vec<Stub>,
) -> io::Result<PathBuf> {
    let target = resolve_in_root(k, root, Path::new(container_path))?;
    let rel = target
        .strip_prefix(root)
        .map_err(io::Error::other)?
        .to_path_buf();
    match (k.lstat(&target)?, want) {
        (Some(FileKind::Dir), Want::Dir) => return Ok(target),
        (Some(FileKind::File { .. } | FileKind::Other), Want::File) => return Ok(target),
        (Some(FileKind::Dir), Want::File) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{container_path} is a directory, a file is needed to mount on"),
            ));
        }
        (Some(_), _) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{container_path} is not a directory, cannot mount a directory on it"),
            ));
        }
        (None, _) => {}
    }
    let parts: Vec<_> = rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let host = root.join(&cur);
        let last = i + 1 == parts.len();
        match k.lstat(&host)? {
            Some(FileKind::Dir) if !last => continue,
            None => {
                let parent = host.parent().unwrap_or(root).to_path_buf();
                let parent_times = if stubs.iter().any(|s| root.join(&s.path) == parent) {
                    None
                } else {
                    Some(k.times(&parent)?)
                };
                let dir = !last || want == Want::Dir;
                if dir {
                    k.mkdir(&host, 0o755)?;
                } else {
                    k.write_file(&host, b"", 0o644)?;
                }
                stubs.push(Stub {
                    path: cur.clone(),
                    dir,
                    parent_times,
                });
            }
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "/{} is not a directory, cannot create {container_path} below it",
                        cur.display()
                    ),
                ));
            }
        }
    }
    Ok(target)
}

/// Like [`ensure`], but directories created on the way to the target stay
/// in the root filesystem: only the target itself is a stub. This is what
/// buildah does for `RUN --mount` targets (`/mnt/gen` leaves `/mnt`), and
/// kiln's images are compared with buildah's.
pub fn ensure_keep_parents<K: Kernel>(
    k: &mut K,
    root: &Path,
    container_path: &str,
    want: Want,
    stubs: &mut Vec<Stub>,
) -> io::Result<PathBuf> {
    let mut created = Vec::new();
    let target = ensure(k, root, container_path, want, &mut created)?;
    let leaf = target.strip_prefix(root).map_err(io::Error::other)?;
    stubs.extend(created.into_iter().filter(|s| s.path == leaf));
    Ok(target)
}

/// Unmounts and removes the stubs (now under `root`, `/` after the pivot) in reverse
/// order, when they are still empty. Returns the ones that could not be removed for
/// another reason than holding content the command put there.
pub fn remove_stubs<K: Kernel>(k: &mut K, root: &Path, stubs: &[Stub]) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for stub in stubs.iter().rev() {
        let path = root.join(&stub.path);
        // Several mounts may be stacked on one target; peel them (bounded: the recording
        // kernel, and a kernel that lies, must not loop forever).
        for _ in 0..8 {
            if k.umount(&path, true).is_err() {
                break;
            }
        }
        let removed = match k.lstat(&path) {
            Ok(Some(FileKind::Dir)) if stub.dir => k.remove_dir(&path),
            Ok(Some(FileKind::File { len: 0 })) if !stub.dir => k.remove_file(&path),
            Ok(None) => Ok(()),
            // Content the command wrote is the command's; keep it.
            Ok(Some(_)) => Err(io::Error::from_raw_os_error(libc::ENOTEMPTY)),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {
                if let (Some(times), Some(parent)) = (stub.parent_times, path.parent()) {
                    let _ = k.set_times(parent, times);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(_) => left.push(Path::new("/").join(&stub.path)),
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recording::{Op, RecordingKernel};

    #[test]
    fn symlinks_resolve_inside_root() {
        let mut k = RecordingKernel::new();
        k.dirs(&["/r/etc", "/r/run/x"]);
        k.link("/r/etc/resolv.conf", "/run/x/resolv.conf");
        k.link("/r/escape", "../../../host");
        k.link("/r/rel", "etc");
        let r = Path::new("/r");
        assert_eq!(
            resolve_in_root(&mut k, r, Path::new("/etc/resolv.conf")).unwrap(),
            Path::new("/r/run/x/resolv.conf")
        );
        assert_eq!(
            resolve_in_root(&mut k, r, Path::new("/escape/etc")).unwrap(),
            Path::new("/r/host/etc")
        );
        assert_eq!(
            resolve_in_root(&mut k, r, Path::new("/rel/../rel/hosts")).unwrap(),
            Path::new("/r/etc/hosts")
        );
        assert_eq!(
            resolve_in_root(&mut k, r, Path::new("/../../x")).unwrap(),
            Path::new("/r/x")
        );
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let mut k = RecordingKernel::new();
        k.dirs(&["/r"]);
        k.link("/r/a", "b");
        k.link("/r/b", "a");
        let err = resolve_in_root(&mut k, Path::new("/r"), Path::new("/a")).unwrap_err();
        assert!(err.to_string().contains("too many symlinks"));
    }

    #[test]
    fn ensure_creates_and_records_missing_parents() {
        let mut k = RecordingKernel::new();
        k.dirs(&["/r/etc"]);
        let mut stubs = Vec::new();
        let p = ensure(&mut k, Path::new("/r"), "/a/b/c", Want::File, &mut stubs).unwrap();
        assert_eq!(p, Path::new("/r/a/b/c"));
        assert_eq!(
            stubs
                .iter()
                .map(|s| (s.path.clone(), s.dir))
                .collect::<Vec<_>>(),
            vec![
                ("a".into(), true),
                ("a/b".into(), true),
                ("a/b/c".into(), false)
            ]
        );
        assert!(stubs[0].parent_times.is_some());
        assert!(stubs[1].parent_times.is_none());
        // Existing targets create nothing.
        ensure(&mut k, Path::new("/r"), "/etc", Want::Dir, &mut stubs).unwrap();
        assert_eq!(stubs.len(), 3);
        // Kind mismatch.
        assert!(ensure(&mut k, Path::new("/r"), "/etc", Want::File, &mut stubs).is_err());
        assert!(ensure(&mut k, Path::new("/r"), "/a/b/c/d", Want::Dir, &mut stubs).is_err());
    }

    #[test]
    fn remove_stubs_keeps_content_and_restores_parent_times() {
        let mut k = RecordingKernel::new();
        k.dirs(&["/r/etc"]);
        let mut stubs = Vec::new();
        let root = Path::new("/r");
        ensure(&mut k, root, "/etc/hosts", Want::File, &mut stubs).unwrap();
        ensure(&mut k, root, "/data/sub", Want::Dir, &mut stubs).unwrap();
        ensure(&mut k, root, "/keep", Want::Dir, &mut stubs).unwrap();
        k.file("/r/keep/written-by-command", "x");
        k.ops.clear();
        let left = remove_stubs(&mut k, root, &stubs);
        assert!(left.is_empty());
        assert!(!k.files.contains_key(Path::new("/r/etc/hosts")));
        assert!(!k.files.contains_key(Path::new("/r/data")));
        assert!(k.files.contains_key(Path::new("/r/keep")));
        assert!(k.ops.contains(&Op::SetTimes(
            "/r/etc".into(),
            Times {
                atime: (1, 0),
                mtime: (2, 0)
            }
        )));
    }
}
