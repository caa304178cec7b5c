//! Registry authentication and authorization: Docker token auth, the flow
//! `docker login`, `podman login` and `skopeo --creds` expect, with users
//! from the config (argon2 password hashes) and repository grants.
//!
//! A request without sufficient credentials gets 401 with a `Bearer`
//! challenge naming the realm (our `/token` endpoint, see [`token_router`])
//! and the scope it needs; the client gets a token there, with its Basic
//! credentials or none, and retries with it. Basic credentials are also
//! accepted on registry routes directly, for curl and scripts.

mod config;
mod handler;
mod password;
mod rules;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use http::{HeaderMap, StatusCode, header::AUTHORIZATION};

pub use config::{AuthConfig, GrantConfig, UserConfig};
pub use handler::token_router;
pub use password::hash_password;
pub use rules::{Access, Action};
pub use token::load_or_create_key;

use password::{Credentials, PasswordChecker, StoredHash, parse_basic};
use rules::{Rules, Scope, Who};
use token::{Claims, ISSUER, ResourceActions, Signer};

/// The shortest signing key accepted.
pub const MIN_KEY_LEN: usize = 32;
/// More scopes than any client asks for in one token request.
const MAX_SCOPES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token key file {}: {source}", path.display())]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token key file {} holds {len} bytes, at least {MIN_KEY_LEN} are needed (remove it to have a new key created)",
        path.display()
    )]
    KeyTooShort { path: PathBuf, len: usize },
    #[error("the token signing key has {0} bytes, at least {MIN_KEY_LEN} are needed")]
    WeakKey(usize),
    #[error("[auth] {field}: {reason}")]
    BadSetting { field: &'static str, reason: String },
    #[error("[[auth.users]] name {name:?}: {reason}")]
    BadUserName { name: String, reason: &'static str },
    #[error(
        "[[auth.users]] {user:?}: password_hash is not a usable argon2 PHC string ({reason}); make one with `kiln registry hash-password`"
    )]
    BadPasswordHash { user: String, reason: String },
    #[error("[[auth.grants]] #{grant}: {reason}")]
    BadGrant { grant: usize, reason: String },
    #[error(
        "[[auth.grants]] #{grant}: unknown user {user:?} (not in [[auth.users]]; \"*\" means any logged-in user, \"anonymous\" everyone)"
    )]
    UnknownGrantUser { grant: usize, user: String },
    #[error("[[auth.grants]] #{grant}: repository pattern {pattern:?}: {reason}")]
    BadPattern {
        grant: usize,
        pattern: String,
        reason: String,
    },
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("signing a token failed: {0}")]
    Sign(#[from] serde_json::Error),
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `None`: anonymous.
    pub user: Option<String>,
    pub admin: bool,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal {
            user: None,
            admin: false,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    fn who(&self) -> Who<'_> {
        match &self.user {
            None => Who::Anonymous,
            Some(name) => Who::User {
                name,
                admin: self.admin,
            },
        }
    }
}

/// A refused request; renders as the registry's 401 or 403 error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    status: StatusCode,
    message: String,
    /// The `WWW-Authenticate` value, for 401s.
    challenge: Option<String>,
}

impl Denied {
    /// 401 or 403.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Denied {}

/// What the `Authorization` header holds.
#[derive(Debug)]
pub(crate) enum Presented {
    Nothing,
    Basic(Credentials),
    Bearer(String),
    Malformed,
}

pub(crate) fn presented(headers: &HeaderMap) -> Presented {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest).map_or(Presented::Malformed, Presented::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Presented::Bearer(rest.to_owned())
    } else {
        Presented::Malformed
    }
}

struct User {
    hash: StoredHash,
    fingerprint: String,
    admin: bool,
}

/// A freshly issued token, as the token endpoint reports it.
pub(crate) struct Issued {
    pub token: String,
    pub expires_in: i64,
    pub issued_at: String,
    /// The granted scopes, space-separated (OAuth2 `scope`).
    pub scope: String,
    pub refresh_token: Option<String>,
}

