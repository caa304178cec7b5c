//! `kiln build`: flags → `kiln_build::BuildOptions`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln_build::image::Format;
use kiln_build::output::Output;
use kiln_build::{
    BuildOptions, Compression, HelperCommand, Network, Progress, PullPolicy, RunMount,
    SecretSource, SshSource,
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
    /// An ssh agent for RUN --mount=type=ssh,id=ID (repeatable):
    /// ID=SOCKET forwards an agent, ID=KEY[,KEY...] serves unencrypted
    /// ed25519 key files (other keys: through an ssh-agent's socket); a
    /// bare ID (`default`) takes $SSH_AUTH_SOCK.
    #[arg(long = "ssh", value_name = "ID[=SOCKET|KEY[,KEY...]]")]
    ssh: Vec<SshSource>,
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
    /// Build on another image wherever FROM, COPY --from or RUN
    /// --mount=from names NAME: NAME=docker-image://REF (repeatable).
    #[arg(long = "build-context", value_name = "NAME=docker-image://REF")]
    build_contexts: Vec<String>,
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

/// `--ssh ID` without a path means the caller's agent, as with buildx.
fn ssh_sources(
    mut sources: Vec<SshSource>,
    auth_sock: Option<&std::ffi::OsStr>,
) -> Result<Vec<SshSource>> {
    for s in &mut sources {
        if s.paths.is_empty() {
            match auth_sock.filter(|v| !v.is_empty()) {
                Some(sock) => s.paths.push(PathBuf::from(sock)),
                None => bail!(
                    "--ssh {}: no path given and SSH_AUTH_SOCK is not set; \
                     start an ssh-agent or give --ssh {}=SOCKET|KEY",
                    s.id,
                    s.id
                ),
            }
        }
    }
    Ok(sources)
}

/// The one `--build-context` source kiln has: an image in a registry.
const DOCKER_IMAGE: &str = "docker-image://";

/// `--build-context NAME=docker-image://REF` values → `base_pins`.
fn build_contexts(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut pins = BTreeMap::new();
    for item in items {
        let (name, reference) = build_context(item)?;
        if pins.insert(name.clone(), reference).is_some() {
            bail!("--build-context {name}= is given twice");
        }
    }
    Ok(pins)
}

fn build_context(item: &str) -> Result<(String, String)> {
    let form = format!("use NAME={DOCKER_IMAGE}REF");
    let Some((name, source)) = item.split_once('=') else {
        bail!("--build-context {item:?}: expected NAME={DOCKER_IMAGE}REF");
    };
    if name.is_empty() {
        bail!("--build-context {item:?}: the NAME before '=' is empty; {form}");
    }
    if source.is_empty() {
        bail!("--build-context {item:?}: nothing follows '='; {form}");
    }
    let Some(reference) = source.strip_prefix(DOCKER_IMAGE) else {
        match source.split_once("://") {
            Some((scheme, _)) => {
                bail!("--build-context {item:?}: {scheme}:// sources are not supported; {form}")
            }
            None => bail!(
                "--build-context {item:?}: local directories are not supported, only images; {form}"
            ),
        }
    };
    if reference.is_empty() {
        bail!("--build-context {item:?}: the image reference after {DOCKER_IMAGE} is empty");
    }
    Ok((name.to_string(), reference.to_string()))
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
        ssh: ssh_sources(args.ssh, std::env::var_os("SSH_AUTH_SOCK").as_deref())?,
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
        base_pins: build_contexts(&args.build_contexts)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(item: &str) -> String {
        build_context(item).unwrap_err().to_string()
    }

    #[test]
    fn bare_ssh_ids_take_the_callers_agent() {
        let parse = |items: &[&str]| -> Vec<SshSource> {
            items.iter().map(|i| i.parse().unwrap()).collect()
        };
        let sock = std::ffi::OsStr::new("/tmp/ssh-x/agent.1");
        let got = ssh_sources(parse(&["default", "git=/k/id", "other="]), Some(sock)).unwrap();
        let paths: Vec<_> = got
            .iter()
            .map(|s| (s.id.as_str(), s.paths.clone()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("default", vec![PathBuf::from("/tmp/ssh-x/agent.1")]),
                ("git", vec![PathBuf::from("/k/id")]),
                ("other", vec![PathBuf::from("/tmp/ssh-x/agent.1")]),
            ]
        );
        // With paths given, no agent is needed.
        assert!(ssh_sources(parse(&["git=/k/id"]), None).is_ok());
        for unset in [None, Some(std::ffi::OsStr::new(""))] {
            let e = ssh_sources(parse(&["default"]), unset)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--ssh default: ") && e.contains("SSH_AUTH_SOCK is not set"),
                "{e}"
            );
        }
        // What clap hands over: the value parser's own errors.
        assert!("=x".parse::<SshSource>().is_err());
    }

    #[test]
    fn build_contexts_take_images() {
        assert_eq!(
            build_context(
                "127.0.0.1:8080/base/foo:latest=docker-image://127.0.0.1:8080/base/foo@sha256:ab"
            )
            .unwrap(),
            (
                "127.0.0.1:8080/base/foo:latest".to_string(),
                "127.0.0.1:8080/base/foo@sha256:ab".to_string()
            )
        );
        let items = [
            "a=docker-image://x".to_string(),
            "b=docker-image://y:1".to_string(),
        ];
        let pins = build_contexts(&items).unwrap();
        assert_eq!(pins.get("a").map(String::as_str), Some("x"));
        assert_eq!(pins.get("b").map(String::as_str), Some("y:1"));
        assert!(build_contexts(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_build_contexts_name_the_flag_and_the_form() {
        let cases = [
            ("busybox", "expected NAME=docker-image://REF"),
            ("=docker-image://x", "the NAME before '=' is empty"),
            (
                "a=docker-image://",
                "the image reference after docker-image:// is empty",
            ),
            (
                "a=oci-layout://./layout",
                "oci-layout:// sources are not supported",
            ),
            (
                "a=https://example.com/ctx.tar",
                "https:// sources are not supported",
            ),
            ("a=./dir", "local directories are not supported"),
            ("a=", "nothing follows '='"),
        ];
        for (item, needle) in cases {
            let e = err(item);
            assert!(e.starts_with("--build-context "), "{item}: {e}");
            assert!(e.contains(needle), "{item}: {e}");
            assert!(e.contains("docker-image://"), "{item}: {e}");
        }
        let twice = [
            "a=docker-image://x".to_string(),
            "a=docker-image://y".to_string(),
        ];
        let e = build_contexts(&twice).unwrap_err().to_string();
        assert!(e.contains("--build-context a= is given twice"), "{e}");
    }
}
