#![allow(clippy::unwrap_used)]
//! `COPY --parents`: kept paths, the `/./` pivot, `**`, the directories on
//! the way, and what the destination must be.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use kiln_fileops::{CopyOptions, Error, Root, resolve_sources_with};

fn opts() -> CopyOptions {
    CopyOptions::default()
}

fn files(dir: &std::path::Path, list: &[&str]) {
    for f in list {
        write(&dir.join(f), f);
    }
}

/// COPY --parents [--exclude=EX...] PATTERNS DEST from the context; the tree below `under`.
fn parents(e: &Env, ex: &[&str], pats: &[&str], dest: &str, under: &str) -> Vec<String> {
    e.copy_sel(&e.ctx_root(), pats, dest, &opts(), &select(ex, true))
        .unwrap();
    tree(&e.dst.join(under))
}

fn mode(p: &std::path::Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn each_source_keeps_its_path() {
    let e = env();
    files(&e.ctx, &["x/a.txt", "y/a.txt", "z/a.txt"]);
    assert_eq!(
        parents(&e, &[], &["./x/a.txt", "./y/a.txt"], "/out/", "out"),
        vec!["x/", "x/a.txt", "y/", "y/a.txt"]
    );
    assert_eq!(read(&e.dst.join("out/y/a.txt")), "y/a.txt");
}

#[test]
fn wildcards_keep_the_matched_path() {
    let e = env();
    files(
        &e.ctx,
        &["src/a/x.go", "src/a/x.md", "src/b/y.go", "src/top.go"],
    );
    assert_eq!(
        parents(&e, &[], &["src/*/*.go"], "/out/", "out"),
        vec!["src/", "src/a/", "src/a/x.go", "src/b/", "src/b/y.go"]
    );
}

#[test]
fn the_pivot_cuts_the_kept_path() {
    let e = env();
    files(&e.ctx, &["x/y/a.txt", "x/y/b.txt", "x/y/c.md"]);
    assert_eq!(
        parents(&e, &[], &["./x/./y/*.txt"], "/out/", "out"),
        vec!["y/", "y/a.txt", "y/b.txt"]
    );

    // The first pivot counts; a trailing `/.` is no pivot.
    let e = env();
    files(&e.ctx, &["a/b/c/d/foo", "a/b/c/d/e/bay"]);
    assert_eq!(
        parents(&e, &[], &["/a/./b/./c"], "/out/", "out"),
        vec![
            "b/",
            "b/c/",
            "b/c/d/",
            "b/c/d/e/",
            "b/c/d/e/bay",
            "b/c/d/foo"
        ]
    );
    let e = env();
    files(&e.ctx, &["a/b/foo"]);
    assert_eq!(
        parents(&e, &[], &["a/b/."], "/out/", "out"),
        vec!["a/", "a/b/", "a/b/foo"]
    );
    // A pivot with nothing after it: its contents.
    let e = env();
    files(&e.ctx, &["a/b/foo"]);
    assert_eq!(
        parents(&e, &[], &["a/./"], "/out/", "out"),
        vec!["b/", "b/foo"]
    );
}

#[test]
fn wildcards_before_the_pivot_give_several_pivots() {
    let e = env();
    files(
        &e.ctx,
        &["a/b/c/d/e/bay", "a/b2/c/d/e/bar", "a/b/c/d/foo", "a/x"],
    );
    // BuildKit's `/test/a/b*/./c/**/e`.
    assert_eq!(
        parents(&e, &[], &["/a/b*/./c/**/e"], "/out/", "out"),
        vec!["c/", "c/d/", "c/d/e/", "c/d/e/bar", "c/d/e/bay"]
    );
}

#[test]
fn a_plain_rest_may_be_missing_below_a_wildcard_pivot() {
    let e = env();
    files(&e.ctx, &["a/b/c/d", "a/b2/x"]);
    assert_eq!(
        parents(&e, &[], &["a/b*/./c"], "/out/", "out"),
        vec!["c/", "c/d"]
    );
}

#[test]
fn double_star_spans_directories() {
    let e = env();
    files(
        &e.ctx,
        &["src/x.go", "src/a/y.go", "src/a/b/z.go", "src/a/b/z.md"],
    );
    assert_eq!(
        parents(&e, &[], &["src/**/*.go"], "/out/", "out"),
        vec![
            "src/",
            "src/a/",
            "src/a/b/",
            "src/a/b/z.go",
            "src/a/y.go",
            "src/x.go"
        ]
    );
    // A trailing `**` takes what is below, not the directory itself: an
    // empty one matches nothing.
    let e = env();
    files(&e.ctx, &["c/d/f"]);
    fs::create_dir(e.ctx.join("empty")).unwrap();
    assert_eq!(
        parents(&e, &[], &["c/**"], "/out/", "out"),
        vec!["c/", "c/d/", "c/d/f"]
    );
    let err =
        resolve_sources_with(&e.ctx_root(), &["empty/**".into()], &select(&[], true)).unwrap_err();
    assert!(matches!(err, Error::NoSourceFiles(_)), "{err}");
}

#[test]
fn kept_directories_are_copies_of_the_source_directories() {
    let e = env();
    files(&e.ctx, &["x/sub/a.txt"]);
    fs::set_permissions(e.ctx.join("x"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(e.ctx.join("x/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    let old = filetime(&e.ctx.join("x"));
    parents(&e, &[], &["x/sub/a.txt"], "/out/", "out");
    assert_eq!(mode(&e.dst.join("out")), 0o755, "the destination is made");
    assert_eq!(mode(&e.dst.join("out/x")), 0o750);
    assert_eq!(mode(&e.dst.join("out/x/sub")), 0o700);
    // Their times are the source's, set after what they hold was written.
    assert_eq!(filetime(&e.dst.join("out/x")), old);

    // --chmod and --chown apply to them as to every copied directory.
    let e = env();
    files(&e.ctx, &["x/a.txt"]);
    e.copy_sel(
        &e.ctx_root(),
        &["x/a.txt"],
        "/out/",
        &CopyOptions {
            chown: Some("7:8".into()),
            chmod: Some("0700".into()),
        },
        &select(&[], true),
    )
    .unwrap();
    let md = fs::metadata(e.dst.join("out/x")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o700, 7, 8));
}

fn filetime(p: &std::path::Path) -> (i64, i64) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn from_a_stage_owners_of_kept_directories_are_kept() {
    let e = env();
    files(&e.stage, &["opt/app/bin/tool"]);
    std::os::unix::fs::chown(e.stage.join("opt/app"), Some(1000), Some(1001)).unwrap();
    let stage = Root::open_image(&e.stage).unwrap();
    e.copy_sel(
        &stage,
        &["/opt/./app/bin"],
        "/srv/",
        &opts(),
        &select(&[], true),
    )
    .unwrap();
    assert_eq!(
        tree(&e.dst.join("srv")),
        vec!["app/", "app/bin/", "app/bin/tool"]
    );
    let md = fs::metadata(e.dst.join("srv/app")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1001));
}

#[test]
fn existing_directories_are_merged() {
    let e = env();
    files(&e.ctx, &["x/a.txt"]);
    write(&e.dst.join("out/x/old.txt"), "old");
    parents(&e, &[], &["x/a.txt"], "/out/", "out");
    assert_eq!(tree(&e.dst.join("out")), vec!["x/", "x/a.txt", "x/old.txt"]);
    // A non-directory where a kept directory goes is an error.
    let e = env();
    files(&e.ctx, &["x/a.txt"]);
    write(&e.dst.join("out/x"), "file");
    let err = e
        .copy_sel(
            &e.ctx_root(),
            &["x/a.txt"],
            "/out/",
            &opts(),
            &select(&[], true),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::CopyToNonDirectory(ref p) if p == "/out/x"),
        "{err}"
    );
}

#[test]
fn a_matched_symlink_is_copied_as_a_symlink() {
    let e = env();
    files(&e.ctx, &["x/real.txt"]);
    link("real.txt", &e.ctx.join("x/link"));
    parents(&e, &[], &["x/link"], "/out/", "out");
    let target = fs::read_link(e.dst.join("out/x/link")).unwrap();
    assert_eq!(target.to_str(), Some("real.txt"));
}

#[test]
fn the_destination_is_a_directory_without_its_slash() {
    // BuildKit copies --parents sources *into* the destination however it
    // is spelled.
    let e = env();
    files(&e.ctx, &["x/a.txt"]);
    assert_eq!(
        parents(&e, &[], &["x/a.txt"], "/out", "out"),
        vec!["x/", "x/a.txt"]
    );
    // A file in the way is still an error.
    fs::write(e.dst.join("file"), "f").unwrap();
    let err = e
        .copy_sel(
            &e.ctx_root(),
            &["x/a.txt"],
            "/file",
            &opts(),
            &select(&[], true),
        )
        .unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
}

#[test]
fn missing_sources_are_errors() {
    let e = env();
    files(&e.ctx, &["x/a.txt"]);
    let ctx = e.ctx_root();
    let sel = select(&[], true);
    let err = resolve_sources_with(&ctx, &["x/nothere".into()], &sel).unwrap_err();
    assert!(
        matches!(err, Error::SourceNotFound(ref p) if p == "/x/nothere"),
        "{err}"
    );
    let err = resolve_sources_with(&ctx, &["nothere/./a".into()], &sel).unwrap_err();
    assert!(
        matches!(err, Error::SourceNotFound(ref p) if p == "/nothere"),
        "{err}"
    );
    let err = resolve_sources_with(&ctx, &["x/*.md".into()], &sel).unwrap_err();
    assert!(
        matches!(err, Error::NoSourceFiles(ref p) if p == "x/*.md"),
        "{err}"
    );
    let err = resolve_sources_with(&ctx, &["x/a.txt/./b".into()], &sel).unwrap_err();
    assert!(matches!(err, Error::NotADirectory(_)), "{err}");
    let err = resolve_sources_with(&ctx, &["../x/./a".into()], &sel).unwrap_err();
    assert!(matches!(err, Error::OutsideContext(_)), "{err}");
    let err = resolve_sources_with(&ctx, &["x/./../../a".into()], &sel).unwrap_err();
    assert!(matches!(err, Error::OutsideContext(_)), "{err}");
}

#[test]
fn excludes_see_the_kept_paths() {
    let e = env();
    files(
        &e.ctx,
        &["x/a.txt", "x/b.txt", "x/sub/c.txt", "y/a.txt", "p/q/r.txt"],
    );
    assert_eq!(
        parents(
            &e,
            &["x/b.txt", "x/sub", "y", "q/r.txt"],
            &["x", "y/a.txt", "p/./q/r.txt"],
            "/out/",
            "out"
        ),
        vec!["x/", "x/a.txt"]
    );
}

#[test]
fn a_directory_match_is_copied_whole() {
    let e = env();
    files(&e.ctx, &["a/b/c/d.txt", "a/b/e.txt", "a/f.txt"]);
    assert_eq!(
        parents(&e, &[], &["a/b"], "/out/", "out"),
        vec!["a/", "a/b/", "a/b/c/", "a/b/c/d.txt", "a/b/e.txt"]
    );
}
