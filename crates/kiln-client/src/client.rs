//! The client: per-registry endpoints (scheme found by a `/v2/` ping),
//! authentication (Docker token auth or Basic) and the request loop that
//! answers a 401 once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderName, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use crate::challenge::{Challenge, Scope, Scopes};
use crate::credentials::Credentials;
use crate::error::{Error, RegistryErrorCode, Result};
use crate::transport::{Transport, api_host, http_client, transport_for};

/// How long an HTTPS probe may take before plain HTTP is tried instead.
const HTTPS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Tokens are taken to live at least this long, as containers/image does;
/// some token servers report less or nothing.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token this close to expiry is not used for a new request.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// Error bodies and token responses are small; anything bigger is not read.
const SMALL_BODY_LIMIT: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Check HTTPS certificates. Off: any certificate is accepted and a
    /// registry whose HTTPS connection fails is tried over plain HTTP.
    pub tls_verify: bool,
    /// `host[:port]` of registries treated as with `tls_verify` off.
    pub insecure_registries: Vec<String>,
    pub credentials: Credentials,
    pub user_agent: String,
    /// Further attempts of a blob download after a transient failure.
    pub retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            insecure_registries: Vec::new(),
            credentials: Credentials::default(),
            user_agent: format!("kiln/{}", env!("CARGO_PKG_VERSION")),
            retries: 2,
        }
    }
}

/// A repository on a registry (`registry` as in references: `docker.io`,
/// `127.0.0.1:5000`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    pub registry: String,
    pub name: String,
}

impl Repo {
    pub fn new(registry: impl Into<String>, name: impl Into<String>) -> Repo {
        Repo {
            registry: registry.into(),
            name: name.into(),
        }
    }
}

impl From<&kiln_oci::Reference> for Repo {
    fn from(r: &kiln_oci::Reference) -> Repo {
        Repo::new(r.registry.clone(), r.repository.clone())
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// An OCI registry client. Cheap to clone; clones share connections,
/// learned endpoints and tokens.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: ClientOptions,
    verifying: reqwest::Client,
    lax: reqwest::Client,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    tokens: Mutex<HashMap<String, Vec<CachedToken>>>,
}

struct CachedToken {
    scopes: Scopes,
    header: String,
    expires: Instant,
}

/// A registry as reached: base URL, client, and how it wants auth.
pub(crate) struct Endpoint {
    pub(crate) registry: String,
    base: Url,
    pub(crate) client: reqwest::Client,
    challenge: Mutex<Option<Challenge>>,
}

impl Endpoint {
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| Error::Protocol {
            registry: self.registry.clone(),
            reason: format!("cannot form a URL from {path:?}: {e}"),
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_challenge(&self, c: Challenge) {
        *self
            .challenge
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(c);
    }
}

/// Makes a fresh request body for each attempt (a streamed body cannot be
/// replayed after a 401).
pub(crate) type BodyFactory<'a> = &'a (dyn Fn() -> Result<reqwest::Body> + Send + Sync);

/// One request as the operations describe it.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) body: Option<BodyFactory<'a>>,
    pub(crate) scopes: Scopes,
    /// For error messages.
    pub(crate) repository: &'a str,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, url: Url, repository: &'a str, scopes: Scopes) -> Call<'a> {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: None,
            scopes,
            repository,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: BodyFactory<'a>) -> Self {
        self.body = Some(body);
        self
    }
}

pub(crate) fn pull_scope(repo: &str) -> Scopes {
    Scopes::new([Scope::repository(repo, &["pull"])])
}

