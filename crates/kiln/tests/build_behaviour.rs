//! End-to-end behaviour of `kiln build` beyond "the image is right": what it
//! says about bad input (syntax, unknown instructions and stages, paths
//! outside the context, missing files, failing RUNs, hostile base layers, a
//! registry serving wrong bytes), the build cache and reproducibility, the
//! output formats, secrets, and the isolation of RUN steps.
//!
//! Every test drives the real `kiln` binary with a private `--root` in its
//! own scratch directory; tests that need a base image start a loopback
//! `kiln registry` and push the busybox-full fixture to it
//! (`common::buildcmp::BuildEnv`). Needs root and the packages of
//! `scripts/install-test-deps.sh`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use common::buildcmp::{BuildEnv, Network};
use common::process::{Output, RunOpts, write_file};
use common::registry::{DOCKER_MANIFEST, OCI_MANIFEST, kiln_bin};
use common::{RegistryServer, RunExt, Scratch, sha256_digest, unique_repo};

/// Builds here are tiny, but a cold one pulls and unpacks the base image.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

// ------------------------------------------------------------- harness --

/// A name no other test (or earlier run) uses: `{label}-{pid}-{n}`.
fn unique_name(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A registry with the busybox-full base pushed, and a scratch directory.
struct World {
    env: BuildEnv,
    /// `127.0.0.1:PORT/kiln-e2e/busybox:latest`.
    base: String,
}

impl World {
    fn start() -> Result<Self> {
        let env = BuildEnv::start()?;
        let base = env.push_busybox_base()?;
        Ok(Self { env, base })
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        self.env.scratch.mkdir(name)
    }
}

/// Writes a build context: `Dockerfile` plus `files` (relative path, text).
fn context(dir: &Path, dockerfile: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    write_file(&dir.join("Dockerfile"), dockerfile)?;
    for (rel, text) in files {
        write_file(&dir.join(rel), text)?;
    }
    Ok(dir.to_owned())
}

/// `kiln build --root ROOT ARGS... CONTEXT` with `env` set (and a caller's
/// `SOURCE_DATE_EPOCH` removed unless `env` sets it); returns the output
/// whatever the exit status.
fn kiln_build(root: &Path, ctx: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(kiln_bin());
    cmd.env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILD_ROOT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("build")
        .arg("--root")
        .arg(root)
        .args(args)
        .arg(ctx)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))
}

/// Fails unless the build failed and its stderr holds every one of
/// `needles` (exactly, case-sensitive); returns stderr.
fn expect_failure(out: Output, needles: &[&str]) -> Result<String> {
    let out = out.fail()?;
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|n| !out.stderr.contains(**n))
        .collect();
    ensure!(
        missing.is_empty(),
        "`{}` failed as expected, but its stderr lacks {missing:?}:\n{}",
        out.cmdline,
        out.stderr
    );
    Ok(out.stderr)
}

/// What happened to one filesystem step, from the progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `--> Using cache`.
    Cached,
    /// `--> layer ...`: executed and committed.
    Executed,
    /// Neither line (FROM, metadata, or a step that changed nothing).
    Silent,
}

/// `(instruction, outcome)` for every `[N/M] INSTRUCTION` line of a build's
/// stderr, in order.
fn step_outcomes(stderr: &str) -> Vec<(String, Outcome)> {
    let mut steps: Vec<(String, Outcome)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((counter, instruction)) = rest.split_once("] ")
            && counter.contains('/')
            && counter.chars().all(|c| c.is_ascii_digit() || c == '/')
        {
            steps.push((instruction.to_owned(), Outcome::Silent));
        } else if let Some(last) = steps.last_mut() {
            if line == "--> Using cache" {
                last.1 = Outcome::Cached;
            } else if line.starts_with("--> layer ") {
                last.1 = Outcome::Executed;
            }
        }
    }
    steps
}

/// `(from cache, executed)` of the final `--> DIGEST (H steps from cache,
/// E executed)` line.
fn summary(stderr: &str) -> Result<(usize, usize)> {
    for line in stderr.lines().rev() {
        if let Some(rest) = line.strip_prefix("--> ")
            && let Some((_, counts)) = rest.split_once(" (")
            && let Some((hits, executed)) = counts
                .strip_suffix(" executed)")
                .and_then(|c| c.split_once(" steps from cache, "))
        {
            return Ok((hits.parse()?, executed.parse()?));
        }
    }
    bail!("no `--> DIGEST (H steps from cache, E executed)` line in:\n{stderr}")
}

/// The outcomes of the steps after FROM.
fn outcomes_of(steps: &[(String, Outcome)]) -> Vec<Outcome> {
    steps
        .iter()
        .filter(|(i, _)| !i.starts_with("FROM"))
        .map(|(_, o)| *o)
        .collect()
}

/// The manifest digest `kiln build -q` printed.
fn quiet_digest(out: &Output) -> Result<String> {
    let d = out.last_line().to_owned();
    ensure!(
        d.starts_with("sha256:") && d.len() == 71,
        "`{}` printed {d:?} on stdout, not a manifest digest",
        out.cmdline
    );
    Ok(d)
}

/// Every file below `dir` whose name contains `needle`.
fn files_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                found.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    found
}

