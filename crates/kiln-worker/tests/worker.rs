//! The worker loop against the hub's worker endpoints: a small hub in the
//! test (an axum server speaking the contract of `notes/api.md`, recording
//! what the worker sends) stands in for the real one, which the lead's
//! end-to-end tests exercise. Everything else is real: a git repository
//! made with the git CLI, kiln's registry in-process on loopback with the
//! busybox-full base pushed by skopeo, the builder with its sandbox and
//! file helpers, and the content scanner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kiln_build::HelperCommand;
use kiln_hub::api::protocol::{
    Assignment, ClaimRequest, Completion, Failure, Heartbeat, Prepared, PreparedAnswer,
};
use kiln_hub::model::{Build, BuildState, Nvr, PackageKind, RepoSpec, Target};
use kiln_worker::worker::{WorkerConfig, run};
use tokio::sync::oneshot;

const TOKEN: &str = "worker-secret";
const LEASE_SECS: u64 = 3;

// ---------------------------------------------------------------- registry

/// kiln's registry on a loopback port, with the busybox-full fixture
/// pushed as `base/busybox:latest`.
struct Registry {
    host: String,
    base_digest: String,
    _data: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Registry {
    async fn start() -> Registry {
        // reqwest (the tests' own registry reads) needs a process-wide
        // rustls provider; the worker sets its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let data = tempfile::tempdir().unwrap();
        let config = kiln_registry::Config::parse("").unwrap();
        let server =
            kiln_registry::Server::bind("127.0.0.1:0".parse().unwrap(), data.path(), config)
                .await
                .unwrap();
        let host = server.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = server
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        });

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = root.join("scripts/fixtures/busybox-full-image.sh");
        let out = tokio::process::Command::new("bash")
            .arg(&script)
            .arg("-")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let fixture = PathBuf::from(stdout.lines().last().unwrap().trim());
        let base_digest = std::fs::read_to_string(fixture.join("digest"))
            .unwrap()
            .trim()
            .to_string();
        let out = tokio::process::Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", fixture.join("oci").display()))
            .arg(format!("docker://{host}/base/busybox:latest"))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Registry {
            host,
            base_digest,
            _data: data,
            _stop: tx,
        }
    }

    fn base(&self) -> String {
        format!("{}/base/busybox:latest", self.host)
    }

    /// The digest the registry serves `repo:tag` under, and the manifest.
    async fn manifest(&self, repo: &str, tag: &str) -> Option<(String, serde_json::Value)> {
        let r = reqwest::Client::new()
            .get(format!("http://{}/v2/{repo}/manifests/{tag}", self.host))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(r.status().is_success(), "{repo}:{tag}: {}", r.status());
        let digest = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        Some((
            digest,
            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap(),
        ))
    }

    /// The tags `repo` has (none when the registry does not know it).
    async fn tags(&self, repo: &str) -> Vec<String> {
        let r = reqwest::get(format!("http://{}/v2/{repo}/tags/list", self.host))
            .await
            .unwrap();
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert!(r.status().is_success(), "{repo}: {}", r.status());
        let list: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let mut tags: Vec<String> = list["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    async fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = reqwest::get(format!("http://{}/v2/{repo}/blobs/{digest}", self.host))
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap().to_vec()
    }
}

// ---------------------------------------------------------------- dist-git

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@kiln.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@kiln.invalid")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository whose `main` holds `dockerfile`; returns its commit.
fn distgit(dir: &Path, dockerfile: &str) -> String {
    distgit_with(dir, dockerfile, &[])
}

