//! The real [`Kernel`]: thin wrappers over rustix and libc.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use super::{CapSets, FileKind, FsHandle, Kernel, MountCall, Namespace, Times};

/// The kernel itself; file descriptors of open filesystem contexts are held here.
#[derive(Default)]
pub struct RealKernel {
    contexts: HashMap<u32, OwnedFd>,
    next: u32,
}

impl RealKernel {
    pub fn new() -> Self {
        RealKernel::default()
    }

    fn context(&self, fs: FsHandle) -> io::Result<&OwnedFd> {
        self.contexts
            .get(&fs.0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }
}

pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount_attr` of linux/mount.h (not in every libc version).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl Kernel for RealKernel {
    fn unshare(&mut self, namespaces: &[Namespace]) -> io::Result<()> {
        let mut flags = 0;
        for ns in namespaces {
            flags |= match ns {
                Namespace::Mount => libc::CLONE_NEWNS,
                Namespace::Pid => libc::CLONE_NEWPID,
                Namespace::Ipc => libc::CLONE_NEWIPC,
                Namespace::Uts => libc::CLONE_NEWUTS,
                Namespace::Net => libc::CLONE_NEWNET,
            };
        }
        // SAFETY: plain syscall; the helper is single-threaded when it calls this.
        check(unsafe { libc::unshare(flags) })
    }

    fn mount(&mut self, call: &MountCall) -> io::Result<()> {
        let source = call.source.as_deref().map(cstring).transpose()?;
        let target = cstring(&call.target)?;
        let fstype = call
            .fstype
            .as_deref()
            .map(CString::new)
            .transpose()
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let data = call
            .data
            .as_deref()
            .map(CString::new)
            .transpose()
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: every pointer is a valid NUL-terminated string or null.
        check(unsafe {
            libc::mount(
                source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                target.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                call.flags as libc::c_ulong,
                data.as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
            )
        })
    }

    fn fsopen(&mut self, fstype: &str) -> io::Result<FsHandle> {
        let fd = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
        self.next += 1;
        self.contexts.insert(self.next, fd);
        Ok(FsHandle(self.next))
    }

    fn fsconfig_string(&mut self, fs: FsHandle, key: &str, value: &str) -> io::Result<()> {
        Ok(rustix::mount::fsconfig_set_string(
            self.context(fs)?,
            key,
            value,
        )?)
    }

    fn fsconfig_create(&mut self, fs: FsHandle) -> io::Result<()> {
        Ok(rustix::mount::fsconfig_create(self.context(fs)?)?)
    }

    fn fsmount_at(&mut self, fs: FsHandle, target: &Path) -> io::Result<()> {
        let mnt = rustix::mount::fsmount(
            self.context(fs)?,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::empty(),
        )?;
        Ok(rustix::mount::move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?)
    }

    fn fsclose(&mut self, fs: FsHandle) {
        self.contexts.remove(&fs.0);
    }

    fn set_readonly_recursive(&mut self, target: &Path) -> io::Result<()> {
        let target = cstring(target)?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr(2) with a valid path and a correctly sized struct.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_RECURSIVE as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn umount(&mut self, target: &Path, detach: bool) -> io::Result<()> {
        let target = cstring(target)?;
        let flags = if detach { libc::MNT_DETACH } else { 0 };
        // SAFETY: valid NUL-terminated path.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        let old = fs::File::open("/")?;
        let new = fs::File::open(new_root)?;
        let dot = c".";
        // SAFETY: plain syscalls on descriptors we own and static strings; this is runc's
        // sequence: the old root ends up stacked on the new one at ".", from where it is
        // made a slave (so the detach cannot propagate to the host) and lazily unmounted.
        unsafe {
            check(libc::fchdir(new.as_raw_fd()))?;
            let ret = libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr());
            if ret < 0 {
                return Err(io::Error::last_os_error());
            }
            check(libc::fchdir(old.as_raw_fd()))?;
            check(libc::mount(
                std::ptr::null(),
                dot.as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
        }
        std::env::set_current_dir("/")
    }

    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn current_dir(&mut self) -> io::Result<PathBuf> {
        std::env::current_dir()
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        Ok(rustix::system::sethostname(name.as_bytes())?)
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        // SAFETY: a socket we close below, an ifreq zero-initialised and named "lo".
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            let mut result = check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr));
            if result.is_ok() {
                ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                result = check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr));
            }
            libc::close(sock);
            result
        }
    }

    fn lstat(&mut self, path: &Path) -> io::Result<Option<FileKind>> {
        match fs::symlink_metadata(path) {
            Ok(m) => {
                let t = m.file_type();
                Ok(Some(if t.is_dir() {
                    FileKind::Dir
                } else if t.is_file() {
                    FileKind::File { len: m.len() }
                } else if t.is_symlink() {
                    FileKind::Symlink
                } else {
                    FileKind::Other
                }))
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn read_link(&mut self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(path)
    }

    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        f.write_all(contents)
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn mknod_char(&mut self, path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let c = cstring(path)?;
        // SAFETY: valid NUL-terminated path.
        unsafe {
            check(libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | mode,
                libc::makedev(major, minor),
            ))?;
            // mknod honours the umask; the device must end up with exactly `mode`.
            check(libc::chmod(c.as_ptr(), mode))
        }
    }

    fn remove_dir(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn times(&mut self, path: &Path) -> io::Result<Times> {
        let m = fs::symlink_metadata(path)?;
        Ok(Times {
            atime: (m.atime(), m.atime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
        })
    }

    fn set_times(&mut self, path: &Path, times: Times) -> io::Result<()> {
        let c = cstring(path)?;
        let ts = [
            libc::timespec {
                tv_sec: times.atime.0,
                tv_nsec: times.atime.1,
            },
            libc::timespec {
                tv_sec: times.mtime.0,
                tv_nsec: times.mtime.1,
            },
        ];
        // SAFETY: valid path and a two-element timespec array.
        check(unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    fn last_cap(&mut self) -> io::Result<u32> {
        let text = fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
        text.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/sys/kernel/cap_last_cap holds {text:?}"),
            )
        })
    }

    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })
    }

    fn clear_ambient_caps(&mut self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        match check(ret) {
            // Kernels before 4.3 have no ambient set, so nothing to clear.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }

    fn set_groups(&mut self, gids: &[u32]) -> io::Result<()> {
        // SAFETY: pointer and length of a live slice. glibc applies it to all threads.
        check(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) })
    }

    fn set_gid(&mut self, gid: u32) -> io::Result<()> {
        // SAFETY: integer arguments.
        check(unsafe { libc::setresgid(gid, gid, gid) })
    }

    fn set_uid(&mut self, uid: u32) -> io::Result<()> {
        // SAFETY: integer arguments.
        check(unsafe { libc::setresuid(uid, uid, uid) })
    }

    fn set_caps(&mut self, caps: CapSets) -> io::Result<()> {
        let mut header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let split = |v: u64| (v as u32, (v >> 32) as u32);
        let (e0, e1) = split(caps.effective);
        let (p0, p1) = split(caps.permitted);
        let (i0, i1) = split(caps.inheritable);
        let data = [
            CapData {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            CapData {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: capset(2) v3 takes a header and two data structs.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_umask(&mut self, mask: u32) {
        // SAFETY: umask cannot fail.
        unsafe {
            libc::umask(mask);
        }
    }

    fn reset_signals(&mut self) {
        // SAFETY: resetting dispositions and the mask of this (single-threaded) process.
        unsafe {
            for sig in 1..libc::SIGRTMAX() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
    }

    fn cloexec_from(&mut self, first: u32) {
        // SAFETY: close_range only flags descriptors; failure (old kernel) leaves them
        // as they are, and every descriptor Rust opens is already close-on-exec.
        unsafe {
            libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
        }
    }

    fn execve(&mut self, path: &Path, argv: &[String], envp: &[String]) -> io::Error {
        let to_c = |v: &[String]| -> Option<Vec<CString>> {
            v.iter().map(|s| CString::new(s.as_bytes()).ok()).collect()
        };
        let (Ok(path), Some(argv), Some(envp)) = (cstring(path), to_c(argv), to_c(envp)) else {
            return io::Error::from_raw_os_error(libc::EINVAL);
        };
        let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
        argv_p.push(std::ptr::null());
        let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
        envp_p.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of pointers into CStrings alive until the call.
        unsafe {
            libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr());
        }
        io::Error::last_os_error()
    }
}
