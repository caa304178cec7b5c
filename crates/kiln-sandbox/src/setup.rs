//! The mount sequence of the sandbox's pid 1: a private mount namespace, the root
//! filesystem on a private staging tmpfs, /proc /dev /sys, the /etc files, extra mounts,
//! Docker's masked and read-only paths, hostname, loopback, then pivot_root.

use std::io;
use std::path::{Path, PathBuf};

use crate::kernel::{FileKind, Kernel, MountCall, Namespace};
use crate::mountpoint::{self, Stub, Want};
use crate::rootfs;
use crate::spec::{Mount, Network, SandboxSpec};
use crate::user::{self, Credentials};

/// Docker's masked paths: hidden from the command (files under /dev/null, dirs under an
/// empty read-only tmpfs).
const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// What the setup leaves for the run: placeholders to remove afterwards.
#[derive(Debug, Default)]
pub struct Prepared {
    pub stubs: Vec<Stub>,
}

fn ctx<T>(result: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, String> {
    result.map_err(|e| format!("{}: {e}", what()))
}

fn mount<K: Kernel>(
    k: &mut K,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<(), String> {
    let call = MountCall::new(source, target, fstype, flags, data);
    ctx(k.mount(&call), || {
        format!(
            "mounting {} on {}",
            fstype
                .map(str::to_owned)
                .or_else(|| source.map(|s| s.display().to_string()))
                .unwrap_or_else(|| "(remount)".to_owned()),
            target.display()
        )
    })
}

/// Read-only for the mount at `target` and everything below; kernels without
/// mount_setattr get the top mount remounted read-only.
fn make_readonly<K: Kernel>(k: &mut K, target: &Path) -> Result<(), String> {
    match k.set_readonly_recursive(target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => mount(
            k,
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        ),
        Err(e) => Err(format!("making {} read-only: {e}", target.display())),
    }
}

/// Stacks `lowers` on a private mount point under `staging`, with a throwaway
/// upper directory on a tmpfs of its own (writes vanish with the sandbox).
fn layers_mount<K: Kernel>(
    k: &mut K,
    staging: &Path,
    index: usize,
    lowers: &[PathBuf],
) -> Result<PathBuf, String> {
    let base = staging.join(format!("layers{index}"));
    ctx(k.mkdir(&base, 0o700), || {
        format!("creating {}", base.display())
    })?;
    mount(
        k,
        Some(Path::new("tmpfs")),
        &base,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0700"),
    )?;
    let (merged, upper, work, empty) = (
        base.join("merged"),
        base.join("upper"),
        base.join("work"),
        base.join("empty"),
    );
    for d in [&merged, &upper, &work, &empty] {
        ctx(k.mkdir(d, 0o755), || format!("creating {}", d.display()))?;
    }
    let lowers = if lowers.is_empty() {
        vec![empty]
    } else {
        lowers.to_vec()
    };
    rootfs::mount_rootfs_with(
        k,
        &crate::spec::RootFs::Overlay {
            lowers,
            upper,
            work,
        },
        &merged,
    )?;
    Ok(merged)
}

fn bind<K: Kernel>(k: &mut K, source: &Path, target: &Path, readonly: bool) -> Result<(), String> {
    mount(
        k,
        Some(source),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    if readonly {
        make_readonly(k, target)?;
    }
    Ok(())
}

/// Everything up to and including pivot_root. `staging` is an empty host directory
/// private to this run; it gets a tmpfs holding the root mount point and the /etc files.
pub fn prepare_root<K: Kernel>(
    k: &mut K,
    spec: &SandboxSpec,
    staging: &Path,
) -> Result<Prepared, String> {
    ctx(k.unshare(&[Namespace::Mount]), || {
        "creating a mount namespace".to_owned()
    })?;
    // Nothing mounted from here on may propagate back to the host.
    mount(
        k,
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        k,
        Some(Path::new("tmpfs")),
        staging,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0700,size=4m"),
    )?;
    let root = staging.join("root");
    ctx(k.mkdir(&root, 0o755), || {
        format!("creating {}", root.display())
    })?;
    rootfs::mount_rootfs_with(k, &spec.rootfs, &root)?;

    let etc_files = [
        ("/etc/hosts", spec.hosts.as_str()),
        ("/etc/resolv.conf", spec.resolv_conf.as_str()),
        ("/etc/hostname", spec.hostname.as_str()),
    ];
    for (name, content) in etc_files {
        let file = staging.join(&name[5..]);
        let mut content = content.to_owned();
        if name == "/etc/hostname" && !content.is_empty() {
            content.push('\n');
        }
        ctx(k.write_file(&file, content.as_bytes(), 0o644), || {
            format!("writing {}", file.display())
        })?;
    }

    let mut stubs = Vec::new();
    let ensure = |k: &mut K, path: &str, want: Want, stubs: &mut Vec<Stub>| {
        ctx(mountpoint::ensure(k, &root, path, want, stubs), || {
            format!("preparing mount point {path} in the root filesystem")
        })
    };

    let ensure_user = |k: &mut K, path: &str, want: Want, stubs: &mut Vec<Stub>| {
        ctx(
            mountpoint::ensure_keep_parents(k, &root, path, want, stubs),
            || format!("mount point {path}"),
        )
    };
    let proc = ensure(k, "/proc", Want::Dir, &mut stubs)?;
    mount(
        k,
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;

    let dev = ensure(k, "/dev", Want::Dir, &mut stubs)?;
    populate_dev(k, &dev)?;

    let sys = ensure(k, "/sys", Want::Dir, &mut stubs)?;
    match spec.network {
        // sysfs shows the network devices of the mounting namespace: only a namespace
        // of our own may mount a fresh one.
        Network::None => mount(
            k,
            Some(Path::new("sysfs")),
            &sys,
            Some("sysfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        )?,
        Network::Host => bind(k, Path::new("/sys"), &sys, true)?,
    }

    for (name, _) in etc_files {
        let target = ensure(k, name, Want::File, &mut stubs)?;
        bind(k, &staging.join(&name[5..]), &target, true)?;
    }

    for (i, m) in spec.mounts.iter().enumerate() {
        match m {
            Mount::Layers {
                lowers,
                source,
                target,
                readonly,
            } => {
                let merged = layers_mount(k, staging, i, lowers)?;
                let inside = ctx(
                    mountpoint::resolve_in_root(k, &merged, Path::new(&format!("/{source}"))),
                    || format!("bind mount source {source} in the stage's root"),
                )?;
                let want = match ctx(k.lstat(&inside), || format!("bind mount source {source}"))? {
                    Some(FileKind::Dir) => Want::Dir,
                    Some(_) => Want::File,
                    None => return Err(format!("bind mount source {source} does not exist")),
                };
                let host = ensure_user(k, target, want, &mut stubs)?;
                bind(k, &inside, &host, *readonly)?;
            }
            Mount::Bind {
                source,
                target,
                readonly,
            } => {
                let want = match ctx(k.lstat(source), || {
                    format!("bind mount source {}", source.display())
                })? {
                    Some(FileKind::Dir) => Want::Dir,
                    Some(_) => Want::File,
                    None => {
                        return Err(format!(
                            "bind mount source {} does not exist",
                            source.display()
                        ));
                    }
                };
                let host = ensure_user(k, target, want, &mut stubs)?;
                bind(k, source, &host, *readonly)?;
            }
            Mount::Socket { source, target } => {
                match ctx(k.lstat(source), || format!("socket {}", source.display()))? {
                    Some(FileKind::Dir) => {
                        return Err(format!("socket {} is a directory", source.display()));
                    }
                    Some(_) => {}
                    None => return Err(format!("socket {} does not exist", source.display())),
                }
                // Every directory created here is a stub too: none may stay.
                let host = ensure(k, target, Want::File, &mut stubs)?;
                bind(k, source, &host, false)?;
            }
            Mount::Tmpfs { target, size, mode } => {
                let host = ensure_user(k, target, Want::Dir, &mut stubs)?;
                let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                mount(
                    k,
                    Some(Path::new("tmpfs")),
                    &host,
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(&data),
                )?;
            }
        }
    }

    mask_paths(k, &root)?;

    if !spec.hostname.is_empty() {
        ctx(k.set_hostname(&spec.hostname), || {
            format!("setting hostname {:?}", spec.hostname)
        })?;
    }
    if spec.network == Network::None {
        ctx(k.loopback_up(), || "bringing up lo".to_owned())?;
    }
    ctx(k.pivot_root(&root), || {
        format!("pivot_root into {}", root.display())
    })?;
    Ok(Prepared { stubs })
}

fn populate_dev<K: Kernel>(k: &mut K, dev: &Path) -> Result<(), String> {
    mount(
        k,
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        ctx(k.mknod_char(&path, 0o666, major, minor), || {
            format!("creating device {}", path.display())
        })?;
    }
    let pts = dev.join("pts");
    ctx(k.mkdir(&pts, 0o755), || {
        format!("creating {}", pts.display())
    })?;
    mount(
        k,
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let shm = dev.join("shm");
    ctx(k.mkdir(&shm, 0o755), || {
        format!("creating {}", shm.display())
    })?;
    mount(
        k,
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = dev.join("mqueue");
    ctx(k.mkdir(&mqueue, 0o755), || {
        format!("creating {}", mqueue.display())
    })?;
    // POSIX message queues are a nicety; a kernel without them still runs builds.
    let _ = k.mount(&MountCall::new(
        Some(Path::new("mqueue")),
        &mqueue,
        Some("mqueue"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    ));
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        ctx(k.symlink(Path::new(target), &link), || {
            format!("creating {}", link.display())
        })?;
    }
    Ok(())
}

fn mask_paths<K: Kernel>(k: &mut K, root: &Path) -> Result<(), String> {
    for path in READONLY {
        let host = root.join(&path[1..]);
        if ctx(k.lstat(&host), || format!("inspecting {path}"))?.is_none() {
            continue;
        }
        bind(k, &host, &host, true)?;
    }
    let null = root.join("dev/null");
    for path in MASKED {
        let host = root.join(&path[1..]);
        match ctx(k.lstat(&host), || format!("inspecting {path}"))? {
            None => {}
            Some(FileKind::Dir) => mount(
                k,
                Some(Path::new("tmpfs")),
                &host,
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
            )?,
            Some(_) => mount(k, Some(&null), &host, None, libc::MS_BIND, None)?,
        }
    }
    Ok(())
}

/// After the pivot: who the command runs as, from the image's own files.
pub fn resolve_credentials<K: Kernel>(k: &mut K, user_spec: &str) -> Result<Credentials, String> {
    let mut read = |path: &str| -> Result<Option<String>, String> {
        match k.read_file(Path::new(path)) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {path} of the image: {e}")),
        }
    };
    let passwd = read("/etc/passwd")?;
    let group = read("/etc/group")?;
    user::resolve(user_spec, passwd.as_deref(), group.as_deref()).map_err(|e| e.to_string())
}

/// After the pivot: the working directory, created (as root, 0755, like runc) when the
/// image lacks it. Unlike mount stubs it stays: Docker's layer has it too.
pub fn ensure_cwd<K: Kernel>(k: &mut K, cwd: &str) -> Result<(), String> {
    let target = ctx(
        mountpoint::resolve_in_root(k, Path::new("/"), Path::new(cwd)),
        || format!("resolving working directory {cwd}"),
    )?;
    let mut cur = PathBuf::from("/");
    for part in target.components().skip(1) {
        cur.push(part);
        match ctx(k.lstat(&cur), || format!("inspecting {}", cur.display()))? {
            Some(FileKind::Dir) => {}
            None => ctx(k.mkdir(&cur, 0o755), || {
                format!("creating working directory {}", cur.display())
            })?,
            Some(_) => {
                return Err(format!(
                    "working directory {cwd}: {} is not a directory",
                    cur.display()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recording::{Node, Op, RecordingKernel};
    use crate::spec::RootFs;

    const S: &str = "/tmp/.kiln-sandbox-x";

    fn kernel() -> RecordingKernel {
        let mut k = RecordingKernel::new();
        k.dirs(&[S]);
        // What the lower layers show once mounted: a typical image root.
        k.dirs(&[
            "/image/etc",
            "/image/proc/sys",
            "/image/dev",
            "/image/sys/firmware",
        ]);
        k.file("/image/etc/hosts", "");
        k.file("/image/proc/kcore", "");
        k.file(
            "/image/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        );
        k.show_on_mount("/image", &r(""));
        k
    }

    fn spec() -> SandboxSpec {
        let mut s = SandboxSpec::new(
            RootFs::Overlay {
                lowers: vec!["/l1".into(), "/l0".into()],
                upper: "/up".into(),
                work: "/work".into(),
            },
            vec!["sh".into()],
        );
        s.hostname = "box".into();
        s
    }

    fn r(p: &str) -> String {
        format!("{S}/root{p}")
    }

    #[test]
    fn mount_sequence_for_an_overlay_without_network() {
        let mut k = kernel();
        let prepared = prepare_root(&mut k, &spec(), Path::new(S)).unwrap();
        assert_eq!(k.ops[0], Op::Unshare(vec![Namespace::Mount]));
        assert_eq!(
            k.mount_targets(),
            vec![
                "/".to_owned(),
                S.to_owned(),
                r(""),
                r("/proc"),
                r("/dev"),
                r("/dev/pts"),
                r("/dev/shm"),
                r("/dev/mqueue"),
                r("/sys"),
                r("/etc/hosts"),
                r("/etc/resolv.conf"),
                r("/etc/hostname"),
                r("/proc/sys"),
                r("/proc/kcore"),
                r("/sys/firmware"),
            ]
        );
        // The first mount makes everything private before anything else is mounted.
        assert_eq!(k.mounts()[0].flags, libc::MS_REC | libc::MS_PRIVATE);
        let sysfs = k
            .mounts()
            .into_iter()
            .find(|m| m.fstype.as_deref() == Some("sysfs"))
            .unwrap();
        assert_ne!(sysfs.flags & libc::MS_RDONLY, 0);
        let devpts = k
            .mounts()
            .into_iter()
            .find(|m| m.fstype.as_deref() == Some("devpts"))
            .unwrap();
        assert!(
            devpts
                .data
                .as_deref()
                .unwrap()
                .contains("newinstance,ptmxmode=0666")
        );
        // /etc files are bound read-only from the staging tmpfs.
        assert!(
            k.ops
                .contains(&Op::ReadonlyRecursive(r("/etc/hosts").into()))
        );
        assert!(k.ops.contains(&Op::Mknod {
            path: r("/dev/null").into(),
            major: 1,
            minor: 3
        }));
        assert!(k.ops.contains(&Op::Symlink {
            target: "pts/ptmx".into(),
            link: r("/dev/ptmx").into()
        }));
        // Only the missing /etc files became stubs, and the hostname/loopback/pivot close the sequence.
        let stubs: Vec<_> = prepared
            .stubs
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        assert_eq!(stubs, vec!["etc/resolv.conf", "etc/hostname"]);
        let n = k.ops.len();
        assert_eq!(
            &k.ops[n - 3..],
            &[
                Op::SetHostname("box".into()),
                Op::LoopbackUp,
                Op::PivotRoot(r("").into())
            ]
        );
    }

    #[test]
    fn host_network_binds_sys_read_only_and_keeps_lo_alone() {
        let mut k = kernel();
        let mut s = spec();
        s.network = Network::Host;
        prepare_root(&mut k, &s, Path::new(S)).unwrap();
        assert!(
            k.mounts()
                .iter()
                .all(|m| m.fstype.as_deref() != Some("sysfs"))
        );
        let sys = k
            .mounts()
            .into_iter()
            .find(|m| m.target == Path::new(&r("/sys")))
            .unwrap();
        assert_eq!(sys.source.as_deref(), Some(Path::new("/sys")));
        assert_eq!(sys.flags, libc::MS_BIND | libc::MS_REC);
        assert!(k.ops.contains(&Op::ReadonlyRecursive(r("/sys").into())));
        assert!(!k.ops.contains(&Op::LoopbackUp));
    }

    #[test]
    fn extra_mounts_in_order_with_stubs() {
        let mut k = kernel();
        k.dirs(&["/host/data"]);
        let mut s = spec();
        s.mounts = vec![
            Mount::Bind {
                source: "/host/data".into(),
                target: "/mnt/data".into(),
                readonly: true,
            },
            Mount::Tmpfs {
                target: "/scratch".into(),
                size: Some(1048576),
                mode: None,
            },
        ];
        let prepared = prepare_root(&mut k, &s, Path::new(S)).unwrap();
        let targets = k.mount_targets();
        let i = targets.iter().position(|t| *t == r("/mnt/data")).unwrap();
        assert_eq!(targets[i + 1], r("/scratch"));
        let tmpfs = k
            .mounts()
            .into_iter()
            .find(|m| m.target == Path::new(&r("/scratch")))
            .unwrap();
        assert_eq!(tmpfs.data.as_deref(), Some("mode=1777,size=1048576"));
        assert!(
            k.ops
                .contains(&Op::ReadonlyRecursive(r("/mnt/data").into()))
        );
        let stubs: Vec<_> = prepared
            .stubs
            .iter()
            .map(|s| s.path.display().to_string())
            .collect();
        // Created parents of RUN --mount targets stay, as with buildah.
        assert!(stubs.ends_with(&["mnt/data".into(), "scratch".into()]));
        assert!(!stubs.contains(&"mnt".to_string()));
    }

    #[test]
    fn socket_mounts_leave_no_directory_behind() {
        let mut k = kernel();
        k.file("/tmp/agent.sock", "");
        let mut s = spec();
        s.mounts = vec![
            Mount::Socket {
                source: "/tmp/agent.sock".into(),
                target: "/run/buildkit/ssh_agent.0".into(),
            },
            Mount::Socket {
                source: "/tmp/agent.sock".into(),
                target: "/etc/agent.sock".into(),
            },
        ];
        let prepared = prepare_root(&mut k, &s, Path::new(S)).unwrap();
        let sock = k
            .mounts()
            .into_iter()
            .find(|m| m.target == Path::new(&r("/run/buildkit/ssh_agent.0")))
            .unwrap();
        assert_eq!(sock.source.as_deref(), Some(Path::new("/tmp/agent.sock")));
        assert_eq!(sock.flags, libc::MS_BIND | libc::MS_REC);
        let stubs: Vec<_> = prepared
            .stubs
            .iter()
            .map(|s| (s.path.display().to_string(), s.dir))
            .collect();
        assert!(
            stubs.ends_with(&[
                ("run".into(), true),
                ("run/buildkit".into(), true),
                ("run/buildkit/ssh_agent.0".into(), false),
                ("etc/agent.sock".into(), false),
            ]),
            "{stubs:?}"
        );
        // /run did not exist: its parent's times are kept, the others' are
        // those of directories that go anyway.
        assert!(
            prepared.stubs[prepared.stubs.len() - 4]
                .parent_times
                .is_some()
        );
        assert!(
            prepared.stubs[prepared.stubs.len() - 3]
                .parent_times
                .is_none()
        );

        let mut s = spec();
        s.mounts = vec![Mount::Socket {
            source: "/tmp/gone.sock".into(),
            target: "/run/a.sock".into(),
        }];
        let err = prepare_root(&mut kernel(), &s, Path::new(S)).unwrap_err();
        assert!(err.contains("/tmp/gone.sock does not exist"), "{err}");
    }

    #[test]
    fn missing_bind_source_is_named() {
        let mut k = kernel();
        let mut s = spec();
        s.mounts = vec![Mount::Bind {
            source: "/nope".into(),
            target: "/x".into(),
            readonly: false,
        }];
        let err = prepare_root(&mut k, &s, Path::new(S)).unwrap_err();
        assert!(err.contains("/nope"), "{err}");
    }

    #[test]
    fn failing_mount_names_the_target() {
        let mut k = kernel();
        k.fail = Some(Box::new(|op| match op {
            Op::Mount(m) if m.fstype.as_deref() == Some("proc") => Some(libc::EPERM),
            _ => None,
        }));
        let err = prepare_root(&mut k, &spec(), Path::new(S)).unwrap_err();
        assert!(
            err.contains("mounting proc on") && err.contains("/root/proc"),
            "{err}"
        );
        assert!(!k.ops.iter().any(|o| matches!(o, Op::PivotRoot(_))));
    }

    #[test]
    fn symlinked_etc_file_resolves_inside_the_root() {
        let mut k = kernel();
        if let Some(tree) = k.on_mount.get_mut(Path::new(&r(""))) {
            tree.retain(|(p, _)| p != Path::new("etc/hosts"));
            tree.push((
                "etc/hosts".into(),
                Node::Symlink("/../../../../etc/hosts-real".into()),
            ));
        }
        prepare_root(&mut k, &spec(), Path::new(S)).unwrap();
        assert!(k.mount_targets().contains(&r("/etc/hosts-real")));
    }

    #[test]
    fn after_pivot_credentials_and_cwd_come_from_the_image() {
        let mut k = kernel();
        prepare_root(&mut k, &spec(), Path::new(S)).unwrap();
        let c = resolve_credentials(&mut k, "app").unwrap();
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert!(
            resolve_credentials(&mut k, "ghost")
                .unwrap_err()
                .contains("ghost")
        );
        ensure_cwd(&mut k, "/work/dir").unwrap();
        assert!(k.ops.contains(&Op::Mkdir("/work".into())));
        assert!(k.ops.contains(&Op::Mkdir("/work/dir".into())));
        assert!(ensure_cwd(&mut k, "/etc/passwd").is_err());
    }
}
