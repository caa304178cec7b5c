//! The real sandbox: the helper binary, real namespaces and mounts, a busybox root
//! filesystem. Needs root and Debian's busybox-static (/bin/busybox); skips otherwise.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use kiln_sandbox::{
    CommandStatus, DOCKER_DEFAULT_MASK, Mount, Network, RootFs, SandboxError, SandboxSpec,
};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-sandbox-helper");
const BUSYBOX: &str = "/bin/busybox";

fn ready() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the sandbox needs root");
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipped: {BUSYBOX} is missing (apt-get install busybox-static)");
        return false;
    }
    true
}

macro_rules! require_root {
    () => {
        if !ready() {
            return;
        }
    };
}

/// A busybox image root: applets as symlinks, passwd/group with root, `app` (1000) and
/// a `staff` group `app` belongs to.
fn make_rootfs(dir: &Path) {
    for d in [
        "bin", "etc", "proc", "dev", "sys", "tmp", "root", "home/app",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    fs::write(dir.join("etc/motd"), "lower motd\n").unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        for d in [&lower, &upper, &work] {
            fs::create_dir(d).unwrap();
        }
        make_rootfs(&lower);
        Fixture {
            _dir: dir,
            lower,
            upper,
            work,
        }
    }

    fn rootfs(&self) -> RootFs {
        RootFs::Overlay {
            lowers: vec![self.lower.clone()],
            upper: self.upper.clone(),
            work: self.work.clone(),
        }
    }

    fn spec(&self, script: &str) -> SandboxSpec {
        SandboxSpec::new(self.rootfs(), vec!["sh".into(), "-c".into(), script.into()])
    }
}

struct Ran {
    status: Result<CommandStatus, SandboxError>,
    stdout: String,
    stderr: String,
}

