//! The seam: every system call the sandbox setup makes goes through [`Kernel`], so the
//! sequence of mounts, pivot and credential changes for a spec is unit-tested without
//! privileges against the recording double. Process management (fork, wait, exit) stays
//! outside: it is the orchestration, not the configuration.

use std::io;
use std::path::{Path, PathBuf};

pub mod real;
#[cfg(test)]
pub mod recording;

pub use real::RealKernel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Mount,
    Pid,
    Ipc,
    Uts,
    Net,
}

/// What `lstat` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File {
        len: u64,
    },
    Symlink,
    /// Devices, sockets, fifos.
    Other,
}

/// One classic `mount(2)` call; `flags` are `MS_*` bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountCall {
    pub source: Option<PathBuf>,
    pub target: PathBuf,
    pub fstype: Option<String>,
    pub flags: u64,
    pub data: Option<String>,
}

impl MountCall {
    pub fn new(
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> Self {
        MountCall {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_owned),
            flags,
            data: data.map(str::to_owned),
        }
    }
}

/// A filesystem context opened with `fsopen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsHandle(pub u32);

/// Access and modification times, (seconds, nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

pub trait Kernel {
    // Namespaces and mounts.
    fn unshare(&mut self, namespaces: &[Namespace]) -> io::Result<()>;
    fn mount(&mut self, call: &MountCall) -> io::Result<()>;
    fn fsopen(&mut self, fstype: &str) -> io::Result<FsHandle>;
    fn fsconfig_string(&mut self, fs: FsHandle, key: &str, value: &str) -> io::Result<()>;
    fn fsconfig_create(&mut self, fs: FsHandle) -> io::Result<()>;
    /// `fsmount` then `move_mount` of the new mount onto `target`.
    fn fsmount_at(&mut self, fs: FsHandle, target: &Path) -> io::Result<()>;
    fn fsclose(&mut self, fs: FsHandle);
    /// `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)`: the mount and all below it.
    fn set_readonly_recursive(&mut self, target: &Path) -> io::Result<()>;
    fn umount(&mut self, target: &Path, detach: bool) -> io::Result<()>;
    /// Makes `new_root` the root and detaches the old root entirely (runc's
    /// `pivot_root(".", ".")` then `umount2(".", MNT_DETACH)`), leaving cwd at `/`.
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()>;
    fn chdir(&mut self, path: &Path) -> io::Result<()>;
    fn current_dir(&mut self) -> io::Result<PathBuf>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// Brings `lo` up in the current network namespace.
    fn loopback_up(&mut self) -> io::Result<()>;

    // Files.
    /// `None` when the path (or a parent of it) does not exist.
    fn lstat(&mut self, path: &Path) -> io::Result<Option<FileKind>>;
    fn read_link(&mut self, path: &Path) -> io::Result<PathBuf>;
    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()>;
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    fn mknod_char(&mut self, path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()>;
    fn remove_dir(&mut self, path: &Path) -> io::Result<()>;
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;
    fn times(&mut self, path: &Path) -> io::Result<Times>;
    fn set_times(&mut self, path: &Path, times: Times) -> io::Result<()>;

    // Credentials and process state.
    fn last_cap(&mut self) -> io::Result<u32>;
    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()>;
    fn clear_ambient_caps(&mut self) -> io::Result<()>;
    fn set_groups(&mut self, gids: &[u32]) -> io::Result<()>;
    fn set_gid(&mut self, gid: u32) -> io::Result<()>;
    fn set_uid(&mut self, uid: u32) -> io::Result<()>;
    fn set_caps(&mut self, caps: CapSets) -> io::Result<()>;
    fn set_umask(&mut self, mask: u32);
    /// Default dispositions and an empty mask: the helper's (e.g. Rust's ignored
    /// SIGPIPE) must not leak into the command.
    fn reset_signals(&mut self);
    /// Marks every descriptor from `first` up close-on-exec.
    fn cloexec_from(&mut self, first: u32);
    /// Only returns on failure.
    fn execve(&mut self, path: &Path, argv: &[String], envp: &[String]) -> io::Error;
}
