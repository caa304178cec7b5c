//! The hub client's HTTP handling against a small in-test server that
//! speaks a few endpoints of the API contract: URLs and query strings,
//! bearer tokens, JSON bodies, error bodies, live log streaming, SSE. The
//! automatic-rebuild calls (content index, lineage, package updates, plans,
//! rebuild events, tag settings) run against the real hub router on a
//! SQLite database, with builds completed through the worker endpoints.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kiln_hub::api::logs::LogStore;
use kiln_hub::api::protocol::{
    ApiError, Assignment, BuildFilter, ClaimRequest, Completion, ImageMatch, ImagesQuery,
    PackageUpdate, Prepared, PreparedAnswer, RebuildEventFilter, SubmitBuild, TagSettings,
};
use kiln_hub::api::server::{Hub, HubConfig, router};
use kiln_hub::client::{ClientError, HubClient, LogRead};
use kiln_hub::db::Db;
use kiln_hub::model::{
    Build, BuildState, Event, Nvr, Package, PackageKind, RebuildEventState, RebuildItemState,
    RebuildTrigger, TagInfo, Target, User,
};
use tokio::sync::Notify;

#[derive(Default)]
struct Fake {
    /// (method path?query, Authorization header) of every request.
    seen: Mutex<Vec<(String, Option<String>)>>,
    submitted: Mutex<Vec<SubmitBuild>>,
    /// The log handler waits on this between its two chunks.
    client_got_first_chunk: Notify,
}

fn build(id: i64, state: BuildState) -> Build {
    Build {
        id,
        state,
        component: "httpd".into(),
        nvr: Some(Nvr {
            name: "httpd".into(),
            version: "2.4".into(),
            release: "1".into(),
        }),
        source_url: "file:///src/httpd".into(),
        source_ref: "main".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        target: "f40".into(),
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
        created_at: "2025-01-01T00:00:00Z".into(),
        started_at: None,
        completed_at: None,
    }
}

