//! The commands that talk to a hub: `kiln container-build`, `watch-logs`,
//! `build-info`, `list-builds`, `cancel`, tags, targets, components, `login`
//! and `whoami` (the automatic-rebuild commands are in `rebuild_cmd`). Each
//! is one or two calls of the hub's REST API
//! ([`kiln_hub::client`]); what they print is plain and stable so scripts
//! can read it (tables with one record a line, `--json` for the records).

use std::ffi::OsString;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln_hub::api::protocol::{BuildFilter, SubmitBuild};
use kiln_hub::client::{ClientError, HubClient};
use kiln_hub::model::{Build, BuildState, Component, Package, PackageKind, RepoSpec, Target};

/// How long `container-build` and `watch-logs` keep trying while the hub
/// is unreachable (a restart) before giving up.
const HUB_DOWN_LIMIT: Duration = Duration::from_secs(600);
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Where the hub is and who we are; valid before or after the subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct HubArgs {
    /// The hub's URL.
    #[arg(
        long,
        env = "KILN_HUB",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub hub: String,
    /// API token (default: the one `kiln login` stored). With `login`, the
    /// token to store.
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum HubCommand {
    /// Build the Dockerfile of a git repository on the hub (dist-git).
    ContainerBuild(ContainerBuildArgs),
    /// Follow a build's log until it finishes (exit 0 when it completed).
    WatchLogs {
        /// Build id or N-V-R.
        build: String,
    },
    /// Show a build: NVR, state, source, parent, digests, tags, packages.
    BuildInfo {
        /// Build id or N-V-R.
        build: String,
        /// Print the build record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List builds, newest first.
    ListBuilds(ListBuildsArgs),
    /// Cancel a queued or running build.
    Cancel {
        /// Build id or N-V-R.
        build: String,
    },
    /// Add a build to a tag.
    TagBuild {
        tag: String,
        /// Build id or N-V-R.
        build: String,
    },
    /// Remove a build from a tag.
    UntagBuild {
        tag: String,
        /// Build id or N-V-R.
        build: String,
    },
    /// List the builds in a tag.
    ListTagged {
        tag: String,
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a build target (admin).
    AddTarget(AddTargetArgs),
    /// List the build targets.
    ListTargets {
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a component: a dist-git repository and its owners (admin).
    AddComponent {
        name: String,
        /// The repository builds of this component come from.
        #[arg(long)]
        git_url: String,
        /// A user who may build it (repeatable).
        #[arg(long = "owner")]
        owners: Vec<String>,
    },
    /// Store an API token for the other commands (--token, or read from stdin).
    Login,
    /// Show who the hub takes you for.
    Whoami,
}

#[derive(clap::Args, Debug)]
pub struct ContainerBuildArgs {
    /// The build target (default: the hub's only target).
    #[arg(long)]
    pub target: Option<String>,
    /// A scratch build: unique tag only, its NVR may repeat.
    #[arg(long, conflicts_with = "isolated")]
    pub scratch: bool,
    /// An isolated build of a given release (no floating tags).
    #[arg(long, requires = "release")]
    pub isolated: bool,
    /// With --isolated: the release to build.
    #[arg(long, requires = "isolated")]
    pub release: Option<String>,
    /// Build without the layer cache (every RUN runs again).
    #[arg(long)]
    pub no_cache: bool,
    /// Print the build id and return without waiting.
    #[arg(long)]
    pub nowait: bool,
    /// GIT_URL#REF (default: this checkout's `origin`, or the checkout
    /// itself, at its HEAD commit).
    #[arg(value_name = "GIT_URL#REF", value_parser = parse_source)]
    pub source: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ListBuildsArgs {
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(BuildState::ALL.map(BuildState::as_str)))]
    pub state: Option<String>,
    #[arg(long)]
    pub component: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Builds whose image holds this package (by name).
    #[arg(long)]
    pub package: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct AddTargetArgs {
    pub name: String,
    /// Where images are pushed (`host:port`, or `host:port/prefix`).
    #[arg(long)]
    pub registry: String,
    /// The tag completed builds go into.
    #[arg(long)]
    pub dest_tag: String,
    /// A `registry/repo` prefix a FROM may start with (repeatable).
    #[arg(long = "allowed-parent")]
    pub allowed_parents: Vec<String>,
    /// A package repository injected into builds: NAME=BASEURL (repeatable).
    #[arg(long = "repo", value_parser = parse_repo)]
    pub repos: Vec<RepoSpec>,
    /// Rebuild the latest images on the destination tag when a package in
    /// them or their parent image is updated (the hub polls --repo).
    #[arg(long)]
    pub autorebuild: bool,
}

/// Runs one command; the exit code: 0 done, 1 a build failed or was
/// canceled, 2 a usage error found after parsing. Errors (the hub refused,
/// could not be reached) are the caller's to print, with exit code 1.
pub async fn run(args: HubArgs, cmd: HubCommand) -> Result<i32> {
    match run_command(args, cmd).await {
        // `kiln list-builds | head -1`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(0),
        other => other,
    }
}

pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The client of `--hub` with `--token`, else the stored token.
pub(crate) fn connect(args: &HubArgs) -> Result<HubClient> {
    let token = match args.token.clone().filter(|t| !t.is_empty()) {
        Some(t) => Some(t),
        None => stored_token()?,
    };
    Ok(HubClient::new(&args.hub, token)?)
}

async fn run_command(args: HubArgs, cmd: HubCommand) -> Result<i32> {
    if let HubCommand::Login = cmd {
        return login(&args).await;
    }
    let client = connect(&args)?;
    // Locked only once the answer is in: a lock held across an await would
    // block the log follower's writes.
    let out = || io::stdout().lock();
    match cmd {
        HubCommand::Login => unreachable!("handled above"),
        HubCommand::ContainerBuild(a) => container_build(&client, a).await,
        HubCommand::WatchLogs { build } => {
            let id = resolve_id(&client, &build).await?;
            let b = follow_log(&client, id, &mut io::stdout()).await?;
            Ok(report_end(&b))
        }
        HubCommand::BuildInfo { build, json } => {
            let b = client.get_build(&build).await?;
            if json {
                writeln!(out(), "{}", serde_json::to_string_pretty(&b)?)?;
            } else {
                out().write_all(build_info(&b).as_bytes())?;
            }
            Ok(0)
        }
        HubCommand::ListBuilds(a) => {
            let builds = client
                .list_builds(&BuildFilter {
                    state: a.state,
                    component: a.component,
                    owner: a.owner,
                    package: a.package,
                    limit: a.limit,
                })
                .await?;
            print_builds(&mut out(), &builds, a.json)?;
            Ok(0)
        }
        HubCommand::Cancel { build } => {
            let id = resolve_id(&client, &build).await?;
            let b = client.cancel_build(id).await?;
            writeln!(out(), "build {} {}", b.id, b.state)?;
            Ok(0)
        }
        HubCommand::TagBuild { tag, build } => {
            let id = resolve_id(&client, &build).await?;
            client.tag_build(&tag, id).await?;
            writeln!(out(), "tagged build {id} into {tag}")?;
            Ok(0)
        }
        HubCommand::UntagBuild { tag, build } => {
            let id = resolve_id(&client, &build).await?;
            client.untag_build(&tag, id).await?;
            writeln!(out(), "untagged build {id} from {tag}")?;
            Ok(0)
        }
        HubCommand::ListTagged { tag, json } => {
            let builds = client.list_tagged(&tag).await?;
            print_builds(&mut out(), &builds, json)?;
            Ok(0)
        }
        HubCommand::AddTarget(a) => {
            let t = client
                .put_target(&Target {
                    name: a.name,
                    allowed_parents: a.allowed_parents,
                    repos: a.repos,
                    dest_tag: a.dest_tag,
                    registry: a.registry,
                    autorebuild: a.autorebuild,
                })
                .await?;
            out().write_all(targets_table(std::slice::from_ref(&t)).as_bytes())?;
            Ok(0)
        }
        HubCommand::ListTargets { json } => {
            let targets = client.list_targets().await?;
            if json {
                writeln!(out(), "{}", serde_json::to_string_pretty(&targets)?)?;
            } else {
                out().write_all(targets_table(&targets).as_bytes())?;
            }
            Ok(0)
        }
        HubCommand::AddComponent {
            name,
            git_url,
            owners,
        } => {
            let c = client
                .put_component(&Component {
                    name,
                    git_url,
                    owners,
                })
                .await?;
            writeln!(
                out(),
                "{} {} owners: {}",
                c.name,
                c.git_url,
                or_dash(&c.owners.join(","))
            )?;
            Ok(0)
        }
        HubCommand::Whoami => {
            let u = client.whoami().await?;
            let admin = if u.admin { " (admin)" } else { "" };
            writeln!(out(), "{}{admin}", u.name)?;
            Ok(0)
        }
    }
}

// ------------------------------------------------------ container-build --

fn parse_source(s: &str) -> Result<String, String> {
    kiln_worker::distgit::parse_source(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

async fn container_build(client: &HubClient, a: ContainerBuildArgs) -> Result<i32> {
    let source = match a.source {
        Some(s) => s,
        None => {
            let cwd = std::env::current_dir().context("finding the current directory")?;
            let co = kiln_worker::distgit::local_checkout_info(&cwd).with_context(|| {
                format!(
                    "no GIT_URL#REF given and {} is not in a usable git checkout",
                    cwd.display()
                )
            })?;
            if co.dirty {
                eprintln!(
                    "warning: {} has uncommitted changes; they are not part of the build",
                    co.workdir.display()
                );
            }
            eprintln!(
                "Building {} at {}{}",
                co.url,
                co.commit,
                co.branch
                    .as_deref()
                    .map(|b| format!(" (branch {b})"))
                    .unwrap_or_default()
            );
            format!("{}#{}", co.url, co.commit)
        }
    };
    let target = match a.target {
        Some(t) => t,
        None => match only_target(&client.list_targets().await?) {
            Ok(t) => t,
            Err(msg) => {
                eprintln!("{msg}");
                return Ok(2);
            }
        },
    };
    let build = client
        .submit_build(&SubmitBuild {
            source,
            target,
            scratch: a.scratch,
            isolated: a.isolated,
            release: a.release,
            no_cache: a.no_cache,
        })
        .await?;
    if a.nowait {
        println!("{}", build.id);
        return Ok(0);
    }
    eprintln!(
        "Created build {} (target {}); following its log (Ctrl-C stops watching, not the build; `kiln watch-logs {}` resumes)",
        build.id, build.target, build.id
    );
    let done = follow_log(client, build.id, &mut io::stderr()).await?;
    let code = report_end(&done);
    if done.state == BuildState::Complete {
        let mut out = io::stdout().lock();
        if let Some(nvr) = &done.nvr {
            writeln!(out, "{nvr}")?;
        }
        for t in &done.tags {
            writeln!(out, "{t}")?;
        }
    }
    Ok(code)
}

/// The target to use when none was named: the only one there is.
fn only_target(targets: &[Target]) -> Result<String, String> {
    match targets {
        [t] => Ok(t.name.clone()),
        [] => Err("the hub has no build targets: add one with `kiln add-target`".to_string()),
        many => Err(format!(
            "the hub has several build targets ({}): choose one with --target",
            many.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Copies the build's log to `out` as it grows until the build is
/// finished; rides out a hub restart (resuming at the byte it had reached).
async fn follow_log(client: &HubClient, id: i64, out: &mut dyn Write) -> Result<Build> {
    let mut offset = 0u64;
    let mut down_since: Option<Instant> = None;
    loop {
        let mut got = 0u64;
        let streamed = client
            .stream_log(id, offset, true, |chunk| {
                got += chunk.len() as u64;
                // A closed stdout must not stop the wait for the build.
                let _ = out.write_all(chunk).and_then(|()| out.flush());
            })
            .await;
        offset += got;
        let state = match streamed {
            Ok(_) => client.get_build(&id.to_string()).await,
            Err(e) => Err(e),
        };
        match state {
            Ok(b) if kiln_hub::domain::state::is_terminal(b.state) => return Ok(b),
            Ok(_) => {
                down_since = None;
                // The stream ended early (the hub went away between answers).
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e @ ClientError::Http { .. }) => {
                let since = *down_since.get_or_insert_with(|| {
                    eprintln!("lost the hub ({e}); retrying");
                    Instant::now()
                });
                if since.elapsed() > HUB_DOWN_LIMIT {
                    return Err(e).context(format!(
                        "the hub has been unreachable for {}s while following build {id}",
                        HUB_DOWN_LIMIT.as_secs()
                    ));
                }
                if got > 0 {
                    down_since = None;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Says how a build ended (stderr) and gives the exit code for it.
fn report_end(b: &Build) -> i32 {
    let name = b
        .nvr
        .as_ref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    match b.state {
        BuildState::Complete => {
            eprintln!("Build {}{name} complete", b.id);
            0
        }
        state => {
            let why = b
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            eprintln!("Build {}{name} {state}{why}", b.id);
            1
        }
    }
}

/// An id as is; an N-V-R looked up.
async fn resolve_id(client: &HubClient, build: &str) -> Result<i64> {
    match build.parse::<i64>() {
        Ok(id) => Ok(id),
        Err(_) => Ok(client.get_build(build).await?.id),
    }
}

// -------------------------------------------------------------- output --

pub(crate) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn print_builds(out: &mut impl Write, builds: &[Build], json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(builds)?)?;
    } else {
        out.write_all(builds_table(builds).as_bytes())?;
    }
    Ok(())
}

/// Columns padded to their widest cell, separated by two spaces, no
/// trailing blanks.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn builds_table(builds: &[Build]) -> String {
    let rows: Vec<Vec<String>> = builds
        .iter()
        .map(|b| {
            let mut flags = Vec::new();
            if b.scratch {
                flags.push("scratch");
            }
            if b.isolated {
                flags.push("isolated");
            }
            vec![
                b.id.to_string(),
                b.state.to_string(),
                b.nvr
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                b.component.clone(),
                b.owner.clone(),
                b.target.clone(),
                or_dash(&flags.join(",")).to_string(),
                b.created_at.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "NVR",
            "COMPONENT",
            "OWNER",
            "TARGET",
            "FLAGS",
            "CREATED",
        ],
        &rows,
    )
}

fn targets_table(targets: &[Target]) -> String {
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.registry.clone(),
                t.dest_tag.clone(),
                if t.autorebuild { "yes" } else { "no" }.to_string(),
                or_dash(&t.allowed_parents.join(",")).to_string(),
                or_dash(
                    &t.repos
                        .iter()
                        .map(|r| format!("{}={}", r.name, r.baseurl))
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "REGISTRY",
            "DEST-TAG",
            "AUTOREBUILD",
            "ALLOWED-PARENTS",
            "REPOS",
        ],
        &rows,
    )
}

/// `name-[epoch:]version-release.arch` for RPMs, `name_version_arch` for
/// Debian packages (each world's usual spelling).
fn package_id(p: &Package) -> String {
    match p.kind {
        PackageKind::Rpm => {
            let epoch = p.epoch.map(|e| format!("{e}:")).unwrap_or_default();
            format!("{}-{epoch}{}-{}.{}", p.name, p.version, p.release, p.arch)
        }
        PackageKind::Deb => {
            let version = if p.release.is_empty() {
                p.version.clone()
            } else {
                format!("{}-{}", p.version, p.release)
            };
            format!("{}_{version}_{}", p.name, p.arch)
        }
    }
}

fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({bytes} bytes)")
}

fn build_info(b: &Build) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("Build", b.id.to_string()),
        (
            "NVR",
            b.nvr
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_else(|| "- (not known yet)".into()),
        ),
        ("State", b.state.to_string()),
    ];
    if let Some(r) = &b.reason {
        lines.push(("Reason", r.clone()));
    }
    lines.extend([
        ("Component", b.component.clone()),
        ("Owner", b.owner.clone()),
        ("Target", b.target.clone()),
        ("Source", format!("{}#{}", b.source_url, b.source_ref)),
        ("Commit", b.commit.clone().unwrap_or_else(|| "-".into())),
    ]);
    if b.scratch {
        lines.push(("Scratch", "yes".into()));
    }
    if b.isolated {
        lines.push((
            "Isolated",
            format!(
                "yes (release {})",
                b.release_override.as_deref().unwrap_or("-")
            ),
        ));
    }
    let parent = match &b.parent_ref {
        None => "-".to_string(),
        Some(r) => {
            let mut s = r.clone();
            if let Some(d) = &b.parent_digest {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(id) = b.parent_build_id {
                s.push_str(&format!(", kiln build {id}"));
            }
            s
        }
    };
    lines.push(("Parent", parent));
    if let Some(pin) = &b.parent_pin {
        lines.push(("Pinned to", pin.clone()));
    }
    if b.no_cache {
        lines.push(("Cache", "not used".into()));
    }
    if let Some(item) = b.rebuild_item_id {
        lines.push(("Rebuild", format!("automatic (rebuild item {item})")));
    }
    lines.extend([
        (
            "Manifest",
            b.manifest_digest.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Config",
            b.config_digest.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Size",
            b.image_size.map(human_size).unwrap_or_else(|| "-".into()),
        ),
        ("Layers", b.layers.len().to_string()),
    ]);
    let mut tags = b.tags.iter();
    lines.push(("Tags", tags.next().cloned().unwrap_or_else(|| "-".into())));
    lines.extend(tags.map(|t| ("", t.clone())));
    lines.extend([
        ("Created", b.created_at.clone()),
        (
            "Started",
            b.started_at.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Completed",
            b.completed_at.clone().unwrap_or_else(|| "-".into()),
        ),
    ]);
    let mut s = String::new();
    for (k, v) in lines {
        let key = if k.is_empty() {
            String::new()
        } else {
            format!("{k}:")
        };
        s.push_str(&format!("{key:<11}{v}\n"));
    }
    s.push_str(&format!("Packages:  {}\n", b.packages.len()));
    let rows: Vec<Vec<String>> = b
        .packages
        .iter()
        .map(|p| {
            vec![
                format!("  {}", package_id(p)),
                p.source.clone().unwrap_or_else(|| "-".into()),
                p.license.clone().unwrap_or_else(|| "-".into()),
                p.signing_key.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(&["  PACKAGE", "SOURCE", "LICENSE", "KEY"], &rows));
    }
    s
}

// --------------------------------------------------------------- add-target --

fn parse_repo(s: &str) -> Result<RepoSpec, String> {
    let (name, baseurl) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=BASEURL"))?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        // It names a .repo file and its [section].
        return Err(format!(
            "repository name {name:?} must be letters, digits, '-', '_', '.' or ':'"
        ));
    }
    if !baseurl.contains("://") {
        return Err(format!(
            "base URL {baseurl:?} of repository {name:?} is not a URL (http://…, file://…)"
        ));
    }
    Ok(RepoSpec {
        name: name.to_string(),
        baseurl: baseurl.to_string(),
        gpgcheck: false,
    })
}

// --------------------------------------------------------------- tokens --

/// `$XDG_CONFIG_HOME/kiln/token`, else `~/.config/kiln/token`.
fn token_path_from(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    // The XDG spec: a relative value is invalid and ignored.
    let base = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("kiln").join("token"))
}

fn token_path() -> Option<PathBuf> {
    token_path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn stored_token() -> Result<Option<String>> {
    let Some(path) = token_path() else {
        return Ok(None);
    };
    read_token(&path)
}

fn read_token(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the API token {}", path.display())),
    }
}

/// Written beside and renamed over: a reader never sees half a token, and
/// the file is 0600 from its first byte.
fn write_token(path: &Path, token: &str) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".token.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

async fn login(args: &HubArgs) -> Result<i32> {
    let token = match args.token.clone().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                eprint!("API token for {}: ", args.hub);
            }
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("reading the token from stdin")?;
            let t = line.trim().to_string();
            if t.is_empty() {
                bail!("no token given (--token, KILN_TOKEN or a line on stdin)");
            }
            t
        }
    };
    // Only a token the hub accepts is worth keeping.
    let user = HubClient::new(&args.hub, Some(token.clone()))?
        .whoami()
        .await
        .with_context(|| format!("checking the token with {}", args.hub))?;
    let path = token_path()
        .context("neither XDG_CONFIG_HOME nor HOME is set: nowhere to store the token")?;
    write_token(&path, &token)?;
    println!(
        "Logged in to {} as {}{} (token in {})",
        args.hub,
        user.name,
        if user.admin { " (admin)" } else { "" },
        path.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use kiln_hub::model::Nvr;
    use std::os::unix::fs::PermissionsExt;

    /// The wiring main.rs does: the global flags on the top level, the
    /// commands flattened beside the others.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        hub: HubArgs,
        #[command(subcommand)]
        cmd: HubCommand,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hub_and_token_go_before_or_after_the_command() {
        let cli = parse(&["--hub", "http://h:1", "whoami"]).unwrap();
        assert_eq!(cli.hub.hub, "http://h:1");
        let cli = parse(&["list-targets", "--hub", "http://h:2", "--token", "t"]).unwrap();
        assert_eq!(cli.hub.hub, "http://h:2");
        assert_eq!(cli.hub.token.as_deref(), Some("t"));
        assert!(matches!(cli.cmd, HubCommand::ListTargets { json: false }));
    }

    #[test]
    fn container_build_flags() {
        let cli = parse(&[
            "container-build",
            "--target",
            "f40",
            "--isolated",
            "--release",
            "5",
            "--nowait",
            "https://git.example/rpms/httpd#f40",
        ])
        .unwrap();
        let HubCommand::ContainerBuild(a) = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!(a.target.as_deref(), Some("f40"));
        assert!(a.isolated && a.nowait && !a.scratch && !a.no_cache);
        assert_eq!(a.release.as_deref(), Some("5"));
        assert_eq!(
            a.source.as_deref(),
            Some("https://git.example/rpms/httpd#f40")
        );

        let a = match parse(&["container-build"]).unwrap().cmd {
            HubCommand::ContainerBuild(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!((a.source, a.target), (None, None));

        let a = match parse(&["container-build", "--no-cache", "--nowait"])
            .unwrap()
            .cmd
        {
            HubCommand::ContainerBuild(a) => a,
            other => panic!("{other:?}"),
        };
        assert!(a.no_cache && a.nowait);
    }

    #[test]
    fn container_build_usage_errors() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (
                &["container-build", "--isolated"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["container-build", "--release", "3"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &[
                    "container-build",
                    "--scratch",
                    "--isolated",
                    "--release",
                    "3",
                ][..],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["container-build", "git@host:repo.git#main"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["container-build", "file:///r#"][..],
                ErrorKind::ValueValidation,
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
            // clap's exit code for usage errors.
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn add_target_repos_and_parents() {
        let cli = parse(&[
            "add-target",
            "f40",
            "--registry",
            "127.0.0.1:8080",
            "--dest-tag",
            "f40-candidate",
            "--allowed-parent",
            "127.0.0.1:8080/base/",
            "--repo",
            "local=http://127.0.0.1:9000/repo?x=a=b",
            "--repo",
            "updates=file:///srv/updates",
        ])
        .unwrap();
        let HubCommand::AddTarget(a) = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!(a.allowed_parents, vec!["127.0.0.1:8080/base/"]);
        assert_eq!(
            a.repos,
            vec![
                RepoSpec {
                    name: "local".into(),
                    baseurl: "http://127.0.0.1:9000/repo?x=a=b".into(),
                    gpgcheck: false
                },
                RepoSpec {
                    name: "updates".into(),
                    baseurl: "file:///srv/updates".into(),
                    gpgcheck: false
                },
            ]
        );
        for bad in ["noequals", "=http://x/", "a b=http://x/", "x=/srv/repo"] {
            assert!(parse_repo(bad).is_err(), "{bad}");
        }
        assert!(!a.autorebuild);
        let cli = parse(&[
            "add-target",
            "f40",
            "--registry",
            "r:1",
            "--dest-tag",
            "f40-candidate",
            "--autorebuild",
        ])
        .unwrap();
        let HubCommand::AddTarget(a) = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert!(a.autorebuild);
    }

    #[test]
    fn the_targets_table_shows_autorebuild() {
        let t = |name: &str, autorebuild: bool| Target {
            name: name.into(),
            allowed_parents: vec![],
            repos: vec![RepoSpec {
                name: "updates".into(),
                baseurl: "http://repo/u".into(),
                gpgcheck: false,
            }],
            dest_tag: format!("{name}-candidate"),
            registry: "r:1".into(),
            autorebuild,
        };
        let text = targets_table(&[t("f40", true), t("f41", false)]);
        assert_eq!(
            text,
            "NAME  REGISTRY  DEST-TAG       AUTOREBUILD  ALLOWED-PARENTS  REPOS\n\
             f40   r:1       f40-candidate  yes          -                updates=http://repo/u\n\
             f41   r:1       f41-candidate  no           -                updates=http://repo/u\n"
        );
    }

    #[test]
    fn list_builds_filters_and_states() {
        let cli = parse(&[
            "list-builds",
            "--state",
            "failed",
            "--package",
            "bash",
            "--limit",
            "3",
        ])
        .unwrap();
        let HubCommand::ListBuilds(a) = cli.cmd else {
            panic!("{:?}", cli.cmd)
        };
        assert_eq!(a.state.as_deref(), Some("failed"));
        assert_eq!(a.package.as_deref(), Some("bash"));
        assert_eq!(a.limit, Some(3));
        assert!(parse(&["list-builds", "--state", "done"]).is_err());
    }

    #[test]
    fn only_target_picks_the_single_one() {
        let t = |name: &str| Target {
            name: name.into(),
            allowed_parents: vec![],
            repos: vec![],
            dest_tag: "d".into(),
            registry: "r".into(),
            autorebuild: false,
        };
        assert_eq!(only_target(&[t("a")]), Ok("a".to_string()));
        assert!(only_target(&[]).unwrap_err().contains("add-target"));
        assert!(
            only_target(&[t("a"), t("b")])
                .unwrap_err()
                .contains("(a, b)")
        );
    }

    #[test]
    fn token_location_follows_xdg() {
        let p = token_path_from(Some("/cfg".into()), Some("/home/u".into()));
        assert_eq!(p, Some(PathBuf::from("/cfg/kiln/token")));
        let p = token_path_from(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(p, Some(PathBuf::from("/home/u/.config/kiln/token")));
        let p = token_path_from(Some("".into()), Some("/home/u".into()));
        assert_eq!(p, Some(PathBuf::from("/home/u/.config/kiln/token")));
        assert_eq!(token_path_from(None, None), None);
    }

    #[test]
    fn tokens_are_stored_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/kiln/token");
        assert_eq!(read_token(&path).unwrap(), None);
        write_token(&path, "first").unwrap();
        write_token(&path, "s3cret").unwrap();
        assert_eq!(read_token(&path).unwrap().as_deref(), Some("s3cret"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    fn sample() -> Build {
        Build {
            id: 7,
            state: BuildState::Complete,
            component: "httpd".into(),
            nvr: Some(Nvr {
                name: "httpd".into(),
                version: "2.4".into(),
                release: "3".into(),
            }),
            source_url: "file:///src/httpd".into(),
            source_ref: "main".into(),
            commit: Some("abc123".into()),
            target: "f40".into(),
            owner: "alice".into(),
            scratch: false,
            isolated: false,
            release_override: None,
            parent_ref: Some("127.0.0.1:8080/base:40".into()),
            parent_digest: Some("sha256:feed".into()),
            parent_build_id: Some(3),
            manifest_digest: Some("sha256:aaaa".into()),
            config_digest: Some("sha256:bbbb".into()),
            image_size: Some(3 * 1024 * 1024 + 512 * 1024),
            layers: vec!["sha256:l1".into(), "sha256:l2".into()],
            tags: vec![
                "127.0.0.1:8080/httpd:2.4-3".into(),
                "127.0.0.1:8080/httpd:2.4".into(),
            ],
            packages: vec![
                Package {
                    kind: PackageKind::Rpm,
                    name: "bash".into(),
                    epoch: None,
                    version: "5.2.26".into(),
                    release: "3.fc40".into(),
                    arch: "x86_64".into(),
                    source: Some("bash-5.2.26-3.fc40.src.rpm".into()),
                    license: Some("GPL-3.0-or-later".into()),
                    signing_key: Some("a15b79cc".into()),
                },
                Package {
                    kind: PackageKind::Rpm,
                    name: "tzdata".into(),
                    epoch: Some(1),
                    version: "2024a".into(),
                    release: "5".into(),
                    arch: "noarch".into(),
                    source: None,
                    license: None,
                    signing_key: None,
                },
            ],
            reason: None,
            no_cache: false,
            parent_pin: None,
            autorebuild: None,
            rebuild_item_id: None,
            created_at: "2025-01-01T00:00:00Z".into(),
            started_at: Some("2025-01-01T00:00:01Z".into()),
            completed_at: Some("2025-01-01T00:01:00Z".into()),
        }
    }

    #[test]
    fn build_info_shows_the_record() {
        let text = build_info(&sample());
        for want in [
            "NVR:       httpd-2.4-3\n",
            "State:     complete\n",
            "Source:    file:///src/httpd#main\n",
            "Commit:    abc123\n",
            "Parent:    127.0.0.1:8080/base:40 (sha256:feed), kiln build 3\n",
            "Manifest:  sha256:aaaa\n",
            "Size:      3.5 MiB (3670016 bytes)\n",
            "Tags:      127.0.0.1:8080/httpd:2.4-3\n           127.0.0.1:8080/httpd:2.4\n",
            "Packages:  2\n",
            "  bash-5.2.26-3.fc40.x86_64  bash-5.2.26-3.fc40.src.rpm  GPL-3.0-or-later  a15b79cc\n",
            "  tzdata-1:2024a-5.noarch    -",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.lines().any(|l| l.ends_with(' ')), "{text}");
        assert!(
            !text.contains("Rebuild:") && !text.contains("Cache:"),
            "{text}"
        );

        let mut rebuild = sample();
        rebuild.no_cache = true;
        rebuild.parent_pin = Some("127.0.0.1:8080/base@sha256:feed".into());
        rebuild.rebuild_item_id = Some(4);
        let text = build_info(&rebuild);
        for want in [
            "Pinned to: 127.0.0.1:8080/base@sha256:feed\n",
            "Cache:     not used\n",
            "Rebuild:   automatic (rebuild item 4)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn build_tables_line_up() {
        let mut queued = sample();
        queued.id = 12;
        queued.state = BuildState::Queued;
        queued.nvr = None;
        queued.scratch = true;
        let text = builds_table(&[queued, sample()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("ID  STATE     NVR          COMPONENT"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("12  queued    -            httpd"),
            "{text}"
        );
        assert!(lines[1].contains("scratch"), "{text}");
        assert!(
            lines[2].starts_with("7   complete  httpd-2.4-3  httpd"),
            "{text}"
        );
    }

    #[test]
    fn debian_packages_use_debian_spelling() {
        let p = Package {
            kind: PackageKind::Deb,
            name: "libc6".into(),
            epoch: None,
            version: "2.36-9+deb12u4".into(),
            release: String::new(),
            arch: "amd64".into(),
            source: Some("glibc".into()),
            license: None,
            signing_key: None,
        };
        assert_eq!(package_id(&p), "libc6_2.36-9+deb12u4_amd64");
    }

    #[test]
    fn sizes_are_human_and_exact() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(
            human_size(5 * 1024 * 1024 * 1024),
            "5.0 GiB (5368709120 bytes)"
        );
    }
}
