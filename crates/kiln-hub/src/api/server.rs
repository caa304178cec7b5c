//! The hub's HTTP API (`/api/v1/…`, see `/api/openapi.json`): thin handlers
//! over the database and the domain rules, plus the lease reaper.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use crate::api::logs::LogStore;
use crate::api::protocol::{
    ApiError, Assignment, BuildFilter, ClaimRequest, Completion, Failure, Heartbeat, Prepared,
    PreparedAnswer, SubmitBuild,
};
use crate::db::{self, Db, DbError};
use crate::domain::permissions::{self, AccessPolicy};
use crate::domain::{labels, nvr, policy, state, tags};
use crate::model::{Build, BuildState, Component, Target, TaskState, User};

/// How the hub runs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Seconds a claim holds without a heartbeat.
    pub lease_secs: u64,
    /// Lost leases a build survives before it fails.
    pub max_attempts: u32,
    /// When false, requests without a token act as the admin "admin" (the
    /// single-machine default on loopback); when true every request needs a
    /// token.
    pub auth_required: bool,
    pub access: AccessPolicy,
    /// Builds an automatic rebuild of one image may take (failed ones are
    /// retried up to this many in all).
    pub rebuild_attempts: u32,
    /// Seconds between polls of the package repositories of targets that
    /// take automatic rebuilds; 0 turns the watcher off.
    pub repo_poll_secs: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            lease_secs: 60,
            max_attempts: 3,
            auth_required: false,
            access: AccessPolicy::default(),
            rebuild_attempts: 2,
            repo_poll_secs: 60,
        }
    }
}

pub struct Hub {
    pub db: Db,
    pub logs: LogStore,
    pub config: HubConfig,
    /// Wakes the rebuild coordinator: an event arrived or a build finished.
    pub wake: tokio::sync::Notify,
}

impl Hub {
    pub fn new(db: Db, logs: LogStore, config: HubConfig) -> Hub {
        Hub {
            db,
            logs,
            config,
            wake: tokio::sync::Notify::new(),
        }
    }
}

/// An error answer: status plus the ApiError body.
pub struct ApiErr(StatusCode, ApiError);

impl ApiErr {
    pub(crate) fn new(status: StatusCode, error: &str, message: impl Into<String>) -> ApiErr {
        ApiErr(
            status,
            ApiError {
                error: error.to_string(),
                message: message.into(),
            },
        )
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<DbError> for ApiErr {
    fn from(e: DbError) -> ApiErr {
        let (status, code) = match &e {
            DbError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            DbError::AlreadyExists { .. }
            | DbError::DuplicateNvr { .. }
            | DbError::AlreadyTagged { .. }
            | DbError::NotTagged { .. } => (StatusCode::CONFLICT, "conflict"),
            DbError::State { .. } | DbError::BuildState { .. } | DbError::Release { .. } => {
                (StatusCode::CONFLICT, "state")
            }
            DbError::LeaseNotHeld { .. } => (StatusCode::CONFLICT, "lost"),
            DbError::Flags(_) => (StatusCode::BAD_REQUEST, "invalid"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "hub request failed");
        }
        ApiErr::new(status, code, e.to_string())
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiErr>;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/builds", post(submit).get(list_builds))
        .route("/api/v1/builds/{id}", get(get_build))
        .route("/api/v1/builds/{id}/cancel", post(cancel))
        .route("/api/v1/builds/{id}/log", get(build_log))
        .route("/api/v1/targets", get(list_targets))
        .route("/api/v1/targets/{name}", put(put_target))
        .route("/api/v1/components", get(list_components))
        .route("/api/v1/components/{name}", put(put_component))
        .route("/api/v1/tags/{tag}/builds", get(list_tagged))
        .route(
            "/api/v1/tags/{tag}/builds/{id}",
            put(tag_build).delete(untag_build),
        )
        .route("/api/v1/tags/{tag}/history", get(tag_history))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/events", get(events))
        .route("/api/v1/tasks/claim", post(claim))
        .route("/api/v1/tasks/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/tasks/{id}/prepared", post(prepared))
        .route("/api/v1/tasks/{id}/log", post(append_log))
        .route("/api/v1/tasks/{id}/complete", post(complete))
        .route("/api/v1/tasks/{id}/fail", post(fail))
        .merge(crate::api::rebuilds::routes())
        .with_state(hub)
}

/// Returns lapsed leases to the queue (or fails their builds) forever.
pub fn spawn_reaper(hub: Arc<Hub>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs((hub.config.lease_secs / 3).max(1));
        loop {
            tokio::time::sleep(every).await;
            match hub.db.reap_expired().await {
                Ok(reaped) => {
                    for r in reaped {
                        let who = r.worker.unwrap_or_else(|| "a worker".to_string());
                        let what = if r.build_state == BuildState::Queued {
                            format!(
                                "{who} stopped sending heartbeats: build queued again (attempt {} of {})\n",
                                r.task.attempts + 1,
                                r.task.max_attempts
                            )
                        } else {
                            format!(
                                "{who} stopped sending heartbeats: no attempts left, build failed\n"
                            )
                        };
                        let _ = hub.logs.append(r.task.build_id, what.as_bytes());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reaping expired leases"),
            }
        }
    })
}

// ---------------------------------------------------------------- auth --

pub(crate) async fn user(hub: &Hub, headers: &HeaderMap) -> ApiResult<User> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) => hub.db.user_for_token(t.trim()).await?.ok_or_else(|| {
            ApiErr::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the token is not valid (kiln login)",
            )
        }),
        None if !hub.config.auth_required => Ok(User {
            name: "admin".to_string(),
            admin: true,
        }),
        None => Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this hub needs a token: kiln login, or --token / KILN_TOKEN",
        )),
    }
}

