//! A [`Kernel`] that records every mutating call over an in-memory file tree, so the
//! setup sequence for a spec can be asserted without privileges.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{CapSets, FileKind, FsHandle, Kernel, MountCall, Namespace, Times};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Unshare(Vec<Namespace>),
    Mount(MountCall),
    FsOpen(String),
    FsConfig {
        key: String,
        value: String,
    },
    FsCreate,
    FsMount(PathBuf),
    FsClose,
    ReadonlyRecursive(PathBuf),
    Umount {
        target: PathBuf,
        detach: bool,
    },
    PivotRoot(PathBuf),
    Chdir(PathBuf),
    SetHostname(String),
    LoopbackUp,
    Mkdir(PathBuf),
    WriteFile(PathBuf),
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Mknod {
        path: PathBuf,
        major: u32,
        minor: u32,
    },
    RemoveDir(PathBuf),
    RemoveFile(PathBuf),
    SetTimes(PathBuf, Times),
    DropBounding(u32),
    ClearAmbient,
    SetGroups(Vec<u32>),
    SetGid(u32),
    SetUid(u32),
    SetCaps(CapSets),
    Umask(u32),
    ResetSignals,
    CloexecFrom(u32),
    Execve {
        path: PathBuf,
        argv: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(PathBuf),
    Device,
}

type FailFn = Box<dyn FnMut(&Op) -> Option<i32>>;

pub struct RecordingKernel {
    pub ops: Vec<Op>,
    pub files: BTreeMap<PathBuf, Node>,
    pub cwd: PathBuf,
    /// Consulted before each recorded call; `Some(errno)` makes the call fail with it
    /// (the call is still recorded).
    pub fail: Option<FailFn>,
    /// Trees that appear at a target when something is mounted there.
    pub on_mount: BTreeMap<PathBuf, Vec<(PathBuf, Node)>>,
}