/// The blob bytes, gunzipped / unzstd'ed when they are compressed.
fn decompressed(blob: &[u8], path: &Path) -> Result<Vec<u8>> {
    let tool = match blob {
        [0x1f, 0x8b, ..] => "gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        _ => return Ok(blob.to_vec()),
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .with_context(|| format!("{tool} -d -c {}", path.display()))?;
    ensure!(
        out.status.success(),
        "{tool} -d -c {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Blobs (decompressed) of the OCI layout `layout` that contain `needle`.
fn layout_blobs_containing(layout: &Path, needle: &[u8]) -> Result<Vec<String>> {
    let dir = layout.join("blobs/sha256");
    let mut hits = Vec::new();
    let mut count = 0;
    for e in fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let p = e?.path();
        let raw = fs::read(&p)?;
        count += 1;
        if contains(&raw, needle) || contains(&decompressed(&raw, &p)?, needle) {
            hits.push(p.display().to_string());
        }
    }
    ensure!(count >= 3, "{} holds only {count} blobs", dir.display());
    Ok(hits)
}

// ---------------------------------------------- hand-made hostile images --

/// One tar entry.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// An uncompressed ustar archive of `entries`, written byte by byte so that
/// it can hold what tar tools refuse to create (`..` paths and the like).
fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{v:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    for e in entries {
        let (name, kind, link, data, mode): (&str, u8, &str, &[u8], u64) = match e {
            Entry::Dir(n) => (n, b'5', "", b"", 0o755),
            Entry::File(n, d) => (n, b'0', "", d, 0o644),
            Entry::Symlink(n, t) => (n, b'2', t, b"", 0o777),
            Entry::Hardlink(n, t) => (n, b'1', t, b"", 0o644),
        };
        assert!(
            name.len() <= 100 && link.len() <= 100,
            "tar_of writes ustar names of up to 100 bytes: {name:?} -> {link:?}"
        );
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], mode);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 1_700_000_000);
        h[148..156].fill(b' ');
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `gzip -n` of `data` (through a file in `dir`).
fn gzip(dir: &Path, data: &[u8]) -> Result<Vec<u8>> {
    let p = dir.join(unique_name("layer.tar"));
    fs::write(&p, data)?;
    Command::new("gzip").args(["-n", "-f"]).arg(&p).run_ok()?;
    let gz = PathBuf::from(format!("{}.gz", p.display()));
    let bytes = fs::read(&gz)?;
    fs::remove_file(&gz)?;
    Ok(bytes)
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An image made by hand: its blobs and manifest.
struct HandImage {
    /// digest → bytes (config and layers).
    blobs: Vec<(String, Vec<u8>)>,
    manifest: Vec<u8>,
    layer_digests: Vec<String>,
}

/// An OCI image whose layers are `tars` (gzipped here); the config's
/// diff_ids are the true ones, so only the content is hostile.
fn hand_image(dir: &Path, tars: &[Vec<u8>]) -> Result<HandImage> {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for tar in tars {
        let gz = gzip(dir, tar)?;
        let digest = sha256_digest(&gz);
        diff_ids.push(sha256_digest(tar));
        layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": gz.len()}));
        layer_digests.push(digest.clone());
        blobs.push((digest, gz));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers,
    }))?;
    blobs.push((config_digest, config));
    Ok(HandImage {
        blobs,
        manifest,
        layer_digests,
    })
}

/// Writes `img` as an OCI layout tagged `latest` in `layout`.
fn write_layout(layout: &Path, img: &HandImage) -> Result<()> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    for (digest, data) in &img.blobs {
        fs::write(blobs.join(digest.trim_start_matches("sha256:")), data)?;
    }
    let md = sha256_digest(&img.manifest);
    fs::write(blobs.join(md.trim_start_matches("sha256:")), &img.manifest)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": md,
            "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

// ------------------------------------------- a registry that lies (#8) --

/// What the fake registry answers for one path: content type and body.
type Routes = HashMap<String, (String, Vec<u8>)>;

