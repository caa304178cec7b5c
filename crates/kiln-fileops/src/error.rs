//! The crate's error type. Messages name the path (as the Dockerfile author
//! wrote it, or as it lies inside the root) so a build log says what failed.

use std::io;

/// Everything that can go wrong while resolving, hashing, copying or extracting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A source path (`COPY ../x`) that climbs out of the build context.
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    /// A plain (wildcard-free) source path that does not exist (BuildKit: `"/x": not found`).
    #[error("failed to compute cache key: {0:?}: not found")]
    SourceNotFound(String),
    /// A wildcard source that matched nothing.
    #[error("no source files were specified: {0:?} matched no file in the build context")]
    NoSourceFiles(String),
    /// A malformed wildcard (`[a-`).
    #[error("invalid source pattern {0:?}: syntax error in pattern")]
    BadPattern(String),
    /// Several sources but a destination without a trailing slash (Docker's wording).
    #[error(
        "When using COPY with more than one source file, the destination must be a directory and end with a / (destination {0:?})"
    )]
    DestNotDirectory(String),
    /// A path component that should be a directory is something else.
    #[error("{0:?}: not a directory")]
    NotADirectory(String),
    /// A path lookup met too many symbolic links.
    #[error("{0:?}: too many levels of symbolic links")]
    SymlinkLoop(String),
    /// A source directory would replace a non-directory at the destination.
    #[error("cannot copy to non-directory: {0}")]
    CopyToNonDirectory(String),
    /// A non-directory would replace a directory at the destination.
    #[error("cannot replace directory {0} with a non-directory")]
    ReplaceDirectory(String),
    /// A file type that cannot be copied (sockets).
    #[error("{path}: cannot copy a file of type {kind}")]
    UnsupportedFileType { path: String, kind: &'static str },
    /// `--chown` names a user that the destination's /etc/passwd does not know.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// `--chown` names a group that the destination's /etc/group does not know.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A `--chown` value that is not `user`, `user:group` or numeric ids.
    #[error("invalid --chown value {0:?}")]
    BadChown(String),
    /// A `--chmod` value that is neither octal nor symbolic.
    #[error(
        "invalid --chmod value {0:?}: expected an octal mode like 0755 or a symbolic one like u+x,go-w"
    )]
    BadChmod(String),
    /// An archive entry that would land outside the extraction directory.
    #[error("archive {archive}: entry {entry:?} {reason}")]
    ArchiveBreakout {
        archive: String,
        entry: String,
        reason: String,
    },
    /// An archive that cannot be read.
    #[error("archive {archive}: {message}")]
    Archive { archive: String, message: String },
    /// A URL without a usable file name.
    #[error("cannot determine filename from url: {0}")]
    UrlFileName(String),
    /// The digest cache file could not be parsed.
    #[error("digest cache {path}: {source}")]
    Cache {
        path: String,
        source: serde_json::Error,
    },
    /// A system call failed on a named path.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<String>,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}

/// Attaches an operation and a path to a raw `rustix`/`std` error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &str) -> Result<T>;
}

impl<T> IoContext<T> for Result<T, rustix::io::Errno> {
    fn ctx(self, op: &'static str, path: &str) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx(self, op: &'static str, path: &str) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
