//! The helper process: the re-executed binary that builds the sandbox and runs the
//! command. Three processes, each single-threaded:
//!
//! - the helper (started by the caller) reads the spec, unshares pid/ipc/uts(/net) and
//!   forks; it stays outside the new pid namespace, waits, and exits with the status;
//! - pid 1 of the new pid namespace unshares the mount namespace, mounts everything,
//!   pivots, resolves the user, forks the command, reaps every orphan until the command
//!   ends, kills what is left, removes the mount placeholders;
//! - the command's process switches credentials and execs.
//!
//! If the helper dies (the caller killed it to cancel), pid 1 gets SIGKILL through the
//! parent-death signal and the kernel kills the whole pid namespace with it.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::path::Path;

use crate::exec;
use crate::kernel::{Kernel, Namespace, RealKernel};
use crate::mountpoint;
use crate::report::{FailureKind, Record, Reporter, SPEC_FD};
use crate::setup;
use crate::spec::{Network, SandboxSpec};

/// The helper's entry point: call it first thing in the hidden subcommand, before any
/// thread or async runtime starts. Reads the spec from descriptor 3 and reports on
/// descriptor 4 (see [`crate::prepare`]); exits with the command's exit code, 128+N when
/// it was killed by signal N, or 125/126/127 when it could not be started.
pub fn helper_main() -> ! {
    let code = run_helper();
    std::process::exit(code)
}

fn read_spec() -> Result<SandboxSpec, String> {
    // SAFETY: F_GETFD only probes whether the descriptor is open.
    if unsafe { libc::fcntl(SPEC_FD, libc::F_GETFD) } < 0 {
        return Err(format!(
            "no sandbox spec on descriptor {SPEC_FD}: the helper must be started through kiln_sandbox::prepare"
        ));
    }
    // SAFETY: the descriptor is open and handed to us; we own and close it.
    let mut file = unsafe { File::from_raw_fd(SPEC_FD) };
    let mut json = Vec::new();
    // The caller's write left the shared offset at the end.
    io::Seek::seek(&mut file, io::SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut json))
        .map_err(|e| format!("reading the sandbox spec: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("decoding the sandbox spec: {e}"))
}

fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

enum Ended {
    Exited(i32),
    Signaled(i32),
}

fn decode(status: libc::c_int) -> Ended {
    if libc::WIFSIGNALED(status) {
        Ended::Signaled(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    }
}

/// Waits for `pid` (or for any child when `pid` is -1); None when there are no children.
fn wait(pid: libc::pid_t) -> Option<(libc::pid_t, libc::c_int)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            return Some((r, status));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

fn run_helper() -> i32 {
    let mut reporter = Reporter::inherited();
    let spec = match read_spec() {
        Ok(spec) => spec,
        Err(m) => return reporter.fail(FailureKind::Setup, &m),
    };
    if let Err(m) = spec.validate() {
        return reporter.fail(FailureKind::Setup, &format!("invalid sandbox spec: {m}"));
    }
    if let Some(n) = thread_count().filter(|n| *n > 1) {
        return reporter.fail(
            FailureKind::Setup,
            &format!(
                "the sandbox helper has {n} threads; helper_main must run before any thread starts"
            ),
        );
    }
    let staging = match tempfile::Builder::new().prefix(".kiln-sandbox-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            return reporter.fail(
                FailureKind::Setup,
                &format!(
                    "creating a staging directory in {}: {e}",
                    std::env::temp_dir().display()
                ),
            );
        }
    };
    let mut k = RealKernel::new();
    let mut namespaces = vec![Namespace::Pid, Namespace::Ipc, Namespace::Uts];
    if spec.network == Network::None {
        namespaces.push(Namespace::Net);
    }
    if let Err(e) = k.unshare(&namespaces) {
        return reporter.fail(
            FailureKind::Setup,
            &format!("creating namespaces {namespaces:?}: {e}"),
        );
    }
    // SAFETY: this process is single-threaded (checked above).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return reporter.fail(FailureKind::Setup, &format!("fork: {e}"));
    }
    if pid == 0 {
        let code = pid1(&mut k, &spec, staging.path(), &mut reporter);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    let ended = wait(pid).map(|(_, status)| decode(status));
    drop(staging);
    match ended {
        Some(Ended::Exited(code)) => code,
        Some(Ended::Signaled(signal)) => {
            reporter.record(&Record::Signaled { signal });
            128 + signal
        }
        None => reporter.fail(FailureKind::Setup, "lost the sandbox's init process"),
    }
}

/// Pid 1 of the sandbox.
fn pid1<K: Kernel>(k: &mut K, spec: &SandboxSpec, staging: &Path, reporter: &mut Reporter) -> i32 {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let prepared = match setup::prepare_root(k, spec, staging) {
        Ok(p) => p,
        Err(m) => return reporter.fail(FailureKind::Setup, &m),
    };
    let code = run_command(k, spec, reporter);
    let left = mountpoint::remove_stubs(k, Path::new("/"), &prepared.stubs);
    if !left.is_empty() {
        reporter.record(&Record::StubsLeft {
            paths: left.iter().map(|p| p.display().to_string()).collect(),
        });
    }
    code
}

fn run_command<K: Kernel>(k: &mut K, spec: &SandboxSpec, reporter: &mut Reporter) -> i32 {
    let creds = match setup::resolve_credentials(k, &spec.user) {
        Ok(c) => c,
        Err(m) => return reporter.fail(FailureKind::User, &m),
    };
    if let Err(m) = setup::ensure_cwd(k, &spec.cwd) {
        return reporter.fail(FailureKind::Setup, &m);
    }
    // SAFETY: pid 1 is single-threaded.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let e = io::Error::last_os_error();
        return reporter.fail(FailureKind::Setup, &format!("fork: {e}"));
    }
    if child == 0 {
        let failure = exec::start_command(k, spec, &creds);
        let code = reporter.fail(failure.kind, &failure.message);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }
    // As init, adopt and reap every orphan until the command itself ends.
    let mut ended = None;
    while let Some((pid, status)) = wait(-1) {
        if pid == child {
            ended = Some(decode(status));
            break;
        }
    }
    // Whatever the command left running dies with it, as with `docker run`.
    // SAFETY: kill(-1) from pid 1 reaches every other process of this namespace only.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
    }
    while wait(-1).is_some() {}
    match ended {
        Some(Ended::Exited(code)) => code,
        Some(Ended::Signaled(signal)) => {
            reporter.record(&Record::Signaled { signal });
            128 + signal
        }
        None => reporter.fail(FailureKind::Setup, "lost the command's process"),
    }
}
