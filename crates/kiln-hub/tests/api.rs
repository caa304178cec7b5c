//! The hub's REST API over real HTTP against a real database (SQLite):
//! submit, claim, prepare, log, complete, tags, refusals, cancel, leases,
//! events, the OpenAPI document.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_hub::api::logs::LogStore;
use kiln_hub::api::protocol::{
    Assignment, ClaimRequest, Completion, Failure, Heartbeat, Prepared, PreparedAnswer, SubmitBuild,
};
use kiln_hub::api::server::{Hub, HubConfig, router, spawn_reaper};
use kiln_hub::db::Db;
use kiln_hub::model::{Build, BuildState, Package, PackageKind, RepoSpec, Target};
use serde_json::{Value, json};

struct TestHub {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(config: HubConfig) -> TestHub {
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
    let db = Db::open(&url).await.unwrap();
    let logs = LogStore::open(&dir.path().join("logs")).unwrap();
    let hub = Arc::new(Hub::new(db, logs, config));
    spawn_reaper(hub.clone());
    let app = router(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestHub {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestHub {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, None, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn add_target(&self) {
        let t = Target {
            name: "f40-container".into(),
            allowed_parents: vec!["registry.example/base/".into()],
            repos: vec![RepoSpec {
                name: "f40".into(),
                baseurl: "http://127.0.0.1:1/repo".into(),
                gpgcheck: false,
            }],
            dest_tag: "f40-container-candidate".into(),
            registry: "127.0.0.1:5000".into(),
            autorebuild: false,
        };
        self.ok("PUT", "/api/v1/targets/f40-container", Some(json!(t)))
            .await;
    }

    async fn submit(&self, scratch: bool) -> Build {
        let req = SubmitBuild {
            source: "https://git.example/containers/httpd.git#main".into(),
            target: "f40-container".into(),
            scratch,
            isolated: false,
            release: None,
            no_cache: false,
        };
        serde_json::from_value(self.ok("POST", "/api/v1/builds", Some(json!(req))).await).unwrap()
    }

    async fn claim(&self, worker: &str) -> Option<Assignment> {
        let (status, v) = self
            .call(
                "POST",
                "/api/v1/tasks/claim",
                None,
                Some(json!(ClaimRequest {
                    worker: worker.into()
                })),
            )
            .await;
        match status {
            204 => None,
            200 => Some(serde_json::from_value(v).unwrap()),
            other => panic!("claim: {other} {v}"),
        }
    }

    async fn prepare(&self, task: i64, worker: &str, labels: &[(&str, &str)]) -> (u16, Value) {
        let p = Prepared {
            worker: worker.into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            parent: Some("registry.example/base/fedora:40".into()),
            container_yaml: Some("tags:\n  - stable\n".into()),
        };
        self.call(
            "POST",
            &format!("/api/v1/tasks/{task}/prepared"),
            None,
            Some(json!(p)),
        )
        .await
    }
}

const LABELS: &[(&str, &str)] = &[
    ("com.redhat.component", "httpd-container"),
    ("name", "fedora/httpd"),
    ("version", "2.4"),
];

fn completion(worker: &str) -> Completion {
    Completion {
        worker: worker.into(),
        manifest_digest: format!("sha256:{}", "a".repeat(64)),
        config_digest: format!("sha256:{}", "b".repeat(64)),
        image_size: 1234,
        layers: vec![format!("sha256:{}", "c".repeat(64))],
        parent_digest: Some(format!("sha256:{}", "d".repeat(64))),
        tags: vec!["127.0.0.1:5000/fedora/httpd:2.4-1".into()],
        packages: vec![Package {
            kind: PackageKind::Rpm,
            name: "httpd".into(),
            epoch: None,
            version: "2.4.62".into(),
            release: "1.fc40".into(),
            arch: "x86_64".into(),
            source: Some("httpd-2.4.62-1.fc40.src.rpm".into()),
            license: Some("Apache-2.0".into()),
            signing_key: None,
        }],
    }
}

#[tokio::test]
async fn a_build_goes_from_submission_to_completion() {
    let hub = start(HubConfig::default()).await;
    hub.add_target().await;
    let build = hub.submit(false).await;
    assert_eq!(build.state, BuildState::Queued);

    let a = hub.claim("w1").await.unwrap();
    assert_eq!(a.build.id, build.id);
    assert_eq!(a.target.repos[0].name, "f40");
    assert!(hub.claim("w2").await.is_none(), "one task, one claim");

    let (status, answer) = hub.prepare(a.task_id, "w1", LABELS).await;
    assert_eq!(status, 200, "{answer}");
    let answer: PreparedAnswer = serde_json::from_value(answer).unwrap();
    assert_eq!(
        (
            answer.nvr.name.as_str(),
            answer.nvr.version.as_str(),
            answer.nvr.release.as_str()
        ),
        ("httpd-container", "2.4", "1")
    );
    assert_eq!(answer.tags[0], "127.0.0.1:5000/fedora/httpd:2.4-1");
    assert!(answer.tags.iter().any(|t| t.ends_with(":latest")));
    assert!(
        answer.tags.iter().any(|t| t.ends_with(":stable")),
        "container.yaml tags: {:?}",
        answer.tags
    );
    assert_eq!(
        answer.labels.get("vcs-ref").map(String::as_str),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(answer.labels.get("release").map(String::as_str), Some("1"));

    let hb = json!(Heartbeat {
        worker: "w1".into()
    });
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/heartbeat", a.task_id),
            None,
            Some(hb),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/heartbeat", a.task_id),
            None,
            Some(json!(Heartbeat {
                worker: "intruder".into()
            })),
        )
        .await;
    assert_eq!(s, 409, "a heartbeat from another worker is refused");

    let log = hub
        .http
        .post(format!(
            "{}/api/v1/tasks/{}/log?worker=w1",
            hub.base, a.task_id
        ))
        .body("STEP 1/2: FROM registry.example/base/fedora:40\n")
        .send()
        .await
        .unwrap();
    assert_eq!(log.status().as_u16(), 204);

    let done: Build = serde_json::from_value(
        hub.ok(
            "POST",
            &format!("/api/v1/tasks/{}/complete", a.task_id),
            Some(json!(completion("w1"))),
        )
        .await,
    )
    .unwrap();
    assert_eq!(done.state, BuildState::Complete);
    assert_eq!(
        done.commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(
        done.parent_ref.as_deref(),
        Some("registry.example/base/fedora:40")
    );
    assert_eq!(done.packages.len(), 1);

    // By NVR, in the destination tag, findable by package.
    let by_nvr: Build = serde_json::from_value(
        hub.ok("GET", "/api/v1/builds/httpd-container-2.4-1", None)
            .await,
    )
    .unwrap();
    assert_eq!(by_nvr.id, build.id);
    let tagged = hub
        .ok("GET", "/api/v1/tags/f40-container-candidate/builds", None)
        .await;
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let with_httpd = hub.ok("GET", "/api/v1/builds?package=httpd", None).await;
    assert_eq!(with_httpd.as_array().unwrap().len(), 1);
    let with_other = hub.ok("GET", "/api/v1/builds?package=nginx", None).await;
    assert!(with_other.as_array().unwrap().is_empty());

    // The log has the hub's and the worker's lines, and a follow ends
    // because the build is over.
    let text = tokio::time::timeout(
        Duration::from_secs(10),
        hub.text(&format!("/api/v1/builds/{}/log?follow=true", build.id)),
    )
    .await
    .expect("a follow of a finished build ends");
    assert!(text.contains("submitted by admin"), "{text}");
    assert!(text.contains("STEP 1/2"), "{text}");
    assert!(text.contains("complete: httpd-container-2.4-1"), "{text}");

    // A second build of the same labels gets the next release.
    hub.submit(false).await;
    let a2 = hub.claim("w1").await.unwrap();
    let (s, answer) = hub.prepare(a2.task_id, "w1", LABELS).await;
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["nvr"]["release"], "2");
}

#[tokio::test]
async fn refusals_fail_the_build_with_the_reason() {
    let hub = start(HubConfig::default()).await;
    hub.add_target().await;

    // Missing labels.
    let b = hub.submit(false).await;
    let a = hub.claim("w").await.unwrap();
    let (s, v) = hub
        .prepare(a.task_id, "w", &[("name", "fedora/httpd")])
        .await;
    assert_eq!(s, 422, "{v}");
    let failed: Build = serde_json::from_value(
        hub.ok("GET", &format!("/api/v1/builds/{}", b.id), None)
            .await,
    )
    .unwrap();
    assert_eq!(failed.state, BuildState::Failed);
    assert!(failed.reason.unwrap_or_default().contains("version"));

    // A duplicate NVR (the release label given twice).
    let with_release = [LABELS, &[("release", "7")]].concat();
    hub.submit(false).await;
    let a = hub.claim("w").await.unwrap();
    let (s, _) = hub.prepare(a.task_id, "w", &with_release).await;
    assert_eq!(s, 200);
    hub.ok(
        "POST",
        &format!("/api/v1/tasks/{}/complete", a.task_id),
        Some(json!(completion("w"))),
    )
    .await;
    hub.submit(false).await;
    let a = hub.claim("w").await.unwrap();
    let (s, v) = hub.prepare(a.task_id, "w", &with_release).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("httpd-container-2.4-7"),
        "{v}"
    );

    // A parent outside the target's registries.
    hub.submit(false).await;
    let a = hub.claim("w").await.unwrap();
    let p = Prepared {
        worker: "w".into(),
        commit: "c0ffee".into(),
        labels: LABELS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        parent: Some("docker.io/library/alpine:3".into()),
        container_yaml: None,
    };
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/prepared", a.task_id),
            None,
            Some(json!(p)),
        )
        .await;
    assert_eq!(s, 422, "{v}");

    // An explicit failure is recorded with its reason.
    let b = hub.submit(false).await;
    let a = hub.claim("w").await.unwrap();
    let f = Failure {
        worker: "w".into(),
        reason: "Dockerfile:3: RUN false failed (exit code 1)".into(),
        commit: Some("c0ffee".into()),
    };
    let failed: Build = serde_json::from_value(
        hub.ok(
            "POST",
            &format!("/api/v1/tasks/{}/fail", a.task_id),
            Some(json!(f)),
        )
        .await,
    )
    .unwrap();
    assert_eq!(failed.id, b.id);
    assert_eq!(failed.state, BuildState::Failed);
    assert_eq!(
        failed.commit.as_deref(),
        Some("c0ffee"),
        "the failure records the commit"
    );

    // Unknown target.
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/builds",
            None,
            Some(json!({"source": "https://x/y.git#main", "target": "nope"})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn tokens_owners_and_cancel() {
    let hub = start(HubConfig {
        auth_required: true,
        ..HubConfig::default()
    })
    .await;
    let (s, _) = hub.call("GET", "/api/v1/whoami", None, None).await;
    assert_eq!(s, 401, "auth required: no token, no answer");
    // Bootstrap an admin directly in the database the way `kiln serve` does.
    let admin_token = {
        let dir = hub._dir.path().join("hub.db");
        let db = Db::open(&format!("sqlite://{}?mode=rwc", dir.display()))
            .await
            .unwrap();
        db.put_user(&kiln_hub::model::User {
            name: "root".into(),
            admin: true,
        })
        .await
        .unwrap();
        db.create_token("root", "test").await.unwrap()
    };
    let (s, me) = hub
        .call("GET", "/api/v1/whoami", Some(&admin_token), None)
        .await;
    assert_eq!((s, me["name"].as_str()), (200, Some("root")));
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&admin_token),
            Some(json!({"user": "alice", "description": "cli"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let alice = v["token"].as_str().unwrap().to_string();
    let (s, _) = hub.call("PUT", "/api/v1/targets/t", Some(&alice), Some(json!({"name": "t", "allowed_parents": [], "repos": [], "dest_tag": "", "registry": "r:1"}))).await;
    assert_eq!(s, 403, "only admins define targets");
    let (s, _) = hub.call("PUT", "/api/v1/targets/t", Some(&admin_token), Some(json!({"name": "t", "allowed_parents": [], "repos": [], "dest_tag": "", "registry": "r:1"}))).await;
    assert_eq!(s, 200);
    hub.call(
        "PUT",
        "/api/v1/components/httpd",
        Some(&admin_token),
        Some(json!({"name": "httpd", "git_url": "https://x", "owners": ["bob"]})),
    )
    .await;

    // alice submits, but she does not own the component: refused at prepare.
    let (s, b) = hub
        .call(
            "POST",
            "/api/v1/builds",
            Some(&alice),
            Some(json!({"source": "https://x/httpd.git#main", "target": "t"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, a) = hub
        .call(
            "POST",
            "/api/v1/tasks/claim",
            Some(&admin_token),
            Some(json!({"worker": "w"})),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let p = Prepared {
        worker: "w".into(),
        commit: "c0ffee".into(),
        labels: LABELS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        parent: None,
        container_yaml: None,
    };
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/prepared", a["task_id"]),
            Some(&admin_token),
            Some(json!(p)),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("alice"), "{v}");

    // A worker needs an admin token.
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/tasks/claim",
            Some(&alice),
            Some(json!({"worker": "w"})),
        )
        .await;
    assert_eq!(s, 403);

    // alice cancels her own queued build; a canceled build cannot be canceled again.
    let (_, b2) = hub
        .call(
            "POST",
            "/api/v1/builds",
            Some(&alice),
            Some(json!({"source": "https://x/httpd.git#main", "target": "t"})),
        )
        .await;
    let (s, c) = hub
        .call(
            "POST",
            &format!("/api/v1/builds/{}/cancel", b2["id"]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((s, c["state"].as_str()), (200, Some("canceled")));
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/builds/{}/cancel", b2["id"]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn a_lost_lease_requeues_and_a_canceled_task_stops_its_worker() {
    let hub = start(HubConfig {
        lease_secs: 2,
        max_attempts: 3,
        ..HubConfig::default()
    })
    .await;
    hub.add_target().await;
    let b = hub.submit(false).await;
    let first = hub.claim("dies").await.unwrap();
    // No heartbeat: the reaper gives the task back.
    let mut again = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(a) = hub.claim("lives").await {
            again = Some(a);
            break;
        }
    }
    let again = again.expect("the task came back after its lease lapsed");
    assert_eq!(again.build.id, b.id);
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/complete", first.task_id),
            None,
            Some(json!(completion("dies"))),
        )
        .await;
    assert_eq!(s, 409, "the old holder cannot complete: {v}");
    let log = hub.text(&format!("/api/v1/builds/{}/log", b.id)).await;
    assert!(log.contains("dies stopped sending heartbeats"), "{log}");

    // Cancel while running: the next heartbeat says so.
    hub.ok("POST", &format!("/api/v1/builds/{}/cancel", b.id), None)
        .await;
    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{}/heartbeat", again.task_id),
            None,
            Some(json!(Heartbeat {
                worker: "lives".into()
            })),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("canceled")));
}

#[tokio::test]
async fn events_and_openapi() {
    let hub = start(HubConfig::default()).await;
    hub.add_target().await;
    let b = hub.submit(false).await;
    let resp = hub
        .http
        .get(format!("{}/api/v1/events?after=0", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    let mut seen = String::new();
    while !seen.contains("\"state\":\"queued\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: build.state"), "{seen}");
    assert!(seen.contains(&format!("\"build_id\":{}", b.id)), "{seen}");

    let doc = hub.ok("GET", "/api/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/tasks/claim"]["post"].is_object());
}
