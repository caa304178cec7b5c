//! The worker loop: claim a task from the hub, build it, report.
//!
//! One task, start to finish (atomic-reactor's order): check the dist-git
//! commit out; read the Dockerfile's labels and parent and tell the hub
//! (`prepared`), which answers with the NVR, the labels to add and the tags
//! to push — or refuses; write the generated Dockerfile (labels, the
//! `/root/buildinfo/` copy); render the target's package repositories as
//! `.repo` files mounted into RUN steps; build; unpack the image and list
//! its packages; for an automatic rebuild, check that it holds the updates
//! the hub expects (the hub's own post-check, made before any tag moves);
//! push every tag; complete. Any error fails the build with its first
//! line; the whole message goes to the build log.
//!
//! All along, a heartbeat keeps the lease. When the hub answers a
//! heartbeat with 409 (the build was canceled, or the lease lost), the
//! build future is dropped: the builder's helper processes are spawned
//! with `kill_on_drop`, so the RUN in progress dies with it, and nothing
//! more is reported for that task.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_build::{BuildOptions, BuildResult, HelperCommand, Progress, PullPolicy, RunMount};
use kiln_hub::api::protocol::{Assignment, Completion, Prepared, PreparedAnswer};
use kiln_hub::model::{Package, PackageKind};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::distgit;
use crate::hubapi::{HubClient, HubError, Stop};
use crate::logship::LogShipper;
use crate::prepare;

/// How long a finished build's log may take to reach the hub before the
/// build is reported anyway.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest heartbeat interval, whatever the lease.
const MIN_HEARTBEAT: Duration = Duration::from_millis(200);
/// Heartbeats also carry cancellation back: at most this far apart, so a
/// `kiln cancel` stops a running build within seconds whatever the lease.
const MAX_HEARTBEAT: Duration = Duration::from_secs(3);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The hub: `http(s)://HOST:PORT` (the API is under `/api/v1/`).
    pub hub: String,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// The worker's name, as the hub records lease holders. With
    /// `concurrency` above 1 the slots are `NAME-1`, `NAME-2`, ….
    pub name: String,
    /// The worker's own directory: `work/` holds each task's checkout and
    /// scratch files (emptied at start: one worker process per data
    /// directory), `build/` the builder's store (layers, cache).
    pub data_dir: PathBuf,
    /// How to start the builder's helper process (the `kiln` binary and
    /// the argument selecting its hidden helper mode).
    pub helper: HelperCommand,
    /// The pause after a claim finds nothing to do.
    pub poll: Duration,
    /// Builds run at once.
    pub concurrency: usize,
}

impl WorkerConfig {
    /// The builder's store.
    pub fn build_root(&self) -> PathBuf {
        self.data_dir.join("build")
    }

    /// Where tasks' checkouts and scratch files go.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    /// The name each of the `concurrency` slots claims under.
    pub fn slot_names(&self) -> Vec<String> {
        if self.concurrency <= 1 {
            vec![self.name.clone()]
        } else {
            (1..=self.concurrency)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }
}

/// What stops a worker from starting (or keeps it from running).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration cannot work.
    #[error("worker configuration: {0}")]
    Config(String),
    /// The hub client could not be set up (bad URL, TLS).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The data directory could not be prepared.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A worker slot panicked.
    #[error("worker slot ended unexpectedly: {0}")]
    Slot(String),
}

/// Runs the worker until `shutdown` completes: each slot claims a task,
/// builds it, reports, and claims again; with nothing to do it waits
/// `poll`; while the hub is unreachable it keeps trying.
///
/// On shutdown, builds in progress are abandoned (their helper processes
/// killed) without a report: the hub gives their tasks to a worker again
/// once the lease lapses.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    if config.concurrency == 0 {
        return Err(WorkerError::Config("concurrency must be at least 1".into()));
    }
    if config.poll.is_zero() {
        return Err(WorkerError::Config(
            "the poll interval must not be zero".into(),
        ));
    }
    let hub = HubClient::new(&config.hub, config.token.clone(), &config.name)?;
    let work_dir = config.work_dir();
    clear_dir(&work_dir)?;
    let build_root = config.build_root();
    fs::create_dir_all(&build_root).map_err(|source| WorkerError::Io {
        path: build_root.clone(),
        source,
    })?;
    let ctx = Arc::new(Context {
        work_dir,
        build_root,
        helper: config.helper.clone(),
        poll: config.poll,
    });
    tracing::info!(hub = %config.hub, slots = config.concurrency, "worker {} started", config.name);
    let mut slots = JoinSet::new();
    for name in config.slot_names() {
        slots.spawn(slot_loop(ctx.clone(), hub.with_worker(&name)));
    }
    let result = tokio::select! {
        () = shutdown => Ok(()),
        ended = slots.join_next() => Err(WorkerError::Slot(match ended {
            Some(Err(e)) => e.to_string(),
            _ => "no slot left".to_string(),
        })),
    };
    // Aborting a slot drops its build: the helpers die (kill_on_drop).
    slots.shutdown().await;
    tracing::info!("worker {} stopped", config.name);
    result
}

