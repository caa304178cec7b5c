#![allow(clippy::unwrap_used)]
//! Content digests as build-cache keys, and the digest cache.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::*;
use kiln_fileops::{
    ContentDigest, FileDigestCache, Root, SourceOptions, content_digest, resolve_sources,
    resolve_sources_with,
};

fn digest(root: &Root, pats: &[&str], cache: &mut FileDigestCache) -> ContentDigest {
    let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
    let m = resolve_sources(root, &pats).unwrap();
    content_digest(root, &m, cache).unwrap()
}

fn fresh(e: &Env, pats: &[&str]) -> String {
    digest(&e.ctx_root(), pats, &mut FileDigestCache::new()).digest
}

fn tree(e: &Env) {
    write(&e.ctx.join("app/main.py"), "print('hi')");
    write(&e.ctx.join("app/lib/util.py"), "x = 1");
    link("main.py", &e.ctx.join("app/link"));
    for f in ["app/main.py", "app/lib/util.py"] {
        age(&e.ctx.join(f));
    }
    // Let ctime (which aging itself bumps) leave the cache's racy window.
    std::thread::sleep(std::time::Duration::from_millis(150));
}

#[test]
fn digest_is_stable_and_formatted() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
    assert_eq!(a, fresh(&e, &["app"]));
}

#[test]
fn content_change_changes_digest() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    write(&e.ctx.join("app/lib/util.py"), "x = 2");
    assert_ne!(a, fresh(&e, &["app"]));
}

#[test]
fn mode_change_changes_digest() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    fs::set_permissions(e.ctx.join("app/main.py"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(a, fresh(&e, &["app"]));
}

#[test]
fn rename_changes_digest() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    fs::rename(
        e.ctx.join("app/lib/util.py"),
        e.ctx.join("app/lib/util2.py"),
    )
    .unwrap();
    assert_ne!(a, fresh(&e, &["app"]));
}

#[test]
fn symlink_target_change_changes_digest() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    fs::remove_file(e.ctx.join("app/link")).unwrap();
    link("lib/util.py", &e.ctx.join("app/link"));
    assert_ne!(a, fresh(&e, &["app"]));
}

