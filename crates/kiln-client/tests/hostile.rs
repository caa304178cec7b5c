//! Against a registry that lies: content that does not match its digest,
//! bodies cut short or too long, and a redirect to another host that must
//! not receive our credentials. A small axum server on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use common::descriptor;
use kiln_client::{Client, ClientOptions, Credentials, Error, Login, Repo};
use kiln_oci::{Descriptor, Digest, Reference, media};

const BLOB: &[u8] = b"the real content of the blob, forty-seven bytes";

#[derive(Clone)]
struct Hostile {
    manifest: Bytes,
    short_requests: Arc<AtomicUsize>,
    /// Where `/v2/private/blobs/…` redirects to.
    storage: String,
}

/// Storage on another port: records the `Authorization` it receives.
#[derive(Clone, Default)]
struct Storage {
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    host
}

fn manifest_body() -> Bytes {
    let config = descriptor(media::OCI_CONFIG, b"{}");
    common::oci_manifest(&config, &[])
}

fn tampered(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if let Some(b) = v.last_mut() {
        *b ^= 1;
    }
    v
}

async fn registry(State(h): State<Hostile>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let blob_digest = Digest::sha256_of(BLOB).to_string();
    let manifest_digest = Digest::sha256_of(&h.manifest).to_string();
    if path == "/v2/" {
        return StatusCode::OK.into_response();
    }
    if path == "/v2/lying/manifests/latest" {
        // Real bytes, announced under another digest.
        let other = Digest::sha256_of(b"something else").to_string();
        return (
            [
                (header::CONTENT_TYPE, media::OCI_MANIFEST.to_owned()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    other,
                ),
            ],
            h.manifest.clone(),
        )
            .into_response();
    }
    if path == format!("/v2/lying/manifests/{manifest_digest}") {
        let body = tampered(&h.manifest);
        return ([(header::CONTENT_TYPE, media::OCI_MANIFEST)], body).into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some((repo, digest)) = rest.split_once("/blobs/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if digest != blob_digest {
        return StatusCode::NOT_FOUND.into_response();
    }
    match repo {
        // Same length, one bit flipped.
        "corrupt" => tampered(BLOB).into_response(),
        // More than the descriptor says.
        "long" => [BLOB, b"and then some"].concat().into_response(),
        // Announces the full length, sends half, then breaks the connection.
        "short" => {
            h.short_requests.fetch_add(1, Ordering::SeqCst);
            let half = Bytes::from_static(&BLOB[..BLOB.len() / 2]);
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "cut")),
            ];
            Response::builder()
                .header(header::CONTENT_LENGTH, BLOB.len())
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
        "private" => {
            if req.headers().get(header::AUTHORIZATION).is_none() {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, r#"Basic realm="hostile""#)],
                )
                    .into_response();
            }
            let to = format!("http://{}/storage/{digest}", h.storage);
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn storage(State(s): State<Storage>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.lock().unwrap().push(auth);
    BLOB.into_response()
}

struct Setup {
    host: String,
    hostile: Hostile,
    storage: Storage,
    client: Client,
}

async fn setup() -> Setup {
    let store = Storage::default();
    let storage_host = serve(Router::new().fallback(storage).with_state(store.clone())).await;
    let hostile = Hostile {
        manifest: manifest_body(),
        short_requests: Arc::default(),
        storage: storage_host,
    };
    let host = serve(Router::new().fallback(registry).with_state(hostile.clone())).await;
    let client = Client::new(ClientOptions {
        credentials: Credentials::new().with(&host, Login::new("user", "secret")),
        ..ClientOptions::default()
    })
    .unwrap();
    Setup {
        host,
        hostile,
        storage: store,
        client,
    }
}

fn blob() -> Descriptor {
    descriptor(media::OCI_LAYER_GZIP, BLOB)
}

fn nothing_left(dest: &Path) {
    assert!(!dest.exists(), "{} was left behind", dest.display());
    let partial = dest.with_file_name("blob.partial");
    assert!(!partial.exists(), "{} was left behind", partial.display());
}

#[tokio::test]
async fn manifest_not_matching_its_digest_is_refused() {
    let s = setup().await;
    let by_tag: Reference = format!("{}/lying:latest", s.host).parse().unwrap();
    let err = s
        .client
        .get_manifest(&by_tag, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    match &err {
        Error::DigestMismatch {
            expected,
            actual,
            url,
        } => {
            assert_eq!(expected, &Digest::sha256_of(b"something else"));
            assert_eq!(actual, &Digest::sha256_of(&s.hostile.manifest));
            assert!(url.contains("/v2/lying/manifests/latest"), "{url}");
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }

    let wanted = Digest::sha256_of(&s.hostile.manifest);
    let by_digest: Reference = format!("{}/lying@{wanted}", s.host).parse().unwrap();
    let err = s
        .client
        .get_manifest(&by_digest, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == wanted),
        "{err}"
    );
}

#[tokio::test]
async fn corrupt_blob_leaves_no_file() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let err = s
        .client
        .fetch_blob(
            &Repo::new(s.host.clone(), "corrupt"),
            &blob(),
            &dest,
            &|_| {},
        )
        .await
        .unwrap_err();
    match &err {
        Error::DigestMismatch {
            expected,
            actual,
            url,
        } => {
            assert_eq!(expected, &blob().digest);
            assert_eq!(actual, &Digest::sha256_of(&tampered(BLOB)));
            assert!(url.contains("/v2/corrupt/blobs/"), "{url}");
        }
        other => panic!("expected DigestMismatch, got {other}"),
    }
    nothing_left(&dest);
}

#[tokio::test]
async fn overlong_blob_leaves_no_file() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let err = s
        .client
        .fetch_blob(&Repo::new(s.host.clone(), "long"), &blob(), &dest, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    nothing_left(&dest);
}

#[tokio::test]
async fn body_cut_short_is_retried_then_fails_leaving_no_file() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let err = s
        .client
        .fetch_blob(&Repo::new(s.host.clone(), "short"), &blob(), &dest, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert!(err.is_transient());
    let retries = s.client.options().retries as usize;
    assert_eq!(s.hostile.short_requests.load(Ordering::SeqCst), 1 + retries);
    nothing_left(&dest);
}

#[tokio::test]
async fn redirect_to_storage_does_not_leak_credentials() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    s.client
        .fetch_blob(
            &Repo::new(s.host.clone(), "private"),
            &blob(),
            &dest,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), BLOB);
    assert_eq!(*s.storage.seen.lock().unwrap(), vec![None]);
}

