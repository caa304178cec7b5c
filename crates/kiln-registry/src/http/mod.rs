//! The HTTP face of the registry: one catch-all `/v2/…` route whose path is
//! parsed from the right, authorization, and the spec's headers.

pub mod path;
mod query;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use kiln_oci::{Digest, media};

use crate::auth::{Access, Action, Authorizer, Principal};
use crate::error::{ErrorCode, RegistryError};
use crate::registry::{Registry, parse_digest};
use path::Route;
use query::Query;

pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Option<Arc<Authorizer>>,
}

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/v2", any(v2_root))
        .route("/v2/", any(v2_root))
        .route("/v2/{*path}", any(v2))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    if let Some(auth) = &state.auth {
        r = r.merge(crate::auth::token_router(auth.clone()));
    }
    r.layer(axum::middleware::map_response(
        |mut resp: Response| async move {
            resp.headers_mut()
                .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
            resp
        },
    ))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let reg = &state.registry;
    let stored = reg.stored_totals().await;
    let text = reg.metrics.render(reg.uploads.open_count(), stored);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn v2_root(
    state: State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // `/v2` and `/v2/` are one route, but keep the scheme and authority:
    // over HTTP/2 the host is there, not in a Host header, and the auth
    // challenge's realm is built from it.
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/v2/"));
    let uri = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/v2/"));
    v2(state, method, uri, headers, body).await
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

async fn v2(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/v2/").unwrap_or("");
    let Some(route) = path::parse(path) else {
        state
            .registry
            .metrics
            .request("unknown", method_label(&method), 404);
        return RegistryError::new(
            ErrorCode::NameUnknown,
            format!("no registry endpoint at {}", uri.path()),
        )
        .into_response();
    };
    let query = Query::parse(uri.query());
    let principal = match &state.auth {
        None => None,
        Some(auth) => {
            // HTTP/2 carries the host in :authority rather than Host.
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or(uri.authority().map(|a| a.as_str()));
            match auth.check(&headers, host, &needs(&route, &method)) {
                Ok(p) => Some(p),
                Err(denied) => {
                    let resp = denied.into_response();
                    state.registry.metrics.request(
                        route.label(),
                        method_label(&method),
                        resp.status().as_u16(),
                    );
                    return resp;
                }
            }
        }
    };
    let ctx = Ctx {
        state: &state,
        principal: principal.as_ref(),
        headers: &headers,
        query: &query,
    };
    let resp = match ctx.dispatch(route, &method, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(error = %e.message, path = uri.path(), "request failed");
            }
            e.into_response()
        }
    };
    state
        .registry
        .metrics
        .request(route.label(), method_label(&method), resp.status().as_u16());
    resp
}

fn needs(route: &Route<'_>, method: &Method) -> Vec<Access> {
    let repo = |actions: Vec<Action>| match route.name() {
        Some(name) => vec![Access::Repository {
            name: name.to_string(),
            actions,
        }],
        None => Vec::new(),
    };
    match route {
        Route::Base => Vec::new(),
        Route::Catalog => vec![Access::Catalog],
        _ if *method == Method::DELETE && !matches!(route, Route::Upload { .. }) => {
            repo(vec![Action::Delete])
        }
        Route::UploadStart { .. } | Route::Upload { .. } => repo(vec![Action::Pull, Action::Push]),
        Route::Manifest { .. } if *method == Method::PUT => repo(vec![Action::Pull, Action::Push]),
        _ => repo(vec![Action::Pull]),
    }
}

struct Ctx<'a> {
    state: &'a AppState,
    principal: Option<&'a Principal>,
    headers: &'a HeaderMap,
    query: &'a Query,
}

fn unsupported(method: &Method) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unsupported,
        format!("method {method} is not allowed here"),
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn empty(status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>) -> Response {
    let mut resp = (status, Body::empty()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (k, v) in headers {
        h.insert(k, v);
    }
    resp
}

fn json_response(
    status: StatusCode,
    content_type: &str,
    body: String,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(content_type));
    for (k, v) in extra {
        h.insert(k, v);
    }
    resp
}

fn upload_range(offset: u64) -> HeaderValue {
    hv(&format!("0-{}", offset.saturating_sub(1)))
}

