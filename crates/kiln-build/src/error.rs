//! The builder's errors: each says which step, file, digest or command.
//! Each message is complete on its own (the inner error is part of it), so
//! none of them exposes a `source()` chain that would be printed twice.

use std::io;
use std::path::{Path, PathBuf};

use kiln_oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("stored blob {path} is corrupt: expected {expected}, found {actual}")]
    CorruptBlob {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{}: {error}", file.display())]
    Dockerfile {
        file: PathBuf,
        error: kiln_dockerfile::Error,
    },
    #[error("{}:{line}: {instruction}: {error}", file.display())]
    Step {
        file: PathBuf,
        line: usize,
        instruction: String,
        error: Box<BuildError>,
    },
    #[error(
        "{}:{line}: RUN {command:?} failed ({status}){}",
        file.display(),
        if tail.is_empty() { String::new() } else { format!("; last output:\n{tail}") }
    )]
    RunFailed {
        file: PathBuf,
        line: usize,
        command: String,
        status: String,
        tail: String,
    },
    #[error("invalid image reference {reference:?}: {message}")]
    BadReference { reference: String, message: String },
    #[error("pulling {reference}: {error}")]
    Pull {
        reference: String,
        error: kiln_client::Error,
    },
    #[error("pushing {reference}: {error}")]
    Push {
        reference: String,
        error: kiln_client::Error,
    },
    #[error("image {reference}: invalid config: {message}")]
    BadImageConfig { reference: String, message: String },
    #[error("base image layer {digest}: {error}")]
    BaseLayer {
        digest: Digest,
        error: kiln_layer::LayerError,
    },
    #[error("image {0} is not in the local store and --pull=never was given")]
    ImageNotLocal(String),
    #[error("{0}")]
    Layer(#[from] kiln_layer::LayerError),
    #[error("{0}")]
    Context(kiln_fileops::Error),
    #[error("{0}")]
    FileOp(String),
    #[error("sandbox: {0}")]
    Sandbox(kiln_sandbox::SandboxError),
    #[error("cannot start the helper {}: {message}", program.display())]
    Helper { program: PathBuf, message: String },
    #[error("secret {0:?} is required but was not given (--secret id={0},src=PATH)")]
    MissingSecret(String),
    #[error(
        "ssh agent {0:?} is required but was not given (--ssh {0}, --ssh {0}=SOCKET or --ssh {0}=KEYFILE)"
    )]
    MissingSsh(String),
    #[error("--ssh {id}: {message}")]
    Ssh { id: String, message: String },
    #[error("ONBUILD trigger {trigger:?} of the base image: {message}")]
    OnBuild { trigger: String, message: String },
    #[error("ADD {url}: {message}")]
    Download { url: String, message: String },
    #[error("layer of type {media_type} cannot be written in Docker format (use --format oci)")]
    FormatMismatch { media_type: String },
    #[error("{0} is not supported by kiln yet")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

pub fn io_err(path: &Path, source: io::Error) -> BuildError {
    BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}
