#![allow(clippy::unwrap_used, dead_code)]
//! Test fixtures: a temporary build context, an image root, and helpers.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kiln_dockerfile::DockerIgnore;
use kiln_fileops::{
    CopyOptions, CopySource, CopyStats, Excludes, Ignore, Result, Root, SourceOptions,
    resolve_sources, resolve_sources_with,
};

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub ctx: PathBuf,
    pub dst: PathBuf,
    pub stage: PathBuf,
}

pub fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let dst = tmp.path().join("rootfs");
    let stage = tmp.path().join("stage");
    for d in [&ctx, &dst, &stage] {
        fs::create_dir(d).unwrap();
    }
    Env {
        tmp,
        ctx,
        dst,
        stage,
    }
}

pub fn write(path: &Path, content: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
}

pub fn link(target: &str, at: &Path) {
    if let Some(p) = at.parent() {
        fs::create_dir_all(p).unwrap();
    }
    symlink(target, at).unwrap();
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// Sets mtime/atime an hour back so the digest cache treats the file as settled.
pub fn age(path: &Path) {
    let t = SystemTime::now() - Duration::from_secs(3600);
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

/// The real `.dockerignore` matcher, as the builder hands it in for `--exclude`.
struct Matcher(DockerIgnore);

impl Ignore for Matcher {
    fn is_excluded(&self, path: &str) -> bool {
        self.0.is_excluded(path)
    }

    fn may_include_under(&self, dir: &str) -> bool {
        !self.0.can_skip_dir(dir)
    }
}

/// `--exclude=P` for each of `patterns`.
pub fn excludes(patterns: &[&str]) -> Excludes {
    Excludes::new(Arc::new(Matcher(
        DockerIgnore::from_patterns(patterns).unwrap(),
    )))
}

/// The selection of `COPY --exclude=P...` (and `--parents` when asked).
pub fn select(exclude: &[&str], parents: bool) -> SourceOptions {
    SourceOptions {
        excludes: (!exclude.is_empty()).then(|| excludes(exclude)),
        parents,
    }
}

/// Every path below `dir`, relative and sorted; directories end in `/`.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

impl Env {
    pub fn ctx_root(&self) -> Root {
        Root::open_context(&self.ctx).unwrap()
    }

    pub fn dst_root(&self) -> Root {
        Root::open_image(&self.dst).unwrap()
    }

    /// COPY <patterns> <dest> from the context, as the builder would call it.
    pub fn copy(
        &self,
        patterns: &[&str],
        dest: &str,
        workdir: &str,
        opts: &CopyOptions,
    ) -> Result<CopyStats> {
        let ctx = self.ctx_root();
        self.copy_from(&ctx, patterns, dest, workdir, opts)
    }

    pub fn copy_from(
        &self,
        src: &Root,
        patterns: &[&str],
        dest: &str,
        workdir: &str,
        opts: &CopyOptions,
    ) -> Result<CopyStats> {
        let pats: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let matches = resolve_sources(src, &pats)?;
        self.copy_matches(src, &matches, dest, workdir, opts)
    }

    /// COPY with `--exclude`/`--parents` (`sel`) from `src` to `dest`, WORKDIR /.
    pub fn copy_sel(
        &self,
        src: &Root,
        patterns: &[&str],
        dest: &str,
        opts: &CopyOptions,
        sel: &SourceOptions,
    ) -> Result<CopyStats> {
        let pats: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let matches = resolve_sources_with(src, &pats, sel)?;
        self.copy_matches(src, &matches, dest, "/", opts)
    }

    fn copy_matches(
        &self,
        src: &Root,
        matches: &[kiln_fileops::SourceMatch],
        dest: &str,
        workdir: &str,
        opts: &CopyOptions,
    ) -> Result<CopyStats> {
        let sources: Vec<CopySource<'_>> = matches
            .iter()
            .map(|m| CopySource {
                root: src,
                source: m,
            })
            .collect();
        kiln_fileops::copy(&self.dst_root(), &sources, dest, workdir, opts)
    }
}