/// What every slot shares.
struct Context {
    work_dir: PathBuf,
    build_root: PathBuf,
    helper: HelperCommand,
    poll: Duration,
}

/// Empties `dir` (creating it if needed): scratch left by a worker that
/// was killed mid-build.
fn clear_dir(dir: &Path) -> Result<(), WorkerError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkerError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_err(&path))?;
    }
    Ok(())
}

async fn slot_loop(ctx: Arc<Context>, hub: HubClient) {
    let mut hub_was_down = false;
    loop {
        match hub.claim().await {
            Ok(Some(assignment)) => {
                hub_was_down = false;
                work_on(&ctx, &hub, assignment).await;
            }
            Ok(None) => {
                hub_was_down = false;
                tokio::time::sleep(ctx.poll).await;
            }
            Err(e) => {
                // Say it once per outage, not once per poll.
                if !hub_was_down {
                    tracing::warn!(worker = hub.worker(), "claiming a task: {e}");
                    hub_was_down = true;
                }
                tokio::time::sleep(ctx.poll).await;
            }
        }
    }
}

/// A spawned task aborted when this is dropped (a plain `JoinHandle`
/// would leave it running).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every `interval` until the hub answers 409, which is
/// sent on `stop`. Other errors (the hub restarting) are logged: the next
/// beat tries again, and a lease that lapsed meanwhile gets its 409.
fn start_heartbeat(
    hub: HubClient,
    task: i64,
    interval: Duration,
) -> (AbortOnDrop, oneshot::Receiver<(Stop, String)>) {
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match hub.heartbeat(task).await {
                Ok(()) => {}
                Err(HubError::Stopped { stop, message, .. }) => {
                    let _ = tx.send((stop, message));
                    return;
                }
                Err(e) => tracing::warn!(task, "heartbeat: {e}"),
            }
        }
    });
    (AbortOnDrop(handle), rx)
}

/// `lease_secs / 3`, as the contract asks.
fn heartbeat_interval(lease_secs: u64) -> Duration {
    Duration::from_millis(lease_secs.saturating_mul(1000) / 3).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT)
}

/// Works on one task until it is reported, refused or taken back.
async fn work_on(ctx: &Context, hub: &HubClient, assignment: Assignment) {
    let task = assignment.task_id;
    let build_id = assignment.build.id;
    tracing::info!(
        task,
        build = build_id,
        "building {}#{}",
        assignment.build.source_url,
        assignment.build.source_ref
    );
    let shipper = LogShipper::start(hub.clone(), task);
    let progress = Progress::new(Box::new(shipper.writer()));
    let (heartbeat, stop) =
        start_heartbeat(hub.clone(), task, heartbeat_interval(assignment.lease_secs));
    let stop = async {
        match stop.await {
            Ok(stop) => stop,
            // The heartbeat task is gone without a word: keep building.
            Err(_) => std::future::pending().await,
        }
    };
    let started = Instant::now();
    let scratch = match tempfile::Builder::new()
        .prefix(&format!("task-{task}-"))
        .tempdir_in(&ctx.work_dir)
    {
        Ok(dir) => dir,
        Err(source) => {
            let e = JobError::Io {
                path: ctx.work_dir.clone(),
                source,
            };
            report_failure(hub, task, &progress, shipper, &e.to_string(), None).await;
            return;
        }
    };
    let job = Job {
        ctx,
        hub,
        assignment: &assignment,
        progress: &progress,
        scratch: scratch.path(),
        commit: std::sync::Mutex::new(None),
    };
    let outcome = tokio::select! {
        (stop, message) = stop => Err(JobError::Hub(HubError::Stopped { task, stop, message })),
        done = job.run() => done,
    };
    match outcome {
        Ok(completion) => {
            progress.line(&format!(
                "Build complete in {:.1}s: {}",
                started.elapsed().as_secs_f64(),
                completion.manifest_digest
            ));
            drop(progress);
            shipper.finish(LOG_FLUSH_TIMEOUT).await;
            match hub.complete(task, &completion).await {
                Ok(_) => tracing::info!(task, build = build_id, "build complete"),
                Err(e) => tracing::warn!(task, build = build_id, "reporting completion: {e}"),
            }
        }
        Err(JobError::Hub(HubError::Stopped { stop, message, .. })) => {
            // Not ours any more: report nothing, not even to the log.
            drop(shipper);
            tracing::info!(task, build = build_id, "build {stop} ({message}): stopped");
        }
        Err(JobError::Hub(HubError::Refused { message, .. })) => {
            progress.line(&format!("error: the hub refused the build: {message}"));
            drop(progress);
            shipper.finish(LOG_FLUSH_TIMEOUT).await;
            tracing::info!(task, build = build_id, "build refused: {message}");
        }
        Err(e) => {
            let message = job_message(&e, scratch.path());
            let commit = job.commit.lock().ok().and_then(|c| c.clone());
            report_failure(hub, task, &progress, shipper, &message, commit).await;
            tracing::info!(
                task,
                build = build_id,
                "build failed: {}",
                first_line(&message)
            );
        }
    }
    drop(heartbeat);
    // A checkout and an unpacked image can be large: not on the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(scratch)).await;
}

