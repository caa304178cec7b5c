//! COPY/ADD source patterns → the files they name, with Docker's rules,
//! `--exclude` applied to wildcard matches and `--parents` pivots.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::OFlags;

use crate::dirs::{join_rel, list};
use crate::error::{Error, Result};
use crate::exclude::{ExcludeScope, Excludes, Verdict, keeps_any};
use crate::paths::{clean, context_source};
use crate::pattern::{Pattern, has_wildcard, unescape};
use crate::root::{Lookup, Resolved, Root, RootKind, is_dir, open_resolved, resolve};

/// One source a pattern named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The path inside the source root as written or matched, absolute and
    /// cleaned (`/dir/a.txt`); a symlink in its last component is followed
    /// when copying (not with `--parents`), and its name is the one the
    /// copy gets.
    pub path: String,
    /// Whether it is a directory once a final symlink is followed (its
    /// contents are copied); with `--parents`, whether it is one itself.
    pub is_dir: bool,
    /// `--parents`: the path it keeps below the destination, relative to
    /// the pivot (the root, or the part of the pattern before `/./`):
    /// `x/a.txt`; "" for the pivot itself, whose contents are copied.
    pub parents: Option<String>,
    /// `--exclude`: the patterns that filter what is copied below it.
    pub exclude: Option<ExcludeScope>,
}

impl SourceMatch {
    /// For a `--parents` match below its pivot: the pivot directory's path
    /// in the root (relative, "" for the root) and the kept path below it.
    pub(crate) fn pivot(&self) -> Option<(String, &str)> {
        let keep = self.parents.as_deref().filter(|k| !k.is_empty())?;
        let all: Vec<&str> = self.path.split('/').filter(|c| !c.is_empty()).collect();
        let depth = keep.split('/').count();
        Some((all[..all.len().saturating_sub(depth)].join("/"), keep))
    }

    /// The `--exclude` patterns that filter what is copied below it, and
    /// the path they see it at.
    pub(crate) fn exclude_scope(&self) -> (Option<Excludes>, &str) {
        match &self.exclude {
            Some(e) => (Some(e.patterns.clone()), e.base.as_str()),
            None => (None, ""),
        }
    }
}

/// The flags of a COPY/ADD that decide what its patterns select.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// `--exclude` patterns (`.dockerignore` rules).
    pub excludes: Option<Excludes>,
    /// `--parents` (COPY only).
    pub parents: bool,
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
    resolve_sources_with(root, patterns, &SourceOptions::default())
}

/// [`resolve_sources`] with `--exclude` and `--parents`:
///
/// - `--exclude`: a source named without wildcards is never excluded
///   itself (its entries are, relative to it, when copied); a wildcard
///   match is dropped when the patterns exclude its path below the
///   wildcard's fixed prefix (`--exclude=*.txt hom*` drops `home.txt`),
///   unless it is a directory that a `!` exception reaches into and that
///   keeps something. A wildcard whose every match is excluded selects
///   nothing, without error.
/// - `--parents`: a pattern is split at its first `/./` into a pivot (the
///   root when there is none) and the rest; every match keeps its path
///   below the pivot ([`SourceMatch::parents`]). Wildcards may appear on
///   both sides; after the pivot a `**` component spans any number of
///   directories. A match in the last component is not followed if it is
///   a symlink. `--exclude` patterns see the kept paths.
pub fn resolve_sources_with(
    root: &Root,
    patterns: &[String],
    opts: &SourceOptions,
) -> Result<Vec<SourceMatch>> {
    let mut out = Vec::new();
    for pattern in patterns {
        if opts.parents {
            out.extend(resolve_parents(root, pattern, opts.excludes.as_ref())?);
        } else {
            out.extend(resolve_one(root, pattern, opts.excludes.as_ref())?);
        }
    }
    Ok(out)
}

fn resolve_one(
    root: &Root,
    pattern: &str,
    excludes: Option<&Excludes>,
) -> Result<Vec<SourceMatch>> {
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
            parents: None,
            exclude: excludes.map(|patterns| ExcludeScope {
                patterns: patterns.clone(),
                base: String::new(),
            }),
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
        "",
        &patterns,
        &mut matches,
    )?;
    if matches.is_empty() {
        return Err(Error::NoSourceFiles(pattern.to_string()));
    }
    let Some(ex) = excludes else {
        return Ok(matches.into_iter().map(|(m, _)| m).collect());
    };
    let mut kept = Vec::new();
    for (m, below) in matches {
        // Entries of a kept match are matched relative to it, as BuildKit
        // copies each match as a source of its own.
        let base = match ex.verdict(&below, m.is_dir) {
            Verdict::Keep => String::new(),
            Verdict::Skip => continue,
            Verdict::Walk if keeps_below(root, &m.path, Lookup::Follow, ex, &below)? => below,
            Verdict::Walk => continue,
        };
        kept.push(SourceMatch {
            exclude: Some(ExcludeScope {
                patterns: ex.clone(),
                base,
            }),
            ..m
        });
    }
    Ok(kept)
}

