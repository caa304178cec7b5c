//! Builds one Dockerfile with two builders and compares the results.
//!
//! The reference builder is `buildah bud` (private storage, `--layers`);
//! the candidate is `kiln build` (or, until it exists, a second buildah in
//! fresh storage, to check the harness itself). Both push to a
//! [`KilnRegistry`]; each image is then fetched back the same way (skopeo
//! copy to an OCI layout, `umoci raw unpack`), so the comparison sees only
//! what the builders did:
//! - the unpacked root filesystems must be equal ([`rootfs::diff`]: modes,
//!   owners, contents, symlinks, hardlinks, xattrs; not mtimes), except
//!   for the few paths of [`buildah_leftovers`];
//! - the image configs must agree on [`CONFIG_FIELDS`] ([`config_diff`]);
//! - both manifests must have the same media type (OCI or Docker v2s2).
//!
//! A corpus entry is a directory `tests/corpus/NAME/` with a Dockerfile that
//! starts `ARG BASE` + `FROM ${BASE}`; the harness passes
//! `--build-arg BASE=127.0.0.1:PORT/kiln-e2e/busybox:latest`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::containers::ContainerTools;
use super::fixtures::repo_root;
use super::process::{Output, RunExt, RunOpts};
use super::registry::{KilnRegistry, RegistryServer, kiln_bin};
use super::rootfs::{self, Ignore, Snapshot};
use super::scratch::Scratch;
use super::unique_repo;

/// A build may pull a base image, run many steps and push: more than one
/// client command's default timeout.
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Who builds an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builder {
    /// `buildah bud --layers` in fresh private storage.
    Buildah,
    /// `kiln build --push` with the binary at this path and a fresh `--root`.
    Kiln(PathBuf),
}

impl Builder {
    /// `kiln build` with the binary Cargo built for these tests.
    pub fn kiln() -> Self {
        Builder::Kiln(kiln_bin())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Builder::Buildah => "buildah",
            Builder::Kiln(_) => "kiln",
        }
    }
}

/// The image format asked of the builders (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    /// Docker v2s2: needed for HEALTHCHECK, SHELL and ONBUILD, which OCI
    /// image configs cannot hold.
    Docker,
}

impl Format {
    fn flag(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
        }
    }
}

/// `--network` for RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    None,
    Host,
}

impl Network {
    fn flag(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Host => "host",
        }
    }
}

/// What to build: a prepared context directory and the build options.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Short name, used in repository names and reports.
    pub name: String,
    pub context: PathBuf,
    /// The Dockerfile (`-f`).
    pub dockerfile: PathBuf,
    /// What buildah builds instead of `dockerfile` when the Dockerfile uses
    /// syntax buildah 1.28 lacks (heredocs): an equivalent Dockerfile that
    /// must produce the same image.
    pub reference_dockerfile: Option<PathBuf>,
    /// `--build-arg`s besides `BASE`.
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub target: Option<String>,
    /// `--secret id=ID,src=PATH`.
    pub secrets: Vec<(String, PathBuf)>,
    pub format: Format,
    pub network: Network,
    /// Built first by the same builder and pushed; its image becomes this
    /// build's `BASE` (ONBUILD tests).
    pub parent: Option<Box<BuildSpec>>,
}

impl BuildSpec {
    /// A spec for the context `context` with its `Dockerfile` (and
    /// `Dockerfile.reference` when present); OCI format, no network.
    pub fn new(name: &str, context: &Path) -> Self {
        let reference = context.join("Dockerfile.reference");
        Self {
            name: name.to_owned(),
            context: context.to_owned(),
            dockerfile: context.join("Dockerfile"),
            reference_dockerfile: reference.exists().then_some(reference),
            build_args: Vec::new(),
            labels: Vec::new(),
            target: None,
            secrets: Vec::new(),
            format: Format::Oci,
            network: Network::None,
            parent: None,
        }
    }
}