/// A minimal HTTP/1.1 registry on 127.0.0.1 serving fixed bodies, one
/// connection at a time (`Connection: close`); stops when dropped.
struct FakeRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeRegistry {
    fn start(routes: Routes) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = serve_one(stream, &routes) {
                            eprintln!("fake registry: {e:#}");
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, routes: &Routes) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    eprintln!("fake registry: {method} {path}");
    let (status, ctype, body): (&str, &str, &[u8]) = match routes.get(path) {
        Some((ctype, body)) => ("200 OK", ctype, body),
        None => (
            "404 Not Found",
            "application/json",
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#,
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if path.contains("/manifests/") && status.starts_with("200") {
        head.push_str(&format!(
            "Docker-Content-Digest: {}\r\n",
            sha256_digest(body)
        ));
    }
    head.push_str("\r\n");
    let mut w = stream;
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(body)?;
    }
    w.flush()?;
    Ok(())
}

// ================================================================ tests ==

// --- bad Dockerfiles (no registry needed: they fail before any pull) ---

#[test]
fn syntax_errors_name_file_line_and_column() -> Result<()> {
    let s = Scratch::new("behaviour-syntax")?;
    let root = s.mkdir("root")?;

    let ctx = context(
        &s.join("heredoc"),
        "FROM scratch\nCOPY a.txt /a\nRUN <<EOF\necho never closed\n",
        &[("a.txt", "a\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    let err = expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[&df, "unterminated heredoc EOF", "line 3, column"],
    )?;
    eprintln!("heredoc error: {err}");

    let ctx = context(
        &s.join("flag"),
        "FROM scratch\n\nCOPY --frob=1 a.txt /a\n",
        &[("a.txt", "a\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[&df, "line 3, column", "Unknown flag: frob"],
    )?;
    Ok(())
}

#[test]
fn unknown_instruction_is_named_with_its_line() -> Result<()> {
    let s = Scratch::new("behaviour-unknown")?;
    let ctx = context(
        &s.join("ctx"),
        "FROM scratch\nENV A=1\nFOOBAR x\nENV B=2\n",
        &[],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    let err = expect_failure(
        kiln_build(&s.mkdir("root")?, &ctx, &[], &[])?,
        &[&df, "line 3, column"],
    )?;
    ensure!(
        err.to_lowercase().contains("unknown instruction: foobar"),
        "the error does not name the unknown instruction FOOBAR:\n{err}"
    );
    Ok(())
}

#[test]
fn missing_stages_are_reported() -> Result<()> {
    let s = Scratch::new("behaviour-stages")?;
    let root = s.mkdir("root")?;
    let two_stages = "FROM scratch AS first\nENV A=1\n\nFROM scratch AS second\nENV B=2\n";

    // --target naming no stage: the error lists the stages there are.
    let ctx = context(&s.join("target"), two_stages, &[])?;
    expect_failure(
        kiln_build(&root, &ctx, &["--target", "nosuch"], &[])?,
        &[
            "target stage \"nosuch\" could not be found",
            "first",
            "second",
        ],
    )?;

    // COPY --from with a numeric index past the last stage.
    let ctx = context(
        &s.join("index"),
        "FROM scratch AS one\nCOPY a.txt /a\nFROM scratch\nCOPY --from=5 /a /b\n",
        &[("a.txt", "a\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[&df, "invalid stage index 5", "line 4"],
    )?;

    // FROM of a stage defined later is an image reference (BuildKit rules),
    // never the later stage; with --pull=never it cannot be found.
    let ctx = context(
        &s.join("later"),
        "FROM builder AS app\nCOPY a.txt /a\n\nFROM scratch AS builder\nCOPY a.txt /x\n",
        &[("a.txt", "a\n")],
    )?;
    // (FROM errors name the image but not the Dockerfile line; the step
    // line `[1/2] FROM builder AS app` printed just before says which.)
    let err = expect_failure(
        kiln_build(&root, &ctx, &["--pull=never", "--target", "app"], &[])?,
        &["image builder is not in the local store and --pull=never was given"],
    )?;
    ensure!(
        err.contains("[1/2] FROM builder AS app") && !err.contains("COPY a.txt /x"),
        "the build did not stop at `FROM builder`:\n{err}"
    );
    Ok(())
}

// --- the build context: escapes, absolute paths, symlinks, missing files ---

#[test]
fn copy_sources_stay_inside_the_context() -> Result<()> {
    let s = Scratch::new("behaviour-context")?;
    let root = s.mkdir("root")?;
    // A file next to the context, that no COPY may reach.
    let secret = format!("host-only-{}", unique_name("content"));
    write_file(&s.join("outside.txt"), &secret)?;

    let ctx = context(
        &s.join("dotdot"),
        "FROM scratch\nCOPY ok.txt /ok\nCOPY ../outside.txt /x\n",
        &[("ok.txt", "ok\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[
            &format!("{df}:3: COPY ../outside.txt /x"),
            "forbidden path outside the build context: ../outside.txt",
        ],
    )?;

    // A leading / means the context root: /etc/passwd is not in it.
    let ctx = context(
        &s.join("abs"),
        "FROM scratch\n\nCOPY /etc/passwd /x\n",
        &[("ok.txt", "ok\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[
            &format!("{df}:3: COPY /etc/passwd /x"),
            "\"/etc/passwd\": not found",
        ],
    )?;

    // Symlinks in the context pointing out of it (absolute, relative):
    // they resolve inside the context, where the target does not exist.
    for (name, target) in [
        ("abslink", s.join("outside.txt").display().to_string()),
        ("rellink", "../outside.txt".to_owned()),
    ] {
        let ctx = context(
            &s.join(name),
            &format!("FROM scratch\nCOPY {name} /x\n"),
            &[],
        )?;
        std::os::unix::fs::symlink(&target, ctx.join(name))?;
        let layout = s.join(format!("{name}-out"));
        let out = kiln_build(
            &root,
            &ctx,
            &["--output", &format!("oci-dir:{}", layout.display())],
            &[],
        )?;
        if out.success() {
            // Copying the link itself would be acceptable; its target never.
            let hits = layout_blobs_containing(&layout, secret.as_bytes())?;
            ensure!(
                hits.is_empty(),
                "COPY {name} (-> {target}) copied the host file into {hits:?}"
            );
        } else {
            ensure!(
                out.stderr.contains("not found") && out.stderr.contains(name),
                "COPY {name} (-> {target}) failed without saying the target is not found \
                 in the context:\n{}",
                out.stderr
            );
        }
    }
    Ok(())
}

#[test]
fn missing_context_file_is_named_with_its_line() -> Result<()> {
    let s = Scratch::new("behaviour-missing")?;
    let ctx = context(
        &s.join("ctx"),
        "FROM scratch\nCOPY here.txt /\n\n# a comment\nCOPY nothere.txt /\n",
        &[("here.txt", "here\n")],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&s.mkdir("root")?, &ctx, &[], &[])?,
        &[
            &format!("{df}:5: COPY nothere.txt /"),
            "nothere.txt\": not found",
        ],
    )?;
    Ok(())
}

#[test]
fn mount_and_copy_from_errors_name_the_line() -> Result<()> {
    let s = Scratch::new("behaviour-mounts")?;
    let root = s.mkdir("root")?;
    // Each error is checked before any sandbox starts, so scratch will do.
    for (name, dockerfile, needles) in [
        (
            "bind-missing",
            "FROM scratch\nRUN --mount=type=bind,source=nothere,target=/h ls /h\n",
            vec![
                ":2: RUN --mount=type=bind,source=nothere",
                "nothere\": not found",
            ],
        ),
        (
            "bind-outside",
            "FROM scratch\nRUN --mount=type=bind,source=../..,target=/h ls /h\n",
            vec![
                ":2: RUN --mount=type=bind,source=../..",
                "forbidden path outside the build context: ../..",
            ],
        ),
        (
            "copy-from-image",
            "FROM scratch\nCOPY a.txt /a\nCOPY --from=nosuchstage /x /y\n",
            vec![
                ":3: COPY --from=nosuchstage /x /y",
                "image nosuchstage is not in the local store",
            ],
        ),
    ] {
        let ctx = context(&s.join(name), dockerfile, &[("a.txt", "a\n")])?;
        let df = ctx.join("Dockerfile").display().to_string();
        let mut wanted: Vec<String> = vec![df.clone()];
        wanted.extend(needles.iter().map(|n| {
            if n.starts_with(':') {
                format!("{df}{n}")
            } else {
                (*n).to_owned()
            }
        }));
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        expect_failure(kiln_build(&root, &ctx, &["--pull=never"], &[])?, &wanted)
            .with_context(|| format!("case {name}"))?;
    }
    Ok(())
}

// --- RUN failures and hostile registries ---

#[test]
fn failing_run_reports_status_output_and_line() -> Result<()> {
    let w = World::start()?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\nRUN echo fine\nRUN echo line1; echo line2 >&2; exit 7\nRUN echo never\n",
            w.base
        ),
        &[],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    let root = w.dir("root")?;
    let err = expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[
            &format!("{df}:3: RUN"),
            "failed (exit code 7)",
            "line1",
            "line2",
        ],
    )?;
    // The failed step leaves neither mounts nor scratch directories.
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let root_str = root.display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root_str)).collect();
    ensure!(left.is_empty(), "mounts left below the store: {left:?}");
    let scratch: Vec<String> = fs::read_dir(root.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        scratch.is_empty(),
        "scratch left in {}/tmp after the failed build: {scratch:?}",
        root.display()
    );
    ensure!(
        !err.contains("never"),
        "steps after the failing RUN ran:\n{err}"
    );
    let tail = err
        .split("last output:")
        .nth(1)
        .context("the error has no `last output:` section")?;
    ensure!(
        tail.contains("line1") && tail.contains("line2"),
        "the failing RUN's last output lines are not in its error:\n{err}"
    );
    Ok(())
}

#[test]
fn hostile_base_layers_are_refused() -> Result<()> {
    let env = BuildEnv::start()?;
    let work = env.scratch.mkdir("hostile")?;
    let tag = unique_name("kiln-escape");
    let deep = "../".repeat(12);
    // Each case: the layers, the entry the error must name, and the host
    // path that must not appear.
    let dotdot_name = format!("{deep}tmp/{tag}-dotdot");
    let via_link = format!("evil/tmp/{tag}-link");
    let hard_name = "stolen-passwd".to_owned();
    let cases: Vec<(&str, Vec<Vec<u8>>, &str, PathBuf)> = vec![
        (
            "dotdot",
            vec![tar_of(&[
                Entry::Dir("etc"),
                Entry::File(&dotdot_name, b"escaped\n"),
            ])],
            dotdot_name.as_str(),
            PathBuf::from(format!("/tmp/{tag}-dotdot")),
        ),
        (
            "symlink-then-file",
            vec![tar_of(&[
                Entry::Symlink("evil", "/"),
                Entry::File(&via_link, b"escaped\n"),
            ])],
            via_link.as_str(),
            PathBuf::from(format!("/tmp/{tag}-link")),
        ),
        (
            "hardlink-dotdot",
            vec![tar_of(&[Entry::Hardlink(
                &hard_name,
                "../../../../etc/passwd",
            )])],
            hard_name.as_str(),
            PathBuf::from(format!("/tmp/{tag}-none")),
        ),
        (
            // An absolute link target means the layer's own /etc/passwd,
            // which this layer does not have.
            "hardlink-absolute",
            vec![tar_of(&[Entry::Hardlink(&hard_name, "/etc/passwd")])],
            hard_name.as_str(),
            PathBuf::from(format!("/tmp/{tag}-none")),
        ),
    ];
    // A hard link to a host file would raise its link count.
    let passwd_links = || fs::metadata("/etc/passwd").map(|m| m.nlink());
    let links_before = passwd_links()?;
    for (name, tars, entry, escape) in &cases {
        let img = hand_image(&work, tars)?;
        let layout = work.join(format!("{name}-oci"));
        write_layout(&layout, &img)?;
        let image = env.push_layout(&layout, "latest", &unique_repo(name))?;
        let ctx = context(
            &work.join(format!("{name}-ctx")),
            &format!("FROM {image}\nRUN true\n"),
            &[],
        )?;
        let root = work.join(format!("{name}-root"));
        let err = expect_failure(
            kiln_build(&root, &ctx, &[], &[])?,
            &[
                &format!("base image layer {}", img.layer_digests[0]),
                &format!("layer entry {entry:?}"),
            ],
        )
        .with_context(|| format!("case {name}"))?;
        eprintln!("case {name}: {err}");
        ensure!(
            !escape.exists(),
            "case {name}: {} was written outside the store",
            escape.display()
        );
        ensure!(
            passwd_links()? == links_before,
            "case {name}: /etc/passwd gained a hard link"
        );
        let leaked = files_named(&work, &tag);
        ensure!(
            leaked.is_empty(),
            "case {name}: files of the hostile layer left behind: {leaked:?}"
        );
    }

    // A symlink in one layer and a path through it in the next: each layer
    // is its own directory, so the second never follows the first's link.
    let two = hand_image(
        &work,
        &[
            tar_of(&[Entry::Symlink("evil", "/")]),
            tar_of(&[
                Entry::Dir("evil"),
                Entry::Dir("evil/tmp"),
                Entry::File(&via_link, b"escaped\n"),
            ]),
        ],
    )?;
    let layout = work.join("two-layers-oci");
    write_layout(&layout, &two)?;
    let image = env.push_layout(&layout, "latest", &unique_repo("two-layers"))?;
    let ctx = context(
        &work.join("two-ctx"),
        &format!("FROM {image}\nENV X=1\n"),
        &[],
    )?;
    let out = kiln_build(&work.join("two-root"), &ctx, &[], &[])?;
    eprintln!("two layers: success={}", out.success());
    let escape = PathBuf::from(format!("/tmp/{tag}-link"));
    ensure!(
        !escape.exists(),
        "a symlink of one base layer let the next layer write {}",
        escape.display()
    );
    Ok(())
}

#[test]
fn blob_with_wrong_digest_is_refused_and_not_stored() -> Result<()> {
    let s = Scratch::new("behaviour-baddigest")?;
    let img = hand_image(
        s.path(),
        &[tar_of(&[
            Entry::Dir("etc"),
            Entry::File("etc/hello", b"hi\n"),
        ])],
    )?;
    let layer_digest = img.layer_digests[0].clone();
    let mut routes: Routes = HashMap::new();
    routes.insert("/v2/".into(), ("application/json".into(), b"{}".to_vec()));
    routes.insert(
        "/v2/bad/image/manifests/latest".into(),
        (OCI_MANIFEST.into(), img.manifest.clone()),
    );
    let mut lie = Vec::new();
    for (digest, data) in &img.blobs {
        let body = if *digest == layer_digest {
            // Same size, other bytes: only the digest can tell.
            let wrong = vec![b'x'; data.len()];
            lie = wrong.clone();
            wrong
        } else {
            data.clone()
        };
        routes.insert(
            format!("/v2/bad/image/blobs/{digest}"),
            ("application/octet-stream".into(), body),
        );
    }
    let registry = FakeRegistry::start(routes)?;
    let ctx = context(
        &s.join("ctx"),
        &format!("FROM {}/bad/image:latest\nRUN true\n", registry.addr),
        &[],
    )?;
    let root = s.mkdir("root")?;
    expect_failure(
        kiln_build(&root, &ctx, &[], &[])?,
        &[
            &format!("/v2/bad/image/blobs/{layer_digest}"),
            &format!("content has digest {}", sha256_digest(&lie)),
            &format!("expected {layer_digest}"),
        ],
    )?;
    let hex = layer_digest.trim_start_matches("sha256:");
    let stored = files_named(&root, hex);
    ensure!(
        stored.is_empty(),
        "the store holds files named after the refused blob: {stored:?}"
    );
    Ok(())
}

// --- the build cache and reproducibility ---

const EPOCH: &str = "1700000000";

fn cache_dockerfile(base: &str, second_run: &str) -> String {
    format!(
        "FROM {base}\nCOPY a.txt /a.txt\nRUN echo one > /one\nRUN {second_run}\nCOPY b.txt /b.txt\n"
    )
}

#[test]
fn build_cache_hits_and_misses() -> Result<()> {
    let w = World::start()?;
    let root = w.dir("root")?;
    let ctx = context(
        &w.dir("ctx")?,
        &cache_dockerfile(&w.base, "echo two > /two"),
        &[("a.txt", "a\n"), ("b.txt", "b\n")],
    )?;
    let env = [("SOURCE_DATE_EPOCH", EPOCH)];
    let build = |extra: &[&str]| -> Result<(String, Vec<Outcome>, (usize, usize))> {
        let mut args = vec!["-q"];
        args.extend_from_slice(extra);
        let out = kiln_build(&root, &ctx, &args, &env)?.ok()?;
        let steps = step_outcomes(&out.stderr);
        ensure!(
            steps.len() == 5,
            "expected 5 steps in the progress, found {steps:?}:\n{}",
            out.stderr
        );
        Ok((
            quiet_digest(&out)?,
            outcomes_of(&steps),
            summary(&out.stderr)?,
        ))
    };
    use Outcome::{Cached as C, Executed as E};

    let (first, steps, counts) = build(&[])?;
    ensure!(
        steps == [E, E, E, E] && counts == (0, 4),
        "cold build: {steps:?} {counts:?}"
    );

    let (second, steps, counts) = build(&[])?;
    ensure!(
        steps == [C, C, C, C] && counts == (4, 0),
        "same build again: {steps:?} {counts:?}"
    );
    ensure!(
        first == second,
        "a fully cached rebuild with SOURCE_DATE_EPOCH gave {second}, the first build {first}"
    );

    // Only the mtime of a.txt changes: the content decides.
    let a = ctx.join("a.txt");
    fs::File::options()
        .write(true)
        .open(&a)?
        .set_modified(SystemTime::now() + Duration::from_secs(3600))?;
    let (after_touch, steps, counts) = build(&[])?;
    ensure!(
        steps == [C, C, C, C] && counts == (4, 0) && after_touch == first,
        "after touching a.txt: {steps:?} {counts:?} {after_touch}"
    );

    // A mode change is a change.
    fs::set_permissions(&a, fs::Permissions::from_mode(0o755))?;
    let (_, steps, counts) = build(&[])?;
    ensure!(
        steps == [E, E, E, E] && counts == (0, 4),
        "after chmod 755 a.txt: {steps:?} {counts:?}"
    );

    // New content of b.txt: only the last COPY runs.
    write_file(&ctx.join("b.txt"), "b, changed\n")?;
    let (changed_b, steps, counts) = build(&[])?;
    ensure!(
        steps == [C, C, C, E] && counts == (3, 1),
        "after changing b.txt: {steps:?} {counts:?}"
    );
    ensure!(changed_b != first, "changing b.txt kept the image digest");

    // A RUN in the middle changes: it and everything after run again.
    write_file(
        &ctx.join("Dockerfile"),
        cache_dockerfile(&w.base, "echo TWO > /two"),
    )?;
    let (cached, steps, counts) = build(&[])?;
    ensure!(
        steps == [C, C, E, E] && counts == (2, 2),
        "after changing the second RUN: {steps:?} {counts:?}"
    );

    // --no-cache executes everything, and gives the same image again.
    let (uncached, steps, counts) = build(&["--no-cache"])?;
    ensure!(
        steps == [E, E, E, E] && counts == (0, 4),
        "--no-cache: {steps:?} {counts:?}"
    );
    ensure!(
        uncached == cached,
        "with SOURCE_DATE_EPOCH, --no-cache gave {uncached} but the cached build {cached}"
    );
    Ok(())
}

#[test]
fn source_date_epoch_builds_are_reproducible() -> Result<()> {
    let w = World::start()?;
    // Files made at build time (RUN, COPY) get the build's clock as mtime;
    // SOURCE_DATE_EPOCH must clamp them and fix `created`.
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\nCOPY data /data\nRUN mkdir -p /out/sub && echo hi > /out/sub/f && touch /out/empty \
             && ln -s sub/f /out/link\nLABEL a=b\nENV X=1\n",
            w.base
        ),
        &[("data/one.txt", "one\n"), ("data/sub/two.txt", "two\n")],
    )?;
    let env = [("SOURCE_DATE_EPOCH", EPOCH)];
    let mut digests = Vec::new();
    for i in 0..2 {
        let root = w.dir(&format!("root{i}"))?;
        let out = kiln_build(&root, &ctx, &["-q", "--no-cache"], &env)?.ok()?;
        digests.push(quiet_digest(&out)?);
        if i == 0 {
            // The clock and the context's mtimes move on between the builds.
            thread::sleep(Duration::from_millis(1100));
            let one = ctx.join("data/one.txt");
            fs::File::options()
                .write(true)
                .open(&one)?
                .set_modified(SystemTime::now())?;
        }
    }
    ensure!(
        digests[0] == digests[1],
        "two --no-cache builds with SOURCE_DATE_EPOCH={EPOCH} in fresh roots differ: {} vs {}",
        digests[0],
        digests[1]
    );
    Ok(())
}

// --- outputs, formats, compression ---

#[test]
fn oci_outputs_are_valid_layouts() -> Result<()> {
    let w = World::start()?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
            w.base
        ),
        &[("hello.txt", "hello from an output\n")],
    )?;
    let out_dir = w.env.scratch.join("out-dir");
    let out_archive = w.env.scratch.join("out.tar");
    let out = kiln_build(
        &w.dir("root")?,
        &ctx,
        &[
            "-q",
            "-t",
            "localhost/kiln-out/img:v1",
            "--output",
            &format!("oci-dir:{}", out_dir.display()),
            "--output",
            &format!("oci-archive:{}", out_archive.display()),
        ],
        &[],
    )?
    .ok()?;
    let digest = quiet_digest(&out)?;
    for transport in [
        format!("oci:{}:v1", out_dir.display()),
        format!("oci-archive:{}:v1", out_archive.display()),
    ] {
        let inspect = w
            .env
            .tools
            .skopeo()
            .args(["inspect", &transport])
            .run_ok()?;
        let v: Value = serde_json::from_str(&inspect.stdout)?;
        ensure!(
            v["Digest"].as_str() == Some(digest.as_str()),
            "skopeo inspect {transport}: digest {} but kiln printed {digest}",
            v["Digest"]
        );
        // A full copy reads and verifies every blob.
        let copy = w.env.scratch.join(unique_name("copy"));
        w.env
            .tools
            .skopeo()
            .args(["copy", "-q", &transport])
            .arg(format!("dir:{}", copy.display()))
            .run_ok()?;
    }
    // And it runs.
    let pushed = w
        .env
        .push_layout(&out_dir, "v1", &unique_repo("from-layout"))?;
    let run = w.env.run(&pushed, Network::None, &[])?;
    ensure!(
        run.stdout.trim() == "hello from an output",
        "the image from oci-dir printed {:?}",
        run.stdout
    );
    Ok(())
}

/// Builds `ctx` with `args` and `--push` to a fresh repository; returns the
/// image reference and the manifest as the registry serves it.
fn build_and_push(
    w: &World,
    ctx: &Path,
    label: &str,
    args: &[&str],
) -> Result<(String, Value, String)> {
    let repo = unique_repo(label);
    let image = w.env.registry.image(&repo, "latest");
    let mut all = vec!["-t", image.as_str(), "--push", "--tls-verify=false"];
    all.extend_from_slice(args);
    kiln_build(&w.dir(&format!("root-{label}"))?, ctx, &all, &[])?.ok()?;
    let resp = w.env.registry.get_manifest(&repo, "latest")?;
    ensure!(
        resp.status == 200,
        "GET manifest of {image}: {}",
        resp.status
    );
    let ctype = resp.header("Content-Type").unwrap_or("").to_owned();
    Ok((image, resp.json()?, ctype))
}

#[test]
fn docker_format_and_zstd_compression_push_and_run() -> Result<()> {
    let w = World::start()?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\nRUN echo built > /built\nCOPY hello.txt /hello.txt\n\
             CMD [\"cat\", \"/built\", \"/hello.txt\"]\n",
            w.base
        ),
        &[("hello.txt", "hello\n")],
    )?;

