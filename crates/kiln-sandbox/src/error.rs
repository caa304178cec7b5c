//! Errors of the caller side.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    #[error("encoding the sandbox spec: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("preparing the sandbox spec and report descriptors: {0}")]
    Channel(#[source] io::Error),
    #[error("starting sandbox helper {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for the sandbox helper: {0}")]
    Wait(#[source] io::Error),
    #[error("reading the sandbox report: {0}")]
    Report(#[source] io::Error),
    /// The sandbox could not be set up (mounts, namespaces, ids...).
    #[error("sandbox setup failed: {message}")]
    Setup { message: String },
    /// USER names no user or group of the image.
    #[error("{message}")]
    User { message: String },
    /// The command does not exist (the helper exited 127).
    #[error("command not found: {message}")]
    CommandNotFound { message: String },
    /// The command exists but cannot be executed (the helper exited 126).
    #[error("command not executable: {message}")]
    NotExecutable { message: String },
    #[error("entering a private mount namespace: {0}")]
    Namespace(#[source] io::Error),
}
