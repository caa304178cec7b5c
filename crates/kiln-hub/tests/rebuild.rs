//! Automatic rebuilds through the real hub (HTTP API, SQLite, the rebuild
//! coordinator), with a scripted worker on the worker endpoints standing in
//! for the builder: it answers like kiln's worker does (labels, parent,
//! pushed digest, the packages of the parent image plus those it installs
//! from the "repository" at their current version), so every rule of the
//! cascade is exercised without spending minutes per image. The same
//! cascade with real RPMs, dnf and podman is in crates/kiln/tests/rebuild_e2e.rs.
//!
//! Images: B installs foo; L1 FROM B installs bar; L2 FROM L1; U
//! (unrelated) installs baz.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_hub::api::logs::LogStore;
use kiln_hub::api::protocol::{
    Assignment, ClaimRequest, Completion, Failure, PackageUpdateAnswer, Prepared, PreparedAnswer,
    RebuildEventInfo, SubmitBuild,
};
use kiln_hub::api::server::{Hub, HubConfig, router};
use kiln_hub::db::Db;
use kiln_hub::model::{
    Build, BuildState, Package, PackageKind, RebuildEventState, RebuildItemState, RebuildTrigger,
    Target,
};
use serde_json::{Value, json};

const REGISTRY: &str = "127.0.0.1:5000";
const TAG: &str = "f40-candidate";
const WORKER: &str = "scripted";

/// What the images are: parent, packages installed, container.yaml.
struct Spec {
    parent: Option<&'static str>,
    installs: &'static [&'static str],
    yaml: Option<&'static str>,
}

/// The scripted worker's world: the package repository, the registry.
#[derive(Default)]
struct World {
    /// Package → version `dnf install` gets now.
    repo: HashMap<String, String>,
    /// Repository → digest of its latest push.
    registry: HashMap<String, String>,
    /// Digest → the packages of that image.
    images: HashMap<String, Vec<Package>>,
    /// Repositories whose builds fail.
    failing: HashSet<String>,
    /// Repositories whose builds ignore the repository (a stale mirror).
    stale: HashSet<String>,
    /// Order builds completed in: (repository, build id).
    completed: Vec<(String, i64)>,
    /// Build id → the updates the hub's answer to `prepared` expected.
    expected: HashMap<i64, Vec<String>>,
    specs: HashMap<&'static str, Spec>,
    counter: u64,
}

fn rpm(name: &str, version: &str) -> Package {
    Package {
        kind: PackageKind::Rpm,
        name: name.into(),
        epoch: None,
        version: version.into(),
        release: "1".into(),
        arch: "noarch".into(),
        source: Some(format!("{name}-{version}-1.src.rpm")),
        license: None,
        signing_key: None,
    }
}

struct TestHub {
    base: String,
    http: reqwest::Client,
    dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    world: World,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve(dir: &std::path::Path) -> (String, Vec<tokio::task::JoinHandle<()>>) {
    let url = format!("sqlite://{}?mode=rwc", dir.join("hub.db").display());
    let db = Db::open(&url).await.unwrap();
    let logs = LogStore::open(&dir.join("logs")).unwrap();
    let config = HubConfig {
        rebuild_attempts: 2,
        repo_poll_secs: 0,
        ..HubConfig::default()
    };
    let hub = Arc::new(Hub::new(db, logs, config));
    let coordinator = kiln_hub::rebuild::spawn_rebuilder(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(hub)).await.unwrap();
    });
    (format!("http://{addr}"), vec![coordinator, server])
}