    let (image, manifest, ctype) = build_and_push(&w, &ctx, "docker-fmt", &["--format", "docker"])?;
    ensure!(
        ctype == DOCKER_MANIFEST && manifest["mediaType"] == DOCKER_MANIFEST,
        "--format docker pushed {ctype} / {}",
        manifest["mediaType"]
    );
    ensure!(
        manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json",
        "docker manifest with config type {}",
        manifest["config"]["mediaType"]
    );
    let layers = manifest["layers"].as_array().context("no layers")?;
    ensure!(
        layers.len() == 3 && layers.iter().all(|l| l["mediaType"] == DOCKER_LAYER_GZIP),
        "docker manifest layers: {layers:?}"
    );
    let run = w.env.run(&image, Network::None, &[])?;
    ensure!(
        run.stdout == "built\nhello\n",
        "docker image printed {:?}",
        run.stdout
    );

    let (image, manifest, ctype) = build_and_push(&w, &ctx, "zstd", &["--compression", "zstd"])?;
    ensure!(ctype == OCI_MANIFEST, "--compression zstd pushed {ctype}");
    let layers = manifest["layers"].as_array().context("no layers")?;
    ensure!(layers.len() == 3, "zstd manifest layers: {layers:?}");
    // The base layer is kept as pulled; the two built ones are zstd.
    for l in &layers[1..] {
        ensure!(
            l["mediaType"] == OCI_LAYER_ZSTD,
            "a built layer of a --compression zstd build is {}",
            l["mediaType"]
        );
    }
    let run = w.env.run(&image, Network::None, &[])?;
    ensure!(
        run.stdout == "built\nhello\n",
        "zstd image printed {:?}",
        run.stdout
    );
    Ok(())
}