/// Decides who a request comes from and whether it may do what it needs.
pub struct Authorizer {
    service: String,
    realm: Option<String>,
    /// The scheme of the default realm: the registry's own.
    https: bool,
    token_ttl: i64,
    refresh_ttl: i64,
    users: HashMap<String, User>,
    rules: Rules,
    signer: Signer,
    passwords: PasswordChecker,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("service", &self.service)
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// `key`: the HMAC signing key ([`load_or_create_key`] gives it).
    pub fn new(config: AuthConfig, key: Vec<u8>) -> Result<Self, AuthError> {
        if key.len() < MIN_KEY_LEN {
            return Err(AuthError::WeakKey(key.len()));
        }
        let signer = Signer::new(&key).ok_or(AuthError::WeakKey(key.len()))?;
        validate_settings(&config)?;
        let rules = Rules::compile(&config)?;
        let users = compile_users(&config)?;
        // Unknown users are checked against a real user's hash so they cost
        // the same argon2 work as a wrong password.
        let decoy = config
            .users
            .first()
            .and_then(|u| users.get(&u.name))
            .map(|u| u.hash.clone());
        Ok(Authorizer {
            service: config.service,
            realm: config.realm,
            https: false,
            token_ttl: secs(config.token_ttl_secs),
            refresh_ttl: secs(config.refresh_token_ttl_secs),
            users,
            rules,
            signer,
            passwords: PasswordChecker::new(decoy),
        })
    }

    /// Loads (or creates) the key at `config.key_path(data_dir)`, then [`Authorizer::new`].
    pub fn open(config: AuthConfig, data_dir: &Path) -> Result<Self, AuthError> {
        let key = load_or_create_key(&config.key_path(data_dir))?;
        Self::new(config, key)
    }