/// Whether the directory at `path` keeps anything under `ex` (seen at `ex_path`).
fn keeps_below(
    root: &Root,
    path: &str,
    lookup: Lookup,
    ex: &Excludes,
    ex_path: &str,
) -> Result<bool> {
    let r = resolve(root, path, lookup)?;
    let fd = open_resolved(root, &r, OFlags::RDONLY | OFlags::DIRECTORY)?;
    keeps_any(root, ex, fd.as_fd(), &r.relative(), ex_path)
}

fn base_dir(root: &Root, r: &Resolved) -> Result<std::os::fd::OwnedFd> {
    open_resolved(root, r, OFlags::PATH | OFlags::DIRECTORY)
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
/// path as the pattern spells it (what the match is called), `below` the
/// path below the wildcard's fixed prefix (what `--exclude` sees).
fn expand(
    root: &Root,
    dir: BorrowedFd<'_>,
    canonical: &str,
    lexical: &str,
    below: &str,
    patterns: &[Pattern],
    out: &mut Vec<(SourceMatch, String)>,
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
        let below = join_rel(below, &name);
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
            let m = SourceMatch {
                path,
                is_dir: is_dir(&st),
                parents: None,
                exclude: None,
            };
            out.push((m, below));
        } else if is_dir(&st) && (!root.is_excluded(&real) || root.may_include_under(&real)) {
            let sub = crate::dirs::open_subdir(dir, &name, &format!("/{real}"))?;
            expand(root, sub.as_fd(), &real, &shown, &below, rest, out)?;
        }
    }
    Ok(())
}

/// One component of what follows a `--parents` pivot.
enum Comp {
    /// `**`: any number of directories (none included).
    AnyDirs,
    Glob(Pattern),
}

/// A `--parents` pattern's pivot and the rest, as BuildKit splits it: at
/// the first `/./`; without one the pivot is the root. (`x/.` ends in no
/// pivot: the whole path is kept.)
fn split_pivot(pattern: &str) -> (&str, &str) {
    pattern.split_once("/./").unwrap_or(("/", pattern))
}

fn resolve_parents(
    root: &Root,
    pattern: &str,
    excludes: Option<&Excludes>,
) -> Result<Vec<SourceMatch>> {
    let (pivot, rest) = split_pivot(pattern);
    let rest = clean(rest);
    if root.kind() == RootKind::Context && (rest.escaped || clean(pivot).escaped) {
        return Err(Error::OutsideContext(pattern.to_string()));
    }
    let pivots = match resolve_one(root, pivot, None) {
        Err(Error::NoSourceFiles(_)) => return Err(Error::NoSourceFiles(pattern.to_string())),
        other => other?,
    };
    let wild = has_wildcard(pivot) || rest.components.iter().any(|c| has_wildcard(c));
    let mut found = Vec::new();
    for p in pivots {
        if !p.is_dir {
            if wild {
                continue;
            }
            return Err(Error::NotADirectory(p.path));
        }
        // A plain path must exist (BuildKit's required paths), unless a
        // wildcard chose the pivot.
        let required = !has_wildcard(pivot);
        found.extend(below_pivot(
            root,
            pattern,
            &p.path,
            &rest.components,
            required,
        )?);
    }
    if found.is_empty() {
        return Err(Error::NoSourceFiles(pattern.to_string()));
    }
    let Some(ex) = excludes else {
        return Ok(found);
    };
    let mut kept = Vec::new();
    for m in found {
        let keep = m.parents.clone().unwrap_or_default();
        match ex.verdict(&keep, m.is_dir) {
            Verdict::Keep => {}
            Verdict::Skip => continue,
            Verdict::Walk => {
                if !keeps_below(root, &m.path, Lookup::NoFollow, ex, &keep)? {
                    continue;
                }
            }
        }
        kept.push(SourceMatch {
            exclude: Some(ExcludeScope {
                patterns: ex.clone(),
                base: keep,
            }),
            ..m
        });
    }
    Ok(kept)
}