// --- secrets ---

#[test]
fn secrets_never_reach_the_image() -> Result<()> {
    let w = World::start()?;
    let secret_value = format!("s3cr3t-{}", unique_name("value"));
    let secret_file = w.env.scratch.join("secret.txt");
    write_file(&secret_file, &secret_value)?;
    // The Dockerfile names the secret's hash only (its text is in the
    // image's history).
    let hash = sha256_digest(secret_value.as_bytes());
    let hash = hash.trim_start_matches("sha256:");
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\n\
             RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null \
                 && sha256sum < /run/secrets/s | grep -q {hash} && echo seen > /seen\n\
             RUN --mount=type=secret,id=s,env=TOKEN printf %s \"$TOKEN\" | sha256sum | grep -q {hash} \
                 && echo env > /env\n",
            w.base
        ),
        &[],
    )?;
    let layout = w.env.scratch.join("layout");
    let repo = unique_repo("secrets");
    let image = w.env.registry.image(&repo, "latest");
    kiln_build(
        &w.dir("root")?,
        &ctx,
        &[
            "--secret",
            &format!("id=s,src={}", secret_file.display()),
            "-t",
            &image,
            "--push",
            "--tls-verify=false",
            "--output",
            &format!("oci-dir:{}", layout.display()),
        ],
        &[],
    )?
    .ok()?;
    let hits = layout_blobs_containing(&layout, secret_value.as_bytes())?;
    ensure!(hits.is_empty(), "the secret is in the blobs {hits:?}");
    // What was pushed is what was written, and holds the RUNs' results.
    let fetched = w.env.fetch(&image)?;
    for p in ["/seen", "/env"] {
        ensure!(
            fetched.snapshot.get(p).is_some(),
            "{p} missing: a RUN did not see the secret"
        );
    }
    let leftover = fetched.rootfs.join("run/secrets/s");
    ensure!(
        fs::read(&leftover).map_or(true, |b| b.is_empty()),
        "{} has content in the image",
        leftover.display()
    );

    // A required secret that was not given.
    let ctx = context(
        &w.dir("ctx-missing")?,
        &format!(
            "FROM {}\nRUN true\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n",
            w.base
        ),
        &[],
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    expect_failure(
        kiln_build(&w.dir("root-missing")?, &ctx, &[], &[])?,
        &[
            &format!("{df}:3:"),
            "secret \"missing\" is required but was not given",
        ],
    )?;
    Ok(())
}

