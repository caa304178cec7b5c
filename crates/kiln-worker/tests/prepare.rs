//! Preparing dist-git trees: labels and parent from the final stage,
//! the generated Dockerfile with automatic labels and the buildinfo copy,
//! `.repo` files for RUN mounts.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use kiln_dockerfile::{Command, DockerIgnore, Dockerfile};
use kiln_worker::distgit;
use kiln_worker::prepare::{self, Error, InjectOptions, RepoSpec, Vcs};

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn no_args() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn opts() -> InjectOptions {
    InjectOptions {
        build_date: "2024-05-01T12:00:00".into(),
        architecture: "x86_64".into(),
        vcs: Some(Vcs {
            url: "https://src.example/containers/hello".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        }),
        release: None,
        extra_labels: BTreeMap::new(),
    }
}

#[test]
fn dist_git_branch_with_arg_driven_from() {
    let fx = common::Fixture::new();
    let ctx = fx.dir.path().join("ctx");
    distgit::checkout(&fx.work().display().to_string(), Some("f40"), &ctx).unwrap();

    let p = prepare::prepare(&ctx, &no_args()).unwrap();
    assert_eq!(p.identity.component, "hello-container");
    assert_eq!(p.identity.name, "kiln/hello");
    // `ARG BASE_TAG` in the final stage takes the meta ARG's default.
    assert_eq!(p.identity.version, "40.1");
    assert_eq!(p.identity.release, None);
    assert_eq!(p.parent.as_deref(), Some("registry.example/base:40"));
    assert_eq!(p.dockerfile_path, ctx.join("Dockerfile"));
    assert!(p.container_yaml.as_deref().unwrap().contains("x86_64"));

    // Build args override the defaults, in FROM and in labels.
    let args = BTreeMap::from([("BASE_TAG".to_string(), "41".to_string())]);
    let p = prepare::prepare(&ctx, &args).unwrap();
    assert_eq!(p.identity.version, "41.1");
    assert_eq!(p.parent.as_deref(), Some("registry.example/base:41"));
}

#[test]
fn final_stage_inherits_labels_and_env_from_the_stage_it_is_built_from() {
    let dir = tree(&[(
        "Containerfile",
        "ARG REGISTRY=quay.example\n\
         ARG FEDORA=40\n\
         FROM $REGISTRY/fedora:$FEDORA AS base\n\
         ENV APP_VERSION=2.5\n\
         LABEL com.redhat.component=app-container name=app/app\n\
         FROM golang:1.22 AS build\n\
         LABEL version=wrong name=wrong\n\
         FROM base\n\
         ARG REL=7\n\
         LABEL version=\"${APP_VERSION}\" release=$REL\n",
    )]);
    let p = prepare::prepare(dir.path(), &no_args()).unwrap();
    assert_eq!(p.dockerfile_path, dir.path().join("Containerfile"));
    assert_eq!(p.parent.as_deref(), Some("quay.example/fedora:40"));
    assert_eq!(p.identity.component, "app-container");
    assert_eq!(p.identity.name, "app/app");
    assert_eq!(p.identity.version, "2.5");
    assert_eq!(p.identity.release.as_deref(), Some("7"));
    assert_eq!(p.container_yaml, None);
    // The unrelated build stage's labels are not the image's.
    assert_eq!(p.labels.get("name").map(String::as_str), Some("app/app"));
}

#[test]
fn scratch_has_no_parent_and_old_label_names_count() {
    let dir = tree(&[(
        "Dockerfile",
        "FROM scratch\nLABEL BZComponent=tiny Name=tiny Version=1 Release=3\n",
    )]);
    let p = prepare::prepare(dir.path(), &no_args()).unwrap();
    assert_eq!(p.parent, None);
    assert_eq!(p.identity.component, "tiny");
    assert_eq!(p.identity.release.as_deref(), Some("3"));
}

