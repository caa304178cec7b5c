//! What can go wrong reading an image's package databases. Every variant
//! names the file, as a path inside the image's root (`/var/lib/rpm/...`),
//! so that a build log tells the maintainer which database was unreadable.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the root filesystem {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read {path} in the image: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} in the image: too many levels of symbolic links")]
    SymlinkLoop { path: PathBuf },

    #[error("rpm database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error("rpm database {path}: {reason}")]
    BerkeleyDb { path: PathBuf, reason: String },

    #[error("rpm database {path}: {reason}")]
    Ndb { path: PathBuf, reason: String },

    #[error("rpm database {path}: package header {record}: {reason}")]
    Header {
        path: PathBuf,
        /// The record's key in the database (`hnum`, or the page it was on).
        record: String,
        reason: String,
    },

    #[error("{path} in the image, line {line}: {reason}")]
    Dpkg {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("reading the image's packages was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