// --- isolation of RUN ---

/// The lines a build's RUN printed between `BEGIN name` and `END name`.
fn section<'a>(stderr: &'a str, name: &str) -> Result<Vec<&'a str>> {
    let begin = format!("BEGIN {name}");
    let end = format!("END {name}");
    let mut lines = stderr.lines().skip_while(|l| l.trim() != begin);
    ensure!(lines.next().is_some(), "no `{begin}` in:\n{stderr}");
    Ok(lines.take_while(|l| l.trim() != end).collect())
}

/// A host directory the sandbox must not see; removed when dropped.
struct HostMarker(PathBuf);

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_is_isolated_from_the_host() -> Result<()> {
    let w = World::start()?;
    let marker_name = unique_name("kiln-host-marker");
    let marker = HostMarker(PathBuf::from("/tmp").join(&marker_name));
    fs::create_dir_all(&marker.0)?;
    let host_pid1 = fs::read("/proc/1/cmdline")?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\n\
             RUN echo BEGIN tmp; ls -a /tmp /; echo END tmp; \
                 echo BEGIN pid1; tr '\\0' ' ' < /proc/1/cmdline; echo; echo \"self $$\"; echo END pid1; \
                 echo BEGIN net; cat /proc/net/dev; echo END net\n",
            w.base
        ),
        &[],
    )?;
    let out = kiln_build(&w.dir("root")?, &ctx, &["--network", "none"], &[])?.ok()?;
    let listing = section(&out.stderr, "tmp")?;
    ensure!(
        !listing.iter().any(|l| l.contains(&marker_name)),
        "RUN sees the host's {}: {listing:?}",
        marker.0.display()
    );
    ensure!(
        listing.iter().any(|l| l.trim() == "bin"),
        "`ls -a /tmp /` shows no /bin: {listing:?}"
    );

    let pid1 = section(&out.stderr, "pid1")?;
    let host = String::from_utf8_lossy(&host_pid1).replace('\0', " ");
    let sandbox_pid1 = pid1.first().map(|l| l.trim()).unwrap_or("");
    // The sandbox's init is kiln's helper (or the shell itself).
    ensure!(
        sandbox_pid1 != host.trim()
            && (sandbox_pid1.contains("__helper") || sandbox_pid1.contains("sh")),
        "RUN's /proc/1/cmdline is the host's init ({host:?}): {pid1:?}"
    );
    let own_pid: u32 = pid1
        .iter()
        .find_map(|l| l.trim().strip_prefix("self "))
        .context("no `self $$` line")?
        .parse()?;
    ensure!(
        own_pid <= 3,
        "the RUN shell is pid {own_pid}: not in a PID namespace of its own ({pid1:?})"
    );

    let net = section(&out.stderr, "net")?;
    let interfaces: Vec<&str> = net
        .iter()
        .filter_map(|l| l.split_once(':').map(|(i, _)| i.trim()))
        .filter(|i| !i.is_empty() && !i.contains('|'))
        .collect();
    ensure!(
        interfaces == ["lo"],
        "--network none: RUN sees interfaces {interfaces:?}:\n{}",
        net.join("\n")
    );
    Ok(())
}

