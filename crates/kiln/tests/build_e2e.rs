//! End-to-end tests of `kiln build`: every Dockerfile of `tests/corpus/` is
//! built by buildah (the reference) and by kiln, both push to a loopback
//! kiln registry, and the unpacked images, configs and manifest types must
//! agree (`common::buildcmp`); then the kiln image runs under podman and
//! must print what the Dockerfile makes it print.
//!
//! Until `kiln build` exists, the `kiln_*` tests are ignored and the
//! `selfcheck_*` tests compare buildah with a second buildah (fresh
//! storage): they prove the fixtures, the snapshot/diff code, the config
//! comparison and each case's checks work. Switching a case to kiln is
//! deleting its `#[ignore]` line.
//!
//! Needs root, the packages of `scripts/install-test-deps.sh`, and (once,
//! for `fedora_like_dnf_install`) the Debian mirror to build the dnf-base
//! fixture; fixtures are cached under `.cache/fixtures/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use common::buildcmp::{
    BuildEnv, BuildSpec, Builder, Comparison, FetchedImage, Format, Network, buildah_leftovers,
    cached_fixture, config_diff, generate_tree, prepare_corpus,
};
use common::process::wait_until;
use common::registry::free_port;
use common::rootfs::{self, Ignore, Kind, Snapshot, glob_match};
use common::{RegistryServer, RunExt, Scratch, Server, sha256_digest, unique_repo};

// ------------------------------------------------------------- the cases --

/// Copies corpus entry `name` into `dir`, adds what the test generates, and
/// returns the build spec.
fn setup(name: &str, env: &BuildEnv, dir: &Path) -> Result<BuildSpec> {
    let mut spec = prepare_corpus(name, dir)?;
    match name {
        "multistage" => spec.target = Some("app".into()),
        "bigcopy" => {
            generate_tree(&dir.join("gen"), 60, 1200, 5000)?;
            for (p, text) in [
                ("gen/keep/important.tmp", "kept by a ! exception\n"),
                ("gen/keep/dropped.tmp", "ignored\n"),
                ("scratch.tmp", "ignored\n"),
                ("secret.txt", "must not reach the image\n"),
                ("keep.txt", "keep me\n"),
            ] {
                common::process::write_file(&dir.join(p), text)?;
            }
        }
        "onbuild" => {
            spec.format = Format::Docker;
            let mut parent = BuildSpec::new("onbuild-parent", &dir.join("parent"));
            parent.format = Format::Docker;
            spec.parent = Some(Box::new(parent));
        }
        "mounts" => {
            let secret = env.scratch.join("secret-tok");
            fs::write(&secret, SECRET)?;
            spec.secrets.push(("tok".into(), secret));
        }
        "config" => {
            spec.format = Format::Docker;
            spec.build_args.push(("APP_NAME".into(), "demo".into()));
            spec.labels
                .push(("com.example.from-cli".into(), "yes".into()));
        }
        "addtar" => make_bundle(dir)?,
        _ => {}
    }
    Ok(spec)
}

const SECRET: &str = "s3cr3t-token-value";

/// `bundle.tar.gz`: a directory tree with an executable, a symlink and
/// files owned by 1000, made with tar at run time (no binary in git).
fn make_bundle(dir: &Path) -> Result<()> {
    let src = dir.join("bundle-src");
    common::process::write_file(&src.join("bundle/hello.txt"), "hello from the bundle\n")?;
    common::process::write_file(
        &src.join("bundle/bin/run.sh"),
        "#!/bin/sh\necho run.sh ran\n",
    )?;
    common::process::write_file(&src.join("bundle/sub/deep/file"), "deep\n")?;
    Command::new("chmod")
        .arg("0750")
        .arg(src.join("bundle/bin/run.sh"))
        .run_ok()?;
    std::os::unix::fs::symlink("hello.txt", src.join("bundle/link"))?;
    Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["--owner=1000", "--group=1000", "--numeric-owner", "-czf"])
        .arg(dir.join("bundle.tar.gz"))
        .arg("bundle")
        .run_ok()?;
    fs::remove_dir_all(&src)?;
    Ok(())
}

