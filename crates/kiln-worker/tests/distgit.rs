//! dist-git against real repositories: the fixture from
//! scripts/fixtures/distgit-repo.sh, read in place, through file:// and
//! over smart HTTP (`git http-backend` on 127.0.0.1).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Fixture, GitHttpServer, git};
use kiln_worker::distgit::{self, Error};

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn local_path_resolves_branches_tags_and_commit_ids() {
    let fx = Fixture::new();
    let url = s(&fx.work());
    let main = fx.commit("main");
    assert_eq!(distgit::resolve(&url, None).unwrap(), main);
    assert_eq!(distgit::resolve(&url, Some("HEAD")).unwrap(), main);
    assert_eq!(distgit::resolve(&url, Some("main")).unwrap(), main);
    assert_eq!(
        distgit::resolve(&url, Some("f40")).unwrap(),
        fx.commit("f40")
    );
    assert_eq!(
        distgit::resolve(&url, Some("refs/heads/f40")).unwrap(),
        fx.commit("f40")
    );
    // Lightweight and annotated tags; the annotated one peels to its commit.
    assert_eq!(distgit::resolve(&url, Some("v1")).unwrap(), fx.commit("v1"));
    assert_eq!(distgit::resolve(&url, Some("v2")).unwrap(), fx.commit("v2"));
    let older = fx.commit("main~1");
    assert_eq!(distgit::resolve(&url, Some(older)).unwrap(), older);
    assert_eq!(distgit::resolve(&url, Some(&older[..10])).unwrap(), older);
}