/// Without SOURCE_DATE_EPOCH a build that changes nothing still gives the
/// same image: cached steps keep the time they first ran, as BuildKit's and
/// buildah's cached images do, so a rebuild does not move tags.
#[test]
fn no_change_rebuild_gives_the_same_image() -> Result<()> {
    let w = World::start()?;
    let root = w.dir("root")?;
    let ctx = context(
        &w.dir("ctx")?,
        &cache_dockerfile(&w.base, "echo two > /two"),
        &[("a.txt", "a\n"), ("b.txt", "b\n")],
    )?;
    let first = quiet_digest(&kiln_build(&root, &ctx, &["-q"], &[])?.ok()?)?;
    std::thread::sleep(Duration::from_millis(1100));
    let second = quiet_digest(&kiln_build(&root, &ctx, &["-q"], &[])?.ok()?)?;
    ensure!(
        first == second,
        "rebuild gave {second}, first build {first}"
    );
    Ok(())
}

/// `-v HOST:CONTAINER:ro` (how the build service injects package
/// repositories): every RUN sees the file, no layer holds it, and a change
/// of its content re-runs the steps that saw it.
#[test]
fn volumes_reach_run_steps_but_no_layer() -> Result<()> {
    let w = World::start()?;
    let root = w.dir("root")?;
    let vol = w.dir("vol")?;
    let repo = vol.join("kiln-test.repo");
    write_file(
        &repo,
        "[kiln-test]\nbaseurl=http://127.0.0.1:1/repo-marker-one\n",
    )?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {}\nRUN grep -c repo-marker /etc/yum.repos.d/kiln-test.repo > /seen\n",
            w.base
        ),
        &[],
    )?;
    let out_dir = w.env.scratch.join("out");
    let volume = format!("{}:/etc/yum.repos.d/kiln-test.repo:ro", repo.display());
    let output = format!("oci-dir:{}", out_dir.display());
    let args = [
        "-q",
        "-t",
        "localhost/vol:1",
        "-v",
        &volume,
        "--output",
        &output,
    ];
    let out = kiln_build(&root, &ctx, &args, &[])?.ok()?;
    ensure!(summary(&out.stderr)? == (0, 1), "{}", out.stderr);
    let holders = layout_blobs_containing(&out_dir, b"repo-marker-one")?;
    ensure!(holders.is_empty(), "the mounted file reached {holders:?}");
    // Same content: cached. New content: the RUN runs again.
    let again = kiln_build(&root, &ctx, &args, &[])?.ok()?;
    ensure!(summary(&again.stderr)? == (1, 0), "{}", again.stderr);
    write_file(
        &repo,
        "[kiln-test]\nbaseurl=http://127.0.0.1:1/repo-marker-two\n",
    )?;
    let changed = kiln_build(&root, &ctx, &args, &[])?.ok()?;
    ensure!(summary(&changed.stderr)? == (0, 1), "{}", changed.stderr);
    Ok(())
}