/// What the image of case `name` must print when run, and what must hold
/// of it beyond agreeing with the reference.
fn check(name: &str, env: &BuildEnv, spec: &BuildSpec, cmp: &Comparison) -> Result<()> {
    let img = &cmp.candidate;
    let snap = &img.snapshot;
    let expected_run = match name {
        "multistage" => {
            ensure_absent(img, "/test-stage")?;
            ensure_content(img, "/etc/one.out", "built in stage one\n")?;
            "built in stage one\napple\nbanana\ncherry\ntwo"
        }
        "runheavy" => {
            for gone in [
                "/bin/vi",
                "/bin/ed",
                "/root",
                "/opt/tree/a",
                "/opt/seq",
                "/opt/empty",
            ] {
                ensure_absent(img, gone)?;
            }
            ensure_entry(
                img,
                "/usr/local/bin/suid",
                |e| e.mode == 0o4755,
                "mode 4755",
            )?;
            ensure_entry(
                img,
                "/opt/shared",
                |e| e.mode == 0o2775 && e.uid == 1000,
                "2775 1000",
            )?;
            ensure_entry(img, "/opt/drop", |e| e.mode == 0o1777, "mode 1777")?;
            ensure_entry(img, "/opt/fifo", |e| e.kind == Kind::Fifo, "a fifo")?;
            ensure_entry(
                img,
                "/opt/dangling",
                |e| e.target.as_deref() == Some("/nonexistent"),
                "-> /nonexistent",
            )?;
            let group = snap
                .get("/opt/hard-to-lower")
                .and_then(|e| e.hardlink_group.clone());
            ensure!(
                group.is_some()
                    && group
                        == snap
                            .get("/opt/tree/renamed/b/c/file")
                            .and_then(|e| e.hardlink_group.clone()),
                "/opt/hard-to-lower and /opt/tree/renamed/b/c/file are not one hardlink group"
            );
            ensure_entry(
                img,
                "/opt/empty.hard",
                |e| e.hardlink_group.is_none(),
                "no hardlink partner left",
            )?;
            ensure_entry(img, "/opt/tree/d/new", |e| e.kind == Kind::File, "a file")?;
            ensure_absent(img, "/opt/tree/d/file")?;
            "fresh\none\nd\nrenamed"
        }
        "bigcopy" => {
            ensure_absent(img, "/data/all/secret.txt")?;
            ensure_absent(img, "/data/all/scratch.tmp")?;
            ensure_absent(img, "/data/all/gen/keep/dropped.tmp")?;
            ensure_absent(img, "/data/all/Dockerfile")?;
            let generated = snap
                .entries
                .keys()
                .filter(|p| p.starts_with("/data/gen/") && p.ends_with(".bin"))
                .count();
            ensure!(
                generated == 1200,
                "/data/gen holds {generated} generated files, expected 1200"
            );
            "keep me\n.\n..\ngen\nkeep.txt\nimportant.tmp"
        }
        "onbuild" => {
            let parent = env.fetch(&format!("{}-parent", img.image))?;
            let triggers = parent.container_config()["OnBuild"]
                .as_array()
                .map_or(0, Vec::len);
            ensure!(
                triggers == 2,
                "parent image has {triggers} ONBUILD triggers, expected 2: {}",
                parent.config
            );
            let child = &img.container_config()["OnBuild"];
            ensure!(
                child.is_null() || child.as_array().is_some_and(Vec::is_empty),
                "child image kept its parent's ONBUILD triggers: {child}"
            );
            "app text from the child context\nonbuild ran\nchild"
        }
        "heredoc" => {
            "hello from a heredoc\nline 0\nline 1\nline 2\ngreeting=hello\ngreeting=${GREETING}"
        }
        "mounts" => {
            let sha = sha256_digest(SECRET.as_bytes());
            ensure_content(
                img,
                "/secret.sha256",
                &format!("{}\n", sha.trim_start_matches("sha256:")),
            )?;
            ensure_content(img, "/secret.len", &format!("{}\n", SECRET.len()))?;
            for gone in [
                "/run/secrets/tok",
                "/etc/tok-at-target",
                "/var/cache/kiln-test/entry",
                "/scratch/t",
            ] {
                ensure_absent(img, gone)?;
            }
            "entry\nfrom the gen stage\nread through a bind mount of the context\nt"
        }
        "config" => {
            let c = img.container_config();
            ensure!(c["User"] == "app", "User {}", c["User"]);
            ensure!(
                c["WorkingDir"] == "/srv/demo/sub",
                "WorkingDir {}",
                c["WorkingDir"]
            );
            let env_vars: Vec<&str> = c["Env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for want in [
                "APP_HOME=/srv/demo",
                "APP_MODE=production",
                "GREETING=hello demo",
                "APP_VERSION_TAG=v1.0",
                "UNSET_DEFAULT=fallback",
            ] {
                ensure!(env_vars.contains(&want), "Env lacks {want}: {env_vars:?}");
            }
            ensure!(
                c["Labels"]["org.opencontainers.image.version"] == "1.0",
                "Labels {}",
                c["Labels"]
            );
            ensure!(
                c["Labels"]["com.example.from-cli"] == "yes",
                "Labels {}",
                c["Labels"]
            );
            ensure!(
                c["ExposedPorts"].as_object().map_or(0, |m| m.len()) == 3,
                "ExposedPorts {}",
                c["ExposedPorts"]
            );
            ensure!(
                c["Healthcheck"]["Test"][0] == "CMD",
                "Healthcheck {}",
                c["Healthcheck"]
            );
            ensure!(c["Shell"][1] == "-ec", "Shell {}", c["Shell"]);
            ensure_entry(
                img,
                "/srv/demo/sub/settings.conf",
                |e| e.mode == 0o640 && e.uid == 1000 && e.gid == 1000,
                "0640 app:app",
            )?;
            ensure_content(img, "/data/uid", "1000\n")?;
            ensure_content(img, "/tmp/mode", "production\n")?;
            "hello demo\nmode=test\nport=8080\napp"
        }
        "addtar" => {
            ensure_absent(img, "/opt/bundle.tar.gz")?;
            ensure_entry(
                img,
                "/opt/bundle/link",
                |e| e.target.as_deref() == Some("hello.txt"),
                "-> hello.txt",
            )?;
            ensure_entry(
                img,
                "/opt/bundle/bin/run.sh",
                |e| e.mode == 0o750,
                "mode 0750",
            )?;
            ensure_entry(
                img,
                "/opt/dir-dest/plain.txt",
                |e| e.kind == Kind::File,
                "a file",
            )?;
            ensure_entry(
                img,
                "/opt/owned.txt",
                |e| e.uid == 1000 && e.gid == 1000,
                "owned by app",
            )?;
            "hello from the bundle\na plain file, not an archive\nrun.sh ran"
        }
        other => anyhow::bail!("no checks for corpus entry {other}"),
    };
    let run = env.run(&img.image, spec.network, &[])?;
    ensure!(
        run.stdout.trim_end() == expected_run,
        "{name}: `podman run {}` printed {:?}, expected {expected_run:?}",
        img.image,
        run.stdout
    );
    Ok(())
}