#[test]
fn unknown_ref_names_the_branches() {
    let fx = Fixture::new();
    let url = s(&fx.work());
    let err = distgit::resolve(&url, Some("nosuch")).unwrap_err();
    assert!(matches!(err, Error::RefNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(r#"ref "nosuch" not found in {url}; branches: f40, main"#)
    );
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = distgit::resolve(&url, Some(missing)).unwrap_err();
    assert!(matches!(err, Error::CommitNotFound { .. }), "{err:?}");
    let dest = fx.dir.path().join("out");
    let err = distgit::checkout(&url, Some("nosuch"), &dest).unwrap_err();
    assert!(matches!(err, Error::RefNotFound { .. }), "{err:?}");
}

fn assert_main_tree(dest: &Path) {
    assert!(
        !dest.join(".git").exists(),
        "the checkout must not hold .git"
    );
    let df = fs::read_to_string(dest.join("Dockerfile")).unwrap();
    assert!(df.contains("LABEL release=\"2\""), "{df}");
    assert!(dest.join("container.yaml").is_file());
    let mode = fs::metadata(dest.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let mode = fs::metadata(dest.join("Dockerfile"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(
        fs::read_link(dest.join("link")).unwrap(),
        Path::new("docs/README")
    );
    assert_eq!(
        fs::read_to_string(dest.join("link")).unwrap(),
        "docs for hello\n"
    );
    // Files carry the commit time (2024-01-04T00:00:00Z).
    let mtime = fs::metadata(dest.join("Dockerfile"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_326_400)
    );
}

#[test]
fn checkout_writes_a_plain_tree() {
    let fx = Fixture::new();
    let dest = fx.dir.path().join("ctx");
    let co = distgit::checkout(&s(&fx.work()), None, &dest).unwrap();
    assert_eq!(co.commit, fx.commit("main"));
    assert_eq!(co.dest, dest);
    assert!(co.submodules.is_empty());
    assert_main_tree(&dest);
    // The tree is exactly the commit's: same file list as git's.
    let mut listed: Vec<String> = git(&fx.work(), &["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    let mut found = Vec::new();
    for e in walk(&dest) {
        found.push(e.strip_prefix(&dest).unwrap().display().to_string());
    }
    found.sort();
    assert_eq!(found, listed);

    // A second checkout into the same, now full, directory is refused.
    let err = distgit::checkout(&s(&fx.work()), None, &dest).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn file_url_of_a_bare_repository_at_a_tag() {
    let fx = Fixture::new();
    let url = format!("file://{}", fx.bare().display());
    let (parsed, reference) = distgit::parse_source(&format!("{url}#v1")).unwrap();
    assert_eq!(parsed, url);
    let dest = fx.dir.path().join("ctx");
    let co = distgit::checkout(&parsed, reference.as_deref(), &dest).unwrap();
    assert_eq!(co.commit, fx.commit("v1"));
    let df = fs::read_to_string(dest.join("Dockerfile")).unwrap();
    assert!(!df.contains("release"), "{df}");
    assert!(!dest.join("run.sh").exists());
    // The checked-out commit id also works as the ref.
    let dest2 = fx.dir.path().join("ctx2");
    let co2 = distgit::checkout(&parsed, Some(fx.commit("f40")), &dest2).unwrap();
    assert_eq!(co2.commit, fx.commit("f40"));
    assert!(
        fs::read_to_string(dest2.join("Dockerfile"))
            .unwrap()
            .contains("AS build")
    );
}

#[test]
fn not_a_repository_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let err = distgit::resolve(&s(dir.path()), None).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");
    let missing = dir.path().join("nope");
    let err = distgit::resolve(&s(&missing), None).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&s(&missing)), "{err}");
}

#[test]
fn empty_repository_has_nothing_to_build() {
    let dir = tempfile::tempdir().unwrap();
    git(
        dir.path(),
        &["-c", "init.defaultBranch=main", "init", "-q", "."],
    );
    let err = distgit::resolve(&s(dir.path()), None).unwrap_err();
    assert!(matches!(err, Error::EmptyRepository { .. }), "{err:?}");
}

#[test]
fn http_resolve_and_checkout() {
    let fx = Fixture::new();
    let server = GitHttpServer::start(fx.dir.path().join("fx").as_path());
    let url = server.url("bare.git");

    assert_eq!(distgit::resolve(&url, None).unwrap(), fx.commit("main"));
    assert_eq!(
        distgit::resolve(&url, Some("f40")).unwrap(),
        fx.commit("f40")
    );
    assert_eq!(distgit::resolve(&url, Some("v2")).unwrap(), fx.commit("v2"));
    // A commit no ref points at: found after fetching the history.
    let older = fx.commit("main~1");
    assert_eq!(distgit::resolve(&url, Some(older)).unwrap(), older);
    let err = distgit::resolve(&url, Some("nosuch")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(r#"ref "nosuch" not found in {url}; branches: f40, main"#)
    );

    let dest = fx.dir.path().join("ctx");
    let co = distgit::checkout(&url, Some(fx.commit("main")), &dest).unwrap();
    assert_eq!(co.commit, fx.commit("main"));
    assert_main_tree(&dest);

    let dest = fx.dir.path().join("ctx-f40");
    let co = distgit::checkout(&url, Some("f40"), &dest).unwrap();
    assert_eq!(co.commit, fx.commit("f40"));
}

#[test]
fn http_errors_are_typed() {
    let fx = Fixture::new();
    let server = GitHttpServer::start(fx.dir.path().join("fx").as_path());
    let err = distgit::resolve(&server.url("nosuch.git"), None).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/repo.git");
    let err = distgit::resolve(&url, None).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("cannot reach {url}")),
        "{err}"
    );
}

#[test]
fn local_checkout_info_of_a_clean_and_a_dirty_checkout() {
    let fx = Fixture::new();
    let work = fx.work();
    let info = distgit::local_checkout_info(&work).unwrap();
    assert_eq!(info.commit, fx.commit("main"));
    assert_eq!(info.branch.as_deref(), Some("main"));
    assert!(!info.dirty);
    let canonical = fs::canonicalize(&work).unwrap();
    assert_eq!(info.url, format!("file://{}", canonical.display()));
    assert_eq!(info.workdir, canonical);
    // From a subdirectory, like git.
    let sub = distgit::local_checkout_info(&work.join("docs")).unwrap();
    assert_eq!(sub.workdir, canonical);

    // An untracked file does not change what gets built.
    fs::write(work.join("notes.txt"), "x").unwrap();
    assert!(!distgit::local_checkout_info(&work).unwrap().dirty);

    // A modified tracked file does, staged or not.
    fs::write(work.join("Dockerfile"), "FROM scratch\n").unwrap();
    assert!(distgit::local_checkout_info(&work).unwrap().dirty);
    git(&work, &["add", "Dockerfile"]);
    assert!(distgit::local_checkout_info(&work).unwrap().dirty);
    git(&work, &["reset", "-q", "--hard"]);
    assert!(!distgit::local_checkout_info(&work).unwrap().dirty);

    // A deleted file and a changed executable bit count too.
    fs::remove_file(work.join("docs/README")).unwrap();
    assert!(distgit::local_checkout_info(&work).unwrap().dirty);
    git(&work, &["checkout", "-q", "--", "docs/README"]);
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o644)).unwrap();
    assert!(distgit::local_checkout_info(&work).unwrap().dirty);
}

#[test]
fn local_checkout_info_uses_the_origin_remote() {
    let fx = Fixture::new();
    let clone = fx.dir.path().join("clone");
    git(fx.dir.path(), &["clone", "-q", &s(&fx.bare()), &s(&clone)]);
    git(&clone, &["checkout", "-q", "f40"]);
    let info = distgit::local_checkout_info(&clone).unwrap();
    assert_eq!(info.url, s(&fx.bare()));
    assert_eq!(info.commit, fx.commit("f40"));
    assert_eq!(info.branch.as_deref(), Some("f40"));
    assert!(!info.dirty);

    // What the CLI sends is fetchable as is.
    assert_eq!(
        distgit::resolve(&info.url, Some(&info.commit)).unwrap(),
        info.commit
    );

    let plain = tempfile::tempdir().unwrap();
    let err = distgit::local_checkout_info(plain.path()).unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err:?}");
}

#[test]
fn a_failed_checkout_leaves_no_destination() {
    let fx = Fixture::new();
    let server = GitHttpServer::start(fx.dir.path().join("fx").as_path());
    for url in [s(&fx.work()), server.url("bare.git")] {
        let dest = fx.dir.path().join("never");
        let err = distgit::checkout(&url, Some("nosuch"), &dest).unwrap_err();
        assert!(matches!(err, Error::RefNotFound { .. }), "{err:?}");
        assert!(!dest.exists(), "{url}");
    }
}