/// The matches of `rest` (cleaned components) below the pivot directory
/// `pivot` (lexical), sorted, none inside another. A plain `rest` that is
/// missing is an error when `required`, else no match.
fn below_pivot(
    root: &Root,
    pattern: &str,
    pivot: &str,
    rest: &[String],
    required: bool,
) -> Result<Vec<SourceMatch>> {
    let at = |keep: &str, dir: bool| SourceMatch {
        path: format!("/{}", join_rel(pivot.trim_start_matches('/'), keep)),
        is_dir: dir,
        parents: Some(keep.to_string()),
        exclude: None,
    };
    if rest.is_empty() {
        return Ok(vec![at("", true)]);
    }
    let first_wild = rest.iter().position(|c| has_wildcard(c));
    let literal: Vec<String> = rest[..first_wild.unwrap_or(rest.len())]
        .iter()
        .map(|c| unescape(c))
        .collect();
    let keep = literal.join("/");
    let Some(first_wild) = first_wild else {
        // Its last component is copied as it is, symlink or not.
        let path = at(&keep, false).path;
        let not_found = || {
            if required {
                Err(Error::SourceNotFound(path.clone()))
            } else {
                Ok(Vec::new())
            }
        };
        let r = match resolve(root, &path, Lookup::NoFollow) {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return not_found(),
            Err(e) => return Err(e),
        };
        let Some(st) = r.stat(root)? else {
            return not_found();
        };
        if root.is_excluded(path.trim_start_matches('/')) || root.is_excluded(&r.relative()) {
            return not_found();
        }
        return Ok(vec![at(&keep, is_dir(&st))]);
    };
    let mut comps = Vec::new();
    for c in &rest[first_wild..] {
        comps.push(if c == "**" {
            Comp::AnyDirs
        } else {
            Comp::Glob(Pattern::new(c).map_err(|_| Error::BadPattern(pattern.to_string()))?)
        });
    }
    let base_path = at(&keep, true).path;
    let base = match resolve(root, &base_path, Lookup::Follow) {
        Ok(r) => r,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if !base.stat(root)?.is_some_and(|st| is_dir(&st)) {
        return Ok(Vec::new());
    }
    let base_fd = base_dir(root, &base)?;
    let mut found = BTreeMap::new();
    walk_parents(
        root,
        base_fd.as_fd(),
        &base.relative(),
        &keep,
        &comps,
        &mut found,
    )?;
    // `**` can reach one path by several routes, and below a match: a
    // match inside another is already copied with it.
    let inside = |k: &str| {
        k.match_indices('/')
            .any(|(i, _)| found.contains_key(&k[..i]))
    };
    Ok(found
        .iter()
        .filter(|(k, _)| !inside(k))
        .map(|(k, dir)| at(k, *dir))
        .collect())
}

/// Matches `comps` below `dir` (canonical `real`, kept path `keep`); found
/// paths go to `out` (kept path → whether it is a directory, not following
/// a final symlink).
fn walk_parents(
    root: &Root,
    dir: BorrowedFd<'_>,
    real: &str,
    keep: &str,
    comps: &[Comp],
    out: &mut BTreeMap<String, bool>,
) -> Result<()> {
    let Some((comp, rest)) = comps.split_first() else {
        return Ok(());
    };
    if matches!(comp, Comp::AnyDirs) && !rest.is_empty() {
        // `**` spanning no directory here.
        walk_parents(root, dir, real, keep, rest, out)?;
    }
    for (name, st) in list(dir, &format!("/{real}"))? {
        let child_real = join_rel(real, &name);
        let child_keep = join_rel(keep, &name);
        let walkable =
            is_dir(&st) && (!root.is_excluded(&child_real) || root.may_include_under(&child_real));
        match comp {
            // A trailing `**` takes everything below, each entry whole.
            Comp::AnyDirs if rest.is_empty() => {
                if !root.is_excluded(&child_real) {
                    out.insert(child_keep, is_dir(&st));
                }
            }
            Comp::AnyDirs => {
                if walkable {
                    let sub = crate::dirs::open_subdir(dir, &name, &format!("/{child_real}"))?;
                    walk_parents(root, sub.as_fd(), &child_real, &child_keep, comps, out)?;
                }
            }
            Comp::Glob(p) if !p.matches(&name) => {}
            Comp::Glob(_) if rest.is_empty() => {
                if !root.is_excluded(&child_real) {
                    out.insert(child_keep, is_dir(&st));
                }
            }
            Comp::Glob(_) => {
                if walkable {
                    let sub = crate::dirs::open_subdir(dir, &name, &format!("/{child_real}"))?;
                    walk_parents(root, sub.as_fd(), &child_real, &child_keep, rest, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivot_is_the_first_dot_component() {
        for (pattern, pivot, rest) in [
            ("./x/./y/*.txt", "./x", "y/*.txt"),
            ("/test/a/./b/./c", "/test/a", "b/./c"),
            ("/test/a/b/c/d/.", "/", "/test/a/b/c/d/."),
            ("x/a.txt", "/", "x/a.txt"),
            ("/./x", "", "x"),
        ] {
            assert_eq!(split_pivot(pattern), (pivot, rest), "{pattern}");
        }
        assert_eq!(clean("b/./c").relative(), "b/c");
        assert_eq!(clean("/test/a/b/c/d/.").relative(), "test/a/b/c/d");
    }
}