/// Writes `message` to the log, then fails the task with its first line.
async fn report_failure(
    hub: &HubClient,
    task: i64,
    progress: &Progress,
    shipper: LogShipper,
    message: &str,
    commit: Option<String>,
) {
    progress.line(&format!("error: {message}"));
    shipper.finish(LOG_FLUSH_TIMEOUT).await;
    if let Err(e) = hub.fail(task, first_line(message), commit).await {
        tracing::warn!(task, "reporting the failure: {e}");
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message).trim_end()
}

/// An error's message with the worker's scratch paths taken out: the
/// generated Dockerfile is named as the dist-git one (its lines are the
/// same; only instructions are appended), checkout paths are relative.
fn job_message(e: &JobError, scratch: &Path) -> String {
    let mut message = e.to_string();
    let generated = scratch.join(GEN_DIR).join(prepare::GENERATED_DOCKERFILE);
    if let JobError::Build { dockerfile, .. } = e {
        message = message.replace(&generated.display().to_string(), dockerfile);
    }
    let src = format!("{}/", scratch.join(SRC_DIR).display());
    message.replace(&src, "")
}

/// Subdirectories of a task's scratch directory.
const SRC_DIR: &str = "src";
const GEN_DIR: &str = "gen";
const REPOS_DIR: &str = "repos";
const ROOTFS_DIR: &str = "rootfs";

/// What can fail in a task.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Checkout(#[from] distgit::Error),
    #[error("{0}")]
    Prepare(#[from] prepare::Error),
    #[error("{0}")]
    Hub(#[from] HubError),
    /// `dockerfile`: the dist-git Dockerfile's name, for messages.
    #[error("{error}")]
    Build {
        error: Box<kiln_build::BuildError>,
        dockerfile: String,
    },
    #[error("reading the packages of the image: {0}")]
    Content(#[from] kiln_content::Error),
    /// The rebuild check failed: the hub's own reason, word for word.
    #[error("{0}")]
    MissingUpdates(String),
    #[error("the built image's manifest: {0}")]
    Manifest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs blocking work off the runtime.
async fn blocking<T, F>(f: F) -> Result<T, JobError>
where
    F: FnOnce() -> Result<T, JobError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Internal(e.to_string()))?
}

/// One task's work, from checkout to the completion report's contents.
struct Job<'a> {
    ctx: &'a Context,
    hub: &'a HubClient,
    assignment: &'a Assignment,
    progress: &'a Progress,
    scratch: &'a Path,
    /// The commit once checked out: a failure report carries it, so a
    /// build that fails before the hub heard of it still records it.
    commit: std::sync::Mutex<Option<String>>,
}