    /// Announces the default realm as `https://` (the registry serves TLS).
    /// A `realm` in the configuration is announced as written.
    pub fn with_https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The token endpoint URL announced in challenges.
    pub fn realm(&self, host: Option<&str>) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match (&self.realm, host) {
            (Some(realm), _) => realm.clone(),
            (None, Some(host)) if valid_host(host) => format!("{scheme}://{host}/token"),
            (None, _) => format!("{scheme}://localhost/token"),
        }
    }

    /// Checks the request's `Authorization` header (a Bearer token from our
    /// `/token` endpoint, or Basic credentials) for `needs`. Empty `needs`
    /// (`GET /v2/`) accepts any valid credentials but never none, so that
    /// clients discover the realm.
    ///
    /// Basic credentials not seen before cost one argon2 verification (tens
    /// of milliseconds); later checks of the same credentials are cached.
    pub fn check(
        &self,
        headers: &HeaderMap,
        host: Option<&str>,
        needs: &[Access],
    ) -> Result<Principal, Denied> {
        match presented(headers) {
            Presented::Nothing => self.decide(host, Principal::anonymous(), needs, None),
            Presented::Malformed => Err(self.unauthorized(
                host,
                needs,
                "malformed or unsupported Authorization header",
                Some("invalid_request"),
            )),
            Presented::Basic(creds) => match self.login(&creds) {
                Some(principal) => self.decide(host, principal, needs, None),
                None => Err(self.unauthorized(host, needs, "invalid username or password", None)),
            },
            Presented::Bearer(token) => {
                let (principal, claims) = self.verify_access_token(&token).map_err(|message| {
                    self.unauthorized(host, needs, message, Some("invalid_token"))
                })?;
                self.decide(host, principal, needs, Some(&claims))
            }
        }
    }

    /// Whether `principal` may do `action` on `repo` (e.g. to filter `_catalog`).
    pub fn can(&self, principal: &Principal, repo: &str, action: Action) -> bool {
        self.rules.allowed(principal.who(), repo).contains(action)
    }

    /// The principal behind Basic credentials, if they are right.
    pub(crate) fn login(&self, creds: &Credentials) -> Option<Principal> {
        let user = self.users.get(&creds.user);
        if !self
            .passwords
            .verify(&creds.user, &creds.password, user.map(|u| &u.hash))
        {
            tracing::info!(user = ?creds.user, "registry login failed");
            return None;
        }
        user.map(|u| Principal {
            user: Some(creds.user.clone()),
            admin: u.admin,
        })
    }

    /// The final decision, once the caller is known.
    fn decide(
        &self,
        host: Option<&str>,
        principal: Principal,
        needs: &[Access],
        token: Option<&Claims>,
    ) -> Result<Principal, Denied> {
        if needs.is_empty() && principal.is_anonymous() && token.is_none() {
            return Err(self.unauthorized(host, needs, "authentication required", None));
        }
        let mut short_scope = false;
        for need in needs {
            // What anonymous callers may do needs no token at all.
            if self.rules.permits(Who::Anonymous, need) {
                continue;
            }
            if !self.rules.permits(principal.who(), need) {
                // An anonymous token that lacks the right is answered as
                // Distribution does (insufficient_scope): docker otherwise
                // takes the refusal for a transient error and retries.
                return Err(match (principal.is_anonymous(), token.is_some()) {
                    (true, true) => self.unauthorized(
                        host,
                        needs,
                        "anonymous access is not allowed here: log in first",
                        Some("insufficient_scope"),
                    ),
                    (true, false) => {
                        self.unauthorized(host, needs, "authentication required", None)
                    }
                    (false, _) => forbidden(need),
                });
            }
            short_scope |= token.is_some_and(|claims| !covers(claims, need));
        }
        if short_scope {
            // The user may do it, the token just does not say so: a new
            // token for the challenge's scope will.
            return Err(self.unauthorized(
                host,
                needs,
                "the token does not grant the requested access",
                Some("insufficient_scope"),
            ));
        }
        Ok(principal)
    }

    fn verify_access_token(&self, token: &str) -> Result<(Principal, Claims), &'static str> {
        let claims = self
            .signer
            .verify(token, &self.service, token::now())
            .map_err(|e| match e {
                token::TokenError::Expired => "token expired",
                token::TokenError::NotYetValid => "token not yet valid",
                token::TokenError::WrongAudience => "token issued for another service",
                _ => "invalid token",
            })?;
        if claims.iss != ISSUER || claims.refresh.is_some() {
            return Err("invalid token");
        }
        let principal = match claims.sub.as_str() {
            "" => Principal::anonymous(),
            name => {
                let user = self.users.get(name).ok_or("token for an unknown user")?;
                Principal {
                    user: Some(name.to_owned()),
                    admin: user.admin,
                }
            }
        };
        Ok((principal, claims))
    }

    /// A token granting `principal` what it may of `scopes` (never an error
    /// for asking too much); with `offline`, a refresh token too.
    pub(crate) fn issue(
        &self,
        principal: &Principal,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<Issued, AuthError> {
        let now = token::now();
        let access = self.grant(principal.who(), scopes);
        let scope = access.iter().map(scope_of).collect::<Vec<_>>().join(" ");
        let claims = self.claims(principal, now, self.token_ttl, access);
        Ok(Issued {
            token: self.signer.sign(&claims)?,
            expires_in: self.token_ttl,
            issued_at: token::rfc3339(now),
            scope,
            refresh_token: match offline {
                true => self.refresh_token(principal, now)?,
                false => None,
            },
        })
    }

    fn grant(&self, who: Who<'_>, scopes: &[Scope]) -> Vec<ResourceActions> {
        let entry = |kind: &str, name: &str, actions: Vec<String>| ResourceActions {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        };
        scopes
            .iter()
            .take(MAX_SCOPES)
            .filter_map(|scope| match scope {
                Scope::Repository { name, actions } => {
                    let granted = actions.intersect(self.rules.allowed(who, name));
                    let actions = granted.iter().map(|a| a.as_str().to_owned()).collect();
                    (!granted.is_empty()).then(|| entry("repository", name, actions))
                }
                Scope::Catalog => self
                    .rules
                    .catalog(who)
                    .then(|| entry("registry", "catalog", vec!["*".to_owned()])),
            })
            .collect()
    }

    fn claims(
        &self,
        principal: &Principal,
        now: i64,
        ttl: i64,
        access: Vec<ResourceActions>,
    ) -> Claims {
        Claims {
            iss: ISSUER.to_owned(),
            sub: principal.user.clone().unwrap_or_default(),
            aud: self.service.clone(),
            exp: now.saturating_add(ttl),
            nbf: now,
            iat: now,
            jti: token::random_id(),
            access,
            refresh: None,
        }
    }

    /// Only for users, and bound to their password hash.
    fn refresh_token(&self, principal: &Principal, now: i64) -> Result<Option<String>, AuthError> {
        let user = principal
            .user
            .as_ref()
            .and_then(|name| self.users.get(name));
        let (Some(user), true) = (user, self.refresh_ttl > 0) else {
            return Ok(None);
        };
        let mut claims = self.claims(principal, now, self.refresh_ttl, Vec::new());
        claims.refresh = Some(user.fingerprint.clone());
        Ok(Some(self.signer.sign(&claims)?))
    }

    /// The user a refresh token stands for, if it is still good.
    pub(crate) fn redeem(&self, refresh_token: &str) -> Option<Principal> {
        let claims = self
            .signer
            .verify(refresh_token, &self.service, token::now())
            .ok()?;
        let user = self.users.get(&claims.sub)?;
        let current = claims.refresh.as_deref() == Some(user.fingerprint.as_str());
        (claims.iss == ISSUER && current).then(|| Principal {
            user: Some(claims.sub.clone()),
            admin: user.admin,
        })
    }

    fn unauthorized(
        &self,
        host: Option<&str>,
        needs: &[Access],
        message: &str,
        error: Option<&str>,
    ) -> Denied {
        let mut challenge = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            quote(&self.realm(host)),
            quote(&self.service)
        );
        if !needs.is_empty() {
            let scope: Vec<String> = needs.iter().map(Access::scope).collect();
            challenge.push_str(&format!(",scope=\"{}\"", quote(&scope.join(" "))));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(",error=\"{error}\""));
        }
        Denied {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
            challenge: Some(challenge),
        }
    }
}