impl TestHub {
    async fn start() -> TestHub {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let keep = tempfile::tempdir().unwrap();
        let dir = keep.path().to_path_buf();
        let (base, tasks) = serve(&dir).await;
        let mut world = World::default();
        world.repo.insert("foo".into(), "1.0".into());
        world.repo.insert("bar".into(), "1.0".into());
        world.repo.insert("baz".into(), "1.0".into());
        world.specs = HashMap::from([
            (
                "b",
                Spec {
                    parent: None,
                    installs: &["foo"],
                    yaml: None,
                },
            ),
            (
                "l1",
                Spec {
                    parent: Some("b"),
                    installs: &["bar"],
                    yaml: None,
                },
            ),
            (
                "l2",
                Spec {
                    parent: Some("l1"),
                    installs: &[],
                    yaml: None,
                },
            ),
            (
                "u",
                Spec {
                    parent: None,
                    installs: &["baz"],
                    yaml: None,
                },
            ),
        ]);
        let hub = TestHub {
            base,
            http: reqwest::Client::new(),
            dir,
            _keep: Some(keep),
            tasks,
            world,
        };
        let target = Target {
            name: "f40".into(),
            allowed_parents: vec![],
            repos: vec![],
            dest_tag: TAG.into(),
            registry: REGISTRY.into(),
            autorebuild: true,
        };
        hub.ok("PUT", "/api/v1/targets/f40", Some(json!(target)))
            .await;
        hub
    }

    /// Stops the hub (server and coordinator) and starts it again on the
    /// same database and logs.
    async fn restart(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let (base, tasks) = serve(&self.dir).await;
        self.base = base;
        self.tasks = tasks;
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    async fn submit(&self, image: &str) -> Build {
        let req = SubmitBuild {
            source: format!("https://git.example/containers/{image}.git#main"),
            target: "f40".into(),
            scratch: false,
            isolated: false,
            release: None,
            no_cache: false,
        };
        serde_json::from_value(self.ok("POST", "/api/v1/builds", Some(json!(req))).await).unwrap()
    }

    async fn build(&self, id: i64) -> Build {
        serde_json::from_value(self.ok("GET", &format!("/api/v1/builds/{id}"), None).await).unwrap()
    }

    async fn update(&self, packages: &[&str]) -> PackageUpdateAnswer {
        let v = self
            .ok(
                "POST",
                "/api/v1/package-updates",
                Some(json!({ "packages": packages })),
            )
            .await;
        serde_json::from_value(v).unwrap()
    }

    async fn event(&self, id: i64) -> RebuildEventInfo {
        serde_json::from_value(
            self.ok("GET", &format!("/api/v1/rebuild-events/{id}"), None)
                .await,
        )
        .unwrap()
    }

    /// Takes one task, if there is one, and does what a worker would.
    async fn work_one(&mut self) -> bool {
        match self.claim().await {
            Some(a) => {
                self.perform(a).await;
                true
            }
            None => false,
        }
    }

    async fn claim(&self) -> Option<Assignment> {
        let (status, v) = self
            .call(
                "POST",
                "/api/v1/tasks/claim",
                Some(json!(ClaimRequest {
                    worker: WORKER.into()
                })),
            )
            .await;
        if status == 204 {
            return None;
        }
        assert_eq!(status, 200, "claim: {v}");
        Some(serde_json::from_value(v).unwrap())
    }

    fn image_of(a: &Assignment) -> String {
        a.build
            .source_url
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".git")
            .to_string()
    }