fn ensure_absent(img: &FetchedImage, path: &str) -> Result<()> {
    ensure!(
        img.snapshot.get(path).is_none(),
        "{path} should not be in {}: {:?}",
        img.image,
        img.snapshot.get(path)
    );
    Ok(())
}

fn ensure_entry(
    img: &FetchedImage,
    path: &str,
    ok: impl Fn(&rootfs::Entry) -> bool,
    what: &str,
) -> Result<()> {
    let e = img
        .snapshot
        .get(path)
        .with_context(|| format!("{path} missing from {}", img.image))?;
    ensure!(ok(e), "{path} in {} is not {what}: {e:?}", img.image);
    Ok(())
}

fn ensure_content(img: &FetchedImage, path: &str, expected: &str) -> Result<()> {
    let p = img.rootfs.join(path.trim_start_matches('/'));
    let got = fs::read_to_string(&p).with_context(|| format!("{path} in {}", img.image))?;
    ensure!(
        got == expected,
        "{path} in {} holds {got:?}, expected {expected:?}",
        img.image
    );
    Ok(())
}

/// Builds corpus entry `name` with buildah and `candidate`, compares, checks.
fn run_case(name: &str, candidate: Builder) -> Result<()> {
    let env = BuildEnv::start()?;
    let base = env.push_busybox_base()?;
    let dir = env.scratch.mkdir(format!("context-{name}"))?;
    let spec = setup(name, &env, &dir)?;
    let cmp = env.compare(
        &spec,
        &base,
        &Builder::Buildah,
        &candidate,
        &buildah_leftovers(),
    )?;
    check(name, &env, &spec, &cmp)
}

