//! COPY/ADD source patterns → the files they name, with Docker's rules.

use std::os::fd::{AsFd, BorrowedFd};

use crate::dirs::{join_rel, list};
use crate::error::{Error, Result};
use crate::paths::{clean, context_source};
use crate::pattern::{Pattern, has_wildcard, unescape};
use crate::root::{Lookup, Resolved, Root, RootKind, is_dir, resolve};

/// One source a pattern named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The path inside the source root as written or matched, absolute and
    /// cleaned (`/dir/a.txt`); a symlink in its last component is followed
    /// when copying, and its name is the one the copy gets.
    pub path: String,
    /// Whether it is a directory once a final symlink is followed (its contents are copied).
    pub is_dir: bool,
}

/// Resolves COPY/ADD source patterns inside `root` (the build context or a
/// stage/image root), in order; matches of one wildcard are sorted.
///
/// - a leading `/` means the root; `..` above the context root is refused
///   (for image roots it stops at the root, as BuildKit does for `--from`);
/// - wildcards use Go's `filepath.Match` per path component;
/// - paths hidden by the root's `.dockerignore` ([`Root::with_ignore`]) do not exist;
/// - a plain path that does not exist → `"/x": not found`; a wildcard that
///   matches nothing → `no source files were specified`.
pub fn resolve_sources(root: &Root, patterns: &[String]) -> Result<Vec<SourceMatch>> {
    let mut out = Vec::new();
    for pattern in patterns {
        out.extend(resolve_one(root, pattern)?);
    }
    Ok(out)
}

fn resolve_one(root: &Root, pattern: &str) -> Result<Vec<SourceMatch>> {
    let cleaned = match root.kind() {
        RootKind::Context => context_source(pattern)?,
        RootKind::Image => clean(pattern),
    };
    let first_wild = cleaned.components.iter().position(|c| has_wildcard(c));
    let Some(first_wild) = first_wild else {
        let plain: Vec<String> = cleaned.components.iter().map(|c| unescape(c)).collect();
        let path = format!("/{}", plain.join("/"));
        let not_found = || Error::SourceNotFound(path.clone());
        let resolved = match resolve(root, &path, Lookup::Follow) {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let Some(st) = resolved.stat(root)? else {
            return Err(not_found());
        };
        if root.is_excluded(&plain.join("/")) || root.is_excluded(&resolved.relative()) {
            return Err(not_found());
        }
        return Ok(vec![SourceMatch {
            path,
            is_dir: is_dir(&st),
        }]);
    };
    let prefix: Vec<String> = cleaned.components[..first_wild]
        .iter()
        .map(|c| unescape(c))
        .collect();
    let mut patterns = Vec::new();
    for comp in &cleaned.components[first_wild..] {
        patterns.push(Pattern::new(comp).map_err(|_| Error::BadPattern(pattern.to_string()))?);
    }
    let prefix_path = format!("/{}", prefix.join("/"));
    let base = match resolve(root, &prefix_path, Lookup::Follow) {
        Ok(r) => r,
        Err(e) if is_not_found(&e) => return Err(Error::NoSourceFiles(pattern.to_string())),
        Err(e) => return Err(e),
    };
    if !base.stat(root)?.is_some_and(|st| is_dir(&st)) {
        return Err(Error::NoSourceFiles(pattern.to_string()));
    }
    let mut matches = Vec::new();
    let base_fd = base_dir(root, &base)?;
    expand(
        root,
        base_fd.as_fd(),
        &base.relative(),
        &prefix.join("/"),
        &patterns,
        &mut matches,
    )?;
    if matches.is_empty() {
        return Err(Error::NoSourceFiles(pattern.to_string()));
    }
    Ok(matches)
}

fn base_dir(root: &Root, r: &Resolved) -> Result<std::os::fd::OwnedFd> {
    crate::root::open_resolved(
        root,
        r,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
    )
}

fn is_not_found(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::NotADirectory(_) => true,
        _ => false,
    }
}

/// Matches the remaining component patterns below `dir`. `canonical` is the
/// directory's real path in the root (what .dockerignore sees), `lexical` the
/// path as the pattern spells it (what the match is called).
fn expand(
    root: &Root,
    dir: BorrowedFd<'_>,
    canonical: &str,
    lexical: &str,
    patterns: &[Pattern],
    out: &mut Vec<SourceMatch>,
) -> Result<()> {
    let Some((pattern, rest)) = patterns.split_first() else {
        return Ok(());
    };
    for (name, st) in list(dir, &format!("/{canonical}"))? {
        if !pattern.matches(&name) {
            continue;
        }
        let real = join_rel(canonical, &name);
        let shown = join_rel(lexical, &name);
        if rest.is_empty() {
            if root.is_excluded(&real) {
                continue;
            }
            let path = format!("/{shown}");
            // A matched symlink is followed like any top-level source.
            let st = match resolve(root, &path, Lookup::Follow)?.stat(root)? {
                Some(st) => st,
                None => return Err(Error::SourceNotFound(path)),
            };
            out.push(SourceMatch {
                path,
                is_dir: is_dir(&st),
            });
        } else if is_dir(&st) && (!root.is_excluded(&real) || root.may_include_under(&real)) {
            let sub = crate::dirs::open_subdir(dir, &name, &format!("/{real}"))?;
            expand(root, sub.as_fd(), &real, &shown, rest, out)?;
        }
    }
    Ok(())
}
