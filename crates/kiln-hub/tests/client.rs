//! The hub client's HTTP handling against a small in-test server that
//! speaks a few endpoints of the API contract: URLs and query strings,
//! bearer tokens, JSON bodies, error bodies, live log streaming, SSE. (The
//! client against the real hub is the end-to-end suite's job.)
#![allow(clippy::unwrap_used)]

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
use kiln_hub::api::protocol::{ApiError, BuildFilter, SubmitBuild};
use kiln_hub::client::{ClientError, HubClient, LogRead};
use kiln_hub::model::{Build, BuildState, Event, Nvr, User};
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