impl Default for RecordingKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordingKernel {
    pub fn new() -> Self {
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("/"), Node::Dir);
        RecordingKernel {
            ops: Vec::new(),
            files,
            cwd: PathBuf::from("/"),
            fail: None,
            on_mount: BTreeMap::new(),
        }
    }

    /// Adds directories (with parents).
    pub fn dirs(&mut self, paths: &[&str]) -> &mut Self {
        for p in paths {
            let mut cur = PathBuf::from("/");
            for c in Path::new(p).components().skip(1) {
                cur.push(c);
                self.files.entry(cur.clone()).or_insert(Node::Dir);
            }
        }
        self
    }

    pub fn file(&mut self, path: &str, data: &str) -> &mut Self {
        if let Some(parent) = Path::new(path).parent().and_then(Path::to_str) {
            self.dirs(&[parent]);
        }
        self.files.insert(
            path.into(),
            Node::File {
                data: data.as_bytes().to_vec(),
                mode: 0o644,
            },
        );
        self
    }

    pub fn link(&mut self, path: &str, target: &str) -> &mut Self {
        self.files.insert(path.into(), Node::Symlink(target.into()));
        self
    }

    /// Moves the tree built under `from` away; it shows up under `target` once a mount
    /// is made there (what mounting an image's root filesystem looks like).
    pub fn show_on_mount(&mut self, from: &str, target: &str) -> &mut Self {
        let from = Path::new(from);
        let moved: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| p.starts_with(from) && *p != from)
            .cloned()
            .collect();
        let mut tree = Vec::new();
        for p in moved {
            if let (Some(node), Ok(rel)) = (self.files.remove(&p), p.strip_prefix(from)) {
                tree.push((rel.to_path_buf(), node));
            }
        }
        self.files.remove(from);
        self.on_mount.insert(target.into(), tree);
        self
    }

    fn mounted(&mut self, target: &Path) {
        if let Some(tree) = self.on_mount.remove(target) {
            for (rel, node) in tree {
                self.files.insert(target.join(rel), node);
            }
        }
    }

    fn record(&mut self, op: Op) -> io::Result<()> {
        let failure = self.fail.as_mut().and_then(|f| f(&op));
        self.ops.push(op);
        match failure {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn abs(&self, path: &Path) -> PathBuf {
        self.cwd.join(path)
    }

    fn need_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent().map(|p| self.files.get(p)) {
            Some(Some(Node::Dir)) | None => Ok(()),
            Some(Some(_)) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Some(None) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn create(&mut self, path: &Path, node: Node) -> io::Result<()> {
        let path = self.abs(path);
        self.need_parent(&path)?;
        if self.files.contains_key(&path) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.files.insert(path, node);
        Ok(())
    }

    /// Mount targets in call order (classic mounts and fsmount).
    pub fn mount_targets(&self) -> Vec<String> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Mount(m) => Some(m.target.display().to_string()),
                Op::FsMount(t) => Some(t.display().to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn mounts(&self) -> Vec<&MountCall> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Mount(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

impl Kernel for RecordingKernel {
    fn unshare(&mut self, namespaces: &[Namespace]) -> io::Result<()> {
        self.record(Op::Unshare(namespaces.to_vec()))
    }

    fn mount(&mut self, call: &MountCall) -> io::Result<()> {
        self.record(Op::Mount(call.clone()))?;
        self.mounted(&call.target);
        Ok(())
    }

    fn fsopen(&mut self, fstype: &str) -> io::Result<FsHandle> {
        self.record(Op::FsOpen(fstype.to_owned()))?;
        Ok(FsHandle(1))
    }

    fn fsconfig_string(&mut self, _fs: FsHandle, key: &str, value: &str) -> io::Result<()> {
        self.record(Op::FsConfig {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    fn fsconfig_create(&mut self, _fs: FsHandle) -> io::Result<()> {
        self.record(Op::FsCreate)
    }

    fn fsmount_at(&mut self, _fs: FsHandle, target: &Path) -> io::Result<()> {
        self.record(Op::FsMount(target.to_path_buf()))?;
        self.mounted(target);
        Ok(())
    }

    fn fsclose(&mut self, _fs: FsHandle) {
        self.ops.push(Op::FsClose);
    }

    fn set_readonly_recursive(&mut self, target: &Path) -> io::Result<()> {
        self.record(Op::ReadonlyRecursive(target.to_path_buf()))
    }

    fn umount(&mut self, target: &Path, detach: bool) -> io::Result<()> {
        self.record(Op::Umount {
            target: target.to_path_buf(),
            detach,
        })
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        self.record(Op::PivotRoot(new_root.to_path_buf()))?;
        // The tree below new_root becomes the whole tree.
        let mut files = BTreeMap::new();
        for (path, node) in &self.files {
            if let Ok(rest) = path.strip_prefix(new_root) {
                files.insert(Path::new("/").join(rest), node.clone());
            }
        }
        files.insert(PathBuf::from("/"), Node::Dir);
        self.files = files;
        self.cwd = PathBuf::from("/");
        Ok(())
    }

    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        let path = self.abs(path);
        self.record(Op::Chdir(path.clone()))?;
        match self.files.get(&path) {
            Some(Node::Dir) => {
                self.cwd = path;
                Ok(())
            }
            Some(_) => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn current_dir(&mut self) -> io::Result<PathBuf> {
        Ok(self.cwd.clone())
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        self.record(Op::SetHostname(name.to_owned()))
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        self.record(Op::LoopbackUp)
    }

    fn lstat(&mut self, path: &Path) -> io::Result<Option<FileKind>> {
        Ok(self.files.get(&self.abs(path)).map(|n| match n {
            Node::Dir => FileKind::Dir,
            Node::File { data, .. } => FileKind::File {
                len: data.len() as u64,
            },
            Node::Symlink(_) => FileKind::Symlink,
            Node::Device => FileKind::Other,
        }))
    }

    fn read_link(&mut self, path: &Path) -> io::Result<PathBuf> {
        match self.files.get(&self.abs(path)) {
            Some(Node::Symlink(t)) => Ok(t.clone()),
            Some(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        match self.files.get(&self.abs(path)) {
            Some(Node::File { data, .. }) => Ok(data.clone()),
            Some(_) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn mkdir(&mut self, path: &Path, _mode: u32) -> io::Result<()> {
        self.record(Op::Mkdir(path.to_path_buf()))?;
        self.create(path, Node::Dir)
    }

    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        self.record(Op::WriteFile(path.to_path_buf()))?;
        let abs = self.abs(path);
        self.need_parent(&abs)?;
        self.files.insert(
            abs,
            Node::File {
                data: contents.to_vec(),
                mode,
            },
        );
        Ok(())
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Op::Symlink {
            target: target.to_path_buf(),
            link: link.to_path_buf(),
        })?;
        self.create(link, Node::Symlink(target.to_path_buf()))
    }

    fn mknod_char(&mut self, path: &Path, _mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.record(Op::Mknod {
            path: path.to_path_buf(),
            major,
            minor,
        })?;
        self.create(path, Node::Device)
    }

    fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        self.record(Op::RemoveDir(path.to_path_buf()))?;
        let abs = self.abs(path);
        if self.files.keys().any(|p| p != &abs && p.starts_with(&abs)) {
            return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
        }
        match self.files.remove(&abs) {
            Some(_) => Ok(()),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.record(Op::RemoveFile(path.to_path_buf()))?;
        match self.files.remove(&self.abs(path)) {
            Some(_) => Ok(()),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    fn times(&mut self, path: &Path) -> io::Result<Times> {
        if !self.files.contains_key(&self.abs(path)) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(Times {
            atime: (1, 0),
            mtime: (2, 0),
        })
    }

    fn set_times(&mut self, path: &Path, times: Times) -> io::Result<()> {
        self.record(Op::SetTimes(path.to_path_buf(), times))
    }

    fn last_cap(&mut self) -> io::Result<u32> {
        Ok(40)
    }

    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()> {
        self.record(Op::DropBounding(cap))
    }

    fn clear_ambient_caps(&mut self) -> io::Result<()> {
        self.record(Op::ClearAmbient)
    }

    fn set_groups(&mut self, gids: &[u32]) -> io::Result<()> {
        self.record(Op::SetGroups(gids.to_vec()))
    }

    fn set_gid(&mut self, gid: u32) -> io::Result<()> {
        self.record(Op::SetGid(gid))
    }

    fn set_uid(&mut self, uid: u32) -> io::Result<()> {
        self.record(Op::SetUid(uid))
    }

    fn set_caps(&mut self, caps: CapSets) -> io::Result<()> {
        self.record(Op::SetCaps(caps))
    }

    fn set_umask(&mut self, mask: u32) {
        self.ops.push(Op::Umask(mask));
    }

    fn reset_signals(&mut self) {
        self.ops.push(Op::ResetSignals);
    }

    fn cloexec_from(&mut self, first: u32) {
        self.ops.push(Op::CloexecFrom(first));
    }

    fn execve(&mut self, path: &Path, argv: &[String], _envp: &[String]) -> io::Error {
        let abs = self.abs(path);
        if let Err(e) = self.record(Op::Execve {
            path: path.to_path_buf(),
            argv: argv.to_vec(),
        }) {
            return e;
        }
        match self.files.get(&abs) {
            None => io::Error::from_raw_os_error(libc::ENOENT),
            Some(Node::File { mode, .. }) if mode & 0o111 != 0 => {
                io::Error::other("execve recorded")
            }
            Some(_) => io::Error::from_raw_os_error(libc::EACCES),
        }
    }
}