pub(crate) async fn admin(hub: &Hub, headers: &HeaderMap, what: &str) -> ApiResult<User> {
    let u = user(hub, headers).await?;
    permissions::may_administer(&u, what)
        .map_err(|d| ApiErr::new(StatusCode::FORBIDDEN, "forbidden", d.to_string()))?;
    Ok(u)
}

fn forbidden(d: permissions::Denied) -> ApiErr {
    ApiErr::new(StatusCode::FORBIDDEN, "forbidden", d.to_string())
}

// --------------------------------------------------------------- builds --

async fn submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(req): Json<SubmitBuild>,
) -> ApiResult<(StatusCode, Json<Build>)> {
    let u = user(&hub, &headers).await?;
    let (url, git_ref) = match req.source.rsplit_once('#') {
        Some((u, r)) if !r.is_empty() => (u.to_string(), r.to_string()),
        Some((u, _)) => (u.to_string(), "HEAD".to_string()),
        None => (req.source.clone(), "HEAD".to_string()),
    };
    if url.trim().is_empty() {
        return Err(ApiErr::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "source must be GIT_URL#REF",
        ));
    }
    hub.db.get_target(&req.target).await.map_err(|e| match e {
        DbError::NotFound { .. } => ApiErr::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown target {:?} (kiln list-targets)", req.target),
        ),
        other => other.into(),
    })?;
    // The component is known for sure once the worker has read the labels;
    // until then the repository's name stands for it.
    let component = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("unknown")
        .trim_end_matches(".git")
        .to_string();
    match hub.db.get_component(&component).await {
        Ok(_) => {}
        // An admin's first build of a repository registers it, owned by them.
        Err(DbError::NotFound { .. }) if u.admin => {
            hub.db
                .put_component(&Component {
                    name: component.clone(),
                    git_url: url.clone(),
                    owners: vec![u.name.clone()],
                })
                .await?
        }
        Err(DbError::NotFound { .. }) => {
            return Err(ApiErr::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "component {component} is not registered: an admin adds it with kiln add-component"
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let (build, _task) = hub
        .db
        .create_build(&db::NewBuild {
            component,
            source_url: url.clone(),
            source_ref: git_ref.clone(),
            target: req.target.clone(),
            owner: u.name.clone(),
            scratch: req.scratch,
            isolated: req.isolated,
            release_override: req.release.clone(),
            max_attempts: hub.config.max_attempts,
            no_cache: req.no_cache,
            parent_pin: None,
            rebuild_item_id: None,
        })
        .await?;
    let _ = hub.logs.append(
        build.id,
        format!(
            "Build {} submitted by {}: {url}#{git_ref} for target {}{}\n",
            build.id,
            u.name,
            req.target,
            if req.scratch { " (scratch)" } else { "" }
        )
        .as_bytes(),
    );
    Ok((StatusCode::CREATED, Json(build)))
}

async fn list_builds(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(f): Query<BuildFilter>,
) -> ApiResult<Json<Vec<Build>>> {
    user(&hub, &headers).await?;
    let state = match f.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            serde_json::from_value::<BuildState>(serde_json::Value::String(s.to_string()))
                .map_err(|_| {
                    ApiErr::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!(
                            "unknown state {s:?}: queued, building, complete, failed, canceled"
                        ),
                    )
                })?,
        ),
    };
    let mut builds = hub
        .db
        .list_builds(&db::BuildFilter {
            state,
            component: f.component.clone(),
            owner: f.owner.clone(),
            limit: f.limit,
            ..db::BuildFilter::default()
        })
        .await?;
    if let Some(pkg) = f.package.as_deref().filter(|p| !p.is_empty()) {
        let holders: std::collections::BTreeSet<i64> = hub
            .db
            .builds_with_package(pkg)
            .await?
            .into_iter()
            .map(|h| h.build_id)
            .collect();
        builds.retain(|b| holders.contains(&b.id));
    }
    Ok(Json(builds))
}

