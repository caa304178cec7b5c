//! A client of the hub's user endpoints (`/api/v1/…`, see the API contract):
//! what `kiln container-build`, `kiln build-info` and the other commands
//! call. The worker endpoints (`/api/v1/tasks/…`) are not here.
//!
//! Plain HTTP and HTTPS (rustls on the ring provider, certificates checked
//! against the system store, as in kiln-client).

mod sse;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use sse::{SseMessage, SseParser};

use crate::api::protocol::{
    ApiError, BuildFilter, ImageMatch, ImagesQuery, Lineage, PackageUpdate, PackageUpdateAnswer,
    PlanView, RebuildEventFilter, RebuildEventInfo, RebuildPlanRequest, SubmitBuild, TagSettings,
};
use crate::model::{Build, Component, Event, RebuildEvent, TagEvent, TagInfo, Target, User};

/// Whole-request limit for the JSON calls; the streams (logs, events) have
/// none: a build may print nothing for a long time.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a non-JSON error body goes into an error message.
const BODY_EXCERPT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid hub URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("setting up the HTTP client: {0}")]
    Setup(String),
    /// The hub could not be reached or the connection broke.
    #[error("{method} {url}: {source}")]
    Http {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error (its `ApiError` body, or the status
    /// and the start of the body when it was not one).
    #[error("{method} {url}: HTTP {status}: {error}: {message}")]
    Api {
        method: Method,
        url: String,
        status: u16,
        error: String,
        message: String,
    },
    /// A 2xx answer whose body is not what the contract says.
    #[error("{method} {url}: cannot decode the answer: {reason}")]
    Decode {
        method: Method,
        url: String,
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an API refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A client of one hub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: Arc<Url>,
    token: Option<Arc<str>>,
}

/// What [`HubClient::stream_log`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRead {
    /// Bytes handed to the sink.
    pub bytes: u64,
    /// The offset to ask for next time: the starting offset plus `bytes`.
    pub next_offset: u64,
}

impl HubClient {
    /// `base_url` is the hub's root (`http://host:8080`, or with a path
    /// prefix when behind a proxy); `token` is sent as a bearer token.
    pub fn new(base_url: &str, token: Option<String>) -> Result<HubClient> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let mut base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                base.scheme()
            )));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("no host".to_string()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a hub URL takes no query or fragment".to_string()));
        }
        // `http://hub/prefix` and `http://hub/prefix/` mean the same.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        Ok(HubClient {
            http: http_client()?,
            base: Arc::new(base),
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        })
    }

    /// The hub's root URL as given.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `/api/v1/` + the segments, each percent-encoded (an NVR or a tag
    /// name cannot escape its segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = (*self.base).clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(["api", "v1"]).extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url.clone());
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends and checks the status; API errors become [`ClientError::Api`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|source| ClientError::Http {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let (error, message) = match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => (e.error, e.message),
            Err(_) => (
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_lowercase()
                    .replace(' ', "_"),
                excerpt(&body),
            ),
        };
        Err(ClientError::Api {
            method,
            url: url.to_string(),
            status: status.as_u16(),
            error,
            message,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let mut req = self.request(method.clone(), &url).timeout(CALL_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(method.clone(), url.clone(), req).await?;
        let bytes = resp.bytes().await.map_err(|source| ClientError::Http {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method,
            url: url.to_string(),
            reason: format!("{e} (body: {})", excerpt(&bytes)),
        })
    }

    /// For the 204 answers: the status is all there is.
    async fn call_empty(&self, method: Method, url: Url) -> Result<()> {
        let req = self.request(method.clone(), &url).timeout(CALL_TIMEOUT);
        self.send(method, url, req).await.map(drop)
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        self.call(Method::GET, url, None::<&()>).await
    }

    /// `POST /api/v1/builds`: the build, queued.
    pub async fn submit_build(&self, req: &SubmitBuild) -> Result<Build> {
        self.call(Method::POST, self.url(&["builds"]), Some(req))
            .await
    }

    /// `GET /api/v1/builds`: newest first.
    pub async fn list_builds(&self, filter: &BuildFilter) -> Result<Vec<Build>> {
        let mut url = self.url(&["builds"]);
        {
            let mut q = url.query_pairs_mut();
            let pairs = [
                ("state", filter.state.as_deref()),
                ("component", filter.component.as_deref()),
                ("owner", filter.owner.as_deref()),
                ("package", filter.package.as_deref()),
            ];
            for (k, v) in pairs {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            if let Some(limit) = filter.limit {
                q.append_pair("limit", &limit.to_string());
            }
        }
        // `url` crate leaves a bare `?` behind an empty serializer.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.get(url).await
    }

    /// `GET /api/v1/builds/{id or N-V-R}`.
    pub async fn get_build(&self, id_or_nvr: &str) -> Result<Build> {
        self.get(self.url(&["builds", id_or_nvr])).await
    }

    /// `POST /api/v1/builds/{id}/cancel`: 409 when already finished.
    pub async fn cancel_build(&self, id: i64) -> Result<Build> {
        self.call(
            Method::POST,
            self.url(&["builds", &id.to_string(), "cancel"]),
            None::<&()>,
        )
        .await
    }

    /// `GET /api/v1/builds/{id}/log`: hands the log from byte `offset` to
    /// `sink` chunk by chunk as it arrives. With `follow` the hub keeps the
    /// answer open until the build is finished. A broken connection is an
    /// error; what was read before it went to the sink, so a caller resumes
    /// at the offset it counted.
    pub async fn stream_log(
        &self,
        id: i64,
        offset: u64,
        follow: bool,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<LogRead> {
        let mut url = self.url(&["builds", &id.to_string(), "log"]);
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string())
            .append_pair("follow", if follow { "true" } else { "false" });
        let mut req = self.request(Method::GET, &url);
        if !follow {
            req = req.timeout(CALL_TIMEOUT);
        }
        let mut resp = self.send(Method::GET, url.clone(), req).await?;
        let mut bytes = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    sink(&chunk);
                    bytes += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(source) => {
                    return Err(ClientError::Http {
                        method: Method::GET,
                        url: url.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(LogRead {
            bytes,
            next_offset: offset + bytes,
        })
    }

    /// `GET /api/v1/targets`.
    pub async fn list_targets(&self) -> Result<Vec<Target>> {
        self.get(self.url(&["targets"])).await
    }

    /// `PUT /api/v1/targets/{name}` (admin): creates or replaces.
    pub async fn put_target(&self, target: &Target) -> Result<Target> {
        self.call(
            Method::PUT,
            self.url(&["targets", &target.name]),
            Some(target),
        )
        .await
    }

    /// `GET /api/v1/components`.
    pub async fn list_components(&self) -> Result<Vec<Component>> {
        self.get(self.url(&["components"])).await
    }

    /// `PUT /api/v1/components/{name}` (admin): creates or replaces.
    pub async fn put_component(&self, component: &Component) -> Result<Component> {
        self.call(
            Method::PUT,
            self.url(&["components", &component.name]),
            Some(component),
        )
        .await
    }

    /// `GET /api/v1/tags/{tag}/builds`.
    pub async fn list_tagged(&self, tag: &str) -> Result<Vec<Build>> {
        self.get(self.url(&["tags", tag, "builds"])).await
    }

    /// `PUT /api/v1/tags/{tag}/builds/{id}`.
    pub async fn tag_build(&self, tag: &str, id: i64) -> Result<()> {
        self.call_empty(
            Method::PUT,
            self.url(&["tags", tag, "builds", &id.to_string()]),
        )
        .await
    }

    /// `DELETE /api/v1/tags/{tag}/builds/{id}`.
    pub async fn untag_build(&self, tag: &str, id: i64) -> Result<()> {
        self.call_empty(
            Method::DELETE,
            self.url(&["tags", tag, "builds", &id.to_string()]),
        )
        .await
    }

    /// `GET /api/v1/tags/{tag}/history`.
    pub async fn tag_history(&self, tag: &str) -> Result<Vec<TagEvent>> {
        self.get(self.url(&["tags", tag, "history"])).await
    }

    /// `GET /api/v1/whoami`.
    pub async fn whoami(&self) -> Result<User> {
        self.get(self.url(&["whoami"])).await
    }

    /// `POST /api/v1/tokens` (admin): a new token for `user`, created when
    /// missing (`admin` only matters then).
    pub async fn create_token(
        &self,
        user: &str,
        description: &str,
        admin: Option<bool>,
    ) -> Result<String> {
        #[derive(Serialize)]
        struct NewToken<'a> {
            user: &'a str,
            description: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            admin: Option<bool>,
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
        }
        let t: Token = self
            .call(
                Method::POST,
                self.url(&["tokens"]),
                Some(&NewToken {
                    user,
                    description,
                    admin,
                }),
            )
            .await?;
        Ok(t.token)
    }

    /// `GET /api/v1/images?package=Q[&tag=T][&all=true]`: the images
    /// holding a package that answers the query (`openssl`,
    /// `openssl<3.0.9-2`), by NVR.
    pub async fn images_with(&self, query: &ImagesQuery) -> Result<Vec<ImageMatch>> {
        let mut url = self.url(&["images"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("package", &query.package);
            if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
                q.append_pair("tag", tag);
            }
            if let Some(all) = query.all {
                q.append_pair("all", if all { "true" } else { "false" });
            }
            if let Some(source) = query.source {
                q.append_pair("source", if source { "true" } else { "false" });
            }
        }
        self.get(url).await
    }

    /// `GET /api/v1/builds/{id or N-V-R}/lineage`: the build's ancestors and
    /// the tree of builds made FROM it.
    pub async fn lineage(&self, id_or_nvr: &str) -> Result<Lineage> {
        self.get(self.url(&["builds", id_or_nvr, "lineage"])).await
    }

    /// `POST /api/v1/package-updates` (admin): records a package-update
    /// event; the same updates reported again answer with the earlier
    /// event and `duplicate`.
    pub async fn package_update(&self, update: &PackageUpdate) -> Result<PackageUpdateAnswer> {
        self.call(Method::POST, self.url(&["package-updates"]), Some(update))
            .await
    }

    /// `POST /api/v1/rebuild-plan`: what updated packages (`name-[E:]V-R.arch`)
    /// would rebuild; nothing is recorded.
    pub async fn rebuild_plan(&self, packages: &[String]) -> Result<PlanView> {
        let req = RebuildPlanRequest {
            packages: packages.to_vec(),
        };
        self.call(Method::POST, self.url(&["rebuild-plan"]), Some(&req))
            .await
    }

    /// `GET /api/v1/rebuild-events`: newest first.
    pub async fn rebuild_events(&self, filter: &RebuildEventFilter) -> Result<Vec<RebuildEvent>> {
        let mut url = self.url(&["rebuild-events"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(state) = filter.state.as_deref() {
                q.append_pair("state", state);
            }
            if let Some(limit) = filter.limit {
                q.append_pair("limit", &limit.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.get(url).await
    }

    /// `GET /api/v1/rebuild-events/{id}`: the event and its items.
    pub async fn rebuild_event(&self, id: i64) -> Result<RebuildEventInfo> {
        self.get(self.url(&["rebuild-events", &id.to_string()]))
            .await
    }

    /// `GET /api/v1/tags`: every tag and whether it takes automatic rebuilds.
    pub async fn list_tags(&self) -> Result<Vec<TagInfo>> {
        self.get(self.url(&["tags"])).await
    }

    /// `PUT /api/v1/tags/{tag}` (admin): creates the tag when missing.
    pub async fn set_tag(&self, tag: &str, settings: &TagSettings) -> Result<TagInfo> {
        self.call(Method::PUT, self.url(&["tags", tag]), Some(settings))
            .await
    }

    /// `GET /api/v1/events?after=ID`: calls `callback` with every event
    /// after `after` as it is logged, until the callback breaks or the hub
    /// ends the stream. Returns the id of the last event handed over (or
    /// `after`), to resume from.
    pub async fn events(
        &self,
        after: Option<i64>,
        mut callback: impl FnMut(Event) -> ControlFlow<()>,
    ) -> Result<Option<i64>> {
        let mut url = self.url(&["events"]);
        if let Some(after) = after {
            url.query_pairs_mut()
                .append_pair("after", &after.to_string());
        }
        let req = self
            .request(Method::GET, &url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let mut resp = self.send(Method::GET, url.clone(), req).await?;
        let http_err = |source| ClientError::Http {
            method: Method::GET,
            url: url.to_string(),
            source,
        };
        let mut parser = SseParser::new();
        let mut last = after;
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            for msg in parser.push(&chunk) {
                let event: Event =
                    serde_json::from_str(&msg.data).map_err(|e| ClientError::Decode {
                        method: Method::GET,
                        url: url.to_string(),
                        reason: format!(
                            "event {} ({}): {e}",
                            msg.id.as_deref().unwrap_or("without id"),
                            msg.event
                        ),
                    })?;
                last = Some(event.id);
                if callback(event).is_break() {
                    return Ok(last);
                }
            }
        }
        Ok(last)
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// rustls on the ring provider (no C toolchain, no OpenSSL), certificates
/// checked against the system store; plain HTTP needs none of it but the
/// client is the same.
pub fn http_client() -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| ClientError::Setup(format!("loading the system certificates: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_a_prefix() {
        let c = HubClient::new("http://hub.example:8080/kiln/", None).unwrap();
        assert_eq!(
            c.url(&["builds", "httpd-2.4-1"]).as_str(),
            "http://hub.example:8080/kiln/api/v1/builds/httpd-2.4-1"
        );
        assert_eq!(
            c.url(&["tags", "a/b?c#d", "builds"]).as_str(),
            "http://hub.example:8080/kiln/api/v1/tags/a%2Fb%3Fc%23d/builds"
        );
        let c = HubClient::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            c.url(&["whoami"]).as_str(),
            "http://127.0.0.1:8080/api/v1/whoami"
        );
    }

    #[test]
    fn bad_hub_urls_are_refused() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://hub/",
            "http://hub/?x=1",
            "nonsense",
        ] {
            let err = HubClient::new(bad, None).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn excerpts_are_bounded_and_char_safe() {
        let long = "é".repeat(2000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), BODY_EXCERPT + 1);
        assert_eq!(excerpt(b"  \n"), "(empty body)");
    }
}
