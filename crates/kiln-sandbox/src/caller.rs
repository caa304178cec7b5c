//! The caller's side: a helper process with the spec on an inherited memfd, and the typed
//! result read back from the report memfd once the helper has exited.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::MemfdFlags;

use crate::error::SandboxError;
use crate::report::{self, FailureKind, REPORT_FD, Record, SPEC_FD};
use crate::spec::SandboxSpec;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    Exited(i32),
    Signaled(i32),
}

impl CommandStatus {
    pub fn success(self) -> bool {
        self == CommandStatus::Exited(0)
    }
}

impl std::fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandStatus::Exited(code) => write!(f, "exit code {code}"),
            CommandStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// A helper command ready to spawn (with std or, via `tokio::process::Command::from`, with
/// tokio) and the report to consult once it has exited.
pub struct Prepared {
    /// stdin is /dev/null; stdout and stderr are inherited unless set: they are the
    /// command's own.
    pub command: Command,
    pub report: StatusReport,
}

/// The caller's end of the report channel.
pub struct StatusReport {
    file: File,
}

impl StatusReport {
    /// The command's status given the helper's exit status, or the typed setup failure.
    pub fn outcome(&self, status: std::process::ExitStatus) -> Result<CommandStatus, SandboxError> {
        let records = report::read_records(&self.file).map_err(SandboxError::Report)?;
        let mut signaled = None;
        for record in records {
            match record {
                Record::Failed { kind, message } => {
                    return Err(match kind {
                        FailureKind::Setup => SandboxError::Setup { message },
                        FailureKind::User => SandboxError::User { message },
                        FailureKind::NotFound => SandboxError::CommandNotFound { message },
                        FailureKind::NotExecutable => SandboxError::NotExecutable { message },
                    });
                }
                Record::Signaled { signal } => signaled = Some(signal),
                Record::StubsLeft { .. } => {}
            }
        }
        if let Some(signal) = signaled {
            return Ok(CommandStatus::Signaled(signal));
        }
        match (status.code(), status.signal()) {
            (Some(code), _) => Ok(CommandStatus::Exited(code)),
            // The helper itself was killed (e.g. the build was cancelled).
            (None, Some(signal)) => Ok(CommandStatus::Signaled(signal)),
            (None, None) => Err(SandboxError::Setup {
                message: format!("sandbox helper ended with unexpected status {status}"),
            }),
        }
    }

    /// Mount placeholders the helper created in the root filesystem and could not remove;
    /// the builder should leave them out of the layer.
    pub fn leftover_stubs(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let records = report::read_records(&self.file).map_err(SandboxError::Report)?;
        Ok(records
            .into_iter()
            .flat_map(|r| match r {
                Record::StubsLeft { paths } => paths,
                _ => Vec::new(),
            })
            .map(PathBuf::from)
            .collect())
    }
}

fn memfd(name: &str) -> Result<OwnedFd, SandboxError> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC).map_err(|e| SandboxError::Channel(e.into()))
}

/// Builds the helper command: `helper_exe helper_args...` (e.g. the kiln binary and its
/// hidden sandbox subcommand), the spec on descriptor 3, the report on descriptor 4.
pub fn prepare(
    helper_exe: &Path,
    helper_args: &[&str],
    spec: &SandboxSpec,
) -> Result<Prepared, SandboxError> {
    spec.validate().map_err(SandboxError::InvalidSpec)?;
    let json = serde_json::to_vec(spec).map_err(SandboxError::Encode)?;
    let spec_fd = memfd("kiln-sandbox-spec")?;
    File::from(spec_fd.try_clone().map_err(SandboxError::Channel)?)
        .write_all(&json)
        .map_err(SandboxError::Channel)?;
    let report_fd = memfd("kiln-sandbox-report")?;
    let child_report = report_fd.try_clone().map_err(SandboxError::Channel)?;

    let mut command = Command::new(helper_exe);
    command.args(helper_args).stdin(Stdio::null());
    let (spec_raw, report_raw) = (spec_fd.as_raw_fd(), child_report.as_raw_fd());
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // fcntl/dup2/close. It owns both descriptors, so they live as long as the Command.
    unsafe {
        command.pre_exec(move || {
            let _owned = (&spec_fd, &child_report);
            install_fds(spec_raw, report_raw)
        });
    }
    Ok(Prepared {
        command,
        report: StatusReport {
            file: File::from(report_fd),
        },
    })
}

/// Puts the two descriptors at their well-known numbers, inheritable. Both are first
/// moved above them so neither overwrites the other.
fn install_fds(spec: i32, report: i32) -> std::io::Result<()> {
    let high = |fd: i32| {
        // SAFETY: fcntl on a descriptor we hold.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if new < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(new)
        }
    };
    let (s, r) = (high(spec)?, high(report)?);
    for (from, to) in [(s, SPEC_FD), (r, REPORT_FD)] {
        // SAFETY: dup2 onto a fixed number; the duplicate is not close-on-exec.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: closing our temporary duplicate.
        unsafe { libc::close(from) };
    }
    Ok(())
}

/// Runs the command to completion: stdout and stderr go where the caller says.
pub fn run(
    helper_exe: &Path,
    helper_args: &[&str],
    spec: &SandboxSpec,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<CommandStatus, SandboxError> {
    let Prepared {
        mut command,
        report,
    } = prepare(helper_exe, helper_args, spec)?;
    command.stdout(stdout).stderr(stderr);
    let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
        path: helper_exe.to_path_buf(),
        source,
    })?;
    let status = child.wait().map_err(SandboxError::Wait)?;
    report.outcome(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(lines: &[Record]) -> StatusReport {
        let mut file = tempfile::tempfile().unwrap();
        for r in lines {
            let mut l = serde_json::to_vec(r).unwrap();
            l.push(b'\n');
            file.write_all(&l).unwrap();
        }
        StatusReport { file }
    }

    fn exited(code: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn plain_exit_codes_pass_through_even_127() {
        let r = report_with(&[]);
        assert_eq!(r.outcome(exited(3)).unwrap(), CommandStatus::Exited(3));
        assert_eq!(r.outcome(exited(127)).unwrap(), CommandStatus::Exited(127));
        assert_eq!(
            r.outcome(std::process::ExitStatus::from_raw(9)).unwrap(),
            CommandStatus::Signaled(9)
        );
    }

    #[test]
    fn records_decide() {
        let r = report_with(&[Record::Signaled { signal: 15 }]);
        assert_eq!(r.outcome(exited(143)).unwrap(), CommandStatus::Signaled(15));
        let r = report_with(&[Record::Failed {
            kind: FailureKind::NotFound,
            message: "x".into(),
        }]);
        assert!(matches!(
            r.outcome(exited(127)),
            Err(SandboxError::CommandNotFound { .. })
        ));
        let r = report_with(&[Record::StubsLeft {
            paths: vec!["/etc/hosts".into()],
        }]);
        assert_eq!(
            r.leftover_stubs().unwrap(),
            vec![PathBuf::from("/etc/hosts")]
        );
    }

    #[test]
    fn invalid_spec_is_rejected_before_spawning() {
        let spec = SandboxSpec::new(crate::spec::RootFs::Dir("/".into()), Vec::new());
        assert!(matches!(
            prepare(Path::new("/bin/true"), &[], &spec),
            Err(SandboxError::InvalidSpec(_))
        ));
    }
}
