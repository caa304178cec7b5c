//! End-to-end: `COPY/ADD --exclude` and `COPY --parents` through the real
//! `kiln build`.
//!
//! Each test builds a `FROM scratch` Dockerfile (no registry, no base
//! image) with a private `--root`, writes the image as an OCI layout,
//! unpacks it with `umoci raw unpack` and checks its file list
//! ([`Snapshot`]); the cache test reads the build's progress lines. Needs
//! root (the file helper mounts) and umoci (`scripts/install-test-deps.sh`).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use common::process::{Output, RunOpts, write_file};
use common::registry::kiln_bin;
use common::rootfs::{Kind, Snapshot};
use common::{RunExt, Scratch};

/// Scratch builds are small; the first one of a run waits for the binary's pages.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Writes a build context: `Dockerfile` plus `files` (relative path, text).
fn context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    write_file(&dir.join("Dockerfile"), dockerfile)?;
    for (rel, text) in files {
        write_file(&dir.join(rel), text)?;
    }
    Ok(dir.to_owned())
}

/// `kiln build --root ROOT ARGS... CONTEXT`, whatever its exit status.
fn kiln_build(root: &Path, ctx: &Path, args: &[&str]) -> Result<Output> {
    kiln_build_env(root, ctx, args, &[])
}

fn kiln_build_env(root: &Path, ctx: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    Command::new(kiln_bin())
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("KILN_BUILD_ROOT")
        .env_remove("KILN_BUILD_SNAPSHOTTER")
        .envs(env.iter().copied())
        .arg("build")
        .arg("--root")
        .arg(root)
        .args(args)
        .arg(ctx)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))
}

/// Builds `ctx` (with `env`) into an OCI layout and unpacks the image.
fn build_and_unpack(s: &Scratch, name: &str, ctx: &Path, env: &[(&str, &str)]) -> Result<Snapshot> {
    let layout = s.join(format!("{name}-layout"));
    let rootfs = s.join(format!("{name}-rootfs"));
    kiln_build_env(
        &s.mkdir(format!("{name}-root"))?,
        ctx,
        &[
            "-q",
            "-t",
            "localhost/kiln-copy-flags/img:v1",
            "--output",
            &format!("oci-dir:{}", layout.display()),
        ],
        env,
    )?
    .ok()?;
    Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&rootfs)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    Snapshot::take(&rootfs)
}

/// The paths below `dir` in the image, relative and sorted; directories end in `/`.
fn below(snap: &Snapshot, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    snap.entries
        .iter()
        .filter_map(|(path, e)| {
            let rel = path.strip_prefix(&prefix)?;
            Some(if e.kind == Kind::Dir {
                format!("{rel}/")
            } else {
                rel.to_owned()
            })
        })
        .collect()
}

fn check(snap: &Snapshot, dir: &str, want: &[&str]) -> Result<()> {
    let got = below(snap, dir);
    ensure!(
        got == want,
        "{dir} in the image holds {got:?}, expected {want:?}"
    );
    Ok(())
}

#[test]
fn exclude_and_parents_shape_the_image() -> Result<()> {
    shape_case(&[])
}

/// The copying snapshotter hands `COPY --from` a materialised stage root.
#[test]
fn exclude_and_parents_shape_the_image_with_the_copying_snapshotter() -> Result<()> {
    shape_case(&[("KILN_BUILD_SNAPSHOTTER", "copy")])
}

fn shape_case(env: &[(&str, &str)]) -> Result<()> {
    let s = Scratch::new("copy-flags")?;
    let ctx = context(
        &s.join("ctx"),
        "FROM scratch AS stage\n\
         COPY stage-src/ /data/\n\
         \n\
         FROM scratch\n\
         COPY --exclude=node_modules --exclude=*.bak app/ /app/\n\
         COPY --exclude=*.txt hom* /mydir/\n\
         COPY --from=stage --exclude=cache /data/ /fromstage/\n\
         COPY --parents ./x/a.txt ./y/a.txt /parents/\n\
         COPY --parents ./src/./pkg/*/*.go /pivot/\n\
         ADD --exclude=*.log logs/ /logs/\n\
         COPY --exclude=* --exclude=!README.md docs /docs/\n",
        &[
            ("app/package.json", "{}"),
            ("app/old.bak", "old"),
            ("app/node_modules/a/index.js", "a"),
            ("app/src/main.js", "main"),
            ("app/src/keep.bak", "one level down: kept"),
            ("home.txt", "h"),
            ("homework.md", "hw"),
            ("stage-src/keep.txt", "k"),
            ("stage-src/cache/blob", "b"),
            ("x/a.txt", "x"),
            ("y/a.txt", "y"),
            ("z/a.txt", "z"),
            ("src/pkg/a/a.go", "a"),
            ("src/pkg/b/b.go", "b"),
            ("src/pkg/b/b.md", "md"),
            ("logs/app.log", "l"),
            ("logs/readme", "r"),
            ("docs/README.md", "r"),
            ("docs/api.md", "a"),
        ],
    )?;
    fs::set_permissions(ctx.join("x"), fs::Permissions::from_mode(0o750))?;
    let snap = build_and_unpack(&s, "shape", &ctx, env)?;

    // Directory source: entries matched relative to it.
    check(
        &snap,
        "/app",
        &["package.json", "src/", "src/keep.bak", "src/main.js"],
    )?;
    // Wildcard source: home.txt itself is excluded.
    check(&snap, "/mydir", &["homework.md"])?;
    // COPY --from a stage.
    check(&snap, "/fromstage", &["keep.txt"])?;
    // --parents without a pivot keeps the whole path, with the source
    // directory's mode on the kept directory.
    check(&snap, "/parents", &["x/", "x/a.txt", "y/", "y/a.txt"])?;
    let x = snap.get("/parents/x").context("/parents/x")?;
    ensure!(
        x.mode == 0o750,
        "/parents/x has mode {:o}, not 0750",
        x.mode
    );
    // With a pivot, only what follows it.
    check(
        &snap,
        "/pivot",
        &["pkg/", "pkg/a/", "pkg/a/a.go", "pkg/b/", "pkg/b/b.go"],
    )?;
    // ADD of a local directory.
    check(&snap, "/logs", &["readme"])?;
    // A `!` exception.
    check(&snap, "/docs", &["README.md"])?;
    Ok(())
}