/// `crates/kiln/tests/corpus`.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Copies the corpus entry `name` to `dest` (which the test may then add
/// generated files to) and returns a spec for it.
pub fn prepare_corpus(name: &str, dest: &Path) -> Result<BuildSpec> {
    let src = corpus_dir().join(name);
    ensure!(
        src.join("Dockerfile").is_file(),
        "corpus entry {} has no Dockerfile",
        src.display()
    );
    fs::create_dir_all(dest).with_context(|| format!("mkdir {}", dest.display()))?;
    Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dest)
        .run_ok()?;
    Ok(BuildSpec::new(name, dest))
}

/// Runs a fixture script in `scripts/fixtures/` in place mode (`-`): it
/// prints the path of the cached fixture, which the caller must not modify.
pub fn cached_fixture(script: &str) -> Result<PathBuf> {
    let path = repo_root().join("scripts/fixtures").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .arg("-")
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    let dir = PathBuf::from(out.last_line());
    ensure!(
        dir.join("done").is_file(),
        "{} printed {:?}, not a finished fixture directory",
        path.display(),
        out.last_line()
    );
    Ok(dir)
}

/// An image fetched back from the registry and unpacked.
#[derive(Debug)]
pub struct FetchedImage {
    /// `127.0.0.1:PORT/repo:tag`.
    pub image: String,
    pub manifest: Value,
    /// The raw image config (Docker or OCI, as pushed).
    pub config: Value,
    /// The image as an OCI layout (tag `image`).
    pub layout: PathBuf,
    pub rootfs: PathBuf,
    pub snapshot: Snapshot,
}

impl FetchedImage {
    /// The `config` object of the image config (Env, Cmd ...).
    pub fn container_config(&self) -> &Value {
        &self.config["config"]
    }
}

/// A registry and the tools to build into it and fetch from it.
pub struct BuildEnv {
    pub registry: KilnRegistry,
    /// skopeo for fetching, podman for running results.
    pub tools: ContainerTools,
    pub scratch: Scratch,
}

impl BuildEnv {
    pub fn start() -> Result<Self> {
        let registry = KilnRegistry::start()?;
        let tools = ContainerTools::new(&[&registry.addr()])?;
        let scratch = Scratch::new("buildcmp")?;
        Ok(Self {
            registry,
            tools,
            scratch,
        })
    }

    /// Pushes the tag `tag` of the OCI layout `layout` to `repo:latest`;
    /// returns the image reference `127.0.0.1:PORT/repo:latest`.
    pub fn push_layout(&self, layout: &Path, tag: &str, repo: &str) -> Result<String> {
        self.tools
            .skopeo()
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(self.registry.docker_ref(repo, "latest"))
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
            .ok()?;
        Ok(self.registry.image(repo, "latest"))
    }

    /// The busybox-full fixture pushed as `kiln-e2e/busybox:latest`.
    pub fn push_busybox_base(&self) -> Result<String> {
        let fx = cached_fixture("busybox-full-image.sh")?;
        self.push_layout(&fx.join("oci"), "latest", "kiln-e2e/busybox")
    }

    /// The dnf-base fixture pushed as `kiln-e2e/dnf-base:latest`.
    pub fn push_dnf_base(&self) -> Result<String> {
        let fx = cached_fixture("dnf-base-image.sh")?;
        self.push_layout(&fx.join("oci"), "latest", "kiln-e2e/dnf-base")
    }

    /// Builds `spec` (its parent first, if any) with `builder`, passing
    /// `BASE=base`, and pushes the result to `image` (a reference into the
    /// test registry).
    pub fn build(
        &self,
        builder: &Builder,
        spec: &BuildSpec,
        base: &str,
        image: &str,
    ) -> Result<()> {
        let work = Scratch::new_in(
            self.scratch.path(),
            &format!("{}-{}", builder.name(), spec.name),
        )?;
        let storage = match builder {
            Builder::Buildah => Some(ContainerTools::new(&[&self.registry.addr()])?),
            Builder::Kiln(_) => None,
        };
        let base = match &spec.parent {
            Some(parent) => {
                let parent_image = format!("{image}-parent");
                self.build_one(
                    builder,
                    storage.as_ref(),
                    &work,
                    parent,
                    base,
                    &parent_image,
                )?;
                parent_image
            }
            None => base.to_owned(),
        };
        self.build_one(builder, storage.as_ref(), &work, spec, &base, image)
    }