// ------------------------------------------- kiln against buildah (next) --

#[test]
fn kiln_multistage() -> Result<()> {
    run_case("multistage", Builder::kiln())
}

#[test]
fn kiln_runheavy() -> Result<()> {
    run_case("runheavy", Builder::kiln())
}

#[test]
fn kiln_bigcopy() -> Result<()> {
    run_case("bigcopy", Builder::kiln())
}

#[test]
fn kiln_onbuild() -> Result<()> {
    run_case("onbuild", Builder::kiln())
}

#[test]
fn kiln_heredoc() -> Result<()> {
    run_case("heredoc", Builder::kiln())
}

#[test]
fn kiln_mounts() -> Result<()> {
    run_case("mounts", Builder::kiln())
}

#[test]
fn kiln_config() -> Result<()> {
    run_case("config", Builder::kiln())
}

#[test]
fn kiln_addtar() -> Result<()> {
    run_case("addtar", Builder::kiln())
}

#[test]
fn kiln_fedora_like_dnf_install() -> Result<()> {
    dnf_install(Builder::kiln())
}

// ---------------------------- harness self-checks: buildah against buildah --

/// The copying snapshotter (no overlayfs) must give the same images.
/// nextest runs every test in its own process, so the variable stays here.
fn with_copy_snapshotter() {
    // SAFETY: set before this test process starts any thread of its own.
    unsafe { std::env::set_var("KILN_BUILD_SNAPSHOTTER", "copy") };
}

#[test]
fn kiln_copy_snapshotter_runheavy() -> Result<()> {
    with_copy_snapshotter();
    run_case("runheavy", Builder::kiln())
}

#[test]
fn kiln_copy_snapshotter_mounts() -> Result<()> {
    with_copy_snapshotter();
    run_case("mounts", Builder::kiln())
}

