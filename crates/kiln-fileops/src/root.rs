//! `Root`: an open directory standing for "/" of an image or of the build
//! context, and the resolver that walks paths inside it.
//!
//! Every lookup goes component by component from directory file descriptors
//! with `O_NOFOLLOW`; a symbolic link is read and its target walked again from
//! the root (absolute target) or from the link's directory (relative target),
//! with `..` never climbing above the root. So a hostile link in an image
//! (`/etc -> /host/etc`, `x -> ../../..`) resolves inside the root, the way the
//! kernel's `RESOLVE_IN_ROOT` and BuildKit's `fs.RootPath` do, and nothing is
//! ever read or written through a path string the kernel would resolve itself.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::paths::raw_components;

/// Links followed in one lookup before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Files hidden from a build context, as `.dockerignore` says.
pub trait Ignore {
    /// Whether `path` (relative to the context root, `/`-separated, no leading
    /// slash, e.g. `dir/file.txt`) is excluded.
    fn is_excluded(&self, path: &str) -> bool;

    /// Whether an excluded directory may still hold included paths (a later
    /// `!dir/keep` exception), so that it must be walked anyway.
    fn may_include_under(&self, _dir: &str) -> bool {
        false
    }
}

impl<F: Fn(&str) -> bool> Ignore for F {
    fn is_excluded(&self, path: &str) -> bool {
        self(path)
    }
}

/// What a root stands for; it decides ownership and `..` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// The build context (or a named local context): sources above its root
    /// are refused, copied files belong to 0:0 unless `--chown`.
    Context,
    /// An image or build-stage root: `COPY --from` keeps owners, and `..`
    /// in a source path stops at its root.
    Image,
}

/// "/" of an image root or of the build context, as an open directory.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    kind: RootKind,
    ignore: Option<Arc<dyn Ignore + Send + Sync>>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("ignore", &self.ignore.is_some())
            .finish()
    }
}

impl Root {
    /// Opens `path` as an image (or stage) root; also the kind for destinations.
    pub fn open_image(path: impl AsRef<Path>) -> Result<Root> {
        Self::open(path.as_ref(), RootKind::Image)
    }

    /// Opens `path` as a build context.
    pub fn open_context(path: impl AsRef<Path>) -> Result<Root> {
        Self::open(path.as_ref(), RootKind::Context)
    }

    fn open(path: &Path, kind: RootKind) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open root", &path.display().to_string())?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            kind,
            ignore: None,
        })
    }

    /// Wraps an already open directory (e.g. one the builder got from a mount).
    pub fn from_fd(fd: OwnedFd, display_path: PathBuf, kind: RootKind) -> Root {
        Root {
            fd,
            path: display_path,
            kind,
            ignore: None,
        }
    }

    /// Hides the paths `ignore` excludes from every lookup, walk, digest and
    /// copy made through this root (the `.dockerignore` of a build context).
    pub fn with_ignore(mut self, ignore: Arc<dyn Ignore + Send + Sync>) -> Root {
        self.ignore = Some(ignore);
        self
    }

    /// Where this root lives on the host (for messages only; never used to open files).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this root stands for.
    pub fn kind(&self) -> RootKind {
        self.kind
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the context-relative `rel` path is excluded by `.dockerignore`.
    pub(crate) fn is_excluded(&self, rel: &str) -> bool {
        match &self.ignore {
            Some(ig) if !rel.is_empty() => ig.is_excluded(rel),
            _ => false,
        }
    }

    /// Whether an excluded directory must still be walked for exceptions.
    pub(crate) fn may_include_under(&self, rel: &str) -> bool {
        self.ignore
            .as_ref()
            .is_some_and(|ig| ig.may_include_under(rel))
    }
}

/// How a lookup treats the last component and missing directories.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup {
    /// Follow a symlink in the last component (COPY's top-level source, a destination).
    Follow,
    /// Stop at a symlink in the last component.
    NoFollow,
}

/// The outcome of resolving a path inside a root: the open parent directories
/// down to the last component, and that component's state.
pub(crate) struct Resolved {
    /// Directories below the root, each with its canonical name.
    stack: Vec<(OwnedFd, String)>,
    /// The last component and its status, or `None` when the path is the root itself.
    pub last: Option<(String, Option<Stat>)>,
}

impl Resolved {
    /// The directory holding the last component (the root for top-level names).
    pub fn parent<'a>(&'a self, root: &'a Root) -> BorrowedFd<'a> {
        self.stack
            .last()
            .map(|(fd, _)| fd.as_fd())
            .unwrap_or(root.fd())
    }

    /// The canonical root-relative path of the resolved object ("" for the root).
    pub fn relative(&self) -> String {
        let mut parts: Vec<&str> = self.stack.iter().map(|(_, n)| n.as_str()).collect();
        if let Some((name, _)) = &self.last {
            parts.push(name);
        }
        parts.join("/")
    }

    /// The canonical path as an absolute path inside the root, for messages.
    pub fn display(&self) -> String {
        format!("/{}", self.relative())
    }