#[tokio::test]
async fn unreachable_registry_error_names_url_and_cause() {
    let port = common::free_port();
    let client = Client::new(ClientOptions::default()).unwrap();
    let r: Reference = format!("127.0.0.1:{port}/x:1").parse().unwrap();
    let err = client
        .get_manifest(&r, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Http { .. }), "{msg}");
    assert!(err.is_transient(), "{msg}");
    // Loopback is tried over HTTPS, then plain HTTP; the HTTPS error is shown.
    assert!(
        msg.contains(&format!("https://127.0.0.1:{port}/v2/")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

/// One token request: the scopes asked for and the `Authorization` sent.
type TokenRequest = (Vec<String>, Option<String>);

/// A token server in Docker Hub's style: `access_token`, no `expires_in`,
/// and 401 `insufficient_scope` for what the user may not do.
#[derive(Clone, Default)]
struct Hub {
    token_requests: Arc<Mutex<Vec<TokenRequest>>>,
}

async fn hub(State(hub): State<Hub>, req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let challenge = |extra: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="http://{host}/token",service="hub"{extra}"#),
            )],
        )
            .into_response()
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer hub-token");
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/token") => {
            let scopes = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|s| s.replace("%3A", ":").replace("%2C", ","))
                .collect();
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            hub.token_requests.lock().unwrap().push((scopes, auth));
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"access_token":"hub-token"}"#,
            )
                .into_response()
        }
        ("GET", "/v2/lib/manifests/latest") if bearer => (
            [(header::CONTENT_TYPE, media::OCI_MANIFEST)],
            manifest_body(),
        )
            .into_response(),
        ("POST", "/v2/lib/blobs/uploads/") if bearer => {
            challenge(r#",scope="repository:lib:pull,push",error="insufficient_scope""#)
        }
        _ => challenge(""),
    }
}

#[tokio::test]
async fn docker_hub_style_tokens_are_cached_and_scope_refusals_are_denied() {
    let state = Hub::default();
    let host = serve(Router::new().fallback(hub).with_state(state.clone())).await;
    let client = Client::new(ClientOptions {
        credentials: Credentials::new().with(&host, Login::new("user", "secret")),
        ..ClientOptions::default()
    })
    .unwrap();
    let r: Reference = format!("{host}/lib:latest").parse().unwrap();
    for _ in 0..2 {
        let m = client
            .get_manifest(&r, &media::MANIFEST_TYPES)
            .await
            .unwrap();
        assert_eq!(m.bytes, manifest_body());
    }
    {
        let requests = state.token_requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "the token is reused: {requests:?}");
        assert_eq!(requests[0].0, ["repository:lib:pull"]);
        let basic = Login::new("user", "secret");
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", basic.username, basic.password))
        );
        assert_eq!(requests[0].1.as_deref(), Some(expected.as_str()));
    }
    let err = client
        .push_blob_bytes(&Repo::new(host.clone(), "lib"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied { repository, .. } if repository == "lib"),
        "{err}"
    );
    let requests = state.token_requests.lock().unwrap();
    assert_eq!(requests.last().unwrap().0, ["repository:lib:pull,push"]);
}

/// A plain-HTTP registry on loopback that, like a server waiting for a
/// request line, never answers a TLS hello: the HTTPS probe gives up after
/// its own bound and the client goes on over plain HTTP.
#[tokio::test]
async fn a_loopback_server_silent_to_tls_is_reached_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.first() == Some(&0x16) {
                        // A TLS hello: hold the connection, answer nothing.
                        continue;
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&got);
                let body = if head.starts_with("GET /v2/ ") {
                    ("200 OK", "{}")
                } else {
                    (
                        "404 Not Found",
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {}\r\nContent-Type: application/json\r\n\
                     Docker-Distribution-API-Version: registry/2.0\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.0,
                    body.1.len(),
                    body.1
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    let client = Client::new(ClientOptions::default()).unwrap();
    let r: Reference = format!("{host}/x:1").parse().unwrap();
    let started = std::time::Instant::now();
    let err = client
        .get_manifest(&r, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    let msg = err.to_string();
    // The registry's own answer over HTTP, not a timeout of the probe.
    assert!(
        msg.contains("MANIFEST_UNKNOWN") || msg.contains("manifest unknown"),
        "{msg}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{msg}"
    );
}
