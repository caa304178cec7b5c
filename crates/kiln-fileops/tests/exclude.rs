#![allow(clippy::unwrap_used)]
//! `COPY/ADD --exclude`: what each pattern drops, relative to what.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use kiln_fileops::{CopyOptions, CopySource, Root, add, resolve_sources_with};

fn opts() -> CopyOptions {
    CopyOptions::default()
}

fn files(e: &Env, list: &[&str]) {
    for f in list {
        write(&e.ctx.join(f), f);
    }
}

/// COPY --exclude=EX... PATTERNS DEST from the context; the tree written below `under`.
fn copy_ex(e: &Env, ex: &[&str], pats: &[&str], dest: &str, under: &str) -> Vec<String> {
    e.copy_sel(&e.ctx_root(), pats, dest, &opts(), &select(ex, false))
        .unwrap();
    tree(&e.dst.join(under))
}

#[test]
fn a_directory_source_drops_its_excluded_entries() {
    let e = env();
    files(
        &e,
        &[
            "package.json",
            "node_modules/a/index.js",
            "src/main.js",
            "src/node_modules/b.js",
        ],
    );
    // `COPY --exclude=node_modules . .`: only ./node_modules goes.
    assert_eq!(
        copy_ex(&e, &["node_modules"], &["."], "/app/", "app"),
        vec![
            "package.json",
            "src/",
            "src/main.js",
            "src/node_modules/",
            "src/node_modules/b.js"
        ]
    );
}

#[test]
fn a_pattern_is_relative_to_the_source_directory() {
    let e = env();
    files(
        &e,
        &[
            "prebuildfs/opt/run.sh",
            "prebuildfs/setup/a/b.sh",
            "prebuildfs/setup/c.sh",
        ],
    );
    // `setup/**` matches what is below setup, not setup itself.
    assert_eq!(
        copy_ex(&e, &["setup/**"], &["prebuildfs/"], "/", ""),
        vec!["opt/", "opt/run.sh", "setup/"]
    );

    let e = env();
    files(&e, &["dir/x.bak", "dir/x.txt", "dir/sub/x.bak"]);
    // `*` stays within one level: dir/x.bak goes, dir/sub/x.bak stays.
    assert_eq!(
        copy_ex(&e, &["*.bak"], &["dir"], "/dir", "dir"),
        vec!["sub/", "sub/x.bak", "x.txt"]
    );
}

#[test]
fn several_patterns_and_double_star() {
    let e = env();
    files(
        &e,
        &[
            "a.log",
            "a.txt",
            "deep/er/b.log",
            "deep/er/b.tmp",
            "deep/er/b.txt",
        ],
    );
    assert_eq!(
        copy_ex(&e, &["**/*.log", "*/*/*.tmp"], &["."], "/o/", "o"),
        vec!["a.txt", "deep/", "deep/er/", "deep/er/b.txt"]
    );
}