fn forbidden(need: &Access) -> Denied {
    let message = match need {
        Access::Repository { name, actions } => {
            let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            format!(
                "requested access to repository {name:?} ({}) is denied",
                actions.join(",")
            )
        }
        Access::Catalog => "requested access to the catalog is denied".to_owned(),
    };
    Denied {
        status: StatusCode::FORBIDDEN,
        message,
        challenge: None,
    }
}

/// Whether a token's `access` claim grants `need`.
fn covers(claims: &Claims, need: &Access) -> bool {
    let grants = |kind: &str, name: &str, action: &str| {
        claims.access.iter().any(|r| {
            r.kind == kind && r.name == name && r.actions.iter().any(|a| a == action || a == "*")
        })
    };
    match need {
        Access::Repository { name, actions } => actions
            .iter()
            .all(|a| grants("repository", name, a.as_str())),
        Access::Catalog => grants("registry", "catalog", "*"),
    }
}

fn scope_of(access: &ResourceActions) -> String {
    format!(
        "{}:{}:{}",
        access.kind,
        access.name,
        access.actions.join(",")
    )
}

/// Makes `s` safe inside a quoted header parameter.
fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

/// A Host header we are willing to echo into the realm URL.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn validate_settings(config: &AuthConfig) -> Result<(), AuthError> {
    let bad = |field, reason: &str| {
        Err(AuthError::BadSetting {
            field,
            reason: reason.to_owned(),
        })
    };
    let header_safe = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    };
    if config.service.is_empty() || !header_safe(&config.service) {
        return bad(
            "service",
            "must be non-empty printable ASCII without quotes or spaces",
        );
    }
    if let Some(realm) = &config.realm
        && (!header_safe(realm) || !(realm.starts_with("http://") || realm.starts_with("https://")))
    {
        return bad("realm", "must be an http:// or https:// URL");
    }
    if config.token_ttl_secs == 0 || config.token_ttl_secs > 24 * 3600 {
        return bad("token_ttl_secs", "must be between 1 and 86400");
    }
    Ok(())
}

