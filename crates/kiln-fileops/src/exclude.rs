//! `COPY/ADD --exclude`: which entries below a source are left out.
//!
//! The patterns use `.dockerignore` rules; this crate does not parse them
//! but takes a matcher through the [`Ignore`] trait (the builder passes the
//! `.dockerignore` matcher built from the `--exclude` values), so both
//! follow one implementation. Unlike `.dockerignore`, whose paths are
//! relative to the context root, `--exclude` paths are relative to the
//! source they filter; each [`crate::SourceMatch`] carries the path the
//! patterns see it at ([`ExcludeScope`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::dirs::{join_rel, list, open_subdir};
use crate::error::Result;
use crate::root::{Ignore, Root, is_dir};

/// The `--exclude` patterns of one COPY/ADD, as a `.dockerignore`-style matcher.
#[derive(Clone)]
pub struct Excludes(Arc<dyn Ignore + Send + Sync>);

impl Excludes {
    /// Wraps a matcher: `is_excluded` is asked about source-relative paths
    /// (`node_modules`, `sub/x.bak`), `may_include_under` about excluded
    /// directories that a `!` exception could reach into.
    pub fn new(matcher: Arc<dyn Ignore + Send + Sync>) -> Self {
        Excludes(matcher)
    }

    /// What becomes of the entry the patterns see at `path`.
    pub(crate) fn verdict(&self, path: &str, dir: bool) -> Verdict {
        if path.is_empty() || !self.0.is_excluded(path) {
            Verdict::Keep
        } else if dir && self.0.may_include_under(path) {
            Verdict::Walk
        } else {
            Verdict::Skip
        }
    }
}

impl std::fmt::Debug for Excludes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Excludes(..)")
    }
}

/// Two scopes are equal when they share one matcher: the patterns are not
/// visible through the trait.
impl PartialEq for Excludes {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Excludes {}

/// The `--exclude` patterns that filter what is copied of one source, and
/// the path they see that source at: entries below it are matched as
/// `base/entry`. `base` is "" for a source named without wildcards (which
/// is never excluded itself), the path below the wildcard's fixed prefix
/// for an excluded wildcard match that an exception reaches into, and the
/// path kept under the destination for `--parents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludeScope {
    pub patterns: Excludes,
    pub base: String,
}

/// What the patterns decide for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not excluded.
    Keep,
    /// Excluded, with everything below it.
    Skip,
    /// An excluded directory that a `!` exception may reach into: it is
    /// copied (with its own metadata) only if something below it is kept,
    /// as BuildKit creates such directories only for what they hold.
    Walk,
}

/// Whether `--exclude` leaves out the entry `name` of a directory being
/// walked (`st` its lstat): `Skip`, and `Walk` directories holding nothing
/// that is kept. `ex_path` is its path as the patterns see it, `real` its
/// canonical path in the root (for `.dockerignore`).
pub(crate) fn leaves_out(
    root: &Root,
    scope: Option<&Excludes>,
    dir: BorrowedFd<'_>,
    name: &str,
    st: &rustix::fs::Stat,
    ex_path: &str,
    real: &str,
) -> Result<bool> {
    let Some(ex) = scope else {
        return Ok(false);
    };
    match ex.verdict(ex_path, is_dir(st)) {
        Verdict::Keep => Ok(false),
        Verdict::Skip => Ok(true),
        Verdict::Walk => {
            let sub = open_subdir(dir, name, &format!("/{real}"))?;
            Ok(!keeps_any(root, ex, sub.as_fd(), real, ex_path)?)
        }
    }
}

/// Whether anything below the directory `dir` (canonical `real`, seen by
/// the patterns at `ex_path`) survives both `.dockerignore` and the
/// `--exclude` patterns.
pub(crate) fn keeps_any(
    root: &Root,
    ex: &Excludes,
    dir: BorrowedFd<'_>,
    real: &str,
    ex_path: &str,
) -> Result<bool> {
    for (name, st) in list(dir, &format!("/{real}"))? {
        let child_real = join_rel(real, &name);
        let child_dir = is_dir(&st);
        if root.is_excluded(&child_real) && !(child_dir && root.may_include_under(&child_real)) {
            continue;
        }
        let child_ex = join_rel(ex_path, &name);
        match ex.verdict(&child_ex, child_dir) {
            Verdict::Keep => return Ok(true),
            Verdict::Skip => {}
            Verdict::Walk => {
                let sub = open_subdir(dir, &name, &format!("/{child_real}"))?;
                if keeps_any(root, ex, sub.as_fd(), &child_real, &child_ex)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