#[test]
fn an_exception_reincludes_below_an_excluded_directory() {
    let e = env();
    files(&e, &["docs/README.md", "docs/api/x.md", "src/a.rs"]);
    fs::set_permissions(e.ctx.join("docs"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(
        copy_ex(&e, &["docs", "!docs/README.md"], &["."], "/o/", "o"),
        vec!["docs/", "docs/README.md", "src/", "src/a.rs"]
    );
    // The walked directory is a copy of the source's, not a made-up parent.
    let md = fs::metadata(e.dst.join("o/docs")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750);
}

#[test]
fn an_excluded_directory_with_nothing_reincluded_is_not_created() {
    let e = env();
    files(&e, &["build/a.o", "build/sub/b.o", "src/a.keep"]);
    // `!*.keep` might reach into build (so build is walked), but keeps
    // nothing there: BuildKit creates no empty build/.
    assert_eq!(
        copy_ex(&e, &["build", "!*.keep"], &["."], "/o/", "o"),
        vec!["src/", "src/a.keep"]
    );
    // An exception that cannot reach into it: skipped whole.
    let e = env();
    files(&e, &["build/keep", "keep"]);
    assert_eq!(
        copy_ex(&e, &["build", "!keep"], &["."], "/o/", "o"),
        vec!["keep"]
    );
}

#[test]
fn the_last_matching_pattern_wins() {
    let e = env();
    files(&e, &["a.txt", "keep.txt", "x.md"]);
    assert_eq!(
        copy_ex(&e, &["*.txt", "!keep.txt"], &["."], "/o/", "o"),
        vec!["keep.txt", "x.md"]
    );
    let e = env();
    files(&e, &["a.txt", "keep.txt", "x.md"]);
    assert_eq!(
        copy_ex(&e, &["*.txt", "!keep.txt", "keep*"], &["."], "/o/", "o"),
        vec!["x.md"]
    );
}

#[test]
fn wildcard_matches_are_checked_below_the_wildcard_base() {
    let e = env();
    files(
        &e,
        &[
            "home.txt",
            "homework.md",
            "homedir/a.txt",
            "homedir/b.md",
            "other.txt",
        ],
    );
    // `COPY --exclude=*.txt hom* /mydir/`: home.txt is not copied; the
    // entries of the matched directory are matched relative to it.
    assert_eq!(
        copy_ex(&e, &["*.txt"], &["hom*"], "/mydir/", "mydir"),
        vec!["b.md", "homework.md"]
    );

    let e = env();
    files(&e, &["sub/a.txt", "sub/b.md"]);
    // The base is the fixed prefix `sub`: the match is seen as `a.txt`.
    assert_eq!(copy_ex(&e, &["a.*"], &["sub/*"], "/o/", "o"), vec!["b.md"]);
}

#[test]
fn a_source_named_without_wildcards_is_never_excluded() {
    let e = env();
    files(&e, &["a.txt", "dir/x.txt", "dir/y.md"]);
    assert_eq!(
        copy_ex(&e, &["*.txt", "dir"], &["a.txt", "dir"], "/o/", "o"),
        vec!["a.txt", "y.md"]
    );
}

#[test]
fn a_wildcard_whose_matches_are_all_excluded_copies_nothing() {
    let e = env();
    files(&e, &["a.txt", "b.txt"]);
    let ctx = e.ctx_root();
    let m = resolve_sources_with(&ctx, &["*.txt".into()], &select(&["*"], false)).unwrap();
    assert!(m.is_empty(), "{m:?}");
    let stats = e
        .copy_sel(&ctx, &["*.txt"], "/o/", &opts(), &select(&["*"], false))
        .unwrap();
    assert_eq!(stats.files, 0);
    assert!(!e.dst.join("o").exists());
}

#[test]
fn an_excluded_wildcard_directory_is_walked_for_exceptions() {
    let e = env();
    files(&e, &["homedir/keep.md", "homedir/x.md", "home.txt"]);
    // The exception is written against the wildcard's base, and so are the
    // entries of the excluded match it reaches into.
    assert_eq!(
        copy_ex(&e, &["hom*", "!homedir/keep.md"], &["hom*"], "/o/", "o"),
        vec!["keep.md"]
    );
}

#[test]
fn from_a_stage_owners_are_kept_and_excludes_apply() {
    let e = env();
    write(&e.stage.join("app/bin/tool"), "t");
    write(&e.stage.join("app/cache/blob"), "b");
    std::os::unix::fs::chown(e.stage.join("app/bin/tool"), Some(1000), Some(1000)).unwrap();
    let stage = Root::open_image(&e.stage).unwrap();
    e.copy_sel(
        &stage,
        &["/app"],
        "/app",
        &opts(),
        &select(&["cache"], false),
    )
    .unwrap();
    assert_eq!(tree(&e.dst.join("app")), vec!["bin/", "bin/tool"]);
    let md = fs::metadata(e.dst.join("app/bin/tool")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
}

#[test]
fn dockerignore_and_excludes_both_apply() {
    let e = env();
    files(&e, &["a.txt", "b.txt", "c.md"]);
    let ctx = Root::open_context(&e.ctx)
        .unwrap()
        .with_ignore(std::sync::Arc::new(|p: &str| p == "a.txt"));
    e.copy_sel(&ctx, &["."], "/o/", &opts(), &select(&["b.txt"], false))
        .unwrap();
    assert_eq!(tree(&e.dst.join("o")), vec!["c.md"]);
}

fn add_ex(e: &Env, ex: &[&str], pats: &[&str], dest: &str) {
    let ctx = e.ctx_root();
    let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
    let m = resolve_sources_with(&ctx, &pats, &select(ex, false)).unwrap();
    let sources: Vec<CopySource<'_>> = m
        .iter()
        .map(|m| CopySource {
            root: &ctx,
            source: m,
        })
        .collect();
    add(&e.dst_root(), &sources, dest, "/", &opts()).unwrap();
}

#[test]
fn add_filters_sources_and_directories_but_not_archive_members() {
    let e = env();
    // An archive holding a.txt and b.md.
    let staging = e.tmp.path().join("staging");
    write(&staging.join("a.txt"), "a");
    write(&staging.join("b.md"), "b");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(e.ctx.join("pkg.tar"))
        .arg("-C")
        .arg(&staging)
        .args(["a.txt", "b.md"])
        .status()
        .unwrap();
    assert!(status.success());
    files(&e, &["dir/x.txt", "dir/y.md", "note.txt"]);
    add_ex(&e, &["*.txt"], &["pkg.tar", "dir", "*.txt"], "/o/");
    // pkg.tar's members are all extracted; dir loses x.txt; note.txt (a
    // wildcard match) is not added.
    assert_eq!(tree(&e.dst.join("o")), vec!["a.txt", "b.md", "y.md"]);
}