impl Job<'_> {
    async fn run(&self) -> Result<Completion, JobError> {
        let a = self.assignment;
        let build = &a.build;
        let task = a.task_id;
        let log = |line: &str| self.progress.line(line);

        // The commit the hub resolved, when it did: a branch may have
        // moved since the submission.
        let reference = build
            .commit
            .clone()
            .unwrap_or_else(|| build.source_ref.clone());
        log(&format!(
            "Build {} (task {task}) on {}: {}#{}, target {}",
            build.id,
            self.hub.worker(),
            build.source_url,
            reference,
            build.target
        ));
        let src = self.scratch.join(SRC_DIR);
        let checkout = {
            let (url, src) = (build.source_url.clone(), src.clone());
            blocking(move || Ok(distgit::checkout(&url, Some(&reference), &src)?)).await?
        };
        log(&format!("Checked out {}", checkout.commit));
        if let Ok(mut c) = self.commit.lock() {
            *c = Some(checkout.commit.clone());
        }

        let prepared = {
            let src = src.clone();
            blocking(move || Ok(prepare::prepare(&src, &BTreeMap::new())?)).await?
        };
        let dockerfile_name = prepared
            .dockerfile_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".to_string());
        let answer = self
            .hub
            .prepared(
                task,
                &Prepared {
                    worker: self.hub.worker().to_string(),
                    commit: checkout.commit.clone(),
                    labels: prepared.labels.clone(),
                    parent: prepared.parent.clone(),
                    container_yaml: prepared.container_yaml.clone(),
                },
            )
            .await?;
        log(&format!(
            "Building {} for {}",
            answer.nvr,
            answer.tags.join(", ")
        ));

        let opts = inject_options(&answer, &build.source_url, &checkout.commit);
        let injected = prepare::inject(&prepared, &src, &self.scratch.join(GEN_DIR), &opts)?;
        let repos: Vec<prepare::RepoSpec> = a
            .target
            .repos
            .iter()
            .map(|r| prepare::RepoSpec {
                name: r.name.clone(),
                baseurl: r.baseurl.clone(),
                gpgcheck: r.gpgcheck,
            })
            .collect();
        let mounts = prepare::write_repo_files(&repos, &self.scratch.join(REPOS_DIR))?;
        for m in &mounts {
            log(&format!(
                "Package repository {} (mounted in RUN steps)",
                m.target
            ));
        }

        // An automatic rebuild builds on its new parent's exact digest.
        let mut base_pins = BTreeMap::new();
        if let (Some(from), Some(pin)) = (&prepared.parent, &build.parent_pin) {
            log(&format!("FROM {from} pinned to {pin}"));
            base_pins.insert(from.clone(), pin.clone());
        }
        let options = BuildOptions {
            context: src.clone(),
            dockerfile: Some(injected.dockerfile.clone()),
            tags: answer.tags.clone(),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            target: None,
            network: kiln_build::Network::Host,
            no_cache: build.no_cache,
            // The parent is resolved at the registry on every build (as
            // koji does), so its recorded digest is the one built on.
            pull: PullPolicy::Always,
            format: kiln_build::image::Format::Oci,
            compression: kiln_build::Compression::default(),
            secrets: Vec::new(),
            ssh: Vec::new(),
            // Pushed below, once the image passed the rebuild check: a
            // failing rebuild moves no tag.
            push: false,
            // kiln-client speaks plain HTTP to loopback registries anyway.
            tls_verify: true,
            outputs: Vec::new(),
            root: self.ctx.build_root.clone(),
            source_date_epoch: None,
            helper: self.ctx.helper.clone(),
            run_mounts: mounts
                .into_iter()
                .map(|m| RunMount {
                    source: m.source,
                    target: m.target,
                    readonly: true,
                })
                .collect(),
            base_pins,
        };
        let build_error = |error| JobError::Build {
            error: Box::new(error),
            dockerfile: dockerfile_name.clone(),
        };
        let result = kiln_build::build(options.clone(), self.progress.clone())
            .await
            .map_err(build_error)?;

        let packages = self.packages(&result).await?;
        log(&format!("{} packages in the image", packages.len()));
        check_updates(&packages, &answer.expect)?;
        if !answer.expect.is_empty() {
            log(&format!(
                "The image holds the updates: {}",
                answer.expect.join(", ")
            ));
        }
        if !answer.tags.is_empty() {
            kiln_build::push_image(&options, &result, &answer.tags, self.progress.clone())
                .await
                .map_err(build_error)?;
        }
        for tag in &answer.tags {
            log(&format!("Pushed {tag}"));
        }
        completion(self.hub.worker(), &result, answer.tags, packages)
    }

    /// Unpacks the image's package databases (rpmdb, dpkg status, and the
    /// directories and symlinks leading to them) into the scratch
    /// directory and lists its packages.
    async fn packages(&self, result: &BuildResult) -> Result<Vec<Package>, JobError> {
        let rootfs = self.scratch.join(ROOTFS_DIR);
        {
            let (root, layers, rootfs) = (
                self.ctx.build_root.clone(),
                result.layers.clone(),
                rootfs.clone(),
            );
            blocking(move || {
                let mut dirs: Vec<&str> = kiln_content::RPMDB_DIRS.to_vec();
                dirs.extend(["/var/lib/dpkg", "/etc/os-release", "/usr/lib/os-release"]);
                kiln_build::materialize_image(&root, &layers, &rootfs, &dirs).map_err(|error| {
                    JobError::Build {
                        error: Box::new(error),
                        dockerfile: String::new(),
                    }
                })
            })
            .await?;
        }
        let inventory = kiln_content::packages(&rootfs).await?;
        // Free the space now rather than after reporting.
        let _ = blocking(move || {
            fs::remove_dir_all(&rootfs).map_err(|source| JobError::Io {
                path: rootfs.clone(),
                source,
            })
        })
        .await;
        Ok(inventory.packages.into_iter().map(to_hub_package).collect())
    }
}