#[test]
fn kiln_copy_snapshotter_multistage() -> Result<()> {
    with_copy_snapshotter();
    run_case("multistage", Builder::kiln())
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_multistage() -> Result<()> {
    run_case("multistage", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_runheavy() -> Result<()> {
    run_case("runheavy", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_bigcopy() -> Result<()> {
    run_case("bigcopy", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_onbuild() -> Result<()> {
    run_case("onbuild", Builder::Buildah)
}

/// buildah builds `Dockerfile.reference` on both sides: this checks the
/// reference Dockerfile and the expectations, not heredoc parsing.
#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_heredoc() -> Result<()> {
    run_case("heredoc", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_mounts() -> Result<()> {
    run_case("mounts", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_config() -> Result<()> {
    run_case("config", Builder::Buildah)
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn selfcheck_addtar() -> Result<()> {
    run_case("addtar", Builder::Buildah)
}

/// The comparison must fail when the images differ: the same corpus entry
/// built with a different build argument is caught in the filesystem and
/// the config.
#[test]
fn selfcheck_detects_differences() -> Result<()> {
    let env = BuildEnv::start()?;
    let base = env.push_busybox_base()?;
    let dir = env.scratch.mkdir("context-config")?;
    let spec = setup("config", &env, &dir)?;
    let mut other = spec.clone();
    other.build_args = vec![("APP_NAME".into(), "other".into())];
    let repo = unique_repo("differ");
    let (a, b) = (
        env.registry.image(&format!("{repo}-a"), "latest"),
        env.registry.image(&format!("{repo}-b"), "latest"),
    );
    env.build(&Builder::Buildah, &spec, &base, &a)?;
    env.build(&Builder::Buildah, &other, &base, &b)?;
    let (a, b) = (env.fetch(&a)?, env.fetch(&b)?);
    let d = rootfs::diff(
        "demo",
        &a.snapshot,
        "other",
        &b.snapshot,
        &buildah_leftovers(),
    );
    let report = d.to_string();
    eprintln!("{report}");
    ensure!(
        d.only_left
            .iter()
            .any(|p| p == "/srv/demo/sub/settings.conf")
            && d.only_right
                .iter()
                .any(|p| p == "/srv/other/sub/settings.conf"),
        "the diff misses the moved WORKDIR: {report}"
    );
    ensure!(
        d.changed.iter().any(|(p, _)| p == "/data/greeting"),
        "the diff misses /data/greeting: {report}"
    );
    let cfg = config_diff(&a.config, &b.config);
    ensure!(
        cfg.iter().any(|l| l.starts_with("Env:"))
            && cfg.iter().any(|l| l.starts_with("WorkingDir:")),
        "config_diff misses Env/WorkingDir: {cfg:?}"
    );
    Ok(())
}

// ------------------------------------------------------ Fedora-like base --

/// The RPM fixture repo served over HTTP on 127.0.0.1 by `python3 -m
/// http.server` (stopped when dropped).
struct RepoServer {
    _server: Server,
    port: u16,
}

impl RepoServer {
    fn start(dir: &Path, log: &Path) -> Result<Self> {
        let port = free_port()?;
        let mut server = Server::spawn(
            "rpm repo http",
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                .arg(dir)
                .arg(port.to_string()),
            log,
        )?;
        let url = format!("http://127.0.0.1:{port}/repodata/repomd.xml");
        wait_until(&mut server, Duration::from_secs(20), "serving", || {
            Ok(common::http::get(&url).send()?.status == 200)
        })?;
        Ok(Self {
            _server: server,
            port,
        })
    }
}

/// `FROM dnf-base` + a .repo file for the local RPM repo + `RUN dnf -y
/// install kiln-hello`: the package and its dependency must be installed
/// and recorded in the image's rpm database.
fn dnf_install(builder: Builder) -> Result<()> {
    let env = BuildEnv::start()?;
    let base = env.push_dnf_base()?;
    let repo = cached_fixture("rpm-repo.sh")?;
    let http = RepoServer::start(&repo.join("repo"), &env.scratch.join("http.log"))?;
    let dir = env.scratch.mkdir("context-dnf")?;
    let mut spec = prepare_corpus("dnf-install", &dir)?;
    spec.network = Network::Host;
    common::process::write_file(
        &dir.join("kiln-local.repo"),
        format!(
            "[kiln-local]\nname=kiln test packages\nbaseurl=http://127.0.0.1:{}/\n\
             enabled=1\ngpgcheck=0\n",
            http.port
        ),
    )?;
    let image = env.registry.image(&unique_repo("dnf"), "latest");
    env.build(&builder, &spec, &base, &image)?;
    drop(http);

    let run = env.run(&image, Network::None, &[])?;
    ensure!(
        run.stdout.trim() == "hello from kiln-hello",
        "kiln-hello printed {:?}",
        run.stdout
    );
    let qa = env.run(&image, Network::None, &["rpm", "-qa"])?;
    for pkg in ["kiln-hello-1.0-1.noarch", "kiln-data-1.0-1.noarch"] {
        ensure!(
            qa.stdout.lines().any(|l| l.trim() == pkg),
            "rpm -qa in {image} does not list {pkg}: {:?}",
            qa.stdout
        );
    }
    // Debian's rpm keeps its database in the home directory (see
    // scripts/fixtures/dnf-base-image.sh): content tracking must look there.
    env.run(
        &image,
        Network::None,
        &["test", "-s", "/root/.rpmdb/rpmdb.sqlite"],
    )?;
    Ok(())
}

#[test]
#[ignore = "harness self-check (buildah against buildah); run with --run-ignored"]
fn fedora_like_dnf_install() -> Result<()> {
    dnf_install(Builder::Buildah)
}

// ------------------------------------------ snapshot and diff, no builds --

#[test]
fn glob_patterns() {
    let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
    assert!(m("/etc/hosts", "/etc/hosts"));
    assert!(!m("/etc/hosts", "/etc/hosts2"));
    assert!(m("/run/**", "/run/secrets/tok"));
    assert!(!m("/run/**", "/run"));
    assert!(m("/var/**/*.log", "/var/log/a.log"));
    assert!(m("/var/**/*.log", "/var/a.log"));
    assert!(m("/tmp/*", "/tmp/x"));
    assert!(!m("/tmp/*", "/tmp/x/y"));
    assert!(m("/a?c", "/abc"));
    assert!(!m("/a?c", "/a/c"));
}

#[test]
fn snapshot_diff_reports_each_kind_of_difference() -> Result<()> {
    let scratch = Scratch::new("rootfs-diff")?;
    let (a, b) = (scratch.mkdir("a")?, scratch.mkdir("b")?);
    for root in [&a, &b] {
        fs::create_dir_all(root.join("etc"))?;
        fs::write(root.join("etc/same"), "same\n")?;
        fs::write(
            root.join("etc/content"),
            if root == &a { "one\n" } else { "two\n" },
        )?;
        fs::write(root.join("etc/mode"), "m\n")?;
        fs::write(root.join("etc/link-target"), "t\n")?;
        std::os::unix::fs::symlink(
            if root == &a { "link-target" } else { "same" },
            root.join("etc/link"),
        )?;
        fs::write(root.join("etc/h1"), "h\n")?;
        fs::write(root.join("etc/h2"), "h\n")?;
        fs::write(root.join("ignored"), if root == &a { "1" } else { "2" })?;
    }
    fs::write(a.join("only-a"), "")?;
    fs::create_dir(b.join("only-b"))?;
    Command::new("chmod")
        .arg("4755")
        .arg(b.join("etc/mode"))
        .run_ok()?;
    // a: h1 and h2 hardlinked; b: separate files with the same content
    fs::remove_file(a.join("etc/h2"))?;
    fs::hard_link(a.join("etc/h1"), a.join("etc/h2"))?;
    Command::new("setfattr")
        .args(["-n", "user.kiln", "-v", "x"])
        .arg(a.join("etc/same"))
        .run_ok()?;

    let (sa, sb) = (Snapshot::take(&a)?, Snapshot::take(&b)?);
    assert_eq!(
        sa.get("/etc/h2").unwrap().hardlink_group.as_deref(),
        Some("/etc/h1")
    );
    assert_eq!(sa.get("/").unwrap().kind, Kind::Dir);
    let d = rootfs::diff("a", &sa, "b", &sb, &Ignore::new(["/ignored"]));
    let report = d.to_string();
    eprintln!("{report}");
    assert_eq!(d.only_left, vec!["/only-a".to_owned()]);
    assert_eq!(d.only_right, vec!["/only-b".to_owned()]);
    let changed: Vec<(&str, Vec<&str>)> = d
        .changed
        .iter()
        .map(|(p, f)| (p.as_str(), f.iter().map(|f| f.field).collect()))
        .collect();
    assert_eq!(
        changed,
        vec![
            ("/etc/content", vec!["sha256"]),
            ("/etc/h1", vec!["hardlinked with"]),
            ("/etc/h2", vec!["hardlinked with"]),
            ("/etc/link", vec!["size", "target"]),
            ("/etc/mode", vec!["mode"]),
            ("/etc/same", vec!["xattrs"]),
        ]
    );
    assert!(report.contains("/etc/mode: mode 0644 | 4755"), "{report}");

    // identical trees (mtimes aside) are equal
    let c = scratch.mkdir("c")?;
    Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", b.display()))
        .arg(&c)
        .run_ok()?;
    Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(c.join("etc/same"))
        .run_ok()?;
    let d = rootfs::diff("b", &sb, "c", &Snapshot::take(&c)?, &Ignore::default());
    assert!(d.is_empty(), "{d}");
    Ok(())
}

#[test]
fn diff_report_is_bounded() -> Result<()> {
    let scratch = Scratch::new("rootfs-bounded")?;
    let (a, b) = (scratch.mkdir("a")?, scratch.mkdir("b")?);
    for i in 0..500 {
        fs::write(a.join(format!("f{i:03}")), "x")?;
    }
    let d = rootfs::diff(
        "a",
        &Snapshot::take(&a)?,
        "b",
        &Snapshot::take(&b)?,
        &Ignore::default(),
    );
    assert_eq!(d.count(), 500);
    let report = d.to_string();
    assert!(report.lines().count() < 60, "{report}");
    assert!(report.contains("... and 460 more"), "{report}");
    Ok(())
}
