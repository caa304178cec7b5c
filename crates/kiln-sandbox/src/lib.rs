//! The RUN sandbox: namespaces, overlay root, pivot_root, minimal /dev /proc /sys,
//! capabilities; run as a re-executed helper process.
//!
//! The sandbox is never forked from the caller's (multi-threaded, async) process. The
//! caller spawns a helper process — its own binary re-executed in a hidden mode that
//! calls [`helper_main`] before anything else — with [`prepare`] or [`run`]:
//!
//! ```no_run
//! # fn demo(spec: &kiln_sandbox::SandboxSpec) -> Result<(), kiln_sandbox::SandboxError> {
//! let exe = std::env::current_exe().map_err(kiln_sandbox::SandboxError::Channel)?;
//! let mut prepared = kiln_sandbox::prepare(&exe, &["__sandbox"], spec)?;
//! prepared.command.stdout(std::process::Stdio::piped());
//! // std::process or tokio::process::Command::from(prepared.command)
//! let status = prepared.command.status().map_err(kiln_sandbox::SandboxError::Wait)?;
//! let outcome = prepared.report.outcome(status)?; // CommandStatus or a typed error
//! # let _ = outcome; Ok(()) }
//! ```
//!
//! The spec travels as JSON in a memfd on descriptor 3, never in argv; the helper writes
//! a report (setup failure, signal) to a second memfd on descriptor 4, so a command that
//! exits 127 is told apart from a command that was not found.
//!
//! Inside: new mount, pid, ipc and uts namespaces (and network unless
//! [`Network::Host`]); `/` made rprivate; the root filesystem mounted on a private
//! staging tmpfs (overlay with `lowerdir+` per layer, classic option string as fallback,
//! or a bind of a prepared directory); `/proc`, a tmpfs `/dev` (null, zero, full, random,
//! urandom, tty, a new devpts instance, shm, mqueue), read-only `/sys` (a fresh sysfs in
//! its own network namespace, the host's bound recursively read-only on the host
//! network), read-only `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` with the
//! spec's content, the spec's extra mounts, Docker's masked and read-only /proc and
//! /sys paths; pivot_root with the old root detached; hostname; `lo` up; the USER
//! resolved in the image's own passwd/group; Docker's default capabilities (bounding set
//! cut to them; effective/permitted for uid 0 only; inheritable and ambient empty, as
//! Docker does since CVE-2022-24769); the working directory (created when missing); an
//! environment of exactly the spec's entries plus PATH and HOME defaults; execve after a
//! PATH lookup. Pid 1 reaps orphans, kills what is left when the command ends, and
//! removes mount targets it had to create (like BuildKit's `MountStubsCleaner`, parent
//! mtimes restored), so they do not end up in the layer.
//!
//! Every system call of that setup goes through the [`kernel::Kernel`] trait; the unit
//! tests replay it against a recording double.
//!
//! Deliberately not done (yet):
//! - no seccomp profile (Docker's default filter), no AppArmor/SELinux labels;
//! - no cgroups (memory/CPU/pids limits) and no rlimits: the command inherits the
//!   helper's;
//! - no user namespace: the helper must run as real root (no rootless builds);
//! - no terminal (RUN has none) and no `no_new_privs` (Docker does not set it either);
//! - no `/dev/console`, no extra devices, no `--security=insecure`/privileged mode;
//! - no network other than none or the host's (no bridge, no port mapping);
//! - a helper killed with SIGKILL leaves its empty staging directory in the temp dir.

mod caller;
mod caps;
mod error;
mod exec;
mod helper;
pub mod kernel;
mod mountpoint;
mod report;
mod rootfs;
mod setup;
mod spec;
mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use caller::{CommandStatus, Prepared, StatusReport, prepare, run};
pub use caps::{DOCKER_DEFAULT, DOCKER_DEFAULT_MASK};
pub use error::SandboxError;
pub use helper::helper_main;
pub use report::{FailureKind, REPORT_FD, SPEC_FD};
pub use rootfs::OVERLAY_OPTIONS;
pub use spec::{
    DEFAULT_PATH, Mount, Network, RootFs, SandboxSpec, default_hosts, host_resolv_conf,
};
pub use user::{Credentials, UserError, resolve as resolve_user};

use kernel::{Kernel, MountCall, Namespace, RealKernel};

/// Mounts `rootfs` on `target` (overlay with this crate's options, or a bind of the
/// directory), for the builder's other helper modes (e.g. COPY into the overlay).
pub fn mount_rootfs(rootfs: &RootFs, target: &Path) -> Result<(), SandboxError> {
    rootfs::mount_rootfs_with(&mut RealKernel::new(), rootfs, target)
        .map_err(|message| SandboxError::Setup { message })
}

/// Moves the calling process into a new mount namespace whose mounts do not propagate
/// back to the host. Call it from a single-threaded helper process: in a multi-threaded
/// process only the calling thread would move.
pub fn enter_private_mount_namespace() -> Result<(), SandboxError> {
    let mut k = RealKernel::new();
    k.unshare(&[Namespace::Mount])
        .map_err(SandboxError::Namespace)?;
    k.mount(&MountCall::new(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    ))
    .map_err(SandboxError::Namespace)
}

/// Whether an overlay with our options can be mounted with upper and work directories
/// on the filesystem of `scratch` (probed once per directory by a real mount that is
/// undone at once).
pub fn overlay_supported(scratch: &Path) -> bool {
    static PROBED: Mutex<BTreeMap<PathBuf, bool>> = Mutex::new(BTreeMap::new());
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    *probed
        .entry(scratch.to_path_buf())
        .or_insert_with(|| probe_overlay(scratch).is_ok())
}

fn probe_overlay(scratch: &Path) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(".kiln-overlay-probe-")
        .tempdir_in(scratch)
        .map_err(|e| e.to_string())?;
    let sub = |name: &str| -> Result<PathBuf, String> {
        let p = dir.path().join(name);
        std::fs::create_dir(&p).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let (lower, upper, work, merged) = (sub("l")?, sub("u")?, sub("w")?, sub("m")?);
    std::fs::write(lower.join("f"), b"x").map_err(|e| e.to_string())?;
    let rootfs = RootFs::Overlay {
        lowers: vec![lower],
        upper,
        work,
    };
    let mut k = RealKernel::new();
    rootfs::mount_rootfs_with(&mut k, &rootfs, &merged)?;
    let visible = merged.join("f").exists();
    k.umount(&merged, true).map_err(|e| e.to_string())?;
    if visible {
        Ok(())
    } else {
        Err("overlay mounted but shows no lower content".to_owned())
    }
}