pub(crate) fn push_scope(repo: &str) -> Scopes {
    Scopes::new([Scope::repository(repo, &["pull", "push"])])
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client> {
        let verifying = http_client(true, &options.user_agent)?;
        let lax = http_client(false, &options.user_agent)?;
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                verifying,
                lax,
                endpoints: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The HTTP client for non-registry downloads: verifying unless the
    /// client was told not to.
    pub(crate) fn http_for_downloads(&self) -> &reqwest::Client {
        if self.inner.options.tls_verify {
            &self.inner.verifying
        } else {
            &self.inner.lax
        }
    }

    /// The endpoint for `registry`, pinging `/v2/` on first use to settle
    /// the scheme and learn the auth challenge.
    pub(crate) async fn endpoint(&self, registry: &str) -> Result<Arc<Endpoint>> {
        if let Some(ep) = self
            .inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(registry)
        {
            return Ok(ep.clone());
        }
        let opts = &self.inner.options;
        let host = api_host(registry);
        let Transport {
            verify,
            http_fallback,
        } = transport_for(registry, opts.tls_verify, &opts.insecure_registries);
        let client = if verify {
            &self.inner.verifying
        } else {
            &self.inner.lax
        };
        // A plain-HTTP server may wait for a line that a TLS hello never
        // ends: with a fallback, the HTTPS probe gets a bound of its own.
        let probe = http_fallback.then_some(HTTPS_PROBE_TIMEOUT);
        let ep = match self.ping(registry, "https", host, client, probe).await {
            Ok(ep) => ep,
            Err(https) if http_fallback && matches!(https, Error::Http { .. }) => {
                tracing::debug!(%https, "falling back to plain HTTP");
                // When plain HTTP fails too, the HTTPS error is the one to show.
                self.ping(registry, "http", host, client, None)
                    .await
                    .map_err(|_| https)?
            }
            Err(e) => return Err(e),
        };
        let ep = Arc::new(ep);
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(registry.to_owned(), ep.clone());
        Ok(ep)
    }

    async fn ping(
        &self,
        registry: &str,
        scheme: &str,
        host: &str,
        client: &reqwest::Client,
        timeout: Option<std::time::Duration>,
    ) -> Result<Endpoint> {
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::Protocol {
            registry: registry.to_owned(),
            reason: format!("{host:?} is not a usable host name: {e}"),
        })?;
        let ep = Endpoint {
            registry: registry.to_owned(),
            base,
            client: client.clone(),
            challenge: Mutex::new(None),
        };
        let url = ep.url("/v2/")?;
        let mut req = client.get(url.clone());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|error| Error::Http {
            method: "GET".to_owned(),
            url: url.to_string(),
            error,
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Some(c) = challenge_of(&resp)
        {
            ep.set_challenge(c);
        }
        Ok(ep)
    }

    /// Sends `call`, authenticating as the endpoint asks, and answers one
    /// 401 by (re)authenticating. Any other status is the caller's.
    pub(crate) async fn execute(&self, ep: &Endpoint, call: &Call<'_>) -> Result<Response> {
        // Credentials are for the registry only, never for an upload URL on
        // another host (object storage).
        let ours = ep.same_origin(&call.url);
        let mut auth = if ours {
            self.authorization(ep, &call.scopes, call.repository)
                .await?
        } else {
            None
        };
        let mut retried = false;
        loop {
            let resp = self.send_once(ep, call, auth.as_deref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !ours {
                return Ok(resp);
            }
            let challenge = challenge_of(&resp);
            let login = self.inner.options.credentials.get(&ep.registry);
            // Docker Hub's way of saying 403: logged in, fresh token, still
            // not enough scope.
            let insufficient = matches!(&challenge,
                Some(Challenge::Bearer { error: Some(e), .. }) if e == "insufficient_scope");
            if retried && insufficient && login.is_some() {
                return Err(Error::Denied {
                    registry: ep.registry.clone(),
                    repository: call.repository.to_owned(),
                    errors: error_codes(resp).await,
                });
            }
            if let Some(c) = &challenge {
                ep.set_challenge(c.clone());
            }
            auth = match (retried, challenge) {
                (
                    false,
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                        ..
                    }),
                ) => {
                    let mut scopes = call.scopes.clone();
                    scopes.extend(scope.as_deref().map(Scope::parse_list).unwrap_or_default());
                    let token = self
                        .fetch_token(ep, &realm, service.as_deref(), &scopes, call.repository)
                        .await?;
                    Some(token)
                }
                (false, Some(Challenge::Basic)) if auth.is_none() && login.is_some() => {
                    login.map(|l| l.basic_header())
                }
                _ => {
                    return Err(Error::Unauthorized {
                        registry: ep.registry.clone(),
                        repository: call.repository.to_owned(),
                        had_credentials: login.is_some(),
                        detail: self.refusal(call, resp).await,
                    });
                }
            };
            retried = true;
        }
    }

    async fn send_once(
        &self,
        ep: &Endpoint,
        call: &Call<'_>,
        auth: Option<&str>,
    ) -> Result<Response> {
        let mut rb = ep.client.request(call.method.clone(), call.url.clone());
        for (name, value) in &call.headers {
            rb = rb.header(name, value);
        }
        if let Some(a) = auth {
            rb = rb.header(AUTHORIZATION, a);
        }
        if let Some(body) = call.body {
            rb = rb.body(body()?);
        }
        rb.send().await.map_err(|error| Error::Http {
            method: call.method.to_string(),
            url: call.url.to_string(),
            error,
        })
    }

    /// The `Authorization` value to start with, from what the endpoint
    /// asked for so far.
    async fn authorization(
        &self,
        ep: &Endpoint,
        scopes: &Scopes,
        repository: &str,
    ) -> Result<Option<String>> {
        match ep.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self
                .inner
                .options
                .credentials
                .get(&ep.registry)
                .map(|l| l.basic_header())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(cached) = self.cached_token(&ep.registry, scopes) {
                    return Ok(Some(cached));
                }
                self.fetch_token(ep, &realm, service.as_deref(), scopes, repository)
                    .await
                    .map(Some)
            }
        }
    }

    fn cached_token(&self, registry: &str, scopes: &Scopes) -> Option<String> {
        let now = Instant::now();
        let tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens.get(registry)?.iter().find_map(|t| {
            (t.expires > now + TOKEN_MARGIN && t.scopes.covers(scopes)).then(|| t.header.clone())
        })
    }

    /// Asks the token server for `scopes`, with Basic credentials when we
    /// have them, and caches the answer.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        repository: &str,
    ) -> Result<String> {
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Error::Protocol {
                registry: ep.registry.clone(),
                reason: format!("token realm {realm:?} is not an http(s) URL"),
            })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes.to_strings() {
                q.append_pair("scope", &s);
            }
        }
        let login = self.inner.options.credentials.get(&ep.registry);
        let mut rb = ep.client.get(url.clone());
        if let Some(l) = login {
            rb = rb.header(AUTHORIZATION, l.basic_header());
        }
        let http = |error| Error::Http {
            method: "GET".to_owned(),
            url: url.to_string(),
            error,
        };
        let resp = rb.send().await.map_err(http)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized {
                registry: ep.registry.clone(),
                repository: repository.to_owned(),
                had_credentials: login.is_some(),
                detail: format!("the token server {realm} refused the login"),
            });
        }
        if !status.is_success() {
            return Err(self
                .status_error(ep, "GET", &url, resp, repository, "token")
                .await);
        }
        let body = read_limited(resp, SMALL_BODY_LIMIT)
            .await
            .map_err(|e| e.into_error("GET", &url))?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: u64,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            registry: ep.registry.clone(),
            reason: format!("token response from {realm} is not valid JSON: {e}"),
        })?;
        let token = if parsed.token.is_empty() {
            parsed.access_token
        } else {
            parsed.token
        };
        if token.is_empty() {
            return Err(Error::Protocol {
                registry: ep.registry.clone(),
                reason: format!("token response from {realm} holds no token"),
            });
        }
        let header = format!("Bearer {token}");
        let lifetime = Duration::from_secs(parsed.expires_in).max(MIN_TOKEN_LIFETIME);
        let now = Instant::now();
        let mut tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = tokens.entry(ep.registry.clone()).or_default();
        list.retain(|t| t.expires > now && t.scopes != *scopes);
        list.push(CachedToken {
            scopes: scopes.clone(),
            header: header.clone(),
            expires: now + lifetime,
        });
        Ok(header)
    }

    /// Why a request stayed unauthorized, from the registry's error body.
    async fn refusal(&self, call: &Call<'_>, resp: Response) -> String {
        let errors = error_codes(resp).await;
        if errors.is_empty() {
            format!("{} {} answered 401", call.method, call.url)
        } else {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        }
    }

    /// The error for a response with a status the operation did not expect;
    /// `what` names the thing asked for (`manifest …`, `blob …`).
    pub(crate) async fn status_error(
        &self,
        ep: &Endpoint,
        method: &str,
        url: &Url,
        resp: Response,
        repository: &str,
        what: &str,
    ) -> Error {
        let status = resp.status();
        let errors = error_codes(resp).await;
        let denied = errors.iter().any(|e| e.code == "DENIED");
        match status {
            StatusCode::FORBIDDEN => Error::Denied {
                registry: ep.registry.clone(),
                repository: repository.to_owned(),
                errors,
            },
            _ if denied => Error::Denied {
                registry: ep.registry.clone(),
                repository: repository.to_owned(),
                errors,
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                registry: ep.registry.clone(),
                what: what.to_owned(),
                errors,
            },
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                registry: ep.registry.clone(),
                repository: repository.to_owned(),
                had_credentials: self.inner.options.credentials.get(&ep.registry).is_some(),
                detail: format!("{method} {url} answered 401"),
            },
            _ => Error::Status {
                method: method.to_owned(),
                status: status.as_u16(),
                url: url.to_string(),
                errors,
            },
        }
    }
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(Challenge::parse)
}

