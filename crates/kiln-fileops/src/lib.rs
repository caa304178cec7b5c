//! COPY, ADD and WORKDIR file operations into an image root, with every path
//! resolved inside that root.
//!
//! The builder calls this crate from a single-threaded helper process after
//! it has mounted the destination root (an overlayfs merged directory) and
//! the source roots (the build context, or another stage's/image's root);
//! nothing here mounts anything.
//!
//! # Roots and path safety
//! A [`Root`] is an open directory standing for "/". Every lookup walks
//! component by component from directory descriptors with `O_NOFOLLOW` and
//! resolves symlinks itself: absolute targets restart at the root, `..` stops
//! at the root. A hostile link in an image (`/etc -> /host/etc`) therefore
//! lands inside the root, and nothing outside it is ever read or written.
//!
//! # Sources ([`resolve_sources`])
//! Paths are relative to the source root; `..` above the build context is an
//! error; wildcards follow Go's `filepath.Match` per component; the root's
//! `.dockerignore` ([`Root::with_ignore`]) hides files.
//!
//! # `--exclude` and `--parents` ([`resolve_sources_with`])
//! - `--exclude` patterns follow `.dockerignore` rules (the builder hands
//!   in that matcher as [`Excludes`]) but are matched relative to each
//!   source: the entries of a directory source by their path below it;
//!   a wildcard's matches by their path below the wildcard's fixed prefix
//!   (`--exclude=*.txt hom*` drops `home.txt`); a source named without
//!   wildcards is never excluded itself. An excluded directory is skipped
//!   whole unless a `!` exception could reach below it, and is then copied
//!   only if something below it is kept. Digests skip what is excluded.
//! - `--parents`: every match keeps its path below the root, or below the
//!   pivot written as `/./` (`x/./y/*.txt` keeps `y/a.txt`); the kept
//!   directories are copied from the source's; `**` spans directories after
//!   the pivot; the destination is a directory even without its trailing
//!   `/` (as in BuildKit); excludes see kept paths.
//!
//! # COPY ([`copy`])
//! - a relative destination is relative to WORKDIR;
//! - a directory source copies its *contents*; the destination directory is
//!   created (0755, owned by `--chown` or 0:0) and, if it existed, keeps its
//!   own metadata;
//! - a destination ending in `/` is a directory; several sources (written
//!   or from a wildcard) need such a destination or an existing directory
//!   (Docker's "must be a directory and end with a /"); a single file source whose destination is not an existing
//!   directory is written *as* the destination;
//! - missing parents are created 0755 and owned by the `--chown` owner,
//!   otherwise root (BuildKit's `MkdirAll(…, 0755, chown)`, buildah agrees);
//! - the top-level source is followed if it is a symlink; symlinks inside
//!   copied directories are copied as symlinks; hard links among the files
//!   of one source are kept; sockets are skipped;
//! - modes, mtimes/atimes and xattrs are kept (`security.capability`
//!   included; `trusted.overlay.*` and `security.selinux` are not copied);
//!   `--chmod` replaces the mode of every copied file and directory (not of
//!   created parents or of the destination directory itself);
//! - owners: 0:0 from a build context, the source's own from an image/stage
//!   root ([`RootKind`]), `--chown` overrides both;
//! - a file replaces an existing file or symlink; a file over a directory is
//!   an error, and so is a directory over a non-directory inside the tree
//!   (`cannot copy to non-directory`); an existing directory *as the
//!   destination* may be reached through a symlink (usrmerge `/lib`).
//!
//! # ADD ([`add`])
//! Local tar archives (plain, gzip, zstd) are extracted into the
//! destination; everything else is copied as [`copy`] would. `--exclude`
//! decides which sources (wildcard matches) and which entries of directory
//! sources are added, but does not filter the members of an archive (as
//! BuildKit's unpacking does not). Remote
//! downloads are the builder's: it names the file with [`url_file_name`],
//! gives it mode [`REMOTE_FILE_MODE`] (0600, as Docker does) and copies it.
//!
//! # WORKDIR ([`mkdir_workdir`])
//! Creates the directory and missing parents, 0755, owned by the given
//! owner (the builder passes the current USER, as buildah's
//! `EnsureContainerPathAs` and BuildKit's `WORKDIR` do); existing
//! directories are left alone.
//!
//! # Build-cache keys ([`content_digest`])
//! A digest over paths, types, modes, link targets and contents (not times),
//! with a [`FileDigestCache`] so that unchanged files are not re-read.

mod archive;
mod chmod;
mod copy;
mod digest;
mod dirs;
mod error;
mod exclude;
mod meta;
mod paths;
mod pattern;
mod root;
mod sources;
mod users;
mod workdir;

pub use archive::{ArchiveFormat, add, detect_archive};
pub use chmod::Chmod;
pub use copy::{CopyOptions, CopySource, CopyStats, copy};
pub use digest::{ContentDigest, DigestStats, FileDigestCache, content_digest};
pub use error::{Error, Result};
pub use exclude::{ExcludeScope, Excludes};
pub use paths::{REMOTE_FILE_MODE, url_file_name};
pub use root::{Ignore, Root, RootKind};
pub use sources::{SourceMatch, SourceOptions, resolve_sources, resolve_sources_with};
pub use users::{
    GroupEntry, PasswdEntry, parse_group, parse_passwd, resolve_user, resolve_user_in,
};
pub use workdir::mkdir_workdir;
