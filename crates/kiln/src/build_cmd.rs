//! `kiln build`: flags → `kiln_build::BuildOptions`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_build::image::Format;
use kiln_build::output::Output;
use kiln_build::{
    BuildOptions, Compression, HelperCommand, Network, Progress, PullPolicy, RunMount, SecretSource,
};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile, or CONTEXT/Containerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Name the image (repeatable); with --push, where it is pushed.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Set a build argument (K=V, or K to take it from the environment).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Add a label to the image (K=V).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Build this stage and the stages it needs.
    #[arg(long)]
    target: Option<String>,
    /// Network of RUN steps: host (default) or none.
    #[arg(long, default_value = "host")]
    network: Network,
    /// Do not use the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Pull policy for base images: always (the bare flag), missing, never.
    #[arg(long, num_args = 0..=1, default_missing_value = "always", default_value = "missing")]
    pull: String,
    /// Image format: oci (default) or docker.
    #[arg(long, default_value = "oci")]
    format: String,
    /// Layer compression: gzip (default), zstd, none.
    #[arg(long, default_value = "gzip")]
    compression: Compression,
    /// A build secret: id=ID,src=PATH or id=ID,env=VAR.
    #[arg(long = "secret")]
    secrets: Vec<SecretSource>,
    /// Bind-mount a host path into every RUN step: HOST:CONTAINER[:ro|rw]
    /// (never part of a layer).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<RunMount>,
    /// Push the image to every -t reference.
    #[arg(long)]
    push: bool,
    /// Verify TLS certificates of registries and downloads.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// Also write the image as oci-dir:PATH or oci-archive:PATH.
    #[arg(long = "output", short = 'o')]
    outputs: Vec<Output>,
    /// The builder's store (layers, blobs, build cache).
    #[arg(long, env = "KILN_BUILD_ROOT")]
    root: Option<PathBuf>,
    /// Print only the image digest on stdout at the end (progress still goes to stderr).
    #[arg(short, long)]
    quiet: bool,
    /// The build context directory.
    context: PathBuf,
}

fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/lib/kiln/build")
    } else {
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("kiln/build")
    }
}

fn key_values(
    items: &[String],
    what: &str,
    env_fallback: bool,
) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            None if env_fallback && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    map.insert(item.clone(), v);
                }
            }
            _ => bail!("{what} {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(map)
}

pub async fn run(args: BuildArgs) -> Result<()> {
    let pull = match args.pull.as_str() {
        "always" | "true" => PullPolicy::Always,
        "missing" | "false" => PullPolicy::Missing,
        "never" => PullPolicy::Never,
        other => bail!("--pull={other}: use always, missing or never"),
    };
    let format = match args.format.as_str() {
        "oci" => Format::Oci,
        "docker" => Format::Docker,
        other => bail!("--format={other}: use oci or docker"),
    };
    if args.push && args.tags.is_empty() {
        bail!("--push needs at least one -t REGISTRY/NAME:TAG");
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        _ => None,
    };
    let exe = std::env::current_exe().context("locating the kiln binary for its helper")?;
    let opts = BuildOptions {
        context: args.context,
        dockerfile: args.file,
        tags: args.tags,
        build_args: key_values(&args.build_args, "--build-arg", true)?,
        labels: key_values(&args.labels, "--label", false)?,
        target: args.target,
        network: args.network,
        no_cache: args.no_cache,
        pull,
        format,
        compression: args.compression,
        secrets: args.secrets,
        push: args.push,
        tls_verify: args.tls_verify,
        outputs: args.outputs,
        root: args.root.unwrap_or_else(default_root),
        source_date_epoch,
        helper: HelperCommand {
            program: exe,
            args: vec![HELPER_SUBCOMMAND.to_string()],
        },
        run_mounts: args.volumes,
    };
    anyhow::ensure!(
        opts.context.is_dir(),
        "build context {} is not a directory",
        opts.context.display()
    );
    let result = kiln_build::build(opts, Progress::stderr()).await?;
    if args.quiet {
        println!("{}", result.manifest_digest);
    } else {
        eprintln!("{}", result.manifest_digest);
    }
    Ok(())
}

/// argv[1] of the helper process (sandboxes and file operations).
pub const HELPER_SUBCOMMAND: &str = "__helper";

/// Runs a helper mode if argv asks for one; must be called before any
/// thread starts.
pub fn maybe_helper() -> Option<i32> {
    let mut args = std::env::args();
    let _ = args.next();
    if args.next().as_deref() != Some(HELPER_SUBCOMMAND) {
        return None;
    }
    match args.next().as_deref() {
        Some("sandbox") => kiln_sandbox::helper_main(),
        Some("fileop") => Some(kiln_build::fileop::helper_main()),
        other => {
            eprintln!("kiln {HELPER_SUBCOMMAND}: unknown mode {other:?}");
            Some(2)
        }
    }
}