/// The `errors` of a distribution-spec error body; empty if there is none.
async fn error_codes(resp: Response) -> Vec<RegistryErrorCode> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<RegistryErrorCode>,
    }
    match read_limited(resp, SMALL_BODY_LIMIT).await {
        Ok(bytes) => serde_json::from_slice::<Body>(&bytes)
            .map(|b| b.errors)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

pub(crate) enum ReadError {
    Http(reqwest::Error),
    TooLarge(usize),
}

impl ReadError {
    pub(crate) fn into_error(self, method: &str, url: &Url) -> Error {
        match self {
            ReadError::Http(error) => Error::Http {
                method: method.to_owned(),
                url: url.to_string(),
                error,
            },
            ReadError::TooLarge(limit) => Error::Protocol {
                registry: url.host_str().unwrap_or_default().to_owned(),
                reason: format!("{method} {url}: response larger than {limit} bytes"),
            },
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(mut resp: Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The `Location` of a response, resolved against its URL (registries send
/// both relative and absolute ones).
pub(crate) fn location(ep: &Endpoint, resp: &Response) -> Result<Url> {
    let raw = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            registry: ep.registry.clone(),
            reason: format!(
                "{} answered {} without a Location",
                resp.url(),
                resp.status()
            ),
        })?;
    resp.url().join(raw).map_err(|e| Error::Protocol {
        registry: ep.registry.clone(),
        reason: format!("Location {raw:?} from {} is not a URL: {e}", resp.url()),
    })
}
