//! The token endpoint (`GET /token` of Docker token auth, `POST /token` of
//! its OAuth2 variant) and the registry's 401/403 error responses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::password::Credentials;
use super::rules::parse_scopes;
use super::{Authorizer, Denied, Issued, Presented, Principal, presented};

/// Form bodies of token requests are tiny.
const MAX_BODY: usize = 64 * 1024;

/// Serves `GET /token` and `POST /token`; mount it at the root so the
/// default realm (`http://{host}/token`) points at it.
pub fn token_router(auth: Arc<Authorizer>) -> Router {
    Router::new()
        .route("/token", get(get_token).post(post_token))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(auth)
}

/// `?service=..&scope=..&scope=..[&offline_token=true]` with Basic
/// credentials or none (an anonymous token); `account` and `client_id` are
/// informational.
async fn get_token(
    State(auth): State<Arc<Authorizer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = parse_form(query.as_deref().unwrap_or(""));
    let principal = match presented(&headers) {
        Presented::Nothing => Principal::anonymous(),
        Presented::Basic(creds) => match login(&auth, creds).await {
            Ok(Some(principal)) => principal,
            Ok(None) => return unauthorized(&auth, "invalid username or password"),
            Err(response) => return response,
        },
        Presented::Bearer(_) | Presented::Malformed => {
            return unauthorized(&auth, "token requests take Basic credentials or none");
        }
    };
    let offline = param(&params, "offline_token") == Some("true");
    respond(&auth, &principal, &params, offline)
}

/// Form body with `grant_type=password` (`username`, `password`) or
/// `grant_type=refresh_token` (`refresh_token`), plus `scope` (space-separated)
/// and `access_type=offline` for a refresh token.
async fn post_token(State(auth): State<Arc<Authorizer>>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not UTF-8",
        );
    };
    let params = parse_form(body);
    let principal = match oauth_principal(&auth, &params).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let offline = param(&params, "access_type") == Some("offline");
    respond(&auth, &principal, &params, offline)
}

async fn oauth_principal(
    auth: &Arc<Authorizer>,
    params: &[(String, String)],
) -> Result<Principal, Response> {
    let invalid_grant = |message| oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", message);
    match param(params, "grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) =
                (param(params, "username"), param(params, "password"))
            else {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                ));
            };
            let creds = Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            };
            login(auth, creds)
                .await?
                .ok_or_else(|| invalid_grant("invalid username or password"))
        }
        Some("refresh_token") => param(params, "refresh_token")
            .and_then(|token| auth.redeem(token))
            .ok_or_else(|| invalid_grant("invalid or expired refresh token")),
        _ => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be password or refresh_token",
        )),
    }
}

async fn login(auth: &Arc<Authorizer>, creds: Credentials) -> Result<Option<Principal>, Response> {
    // argon2 burns tens of milliseconds of CPU: keep it off the async workers.
    let auth = Arc::clone(auth);
    tokio::task::spawn_blocking(move || auth.login(&creds))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "password check failed");
            internal_error()
        })
}

fn respond(
    auth: &Authorizer,
    principal: &Principal,
    params: &[(String, String)],
    offline: bool,
) -> Response {
    let scopes = parse_scopes(
        params
            .iter()
            .filter(|(key, _)| key == "scope")
            .map(|(_, value)| value.as_str()),
    );
    match auth.issue(principal, &scopes, offline) {
        Ok(issued) => token_response(issued),
        Err(e) => {
            tracing::error!(error = %e, "issuing a token failed");
            internal_error()
        }
    }
}

fn token_response(issued: Issued) -> Response {
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at,
        "scope": issued.scope,
    });
    if let Some(refresh_token) = issued.refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    let mut response = json_response(StatusCode::OK, &body);
    // Tokens are credentials (RFC 6749 §5.1).
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::FORBIDDEN => "DENIED",
            _ => "UNAUTHORIZED",
        };
        let mut response = registry_error(self.status, code, &self.message);
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// A 401 from the token endpoint itself: the credentials were wrong.
fn unauthorized(auth: &Authorizer, message: &str) -> Response {
    let mut response = registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    let challenge = format!("Basic realm=\"{}\"", auth.service());
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    response
}

/// OAuth2 error fields plus the registry's `errors` list, so both kinds of
/// client find a message they understand.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let code = match status {
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        _ => "UNSUPPORTED",
    };
    let body = json!({
        "error": error,
        "error_description": description,
        "errors": [{"code": code, "message": description, "detail": null}],
    });
    json_response(status, &body)
}

