//! The repository watcher against real repositories: RPMs built by
//! scripts/fixtures/rebuild-rpms.sh, metadata by createrepo_c, read from
//! the file system (file:// and plain paths) and over HTTP from a small
//! local server.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_hub::repowatch::{PollOutcome, PrimaryError, RepoError, RepoSnapshot, parse_repomd, poll};

/// The fixture's RPM directory (built once, cached).
fn fixture_rpms() -> &'static Path {
    static RPMS: OnceLock<PathBuf> = OnceLock::new();
    RPMS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = root.join("scripts/fixtures/rebuild-rpms.sh");
        let out = Command::new("bash").arg(&script).arg("-").output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(stdout.lines().last().unwrap().trim()).join("rpms")
    })
}

/// Copies `kiln-foo-1.0-1` style packages (`.noarch.rpm` added) into `dir`.
fn add_rpms(dir: &Path, nvrs: &[&str]) {
    for nvr in nvrs {
        let name = format!("{nvr}.noarch.rpm");
        std::fs::copy(fixture_rpms().join(&name), dir.join(&name)).unwrap();
    }
}

fn createrepo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("createrepo_c")
        .arg("--quiet")
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

fn createrepo_ok(dir: &Path, args: &[&str]) {
    let out = createrepo(dir, args);
    assert!(
        out.status.success(),
        "createrepo_c {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository of foo 1.0 (with foo-libs) and bar 1.0, under `root/repo`.
fn first_repo(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    add_rpms(
        &repo,
        &["kiln-foo-1.0-1", "kiln-foo-libs-1.0-1", "kiln-bar-1.0-1"],
    );
    createrepo_ok(&repo, &[]);
    repo
}

fn primary_path(repo: &Path) -> PathBuf {
    let md = parse_repomd(&std::fs::read(repo.join("repodata/repomd.xml")).unwrap()).unwrap();
    repo.join(md.primary.location)
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Serves `root` under `http://ADDR/mirror/`, as a static file server
/// would: 404 for what is not there.
async fn serve(root: &Path) -> String {
    async fn file(State(root): State<Arc<PathBuf>>, UrlPath(path): UrlPath<String>) -> Response {
        let Some(rel) = path.strip_prefix("mirror/") else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if rel.split('/').any(|s| s == "..") {
            return StatusCode::BAD_REQUEST.into_response();
        }
        match tokio::fs::read(root.join(rel)).await {
            Ok(bytes) => bytes.into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::get(file))
        .with_state(Arc::new(root.to_path_buf()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/mirror")
}

fn names(updates: &[kiln_hub::domain::rpmver::Nevra]) -> Vec<String> {
    updates.iter().map(ToString::to_string).collect()
}

/// Baseline, unchanged, an update of a package and its subpackage, then
/// unchanged again: the life of a watched repository.
async fn watch_a_repository(repo: &Path, baseurl: &str) {
    let http = http_client();

    let PollOutcome::Baseline(first) = poll(&http, baseurl, None).await.unwrap() else {
        panic!("the first look is a baseline")
    };
    let latest: Vec<(&str, &str)> = first
        .latest
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        latest,
        [
            ("kiln-bar.noarch", "1.0-1"),
            ("kiln-foo-libs.noarch", "1.0-1"),
            ("kiln-foo.noarch", "1.0-1"),
        ]
    );
    assert!(first.primary_checksum.starts_with("sha256:"), "{first:?}");
    let primary = std::fs::read(primary_path(repo)).unwrap();
    assert_eq!(
        first.primary_checksum,
        format!("sha256:{}", sha256_hex(&primary))
    );
    assert!(first.revision.is_some(), "{first:?}");

    assert_eq!(
        poll(&http, baseurl, Some(&first)).await.unwrap(),
        PollOutcome::Unchanged
    );

    add_rpms(repo, &["kiln-foo-1.1-1", "kiln-foo-libs-1.1-1"]);
    createrepo_ok(repo, &["--update"]);
    let PollOutcome::Changed { snapshot, updates } =
        poll(&http, baseurl, Some(&first)).await.unwrap()
    else {
        panic!("a new version is a change")
    };
    assert_eq!(
        names(&updates),
        ["kiln-foo-1.1-1.noarch", "kiln-foo-libs-1.1-1.noarch"]
    );
    assert_eq!(snapshot.latest["kiln-foo.noarch"], "1.1-1");
    assert_eq!(snapshot.latest["kiln-foo-libs.noarch"], "1.1-1");
    assert_eq!(snapshot.latest["kiln-bar.noarch"], "1.0-1");
    assert_ne!(snapshot.primary_checksum, first.primary_checksum);

    assert_eq!(
        poll(&http, baseurl, Some(&snapshot)).await.unwrap(),
        PollOutcome::Unchanged
    );
    // Regenerating the metadata for the same packages changes the file
    // but no version.
    std::fs::remove_dir_all(repo.join("repodata")).unwrap();
    createrepo_ok(repo, &["--general-compress-type=gz", "--revision=2"]);
    match poll(&http, baseurl, Some(&snapshot)).await.unwrap() {
        PollOutcome::Unchanged => {}
        PollOutcome::Changed {
            snapshot: again,
            updates,
        } => {
            assert!(updates.is_empty(), "{updates:?}");
            assert_eq!(again.latest, snapshot.latest);
            assert_eq!(again.revision.as_deref(), Some("2"));
        }
        other => panic!("{other:?}"),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn watches_a_repository_through_file_urls() {
    let dir = tempfile::tempdir().unwrap();
    let repo = first_repo(dir.path());
    let baseurl = format!("file://{}", repo.display());
    watch_a_repository(&repo, &baseurl).await;
}

#[tokio::test]
async fn watches_a_repository_through_a_plain_path() {
    let dir = tempfile::tempdir().unwrap();
    let repo = first_repo(dir.path());
    // A trailing slash, as .repo files often have.
    let baseurl = format!("{}/", repo.display());
    watch_a_repository(&repo, &baseurl).await;
}

#[tokio::test]
async fn watches_a_repository_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let repo = first_repo(dir.path());
    let baseurl = serve(&repo).await;
    watch_a_repository(&repo, &baseurl).await;
}

#[tokio::test]
async fn corrupt_primary_is_a_checksum_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = first_repo(dir.path());
    let primary = primary_path(&repo);
    let mut bytes = std::fs::read(&primary).unwrap();
    let expected = sha256_hex(&bytes);
    // Same length, other bytes: only the checksum can tell.
    for b in &mut bytes[10..] {
        *b ^= 0x5a;
    }
    std::fs::write(&primary, &bytes).unwrap();
    let actual = sha256_hex(&bytes);

    let http = http_client();
    for baseurl in [repo.display().to_string(), serve(&repo).await] {
        let err = poll(&http, &baseurl, None).await.unwrap_err();
        let RepoError::ChecksumMismatch {
            url,
            checksum_type,
            expected: e,
            actual: a,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (checksum_type.as_str(), e, a),
            ("sha256", &expected, &actual)
        );
        let file = primary.file_name().unwrap().to_str().unwrap();
        assert!(url.starts_with(&baseurl) && url.ends_with(file), "{url}");
        let message = err.to_string();
        assert!(
            message.contains(&expected) && message.contains(&actual) && message.contains(file),
            "{message}"
        );

        // Even against a previous snapshot: the checksum changed, so the
        // file is read, and refused.
        let previous = RepoSnapshot {
            primary_checksum: "sha256:0".to_string(),
            ..RepoSnapshot::default()
        };
        let err = poll(&http, &baseurl, Some(&previous)).await.unwrap_err();
        assert!(matches!(err, RepoError::ChecksumMismatch { .. }), "{err:?}");
    }

    // A longer file fails the size check first.
    bytes.push(0);
    std::fs::write(&primary, &bytes).unwrap();
    let err = poll(&http, &repo.display().to_string(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::SizeMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let http = http_client();

    let missing = dir.path().join("nothing-here");
    let err = poll(&http, &format!("file://{}", missing.display()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("file://{}/repodata/repomd.xml", missing.display())),
        "{message}"
    );

    // A directory of RPMs without metadata.
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    add_rpms(&bare, &["kiln-bar-1.0-1"]);
    let err = poll(&http, bare.to_str().unwrap(), None).await.unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");

    let baseurl = serve(&bare).await;
    let err = poll(&http, &baseurl, None).await.unwrap_err();
    let RepoError::Status { url, status } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(status.as_u16(), 404);
    assert_eq!(url, &format!("{baseurl}/repodata/repomd.xml"));
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    // Nobody listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = poll(&http, &format!("http://{addr}/repo"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Http { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("http://{addr}/repo/repodata/repomd.xml: ")),
        "{err}"
    );

    // Not a repository's base URL at all.
    let err = poll(&http, "relative/path", None).await.unwrap_err();
    assert!(matches!(err, RepoError::BaseUrl { .. }), "{err:?}");
}

/// zstd-compressed primary.xml: written by createrepo_c when it can (0.19
/// and later); an older one cannot, so the test then recompresses the
/// primary file itself and updates repomd.xml to match, as createrepo_c
/// would have written it.
#[tokio::test]
async fn reads_a_zstd_compressed_primary() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    add_rpms(
        &repo,
        &["kiln-foo-1.1-1", "kiln-foo-libs-1.1-1", "kiln-bar-1.0-1"],
    );
    let out = createrepo(&repo, &["--general-compress-type=zstd"]);
    if out.status.success() {
        assert!(primary_path(&repo).to_str().unwrap().ends_with(".zst"));
    } else {
        println!(
            "note: this createrepo_c cannot write zstd ({}); recompressing primary.xml by hand",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        createrepo_ok(&repo, &[]);
        recompress_primary_as_zstd(&repo);
    }

    let http = http_client();
    for baseurl in [repo.display().to_string(), serve(&repo).await] {
        let PollOutcome::Baseline(snapshot) = poll(&http, &baseurl, None).await.unwrap() else {
            panic!("baseline expected")
        };
        assert_eq!(snapshot.latest.len(), 3);
        assert_eq!(snapshot.latest["kiln-foo-libs.noarch"], "1.1-1");
    }
}

/// Replaces the gzip primary file by a zstd one and fixes repomd.xml's
/// location, checksum and size for it.
fn recompress_primary_as_zstd(repo: &Path) {
    let repomd_path = repo.join("repodata/repomd.xml");
    let repomd = std::fs::read_to_string(&repomd_path).unwrap();
    let md = parse_repomd(repomd.as_bytes()).unwrap();
    let old = repo.join(&md.primary.location);
    let gz = std::fs::read(&old).unwrap();
    let mut xml = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut xml).unwrap();
    let zst = zstd::stream::encode_all(&xml[..], 10).unwrap();
    let checksum = sha256_hex(&zst);
    let location = format!("repodata/{checksum}-primary.xml.zst");
    std::fs::write(repo.join(&location), &zst).unwrap();
    std::fs::remove_file(&old).unwrap();
    let old_size = format!("<size>{}</size>", md.primary.size.unwrap());
    assert_eq!(repomd.matches(&old_size).count(), 1, "{repomd}");
    let repomd = repomd
        .replace(&md.primary.location, &location)
        .replacen(
            &format!(">{}</checksum>", md.primary.checksum),
            &format!(">{checksum}</checksum>"),
            1,
        )
        .replace(&old_size, &format!("<size>{}</size>", zst.len()));
    std::fs::write(&repomd_path, repomd).unwrap();
}

#[tokio::test]
async fn xz_primary_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    add_rpms(&repo, &["kiln-bar-1.0-1"]);
    createrepo_ok(&repo, &["--general-compress-type=xz"]);
    let err = poll(&http_client(), repo.to_str().unwrap(), None)
        .await
        .unwrap_err();
    let RepoError::Primary { url, source } = &err else {
        panic!("{err:?}")
    };
    assert!(url.ends_with("-primary.xml.xz"), "{url}");
    assert!(
        matches!(source, PrimaryError::UnsupportedCompression { format, .. } if format == "xz"),
        "{source:?}"
    );
    assert!(
        err.to_string().contains("xz compression is not supported"),
        "{err}"
    );
}
