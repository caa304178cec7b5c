//! The one error type of the crate: every variant names the file, tar entry or
//! digest it is about, so a build log says what to look at.

use std::io;
use std::path::PathBuf;

use kiln_oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file-system call on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the tar/compressed stream to its sink failed.
    #[error("writing layer stream: {0}")]
    Write(#[source] io::Error),
    /// Reading the layer blob (or decompressing it) failed.
    #[error("reading layer blob: {0}")]
    Read(#[source] io::Error),
    /// A value does not fit the tar header format (e.g. a device number).
    #[error("{path}: {field} {value} does not fit in a tar header")]
    FieldTooLarge {
        path: String,
        field: &'static str,
        value: u64,
    },
    /// A file changed size while it was being archived.
    #[error("{path} changed while it was archived (expected {expected} bytes)")]
    FileChanged { path: PathBuf, expected: u64 },
    /// The media type asked for has no name for this compression.
    #[error("no {format} media type for {compression} layers")]
    UnsupportedMediaType {
        format: &'static str,
        compression: &'static str,
    },

    // --- unpacking: refused entries (hostile or broken layers) ---
    /// The entry's path has a `..` component or is otherwise unusable.
    #[error("layer entry {entry:?}: {reason}")]
    BadPath { entry: String, reason: &'static str },
    /// A component of the entry's path is a symlink in the destination;
    /// following it could write outside the destination.
    #[error(
        "layer entry {entry:?}: path component {component:?} is a symlink, refusing to follow it"
    )]
    SymlinkInPath { entry: String, component: String },
    /// A component of the entry's path exists and is not a directory.
    #[error("layer entry {entry:?}: path component {component:?} is not a directory")]
    NotADirectory { entry: String, component: String },
    /// A hardlink entry points outside the layer or at nothing usable.
    #[error("layer entry {entry:?}: hardlink target {target:?}: {reason}")]
    BadHardlink {
        entry: String,
        target: String,
        reason: String,
    },
    /// The tar entry type is not one a layer may hold.
    #[error("layer entry {entry:?}: unsupported tar entry type {kind:?}")]
    UnsupportedEntry { entry: String, kind: char },
    /// Creating or setting up an entry in the destination failed.
    #[error("layer entry {entry:?}: {op}: {source}")]
    Entry {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// `unpack` needs an empty directory to turn into a layer directory.
    #[error("unpack destination {0} is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    /// The compressed bytes do not hash to the expected digest.
    #[error("layer blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The uncompressed tar does not hash to the expected diff_id.
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    /// The blob's size differs from the descriptor's.
    #[error("layer blob size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
}

pub type Result<T, E = LayerError> = std::result::Result<T, E>;

/// Attaches an operation and path to an `io::Error`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.into();
    move |source| LayerError::Io { op, path, source }
}