pub(crate) async fn find_build(hub: &Hub, id: &str) -> ApiResult<Build> {
    match id.parse::<i64>() {
        Ok(n) => Ok(hub.db.get_build(n).await?),
        Err(_) => Ok(hub.db.get_build_by_nvr(id).await?),
    }
}

async fn get_build(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Build>> {
    user(&hub, &headers).await?;
    Ok(Json(find_build(&hub, &id).await?))
}

async fn cancel(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Build>> {
    let u = user(&hub, &headers).await?;
    let build = find_build(&hub, &id).await?;
    permissions::may_cancel(&u, build.id, &build.owner).map_err(forbidden)?;
    hub.wake.notify_one();
    let build = hub
        .db
        .cancel_build(build.id, &format!("canceled by {}", u.name))
        .await?;
    let _ = hub.logs.append(
        build.id,
        format!("Build canceled by {}\n", u.name).as_bytes(),
    );
    Ok(Json(build))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    follow: bool,
}

async fn build_log(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    user(&hub, &headers).await?;
    let build = find_build(&hub, &id).await?;
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        let data = hub.logs.read_from(build.id, q.offset).map_err(|e| {
            ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        return Ok((plain, data).into_response());
    }
    let rx = hub.logs.subscribe(build.id);
    let stream = futures::stream::unfold(
        (hub.clone(), build.id, q.offset, rx, false),
        |(hub, id, offset, mut rx, done)| async move {
            if done {
                return None;
            }
            loop {
                rx.mark_unchanged();
                let data = hub.logs.read_from(id, offset).unwrap_or_default();
                if !data.is_empty() {
                    let next = offset + data.len() as u64;
                    return Some((
                        Ok::<Bytes, Infallible>(Bytes::from(data)),
                        (hub, id, next, rx, false),
                    ));
                }
                let terminal = hub
                    .db
                    .get_build(id)
                    .await
                    .map(|b| state::is_terminal(b.state))
                    .unwrap_or(true);
                if terminal {
                    // One last read: bytes written just before the end.
                    let tail = hub.logs.read_from(id, offset).unwrap_or_default();
                    if tail.is_empty() {
                        return None;
                    }
                    return Some((Ok(Bytes::from(tail)), (hub, id, offset, rx, true)));
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
            }
        },
    );
    Ok((plain, Body::from_stream(stream)).into_response())
}

// ------------------------------------------------- targets, components --

async fn list_targets(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Target>>> {
    user(&hub, &headers).await?;
    Ok(Json(hub.db.list_targets().await?))
}

async fn put_target(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(mut t): Json<Target>,
) -> ApiResult<Json<Target>> {
    admin(&hub, &headers, "define targets").await?;
    t.name = name;
    hub.db.put_target(&t).await?;
    Ok(Json(t))
}

async fn list_components(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<Component>>> {
    user(&hub, &headers).await?;
    Ok(Json(hub.db.list_components().await?))
}

async fn put_component(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(mut c): Json<Component>,
) -> ApiResult<Json<Component>> {
    admin(&hub, &headers, "define components").await?;
    c.name = name;
    hub.db.put_component(&c).await?;
    Ok(Json(c))
}

// ---------------------------------------------------------------- tags --

async fn list_tagged(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(tag): Path<String>,
) -> ApiResult<Json<Vec<Build>>> {
    user(&hub, &headers).await?;
    Ok(Json(hub.db.list_tagged(&tag).await?))
}

async fn may_change_tag(hub: &Hub, u: &User, build: &Build, tag: &str) -> ApiResult<()> {
    let name = build
        .nvr
        .as_ref()
        .map(|n| n.name.clone())
        .unwrap_or_else(|| build.component.clone());
    match hub.db.get_component(&name).await {
        Ok(c) => permissions::may_tag(u, &c, tag).map_err(forbidden),
        Err(DbError::NotFound { .. }) => {
            permissions::may_administer(u, &format!("change tag {tag}")).map_err(forbidden)
        }
        Err(e) => Err(e.into()),
    }
}

async fn tag_build(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((tag, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let u = user(&hub, &headers).await?;
    let build = find_build(&hub, &id).await?;
    may_change_tag(&hub, &u, &build, &tag).await?;
    ensure_tag(&hub, &tag).await?;
    hub.db.tag_build(&tag, build.id, &u.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn untag_build(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path((tag, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let u = user(&hub, &headers).await?;
    let build = find_build(&hub, &id).await?;
    may_change_tag(&hub, &u, &build, &tag).await?;
    hub.db.untag_build(&tag, build.id, &u.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn ensure_tag(hub: &Hub, tag: &str) -> ApiResult<()> {
    match hub.db.create_tag(tag).await {
        Ok(()) | Err(DbError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn tag_history(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(tag): Path<String>,
) -> ApiResult<Json<Vec<crate::model::TagEvent>>> {
    user(&hub, &headers).await?;
    Ok(Json(hub.db.tag_history(Some(&tag)).await?))
}

// ---------------------------------------------------- users and events --

async fn whoami(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> ApiResult<Json<User>> {
    Ok(Json(user(&hub, &headers).await?))
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    admin: bool,
}

async fn create_token(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(req): Json<TokenRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    admin(&hub, &headers, "create tokens").await?;
    match hub.db.get_user(&req.user).await {
        Ok(_) => {}
        Err(DbError::NotFound { .. }) => {
            hub.db
                .put_user(&User {
                    name: req.user.clone(),
                    admin: req.admin,
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    }
    let token = hub.db.create_token(&req.user, &req.description).await?;
    Ok(Json(
        serde_json::json!({ "user": req.user, "token": token }),
    ))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
}

async fn events(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>>> {
    user(&hub, &headers).await?;
    let stream = futures::stream::unfold(
        (hub, q.after, std::collections::VecDeque::new()),
        |(hub, mut after, mut pending): (
            Arc<Hub>,
            i64,
            std::collections::VecDeque<crate::model::Event>,
        )| async move {
            loop {
                if let Some(ev) = pending.pop_front() {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    let sse = SseEvent::default()
                        .id(ev.id.to_string())
                        .event(ev.kind.clone())
                        .data(data);
                    return Some((Ok(sse), (hub, after, pending)));
                }
                match hub.db.events_since(after, 100).await {
                    Ok(evs) if !evs.is_empty() => {
                        after = evs.last().map(|e| e.id).unwrap_or(after);
                        pending.extend(evs);
                    }
                    _ => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

// ------------------------------------------------------------- workers --

async fn claim(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Json(req): Json<ClaimRequest>,
) -> ApiResult<Response> {
    admin(&hub, &headers, "run builds as a worker").await?;
    let lease = hub.config.lease_secs;
    let Some(c) = hub.db.claim_task(&req.worker, lease as i64).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let target = hub.db.get_target(&c.build.target).await?;
    let _ = hub.logs.append(
        c.build.id,
        format!(
            "Worker {} started the build (attempt {} of {})\n",
            req.worker,
            c.task.attempts + 1,
            c.task.max_attempts
        )
        .as_bytes(),
    );
    Ok(Json(Assignment {
        task_id: c.task.id,
        lease_secs: lease,
        build: c.build,
        target,
    })
    .into_response())
}

async fn held_task(hub: &Hub, task_id: i64, worker: &str) -> ApiResult<crate::model::Task> {
    let task = hub.db.get_task(task_id).await?;
    if task.state != TaskState::Claimed || task.worker.as_deref() != Some(worker) {
        let code = if task.state == TaskState::Canceled {
            "canceled"
        } else {
            "lost"
        };
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            code,
            format!("task {task_id} is no longer held by {worker}"),
        ));
    }
    Ok(task)
}

async fn heartbeat(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(hb): Json<Heartbeat>,
) -> ApiResult<StatusCode> {
    admin(&hub, &headers, "run builds as a worker").await?;
    held_task(&hub, id, &hb.worker).await?;
    hub.db
        .heartbeat(id, &hb.worker, hub.config.lease_secs as i64)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prepared(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(p): Json<Prepared>,
) -> ApiResult<Json<PreparedAnswer>> {
    admin(&hub, &headers, "run builds as a worker").await?;
    let task = held_task(&hub, id, &p.worker).await?;
    let build = hub.db.get_build(task.build_id).await?;
    hub.db.set_commit(build.id, &p.commit).await?;
    match decide(&hub, &build, &p).await {
        Ok(answer) => {
            let _ = hub.logs.append(
                build.id,
                format!(
                    "Building {}-{}-{} from {} ({})\n",
                    answer.nvr.name,
                    answer.nvr.version,
                    answer.nvr.release,
                    p.parent.as_deref().unwrap_or("scratch"),
                    p.commit
                )
                .as_bytes(),
            );
            Ok(Json(answer))
        }
        Err(Refusal::Db(e)) => Err(e.into()),
        Err(Refusal::Refused(message)) => {
            let _ = hub
                .logs
                .append(build.id, format!("Refused: {message}\n").as_bytes());
            hub.db.fail_build(id, &p.worker, &message).await?;
            Err(ApiErr::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                message,
            ))
        }
    }
}

enum Refusal {
    Refused(String),
    Db(DbError),
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        match e {
            DbError::DuplicateNvr { .. } | DbError::Release { .. } | DbError::Flags(_) => {
                Refusal::Refused(e.to_string())
            }
            other => Refusal::Db(other),
        }
    }
}

/// The checks a build must pass before it runs, and what it becomes: the
/// NVR, the labels to add, the tags to push, the updates a rebuild must
/// hold.
async fn decide(hub: &Hub, build: &Build, p: &Prepared) -> Result<PreparedAnswer, Refusal> {
    let target = hub.db.get_target(&build.target).await?;
    let identity =
        nvr::identity_from_labels(&p.labels).map_err(|e| Refusal::Refused(e.to_string()))?;
    let owner = match hub.db.get_user(&build.owner).await {
        Ok(u) => u,
        Err(DbError::NotFound { .. }) if !hub.config.auth_required => User {
            name: build.owner.clone(),
            admin: true,
        },
        Err(e) => return Err(e.into()),
    };
    // The label's component when it is registered, else the repository's.
    let component = match hub.db.get_component(&identity.component).await {
        Ok(c) => c,
        Err(DbError::NotFound { .. }) => hub.db.get_component(&build.component).await?,
        Err(e) => return Err(e.into()),
    };
    permissions::may_build(&owner, &component, build.scratch, &hub.config.access)
        .map_err(|d| Refusal::Refused(d.to_string()))?;
    if let Some(parent) = &p.parent {
        if !target.allowed_parents.is_empty() {
            policy::check_parent(parent, &target.name, &target.allowed_parents)
                .map_err(|e| Refusal::Refused(e.to_string()))?;
        }
        hub.db.set_parent(build.id, parent, None).await?;
    }
    let nvr = hub.db.assign_nvr(build.id, &identity).await?;
    let yaml = match &p.container_yaml {
        Some(text) => crate::domain::container_yaml::ContainerYaml::parse(text)
            .map_err(|e| Refusal::Refused(format!("container.yaml: {e}")))?,
        None => Default::default(),
    };
    hub.db.set_autorebuild(build.id, yaml.autorebuild).await?;
    let additional = yaml.tags;
    let plan = tags::plan_tags(&tags::TagInput {
        registry: &target.registry,
        repository: &identity.repository,
        nvr: &nvr,
        kind: tags::BuildKind::from_flags(build.scratch, build.isolated),
        build_id: build.id,
        submitted_at: hub.db.now(),
        additional: &additional,
    })
    .map_err(|e| Refusal::Refused(e.to_string()))?;
    let release_chosen = identity.release.is_none();
    let labels: BTreeMap<String, String> = labels::automatic_labels(&labels::AutoLabelInput {
        build_time: hub.db.now(),
        commit: &p.commit,
        vcs_url: &build.source_url,
        architecture: std::env::consts::ARCH,
        release: release_chosen.then_some(nvr.release.as_str()),
    })
    .map_err(|e| Refusal::Refused(e.to_string()))?;
    let expect = match build.rebuild_item_id {
        Some(item) => hub.db.get_rebuild_item(item).await?.expect,
        None => Vec::new(),
    };
    Ok(PreparedAnswer {
        nvr,
        labels,
        tags: plan.references(),
        expect,
    })
}

#[derive(Deserialize)]
struct WorkerQuery {
    worker: String,
}

async fn append_log(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<WorkerQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    admin(&hub, &headers, "run builds as a worker").await?;
    let task = held_task(&hub, id, &q.worker).await?;
    hub.logs
        .append(task.build_id, &body)
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(c): Json<Completion>,
) -> ApiResult<Json<Build>> {
    admin(&hub, &headers, "run builds as a worker").await?;
    let task = held_task(&hub, id, &c.worker).await?;
    let before = hub.db.get_build(task.build_id).await?;
    let missing = crate::rebuild::missing_updates(&hub, &before, &c.packages)
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Some(why) = missing {
        let _ = hub
            .logs
            .append(before.id, format!("Build failed: {why}\n").as_bytes());
        hub.db.fail_build(id, &c.worker, &why).await?;
        hub.wake.notify_one();
        return Err(ApiErr::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            why,
        ));
    }
    if let Some(parent) = &before.parent_ref {
        hub.db
            .set_parent(before.id, parent, c.parent_digest.as_deref())
            .await?;
    }
    let build = hub
        .db
        .complete_build(
            id,
            &c.worker,
            &db::BuildResult {
                manifest_digest: c.manifest_digest.clone(),
                config_digest: c.config_digest.clone(),
                image_size: c.image_size,
                layers: c.layers.clone(),
                tags: c.tags.clone(),
                packages: c.packages.clone(),
            },
        )
        .await?;
    if !build.scratch {
        let target = hub.db.get_target(&build.target).await?;
        if !target.dest_tag.is_empty() {
            ensure_tag(&hub, &target.dest_tag).await?;
            match hub
                .db
                .tag_build(&target.dest_tag, build.id, &build.owner)
                .await
            {
                Ok(()) | Err(DbError::AlreadyTagged { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let nvr = build
        .nvr
        .as_ref()
        .map(|n| format!("{}-{}-{}", n.name, n.version, n.release))
        .unwrap_or_default();
    let _ = hub.logs.append(
        build.id,
        format!("Build {} complete: {nvr} {}\n", build.id, c.manifest_digest).as_bytes(),
    );
    hub.wake.notify_one();
    match crate::rebuild::parent_built(&hub, &build).await {
        Ok(Some(ev)) => {
            let _ = hub.logs.append(
                build.id,
                format!(
                    "Images built on the build this one replaces are rebuilt on it (rebuild event {})\n",
                    ev.id
                )
                .as_bytes(),
            );
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(build = build.id, error = %e, "starting the rebuild of children"),
    }
    Ok(Json(build))
}

async fn fail(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(f): Json<Failure>,
) -> ApiResult<Json<Build>> {
    admin(&hub, &headers, "run builds as a worker").await?;
    let task = held_task(&hub, id, &f.worker).await?;
    if let Some(commit) = &f.commit {
        hub.db.set_commit(task.build_id, commit).await?;
    }
    let build = hub.db.fail_build(id, &f.worker, &f.reason).await?;
    hub.wake.notify_one();
    let _ = hub
        .logs
        .append(build.id, format!("Build failed: {}\n", f.reason).as_bytes());
    Ok(Json(build))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::api::openapi::document())
}