// --- pinned base images (--build-context NAME=docker-image://REF) ---

/// The layer digests of a pushed manifest.
fn layer_digests(manifest: &Value) -> Result<Vec<String>> {
    manifest["layers"]
        .as_array()
        .context("manifest without layers")?
        .iter()
        .map(|l| {
            l["digest"]
                .as_str()
                .map(str::to_owned)
                .context("layer without digest")
        })
        .collect()
}

/// How automatic rebuilds build a child on its parent's new digest: the
/// Dockerfile names `busybox:latest`, the pin puts another image (by
/// digest) in its place for FROM and for `COPY --from`.
#[test]
fn build_context_pins_a_base_image_to_another_reference() -> Result<()> {
    let w = World::start()?;
    let root = w.dir("root")?;

    // The image the pin points at: the base plus /marker, by digest.
    let parent_ctx = context(
        &w.dir("parent")?,
        &format!("FROM {}\nRUN echo pinned-marker > /marker\n", w.base),
        &[],
    )?;
    let parent_repo = unique_repo("pinned-parent");
    let parent_tag = w.env.registry.image(&parent_repo, "latest");
    let out = kiln_build(
        &root,
        &parent_ctx,
        &["-q", "-t", &parent_tag, "--push", "--tls-verify=false"],
        &[],
    )?
    .ok()?;
    let parent_digest = quiet_digest(&out)?;
    let pinned = format!("{}/{parent_repo}@{parent_digest}", w.env.registry.addr());
    let parent_manifest = w
        .env
        .registry
        .get_manifest(&parent_repo, &parent_digest)?
        .json()?;
    let parent_layers = layer_digests(&parent_manifest)?;

    let child_ctx = context(
        &w.dir("child")?,
        &format!(
            "FROM {base}\nCOPY --from={base} /marker /copied\nRUN cat /marker /copied\n",
            base = w.base
        ),
        &[],
    )?;
    // Unpinned, the name is the plain base, which has no /marker.
    expect_failure(
        kiln_build(&w.dir("root-unpinned")?, &child_ctx, &[], &[])?,
        &["/marker"],
    )?;

    let child_repo = unique_repo("pinned-child");
    let child_tag = w.env.registry.image(&child_repo, "latest");
    let pin = format!("{}=docker-image://{pinned}", w.base);
    let unused = format!("unused.example/nothing:1=docker-image://{pinned}");
    let out = kiln_build(
        &root,
        &child_ctx,
        &[
            "-t",
            &child_tag,
            "--push",
            "--tls-verify=false",
            "--build-context",
            &pin,
            "--build-context",
            &unused,
        ],
        &[],
    )?
    .ok()?;
    let using = format!("Using {pinned} for {} (pinned)", w.base);
    ensure!(
        out.stderr.lines().filter(|l| l.trim() == using).count() == 2,
        "expected `{using}` for FROM and COPY --from:\n{}",
        out.stderr
    );
    let markers = out
        .stderr
        .lines()
        .filter(|l| l.trim() == "pinned-marker")
        .count();
    ensure!(
        markers == 2,
        "RUN cat /marker /copied printed {markers} markers:\n{}",
        out.stderr
    );
    let warning = format!(
        "[Warning] unused.example/nothing:1 was pinned to {pinned}, \
         but no stage built uses unused.example/nothing:1"
    );
    ensure!(
        out.stderr.contains(&warning),
        "no `{warning}`:\n{}",
        out.stderr
    );
    ensure!(
        !out.stderr
            .contains(&format!("no stage built uses {}", w.base)),
        "the used pin was reported unused:\n{}",
        out.stderr
    );
    let child = w.env.registry.get_manifest(&child_repo, "latest")?.json()?;
    let child_layers = layer_digests(&child)?;
    ensure!(
        child_layers.len() > parent_layers.len() && child_layers.starts_with(&parent_layers),
        "the child's layers {child_layers:?} do not extend the pinned image's {parent_layers:?}"
    );
    Ok(())
}

#[test]
fn build_context_takes_only_images() -> Result<()> {
    let s = Scratch::new("behaviour-build-context")?;
    let ctx = context(&s.join("ctx"), "FROM scratch\n", &[])?;
    let root = s.mkdir("root")?;
    for (value, needle) in [
        (
            "base=oci-layout:///tmp/layout",
            "oci-layout:// sources are not supported",
        ),
        ("base=./dir", "local directories are not supported"),
        ("base", "expected NAME=docker-image://REF"),
    ] {
        expect_failure(
            kiln_build(&root, &ctx, &["--build-context", value], &[])?,
            &["--build-context", needle, "NAME=docker-image://REF"],
        )?;
    }
    Ok(())
}