    fn build_one(
        &self,
        builder: &Builder,
        storage: Option<&ContainerTools>,
        work: &Scratch,
        spec: &BuildSpec,
        base: &str,
        image: &str,
    ) -> Result<()> {
        let mut args: Vec<String> = vec![format!("--build-arg=BASE={base}")];
        for (k, v) in &spec.build_args {
            args.push(format!("--build-arg={k}={v}"));
        }
        for (k, v) in &spec.labels {
            args.push(format!("--label={k}={v}"));
        }
        if let Some(t) = &spec.target {
            args.push(format!("--target={t}"));
        }
        for (id, src) in &spec.secrets {
            args.push(format!("--secret=id={id},src={}", src.display()));
        }
        args.push(format!("--format={}", spec.format.flag()));
        args.push(format!("--network={}", spec.network.flag()));
        args.push("--tls-verify=false".to_owned());

        match (builder, storage) {
            (Builder::Buildah, Some(tools)) => {
                let dockerfile = spec
                    .reference_dockerfile
                    .as_ref()
                    .unwrap_or(&spec.dockerfile);
                let local = format!("localhost/kiln-e2e/{}:latest", spec.name);
                tools
                    .buildah()
                    .args(["bud", "--layers"])
                    .args(&args)
                    .arg("-f")
                    .arg(dockerfile)
                    .args(["-t", &local])
                    .arg(&spec.context)
                    .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
                    .ok()?;
                let push_format = match spec.format {
                    Format::Oci => "oci",
                    Format::Docker => "v2s2",
                };
                tools
                    .buildah()
                    .args([
                        "push",
                        "--tls-verify=false",
                        "--format",
                        push_format,
                        &local,
                    ])
                    .arg(format!("docker://{image}"))
                    .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
                    .ok()?;
            }
            (Builder::Kiln(bin), _) => {
                let root = work.mkdir("kiln-root")?;
                kiln_build(bin, &root, spec, &args, image)?;
            }
            (Builder::Buildah, None) => bail!("buildah build without storage"),
        }
        Ok(())
    }

    /// Fetches `image` from the test registry into an OCI layout and
    /// unpacks it (umoci) into a fresh directory; snapshots the result.
    pub fn fetch(&self, image: &str) -> Result<FetchedImage> {
        let dir = self.scratch.mkdir(format!(
            "fetched-{}",
            image.rsplit('/').next().unwrap_or(image).replace(':', "-")
        ))?;
        let layout = dir.join("oci");
        let rootfs = dir.join("rootfs");
        let docker_ref = format!("docker://{image}");
        let manifest = json_of(
            self.tools
                .skopeo()
                .args(["inspect", "--tls-verify=false", "--raw", &docker_ref])
                .run_ok()?,
        )?;
        let config = json_of(
            self.tools
                .skopeo()
                .args([
                    "inspect",
                    "--tls-verify=false",
                    "--raw",
                    "--config",
                    &docker_ref,
                ])
                .run_ok()?,
        )?;
        self.tools
            .skopeo()
            .args(["copy", "-q", "--src-tls-verify=false", &docker_ref])
            .arg(format!("oci:{}:image", layout.display()))
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
            .ok()?;
        Command::new("umoci")
            .args(["raw", "unpack", "--image"])
            .arg(format!("{}:image", layout.display()))
            .arg(&rootfs)
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
            .ok()?;
        let snapshot = Snapshot::take(&rootfs)?;
        Ok(FetchedImage {
            image: image.to_owned(),
            manifest,
            config,
            layout,
            rootfs,
            snapshot,
        })
    }