fn api_error(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        Json(ApiError {
            error: error.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

async fn record(
    State(fake): State<Arc<Fake>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = req.uri();
    let line = format!(
        "{} {}",
        req.method(),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    fake.seen.lock().unwrap().push((line, auth));
    next.run(req).await
}

async fn submit(State(fake): State<Arc<Fake>>, Json(req): Json<SubmitBuild>) -> Response {
    fake.submitted.lock().unwrap().push(req);
    (StatusCode::CREATED, Json(build(41, BuildState::Queued))).into_response()
}

async fn list_builds(Query(q): Query<BuildFilter>) -> Json<Vec<Build>> {
    // Echo the filter through the records so the test sees what arrived.
    let mut b = build(1, BuildState::Complete);
    b.owner = q.owner.unwrap_or_default();
    b.component = q.package.unwrap_or_default();
    b.reason = Some(format!("{:?} {:?}", q.state, q.limit));
    Json(vec![b])
}

async fn get_build(Path(id): Path<String>) -> Response {
    match id.as_str() {
        "41" | "httpd-2.4-1" => Json(build(41, BuildState::Complete)).into_response(),
        "bad-json" => (StatusCode::OK, "{\"id\": \"not a number\"}").into_response(),
        "proxy-error" => (StatusCode::BAD_GATEWAY, "<html>upstream down</html>").into_response(),
        other => api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no build {other:?}"),
        ),
    }
}

async fn cancel(Path(id): Path<i64>) -> Response {
    if id == 41 {
        api_error(
            StatusCode::CONFLICT,
            "conflict",
            "build 41 is already complete",
        )
    } else {
        Json(build(id, BuildState::Canceled)).into_response()
    }
}

#[derive(serde::Deserialize)]
struct LogQuery {
    offset: u64,
    follow: bool,
}

async fn log(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Response {
    assert_eq!(id, 41);
    let text = b"step 1\nstep 2\n";
    let start = (q.offset as usize).min(text.len());
    if !q.follow {
        return Bytes::copy_from_slice(&text[start..]).into_response();
    }
    // Two chunks; the second only once the client has handed the first to
    // its sink, so a client that buffers the whole body never finishes.
    let first = Bytes::copy_from_slice(&text[start..]);
    let stream = futures::stream::unfold(0, move |n| {
        let fake = fake.clone();
        let first = first.clone();
        async move {
            match n {
                0 => Some((Ok::<Bytes, Infallible>(first), 1)),
                1 => {
                    fake.client_got_first_chunk.notified().await;
                    Some((Ok(Bytes::from_static(b"done\n")), 2))
                }
                _ => None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn tag(Path((tag, id)): Path<(String, i64)>) -> StatusCode {
    if tag == "f40-candidate" && id == 41 {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::FORBIDDEN
    }
}

async fn whoami(headers: HeaderMap) -> Response {
    match headers.get(header::AUTHORIZATION) {
        Some(v) if v == "Bearer secret-token" => Json(User {
            name: "alice".into(),
            admin: false,
        })
        .into_response(),
        _ => api_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token"),
    }
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    after: Option<i64>,
}

async fn events(
    Query(q): Query<EventsQuery>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let first = q.after.unwrap_or(0) + 1;
    // Endless, like the hub's: the client has to stop on its own.
    let stream = futures::stream::unfold(first, |id| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ev = Event {
            id,
            at: "2025-01-01T00:00:00Z".into(),
            kind: "build.state".into(),
            build_id: Some(41),
            payload: serde_json::json!({"state": "building", "line": "a\nb"}),
        };
        let sse = SseEvent::default()
            .id(id.to_string())
            .event("build.state")
            .data(serde_json::to_string(&ev).unwrap());
        Some((Ok(sse), id + 1))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_millis(1)))
}

async fn bad_events() -> Response {
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        "id: 1\nevent: build.state\ndata: {not json\n\n",
    )
        .into_response()
}

async fn serve(prefix: &str) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let api = Router::new()
        .route("/api/v1/builds", post(submit).get(list_builds))
        .route("/api/v1/builds/{id}", get(get_build))
        .route("/api/v1/builds/{id}/cancel", post(cancel))
        .route("/api/v1/builds/{id}/log", get(log))
        .route("/api/v1/tags/{tag}/builds/{id}", put(tag).delete(tag))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/events", get(events));
    let bad = Router::new().route("/bad/api/v1/events", get(bad_events));
    let app = if prefix.is_empty() {
        api
    } else {
        Router::new().nest(prefix, api)
    }
    .merge(bad)
    .layer(axum::middleware::from_fn_with_state(fake.clone(), record))
    .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

#[tokio::test]
async fn submit_sends_the_token_and_the_body_and_reads_the_build() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, Some("secret-token".into())).unwrap();
    let req = SubmitBuild {
        source: "file:///src/httpd#main".into(),
        target: "f40".into(),
        scratch: true,
        isolated: false,
        release: None,
        no_cache: true,
    };
    let b = client.submit_build(&req).await.unwrap();
    assert_eq!((b.id, b.state), (41, BuildState::Queued));
    assert_eq!(*fake.submitted.lock().unwrap(), vec![req]);
    assert_eq!(
        fake.seen.lock().unwrap()[0],
        (
            "POST /api/v1/builds".to_string(),
            Some("Bearer secret-token".to_string())
        )
    );
    assert_eq!(client.whoami().await.unwrap().name, "alice");
}

#[tokio::test]
async fn without_a_token_no_authorization_header_is_sent() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, Some(String::new())).unwrap();
    let err = client.whoami().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(fake.seen.lock().unwrap()[0].1, None);
}

#[tokio::test]
async fn list_filters_become_the_query_string() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, None).unwrap();
    let got = client
        .list_builds(&BuildFilter {
            state: Some("complete".into()),
            owner: Some("bob smith".into()),
            package: Some("glibc&x=1".into()),
            limit: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got[0].owner, "bob smith");
    assert_eq!(got[0].component, "glibc&x=1");
    assert_eq!(got[0].reason.as_deref(), Some("Some(\"complete\") Some(5)"));
    client.list_builds(&BuildFilter::default()).await.unwrap();
    let seen = fake.seen.lock().unwrap();
    assert_eq!(
        seen[0].0,
        "GET /api/v1/builds?state=complete&owner=bob+smith&package=glibc%26x%3D1&limit=5"
    );
    assert_eq!(seen[1].0, "GET /api/v1/builds");
}

#[tokio::test]
async fn a_path_prefix_and_nvrs_reach_the_right_route() {
    let (base, fake) = serve("/kiln").await;
    let client = HubClient::new(&format!("{base}/kiln/"), None).unwrap();
    assert_eq!(client.get_build("httpd-2.4-1").await.unwrap().id, 41);
    // A slash inside a value stays inside its segment.
    let err = client.get_build("a/b").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        fake.seen.lock().unwrap()[1].0,
        "GET /kiln/api/v1/builds/a%2Fb"
    );
}

#[tokio::test]
async fn api_errors_carry_the_hub_s_code_and_message() {
    let (base, _fake) = serve("").await;
    let client = HubClient::new(&base, None).unwrap();
    match client.get_build("nope").await.unwrap_err() {
        ClientError::Api {
            status,
            error,
            message,
            url,
            ..
        } => {
            assert_eq!(status, 404);
            assert_eq!(error, "not_found");
            assert_eq!(message, "no build \"nope\"");
            assert!(url.ends_with("/api/v1/builds/nope"), "{url}");
        }
        other => panic!("{other:?}"),
    }
    let err = client.cancel_build(41).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("already complete"), "{err}");
    assert_eq!(
        client.cancel_build(7).await.unwrap().state,
        BuildState::Canceled
    );

    // Not an ApiError body (a proxy's page): status and the body's start.
    match client.get_build("proxy-error").await.unwrap_err() {
        ClientError::Api {
            status,
            error,
            message,
            ..
        } => {
            assert_eq!((status, error.as_str()), (502, "bad_gateway"));
            assert_eq!(message, "<html>upstream down</html>");
        }
        other => panic!("{other:?}"),
    }
    // A success whose body is not a Build.
    let err = client.get_build("bad-json").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("not a number"), "{err}");
}