    /// Whether the object exists, and its status (the root counts as a directory).
    pub fn stat(&self, root: &Root) -> Result<Option<Stat>> {
        match &self.last {
            Some((_, st)) => Ok(*st),
            None => rustix::fs::fstat(root.fd()).map(Some).ctx("stat", "/"),
        }
    }
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

pub(crate) fn is_symlink(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Symlink
}

fn open_dir_path(parent: BorrowedFd<'_>, name: &str, shown: &str) -> Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open directory", shown)
}

/// Resolves `path` inside `root`. A missing last component is reported as
/// `last = Some((name, None))`; a missing directory on the way is an error.
pub(crate) fn resolve(root: &Root, path: &str, lookup: Lookup) -> Result<Resolved> {
    walk(root, path, lookup, None)
}

/// Owner and mode for directories that [`mkdir_all`] creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDirs {
    pub mode: u32,
    pub owner: (u32, u32),
}

/// Resolves `path` inside `root`, creating the missing directories (symlinks
/// on the way are followed inside the root, like `mkdir -p` in a chroot).
/// Returns the resolution of the directory and whether anything was created.
pub(crate) fn mkdir_all(root: &Root, path: &str, new: NewDirs) -> Result<(Resolved, bool)> {
    let mut created = false;
    let resolved = walk(root, path, Lookup::Follow, Some((new, &mut created)))?;
    Ok((resolved, created))
}

fn walk(
    root: &Root,
    path: &str,
    lookup: Lookup,
    mut create: Option<(NewDirs, &mut bool)>,
) -> Result<Resolved> {
    let mut pending: VecDeque<String> = raw_components(path).map(str::to_string).collect();
    let mut stack: Vec<(OwnedFd, String)> = Vec::new();
    let mut links = 0usize;
    let shown = |stack: &Vec<(OwnedFd, String)>, name: &str| {
        let mut s: String = stack.iter().map(|(_, n)| format!("/{n}")).collect();
        s.push('/');
        s.push_str(name);
        s
    };
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let is_last = pending.is_empty();
        let parent = stack.last().map(|(fd, _)| fd.as_fd()).unwrap_or(root.fd());
        let st = match rustix::fs::statat(parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(Error::io("stat", shown(&stack, &name), e)),
        };
        match st {
            None => {
                if let Some((new, created)) = create.as_mut() {
                    let here = shown(&stack, &name);
                    match rustix::fs::mkdirat(parent, name.as_str(), Mode::from_raw_mode(new.mode))
                    {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(Error::io("mkdir", here, e)),
                    }
                    let fd = open_dir_path(parent, &name, &here)?;
                    // mkdir obeys the umask; the requested mode is set exactly.
                    rustix::fs::chmodat(
                        parent,
                        name.as_str(),
                        Mode::from_raw_mode(new.mode),
                        AtFlags::empty(),
                    )
                    .ctx("chmod", &here)?;
                    rustix::fs::chownat(
                        &fd,
                        "",
                        Some(rustix::fs::Uid::from_raw(new.owner.0)),
                        Some(rustix::fs::Gid::from_raw(new.owner.1)),
                        AtFlags::EMPTY_PATH,
                    )
                    .ctx("chown", &here)?;
                    **created = true;
                    stack.push((fd, name));
                    continue;
                }
                if is_last {
                    return Ok(Resolved {
                        stack,
                        last: Some((name, None)),
                    });
                }
                return Err(Error::io("resolve", shown(&stack, &name), Errno::NOENT));
            }
            Some(st)
                if is_symlink(&st)
                    && (!is_last || matches!(lookup, Lookup::Follow) || create.is_some()) =>
            {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop(path.to_string()));
                }
                let target = rustix::fs::readlinkat(parent, name.as_str(), Vec::new())
                    .ctx("readlink", &shown(&stack, &name))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    stack.clear();
                }
                for comp in raw_components(&target)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    pending.push_front(comp.to_string());
                }
            }
            Some(st) if is_last && create.is_none() => {
                return Ok(Resolved {
                    stack,
                    last: Some((name, Some(st))),
                });
            }
            Some(st) if is_dir(&st) => {
                let fd = open_dir_path(parent, &name, &shown(&stack, &name))?;
                stack.push((fd, name));
            }
            Some(_) => return Err(Error::NotADirectory(shown(&stack, &name))),
        }
    }
    // The path named a directory that is now on the stack (or the root).
    match stack.pop() {
        Some((fd, name)) => {
            let st = rustix::fs::fstat(&fd).ctx("stat", &shown(&stack, &name))?;
            Ok(Resolved {
                stack,
                last: Some((name, Some(st))),
            })
        }
        None => Ok(Resolved { stack, last: None }),
    }
}

/// Opens the resolved object for reading: a directory (`O_DIRECTORY`) or a file.
pub(crate) fn open_resolved(root: &Root, r: &Resolved, flags: OFlags) -> Result<OwnedFd> {
    let name = r.last.as_ref().map(|(n, _)| n.as_str()).unwrap_or(".");
    rustix::fs::openat(
        r.parent(root),
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", &r.display())
}
