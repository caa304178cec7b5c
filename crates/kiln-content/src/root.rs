//! Reading files of an unpacked image as if chrooted into it.
//!
//! An image is untrusted: `/var/lib/rpm -> /etc` or `/root/.rpmdb -> ../../..`
//! must resolve inside the image, never on the host. Paths are walked one
//! component at a time from a directory descriptor of the root, symlinks are
//! read and re-interpreted against the root (absolute targets restart at the
//! root, `..` stops at it), and nothing is opened by a host path past the
//! root itself. This is the same contract as `openat2(RESOLVE_IN_ROOT)`,
//! done in user space so that it also works where seccomp filters hide
//! `openat2` (containerised workers).
//!
//! Only directories and regular files are ever opened: a device node or FIFO
//! planted where a database is expected would otherwise read host devices or
//! block forever.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Linux gives up after 40 symlinks in one lookup; so do we.
const MAX_SYMLINKS: usize = 40;

/// A root filesystem directory, held open.
pub(crate) struct Root {
    fd: OwnedFd,
}

/// A directory inside the root, held open, with its symlink-free path.
pub(crate) struct Dir {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Root {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Self { fd })
    }

    /// Opens the directory at `path` (in-root, absolute), or None when it
    /// does not exist or is not a directory.
    pub fn open_dir(&self, path: &Path) -> Result<Option<Dir>> {
        match self.resolve(path)? {
            Some(Resolved {
                parent,
                name: Some(name),
                path: canonical,
                kind: FileType::Directory,
            }) => {
                let fd = open_at(
                    parent.as_ref().unwrap_or(&self.fd),
                    &name,
                    OFlags::DIRECTORY,
                )
                .map_err(|e| io_error(&canonical, e))?;
                Ok(Some(Dir {
                    fd,
                    path: canonical,
                }))
            }
            Some(Resolved { name: None, .. }) => {
                let fd = rustix::io::dup(&self.fd).map_err(|e| io_error(path, e))?;
                Ok(Some(Dir {
                    fd,
                    path: PathBuf::from("/"),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Opens the regular file at `path` (in-root, absolute) for reading,
    /// or None when there is no regular file there.
    pub fn open_file(&self, path: &Path) -> Result<Option<(File, PathBuf)>> {
        let Some(Resolved {
            parent,
            name: Some(name),
            path: canonical,
            kind: FileType::RegularFile,
        }) = self.resolve(path)?
        else {
            return Ok(None);
        };
        let fd = open_at(parent.as_ref().unwrap_or(&self.fd), &name, OFlags::empty())
            .map_err(|e| io_error(&canonical, e))?;
        // The type was checked before opening; check the object actually
        // opened too, so that a swap in between cannot hand us a device.
        let st = rustix::fs::fstat(&fd).map_err(|e| io_error(&canonical, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        Ok(Some((File::from(fd), canonical)))
    }

    /// Opens a regular file directly inside an already opened directory
    /// (`name` is one component; a symlink there is resolved in the root).
    pub fn open_file_in(&self, dir: &Dir, name: &OsStr) -> Result<Option<(File, PathBuf)>> {
        self.open_file(&dir.path.join(name))
    }

    /// Walks `path` component by component from the root.
    fn resolve(&self, path: &Path) -> Result<Option<Resolved>> {
        let mut todo: VecDeque<OsString> = VecDeque::new();
        push_components(&mut todo, path);
        // The directories entered so far, below the root.
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut links = 0usize;

        while let Some(name) = todo.pop_front() {
            if name == ".." {
                stack.pop();
                continue;
            }
            let here = stack.last().map_or(&self.fd, |(fd, _)| fd);
            let st = match rustix::fs::statat(here, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(io_error(&joined(&stack, Some(&name)), e)),
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::SymlinkLoop {
                            path: path.to_owned(),
                        });
                    }
                    let target = rustix::fs::readlinkat(here, name.as_os_str(), Vec::new())
                        .map_err(|e| io_error(&joined(&stack, Some(&name)), e))?;
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        stack.clear();
                    }
                    let mut rest: VecDeque<OsString> = VecDeque::new();
                    push_components(&mut rest, target);
                    rest.append(&mut todo);
                    todo = rest;
                }
                FileType::Directory if !todo.is_empty() => {
                    let fd = open_at(here, &name, OFlags::DIRECTORY)
                        .map_err(|e| io_error(&joined(&stack, Some(&name)), e))?;
                    stack.push((fd, name));
                }
                // A non-directory in the middle of a path: nothing there.
                _ if !todo.is_empty() => return Ok(None),
                kind => {
                    let canonical = joined(&stack, Some(&name));
                    let parent = stack.pop().map(|(fd, _)| fd);
                    return Ok(Some(Resolved {
                        parent,
                        name: Some(name),
                        path: canonical,
                        kind,
                    }));
                }
            }
        }
        // The path ended on a directory already entered (or on the root).
        match stack.pop() {
            Some((_, name)) => {
                let canonical = joined(&stack, Some(&name));
                let parent = stack.pop().map(|(fd, _)| fd);
                Ok(Some(Resolved {
                    parent,
                    name: Some(name),
                    path: canonical,
                    kind: FileType::Directory,
                }))
            }
            None => Ok(Some(Resolved {
                parent: None,
                name: None,
                path: PathBuf::from("/"),
                kind: FileType::Directory,
            })),
        }
    }
}

struct Resolved {
    /// The directory holding the object; None for the root itself.
    parent: Option<OwnedFd>,
    /// None for the root itself.
    name: Option<OsString>,
    path: PathBuf,
    kind: FileType,
}

fn push_components(todo: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components() {
        match c {
            Component::Normal(n) => todo.push_back(n.to_owned()),
            Component::ParentDir => todo.push_back(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn joined(stack: &[(OwnedFd, OsString)], last: Option<&OsString>) -> PathBuf {
    let mut p = PathBuf::from("/");
    for (_, n) in stack {
        p.push(n);
    }
    if let Some(n) = last {
        p.push(n);
    }
    p
}

fn open_at(dir: &OwnedFd, name: &OsStr, extra: OFlags) -> rustix::io::Result<OwnedFd> {
    // NONBLOCK: opening a FIFO must never hang (the type check before the
    // open is the real guard; this covers a swap in between).
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY
            | OFlags::NONBLOCK
            | extra,
        Mode::empty(),
    )
}

fn io_error(path: &Path, e: Errno) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: io::Error::from(e),
    }
}

/// The names in a directory, sorted, without `.` and `..`.
pub(crate) fn list(dir: &Dir) -> Result<Vec<OsString>> {
    let fd = rustix::fs::openat(
        &dir.fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(&dir.path, e))?;
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::new(fd).map_err(|e| io_error(&dir.path, e))?;
    for entry in &mut entries {
        let entry = entry.map_err(|e| io_error(&dir.path, e))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(root: &Root, path: &str) -> Option<(String, PathBuf)> {
        let (mut f, p) = root.open_file(Path::new(path)).unwrap()?;
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        Some((s, p))
    }

    #[test]
    fn absolute_and_relative_links_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib/sysimage/rpm")).unwrap();
        std::fs::create_dir_all(r.join("var/lib")).unwrap();
        std::fs::write(r.join("usr/lib/sysimage/rpm/db"), "inside").unwrap();
        symlink("../../usr/lib/sysimage/rpm", r.join("var/lib/rpm")).unwrap();
        // Points at the host directory by absolute path: in the root it means
        // a path that does not exist there.
        symlink(outside.path(), r.join("abs")).unwrap();
        symlink("../../../../../../../..", r.join("up")).unwrap();
        std::fs::write(r.join("secret"), "root's").unwrap();

        let root = Root::open(r).unwrap();
        let (s, p) = read(&root, "/var/lib/rpm/db").unwrap();
        assert_eq!(s, "inside");
        assert_eq!(p, Path::new("/usr/lib/sysimage/rpm/db"));
        assert!(read(&root, "/abs/secret").is_none());
        let (s, p) = read(&root, "/up/secret").unwrap();
        assert_eq!((s.as_str(), p.as_path()), ("root's", Path::new("/secret")));
        let (s, _) = read(&root, "/../../secret").unwrap();
        assert_eq!(s, "root's");
    }

    #[test]
    fn loops_and_non_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        symlink("b", r.join("a")).unwrap();
        symlink("a", r.join("b")).unwrap();
        std::fs::write(r.join("file"), "x").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let root = Root::open(r).unwrap();
        assert!(matches!(
            root.open_file(Path::new("/a")),
            Err(Error::SymlinkLoop { .. })
        ));
        assert!(root.open_file(Path::new("/fifo")).unwrap().is_none());
        assert!(root.open_file(Path::new("/file/x")).unwrap().is_none());
        assert!(root.open_dir(Path::new("/file")).unwrap().is_none());
        let d = root.open_dir(Path::new("/")).unwrap().unwrap();
        assert_eq!(d.path, Path::new("/"));
        assert_eq!(list(&d).unwrap(), ["a", "b", "fifo", "file"]);
    }
}