/// The rebuild check the hub would make at completion, made before any
/// tag is pushed: fails when `packages` still hold an older version of an
/// update in `expect` (empty for builds that are not rebuilds).
fn check_updates(packages: &[Package], expect: &[String]) -> Result<(), JobError> {
    match kiln_hub::domain::planner::missing_updates_reason(packages, expect) {
        Some(reason) => Err(JobError::MissingUpdates(reason)),
        None => Ok(()),
    }
}

/// The labels the hub asked for, and the automatic ones it left out
/// (atomic-reactor's set): the hub's values win.
fn inject_options(
    answer: &PreparedAnswer,
    source_url: &str,
    commit: &str,
) -> prepare::InjectOptions {
    let label = |k: &str| answer.labels.get(k).cloned();
    let build_date = label("build-date").unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        kiln_hub::domain::time::rfc3339(now).unwrap_or_default()
    });
    prepare::InjectOptions {
        build_date,
        architecture: label("architecture").unwrap_or_else(|| {
            kiln_hub::domain::labels::rpm_arch(std::env::consts::ARCH).to_string()
        }),
        vcs: Some(prepare::Vcs {
            url: label("vcs-url")
                .unwrap_or_else(|| kiln_hub::domain::labels::without_credentials(source_url)),
            commit: label("vcs-ref").unwrap_or_else(|| commit.to_string()),
        }),
        release: Some(answer.nvr.release.clone()),
        extra_labels: answer.labels.clone(),
    }
}

fn to_hub_package(p: kiln_content::Package) -> Package {
    Package {
        kind: match p.kind {
            kiln_content::PackageKind::Rpm => PackageKind::Rpm,
            kiln_content::PackageKind::Deb => PackageKind::Deb,
        },
        name: p.name,
        epoch: p.epoch,
        version: p.version,
        release: p.release,
        arch: p.arch,
        source: p.source,
        license: p.license,
        signing_key: p.signing_key,
    }
}