    async fn perform(&mut self, a: Assignment) {
        let image = TestHub::image_of(&a);
        let spec = &self.world.specs[image.as_str()];
        let parent_ref = spec.parent.map(|p| format!("{REGISTRY}/{p}:latest"));
        let prepared = Prepared {
            worker: WORKER.into(),
            commit: format!("{:040x}", 7),
            labels: BTreeMap::from([
                ("com.redhat.component".to_string(), image.clone()),
                ("name".to_string(), image.clone()),
                ("version".to_string(), "1.0".to_string()),
            ]),
            parent: parent_ref.clone(),
            container_yaml: spec.yaml.map(str::to_string),
        };
        let (status, v) = self
            .call(
                "POST",
                &format!("/api/v1/tasks/{}/prepared", a.task_id),
                Some(json!(prepared)),
            )
            .await;
        if status != 200 {
            // Refused: the hub failed the build itself.
            return;
        }
        let answer: PreparedAnswer = serde_json::from_value(v).unwrap();
        self.world
            .expected
            .insert(a.build.id, answer.expect.clone());
        if self.world.failing.contains(&image) {
            let f = Failure {
                worker: WORKER.into(),
                reason: format!("RUN dnf -y install failed for {image}"),
                commit: None,
            };
            self.ok(
                "POST",
                &format!("/api/v1/tasks/{}/fail", a.task_id),
                Some(json!(f)),
            )
            .await;
            return;
        }
        // The parent: the pinned digest when the hub pinned one, else what
        // the FROM tag points at now (as a pull would).
        let parent_digest = match (&a.build.parent_pin, spec.parent) {
            (Some(pin), _) => {
                let (repo, digest) = pin.split_once('@').unwrap();
                assert_eq!(
                    Some(repo.to_string()),
                    parent_ref
                        .as_ref()
                        .map(|r| r.trim_end_matches(":latest").to_string()),
                    "pinned to the FROM's repository"
                );
                Some(digest.to_string())
            }
            (None, Some(p)) => Some(self.world.registry[p].clone()),
            (None, None) => None,
        };
        let mut packages = parent_digest
            .as_ref()
            .map(|d| self.world.images[d].clone())
            .unwrap_or_default();
        for name in spec.installs {
            let version = if self.world.stale.contains(&image) {
                "1.0".to_string()
            } else {
                self.world.repo[*name].clone()
            };
            packages.retain(|p| p.name != *name);
            packages.push(rpm(name, &version));
        }
        self.world.counter += 1;
        let digest = format!("sha256:{:064x}", self.world.counter);
        let c = Completion {
            worker: WORKER.into(),
            manifest_digest: digest.clone(),
            config_digest: format!("sha256:{:064x}", 1_000_000 + self.world.counter),
            image_size: 100,
            layers: vec![],
            parent_digest,
            tags: answer.tags.clone(),
            packages: packages.clone(),
        };
        let (status, v) = self
            .call(
                "POST",
                &format!("/api/v1/tasks/{}/complete", a.task_id),
                Some(json!(c)),
            )
            .await;
        if status == 200 {
            self.world.registry.insert(image.clone(), digest.clone());
            self.world.images.insert(digest, packages);
            self.world.completed.push((image, a.build.id));
        } else {
            assert_eq!(status, 422, "complete: {v}");
        }
    }

    /// Works until `done` says so (checked whenever there is no task).
    async fn work_until<F, Fut>(&mut self, what: &str, done: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.work_one().await {
                continue;
            }
            if done(self.base.clone()).await {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Works until event `id` has ended.
    async fn finish_event(&mut self, id: i64) -> RebuildEventInfo {
        let http = self.http.clone();
        self.work_until(&format!("event {id}"), |base| {
            let http = http.clone();
            async move {
                let v: Value = http
                    .get(format!("{base}/api/v1/rebuild-events/{id}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                !matches!(v["event"]["state"].as_str(), Some("pending" | "running"))
            }
        })
        .await;
        self.event(id).await
    }

    /// Builds B, L1, L2 and U in order, each to completion.
    async fn initial_images(&mut self) -> HashMap<&'static str, i64> {
        let mut ids = HashMap::new();
        for image in ["b", "l1", "l2", "u"] {
            let b = self.submit(image).await;
            while self.work_one().await {}
            let b = self.build(b.id).await;
            assert_eq!(b.state, BuildState::Complete, "{image}: {:?}", b.reason);
            ids.insert(image, b.id);
        }
        ids
    }

    fn built_after(&self, since: usize) -> Vec<String> {
        self.world.completed[since..]
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }
}

fn item<'a>(
    info: &'a RebuildEventInfo,
    repo: &str,
) -> &'a kiln_hub::api::protocol::RebuildItemInfo {
    info.items
        .iter()
        .find(|i| i.item.repository == repo)
        .unwrap_or_else(|| panic!("no item for {repo}: {info:#?}"))
}

fn has(b: &Build, name: &str, version: &str) -> bool {
    b.packages
        .iter()
        .any(|p| p.name == name && p.version == version)
}

#[tokio::test]
async fn a_package_update_rebuilds_the_lineage_in_order_and_only_it() {
    let mut hub = TestHub::start().await;
    let ids = hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.1".into());

    let answer = hub.update(&["foo-1.1-1.noarch"]).await;
    assert!(!answer.duplicate);
    assert_eq!(answer.event.trigger, RebuildTrigger::PackageUpdate);
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["b", "l1", "l2"], "U is untouched");