/// `(instruction, "cache" | "run" | "")` for every `[N/M] INSTRUCTION` of a
/// build's progress.
fn step_outcomes(stderr: &str) -> Vec<(String, &'static str)> {
    let mut steps: Vec<(String, &'static str)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((counter, instruction)) = rest.split_once("] ")
            && counter.contains('/')
            && counter.chars().all(|c| c.is_ascii_digit() || c == '/')
        {
            steps.push((instruction.to_owned(), ""));
        } else if let Some(last) = steps.last_mut() {
            if line == "--> Using cache" {
                last.1 = "cache";
            } else if line.starts_with("--> layer ") {
                last.1 = "run";
            }
        }
    }
    steps
}

#[test]
fn editing_an_excluded_file_keeps_the_cache() -> Result<()> {
    let s = Scratch::new("copy-flags-cache")?;
    let root = s.mkdir("root")?;
    let ctx = context(
        &s.join("ctx"),
        "FROM scratch\n\
         COPY --exclude=*.log --exclude=tmp app/ /app/\n\
         COPY --parents --exclude=**/*.log ./svc/./conf /etc/\n\
         COPY --exclude=b.txt *.txt /top/\n",
        &[
            ("app/main.txt", "main"),
            ("app/debug.log", "log 1"),
            ("app/tmp/scratch", "tmp 1"),
            ("svc/conf/app.ini", "ini"),
            ("svc/conf/d/old.log", "log 1"),
            ("a.txt", "a"),
            ("b.txt", "b 1"),
        ],
    )?;
    let build = || -> Result<(String, Vec<(String, &'static str)>)> {
        let out = kiln_build(&root, &ctx, &["-q"])?.ok()?;
        let steps: Vec<_> = step_outcomes(&out.stderr)
            .into_iter()
            .filter(|(i, _)| i.starts_with("COPY"))
            .collect();
        ensure!(steps.len() == 3, "COPY steps {steps:?} in:\n{}", out.stderr);
        Ok((out.last_line().to_owned(), steps))
    };
    let outcomes = |steps: &[(String, &'static str)]| -> Vec<&'static str> {
        steps.iter().map(|(_, o)| *o).collect()
    };

    let (first, steps) = build()?;
    ensure!(
        outcomes(&steps) == ["run", "run", "run"],
        "cold build: {steps:?}"
    );

    // Only excluded files change (and appear): every step is cached.
    write_file(&ctx.join("app/debug.log"), "log 2")?;
    write_file(&ctx.join("app/tmp/scratch"), "tmp 2")?;
    write_file(&ctx.join("app/tmp/new"), "new")?;
    write_file(&ctx.join("svc/conf/d/old.log"), "log 2")?;
    write_file(&ctx.join("svc/conf/d/new.log"), "new")?;
    write_file(&ctx.join("b.txt"), "b 2")?;
    let (second, steps) = build()?;
    ensure!(
        outcomes(&steps) == ["cache", "cache", "cache"],
        "after editing excluded files: {steps:?}"
    );
    ensure!(second == first, "the image changed: {first} then {second}");

    // A kept file is a change for its step (and the steps after it).
    write_file(&ctx.join("svc/conf/app.ini"), "ini 2")?;
    let (third, steps) = build()?;
    ensure!(
        outcomes(&steps) == ["cache", "run", "run"],
        "after editing svc/conf/app.ini: {steps:?}"
    );
    ensure!(third != first, "editing a kept file kept the image {first}");
    Ok(())
}

#[test]
fn flag_errors_name_the_line() -> Result<()> {
    let s = Scratch::new("copy-flags-errors")?;
    let root = s.mkdir("root")?;
    for (name, dockerfile, needles) in [
        (
            "add-parents",
            "FROM scratch\nCOPY a.txt /a\nADD --parents a.txt /b/\n",
            vec!["Dockerfile: line 3", "Unknown flag: parents"],
        ),
        (
            "bad-exclude",
            "FROM scratch\n\nCOPY --exclude=[a- . /x/\n",
            vec![
                ":3: COPY --exclude=[a- . /x/",
                "--exclude: syntax error in pattern \"[a-\"",
            ],
        ),
        (
            "parents-missing",
            "FROM scratch\nCOPY --parents ./d/nothere /out/\n",
            vec![
                ":2: COPY --parents ./d/nothere /out/",
                "\"/d/nothere\": not found",
            ],
        ),
    ] {
        let ctx = context(
            &s.join(name),
            dockerfile,
            &[("a.txt", "a\n"), ("d/a.txt", "a\n")],
        )?;
        let df = ctx.join("Dockerfile").display().to_string();
        let out = kiln_build(&root, &ctx, &[])?.fail()?;
        for n in needles {
            let want = if n.starts_with(':') {
                format!("{df}{n}")
            } else {
                n.to_owned()
            };
            ensure!(
                out.stderr.contains(&want),
                "case {name}: stderr lacks {want:?}:\n{}",
                out.stderr
            );
        }
    }
    Ok(())
}