/// A repository whose `main` holds `dockerfile` and `files` (copied from
/// the paths given, under the names given); returns its commit.
fn distgit_with(dir: &Path, dockerfile: &str, files: &[(&str, &Path)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    git(dir, &["add", "Dockerfile"]);
    for (name, from) in files {
        let to = dir.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
        git(dir, &["add", name]);
    }
    git(dir, &["commit", "-q", "-m", "initial"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// An rpm database (`rpmdb.sqlite`, written by the host's rpm) recording
/// kiln-foo-1.0-1.noarch from the rebuild-rpms fixture as installed.
fn rpmdb_with_kiln_foo_1_0(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/fixtures/rebuild-rpms.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fixture = PathBuf::from(stdout.lines().last().unwrap().trim());
    let rpm = fixture.join("rpms/kiln-foo-1.0-1.noarch.rpm");
    let out = std::process::Command::new("rpm")
        .arg("--root")
        .arg(dir)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--justdb"])
        .arg(&rpm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpm -i --justdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.join("var/lib/rpm/rpmdb.sqlite");
    assert!(db.is_file(), "{} not written", db.display());
    db
}

// ---------------------------------------------------------------- the hub

/// What the worker told the hub, and how the hub answers.
#[derive(Default)]
struct HubState {
    queue: Vec<Assignment>,
    builds: HashMap<i64, Build>,
    claims: usize,
    heartbeats: HashMap<i64, usize>,
    logs: HashMap<i64, Vec<u8>>,
    log_posts_after_stop: usize,
    prepared: Vec<(i64, Prepared)>,
    completions: Vec<(i64, Completion)>,
    failures: Vec<(i64, Failure)>,
    /// Requests without the worker's bearer token.
    unauthorized: usize,
    /// Tasks whose next heartbeat gets 409 canceled, once their log holds
    /// this text.
    cancel_on_log: Option<String>,
    canceled: HashMap<i64, Instant>,
    /// Answer the first `complete` with 503 and ask the test to restart.
    fail_first_complete: bool,
    complete_attempts: usize,
    restart_wanted: bool,
    registry: String,
    /// The updates the answer to `prepared` expects, by component.
    expect: HashMap<String, Vec<String>>,
}

type Shared = Arc<Mutex<HubState>>;

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap(),
    )
        .into_response()
}

fn api_error(status: StatusCode, error: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": error, "message": message}),
    )
}

fn authorized(s: &mut HubState, headers: &HeaderMap) -> bool {
    let ok = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
    if !ok {
        s.unauthorized += 1;
    }
    ok
}

async fn claim(State(hub): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    let req: ClaimRequest = serde_json::from_slice(&body).unwrap();
    assert!(!req.worker.is_empty());
    s.claims += 1;
    if s.queue.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let a = s.queue.remove(0);
    json(StatusCode::OK, &a)
}

async fn heartbeat(
    State(hub): State<Shared>,
    UrlPath(task): UrlPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    let _: Heartbeat = serde_json::from_slice(&body).unwrap();
    *s.heartbeats.entry(task).or_default() += 1;
    let wanted = s.cancel_on_log.clone();
    let log = s.logs.get(&task).cloned().unwrap_or_default();
    if wanted.is_some_and(|w| String::from_utf8_lossy(&log).contains(&w)) {
        s.canceled.entry(task).or_insert_with(Instant::now);
        return api_error(StatusCode::CONFLICT, "canceled", "canceled by alice");
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn log_append(
    State(hub): State<Shared>,
    UrlPath(task): UrlPath<i64>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    assert!(q.get("worker").is_some_and(|w| !w.is_empty()), "{q:?}");
    if s.canceled.contains_key(&task) {
        s.log_posts_after_stop += 1;
        return api_error(StatusCode::CONFLICT, "canceled", "canceled by alice");
    }
    s.logs.entry(task).or_default().extend_from_slice(&body);
    StatusCode::NO_CONTENT.into_response()
}

async fn prepared(
    State(hub): State<Shared>,
    UrlPath(task): UrlPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    let p: Prepared = serde_json::from_slice(&body).unwrap();
    s.prepared.push((task, p.clone()));
    let component = p.labels["com.redhat.component"].clone();
    if component == "refuse-me" {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "parent_not_allowed",
            "FROM elsewhere.example/x is outside target t1's registries",
        );
    }
    let name = p.labels["name"].clone();
    let version = p.labels["version"].clone();
    let mut labels: BTreeMap<String, String> = [
        ("build-date", "2024-05-01T12:00:00Z"),
        ("vcs-type", "git"),
        ("architecture", "x86_64"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.insert("vcs-ref".into(), p.commit.clone());
    let release = match p.labels.get("release") {
        Some(r) => r.clone(),
        None => {
            labels.insert("release".into(), "7".into());
            "7".into()
        }
    };
    let repo = format!("{}/{name}", s.registry);
    let expect = s.expect.get(&component).cloned().unwrap_or_default();
    let answer = PreparedAnswer {
        nvr: Nvr {
            name: component,
            version: version.clone(),
            release: release.clone(),
        },
        labels,
        tags: vec![
            format!("{repo}:{version}-{release}"),
            format!("{repo}:{version}"),
            format!("{repo}:latest"),
        ],
        expect,
    };
    json(StatusCode::OK, &answer)
}

fn finish(s: &mut HubState, task: i64, state: BuildState) -> Response {
    let build = s.builds.get_mut(&task).unwrap();
    build.state = state;
    json(StatusCode::OK, &build.clone())
}

async fn complete(
    State(hub): State<Shared>,
    UrlPath(task): UrlPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    s.complete_attempts += 1;
    if s.fail_first_complete && s.complete_attempts == 1 {
        s.restart_wanted = true;
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "restarting",
            "hub restarting",
        );
    }
    let c: Completion = serde_json::from_slice(&body).unwrap();
    s.completions.push((task, c));
    finish(&mut s, task, BuildState::Complete)
}

async fn fail(
    State(hub): State<Shared>,
    UrlPath(task): UrlPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = hub.lock().unwrap();
    authorized(&mut s, &headers);
    let f: Failure = serde_json::from_slice(&body).unwrap();
    s.failures.push((task, f));
    finish(&mut s, task, BuildState::Failed)
}

/// The hub's worker endpoints on a loopback port, restartable on the same
/// port.
struct Hub {
    state: Shared,
    addr: SocketAddr,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl Hub {
    async fn start(registry: &str) -> Hub {
        let state = Shared::default();
        state.lock().unwrap().registry = registry.to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut hub = Hub {
            state,
            addr,
            server: None,
        };
        hub.serve(listener);
        hub
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/api/v1/tasks/claim", post(claim))
            .route("/api/v1/tasks/{id}/heartbeat", post(heartbeat))
            .route("/api/v1/tasks/{id}/log", post(log_append))
            .route("/api/v1/tasks/{id}/prepared", post(prepared))
            .route("/api/v1/tasks/{id}/complete", post(complete))
            .route("/api/v1/tasks/{id}/fail", post(fail))
            .with_state(self.state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.server = Some((tx, handle));
    }

    /// Stops listening for `down`, then serves again on the same port.
    async fn restart(&mut self, down: Duration) {
        let (tx, mut handle) = self.server.take().unwrap();
        let _ = tx.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut handle)
            .await
            .is_err()
        {
            handle.abort();
        }
        tokio::time::sleep(down).await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn enqueue(&self, a: Assignment) {
        let mut s = self.state.lock().unwrap();
        s.builds.insert(a.task_id, a.build.clone());
        s.queue.push(a);
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn log(&self, task: i64) -> String {
        self.with(|s| {
            String::from_utf8_lossy(s.logs.get(&task).map_or(&[][..], |v| v)).into_owned()
        })
    }
}

fn assignment(task: i64, url: &Path, reference: &str, registry: &str) -> Assignment {
    Assignment {
        task_id: task,
        lease_secs: LEASE_SECS,
        build: Build {
            id: task + 100,
            state: BuildState::Building,
            component: "hello".into(),
            nvr: None,
            source_url: url.display().to_string(),
            source_ref: reference.into(),
            commit: None,
            target: "t1".into(),
            owner: "alice".into(),
            scratch: false,
            isolated: false,
            release_override: None,
            parent_ref: None,
            parent_digest: None,
            parent_build_id: None,
            manifest_digest: None,
            config_digest: None,
            image_size: None,
            layers: vec![],
            tags: vec![],
            packages: vec![],
            reason: None,
            no_cache: false,
            parent_pin: None,
            autorebuild: None,
            rebuild_item_id: None,
            created_at: "2024-05-01T12:00:00Z".into(),
            started_at: None,
            completed_at: None,
        },
        target: Target {
            name: "t1".into(),
            allowed_parents: vec![format!("{registry}/")],
            repos: vec![RepoSpec {
                name: "kiln-test".into(),
                baseurl: "http://127.0.0.1:9/repo/".into(),
                gpgcheck: false,
            }],
            dest_tag: "t1-candidate".into(),
            registry: registry.into(),
            autorebuild: false,
        },
    }
}

// ---------------------------------------------------------------- worker

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), kiln_worker::worker::WorkerError>>,
    _data: tempfile::TempDir,
}

impl Worker {
    fn start(hub: &Hub) -> Worker {
        let data = tempfile::tempdir().unwrap();
        let config = WorkerConfig {
            hub: hub.url(),
            token: Some(TOKEN.into()),
            name: "test-worker".into(),
            data_dir: data.path().to_path_buf(),
            helper: HelperCommand {
                program: env!("CARGO_BIN_EXE_kiln-worker-test-helper").into(),
                args: vec![],
            },
            poll: Duration::from_millis(200),
            concurrency: 1,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(run(config, async move {
            let _ = rx.await;
        }));
        Worker {
            stop: Some(tx),
            handle,
            _data: data,
        }
    }

    /// Shuts the worker down; returns how long `run` took to return.
    async fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), &mut self.handle)
            .await
            .expect("run did not return after shutdown")
            .unwrap()
            .unwrap();
        t.elapsed()
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| *c == want)
        .count()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_pushes_scans_and_completes_across_a_hub_restart() {
    let registry = Registry::start().await;
    let mut hub = Hub::start(&registry.host).await;
    hub.with(|s| s.fail_first_complete = true);
    let repo_dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {base}\n\
         LABEL com.redhat.component=hello-container name=kiln/hello version=1.0\n\
         RUN echo run-output-marker | tee /marker && cat /etc/yum.repos.d/kiln-test.repo\n\
         RUN mkdir -p /var/lib/dpkg && printf 'Package: hello\\nStatus: install ok installed\\nVersion: 2.10-3\\nArchitecture: amd64\\nSource: hello-src\\n\\n' > /var/lib/dpkg/status\n\
         RUN sleep 2 && touch /slept\n",
        base = registry.base()
    );
    let commit = distgit(repo_dir.path(), &dockerfile);
    hub.enqueue(assignment(1, repo_dir.path(), "main", &registry.host));
    let worker = Worker::start(&hub);

    // The first complete is answered 503; then the hub is down for a while.
    wait_until("the first complete", Duration::from_secs(240), || {
        hub.with(|s| s.restart_wanted || !s.failures.is_empty())
    })
    .await;
    assert!(
        hub.with(|s| s.failures.is_empty()),
        "{:?}",
        hub.with(|s| s.failures.clone())
    );
    hub.restart(Duration::from_millis(1500)).await;
    wait_until("the completion", Duration::from_secs(60), || {
        hub.with(|s| !s.completions.is_empty())
    })
    .await;
    let log = hub.log(1);
    worker.stop().await;

    let (completions, prepared, heartbeats, attempts, unauthorized) = hub.with(|s| {
        (
            s.completions.clone(),
            s.prepared.clone(),
            s.heartbeats.get(&1).copied().unwrap_or(0),
            s.complete_attempts,
            s.unauthorized,
        )
    });
    assert_eq!(unauthorized, 0, "every request carries the token");
    assert!(attempts >= 2, "complete was retried: {attempts}");
    assert!(
        heartbeats >= 1,
        "heartbeats during a build of several seconds"
    );

    // What the worker told the hub before building.
    let [(1, p)] = prepared.as_slice() else {
        panic!("{prepared:?}")
    };
    assert_eq!(p.commit, commit);
    assert_eq!(p.parent.as_deref(), Some(registry.base().as_str()));
    assert_eq!(p.labels["name"], "kiln/hello");
    assert_eq!(p.worker, "test-worker");

    // The log: checkout, RUN output, the injected repository file.
    assert!(log.contains(&format!("Checked out {commit}")), "{log}");
    assert!(log.contains("run-output-marker"), "{log}");
    assert!(log.contains("baseurl=http://127.0.0.1:9/repo/"), "{log}");

    // The completion, and the registry holding the image under every tag.
    let [(1, c)] = completions.as_slice() else {
        panic!("{completions:?}")
    };
    assert_eq!(c.worker, "test-worker");
    assert_eq!(
        c.parent_digest.as_deref(),
        Some(registry.base_digest.as_str())
    );
    let want_tags: Vec<String> = ["1.0-7", "1.0", "latest"]
        .iter()
        .map(|t| format!("{}/kiln/hello:{t}", registry.host))
        .collect();
    assert_eq!(c.tags, want_tags);
    let mut manifest = None;
    for tag in ["1.0-7", "1.0", "latest"] {
        let (digest, m) = registry.manifest("kiln/hello", tag).await.expect(tag);
        assert_eq!(digest, c.manifest_digest, "{tag}");
        manifest = Some(m);
    }
    let manifest = manifest.unwrap();
    assert_eq!(manifest["config"]["digest"], c.config_digest.as_str());
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(c.layers, layers);
    // The injected repository file is in no layer.
    let scratch = tempfile::tempdir().unwrap();
    for digest in &layers {
        let blob = scratch.path().join(digest.replace(':', "-"));
        std::fs::write(&blob, registry.blob("kiln/hello", digest).await).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(&blob)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar -tzf {digest}");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(!listing.contains("kiln-test.repo"), "{digest}: {listing}");
    }
    let size: i64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_i64().unwrap())
        .sum::<i64>()
        + manifest["config"]["size"].as_i64().unwrap();
    assert_eq!(c.image_size, size);

    // The labels the hub asked for are in the image.
    let config: serde_json::Value =
        serde_json::from_slice(&registry.blob("kiln/hello", &c.config_digest).await).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["release"], "7");
    assert_eq!(labels["vcs-ref"], commit.as_str());
    assert_eq!(labels["build-date"], "2024-05-01T12:00:00Z");
    assert_eq!(labels["com.redhat.component"], "hello-container");

    // The packages: the dpkg status the build wrote.
    let [pkg] = c.packages.as_slice() else {
        panic!("{:?}", c.packages)
    };
    assert_eq!(pkg.kind, PackageKind::Deb);
    assert_eq!(
        (pkg.name.as_str(), pkg.version.as_str(), pkg.arch.as_str()),
        ("hello", "2.10-3", "amd64")
    );
    assert_eq!(pkg.source.as_deref(), Some("hello-src"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_without_its_update_pushes_no_tag_and_one_with_it_pushes_all() {
    let registry = Registry::start().await;
    let hub = Hub::start(&registry.host).await;
    let root = tempfile::tempdir().unwrap();
    let db = rpmdb_with_kiln_foo_1_0(&root.path().join("rpmroot"));
    hub.with(|s| {
        // The mirror did not have kiln-foo-1.1: the image holds 1.0.
        s.expect
            .insert("stale".into(), vec!["kiln-foo-1.1-1.noarch".into()]);
        s.expect
            .insert("fresh".into(), vec!["kiln-foo-0:1.0-1.noarch".into()]);
    });
    for (task, component) in [(8, "stale"), (9, "fresh")] {
        let dir = root.path().join(component);
        distgit_with(
            &dir,
            &format!(
                "FROM {}\nLABEL com.redhat.component={component} name=kiln/{component} version=1\n\
                 COPY rpmdb/ /var/lib/rpm/\n",
                registry.base()
            ),
            &[("rpmdb/rpmdb.sqlite", &db)],
        );
        hub.enqueue(assignment(task, &dir, "main", &registry.host));
    }
    let worker = Worker::start(&hub);
    wait_until("both tasks reported", Duration::from_secs(240), || {
        hub.with(|s| s.failures.len() + s.completions.len() >= 2)
    })
    .await;
    worker.stop().await;

    let (failures, completions) = hub.with(|s| (s.failures.clone(), s.completions.clone()));
    let [(8, f)] = failures.as_slice() else {
        panic!("{failures:?}")
    };
    let want = "the rebuilt image still holds an older version: kiln-foo-1.0-1 (wanted \
                kiln-foo-1.1-1.noarch); is the update in the target's repositories?";
    assert_eq!(f.reason, want);
    let log = hub.log(8);
    assert!(log.contains(&format!("error: {want}")), "{log}");
    assert!(!log.contains("Pushed"), "{log}");
    assert_eq!(
        registry.tags("kiln/stale").await,
        Vec::<String>::new(),
        "a failing rebuild moves no tag"
    );

    let [(9, c)] = completions.as_slice() else {
        panic!("{completions:?}")
    };
    let [pkg] = c.packages.as_slice() else {
        panic!("{:?}", c.packages)
    };
    assert_eq!(
        (pkg.kind, pkg.name.as_str(), pkg.version.as_str()),
        (PackageKind::Rpm, "kiln-foo", "1.0")
    );
    assert_eq!(registry.tags("kiln/fresh").await, ["1", "1-7", "latest"]);
    for tag in ["1-7", "1", "latest"] {
        let (digest, _) = registry.manifest("kiln/fresh", tag).await.expect(tag);
        assert_eq!(digest, c.manifest_digest, "{tag}");
    }
    let log = hub.log(9);
    let (packages, pushed) = (
        log.find("1 packages in the image").expect(&log),
        log.find("Pushed ").expect(&log),
    );
    assert!(packages < pushed, "checked before pushing: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_heartbeat_kills_the_build_and_nothing_more_is_reported() {
    let registry = Registry::start().await;
    let hub = Hub::start(&registry.host).await;
    const MARKER: &str = "sleeping-now-4f2a";
    hub.with(|s| s.cancel_on_log = Some(MARKER.into()));
    let repo_dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {}\nLABEL com.redhat.component=sleeper name=kiln/sleeper version=1\n\
         RUN echo {MARKER} && sleep 47\nRUN echo never-reached\n",
        registry.base()
    );
    distgit(repo_dir.path(), &dockerfile);
    hub.enqueue(assignment(2, repo_dir.path(), "main", &registry.host));
    let worker = Worker::start(&hub);

    wait_until("the RUN to start", Duration::from_secs(240), || {
        hub.log(2).contains(MARKER)
    })
    .await;
    wait_until("the sleep process", Duration::from_secs(10), || {
        processes(&["sleep", "47"]) > 0
    })
    .await;
    wait_until("the 409", Duration::from_secs(10), || {
        hub.with(|s| s.canceled.contains_key(&2))
    })
    .await;
    let canceled_at = hub.with(|s| s.canceled[&2]);
    wait_until("the RUN to be killed", Duration::from_secs(5), || {
        processes(&["sleep", "47"]) == 0
    })
    .await;
    assert!(canceled_at.elapsed() < Duration::from_secs(5));

    // The worker goes back to claiming, reporting nothing for the task.
    let claims = hub.with(|s| s.claims);
    wait_until("another claim", Duration::from_secs(5), || {
        hub.with(|s| s.claims > claims)
    })
    .await;
    let beats = hub.with(|s| s.heartbeats[&2]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    hub.with(|s| {
        assert!(s.completions.is_empty(), "{:?}", s.completions);
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        assert_eq!(s.heartbeats[&2], beats, "heartbeats after the 409");
        assert!(s.log_posts_after_stop <= 1, "{}", s.log_posts_after_stop);
    });
    assert!(!hub.log(2).contains("never-reached"));
    let took = worker.stop().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_with_their_first_line_and_refusals_not_at_all() {
    let registry = Registry::start().await;
    let hub = Hub::start(&registry.host).await;
    let root = tempfile::tempdir().unwrap();

    // A RUN that fails.
    let failing = root.path().join("failing");
    distgit(
        &failing,
        &format!(
            "FROM {}\nLABEL com.redhat.component=broken name=kiln/broken version=1\n\
             RUN echo about-to-fail && exit 3\n",
            registry.base()
        ),
    );
    hub.enqueue(assignment(3, &failing, "main", &registry.host));
    // A ref that does not exist.
    hub.enqueue(assignment(4, &failing, "no-such-branch", &registry.host));
    // A build the hub refuses when told its labels.
    let refused = root.path().join("refused");
    distgit(
        &refused,
        "FROM elsewhere.example/x\nLABEL com.redhat.component=refuse-me name=x version=1\n",
    );
    hub.enqueue(assignment(5, &refused, "main", &registry.host));
    let worker = Worker::start(&hub);

    wait_until("three tasks handled", Duration::from_secs(240), || {
        hub.with(|s| s.failures.len() >= 2 && s.queue.is_empty() && s.claims >= 4)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;

    let failures = hub.with(|s| s.failures.clone());
    let reasons: HashMap<i64, String> = failures.into_iter().map(|(t, f)| (t, f.reason)).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let run = &reasons[&3];
    assert!(
        run.starts_with("Dockerfile:3: RUN") && run.contains("exit 3") && !run.contains('\n'),
        "{run}"
    );
    assert!(
        !run.contains("/work/"),
        "scratch paths are not in reasons: {run}"
    );
    let log = hub.log(3);
    assert!(log.contains("about-to-fail"), "{log}");
    assert!(log.contains("error: Dockerfile:3: RUN"), "{log}");

    let unknown = &reasons[&4];
    assert!(
        unknown.contains("no-such-branch") && unknown.contains("not found"),
        "{unknown}"
    );
    assert!(hub.log(4).contains("error: "), "{}", hub.log(4));

    // Refused: the hub already failed it; the worker only logs.
    assert!(!reasons.contains_key(&5));
    assert!(
        hub.log(5).contains("outside target t1's registries"),
        "{}",
        hub.log(5)
    );
    assert!(hub.with(|s| s.completions.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_client_maps_answers_to_typed_results() {
    use kiln_worker::hubapi::{HubClient, HubError, Stop};

    let hub = Hub::start("127.0.0.1:1").await;
    let client = HubClient::new(&hub.url(), Some(TOKEN.into()), "w1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    hub.enqueue(assignment(7, dir.path(), "main", "127.0.0.1:1"));

    let a = client.claim().await.unwrap().expect("an assignment");
    assert_eq!((a.task_id, a.build.id), (7, 107));
    assert!(
        client.claim().await.unwrap().is_none(),
        "204: nothing to do"
    );
    client.heartbeat(7).await.unwrap();
    client
        .append_log(7, "héllo\n".as_bytes().to_vec().into())
        .await
        .unwrap();
    assert_eq!(hub.log(7), "héllo\n");

    let refused = client
        .prepared(
            7,
            &Prepared {
                worker: "w1".into(),
                commit: "0".repeat(40),
                labels: [("com.redhat.component", "refuse-me")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                parent: Some("elsewhere.example/x".into()),
                container_yaml: None,
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(HubError::Refused { task: 7, message }) if message.contains("outside")),
        "{refused:?}"
    );

    hub.with(|s| s.cancel_on_log = Some("héllo".into()));
    let stopped = client.heartbeat(7).await;
    assert!(
        matches!(
            &stopped,
            Err(HubError::Stopped {
                task: 7,
                stop: Stop::Canceled,
                ..
            })
        ),
        "{stopped:?}"
    );
    let stopped = client.append_log(7, "more".into()).await;
    assert!(
        matches!(stopped, Err(HubError::Stopped { .. })),
        "{stopped:?}"
    );
    assert!(hub.with(|s| s.unauthorized) == 0);

    // Nobody listening: unreachable, and known to be unsent.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = HubClient::new(&format!("http://127.0.0.1:{port}"), None, "w1").unwrap();
    let e = dead.claim().await.unwrap_err();
    assert!(
        matches!(e, HubError::Unreachable { unsent: true, .. }),
        "{e:?}"
    );
}