    /// `podman run --rm IMAGE ARGS...` (pulled from the test registry),
    /// with the spec's network; fails unless it exits 0.
    pub fn run(&self, image: &str, network: Network, args: &[&str]) -> Result<Output> {
        self.tools
            .podman()
            .args([
                "run",
                "--rm",
                "--tls-verify=false",
                "--network",
                network.flag(),
                image,
            ])
            .args(args)
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
            .ok()
    }

    /// Builds `spec` with `reference` and `candidate`, fetches both images
    /// and fails with a report unless their root filesystems (minus
    /// `ignore`), config fields and manifest media types agree.
    pub fn compare(
        &self,
        spec: &BuildSpec,
        base: &str,
        reference: &Builder,
        candidate: &Builder,
        ignore: &Ignore,
    ) -> Result<Comparison> {
        let repo = unique_repo(&spec.name);
        let ref_image = self.registry.image(&format!("{repo}-ref"), "latest");
        let cand_image = self.registry.image(&format!("{repo}-cand"), "latest");
        self.build(reference, spec, base, &ref_image)
            .with_context(|| format!("{} build of {}", reference.name(), spec.name))?;
        self.build(candidate, spec, base, &cand_image)
            .with_context(|| format!("{} build of {}", candidate.name(), spec.name))?;
        let reference_img = self.fetch(&ref_image)?;
        let candidate_img = self.fetch(&cand_image)?;

        let (ref_name, cand_name) = side_names(reference, candidate);
        let mut problems = Vec::new();
        let fs_diff = rootfs::diff(
            &ref_name,
            &reference_img.snapshot,
            &cand_name,
            &candidate_img.snapshot,
            ignore,
        );
        if !fs_diff.is_empty() {
            problems.push(format!("root filesystems differ: {fs_diff}"));
        }
        let cfg = config_diff(&reference_img.config, &candidate_img.config);
        if !cfg.is_empty() {
            problems.push(format!(
                "image configs differ ({ref_name} | {cand_name}):\n  {}",
                cfg.join("\n  ")
            ));
        }
        let (rm, cm) = (
            &reference_img.manifest["mediaType"],
            &candidate_img.manifest["mediaType"],
        );
        if rm != cm {
            problems.push(format!("manifest media types differ: {rm} | {cm}"));
        }
        eprintln!(
            "compared {}: {} paths; layers {ref_name} {} | {cand_name} {}",
            spec.name,
            reference_img.snapshot.len(),
            layer_count(&reference_img.manifest),
            layer_count(&candidate_img.manifest),
        );
        if !problems.is_empty() {
            bail!(
                "{} built by {ref_name} ({}) and {cand_name} ({}) differ:\n{}",
                spec.name,
                reference_img.image,
                candidate_img.image,
                problems.join("\n")
            );
        }
        Ok(Comparison {
            reference: reference_img,
            candidate: candidate_img,
        })
    }
}

/// Both images of a successful [`BuildEnv::compare`].
#[derive(Debug)]
pub struct Comparison {
    pub reference: FetchedImage,
    pub candidate: FetchedImage,
}

fn side_names(reference: &Builder, candidate: &Builder) -> (String, String) {
    if reference.name() == candidate.name() {
        (
            format!("{} (reference)", reference.name()),
            format!("{} (candidate)", candidate.name()),
        )
    } else {
        (reference.name().to_owned(), candidate.name().to_owned())
    }
}

fn layer_count(manifest: &Value) -> usize {
    manifest["layers"].as_array().map_or(0, Vec::len)
}

fn json_of(out: Output) -> Result<Value> {
    serde_json::from_str(&out.stdout)
        .with_context(|| format!("`{}` printed no JSON: {}", out.cmdline, out.stdout))
}