#[test]
fn touch_does_not_change_digest() {
    let e = env();
    tree(&e);
    let a = fresh(&e, &["app"]);
    let f = fs::File::options()
        .write(true)
        .open(e.ctx.join("app/main.py"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    assert_eq!(a, fresh(&e, &["app"]));
}

#[test]
fn ignored_files_do_not_change_digest() {
    let e = env();
    tree(&e);
    let ig = |p: &str| p.ends_with(".log");
    let ctx = || {
        Root::open_context(&e.ctx)
            .unwrap()
            .with_ignore(Arc::new(ig))
    };
    let a = digest(&ctx(), &["app"], &mut FileDigestCache::new()).digest;
    write(&e.ctx.join("app/debug.log"), "noise");
    assert_eq!(
        a,
        digest(&ctx(), &["app"], &mut FileDigestCache::new()).digest
    );
}

#[test]
fn cache_avoids_rereading_unchanged_files() {
    let e = env();
    tree(&e);
    let ctx = e.ctx_root();
    let mut cache = FileDigestCache::new();
    let first = digest(&ctx, &["app"], &mut cache);
    assert_eq!(first.stats.files_hashed, 2);
    assert_eq!(first.stats.bytes_hashed, 16);
    let second = digest(&ctx, &["app"], &mut cache);
    assert_eq!(second.digest, first.digest);
    assert_eq!(
        (
            second.stats.files_hashed,
            second.stats.bytes_hashed,
            second.stats.cache_hits
        ),
        (0, 0, 2)
    );
    // A changed file is re-read, the other one is not.
    write(&e.ctx.join("app/main.py"), "print('bye')");
    let third = digest(&ctx, &["app"], &mut cache);
    assert_ne!(third.digest, first.digest);
    assert_eq!((third.stats.files_hashed, third.stats.cache_hits), (1, 1));
}

#[test]
fn just_written_files_are_not_cached() {
    let e = env();
    write(&e.ctx.join("new.txt"), "fresh");
    let ctx = e.ctx_root();
    let mut cache = FileDigestCache::new();
    digest(&ctx, &["new.txt"], &mut cache);
    assert!(
        cache.is_empty(),
        "a file written within the racy window must be re-read next time"
    );
}

#[test]
fn cache_survives_save_and_load() {
    let e = env();
    tree(&e);
    let ctx = e.ctx_root();
    let mut cache = FileDigestCache::new();
    let first = digest(&ctx, &["app"], &mut cache);
    let file = e.tmp.path().join("digests.json");
    cache.save(&file).unwrap();
    let mut loaded = FileDigestCache::load(&file).unwrap();
    assert_eq!(loaded.len(), 2);
    let again = digest(&ctx, &["app"], &mut loaded);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.stats.bytes_hashed, 0);
    assert!(
        FileDigestCache::load(&e.tmp.path().join("absent.json"))
            .unwrap()
            .is_empty()
    );
    fs::write(&file, "{not json").unwrap();
    let err = FileDigestCache::load(&file).unwrap_err();
    assert!(err.to_string().contains("digests.json"), "{err}");
}

#[test]
fn stage_digest_includes_owners() {
    let e = env();
    write(&e.stage.join("f"), "F");
    let stage = || Root::open_image(&e.stage).unwrap();
    let a = digest(&stage(), &["/f"], &mut FileDigestCache::new()).digest;
    std::os::unix::fs::chown(e.stage.join("f"), Some(1000), Some(1000)).unwrap();
    assert_ne!(
        a,
        digest(&stage(), &["/f"], &mut FileDigestCache::new()).digest
    );
}

fn digest_sel(root: &Root, pats: &[&str], sel: &SourceOptions) -> ContentDigest {
    let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
    let m = resolve_sources_with(root, &pats, sel).unwrap();
    content_digest(root, &m, &mut FileDigestCache::new()).unwrap()
}

#[test]
fn excluded_files_do_not_change_digest_and_are_not_read() {
    let e = env();
    tree(&e);
    write(&e.ctx.join("app/debug.log"), "noise");
    write(&e.ctx.join("app/node_modules/x.js"), "x");
    let sel = select(&["*.log", "node_modules"], false);
    let a = digest_sel(&e.ctx_root(), &["app"], &sel);
    assert_eq!(a.stats.files_hashed, 2, "only main.py and lib/util.py");
    write(&e.ctx.join("app/debug.log"), "other noise");
    write(&e.ctx.join("app/node_modules/x.js"), "changed");
    write(&e.ctx.join("app/node_modules/y.js"), "new");
    assert_eq!(a.digest, digest_sel(&e.ctx_root(), &["app"], &sel).digest);
    // Without the patterns the same edits are changes, and so is a kept file.
    let plain = SourceOptions::default();
    assert_ne!(a.digest, digest_sel(&e.ctx_root(), &["app"], &plain).digest);
    write(&e.ctx.join("app/main.py"), "print('changed')");
    assert_ne!(a.digest, digest_sel(&e.ctx_root(), &["app"], &sel).digest);
}

#[test]
fn excluded_wildcard_matches_do_not_change_digest() {
    let e = env();
    for f in ["a.txt", "b.txt", "c.md"] {
        write(&e.ctx.join(f), f);
    }
    let sel = select(&["*.md"], false);
    let a = digest_sel(&e.ctx_root(), &["*"], &sel).digest;
    write(&e.ctx.join("c.md"), "changed");
    assert_eq!(a, digest_sel(&e.ctx_root(), &["*"], &sel).digest);
    write(&e.ctx.join("b.txt"), "changed");
    assert_ne!(a, digest_sel(&e.ctx_root(), &["*"], &sel).digest);
}

#[test]
fn exceptions_keep_their_files_in_the_digest() {
    let e = env();
    tree(&e);
    write(&e.ctx.join("app/lib/other.py"), "o");
    let sel = select(&["lib", "!lib/util.py"], false);
    let a = digest_sel(&e.ctx_root(), &["app"], &sel).digest;
    write(&e.ctx.join("app/lib/other.py"), "changed");
    assert_eq!(a, digest_sel(&e.ctx_root(), &["app"], &sel).digest);
    write(&e.ctx.join("app/lib/util.py"), "x = 3");
    assert_ne!(a, digest_sel(&e.ctx_root(), &["app"], &sel).digest);
}

#[test]
fn parents_digest_covers_kept_paths_and_directories() {
    let e = env();
    write(&e.ctx.join("x/a.txt"), "a");
    let parents = select(&[], true);
    let plain = SourceOptions::default();
    let a = digest_sel(&e.ctx_root(), &["x/a.txt"], &parents).digest;
    let p = digest_sel(&e.ctx_root(), &["x/a.txt"], &plain).digest;
    assert_ne!(a, p, "the kept path is part of what is copied");
    // x is recreated from the source's x, so its mode is part of the key
    // with --parents only.
    fs::set_permissions(e.ctx.join("x"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(a, digest_sel(&e.ctx_root(), &["x/a.txt"], &parents).digest);
    assert_eq!(p, digest_sel(&e.ctx_root(), &["x/a.txt"], &plain).digest);
}