    let new_b = hub.build(item(&info, "b").item.build_id.unwrap()).await;
    let new_l1 = hub.build(item(&info, "l1").item.build_id.unwrap()).await;
    let new_l2 = hub.build(item(&info, "l2").item.build_id.unwrap()).await;
    for b in [&new_b, &new_l1, &new_l2] {
        assert_eq!(b.state, BuildState::Complete);
        assert!(has(b, "foo", "1.1"), "{:?} lacks foo-1.1", b.nvr);
        assert!(b.no_cache, "rebuilds skip the layer cache");
        assert_eq!(b.commit.as_deref(), Some(format!("{:040x}", 7).as_str()));
    }
    // A new release each, and each child on its new parent's digest.
    assert_eq!(new_b.nvr.as_ref().unwrap().release, "2");
    assert_eq!(new_l1.parent_build_id, Some(new_b.id));
    assert_eq!(new_l2.parent_build_id, Some(new_l1.id));
    assert_eq!(
        new_l1.parent_pin.as_deref(),
        Some(format!("{REGISTRY}/b@{}", new_b.manifest_digest.as_deref().unwrap()).as_str())
    );
    assert!(new_l1.id > new_b.id && new_l2.id > new_l1.id);
    let l1 = item(&info, "l1");
    assert!(
        l1.item
            .reasons
            .iter()
            .any(|r| r.contains("directly affected by foo-1.1-1.noarch")),
        "{:?}",
        l1.item.reasons
    );
    assert!(
        item(&info, "l2")
            .item
            .reasons
            .iter()
            .any(|r| r.contains("parent l1 rebuilt")),
        "{:?}",
        item(&info, "l2").item.reasons
    );
    assert!(!info.items.iter().any(|i| i.item.repository == "u"));
    assert_eq!(hub.build(ids["u"]).await.state, BuildState::Complete);