/// `kiln build` as the harness expects it to work: builds `spec.context`
/// with the shared flags `args` (build args, labels, target, secrets,
/// format, network, `--tls-verify=false`), tags the result `image` and
/// pushes it there; `root` is its private store.
pub fn kiln_build(
    bin: &Path,
    root: &Path,
    spec: &BuildSpec,
    args: &[String],
    image: &str,
) -> Result<Output> {
    Command::new(bin)
        .env("NO_COLOR", "1")
        .arg("build")
        .arg("--root")
        .arg(root)
        .arg("-f")
        .arg(&spec.dockerfile)
        .args(["-t", image])
        .args(args)
        .arg("--push")
        .arg(&spec.context)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()
}

/// Paths `buildah bud` leaves in images by design: the mount points of the
/// files it bind-mounts into every RUN container (created empty when the
/// base image lacks them), and `/run/secrets` (its secrets mount point).
/// Only these exact paths: anything written below `/run/secrets` still
/// counts.
pub fn buildah_leftovers() -> Ignore {
    Ignore::new([
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/run",
        "/run/secrets",
    ])
}

/// The image config fields a Dockerfile decides, compared by [`config_diff`].
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Labels a builder adds on its own, left out of the comparison.
pub const BUILDER_LABELS: &[&str] = &["io.buildah.version"];

/// Differences between two raw image configs in [`CONFIG_FIELDS`] (and
/// `os`/`architecture`), one readable line each. Absent, `null`, `""`,
/// `[]` and `{}` count as the same (builders differ in which they write).
pub fn config_diff(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for top in ["os", "architecture"] {
        if normalized(&a[top]) != normalized(&b[top]) {
            out.push(format!("{top}: {} | {}", a[top], b[top]));
        }
    }
    for field in CONFIG_FIELDS {
        let (mut x, mut y) = (
            normalized(&a["config"][field]),
            normalized(&b["config"][field]),
        );
        if *field == "Labels" {
            for v in [&mut x, &mut y] {
                if let Value::Object(m) = v {
                    for l in BUILDER_LABELS {
                        m.remove(*l);
                    }
                }
                *v = normalized(v);
            }
        }
        if x != y {
            out.push(format!("{field}: {x} | {y}"));
        }
    }
    out
}

fn normalized(v: &Value) -> Value {
    match v {
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        other => other.clone(),
    }
}

/// Writes a deterministic directory tree below `root` for COPY tests:
/// `dirs` nested directories (up to three levels), `files` files spread
/// over them, sizes from 0 to `max_size` bytes, contents from a fixed
/// pseudo-random sequence (the same every run). Returns the total size.
pub fn generate_tree(root: &Path, dirs: usize, files: usize, max_size: usize) -> Result<u64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*: cheap and deterministic; quality is irrelevant here.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut dir_paths = vec![root.to_owned()];
    for i in 0..dirs {
        let parent_idx = usize::try_from(next() % dir_paths.len() as u64).unwrap_or(0);
        let parent = dir_paths[parent_idx].clone();
        let depth = parent
            .strip_prefix(root)
            .map_or(0, |p| p.components().count());
        let parent = if depth >= 3 { root.to_owned() } else { parent };
        let d = parent.join(format!("dir-{i:03}"));
        fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
        dir_paths.push(d);
    }
    let mut total = 0u64;
    for i in 0..files {
        let dir_idx = usize::try_from(next() % dir_paths.len() as u64).unwrap_or(0);
        let size = usize::try_from(next() % (max_size as u64 + 1)).unwrap_or(0);
        let mut data = Vec::with_capacity(size + 8);
        while data.len() < size {
            data.extend_from_slice(&next().to_le_bytes());
        }
        data.truncate(size);
        let p = dir_paths[dir_idx].join(format!("file-{i:04}.bin"));
        fs::write(&p, &data).with_context(|| format!("write {}", p.display()))?;
        total += size as u64;
    }
    Ok(total)
}