#[test]
fn missing_labels_are_listed() {
    let dir = tree(&[(
        "Dockerfile",
        "FROM fedora:40\nLABEL name=foo\nLABEL version=\"\"\n",
    )]);
    let err = prepare::prepare(dir.path(), &no_args()).unwrap_err();
    match &err {
        Error::MissingLabels { missing, .. } => {
            assert_eq!(missing, &["com.redhat.component (or component)", "version"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().ends_with(
            "Dockerfile: required labels missing from the final stage: \
             com.redhat.component (or component), version"
        ),
        "{err}"
    );
    // A label set only in a stage the final one does not build FROM does
    // not count.
    let dir = tree(&[(
        "Dockerfile",
        "FROM a AS one\nLABEL component=c name=n version=1\nFROM b\nLABEL name=n\n",
    )]);
    let err = prepare::prepare(dir.path(), &no_args()).unwrap_err();
    assert!(
        matches!(err, Error::MissingLabels { ref missing, .. } if missing.len() == 2),
        "{err}"
    );
}

#[test]
fn broken_or_absent_dockerfile() {
    let dir = tree(&[("README", "no dockerfile")]);
    assert!(matches!(
        prepare::prepare(dir.path(), &no_args()),
        Err(Error::NoDockerfile { .. })
    ));
    let dir = tree(&[("Dockerfile", "FROM a\nCOPY --from= x y\nFROM $UNSET_BASE\n")]);
    let err = prepare::prepare(dir.path(), &no_args()).unwrap_err();
    assert!(matches!(err, Error::Dockerfile { .. }), "{err:?}");
    assert!(err.to_string().contains("Dockerfile:"), "{err}");
}

const MULTI: &str = "ARG BASE=registry.example/base:1\n\
FROM registry.example/builder:1 AS build\n\
RUN make\n\
FROM $BASE\n\
LABEL com.redhat.component=\"hello-container\" name=\"kiln/hello\" version=\"1.0\" architecture=\"x86_64\"\n\
COPY --from=build /out /app\n\
CMD [\"/app\"]";

#[test]
fn inject_appends_labels_and_the_buildinfo_copy_to_the_final_stage() {
    let ctx_parent = tempfile::tempdir().unwrap();
    let ctx = ctx_parent.path().join("src");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), MULTI).unwrap();
    let out = ctx_parent.path().join("out");

    let p = prepare::prepare(&ctx, &no_args()).unwrap();
    let mut o = opts();
    o.release = Some("3".into());
    o.extra_labels
        .insert("vendor".into(), "Kiln $project".into());
    let inj = prepare::inject(&p, &ctx, &out, &o).unwrap();

    assert_eq!(inj.nvr, "kiln-hello-1.0-3");
    assert_eq!(
        inj.buildinfo_path,
        "/root/buildinfo/Dockerfile-kiln-hello-1.0-3"
    );
    assert_eq!(inj.buildinfo_file, ctx.join("Dockerfile-kiln-hello-1.0-3"));
    assert_eq!(inj.dockerfile, out.join("Dockerfile.kiln"));
    // architecture is already right in the Dockerfile: not repeated; the
    // NVR labels are left alone.
    let keys: Vec<&str> = inj.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "vendor",
            "release",
            "build-date",
            "vcs-type",
            "vcs-url",
            "vcs-ref"
        ]
    );

    // The checked-out Dockerfile is untouched.
    assert_eq!(fs::read_to_string(ctx.join("Dockerfile")).unwrap(), MULTI);

    let generated = fs::read_to_string(&inj.dockerfile).unwrap();
    assert!(generated.starts_with(MULTI), "{generated}");
    let df = Dockerfile::parse(&generated).unwrap();
    assert_eq!(df.stages.len(), 2);
    let last = &df.stages[1].instructions;
    let n = last.len();
    match &last[n - 2].command {
        Command::Add(add) => {
            assert_eq!(add.sources.paths, ["Dockerfile-kiln-hello-1.0-3"]);
            assert_eq!(
                add.sources.dest,
                "/root/buildinfo/Dockerfile-kiln-hello-1.0-3"
            );
        }
        other => panic!("{other:?}"),
    }
    let label = last[n - 1]
        .expand(&|_| Some("EXPANDED".into()), df.escape)
        .unwrap();
    let Command::Label(kvs) = label.command else {
        panic!("{label:?}")
    };
    let got: Vec<(String, String)> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(got, inj.labels);
    assert!(got.contains(&("vendor".into(), "Kiln $project".into())));
    assert!(got.contains(&("release".into(), "3".into())));

    // The buildinfo copy is the Dockerfile with the labels, without the ADD.
    let copy = fs::read_to_string(&inj.buildinfo_file).unwrap();
    let label_line = generated.lines().last().unwrap();
    assert_eq!(copy, format!("{MULTI}\n\n{label_line}\n"));

    // Building the generated file gives the image these labels.
    let again = tree(&[("Dockerfile", &generated)]);
    let q = prepare::prepare(again.path(), &no_args()).unwrap();
    assert_eq!(
        q.labels["vcs-ref"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(q.labels["build-date"], "2024-05-01T12:00:00");
    assert_eq!(q.identity.release.as_deref(), Some("3"));
    assert_eq!(q.identity.name, "kiln/hello");
}

#[test]
fn inject_needs_a_release_and_an_output_outside_the_context() {
    let ctx = tree(&[("Dockerfile", MULTI)]);
    let out = tempfile::tempdir().unwrap();
    let p = prepare::prepare(ctx.path(), &no_args()).unwrap();
    let err = prepare::inject(&p, ctx.path(), out.path(), &opts()).unwrap_err();
    assert!(matches!(err, Error::MissingRelease { .. }), "{err:?}");

    let mut o = opts();
    o.release = Some("1".into());
    let err = prepare::inject(&p, ctx.path(), &ctx.path().join("gen"), &o).unwrap_err();
    assert!(matches!(err, Error::OutputInContext { .. }), "{err:?}");
}

#[test]
fn release_from_the_dockerfile_is_not_repeated() {
    let fx = common::Fixture::new();
    let ctx = fx.dir.path().join("ctx");
    let co = distgit::checkout(&fx.work().display().to_string(), Some("main"), &ctx).unwrap();
    let p = prepare::prepare(&ctx, &no_args()).unwrap();
    assert_eq!(p.identity.release.as_deref(), Some("2"));
    let mut o = opts();
    o.vcs = Some(Vcs {
        url: fx.work().display().to_string(),
        commit: co.commit.clone(),
    });
    let inj = prepare::inject(&p, &ctx, &fx.dir.path().join("out"), &o).unwrap();
    assert_eq!(inj.nvr, "kiln-hello-1.0-2");
    assert!(
        inj.labels.iter().all(|(k, _)| k != "release"),
        "{:?}",
        inj.labels
    );
    assert!(inj.labels.contains(&("vcs-ref".into(), co.commit)));
    assert!(
        inj.labels
            .contains(&("architecture".into(), "x86_64".into()))
    );
}

#[test]
fn a_trailing_continuation_is_refused_rather_than_mangled() {
    let ctx = tree(&[(
        "Dockerfile",
        "FROM x\nLABEL component=c name=n version=1 release=1\nRUN echo \\",
    )]);
    let out = tempfile::tempdir().unwrap();
    let p = prepare::prepare(ctx.path(), &no_args()).unwrap();
    let err = prepare::inject(&p, ctx.path(), out.path(), &opts()).unwrap_err();
    assert!(matches!(err, Error::Unappendable { .. }), "{err:?}");
    assert!(!out.path().join("Dockerfile.kiln").exists());
}

#[test]
fn dockerignore_gets_an_exception_for_the_buildinfo_copy() {
    let ctx = tree(&[
        (
            "Dockerfile",
            "FROM x\nLABEL component=c name=n version=1 release=1\n",
        ),
        (".dockerignore", "*\n!Dockerfile"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let p = prepare::prepare(ctx.path(), &no_args()).unwrap();
    let inj = prepare::inject(&p, ctx.path(), out.path(), &opts()).unwrap();
    let text = fs::read_to_string(ctx.path().join(".dockerignore")).unwrap();
    assert_eq!(text, "*\n!Dockerfile\n!Dockerfile-n-1-1\n");
    let ignore = DockerIgnore::parse(&text).unwrap();
    let name = inj.buildinfo_file.file_name().unwrap().to_str().unwrap();
    assert!(!ignore.is_excluded(name));

    // Without a matching pattern the file is left alone.
    let ctx = tree(&[
        (
            "Dockerfile",
            "FROM x\nLABEL component=c name=n version=1 release=1\n",
        ),
        (".dockerignore", "*.log\n"),
    ]);
    let p = prepare::prepare(ctx.path(), &no_args()).unwrap();
    prepare::inject(&p, ctx.path(), out.path(), &opts()).unwrap();
    assert_eq!(
        fs::read_to_string(ctx.path().join(".dockerignore")).unwrap(),
        "*.log\n"
    );
}

#[test]
fn repo_files_for_run_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let repos = [
        RepoSpec {
            name: "kiln-target".into(),
            baseurl: "http://127.0.0.1:8000/repo/".into(),
            gpgcheck: false,
        },
        RepoSpec {
            name: "updates".into(),
            baseurl: "https://mirror.example/updates/$releasever/$basearch/".into(),
            gpgcheck: true,
        },
    ];
    let out = dir.path().join("repos");
    let mounts = prepare::write_repo_files(&repos, &out).unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].target, "/etc/yum.repos.d/kiln-target.repo");
    assert_eq!(mounts[1].target, "/etc/yum.repos.d/updates.repo");
    assert_eq!(mounts[0].source, out.join("kiln-target.repo"));
    assert_eq!(
        fs::read_to_string(&mounts[0].source).unwrap(),
        "[kiln-target]\nname=kiln-target\nbaseurl=http://127.0.0.1:8000/repo/\nenabled=1\ngpgcheck=0\nmetadata_expire=0\n"
    );
    let updates = fs::read_to_string(&mounts[1].source).unwrap();
    assert!(updates.contains("baseurl=https://mirror.example/updates/$releasever/$basearch/\n"));
    assert!(updates.contains("gpgcheck=1\n"));

    let dup = [repos[0].clone(), repos[0].clone()];
    let err = prepare::write_repo_files(&dup, &dir.path().join("dup")).unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    assert!(!Path::new(&dir.path().join("nope")).exists());
}
