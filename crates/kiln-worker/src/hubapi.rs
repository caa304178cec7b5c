//! The worker's side of the hub's task API (`/api/v1/tasks/…`): claim a
//! task, keep its lease with heartbeats, report what the Dockerfile says,
//! append to the build log, complete or fail.
//!
//! The hub may be restarting while a worker builds, so calls that must
//! not be lost are retried with backoff on transient errors (the
//! connection refused or reset, a timeout, 429/502/503/504): heartbeats and
//! log appends a few times, `complete` and `fail` until the hub answers.
//! A 409 means the task is no longer this worker's ([`Stop`]); a 422 on
//! `prepared` means the hub refused the build ([`HubError::Refused`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kiln_hub::api::protocol::{
    ApiError, Assignment, ClaimRequest, Completion, Failure, Heartbeat, Prepared, PreparedAnswer,
};
use kiln_hub::model::Build;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the hub took a task back (a 409 answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Someone canceled the build.
    Canceled,
    /// The lease lapsed (or another worker holds the task now).
    Lost,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Canceled => "canceled",
            Stop::Lost => "lost",
        })
    }
}

/// What can go wrong talking to the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub URL given to the worker is not usable.
    #[error("hub URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS configuration).
    #[error("setting up the HTTP client for the hub: {0}")]
    Setup(String),
    /// No answer: connection refused or reset, timeout.
    #[error("{method} {url}: {message}")]
    Unreachable {
        /// The HTTP method.
        method: Method,
        /// The URL called.
        url: String,
        /// reqwest's account, causes included.
        message: String,
        /// The request never left (connection refused, DNS): safe to
        /// repeat even when the call is not idempotent.
        unsent: bool,
    },
    /// An error answer other than the ones with a meaning of their own.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        /// The HTTP method.
        method: Method,
        /// The URL called.
        url: String,
        /// The status code.
        status: u16,
        /// `ApiError.error`, when the body was one.
        code: Option<String>,
        /// `ApiError.message`, or the body's text.
        message: String,
    },
    /// A 2xx answer whose body is not what the contract says.
    #[error("{method} {url}: unreadable answer: {message}")]
    InvalidAnswer {
        /// The HTTP method.
        method: Method,
        /// The URL called.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// 409: the task is not ours any more; stop working on it.
    #[error("task {task} was {stop}: {message}")]
    Stopped {
        /// The task.
        task: i64,
        /// Canceled or lost.
        stop: Stop,
        /// The hub's message.
        message: String,
    },
    /// 422 on `prepared`: the hub refused the build (missing labels, a
    /// parent outside the target's registries, a duplicate NVR…) and has
    /// failed it with this message.
    #[error("task {task}: the hub refused the build: {message}")]
    Refused {
        /// The task.
        task: i64,
        /// The hub's message (the build's failure reason).
        message: String,
    },
}

impl HubError {
    /// Whether repeating the call may succeed: the hub was unreachable or
    /// overloaded. Calls that are not idempotent repeat only `unsent` ones.
    fn transient(&self, idempotent: bool) -> bool {
        match self {
            HubError::Unreachable { unsent, .. } => idempotent || *unsent,
            HubError::Status { status, .. } => idempotent && matches!(status, 429 | 502..=504),
            _ => false,
        }
    }
}

/// How often and how long a call is repeated on transient errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all; `None`: until a definite answer.
    pub attempts: Option<u32>,
    /// The first pause; doubled after every attempt…
    pub first: Duration,
    /// …up to this.
    pub max: Duration,
}

impl Retry {
    /// One attempt.
    pub const NONE: Retry = Retry {
        attempts: Some(1),
        first: Duration::ZERO,
        max: Duration::ZERO,
    };
    /// Heartbeats and log appends: a few quick attempts; the caller comes
    /// back later anyway.
    pub const SHORT: Retry = Retry {
        attempts: Some(4),
        first: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    /// `complete` and `fail`: a finished build must reach the hub, even
    /// across a hub restart.
    pub const FOREVER: Retry = Retry {
        attempts: None,
        first: Duration::from_millis(200),
        max: Duration::from_secs(5),
    };
}

/// Connection set-up and whole-request limits. A request the hub does
/// not answer within `REQUEST_TIMEOUT` counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a non-JSON error body goes into a message.
const MAX_ERROR_BODY: usize = 500;

/// A client of the hub's worker endpoints, for one worker name.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    /// `http(s)://host[:port][/prefix]`, no trailing slash.
    base: String,
    token: Option<String>,
    worker: String,
}

