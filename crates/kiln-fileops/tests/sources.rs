#![allow(clippy::unwrap_used)]
//! Source patterns: globs, .dockerignore, escapes and error messages.

mod common;

use std::sync::Arc;

use common::*;
use kiln_fileops::{Error, Root, resolve_sources};

fn paths(root: &Root, pats: &[&str]) -> Result<Vec<String>, Error> {
    let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
    Ok(resolve_sources(root, &pats)?
        .into_iter()
        .map(|m| m.path)
        .collect())
}

#[test]
fn globs_match_per_component_and_are_sorted() {
    let e = env();
    for f in [
        "b.txt",
        "a.txt",
        "c.md",
        "sub/x.txt",
        "sub/y.txt",
        "other/x.txt",
        "a*b",
    ] {
        write(&e.ctx.join(f), f);
    }
    let ctx = e.ctx_root();
    assert_eq!(paths(&ctx, &["*.txt"]).unwrap(), vec!["/a.txt", "/b.txt"]);
    assert_eq!(
        paths(&ctx, &["/*/x.txt"]).unwrap(),
        vec!["/other/x.txt", "/sub/x.txt"]
    );
    assert_eq!(
        paths(&ctx, &["[ab].txt"]).unwrap(),
        vec!["/a.txt", "/b.txt"]
    );
    assert_eq!(paths(&ctx, &["[^a].txt"]).unwrap(), vec!["/b.txt"]);
    assert_eq!(paths(&ctx, &["?.md"]).unwrap(), vec!["/c.md"]);
    assert_eq!(paths(&ctx, &["a\\*b"]).unwrap(), vec!["/a*b"]);
    assert_eq!(
        paths(&ctx, &["sub/*"]).unwrap(),
        vec!["/sub/x.txt", "/sub/y.txt"]
    );
}

#[test]
fn a_glob_matching_a_directory_does_not_descend() {
    let e = env();
    write(&e.ctx.join("dir1/f"), "1");
    write(&e.ctx.join("dir2/g"), "2");
    let ctx = e.ctx_root();
    let m = resolve_sources(&ctx, &["dir*".to_string()]).unwrap();
    assert_eq!(
        m.iter()
            .map(|m| (m.path.as_str(), m.is_dir))
            .collect::<Vec<_>>(),
        vec![("/dir1", true), ("/dir2", true)]
    );
}

#[test]
fn glob_without_match_is_an_error() {
    let e = env();
    write(&e.ctx.join("a.txt"), "a");
    let err = paths(&e.ctx_root(), &["*.nothing"]).unwrap_err();
    assert!(matches!(err, Error::NoSourceFiles(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("no source files were specified")
    );
    let err = paths(&e.ctx_root(), &["missing/*.txt"]).unwrap_err();
    assert!(matches!(err, Error::NoSourceFiles(_)), "{err}");
}

#[test]
fn malformed_glob_is_an_error() {
    let e = env();
    let err = paths(&e.ctx_root(), &["[a-"]).unwrap_err();
    assert!(matches!(err, Error::BadPattern(_)), "{err}");
}

#[test]
fn missing_plain_path_names_the_path() {
    let e = env();
    let err = paths(&e.ctx_root(), &["missing.txt"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to compute cache key: \"/missing.txt\": not found"
    );
    let err = paths(&e.ctx_root(), &["no/such/dir/file"]).unwrap_err();
    assert!(
        matches!(err, Error::SourceNotFound(ref p) if p == "/no/such/dir/file"),
        "{err}"
    );
}

#[test]
fn paths_escaping_the_context_are_forbidden() {
    let e = env();
    write(&e.ctx.join("x"), "x");
    for p in ["../x", "/../x", "a/../../x"] {
        let err = paths(&e.ctx_root(), &[p]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("forbidden path outside the build context: {p}")
        );
    }
    assert_eq!(paths(&e.ctx_root(), &["a/../x"]).unwrap(), vec!["/x"]);
    assert_eq!(paths(&e.ctx_root(), &["/x"]).unwrap(), vec!["/x"]);
}

#[test]
fn dockerignored_files_are_invisible() {
    let e = env();
    write(&e.ctx.join("keep.txt"), "k");
    write(&e.ctx.join("secret.txt"), "s");
    write(&e.ctx.join("build/out.txt"), "o");
    let ig = |p: &str| p == "secret.txt" || p == "build" || p.starts_with("build/");
    let ctx = Root::open_context(&e.ctx)
        .unwrap()
        .with_ignore(Arc::new(ig));
    assert_eq!(paths(&ctx, &["*.txt"]).unwrap(), vec!["/keep.txt"]);
    assert!(matches!(
        paths(&ctx, &["secret.txt"]),
        Err(Error::SourceNotFound(_))
    ));
    assert!(matches!(
        paths(&ctx, &["build/out.txt"]),
        Err(Error::SourceNotFound(_))
    ));
    assert!(matches!(
        paths(&ctx, &["build/*"]),
        Err(Error::NoSourceFiles(_))
    ));
}

#[test]
fn symlink_to_an_ignored_file_is_not_found() {
    let e = env();
    write(&e.ctx.join("secret.txt"), "s");
    link("secret.txt", &e.ctx.join("innocent"));
    let ig = |p: &str| p == "secret.txt";
    let ctx = Root::open_context(&e.ctx)
        .unwrap()
        .with_ignore(Arc::new(ig));
    assert!(matches!(
        paths(&ctx, &["innocent"]),
        Err(Error::SourceNotFound(_))
    ));
}

#[test]
fn dangling_matched_symlink_is_not_found() {
    let e = env();
    link("nowhere", &e.ctx.join("dangling"));
    let err = paths(&e.ctx_root(), &["dangl*"]).unwrap_err();
    assert!(
        matches!(err, Error::SourceNotFound(ref p) if p == "/dangling"),
        "{err}"
    );
}