/// The completion report of a built image.
fn completion(
    worker: &str,
    result: &BuildResult,
    tags: Vec<String>,
    packages: Vec<Package>,
) -> Result<Completion, JobError> {
    let manifest =
        kiln_oci::Manifest::parse(&result.manifest, Some(result.format.manifest_media_type()))
            .map_err(|e| JobError::Manifest(e.to_string()))?;
    let config_size = manifest
        .config
        .as_ref()
        .map(|c| c.size)
        .ok_or_else(|| JobError::Manifest("no config descriptor".into()))?;
    let layer_sizes: u64 = result.layers.iter().map(|l| l.size).sum();
    let image_size = i64::try_from(layer_sizes)
        .ok()
        .and_then(|n| n.checked_add(config_size))
        .ok_or_else(|| JobError::Manifest("image size overflows".into()))?;
    Ok(Completion {
        worker: worker.to_string(),
        manifest_digest: result.manifest_digest.to_string(),
        config_digest: result.config_digest.to_string(),
        image_size,
        layers: result.layers.iter().map(|l| l.digest.to_string()).collect(),
        parent_digest: result.base.as_ref().map(|b| b.manifest_digest.to_string()),
        tags,
        packages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_hub::model::Nvr;

    #[test]
    fn heartbeats_come_three_times_per_lease_and_every_few_seconds() {
        assert_eq!(heartbeat_interval(30), MAX_HEARTBEAT);
        assert_eq!(heartbeat_interval(6), Duration::from_secs(2));
        assert_eq!(heartbeat_interval(1), Duration::from_millis(333));
        assert_eq!(heartbeat_interval(0), MIN_HEARTBEAT);
        assert_eq!(heartbeat_interval(u64::MAX), MAX_HEARTBEAT);
    }

    #[test]
    fn slots_get_distinct_names() {
        let mut c = WorkerConfig {
            hub: "http://h".into(),
            token: None,
            name: "w".into(),
            data_dir: "/d".into(),
            helper: HelperCommand {
                program: "/bin/kiln".into(),
                args: vec![],
            },
            poll: Duration::from_secs(1),
            concurrency: 1,
        };
        assert_eq!(c.slot_names(), ["w"]);
        c.concurrency = 3;
        assert_eq!(c.slot_names(), ["w-1", "w-2", "w-3"]);
        assert_eq!(c.build_root(), Path::new("/d/build"));
    }

    #[test]
    fn the_hubs_labels_win_and_missing_ones_are_filled_in() {
        let answer = PreparedAnswer {
            nvr: Nvr {
                name: "app".into(),
                version: "1".into(),
                release: "3".into(),
            },
            labels: [("build-date", "2024-05-01T12:00:00Z"), ("vendor", "Kiln")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: vec![],
            expect: vec![],
        };
        let o = inject_options(&answer, "https://u:secret@git.example/app.git", "abc");
        assert_eq!(o.build_date, "2024-05-01T12:00:00Z");
        assert_eq!(o.release.as_deref(), Some("3"));
        assert_eq!(o.extra_labels["vendor"], "Kiln");
        let vcs = o.vcs.unwrap();
        assert_eq!(vcs.url, "https://git.example/app.git");
        assert_eq!(vcs.commit, "abc");
        assert!(!o.architecture.is_empty());
        assert_ne!(o.architecture, "amd64");
    }

    fn rpm(name: &str, version: &str, release: &str) -> Package {
        Package {
            kind: PackageKind::Rpm,
            name: name.into(),
            epoch: None,
            version: version.into(),
            release: release.into(),
            arch: "noarch".into(),
            source: Some(format!("{name}-{version}-{release}.src.rpm")),
            license: None,
            signing_key: None,
        }
    }

    #[test]
    fn the_rebuild_check_fails_on_an_older_package_with_the_hubs_reason() {
        let packages = [rpm("kiln-foo", "1.0", "1"), rpm("kiln-bar", "1.1", "1")];
        let expect = ["kiln-foo-1.1-1.noarch".to_string()];
        let Err(e) = check_updates(&packages, &expect) else {
            panic!("kiln-foo-1.0-1 passed for kiln-foo-1.1-1");
        };
        let message = e.to_string();
        assert_eq!(
            Some(message.as_str()),
            kiln_hub::domain::planner::missing_updates_reason(&packages, &expect).as_deref()
        );
        assert!(
            message.starts_with("the rebuilt image still holds an older version: kiln-foo-1.0-1 (wanted kiln-foo-1.1-1.noarch)"),
            "{message}"
        );
        assert_eq!(first_line(&message), message);
    }

    #[test]
    fn the_rebuild_check_passes_on_newer_equal_absent_or_nothing_expected() {
        let packages = [rpm("kiln-foo", "1.1", "1"), rpm("kiln-bar", "2.0", "1")];
        let ok = |expect: &[&str]| {
            let expect: Vec<String> = expect.iter().map(|e| e.to_string()).collect();
            check_updates(&packages, &expect).map_err(|e| e.to_string())
        };
        assert_eq!(ok(&["kiln-foo-1.1-1.noarch"]), Ok(()), "equal");
        assert_eq!(ok(&["kiln-bar-0:1.1-1.noarch"]), Ok(()), "newer");
        assert_eq!(ok(&["kiln-baz-9.9-1.noarch"]), Ok(()), "absent");
        assert_eq!(ok(&[]), Ok(()), "not a rebuild");
        assert_eq!(
            check_updates(&[], &["kiln-foo-1.1-1.noarch".into()]).map_err(|e| e.to_string()),
            Ok(())
        );
    }

    #[test]
    fn failure_reasons_are_one_line() {
        assert_eq!(first_line("a: b\nlast output:\nx"), "a: b");
        assert_eq!(first_line(""), "");
    }
}