impl Ctx<'_> {
    fn reg(&self) -> &Registry {
        &self.state.registry
    }

    async fn dispatch(
        &self,
        route: Route<'_>,
        method: &Method,
        body: Body,
    ) -> Result<Response, RegistryError> {
        match (route, method.clone()) {
            (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(
                StatusCode::OK,
                "application/json",
                "{}".into(),
                Vec::new(),
            )),
            (Route::Catalog, Method::GET) => self.catalog().await,
            (Route::Tags { name }, Method::GET) => self.tags(name).await,
            (Route::Manifest { name, reference }, Method::GET) => {
                self.manifest_get(name, reference, true).await
            }
            (Route::Manifest { name, reference }, Method::HEAD) => {
                self.manifest_get(name, reference, false).await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                self.manifest_put(name, reference, body).await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => {
                self.reg().manifest_delete(name, reference).await?;
                Ok(empty(StatusCode::ACCEPTED, Vec::new()))
            }
            (Route::Blob { name, digest }, Method::GET) => self.blob_get(name, digest, true).await,
            (Route::Blob { name, digest }, Method::HEAD) => {
                self.blob_get(name, digest, false).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => {
                self.reg().blob_delete(name, &parse_digest(digest)?).await?;
                Ok(empty(StatusCode::ACCEPTED, Vec::new()))
            }
            (Route::UploadStart { name }, Method::POST) => self.upload_start(name, body).await,
            (Route::Upload { name, id }, Method::GET) => {
                let s = self.reg().uploads.get(name, id).await?;
                let offset = s.lock().await.offset();
                Ok(self.upload_status(StatusCode::NO_CONTENT, name, id, offset))
            }
            (Route::Upload { name, id }, Method::PATCH) => self.upload_patch(name, id, body).await,
            (Route::Upload { name, id }, Method::PUT) => self.upload_put(name, id, body).await,
            (Route::Upload { name, id }, Method::DELETE) => {
                let s = self.reg().uploads.get(name, id).await?;
                self.reg().uploads.cancel(&*s.lock().await).await;
                Ok(empty(StatusCode::NO_CONTENT, Vec::new()))
            }
            (Route::Referrers { name, digest }, Method::GET) => self.referrers(name, digest).await,
            (_, m) => Err(unsupported(&m)),
        }
    }

    fn can_pull(&self, repo: &str) -> bool {
        match (&self.state.auth, self.principal) {
            (Some(auth), Some(p)) => auth.can(p, repo, Action::Pull),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    async fn catalog(&self) -> Result<Response, RegistryError> {
        let mut repos = self.reg().catalog().await?;
        repos.retain(|r| self.can_pull(r));
        self.listing(
            "/v2/_catalog",
            repos,
            |page| serde_json::json!({ "repositories": page }),
        )
    }

    async fn tags(&self, name: &str) -> Result<Response, RegistryError> {
        let tags = self.reg().tags(name).await?;
        let path = format!("/v2/{name}/tags/list");
        self.listing(
            &path,
            tags,
            |page| serde_json::json!({ "name": name, "tags": page }),
        )
    }

    /// A paginated JSON list with the spec's `Link` to the next page.
    fn listing(
        &self,
        path: &str,
        items: Vec<String>,
        body: impl FnOnce(Vec<String>) -> serde_json::Value,
    ) -> Result<Response, RegistryError> {
        let (page, next) = self.query.paginate(items)?;
        let extra = next
            .map(|(n, last)| {
                vec![(
                    header::LINK,
                    hv(&format!("<{path}?n={n}&last={last}>; rel=\"next\"")),
                )]
            })
            .unwrap_or_default();
        Ok(json_response(
            StatusCode::OK,
            "application/json",
            body(page).to_string(),
            extra,
        ))
    }

    async fn manifest_get(
        &self,
        name: &str,
        reference: &str,
        with_body: bool,
    ) -> Result<Response, RegistryError> {
        let m = self.reg().manifest_get(name, reference).await?;
        if !accepts(self.headers, &m.media_type) {
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {reference} is {} which the Accept header does not allow",
                    m.media_type
                ),
            ));
        }
        let digest = m.digest.to_string();
        let mut resp = if with_body {
            Body::from(m.body.clone()).into_response()
        } else {
            Body::empty().into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, hv(&m.media_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.body.len()));
        h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
        h.insert(CONTENT_DIGEST, hv(&digest));
        Ok(resp)
    }

    async fn manifest_put(
        &self,
        name: &str,
        reference: &str,
        body: Body,
    ) -> Result<Response, RegistryError> {
        let limit = self.reg().config.limits.max_manifest_bytes;
        let too_large = || {
            RegistryError::new(
                ErrorCode::SizeInvalid,
                format!("manifest is larger than the limit of {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        };
        if content_length(self.headers).is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = read_limited(body, limit).await.map_err(|e| match e {
            ReadError::TooLarge => too_large(),
            ReadError::Broken(m) => RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("manifest body incomplete: {m}"),
            ),
        })?;
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let put = self
            .reg()
            .manifest_put(name, reference, content_type, bytes)
            .await?;
        let digest = put.digest.to_string();
        let mut extra = vec![
            (
                header::LOCATION,
                hv(&format!("/v2/{name}/manifests/{digest}")),
            ),
            (CONTENT_DIGEST, hv(&digest)),
        ];
        if let Some(s) = put.subject {
            extra.push((OCI_SUBJECT, hv(&s.to_string())));
        }
        Ok(empty(StatusCode::CREATED, extra))
    }

    async fn blob_get(
        &self,
        name: &str,
        digest: &str,
        with_body: bool,
    ) -> Result<Response, RegistryError> {
        let d = parse_digest(digest)?;
        let size = self.reg().blob_size(name, &d).await?;
        let range = match self
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
        {
            Some(r) if with_body => Some(parse_range(r, size).ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::RangeInvalid,
                    format!("range {r:?} is not satisfiable for {size} bytes"),
                )
                .with_header(header::CONTENT_RANGE, hv(&format!("bytes */{size}")))
            })?),
            _ => None,
        };
        let mut headers = vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (header::ETAG, hv(&format!("\"{d}\""))),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=31536000"),
            ),
            (CONTENT_DIGEST, hv(&d.to_string())),
        ];
        if !with_body {
            let mut resp = empty(StatusCode::OK, headers);
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            return Ok(resp);
        }
        let blob = self.reg().blob_read_checked(&d, range).await?;
        let status = match range {
            Some((s, e)) => {
                headers.push((header::CONTENT_RANGE, hv(&format!("bytes {s}-{e}/{size}"))));
                StatusCode::PARTIAL_CONTENT
            }
            None => StatusCode::OK,
        };
        let metrics = self.reg().metrics.clone();
        let stream = blob
            .stream
            .inspect_ok(move |b| metrics.add_out(b.len() as u64));
        let mut resp = (status, Body::from_stream(stream)).into_response();
        let h = resp.headers_mut();
        for (k, v) in headers {
            h.insert(k, v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(blob.size));
        Ok(resp)
    }

    fn upload_status(&self, status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
        empty(
            status,
            vec![
                (
                    header::LOCATION,
                    hv(&format!("/v2/{name}/blobs/uploads/{id}")),
                ),
                (header::RANGE, upload_range(offset)),
                (UPLOAD_UUID, hv(id)),
            ],
        )
    }

    fn created_blob(name: &str, d: &Digest) -> Response {
        empty(
            StatusCode::CREATED,
            vec![
                (header::LOCATION, hv(&format!("/v2/{name}/blobs/{d}"))),
                (CONTENT_DIGEST, hv(&d.to_string())),
            ],
        )
    }

    async fn upload_start(&self, name: &str, body: Body) -> Result<Response, RegistryError> {
        crate::registry::check_name(name)?;
        if let Some(mount) = self.query.get("mount") {
            let d = parse_digest(mount)?;
            let from = self.query.get("from");
            // Mounting without `from` would let anyone with push rights read
            // any blob whose digest they know: only without auth.
            let allowed = match from {
                Some(f) => self.can_pull(f),
                None => self.state.auth.is_none(),
            };
            if allowed && self.reg().mount(name, &d, from).await? {
                return Ok(Self::created_blob(name, &d));
            }
        }
        let session = self.reg().uploads.create(name).await?;
        let mut s = session.lock().await;
        let id = s.id.to_string();
        if let Some(digest) = self.query.get("digest") {
            let d = parse_digest(digest)?;
            let result = self.append(&mut s, None, body).await;
            let finished = match result {
                Ok(_) => self.reg().uploads.finish(&mut s, &d).await,
                Err(e) => Err(e),
            };
            let finished = match finished {
                Ok(f) => f,
                Err(e) => {
                    self.reg().uploads.cancel(&s).await;
                    return Err(e.into());
                }
            };
            self.reg().commit_upload(name, finished).await?;
            return Ok(Self::created_blob(name, &d));
        }
        Ok(self.upload_status(StatusCode::ACCEPTED, name, &id, 0))
    }

    async fn append(
        &self,
        s: &mut crate::uploads::Session,
        start: Option<u64>,
        body: Body,
    ) -> Result<u64, crate::uploads::UploadError> {
        let metrics = self.reg().metrics.clone();
        let stream = body
            .into_data_stream()
            .inspect_ok(move |b| metrics.add_in(b.len() as u64));
        self.reg().uploads.append(s, start, stream).await
    }

    /// Checks `Content-Range` against the session and the body length.
    fn chunk_start(&self, name: &str, id: &str, offset: u64) -> Result<Option<u64>, RegistryError> {
        let Some(raw) = self.headers.get(header::CONTENT_RANGE) else {
            return Ok(None);
        };
        let bad_range = || {
            RegistryError::new(
                ErrorCode::RangeInvalid,
                format!("Content-Range {raw:?} does not continue the upload at byte {offset}"),
            )
            .with_header(
                header::LOCATION,
                hv(&format!("/v2/{name}/blobs/uploads/{id}")),
            )
            .with_header(header::RANGE, upload_range(offset))
        };
        let text = raw.to_str().map_err(|_| bad_range())?;
        let text = text.strip_prefix("bytes ").unwrap_or(text);
        let (s, e) = text.split_once('-').ok_or_else(bad_range)?;
        let (s, e): (u64, u64) = (
            s.trim().parse().map_err(|_| bad_range())?,
            e.trim().parse().map_err(|_| bad_range())?,
        );
        if s != offset || e < s {
            return Err(bad_range());
        }
        if let Some(len) = content_length(self.headers)
            && len != e - s + 1
        {
            return Err(RegistryError::new(
                ErrorCode::BlobUploadInvalid,
                format!(
                    "Content-Range {s}-{e} is {} bytes but Content-Length is {len}",
                    e - s + 1
                ),
            ));
        }
        Ok(Some(s))
    }

    async fn upload_patch(
        &self,
        name: &str,
        id: &str,
        body: Body,
    ) -> Result<Response, RegistryError> {
        let session = self.reg().uploads.get(name, id).await?;
        let mut s = session.lock().await;
        let start = self.chunk_start(name, id, s.offset())?;
        let offset = self
            .append(&mut s, start, body)
            .await
            .map_err(|e| self.with_resume(e, name, id, s.offset()))?;
        Ok(self.upload_status(StatusCode::ACCEPTED, name, id, offset))
    }

    fn with_resume(
        &self,
        e: crate::uploads::UploadError,
        name: &str,
        id: &str,
        offset: u64,
    ) -> RegistryError {
        RegistryError::from(e)
            .with_header(
                header::LOCATION,
                hv(&format!("/v2/{name}/blobs/uploads/{id}")),
            )
            .with_header(header::RANGE, upload_range(offset))
    }

    async fn upload_put(
        &self,
        name: &str,
        id: &str,
        body: Body,
    ) -> Result<Response, RegistryError> {
        let session = self.reg().uploads.get(name, id).await?;
        let mut s = session.lock().await;
        let digest = self.query.get("digest").ok_or_else(|| {
            RegistryError::new(
                ErrorCode::DigestInvalid,
                "the final PUT of an upload needs ?digest=",
            )
        })?;
        let d = parse_digest(digest)?;
        let start = self.chunk_start(name, id, s.offset())?;
        self.append(&mut s, start, body)
            .await
            .map_err(|e| self.with_resume(e, name, id, s.offset()))?;
        let finished = self.reg().uploads.finish(&mut s, &d).await?;
        self.reg().commit_upload(name, finished).await?;
        Ok(Self::created_blob(name, &d))
    }

    async fn referrers(&self, name: &str, digest: &str) -> Result<Response, RegistryError> {
        let d = parse_digest(digest)?;
        let filter = self.query.get("artifactType");
        let list = self.reg().referrers(name, &d, filter).await?;
        let body = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": list }).to_string();
        let extra = if filter.is_some() {
            vec![(FILTERS_APPLIED, HeaderValue::from_static("artifactType"))]
        } else {
            Vec::new()
        };
        Ok(json_response(StatusCode::OK, media::OCI_INDEX, body, extra))
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Whether the client's `Accept` allows `media_type`. Clients that list no
/// manifest type at all (plain `application/json`, none) get what is stored.
fn accepts(h: &HeaderMap, media_type: &str) -> bool {
    let listed: Vec<&str> = h
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    let negotiating = listed.iter().any(|t| media::MANIFEST_TYPES.contains(t));
    !negotiating || listed.iter().any(|t| *t == media_type || *t == "*/*")
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → an inclusive range within `size`.
fn parse_range(r: &str, size: u64) -> Option<(u64, u64)> {
    let spec = r.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

enum ReadError {
    TooLarge,
    Broken(String),
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Broken(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(accepts(&h, media::OCI_INDEX));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(accepts(&h, media::OCI_INDEX));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json; q=0.9"),
        );
        assert!(!accepts(&h, media::OCI_INDEX));
        assert!(accepts(&h, media::DOCKER_MANIFEST));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        );
        assert!(accepts(&h, media::OCI_INDEX));
    }

    /// An HTTP/2 request names its host in the URI's authority only; the
    /// realm of `GET /v2/`'s challenge must still name it.
    #[tokio::test]
    async fn root_challenge_realm_uses_the_uri_authority() {
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::Config::parse("[auth]\n").expect("config");
        let (_, app) = crate::server::build(dir.path(), config).expect("registry");
        for path in ["/v2/", "/v2"] {
            let request = http::Request::get(format!("https://reg.example:5000{path}"))
                .version(http::Version::HTTP_2)
                .body(Body::empty())
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii");
            assert!(
                challenge.starts_with("Bearer realm=\"http://reg.example:5000/token\""),
                "{path}: {challenge}"
            );
        }
    }
}