fn compile_users(config: &AuthConfig) -> Result<HashMap<String, User>, AuthError> {
    let mut users = HashMap::new();
    for entry in &config.users {
        let bad_name = |reason| AuthError::BadUserName {
            name: entry.name.clone(),
            reason,
        };
        match entry.name.as_str() {
            "" => return Err(bad_name("empty")),
            "*" | "anonymous" => return Err(bad_name("reserved for grants")),
            name if name.contains(':') || name.chars().any(char::is_control) => {
                return Err(bad_name("contains `:` or control characters"));
            }
            _ => {}
        }
        let hash = StoredHash::parse(&entry.password_hash).map_err(|reason| {
            AuthError::BadPasswordHash {
                user: entry.name.clone(),
                reason,
            }
        })?;
        let user = User {
            fingerprint: hash.fingerprint(),
            hash,
            admin: entry.admin,
        };
        if users.insert(entry.name.clone(), user).is_some() {
            return Err(bad_name("listed twice"));
        }
    }
    Ok(users)
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;

    use super::password::tests::cheap_hash;
    use super::*;

    pub(crate) const KEY: [u8; 32] = [42; 32];

    pub(crate) fn user(name: &str, password: &str, admin: bool) -> UserConfig {
        UserConfig {
            name: name.to_owned(),
            password_hash: cheap_hash(password),
            admin,
        }
    }

    pub(crate) fn grant(users: &[&str], repositories: &[&str], actions: &[Action]) -> GrantConfig {
        GrantConfig {
            users: users.iter().map(|s| s.to_string()).collect(),
            repositories: repositories.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
        }
    }

    /// alice owns `alice/*`, bob may pull `team/**`, root is admin,
    /// `public` is anonymously pullable.
    pub(crate) fn config() -> AuthConfig {
        use Action::*;
        AuthConfig {
            users: vec![
                user("alice", "alice-pw", false),
                user("bob", "bob:pw", false),
                user("root", "root-pw", true),
            ],
            grants: vec![
                grant(&["alice"], &["alice/*"], &[Pull, Push, Delete]),
                grant(&["bob"], &["team/**"], &[Pull]),
                grant(&["anonymous"], &["public"], &[Pull]),
            ],
            ..AuthConfig::default()
        }
    }

    pub(crate) fn authorizer(config: AuthConfig) -> Authorizer {
        Authorizer::new(config, KEY.to_vec()).expect("valid config")
    }

    pub(crate) fn basic(user: &str, password: &str) -> HeaderMap {
        auth_header(&format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    pub(crate) fn bearer(token: &str) -> HeaderMap {
        auth_header(&format!("Bearer {token}"))
    }

    fn auth_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("valid header"),
        );
        headers
    }

    fn pull(repo: &str) -> Vec<Access> {
        vec![Access::repository(repo, &[Action::Pull])]
    }

    fn push(repo: &str) -> Vec<Access> {
        vec![Access::repository(repo, &[Action::Pull, Action::Push])]
    }

    fn scopes(s: &str) -> Vec<Scope> {
        rules::parse_scopes([s])
    }

    fn token_for(auth: &Authorizer, principal: &Principal, scope: &str) -> String {
        auth.issue(principal, &scopes(scope), false)
            .expect("issued")
            .token
    }

    fn alice() -> Principal {
        Principal {
            user: Some("alice".to_owned()),
            admin: false,
        }
    }

    #[test]
    fn base_endpoint_always_challenges_without_credentials() {
        for anonymous_pull in [false, true] {
            let auth = authorizer(AuthConfig {
                anonymous_pull,
                ..config()
            });
            let denied = auth
                .check(&HeaderMap::new(), Some("reg.example:5000"), &[])
                .expect_err("must challenge");
            assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                denied.challenge(),
                Some(r#"Bearer realm="http://reg.example:5000/token",service="kiln""#)
            );
        }
    }

    #[test]
    fn base_endpoint_accepts_any_valid_credentials() {
        let auth = authorizer(config());
        assert_eq!(
            auth.check(&basic("alice", "alice-pw"), None, &[]),
            Ok(alice())
        );
        let anonymous_token = token_for(&auth, &Principal::anonymous(), "");
        assert_eq!(
            auth.check(&bearer(&anonymous_token), None, &[]),
            Ok(Principal::anonymous())
        );
    }

    #[test]
    fn anonymous_pull_switch() {
        let closed = authorizer(config());
        let denied = closed
            .check(&HeaderMap::new(), Some("h"), &pull("x/y"))
            .expect_err("closed");
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            denied.challenge(),
            Some(r#"Bearer realm="http://h/token",service="kiln",scope="repository:x/y:pull""#)
        );
        let open = authorizer(AuthConfig {
            anonymous_pull: true,
            ..config()
        });
        assert_eq!(
            open.check(&HeaderMap::new(), None, &pull("x/y")),
            Ok(Principal::anonymous())
        );
        let denied = open
            .check(&HeaderMap::new(), None, &push("x/y"))
            .expect_err("no anonymous push");
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert!(
            denied
                .challenge()
                .is_some_and(|c| c.contains(r#"scope="repository:x/y:pull,push""#))
        );
    }

    #[test]
    fn anonymous_grants_apply_without_login() {
        let auth = authorizer(config());
        assert!(auth.check(&HeaderMap::new(), None, &pull("public")).is_ok());
        assert!(
            auth.check(&basic("bob", "bob:pw"), None, &pull("public"))
                .is_ok()
        );
    }

    #[test]
    fn basic_credentials() {
        let auth = authorizer(config());
        assert_eq!(
            auth.check(&basic("alice", "alice-pw"), None, &push("alice/app")),
            Ok(alice())
        );
        // Colons in passwords survive.
        assert!(
            auth.check(&basic("bob", "bob:pw"), None, &pull("team/a/b"))
                .is_ok()
        );
        let wrong = auth
            .check(&basic("alice", "nope"), None, &pull("alice/app"))
            .expect_err("wrong password");
        let unknown = auth
            .check(&basic("mallory", "nope"), None, &pull("alice/app"))
            .expect_err("unknown user");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            wrong, unknown,
            "same answer for unknown user and wrong password"
        );
    }

    #[test]
    fn logged_in_users_lacking_rights_get_403() {
        let auth = authorizer(config());
        let denied = auth
            .check(&basic("bob", "bob:pw"), None, &push("team/a"))
            .expect_err("bob may only pull");
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        assert_eq!(denied.challenge(), None);
        let denied = auth
            .check(&basic("bob", "bob:pw"), None, &pull("alice/app"))
            .expect_err("not bob's");
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn admin_may_do_everything() {
        let auth = authorizer(config());
        let root = auth
            .check(&basic("root", "root-pw"), None, &[Access::Catalog])
            .expect("admin");
        assert!(root.admin);
        let everything = vec![Access::repository("any/repo", &Action::ALL)];
        assert!(
            auth.check(&basic("root", "root-pw"), None, &everything)
                .is_ok()
        );
        assert!(auth.can(&root, "alice/app", Action::Delete));
    }

    #[test]
    fn can_filters_the_catalog() {
        let auth = authorizer(config());
        assert!(auth.can(&alice(), "alice/app", Action::Pull));
        assert!(!auth.can(&alice(), "team/x", Action::Pull));
        assert!(auth.can(&alice(), "public", Action::Pull));
        assert!(auth.can(&Principal::anonymous(), "public", Action::Pull));
        assert!(!auth.can(&Principal::anonymous(), "alice/app", Action::Pull));
    }

    #[test]
    fn catalog_needs_login_unless_everything_is_public() {
        let auth = authorizer(config());
        let denied = auth
            .check(&HeaderMap::new(), None, &[Access::Catalog])
            .expect_err("anonymous");
        assert!(
            denied
                .challenge()
                .is_some_and(|c| c.contains(r#"scope="registry:catalog:*""#))
        );
        assert!(
            auth.check(&basic("bob", "bob:pw"), None, &[Access::Catalog])
                .is_ok()
        );
        let open = authorizer(AuthConfig {
            anonymous_pull: true,
            ..config()
        });
        assert!(
            open.check(&HeaderMap::new(), None, &[Access::Catalog])
                .is_ok()
        );
    }

    #[test]
    fn bearer_tokens_grant_what_they_say() {
        let auth = authorizer(config());
        let token = token_for(&auth, &alice(), "repository:alice/app:pull,push");
        assert_eq!(
            auth.check(&bearer(&token), None, &push("alice/app")),
            Ok(alice())
        );
        // alice may, but the token does not say so: a new token will.
        let denied = auth
            .check(&bearer(&token), Some("h"), &pull("alice/other"))
            .expect_err("not in token");
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert!(
            denied
                .challenge()
                .is_some_and(|c| c.contains(r#"error="insufficient_scope""#))
        );
        assert!(
            denied
                .challenge()
                .is_some_and(|c| c.contains(r#"scope="repository:alice/other:pull""#))
        );
        // alice may not: no token would help.
        let denied = auth
            .check(&bearer(&token), None, &pull("team/x"))
            .expect_err("not alice's");
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        // Public repositories need no token scope.
        assert!(auth.check(&bearer(&token), None, &pull("public")).is_ok());
    }

    #[test]
    fn tokens_never_exceed_current_rules() {
        let auth = authorizer(config());
        let forged_claims = Claims {
            access: vec![ResourceActions {
                kind: "repository".to_owned(),
                name: "team/x".to_owned(),
                actions: vec!["push".to_owned()],
            }],
            ..auth.claims(&alice(), token::now(), 60, Vec::new())
        };
        let token = auth.signer.sign(&forged_claims).expect("signed");
        let needs = vec![Access::repository("team/x", &[Action::Push])];
        let denied = auth
            .check(&bearer(&token), None, &needs)
            .expect_err("rules say no");
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn bad_tokens_are_rejected_with_invalid_token() {
        let auth = authorizer(config());
        let now = token::now();
        let sign = |claims: Claims| auth.signer.sign(&claims).expect("signed");
        let base = || auth.claims(&alice(), now, 60, Vec::new());
        let expired = sign(Claims {
            exp: now - 3600,
            ..base()
        });
        let foreign = sign(Claims {
            aud: "other".to_owned(),
            ..base()
        });
        let ghost = sign(Claims {
            sub: "ghost".to_owned(),
            ..base()
        });
        let other_key = Authorizer::new(config(), vec![1; 32]).expect("valid");
        let alien = token_for(&other_key, &alice(), "");
        let refresh = auth
            .refresh_token(&alice(), now)
            .expect("signed")
            .expect("issued");
        for (token, message) in [
            (expired, "token expired"),
            (foreign, "token issued for another service"),
            (ghost, "token for an unknown user"),
            (alien, "invalid token"),
            (refresh, "invalid token"),
            ("garbage".to_owned(), "invalid token"),
        ] {
            let denied = auth.check(&bearer(&token), None, &[]).expect_err(message);
            assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(denied.message(), message);
            assert!(
                denied
                    .challenge()
                    .is_some_and(|c| c.ends_with(r#"error="invalid_token""#))
            );
        }
    }

    #[test]
    fn malformed_authorization_headers() {
        let auth = authorizer(config());
        for value in ["Basic !!!", "Bearer", "Bearer ", "Digest x", "Basic"] {
            let denied = auth.check(&auth_header(value), None, &[]).expect_err(value);
            assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{value}");
        }
        let lower = auth_header(&format!("basic {}", STANDARD.encode("alice:alice-pw")));
        assert!(auth.check(&lower, None, &[]).is_ok());
    }

    #[test]
    fn issue_intersects_requests_with_rights() {
        let auth = authorizer(config());
        let requested = rules::parse_scopes([
            "repository:alice/app:pull,push,delete repository:team/x:pull,push",
            "repository:nope/x:pull registry:catalog:*",
        ]);
        let bob = Principal {
            user: Some("bob".to_owned()),
            admin: false,
        };
        let issued = auth.issue(&bob, &requested, false).expect("issued");
        assert_eq!(issued.scope, "repository:team/x:pull registry:catalog:*");
        assert_eq!(issued.expires_in, 300);
        assert!(issued.refresh_token.is_none());
        let issued = auth.issue(&alice(), &requested, false).expect("issued");
        assert_eq!(
            issued.scope,
            "repository:alice/app:pull,push,delete registry:catalog:*"
        );
        let issued = auth
            .issue(&Principal::anonymous(), &requested, true)
            .expect("issued");
        assert_eq!(issued.scope, "");
        assert!(
            issued.refresh_token.is_none(),
            "no refresh tokens for anonymous"
        );
    }

    #[test]
    fn refresh_tokens_follow_the_password() {
        let auth = authorizer(config());
        let refresh = auth
            .issue(&alice(), &[], true)
            .expect("issued")
            .refresh_token
            .expect("offline token");
        assert_eq!(auth.redeem(&refresh), Some(alice()));
        let access = token_for(&auth, &alice(), "");
        assert_eq!(
            auth.redeem(&access),
            None,
            "access tokens are not refresh tokens"
        );
        let mut changed = config();
        changed.users[0] = user("alice", "new-pw", false);
        assert_eq!(authorizer(changed).redeem(&refresh), None);
        let disabled = authorizer(AuthConfig {
            refresh_token_ttl_secs: 0,
            ..config()
        });
        assert!(
            disabled
                .issue(&alice(), &[], true)
                .expect("issued")
                .refresh_token
                .is_none()
        );
    }

    #[test]
    fn realm_comes_from_config_or_host() {
        let auth = authorizer(AuthConfig {
            realm: Some("https://reg.example/token".to_owned()),
            ..config()
        });
        assert_eq!(auth.realm(Some("other")), "https://reg.example/token");
        let auth = authorizer(config());
        assert_eq!(auth.realm(Some("[::1]:5000")), "http://[::1]:5000/token");
        assert_eq!(auth.realm(Some("evil\",x=\"y")), "http://localhost/token");
        assert_eq!(auth.realm(None), "http://localhost/token");
    }

    #[test]
    fn default_realm_follows_tls_but_config_wins() {
        let auth = authorizer(config()).with_https(true);
        assert_eq!(auth.realm(Some("reg:5000")), "https://reg:5000/token");
        assert_eq!(auth.realm(None), "https://localhost/token");
        let auth = authorizer(AuthConfig {
            realm: Some("http://proxy.example/token".to_owned()),
            ..config()
        })
        .with_https(true);
        assert_eq!(auth.realm(Some("reg:5000")), "http://proxy.example/token");
    }

    #[test]
    fn challenge_quotes_odd_names() {
        let auth = authorizer(config());
        let needs = vec![Access::repository("a\"b", &[Action::Pull])];
        let denied = auth
            .check(&HeaderMap::new(), Some("h"), &needs)
            .expect_err("denied");
        assert!(
            denied
                .challenge()
                .is_some_and(|c| c.contains(r#"scope="repository:a\"b:pull""#))
        );
    }

    #[test]
    fn config_validation() {
        let err = |config: AuthConfig| Authorizer::new(config, KEY.to_vec()).expect_err("invalid");
        assert!(matches!(
            Authorizer::new(config(), vec![0; 16]),
            Err(AuthError::WeakKey(16))
        ));
        let mut c = config();
        c.users[1].password_hash = "$2y$05$bcrypt".to_owned();
        assert!(matches!(err(c), AuthError::BadPasswordHash { .. }));
        let mut c = config();
        c.users.push(user("alice", "again", false));
        assert!(matches!(err(c), AuthError::BadUserName { .. }));
        for name in ["", "*", "anonymous", "a:b"] {
            let mut c = config();
            c.users.push(user(name, "pw", false));
            assert!(matches!(err(c), AuthError::BadUserName { .. }), "{name:?}");
        }
        let bad_settings = [
            AuthConfig {
                service: String::new(),
                ..config()
            },
            AuthConfig {
                service: "a\"b".to_owned(),
                ..config()
            },
            AuthConfig {
                realm: Some("reg.example/token".to_owned()),
                ..config()
            },
            AuthConfig {
                token_ttl_secs: 0,
                ..config()
            },
        ];
        for c in bad_settings {
            assert!(matches!(err(c), AuthError::BadSetting { .. }));
        }
    }

    #[test]
    fn unknown_users_cost_an_argon2_check_too() {
        let auth = authorizer(config());
        // Right password of the decoy user, unknown name: still refused.
        let denied = auth.check(&basic("nobody", "alice-pw"), None, &[]);
        assert!(denied.is_err());
    }
}