#[tokio::test]
async fn tag_and_untag_take_204() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, None).unwrap();
    client.tag_build("f40-candidate", 41).await.unwrap();
    client.untag_build("f40-candidate", 41).await.unwrap();
    assert_eq!(
        client.tag_build("f40", 41).await.unwrap_err().status(),
        Some(403)
    );
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen[0].0, "PUT /api/v1/tags/f40-candidate/builds/41");
    assert_eq!(seen[1].0, "DELETE /api/v1/tags/f40-candidate/builds/41");
}

#[tokio::test]
async fn followed_logs_reach_the_sink_as_they_arrive() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, None).unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        client.stream_log(41, 7, true, |chunk| {
            got.extend_from_slice(chunk);
            if got == b"step 2\n" {
                fake.client_got_first_chunk.notify_one();
            }
        }),
    )
    .await
    .expect("the first chunk never reached the sink before the body ended")
    .unwrap();
    assert_eq!(got, b"step 2\ndone\n");
    assert_eq!(
        read,
        LogRead {
            bytes: 12,
            next_offset: 19
        }
    );
    assert_eq!(
        fake.seen.lock().unwrap()[0].0,
        "GET /api/v1/builds/41/log?offset=7&follow=true"
    );

    let mut all = Vec::new();
    client
        .stream_log(41, 0, false, |c| all.extend_from_slice(c))
        .await
        .unwrap();
    assert_eq!(all, b"step 1\nstep 2\n");
}