fn internal_error() -> Response {
    registry_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "internal error",
    )
}

fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (
                http::HeaderName::from_static("docker-distribution-api-version"),
                "registry/2.0",
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `application/x-www-form-urlencoded` pairs (query strings too); pairs
/// that do not decode to UTF-8 are dropped.
fn parse_form(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(key)?, form_decode(value)?))
        })
        .collect()
}

fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let high = hex_value(bytes.next()?)?;
                high << 4 | hex_value(bytes.next()?)?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use http::Request;
    use http::header::AUTHORIZATION;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::tests::{authorizer, config};
    use crate::auth::{Access, Action, AuthConfig};

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Value,
    }

    async fn send(auth: &Arc<Authorizer>, request: Request<Body>) -> Reply {
        let response = token_router(Arc::clone(auth))
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).expect("json body");
        Reply {
            status,
            headers,
            body,
        }
    }

    fn get(uri: &str, credentials: Option<(&str, &str)>) -> Request<Body> {
        let mut request = Request::get(uri);
        if let Some((user, password)) = credentials {
            let value = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
            request = request.header(AUTHORIZATION, value);
        }
        request.body(Body::empty()).expect("valid request")
    }

    fn post(form: &str) -> Request<Body> {
        Request::post("/token")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("valid request")
    }

    fn shared(config: AuthConfig) -> Arc<Authorizer> {
        Arc::new(authorizer(config))
    }

    fn token_of(reply: &Reply) -> String {
        reply.body["token"].as_str().expect("token").to_owned()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("valid");
        headers.insert(AUTHORIZATION, value);
        headers
    }

    #[tokio::test]
    async fn get_with_basic_grants_what_the_user_may() {
        let auth = shared(config());
        let uri = "/token?service=kiln&scope=repository:alice/app:pull,push&scope=repository:team/x:pull&account=alice";
        let reply = send(&auth, get(uri, Some(("alice", "alice-pw")))).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["access_token"], reply.body["token"]);
        assert_eq!(reply.body["expires_in"], 300);
        assert_eq!(reply.body["scope"], "repository:alice/app:pull,push");
        assert!(
            reply.body["issued_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(reply.body.get("refresh_token").is_none());
        assert_eq!(reply.headers[CACHE_CONTROL], "no-store");
        let token = token_of(&reply);
        let needs = [Access::repository(
            "alice/app",
            &[Action::Pull, Action::Push],
        )];
        assert!(auth.check(&bearer(&token), None, &needs).is_ok());
        let needs = [Access::repository("team/x", &[Action::Pull])];
        assert_eq!(
            auth.check(&bearer(&token), None, &needs)
                .map_err(|d| d.status()),
            Err(StatusCode::FORBIDDEN)
        );
    }

    #[tokio::test]
    async fn get_with_wrong_password_is_401() {
        let auth = shared(config());
        for (user, password) in [("alice", "wrong"), ("nobody", "alice-pw")] {
            let reply = send(&auth, get("/token?service=kiln", Some((user, password)))).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.body["errors"][0]["code"], "UNAUTHORIZED");
            assert_eq!(
                reply.body["errors"][0]["message"],
                "invalid username or password"
            );
            assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
        }
    }

    #[tokio::test]
    async fn get_without_credentials_gives_an_anonymous_token() {
        let auth = shared(config());
        let uri =
            "/token?service=kiln&scope=repository:alice/app:pull&scope=repository:public:pull,push";
        let reply = send(&auth, get(uri, None)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["scope"], "repository:public:pull");
        let reply = send(&auth, get("/token?scope=repository:alice/app:pull", None)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "empty grants are still a token"
        );
        assert_eq!(reply.body["scope"], "");
        let token = token_of(&reply);
        assert_eq!(
            auth.check(&bearer(&token), None, &[]).map(|p| p.user),
            Ok(None)
        );
    }

    #[tokio::test]
    async fn anonymous_pull_token() {
        let auth = shared(AuthConfig {
            anonymous_pull: true,
            ..config()
        });
        let uri = "/token?scope=repository%3Aany%2Frepo%3Apull%2Cpush";
        let reply = send(&auth, get(uri, None)).await;
        assert_eq!(reply.body["scope"], "repository:any/repo:pull");
    }

    #[tokio::test]
    async fn catalog_scope_for_logged_in_users() {
        let auth = shared(config());
        let uri = "/token?scope=registry:catalog:*";
        let reply = send(&auth, get(uri, Some(("bob", "bob:pw")))).await;
        assert_eq!(reply.body["scope"], "registry:catalog:*");
        let token = token_of(&reply);
        assert!(
            auth.check(&bearer(&token), None, &[Access::Catalog])
                .is_ok()
        );
        let reply = send(&auth, get(uri, None)).await;
        assert_eq!(reply.body["scope"], "");
    }

    #[tokio::test]
    async fn docker_login_gets_a_refresh_token_and_redeems_it() {
        let auth = shared(config());
        let uri = "/token?account=alice&client_id=docker&offline_token=true&service=kiln";
        let reply = send(&auth, get(uri, Some(("alice", "alice-pw")))).await;
        let refresh = reply.body["refresh_token"].as_str().expect("refresh token");
        let form = format!(
            "grant_type=refresh_token&refresh_token={refresh}&service=kiln&client_id=docker&scope=repository%3Aalice%2Fapp%3Apull+repository%3Aalice%2Fb%3Apush"
        );
        let reply = send(&auth, post(&form)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body["scope"],
            "repository:alice/app:pull repository:alice/b:push"
        );
        assert!(reply.body.get("refresh_token").is_none());
        let reply = send(&auth, post("grant_type=refresh_token&refresh_token=bogus")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn post_password_grant() {
        let auth = shared(config());
        let form = "grant_type=password&username=bob&password=bob%3Apw&service=kiln&client_id=podman&access_type=offline&scope=repository:team/a:pull";
        let reply = send(&auth, post(form)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["scope"], "repository:team/a:pull");
        assert!(reply.body["refresh_token"].is_string());
        let reply = send(
            &auth,
            post("grant_type=password&username=bob&password=nope"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body["errors"][0]["code"], "UNAUTHORIZED");
        let reply = send(&auth, post("grant_type=password&username=bob")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"], "invalid_request");
    }

    #[tokio::test]
    async fn post_unsupported_grant_type() {
        let auth = shared(config());
        for form in ["grant_type=client_credentials", "", "\u{ff}"] {
            let reply = send(&auth, post(form)).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{form:?}");
            assert_eq!(reply.body["error"], "unsupported_grant_type");
        }
    }

    #[tokio::test]
    async fn get_rejects_bearer_credentials() {
        let auth = shared(config());
        let request = Request::get("/token")
            .header(AUTHORIZATION, "Bearer abc")
            .body(Body::empty())
            .expect("valid request");
        assert_eq!(send(&auth, request).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn render(denied: Denied) -> Reply {
        let response = denied.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).expect("json body");
        Reply {
            status,
            headers,
            body,
        }
    }

    #[tokio::test]
    async fn denied_renders_401_with_challenge() {
        let auth = authorizer(config());
        let needs = [Access::repository(
            "alice/app",
            &[Action::Pull, Action::Push],
        )];
        let denied = auth
            .check(&HeaderMap::new(), Some("reg:5000"), &needs)
            .expect_err("anonymous");
        let reply = render(denied).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.headers[WWW_AUTHENTICATE],
            r#"Bearer realm="http://reg:5000/token",service="kiln",scope="repository:alice/app:pull,push""#
        );
        assert_eq!(reply.headers[CONTENT_TYPE], "application/json");
        assert_eq!(
            reply.headers["docker-distribution-api-version"],
            "registry/2.0"
        );
        assert_eq!(
            reply.body,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": null}]})
        );
    }

    #[tokio::test]
    async fn denied_renders_403_for_logged_in_users() {
        let auth = authorizer(config());
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode("bob:bob:pw"));
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).expect("valid"));
        let needs = [Access::repository("alice/app", &[Action::Pull])];
        let reply = render(auth.check(&headers, None, &needs).expect_err("not bob's")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert!(reply.headers.get(WWW_AUTHENTICATE).is_none());
        assert_eq!(reply.body["errors"][0]["code"], "DENIED");
        assert_eq!(reply.body["errors"][0]["detail"], Value::Null);
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("a=1&b=x+y%20z&c=%3A%2f&&d&e="),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), ":/".into()),
                ("d".into(), "".into()),
                ("e".into(), "".into()),
            ]
        );
        assert_eq!(
            parse_form("a=%zz&b=%4&c=%ff&d=%C3%A9"),
            vec![("d".into(), "é".into())]
        );
        assert_eq!(form_decode("%+5"), None);
    }
}