impl HubClient {
    /// A client of the hub at `hub` (`http://host:port`, optionally with a
    /// path prefix) acting as `worker`, sending `token` as a bearer token.
    pub fn new(hub: &str, token: Option<String>, worker: &str) -> Result<HubClient, HubError> {
        let invalid = |reason: &str| HubError::InvalidUrl {
            url: hub.to_string(),
            reason: reason.to_string(),
        };
        let base = hub.trim_end_matches('/');
        let rest = match base.split_once("://") {
            Some(("http" | "https", rest)) => rest,
            Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme {scheme:?}"))),
            None => return Err(invalid("expected http://HOST:PORT or https://HOST:PORT")),
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("no host"));
        }
        if base.contains(['?', '#']) {
            return Err(invalid("a query or fragment has no place in the hub URL"));
        }
        if worker.is_empty() {
            return Err(invalid("the worker name is empty"));
        }
        Ok(HubClient {
            http: http_client()?,
            base: base.to_string(),
            token,
            worker: worker.to_string(),
        })
    }

    /// The name this client reports as.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The same hub and token, under another worker name.
    pub fn with_worker(&self, worker: &str) -> HubClient {
        HubClient {
            worker: worker.to_string(),
            ..self.clone()
        }
    }

    /// `POST /tasks/claim`: a task to work on, or `None` when there is
    /// nothing to do. Not retried: the caller polls.
    pub async fn claim(&self) -> Result<Option<Assignment>, HubError> {
        let body = json_body(&ClaimRequest {
            worker: self.worker.clone(),
        })?;
        let (status, bytes) = self
            .call(Method::POST, "tasks/claim", body, Retry::NONE, false)
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        parse_json(Method::POST, &self.url("tasks/claim"), &bytes).map(Some)
    }

    /// `POST /tasks/{id}/heartbeat`: renews the lease.
    /// [`HubError::Stopped`] when the build was canceled or the lease lost.
    pub async fn heartbeat(&self, task: i64) -> Result<(), HubError> {
        let body = json_body(&Heartbeat {
            worker: self.worker.clone(),
        })?;
        self.task_call(task, "heartbeat", body, Retry::SHORT, true)
            .await
            .map(drop)
    }

    /// `POST /tasks/{id}/prepared`: what the Dockerfile says; the hub
    /// answers with the NVR, the labels to add and the tags to push, or
    /// refuses ([`HubError::Refused`]). Repeated only when the request
    /// never left: the hub may assign a release on it.
    pub async fn prepared(
        &self,
        task: i64,
        prepared: &Prepared,
    ) -> Result<PreparedAnswer, HubError> {
        let path = format!("tasks/{task}/prepared");
        let bytes = self
            .task_call(task, "prepared", json_body(prepared)?, Retry::SHORT, false)
            .await?;
        parse_json(Method::POST, &self.url(&path), &bytes)
    }

    /// `POST /tasks/{id}/log?worker=NAME`: appends `data` to the build log.
    pub async fn append_log(&self, task: i64, data: Bytes) -> Result<(), HubError> {
        let endpoint = format!("log?worker={}", query_escape(&self.worker));
        let body = Body {
            content_type: "text/plain; charset=utf-8",
            data,
        };
        self.task_call(task, &endpoint, body, Retry::SHORT, true)
            .await
            .map(drop)
    }

    /// `POST /tasks/{id}/complete`, repeated until the hub answers (a 409
    /// included: then the build is no longer ours to complete).
    pub async fn complete(&self, task: i64, completion: &Completion) -> Result<Build, HubError> {
        self.complete_with(task, completion, Retry::FOREVER).await
    }

    /// [`HubClient::complete`] with another retry policy.
    pub async fn complete_with(
        &self,
        task: i64,
        completion: &Completion,
        retry: Retry,
    ) -> Result<Build, HubError> {
        let path = format!("tasks/{task}/complete");
        let bytes = self
            .task_call(task, "complete", json_body(completion)?, retry, true)
            .await?;
        parse_json(Method::POST, &self.url(&path), &bytes)
    }

    /// `POST /tasks/{id}/fail` with `reason` (one line), repeated until the
    /// hub answers.
    pub async fn fail(
        &self,
        task: i64,
        reason: &str,
        commit: Option<String>,
    ) -> Result<Build, HubError> {
        let path = format!("tasks/{task}/fail");
        let body = json_body(&Failure {
            worker: self.worker.clone(),
            reason: reason.to_string(),
            commit,
        })?;
        let bytes = self
            .task_call(task, "fail", body, Retry::FOREVER, true)
            .await?;
        parse_json(Method::POST, &self.url(&path), &bytes)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    /// A call on `tasks/{task}/{endpoint}`, with the task's 409 and 422
    /// answers turned into [`HubError::Stopped`] and [`HubError::Refused`].
    async fn task_call(
        &self,
        task: i64,
        endpoint: &str,
        body: Body,
        retry: Retry,
        idempotent: bool,
    ) -> Result<Bytes, HubError> {
        let path = format!("tasks/{task}/{endpoint}");
        match self
            .call(Method::POST, &path, body, retry, idempotent)
            .await
        {
            Ok((_, bytes)) => Ok(bytes),
            Err(HubError::Status {
                status: 409,
                code,
                message,
                ..
            }) => Err(HubError::Stopped {
                task,
                stop: match code.as_deref() {
                    Some("canceled") => Stop::Canceled,
                    _ => Stop::Lost,
                },
                message,
            }),
            Err(HubError::Status {
                status: 422,
                message,
                ..
            }) => Err(HubError::Refused { task, message }),
            Err(e) => Err(e),
        }
    }

    /// Sends the request, repeating it per `retry` while the error is
    /// transient; returns a 2xx status and the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
        retry: Retry,
        idempotent: bool,
    ) -> Result<(StatusCode, Bytes), HubError> {
        let url = self.url(path);
        let mut pause = retry.first;
        let mut attempt = 1u32;
        loop {
            match self.send_once(&method, &url, &body).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.transient(idempotent) && retry.attempts.is_none_or(|n| attempt < n) => {
                    tracing::debug!(error = %e, attempt, "hub call failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(retry.max);
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: &Body,
    ) -> Result<(StatusCode, Bytes), HubError> {
        let unreachable = |e: reqwest::Error| HubError::Unreachable {
            method: method.clone(),
            url: url.to_string(),
            unsent: e.is_connect(),
            message: error_chain(&e),
        };
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::CONTENT_TYPE, body.content_type)
            .body(body.data.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        let (code, message) = match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => (Some(e.error), e.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                let message = if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    truncate(text, MAX_ERROR_BODY)
                };
                (None, message)
            }
        };
        Err(HubError::Status {
            method: method.clone(),
            url: url.to_string(),
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// A request body and its type.
struct Body {
    content_type: &'static str,
    data: Bytes,
}

fn json_body<T: Serialize>(value: &T) -> Result<Body, HubError> {
    let data = serde_json::to_vec(value)
        .map_err(|e| HubError::Setup(format!("encoding a request: {e}")))?;
    Ok(Body {
        content_type: "application/json",
        data: data.into(),
    })
}

fn parse_json<T: DeserializeOwned>(method: Method, url: &str, bytes: &[u8]) -> Result<T, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::InvalidAnswer {
        method,
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// reqwest's error with its causes ("error sending request: … connection
/// refused"), on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Percent-encodes a query value (worker names are usually plain, but a
/// host name with odd characters must not break the URL).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// reqwest with rustls on the ring provider and the platform's
/// certificates (as kiln-client), for hubs behind https.
fn http_client() -> Result<reqwest::Client, HubError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| HubError::Setup(format!("loading the system certificates: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HubError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("kiln-worker/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| HubError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_are_checked() {
        assert!(HubClient::new("http://127.0.0.1:8080/", None, "w1").is_ok());
        assert!(HubClient::new("https://hub.example/kiln", None, "w1").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x",
            "http://",
            "http:///x",
            "http://h?x=1",
        ] {
            assert!(
                matches!(
                    HubClient::new(bad, None, "w1"),
                    Err(HubError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(HubClient::new("http://h", None, "").is_err());
        let c = HubClient::new("http://h:1/", None, "w").unwrap();
        assert_eq!(c.url("tasks/claim"), "http://h:1/api/v1/tasks/claim");
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let unreachable = |unsent| HubError::Unreachable {
            method: Method::POST,
            url: "u".into(),
            message: "m".into(),
            unsent,
        };
        let status = |status| HubError::Status {
            method: Method::POST,
            url: "u".into(),
            status,
            code: None,
            message: "m".into(),
        };
        assert!(unreachable(false).transient(true));
        assert!(!unreachable(false).transient(false));
        assert!(unreachable(true).transient(false));
        assert!(status(503).transient(true));
        assert!(!status(503).transient(false));
        assert!(!status(500).transient(true));
        assert!(!status(400).transient(true));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("host-1.example"), "host-1.example");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