#[tokio::test]
async fn events_are_parsed_until_the_callback_stops() {
    let (base, fake) = serve("").await;
    let client = HubClient::new(&base, None).unwrap();
    let mut got = Vec::new();
    let last = tokio::time::timeout(
        Duration::from_secs(20),
        client.events(Some(10), |ev| {
            got.push(ev);
            if got.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(last, Some(13));
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    assert_eq!(got[0].payload["line"], "a\nb");
    assert_eq!(got[0].build_id, Some(41));
    assert_eq!(
        fake.seen.lock().unwrap()[0].0,
        "GET /api/v1/events?after=10"
    );
}

#[tokio::test]
async fn an_undecodable_event_is_a_decode_error() {
    let (base, _fake) = serve("").await;
    let client = HubClient::new(&format!("{base}/bad"), None).unwrap();
    let err = client
        .events(None, |_| ControlFlow::Continue(()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("event 1 (build.state)"), "{err}");
}

#[tokio::test]
async fn an_unreachable_hub_is_an_http_error_naming_the_url() {
    // Bind then drop: a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = HubClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    let err = client.list_targets().await.unwrap_err();
    assert!(matches!(err, ClientError::Http { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("GET http://127.0.0.1:{port}/api/v1/targets")),
        "{err}"
    );
}

// ------------------------------------------------------------ the real hub --

/// The hub's own router on a SQLite database, as `kiln serve` runs it (no
/// rebuild coordinator: the tests run its passes themselves).
struct RealHub {
    client: HubClient,
    hub: Arc<Hub>,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

const TARGET: &str = "f40-container";
const TAG: &str = "f40-container-candidate";

/// What one build of an image is made of.
struct Image<'a> {
    /// The `name` label (the image's repository).
    name: &'a str,
    version: &'a str,
    /// The FROM and the digest the worker pulled for it.
    parent: Option<(&'a str, String)>,
    manifest: String,
    packages: Vec<Package>,
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn rpm(name: &str, epoch: Option<u32>, version: &str, release: &str) -> Package {
    Package {
        kind: PackageKind::Rpm,
        name: name.into(),
        epoch,
        version: version.into(),
        release: release.into(),
        arch: "x86_64".into(),
        source: Some(format!("{name}-{version}-{release}.src.rpm")),
        license: None,
        signing_key: None,
    }
}

async fn real_hub() -> RealHub {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("hub.db").display());
    let db = Db::open(&url).await.unwrap();
    let logs = LogStore::open(&dir.path().join("logs")).unwrap();
    let hub = Arc::new(Hub::new(db, logs, HubConfig::default()));
    let app = router(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let client = HubClient::new(&base, None).unwrap();
    client
        .put_target(&Target {
            name: TARGET.into(),
            allowed_parents: vec![],
            repos: vec![],
            dest_tag: TAG.into(),
            registry: "127.0.0.1:5000".into(),
            autorebuild: false,
        })
        .await
        .unwrap();
    RealHub {
        client,
        hub,
        base,
        http: kiln_hub::client::http_client().unwrap(),
        _dir: dir,
    }
}

impl RealHub {
    async fn worker_call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> T {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Submits a build of `image` and runs it through the worker endpoints
    /// (claim, prepared, complete) as a worker would.
    async fn build(&self, image: &Image<'_>) -> Build {
        let repo = image.name.rsplit('/').next().unwrap();
        let submitted = self
            .client
            .submit_build(&SubmitBuild {
                source: format!("https://git.example/containers/{repo}.git#main"),
                target: TARGET.into(),
                scratch: false,
                isolated: false,
                release: None,
                no_cache: false,
            })
            .await
            .unwrap();
        let a: Assignment = self
            .worker_call(
                "/api/v1/tasks/claim",
                &ClaimRequest {
                    worker: "w1".into(),
                },
            )
            .await;
        assert_eq!(a.build.id, submitted.id);
        let labels: BTreeMap<String, String> = [
            ("com.redhat.component", format!("{repo}-container")),
            ("name", image.name.to_string()),
            ("version", image.version.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let answer: PreparedAnswer = self
            .worker_call(
                &format!("/api/v1/tasks/{}/prepared", a.task_id),
                &Prepared {
                    worker: "w1".into(),
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    labels,
                    parent: image.parent.as_ref().map(|(from, _)| from.to_string()),
                    container_yaml: None,
                },
            )
            .await;
        let done: Build = self
            .worker_call(
                &format!("/api/v1/tasks/{}/complete", a.task_id),
                &Completion {
                    worker: "w1".into(),
                    manifest_digest: image.manifest.clone(),
                    config_digest: digest('c'),
                    image_size: 1000,
                    layers: vec![digest('1')],
                    parent_digest: image.parent.as_ref().map(|(_, d)| d.clone()),
                    tags: answer.tags,
                    packages: image.packages.clone(),
                },
            )
            .await;
        assert_eq!(done.state, BuildState::Complete);
        done
    }

    /// `fedora/base` with openssl 3.0.9-1 (and libstdc++, whose name needs
    /// escaping in a query string).
    async fn base(&self) -> Build {
        self.build(&Image {
            name: "fedora/base",
            version: "40",
            parent: None,
            manifest: digest('a'),
            packages: vec![
                rpm("openssl", Some(1), "3.0.9", "1.fc40"),
                rpm("libstdc++", None, "14.1.1", "5.fc40"),
            ],
        })
        .await
    }

    /// An image built FROM `parent` (its manifest `manifest`).
    async fn child(&self, name: &str, parent: &Build, manifest: char) -> Build {
        self.build(&Image {
            name,
            version: "1",
            parent: Some((
                "127.0.0.1:5000/fedora/base:40",
                parent.manifest_digest.clone().unwrap(),
            )),
            manifest: digest(manifest),
            packages: vec![rpm("httpd", None, "2.4.62", "1.fc40")],
        })
        .await
    }
}

fn nvr_of(b: &Build) -> String {
    b.nvr.as_ref().unwrap().to_string()
}

fn query(package: &str) -> ImagesQuery {
    ImagesQuery {
        package: package.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn images_with_finds_the_latest_images_holding_a_package() {
    let h = real_hub().await;
    let base = h.base().await;
    assert_eq!(nvr_of(&base), "base-container-40-1");

    let found = h
        .client
        .images_with(&query("openssl<1:3.0.9-2"))
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![ImageMatch {
            build_id: base.id,
            nvr: "base-container-40-1".into(),
            tags: vec![TAG.into()],
            package: "openssl-1:3.0.9-1.fc40.x86_64".into(),
        }]
    );
    // `+` and `<` reach the hub as themselves.
    let found = h.client.images_with(&query("libstdc++>=14")).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].package, "libstdc++-14.1.1-5.fc40.x86_64");
    assert!(
        h.client
            .images_with(&query("openssl>=1:3.0.9-2"))
            .await
            .unwrap()
            .is_empty()
    );
    let elsewhere = ImagesQuery {
        tag: Some("f39-container-candidate".into()),
        ..query("openssl")
    };
    assert!(h.client.images_with(&elsewhere).await.unwrap().is_empty());

    // A newer build of the image holds the update: only `all` still finds
    // the older one, and it is no longer the latest on any tag.
    let newer = h
        .build(&Image {
            name: "fedora/base",
            version: "40",
            parent: None,
            manifest: digest('b'),
            packages: vec![rpm("openssl", Some(1), "3.0.9", "2.fc40")],
        })
        .await;
    assert_eq!(nvr_of(&newer), "base-container-40-2");
    assert!(
        h.client
            .images_with(&query("openssl<1:3.0.9-2"))
            .await
            .unwrap()
            .is_empty()
    );
    let all = ImagesQuery {
        all: Some(true),
        ..query("openssl<1:3.0.9-2")
    };
    let found = h.client.images_with(&all).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].build_id, found[0].tags.len()), (base.id, 0));
    let found = h.client.images_with(&query("openssl")).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].build_id, newer.id);

    let err = h
        .client
        .images_with(&query("openssl<<3"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn images_with_a_source_package_finds_its_binary_packages() {
    let h = real_hub().await;
    let libs = |version: &str, release: &str| Package {
        source: Some(format!("openssl-{version}-{release}.src.rpm")),
        ..rpm("openssl-libs", Some(1), version, release)
    };
    let image = h
        .build(&Image {
            name: "fedora/tools",
            version: "40",
            parent: None,
            manifest: digest('t'),
            packages: vec![libs("3.0.9", "1.fc40"), rpm("bash", None, "5.2", "1.fc40")],
        })
        .await;
    let by_source = |package: &str, all: bool| ImagesQuery {
        source: Some(true),
        all: all.then_some(true),
        ..query(package)
    };
    // By binary name the library is not "openssl"; by source name it is.
    assert!(
        h.client
            .images_with(&query("openssl"))
            .await
            .unwrap()
            .is_empty()
    );
    for all in [false, true] {
        let found = h
            .client
            .images_with(&by_source("openssl<1:3.0.9-2", all))
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "all={all}: {found:?}");
        assert_eq!(found[0].build_id, image.id);
        assert_eq!(found[0].package, "openssl-libs-1:3.0.9-1.fc40.x86_64");
        assert!(
            h.client
                .images_with(&by_source("openssl>=1:3.0.9-2", all))
                .await
                .unwrap()
                .is_empty(),
            "all={all}"
        );
        // A binary name is not a source name.
        assert!(
            h.client
                .images_with(&by_source("openssl-libs", all))
                .await
                .unwrap()
                .is_empty(),
            "all={all}"
        );
    }
}

#[tokio::test]
async fn a_package_update_is_recorded_once() {
    let h = real_hub().await;
    let update = PackageUpdate {
        packages: vec![
            "openssl-1:3.0.9-2.fc40.x86_64".into(),
            "zlib-ng-2.1.7-2.fc40.x86_64".into(),
        ],
        repo: Some("f40-updates".into()),
    };
    let first = h.client.package_update(&update).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.event.trigger, RebuildTrigger::PackageUpdate);
    assert_eq!(first.event.state, RebuildEventState::Pending);
    assert_eq!(first.event.repo.as_deref(), Some("f40-updates"));
    assert_eq!(first.event.updates, update.packages);

    // The same updates in another order are the same event.
    let again = PackageUpdate {
        packages: update.packages.iter().rev().cloned().collect(),
        repo: None,
    };
    let second = h.client.package_update(&again).await.unwrap();
    assert!(second.duplicate);
    assert_eq!(second.event.id, first.event.id);
    assert_eq!(second.event, first.event);

    let other = h
        .client
        .package_update(&PackageUpdate {
            packages: vec!["openssl-1:3.0.9-3.fc40.x86_64".into()],
            repo: None,
        })
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_ne!(other.event.id, first.event.id);
}

#[tokio::test]
async fn a_bad_nevra_is_refused_with_a_message() {
    let h = real_hub().await;
    let err = h
        .client
        .package_update(&PackageUpdate {
            packages: vec!["openssl-1:3.0.9-2.fc40.x86_64".into(), "openssl".into()],
            repo: None,
        })
        .await
        .unwrap_err();
    match &err {
        ClientError::Api {
            status,
            error,
            message,
            ..
        } => {
            assert_eq!((*status, error.as_str()), (400, "invalid"));
            assert!(message.contains("\"openssl\""), "{message}");
            assert!(
                message.contains("NAME-[EPOCH:]VERSION-RELEASE.ARCH"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = h.client.rebuild_plan(&[]).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("no packages"), "{err}");
    // Nothing was recorded.
    let events = h
        .client
        .rebuild_events(&RebuildEventFilter::default())
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn the_rebuild_plan_follows_the_tag_s_opt_in() {
    let h = real_hub().await;
    let base = h.base().await;
    let httpd = h.child("fedora/httpd", &base, 'e').await;
    let update = vec!["openssl-1:3.0.9-2.fc40.x86_64".to_string()];

    // Off by default: nothing takes rebuilds.
    let plan = h.client.rebuild_plan(&update).await.unwrap();
    assert!(plan.batches.is_empty(), "{plan:?}");
    assert!(plan.skipped.is_empty(), "{plan:?}");

    let on = h
        .client
        .set_tag(TAG, &TagSettings { autorebuild: true })
        .await
        .unwrap();
    assert_eq!(
        on,
        TagInfo {
            name: TAG.into(),
            autorebuild: true
        }
    );
    assert!(h.client.list_tags().await.unwrap().contains(&on));

    let plan = h.client.rebuild_plan(&update).await.unwrap();
    assert_eq!(plan.batches.len(), 2, "{plan:?}");
    let first = &plan.batches[0];
    assert_eq!(first.len(), 1, "{plan:?}");
    assert_eq!(first[0].build_id, base.id);
    assert_eq!(first[0].nvr.as_deref(), Some("base-container-40-1"));
    // The NVR name (the component label), not the `name` label.
    assert_eq!(first[0].repository, "base-container");
    assert_eq!(first[0].tags, vec![TAG.to_string()]);
    assert!(
        first[0].reasons.iter().any(|r| r.contains("openssl")),
        "{:?}",
        first[0].reasons
    );
    let second = &plan.batches[1];
    assert_eq!(
        (
            second[0].build_id,
            second[0].parent_build_id,
            second[0].depth
        ),
        (httpd.id, Some(base.id), 1)
    );
    assert!(plan.no_effect.is_empty(), "{plan:?}");

    // An update nothing holds an older version of has no effect.
    let plan = h
        .client
        .rebuild_plan(&["openssl-1:3.0.8-1.fc40.x86_64".to_string()])
        .await
        .unwrap();
    assert!(plan.batches.is_empty(), "{plan:?}");
    assert_eq!(plan.no_effect, vec!["openssl-1:3.0.8-1.fc40.x86_64"]);

    h.client
        .set_tag(TAG, &TagSettings { autorebuild: false })
        .await
        .unwrap();
    let plan = h.client.rebuild_plan(&update).await.unwrap();
    assert!(plan.batches.is_empty(), "{plan:?}");
    // A dry run records nothing.
    assert!(
        h.client
            .rebuild_events(&RebuildEventFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_lineage_of_a_parent_and_its_children() {
    let h = real_hub().await;
    let base = h.base().await;
    let httpd = h.child("fedora/httpd", &base, 'e').await;
    let nginx = h.child("fedora/nginx", &base, 'f').await;
    assert_eq!(httpd.parent_build_id, Some(base.id));

    let l = h.client.lineage(&nvr_of(&httpd)).await.unwrap();
    assert_eq!(l.build.id, httpd.id);
    assert_eq!(l.build.state, BuildState::Complete);
    assert_eq!(
        l.ancestors.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![base.id]
    );
    assert!(l.children.is_empty());

    let l = h.client.lineage(&base.id.to_string()).await.unwrap();
    assert!(l.ancestors.is_empty());
    let mut kids: Vec<(i64, Option<String>)> = l
        .children
        .iter()
        .map(|n| (n.build.id, n.build.nvr.clone()))
        .collect();
    kids.sort();
    assert_eq!(
        kids,
        vec![
            (httpd.id, Some("httpd-container-1-1".into())),
            (nginx.id, Some("nginx-container-1-1".into()))
        ]
    );
    assert_eq!(l.children[0].build.parent_build_id, Some(base.id));

    let err = h.client.lineage("nothing-1-1").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn rebuild_events_are_listed_and_shown_with_their_items() {
    let h = real_hub().await;
    let base = h.base().await;
    h.client
        .set_tag(TAG, &TagSettings { autorebuild: true })
        .await
        .unwrap();
    let answer = h
        .client
        .package_update(&PackageUpdate {
            packages: vec!["openssl-1:3.0.9-2.fc40.x86_64".into()],
            repo: None,
        })
        .await
        .unwrap();
    let id = answer.event.id;
    let nothing = h
        .client
        .package_update(&PackageUpdate {
            packages: vec!["bash-5.2.26-3.fc40.x86_64".into()],
            repo: None,
        })
        .await
        .unwrap();

    // One pass of the coordinator plans both and submits the rebuild.
    kiln_hub::rebuild::pass(&h.hub).await.unwrap();

    let all = h
        .client
        .rebuild_events(&RebuildEventFilter::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![nothing.event.id, id],
        "newest first"
    );
    let running = h
        .client
        .rebuild_events(&RebuildEventFilter {
            state: Some("running".into()),
            limit: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].id, id);
    let no_effect = h
        .client
        .rebuild_events(&RebuildEventFilter {
            state: Some("no-effect".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(no_effect.len(), 1, "{no_effect:?}");
    assert_eq!(no_effect[0].id, nothing.event.id);
    let one = h
        .client
        .rebuild_events(&RebuildEventFilter {
            state: None,
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let err = h
        .client
        .rebuild_events(&RebuildEventFilter {
            state: Some("bogus".into()),
            limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("no-effect"), "{err}");

    let info = h.client.rebuild_event(id).await.unwrap();
    assert_eq!(info.event.state, RebuildEventState::Running);
    assert_eq!(info.items.len(), 1, "{info:?}");
    let item = &info.items[0];
    assert_eq!(item.item.original_build_id, base.id);
    assert_eq!(item.original_nvr.as_deref(), Some("base-container-40-1"));
    assert_eq!(item.item.repository, "base-container");
    assert_eq!(item.item.state, RebuildItemState::Building);
    assert_eq!(item.item.attempts, 1);
    assert!(!item.item.reasons.is_empty());
    // The rebuild is queued: no NVR until a worker reads its Dockerfile.
    let rebuild = item.item.build_id.unwrap();
    assert_ne!(rebuild, base.id);
    assert_eq!(item.build_state, Some(BuildState::Queued));
    assert_eq!(item.build_nvr, None);
    let queued = h.client.get_build(&rebuild.to_string()).await.unwrap();
    assert!(queued.no_cache);
    assert_eq!(queued.rebuild_item_id, Some(item.item.id));

    let err = h.client.rebuild_event(id + 100).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}
