//! The RPM repository watcher: reading a package repository's metadata and
//! telling which packages got newer since the last look.
//!
//! Images are rebuilt when a package they contain is updated. Nobody should
//! have to call the API to say so: the hub polls the package repositories
//! of the targets that take automatic rebuilds, and each new version it
//! notices becomes a rebuild event for the planner
//! ([`crate::domain::planner`]).
//!
//! A poll ([`poll`]) reads `repodata/repomd.xml`; when the primary file's
//! checksum is the remembered one it stops there, so an idle repository
//! costs one small request. Otherwise it downloads the primary file
//! (verified against repomd.xml's size and checksum), parses it as a
//! stream, and [`diff`]s it against the previous [`RepoSnapshot`]: the
//! highest version of each `name.arch`. The first look is only a baseline,
//! never a flood of updates.
//!
//! The hub stores the snapshots; nothing here touches the database.
//!
//! - [`repomd`]: repomd.xml (pure).
//! - [`primary`]: primary.xml, plain, gzip or zstd (pure over readers).
//! - [`snapshot`]: snapshots and the comparison (pure).
//! - [`fetch`]: [`poll`], over HTTP(S) or from local files.

pub mod fetch;
pub mod primary;
pub mod repomd;
pub mod snapshot;
mod xml;

pub use fetch::{
    MAX_PRIMARY_BYTES, MAX_PRIMARY_XML_BYTES, MAX_REPOMD_BYTES, PollOutcome, RepoError, poll,
};
pub use primary::{Compression, PrimaryError, RepoPackage, parse_primary, read_primary};
pub use repomd::{DataFile, RepoMd, RepoMdError, parse_repomd};
pub use snapshot::{RepoSnapshot, diff};