fn run(spec: &SandboxSpec) -> Ran {
    let mut prepared = kiln_sandbox::prepare(Path::new(HELPER), &[], spec).unwrap();
    prepared
        .command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("KILN_HOST_SECRET", "leak");
    let output = prepared.command.output().unwrap();
    Ran {
        status: prepared.report.outcome(output.status),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs and expects exit 0; returns stdout.
fn ok(spec: &SandboxSpec) -> String {
    let ran = run(spec);
    assert_eq!(
        ran.status.as_ref().ok(),
        Some(&CommandStatus::Exited(0)),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    ran.stdout
}

#[test]
fn stdout_and_exit_code() {
    require_root!();
    let f = Fixture::new();
    let started = Instant::now();
    let ran = run(&f.spec("echo hello; echo oops >&2; exit 3"));
    eprintln!("sandbox run took {:?}", started.elapsed());
    assert_eq!(ran.status.unwrap(), CommandStatus::Exited(3));
    assert_eq!(ran.stdout, "hello\n");
    assert_eq!(ran.stderr, "oops\n");
    // stdin is /dev/null: cat ends at once.
    assert_eq!(ok(&f.spec("cat; echo done")), "done\n");
}

#[test]
fn killed_by_signal_is_reported_as_such() {
    require_root!();
    let f = Fixture::new();
    let ran = run(&f.spec("kill -9 $$"));
    assert_eq!(ran.status.unwrap(), CommandStatus::Signaled(9));
    // A command exiting 137 by itself is an exit code, not a signal.
    let ran = run(&f.spec("exit 137"));
    assert_eq!(ran.status.unwrap(), CommandStatus::Exited(137));
}

#[test]
fn writes_land_in_upper_and_deletions_become_whiteouts() {
    require_root!();
    let f = Fixture::new();
    ok(&f.spec("echo new > /new.txt && echo changed > /etc/motd && rm /bin/vi && mkdir -p /var/x"));
    assert_eq!(
        fs::read_to_string(f.upper.join("new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_to_string(f.upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        fs::read_to_string(f.lower.join("etc/motd")).unwrap(),
        "lower motd\n"
    );
    assert!(!f.lower.join("new.txt").exists());
    assert!(fs::symlink_metadata(f.lower.join("bin/vi")).is_ok());
    let wh = fs::symlink_metadata(f.upper.join("bin/vi")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(f.upper.join("var/x").is_dir());
}

#[test]
fn pid_namespace_shows_only_the_sandbox() {
    require_root!();
    let f = Fixture::new();
    let out = ok(&f.spec("echo $$; ps -o pid,comm"));
    let mut lines = out.lines();
    let pid: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(pid <= 3, "shell pid {pid}");
    let pids: Vec<u32> = lines
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!pids.is_empty() && pids.iter().all(|p| *p < 10), "{out}");
}

#[test]
fn host_paths_are_not_visible() {
    require_root!();
    let f = Fixture::new();
    let marker = format!("kiln-marker-{}", std::process::id());
    let tmp_marker = std::env::temp_dir().join(&marker);
    let root_marker = Path::new("/root").join(&marker);
    fs::write(&tmp_marker, "x").unwrap();
    let wrote_root = fs::write(&root_marker, "x").is_ok();
    let out = ok(&f.spec(
        "ls -a / /tmp /root /proc/1/root/ /proc/1/root/tmp; cat /proc/1/mountinfo; find / -xdev -name 'kiln-marker-*' 2>/dev/null; true",
    ));
    let _ = fs::remove_file(&tmp_marker);
    if wrote_root {
        let _ = fs::remove_file(&root_marker);
    }
    assert!(!out.contains(&marker), "{out}");
    // The host's own top-level directories (like /usr) are not in this root.
    assert!(!out.lines().any(|l| l == "usr"), "{out}");
}

#[test]
fn proc_dev_and_shm_work() {
    require_root!();
    let f = Fixture::new();
    let out = ok(&f.spec(
        "test -r /proc/self/stat && echo x > /dev/null && head -c 5 /dev/zero | wc -c \
         && head -c 3 /dev/urandom | wc -c && test -c /dev/pts/ptmx && readlink /dev/ptmx \
         && readlink /dev/fd && touch /dev/shm/a && grep -c devpts /proc/mounts \
         && ! echo x > /proc/sys/kernel/hostname 2>/dev/null && echo ro-proc-sys",
    ));
    assert_eq!(out, "5\n3\npts/ptmx\n/proc/self/fd\n1\nro-proc-sys\n");
}

#[test]
fn hostname_and_etc_files_come_from_the_spec() {
    require_root!();
    let f = Fixture::new();
    let mut spec = f.spec(
        "hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf; echo x > /etc/hosts || echo ro",
    );
    spec.hostname = "buildbox".into();
    spec.hosts = kiln_sandbox::default_hosts("buildbox");
    spec.resolv_conf = "nameserver 192.0.2.53\n".into();
    let out = ok(&spec);
    assert_eq!(
        out,
        format!(
            "buildbox\nbuildbox\n{}nameserver 192.0.2.53\nro\n",
            kiln_sandbox::default_hosts("buildbox")
        )
    );
    // The image had none of the three files: the placeholders are gone from the layer.
    for name in ["hosts", "resolv.conf", "hostname"] {
        assert!(
            !f.upper.join("etc").join(name).exists(),
            "{name} left in upper"
        );
    }
}

#[test]
fn missing_standard_directories_leave_no_trace() {
    require_root!();
    let f = Fixture::new();
    for d in ["proc", "dev", "sys"] {
        fs::remove_dir(f.lower.join(d)).unwrap();
    }
    assert_eq!(
        ok(&f.spec("ls /proc/self/ >/dev/null && ls /dev/null && echo ok")),
        "/dev/null\nok\n"
    );
    let left: Vec<_> = fs::read_dir(&f.upper)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // /etc is copied up around the removed stubs but keeps the lower layer's mtime.
    assert!(left.iter().all(|n| n == "etc"), "{left:?}");
    if f.upper.join("etc").exists() {
        assert_eq!(fs::read_dir(f.upper.join("etc")).unwrap().count(), 0);
        assert_eq!(
            fs::metadata(f.upper.join("etc")).unwrap().mtime(),
            fs::metadata(f.lower.join("etc")).unwrap().mtime()
        );
    }
}

fn net_ns_of_self() -> String {
    fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn network_none_has_only_loopback() {
    require_root!();
    let f = Fixture::new();
    let out = ok(&f.spec("readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-up"));
    let mut lines = out.lines();
    assert_ne!(lines.next().unwrap(), net_ns_of_self());
    let rest: Vec<&str> = lines.map(str::trim).collect();
    assert_eq!(rest, vec!["lo", "lo-up"]);
}

#[test]
fn host_network_shares_the_host_namespace() {
    require_root!();
    let f = Fixture::new();
    let mut spec = f.spec("readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1; ls /sys/class/net >/dev/null && touch /sys/x 2>/dev/null || echo sys-ro");
    spec.network = Network::Host;
    let out = ok(&spec);
    let host_ifaces = fs::read_to_string("/proc/net/dev").unwrap();
    let mut expected: Vec<String> = host_ifaces
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .collect();
    expected.sort();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), net_ns_of_self());
    let rest: Vec<String> = lines.map(|l| l.trim().to_owned()).collect();
    let mut seen = rest[..rest.len() - 1].to_vec();
    seen.sort();
    assert_eq!(seen, expected);
    assert_eq!(rest.last().map(String::as_str), Some("sys-ro"));
}

fn cap_line(out: &str, name: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with(name)).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn capabilities_are_dockers_default() {
    require_root!();
    let f = Fixture::new();
    let out = ok(&f.spec("grep Cap /proc/self/status"));
    assert_eq!(cap_line(&out, "CapBnd:"), DOCKER_DEFAULT_MASK);
    assert_eq!(cap_line(&out, "CapEff:"), DOCKER_DEFAULT_MASK);
    assert_eq!(cap_line(&out, "CapPrm:"), DOCKER_DEFAULT_MASK);
    assert_eq!(cap_line(&out, "CapInh:"), 0);
    assert_eq!(cap_line(&out, "CapAmb:"), 0);

    let mut spec = f.spec("grep Cap /proc/self/status");
    spec.user = "app".into();
    let out = ok(&spec);
    assert_eq!(cap_line(&out, "CapBnd:"), DOCKER_DEFAULT_MASK);
    assert_eq!(cap_line(&out, "CapEff:"), 0);
    assert_eq!(cap_line(&out, "CapPrm:"), 0);

    let mut spec = f.spec("grep CapEff /proc/self/status");
    spec.capabilities = Some(vec!["CAP_CHOWN".into()]);
    assert_eq!(cap_line(&ok(&spec), "CapEff:"), 1);
}

#[test]
fn user_is_resolved_inside_the_image() {
    require_root!();
    let f = Fixture::new();
    let mut spec =
        f.spec("id -u; id -g; id -G; echo $HOME; touch /root/x 2>/dev/null || echo denied");
    spec.user = "app".into();
    assert_eq!(ok(&spec), "1000\n1000\n1000 50\n/home/app\ndenied\n");

    spec.user = "1000:1000".into();
    assert_eq!(ok(&spec), "1000\n1000\n1000\n/home/app\ndenied\n");

    spec.user = "4242".into();
    assert_eq!(ok(&spec), "4242\n0\n0\n/\ndenied\n");

    spec.user = "ghost".into();
    let ran = run(&spec);
    match ran.status {
        Err(SandboxError::User { message }) => assert!(message.contains("ghost"), "{message}"),
        other => panic!("expected a user error, got {other:?}"),
    }
    assert!(
        ran.stderr
            .contains("kiln-sandbox: unable to find user ghost"),
        "{}",
        ran.stderr
    );
}

#[test]
fn cwd_env_and_path_lookup() {
    require_root!();
    let f = Fixture::new();
    fs::create_dir(f.lower.join("custom")).unwrap();
    fs::write(
        f.lower.join("custom/hello"),
        "#!/bin/sh\necho hello from custom\n",
    )
    .unwrap();
    fs::set_permissions(
        f.lower.join("custom/hello"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut spec = f.spec("pwd; echo $FOO; hello; env | sort");
    spec.cwd = "/work/dir".into();
    spec.env = vec!["FOO=bar".into(), "PATH=/custom:/bin".into()];
    let out = ok(&spec);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("/work/dir"));
    assert_eq!(lines.next(), Some("bar"));
    assert_eq!(lines.next(), Some("hello from custom"));
    let env: Vec<&str> = lines.collect();
    assert!(!out.contains("KILN_HOST_SECRET"), "{out}");
    for expected in [
        "FOO=bar",
        "PATH=/custom:/bin",
        "HOME=/root",
        "PWD=/work/dir",
    ] {
        assert!(env.contains(&expected), "{expected} missing from {env:?}");
    }
    // The created working directory is part of the layer, like Docker's.
    assert!(f.upper.join("work/dir").is_dir());
}

#[test]
fn command_not_found_and_not_executable_are_typed() {
    require_root!();
    let f = Fixture::new();
    let mut spec = f.spec("");
    spec.args = vec!["no-such-command".into()];
    let ran = run(&spec);
    match ran.status {
        Err(SandboxError::CommandNotFound { message }) => {
            assert!(message.contains("no-such-command"), "{message}")
        }
        other => panic!("expected not found, got {other:?}"),
    }

    fs::write(f.lower.join("bin/plain"), "data").unwrap();
    spec.args = vec!["/bin/plain".into()];
    assert!(matches!(
        run(&spec).status,
        Err(SandboxError::NotExecutable { .. })
    ));

    // The shell's own 127 is just an exit code.
    let ran = run(&f.spec("no-such-command"));
    assert_eq!(ran.status.unwrap(), CommandStatus::Exited(127));
}

#[test]
fn many_lower_layers_mount_beyond_the_page_limit() {
    require_root!();
    let f = Fixture::new();
    let layers = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for i in 0..150 {
        let dir = layers
            .path()
            .join(format!("sha256-{:064x}", i))
            .join("diff");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("layer-{i}")), "").unwrap();
        fs::write(dir.join("who"), format!("{i}\n")).unwrap();
        lowers.push(dir);
    }
    // Topmost first; the busybox layer is the base.
    lowers.push(f.lower.clone());
    let joined: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(joined > 4096, "the test must exceed one page ({joined})");
    let mut spec = f.spec("cat /who; ls / | grep -c '^layer-'");
    spec.rootfs = RootFs::Overlay {
        lowers,
        upper: f.upper.clone(),
        work: f.work.clone(),
    };
    assert_eq!(ok(&spec), "0\n150\n");
}

#[test]
fn directory_rootfs_fallback() {
    require_root!();
    let f = Fixture::new();
    let mut spec = f.spec("echo in-dir > /written; cat /etc/motd");
    spec.rootfs = RootFs::Dir(f.lower.clone());
    assert_eq!(ok(&spec), "lower motd\n");
    assert_eq!(
        fs::read_to_string(f.lower.join("written")).unwrap(),
        "in-dir\n"
    );
}

#[test]
fn extra_mounts_bind_and_tmpfs() {
    require_root!();
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let ro = host.path().join("ro");
    let rw = host.path().join("rw");
    fs::create_dir(&ro).unwrap();
    fs::create_dir(&rw).unwrap();
    fs::write(ro.join("data"), "ro data\n").unwrap();
    let mut spec = f.spec(
        "cat /mnt/ro/data; echo x > /mnt/ro/new 2>/dev/null || echo ro-denied; \
         echo rw > /mnt/rw/out; grep ' /scratch ' /proc/mounts | cut -d' ' -f3; \
         echo t > /scratch/t && cat /scratch/t",
    );
    spec.mounts = vec![
        Mount::Bind {
            source: ro.clone(),
            target: "/mnt/ro".into(),
            readonly: true,
        },
        Mount::Bind {
            source: rw.clone(),
            target: "/mnt/rw".into(),
            readonly: false,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: None,
        },
    ];
    assert_eq!(ok(&spec), "ro data\nro-denied\ntmpfs\nt\n");
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "rw\n");
    assert!(!ro.join("new").exists());
    // Neither the targets nor the tmpfs content reach the layer.
    // The target goes, the parent it needed stays (buildah does the same).
    assert!(f.upper.join("mnt").is_dir());
    assert_eq!(fs::read_dir(f.upper.join("mnt")).unwrap().count(), 0);
    assert!(!f.upper.join("scratch").exists());
}

#[test]
fn background_processes_die_with_the_command() {
    require_root!();
    let f = Fixture::new();
    let started = Instant::now();
    let ran = run(&f.spec("sleep 30 & echo started"));
    assert_eq!(ran.status.unwrap(), CommandStatus::Exited(0));
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn overlay_is_supported_here() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    assert!(kiln_sandbox::overlay_supported(dir.path()));
    // The probe leaves nothing behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn layers_mount_stacks_another_root_and_discards_writes() {
    require_root!();
    let f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let (bottom, top) = (host.path().join("bottom"), host.path().join("top"));
    fs::create_dir_all(bottom.join("out")).unwrap();
    fs::create_dir_all(top.join("out")).unwrap();
    fs::write(bottom.join("out/a"), "from bottom\n").unwrap();
    fs::write(bottom.join("out/b"), "hidden\n").unwrap();
    fs::write(top.join("out/b"), "from top\n").unwrap();
    let mut spec = f.spec(
        "cat /mnt/stage/a /mnt/stage/b; echo x > /mnt/stage/new 2>/dev/null || echo ro-denied; \
         echo w > /mnt/rw/new && cat /mnt/rw/new",
    );
    spec.mounts = vec![
        Mount::Layers {
            lowers: vec![top.clone(), bottom.clone()],
            source: "/out".into(),
            target: "/mnt/stage".into(),
            readonly: true,
        },
        Mount::Layers {
            lowers: vec![top.clone(), bottom.clone()],
            source: "out".into(),
            target: "/mnt/rw".into(),
            readonly: false,
        },
    ];
    assert_eq!(ok(&spec), "from bottom\nfrom top\nro-denied\nw\n");
    // Writes through the read-write mount went to a throwaway upper.
    assert!(!top.join("out/new").exists());
    assert!(!bottom.join("out/new").exists());
    assert!(!f.upper.join("mnt/stage").exists());
}