    // bar reaches L1 and L2 only.
    let since = hub.world.completed.len();
    hub.world.repo.insert("bar".into(), "1.1".into());
    let answer = hub.update(&["bar-1.1-1.noarch"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["l1", "l2"]);

    // The same event again changes nothing.
    let again = hub.update(&["bar-1.1-1.noarch"]).await;
    assert!(again.duplicate);
    assert_eq!(again.event.id, answer.event.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hub.work_one().await, "a duplicate event queued a build");
}

#[tokio::test]
async fn an_unknown_package_is_recorded_without_rebuilds() {
    let mut hub = TestHub::start().await;
    hub.initial_images().await;
    let answer = hub.update(&["nothere-2.0-1.x86_64"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::NoEffect);
    assert!(info.items.is_empty());
    let message = info.event.message.unwrap_or_default();
    assert!(message.contains("nothere-2.0-1.x86_64"), "{message}");

    let (status, v) = hub
        .call(
            "POST",
            "/api/v1/package-updates",
            Some(json!({ "packages": ["not a nevra"] })),
        )
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn a_failed_rebuild_is_retried_then_holds_its_children_back() {
    let mut hub = TestHub::start().await;
    hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.1".into());
    hub.world.failing.insert("b".into());
    let answer = hub.update(&["foo-1.1-1.noarch"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Failed, "{info:#?}");
    let b = item(&info, "b");
    assert_eq!(b.item.state, RebuildItemState::Failed);
    assert_eq!(b.item.attempts, 2, "retried once");
    let why = b.item.message.clone().unwrap_or_default();
    assert!(why.contains("RUN dnf -y install failed for b"), "{why}");
    for child in ["l1", "l2"] {
        let c = item(&info, child);
        assert_eq!(c.item.state, RebuildItemState::Held, "{child}");
        assert!(c.item.build_id.is_none());
        assert!(
            c.item
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("was not rebuilt"),
            "{:?}",
            c.item.message
        );
    }
    assert!(hub.built_after(since).is_empty());
    let summary = info.event.message.unwrap_or_default();
    assert!(
        summary.contains("1 failed") && summary.contains("2 held back"),
        "{summary}"
    );

    // Once the cause is fixed, reporting the update again retries it.
    hub.world.failing.clear();
    let retry = hub.update(&["foo-1.1-1.noarch"]).await;
    assert!(!retry.duplicate, "a failed event can be reported again");
    assert_ne!(retry.event.id, answer.event.id);
    let info = hub.finish_event(retry.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["b", "l1", "l2"]);
}

#[tokio::test]
async fn a_rebuild_without_the_update_fails_the_check() {
    let mut hub = TestHub::start().await;
    hub.initial_images().await;
    // The mirror the builds see has not synced: dnf still gets foo-1.0.
    hub.world.stale.insert("b".into());
    let answer = hub.update(&["foo-1.1-1.noarch"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Failed);
    let b = item(&info, "b");
    assert_eq!(b.item.state, RebuildItemState::Failed);
    // The worker was told what to check before pushing; builds by hand
    // expect nothing.
    assert_eq!(b.item.expect, ["foo-1.1-1.noarch"]);
    assert_eq!(hub.world.expected[&b.item.build_id.unwrap()], b.item.expect);
    let (_, original) = hub.world.completed[0];
    assert_eq!(hub.world.expected[&original], Vec::<String>::new());
    let build = hub.build(b.item.build_id.unwrap()).await;
    assert_eq!(build.state, BuildState::Failed);
    let reason = build.reason.unwrap_or_default();
    assert!(
        reason.contains("still holds an older version") && reason.contains("foo-1.0-1"),
        "{reason}"
    );
    assert_eq!(item(&info, "l1").item.state, RebuildItemState::Held);
}

#[tokio::test]
async fn overlapping_events_build_each_image_once() {
    let mut hub = TestHub::start().await;
    hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.1".into());
    hub.world.repo.insert("bar".into(), "1.1".into());
    let first = hub.update(&["foo-1.1-1.noarch"]).await;
    let second = hub.update(&["bar-1.1-1.noarch"]).await;
    let one = hub.finish_event(first.event.id).await;
    let two = hub.finish_event(second.event.id).await;
    assert_eq!(one.event.state, RebuildEventState::Complete, "{one:#?}");
    assert_eq!(two.event.state, RebuildEventState::Complete, "{two:#?}");
    assert_eq!(hub.built_after(since), ["b", "l1", "l2"], "each image once");
    let l2 = hub.build(item(&one, "l2").item.build_id.unwrap()).await;
    assert!(has(&l2, "foo", "1.1") && has(&l2, "bar", "1.1"));
    // The second event's images point at the builds that did the work.
    for repo in ["l1", "l2"] {
        let it = item(&two, repo);
        assert_eq!(it.item.state, RebuildItemState::Complete, "{repo}");
        assert_eq!(it.item.build_id, item(&one, repo).item.build_id);
        assert!(it.item.coalesced_into.is_some());
    }
    let l1_expect = &item(&one, "l1").item.expect;
    assert!(
        l1_expect.contains(&"bar-1.1-1.noarch".to_string()),
        "coalesced expectations: {l1_expect:?}"
    );
}

#[tokio::test]
async fn a_hub_restarted_mid_cascade_resumes() {
    let mut hub = TestHub::start().await;
    hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.1".into());
    let answer = hub.update(&["foo-1.1-1.noarch"]).await;
    // Work until L1's rebuild is handed out, then stop the hub while the
    // worker holds it; the worker finishes it against the restarted hub.
    let id = answer.event.id;
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        match hub.claim().await {
            Some(a) if TestHub::image_of(&a) == "l1" => break a,
            Some(a) => hub.perform(a).await,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        assert!(Instant::now() < deadline, "L1's rebuild never came");
    };
    hub.restart().await;
    hub.perform(held).await;
    let info = hub.finish_event(id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["b", "l1", "l2"]);
}

#[tokio::test]
async fn a_parent_rebuilt_by_hand_rebuilds_its_children() {
    let mut hub = TestHub::start().await;
    let ids = hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.2".into());
    let b = hub.submit("b").await;
    while hub.work_one().await {}
    let new_b = hub.build(b.id).await;
    assert_eq!(new_b.state, BuildState::Complete);
    let events: Vec<kiln_hub::model::RebuildEvent> =
        serde_json::from_value(hub.ok("GET", "/api/v1/rebuild-events", None).await).unwrap();
    let ev = events
        .iter()
        .find(|e| e.trigger == RebuildTrigger::ParentBuild)
        .unwrap_or_else(|| panic!("no parent-build event: {events:#?}"));
    assert_eq!(ev.trigger_build_id, Some(new_b.id));
    assert_eq!(ev.replaced_build_id, Some(ids["b"]));
    let info = hub.finish_event(ev.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["b", "l1", "l2"]);
    let l1 = hub.build(item(&info, "l1").item.build_id.unwrap()).await;
    assert_eq!(l1.parent_build_id, Some(new_b.id));
    assert!(has(&l1, "foo", "1.2"));
    assert!(
        item(&info, "l1").item.reasons[0].contains("rebuilt by hand"),
        "{:?}",
        item(&info, "l1").item.reasons
    );
}

#[tokio::test]
async fn images_that_opt_out_are_skipped_with_their_children() {
    let mut hub = TestHub::start().await;
    hub.world.specs.get_mut("l1").unwrap().yaml = Some("autorebuild: false\n");
    hub.initial_images().await;
    let since = hub.world.completed.len();
    hub.world.repo.insert("foo".into(), "1.1".into());
    let answer = hub.update(&["foo-1.1-1.noarch"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(hub.built_after(since), ["b"]);
    assert_eq!(item(&info, "l1").item.state, RebuildItemState::Skipped);
    assert_eq!(item(&info, "l2").item.state, RebuildItemState::Skipped);

    // A tag that does not take rebuilds: nothing at all.
    let target = Target {
        name: "f40".into(),
        allowed_parents: vec![],
        repos: vec![],
        dest_tag: TAG.into(),
        registry: REGISTRY.into(),
        autorebuild: false,
    };
    hub.ok("PUT", "/api/v1/targets/f40", Some(json!(target)))
        .await;
    hub.world.repo.insert("baz".into(), "1.1".into());
    let answer = hub.update(&["baz-1.1-1.noarch"]).await;
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::NoEffect);
    // …until the tag itself opts in.
    hub.ok(
        "PUT",
        &format!("/api/v1/tags/{TAG}"),
        Some(json!({"autorebuild": true})),
    )
    .await;
    let answer = hub.update(&["baz-1.2-1.noarch"]).await;
    hub.world.repo.insert("baz".into(), "1.2".into());
    let info = hub.finish_event(answer.event.id).await;
    assert_eq!(info.event.state, RebuildEventState::Complete, "{info:#?}");
    assert_eq!(item(&info, "u").item.state, RebuildItemState::Complete);
}
