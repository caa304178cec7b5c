//! The report channel: a memfd the caller creates and the helper appends JSON lines to
//! (all helper processes share one file offset, so lines follow each other). It tells a
//! setup failure from a command that merely exited 125/126/127, and a command killed by
//! a signal from one that exited 128+N.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// Descriptor of the spec (a memfd holding JSON) in the helper.
pub const SPEC_FD: RawFd = 3;
/// Descriptor of the report memfd in the helper.
pub const REPORT_FD: RawFd = 4;

/// What failed before the command ran; the exit codes are runc's and podman's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The sandbox could not be set up (exit 125).
    Setup,
    /// USER names no user or group of the image (exit 125).
    User,
    /// The command is not executable (exit 126).
    NotExecutable,
    /// The command does not exist (exit 127).
    NotFound,
}

impl FailureKind {
    pub fn exit_code(self) -> i32 {
        match self {
            FailureKind::Setup | FailureKind::User => 125,
            FailureKind::NotExecutable => 126,
            FailureKind::NotFound => 127,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Failed {
        kind: FailureKind,
        message: String,
    },
    /// The command was killed by this signal (the helper exits 128+N).
    Signaled {
        signal: i32,
    },
    /// Mount placeholders that could not be removed from the root filesystem.
    StubsLeft {
        paths: Vec<String>,
    },
}

/// The helper's end: writes records to [`REPORT_FD`] when it is open.
pub(crate) struct Reporter {
    file: Option<ManuallyDrop<File>>,
}

impl Reporter {
    /// Takes the inherited report descriptor and marks it close-on-exec so the command
    /// never sees it.
    pub(crate) fn inherited() -> Self {
        // SAFETY: fcntl on a descriptor number; F_GETFD fails harmlessly when closed.
        let open = unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) } >= 0;
        if !open {
            return Reporter { file: None };
        }
        // SAFETY: as above; the descriptor is open and ours for the process lifetime
        // (ManuallyDrop: it is never closed from here).
        unsafe {
            libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
            Reporter {
                file: Some(ManuallyDrop::new(File::from_raw_fd(REPORT_FD))),
            }
        }
    }

    pub(crate) fn record(&mut self, record: &Record) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            let _ = file.write_all(&line);
        }
    }

    /// Reports a failure on the channel and on stderr (the build log); returns the exit
    /// code to leave with.
    pub(crate) fn fail(&mut self, kind: FailureKind, message: &str) -> i32 {
        let _ = writeln!(io::stderr(), "kiln-sandbox: {message}");
        self.record(&Record::Failed {
            kind,
            message: message.to_owned(),
        });
        kind.exit_code()
    }
}

/// Reads every record from the start of `file`; lines that do not parse are skipped.
pub(crate) fn read_records(file: &File) -> io::Result<Vec<Record>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = file.read_at(&mut buf, data.len() as u64)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Ok(data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_file() {
        let mut file = tempfile::tempfile().unwrap();
        let records = vec![
            Record::Failed {
                kind: FailureKind::NotFound,
                message: "exec \"x\": not found".into(),
            },
            Record::Signaled { signal: 9 },
            Record::StubsLeft {
                paths: vec!["/etc/hosts".into()],
            },
        ];
        for r in &records {
            let mut line = serde_json::to_vec(r).unwrap();
            line.push(b'\n');
            file.write_all(&line).unwrap();
        }
        file.write_all(b"garbage\n").unwrap();
        assert_eq!(read_records(&file).unwrap(), records);
    }

    #[test]
    fn exit_codes_follow_runc() {
        assert_eq!(FailureKind::Setup.exit_code(), 125);
        assert_eq!(FailureKind::NotExecutable.exit_code(), 126);
        assert_eq!(FailureKind::NotFound.exit_code(), 127);
    }
}
