//! Who may do what: actions, repository patterns, compiled grants, and the
//! scopes clients ask the token endpoint for.

use std::fmt;

use serde::Deserialize;

use super::AuthError;
use super::config::{AuthConfig, GrantConfig};

/// An action on a repository, as named in scopes and grants.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a registry request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Repository {
        name: String,
        actions: Vec<Action>,
    },
    /// `GET /v2/_catalog`.
    Catalog,
}

impl Access {
    pub fn repository(name: impl Into<String>, actions: &[Action]) -> Self {
        Access::Repository {
            name: name.into(),
            actions: actions.to_vec(),
        }
    }

    /// The scope string clients send back to the token endpoint.
    pub fn scope(&self) -> String {
        match self {
            Access::Repository { name, actions } => {
                let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                format!("repository:{name}:{}", actions.join(","))
            }
            Access::Catalog => "registry:catalog:*".to_owned(),
        }
    }
}

/// A small set of actions.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct ActionSet(u8);

impl ActionSet {
    pub(crate) const EMPTY: ActionSet = ActionSet(0);
    pub(crate) const ALL: ActionSet = ActionSet(7);

    pub(crate) fn of(actions: &[Action]) -> Self {
        ActionSet(actions.iter().fold(0, |bits, a| bits | a.bit()))
    }

    pub(crate) fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub(crate) fn contains_all(self, actions: &[Action]) -> bool {
        actions.iter().all(|a| self.contains(*a))
    }

    pub(crate) fn union(self, other: ActionSet) -> Self {
        ActionSet(self.0 | other.0)
    }

    pub(crate) fn intersect(self, other: ActionSet) -> Self {
        ActionSet(self.0 & other.0)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one path segment.
    One,
    /// `**`: one or more path segments.
    Many,
}

/// A repository name pattern from a grant: `/`-separated segments where a
/// whole segment `*` matches one segment and `**` one or more.
#[derive(Clone, Debug)]
pub(crate) struct RepoPattern(Vec<Segment>);

impl RepoPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty pattern".to_owned());
        }
        pattern
            .split('/')
            .map(parse_segment)
            .collect::<Result<_, _>>()
            .map(RepoPattern)
    }

    pub(crate) fn matches(&self, repo: &str) -> bool {
        let parts: Vec<&str> = repo.split('/').collect();
        // An empty segment is never a valid name, so `*` must not match one.
        !parts.iter().any(|p| p.is_empty()) && match_segments(&self.0, &parts)
    }
}

fn parse_segment(segment: &str) -> Result<Segment, String> {
    match segment {
        "" => Err("empty path segment (leading, trailing or double `/`)".to_owned()),
        "*" => Ok(Segment::One),
        "**" => Ok(Segment::Many),
        // Names never contain `*`, so a partial wildcard would silently never
        // match: refuse it rather than let a typo lock people out.
        s if s.contains('*') => Err(format!(
            "segment {s:?}: `*` and `**` only work as a whole segment"
        )),
        s => Ok(Segment::Literal(s.to_owned())),
    }
}

fn match_segments(pattern: &[Segment], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((Segment::Many, rest)) => (1..=name.len()).any(|n| match_segments(rest, &name[n..])),
        Some((Segment::One, rest)) => !name.is_empty() && match_segments(rest, &name[1..]),
        Some((Segment::Literal(lit), rest)) => {
            name.first() == Some(&lit.as_str()) && match_segments(rest, &name[1..])
        }
    }
}

/// The caller as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who<'a> {
    Anonymous,
    User { name: &'a str, admin: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Subject {
    /// `anonymous`: everyone, logged in or not (logging in never loses rights).
    Everyone,
    /// `*`: any logged-in user.
    LoggedIn,
    User(String),
}

impl Subject {
    fn applies_to(&self, who: Who<'_>) -> bool {
        match (self, who) {
            (Subject::Everyone, _) => true,
            (Subject::LoggedIn, Who::User { .. }) => true,
            (Subject::User(n), Who::User { name, .. }) => n == name,
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
struct Grant {
    subjects: Vec<Subject>,
    repositories: Vec<RepoPattern>,
    actions: ActionSet,
}

/// The compiled `[[auth.grants]]` plus `anonymous_pull`.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    anonymous_pull: bool,
    grants: Vec<Grant>,
}

impl Rules {
    pub(crate) fn compile(config: &AuthConfig) -> Result<Self, AuthError> {
        let grants = config
            .grants
            .iter()
            .enumerate()
            .map(|(i, g)| compile_grant(i + 1, g, config))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            anonymous_pull: config.anonymous_pull,
            grants,
        })
    }

    /// The actions `who` may do on `repo`.
    pub(crate) fn allowed(&self, who: Who<'_>, repo: &str) -> ActionSet {
        if !valid_repo_name(repo) {
            return ActionSet::EMPTY;
        }
        if let Who::User { admin: true, .. } = who {
            return ActionSet::ALL;
        }
        let base = if self.anonymous_pull {
            ActionSet::of(&[Action::Pull])
        } else {
            ActionSet::EMPTY
        };
        self.grants
            .iter()
            .filter(|g| g.subjects.iter().any(|s| s.applies_to(who)))
            .filter(|g| g.repositories.iter().any(|p| p.matches(repo)))
            .fold(base, |set, g| set.union(g.actions))
    }

    /// Whether `who` may list the catalog (filtered to what it may pull).
    pub(crate) fn catalog(&self, who: Who<'_>) -> bool {
        match who {
            Who::User { .. } => true,
            // With anonymous pull everything is public anyway.
            Who::Anonymous => self.anonymous_pull,
        }
    }

    pub(crate) fn permits(&self, who: Who<'_>, need: &Access) -> bool {
        match need {
            Access::Repository { name, actions } => self.allowed(who, name).contains_all(actions),
            Access::Catalog => self.catalog(who),
        }
    }
}

fn compile_grant(
    index: usize,
    grant: &GrantConfig,
    config: &AuthConfig,
) -> Result<Grant, AuthError> {
    let bad = |reason: &str| AuthError::BadGrant {
        grant: index,
        reason: reason.to_owned(),
    };
    if grant.users.is_empty() {
        return Err(bad("`users` is empty"));
    }
    if grant.repositories.is_empty() {
        return Err(bad("`repositories` is empty"));
    }
    if grant.actions.is_empty() {
        return Err(bad("`actions` is empty"));
    }
    let subjects = grant
        .users
        .iter()
        .map(|u| compile_subject(index, u, config))
        .collect::<Result<_, _>>()?;
    let repositories = grant
        .repositories
        .iter()
        .map(|p| {
            RepoPattern::parse(p).map_err(|reason| AuthError::BadPattern {
                grant: index,
                pattern: p.clone(),
                reason,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Grant {
        subjects,
        repositories,
        actions: ActionSet::of(&grant.actions),
    })
}

fn compile_subject(index: usize, user: &str, config: &AuthConfig) -> Result<Subject, AuthError> {
    match user {
        "anonymous" => Ok(Subject::Everyone),
        "*" => Ok(Subject::LoggedIn),
        name if config.users.iter().any(|u| u.name == name) => Ok(Subject::User(name.to_owned())),
        // A typo here would silently grant nothing; say so at startup.
        name => Err(AuthError::UnknownGrantUser {
            grant: index,
            user: name.to_owned(),
        }),
    }
}

/// A repository name as the distribution spec allows it: `/`-separated
/// components of `[a-z0-9]` joined by `.`, `_`, `__` or runs of `-`.
pub(crate) fn valid_repo_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alnum)
        && component.ends_with(alnum)
        && component
            .split(alnum)
            .filter(|sep| !sep.is_empty())
            .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// A parsed scope from a token request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Repository { name: String, actions: ActionSet },
    Catalog,
}

/// Parses `scope` values (each may hold several space-separated scopes, as
/// in OAuth2), dropping invalid ones and merging repeats of a repository.
pub(crate) fn parse_scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = Vec::new();
    for scope in values
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(parse_scope)
    {
        merge_scope(&mut scopes, scope);
    }
    scopes
}

fn merge_scope(scopes: &mut Vec<Scope>, scope: Scope) {
    let existing = scopes.iter_mut().find(|s| match (&**s, &scope) {
        (Scope::Repository { name: a, .. }, Scope::Repository { name: b, .. }) => a == b,
        (Scope::Catalog, Scope::Catalog) => true,
        _ => false,
    });
    match (existing, scope) {
        (Some(Scope::Repository { actions, .. }), Scope::Repository { actions: more, .. }) => {
            *actions = actions.union(more);
        }
        (Some(_), _) => {}
        (None, scope) => scopes.push(scope),
    }
}

/// `type[(class)]:name:actions`; the name may not contain `:`, so it is
/// everything between the first and the last colon.
fn parse_scope(scope: &str) -> Option<Scope> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    match strip_class(kind)? {
        "repository" if valid_repo_name(name) => {
            let actions = parse_actions(actions);
            (!actions.is_empty()).then(|| Scope::Repository {
                name: name.to_owned(),
                actions,
            })
        }
        "registry" if name == "catalog" && actions.split(',').any(|a| a == "*") => {
            Some(Scope::Catalog)
        }
        _ => None,
    }
}

/// `repository(plugin)` → `repository`.
fn strip_class(kind: &str) -> Option<&str> {
    match kind.split_once('(') {
        None => Some(kind),
        Some((kind, class)) => class.ends_with(')').then_some(kind),
    }
}

fn parse_actions(actions: &str) -> ActionSet {
    actions.split(',').fold(ActionSet::EMPTY, |set, a| match a {
        "*" => ActionSet::ALL,
        a => Action::parse(a).map_or(set, |a| set.union(ActionSet::of(&[a]))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::UserConfig;

    fn pattern(p: &str) -> RepoPattern {
        RepoPattern::parse(p).expect("valid pattern")
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let p = pattern("exact/name");
        assert!(p.matches("exact/name"));
        assert!(!p.matches("exact/name/sub"));
        assert!(!p.matches("exact"));
        assert!(!p.matches("exact/nam"));
    }

    #[test]
    fn single_star_matches_one_level() {
        let p = pattern("alice/*");
        assert!(p.matches("alice/app"));
        assert!(!p.matches("alice"));
        assert!(!p.matches("alice/app/sub"));
        assert!(!p.matches("bob/app"));
        assert!(!p.matches("alice/"));
    }

    #[test]
    fn double_star_matches_any_depth_below() {
        let p = pattern("team/**");
        assert!(p.matches("team/a"));
        assert!(p.matches("team/a/b/c"));
        assert!(!p.matches("team"));
        assert!(!p.matches("teams/a"));
        assert!(!p.matches("team//a"));
    }

    #[test]
    fn bare_wildcards() {
        assert!(pattern("*").matches("alpine"));
        assert!(!pattern("*").matches("library/alpine"));
        assert!(pattern("**").matches("alpine"));
        assert!(pattern("**").matches("library/alpine/x"));
    }

    #[test]
    fn wildcards_in_the_middle() {
        let p = pattern("org/*/images");
        assert!(p.matches("org/a/images"));
        assert!(!p.matches("org/a/b/images"));
        let p = pattern("org/**/images");
        assert!(p.matches("org/a/b/images"));
        assert!(!p.matches("org/images"));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for p in ["", "a//b", "/a", "a/", "foo-*", "a/b**", "***"] {
            assert!(RepoPattern::parse(p).is_err(), "{p:?} should be rejected");
        }
    }

    #[test]
    fn repo_names() {
        for ok in ["a", "library/alpine", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(valid_repo_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a:b", "a b", "a._b",
        ] {
            assert!(!valid_repo_name(bad), "{bad}");
        }
    }

    fn config(anonymous_pull: bool, grants: Vec<GrantConfig>) -> AuthConfig {
        let user = |name: &str| UserConfig {
            name: name.to_owned(),
            password_hash: String::new(),
            admin: false,
        };
        AuthConfig {
            anonymous_pull,
            users: vec![user("alice"), user("bob")],
            grants,
            ..AuthConfig::default()
        }
    }

    fn grant(users: &[&str], repositories: &[&str], actions: &[Action]) -> GrantConfig {
        GrantConfig {
            users: users.iter().map(|s| s.to_string()).collect(),
            repositories: repositories.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
        }
    }

    const ALICE: Who<'static> = Who::User {
        name: "alice",
        admin: false,
    };
    const BOB: Who<'static> = Who::User {
        name: "bob",
        admin: false,
    };

    #[test]
    fn grants_apply_to_their_subjects() {
        use Action::*;
        let rules = Rules::compile(&config(
            false,
            vec![
                grant(&["alice"], &["alice/*"], &[Pull, Push, Delete]),
                grant(&["*"], &["shared/**"], &[Pull]),
                grant(&["anonymous"], &["public"], &[Pull]),
            ],
        ))
        .expect("valid rules");
        assert_eq!(rules.allowed(ALICE, "alice/app"), ActionSet::ALL);
        assert_eq!(rules.allowed(BOB, "alice/app"), ActionSet::EMPTY);
        assert_eq!(rules.allowed(BOB, "shared/x/y"), ActionSet::of(&[Pull]));
        assert_eq!(rules.allowed(Who::Anonymous, "shared/x"), ActionSet::EMPTY);
        assert_eq!(
            rules.allowed(Who::Anonymous, "public"),
            ActionSet::of(&[Pull])
        );
        assert_eq!(rules.allowed(ALICE, "public"), ActionSet::of(&[Pull]));
        assert!(!rules.catalog(Who::Anonymous));
        assert!(rules.catalog(BOB));
    }

    #[test]
    fn grants_accumulate_and_push_does_not_imply_pull() {
        use Action::*;
        let rules = Rules::compile(&config(
            false,
            vec![
                grant(&["bob"], &["drop/*"], &[Push]),
                grant(&["bob", "alice"], &["drop/box"], &[Delete]),
            ],
        ))
        .expect("valid rules");
        assert_eq!(rules.allowed(BOB, "drop/a"), ActionSet::of(&[Push]));
        assert_eq!(
            rules.allowed(BOB, "drop/box"),
            ActionSet::of(&[Push, Delete])
        );
        assert_eq!(rules.allowed(ALICE, "drop/box"), ActionSet::of(&[Delete]));
    }

    #[test]
    fn anonymous_pull_gives_everyone_pull() {
        let rules = Rules::compile(&config(true, vec![])).expect("valid rules");
        let pull = ActionSet::of(&[Action::Pull]);
        assert_eq!(rules.allowed(Who::Anonymous, "any/repo"), pull);
        assert_eq!(rules.allowed(ALICE, "any/repo"), pull);
        assert!(rules.catalog(Who::Anonymous));
        let closed = Rules::compile(&config(false, vec![])).expect("valid rules");
        assert_eq!(closed.allowed(Who::Anonymous, "any/repo"), ActionSet::EMPTY);
    }

    #[test]
    fn admin_may_do_everything() {
        let rules = Rules::compile(&config(false, vec![])).expect("valid rules");
        let admin = Who::User {
            name: "root",
            admin: true,
        };
        assert_eq!(rules.allowed(admin, "any/repo"), ActionSet::ALL);
        assert!(rules.permits(admin, &Access::Catalog));
        assert_eq!(rules.allowed(admin, "Invalid Name"), ActionSet::EMPTY);
    }

    #[test]
    fn grant_validation() {
        use Action::*;
        let err = |g| Rules::compile(&config(false, vec![g])).expect_err("invalid grant");
        assert!(matches!(
            err(grant(&["carol"], &["x"], &[Pull])),
            AuthError::UnknownGrantUser { grant: 1, .. }
        ));
        assert!(matches!(
            err(grant(&["alice"], &["x*"], &[Pull])),
            AuthError::BadPattern { .. }
        ));
        assert!(matches!(
            err(grant(&[], &["x"], &[Pull])),
            AuthError::BadGrant { .. }
        ));
        assert!(matches!(
            err(grant(&["alice"], &[], &[Pull])),
            AuthError::BadGrant { .. }
        ));
        assert!(matches!(
            err(grant(&["alice"], &["x"], &[])),
            AuthError::BadGrant { .. }
        ));
    }

    #[test]
    fn scope_parsing() {
        let all = ActionSet::ALL;
        let pull_push = ActionSet::of(&[Action::Pull, Action::Push]);
        assert_eq!(
            parse_scopes(["repository:a/b:pull,push"]),
            vec![Scope::Repository {
                name: "a/b".into(),
                actions: pull_push
            }]
        );
        assert_eq!(
            parse_scopes(["repository(plugin):a:*"]),
            vec![Scope::Repository {
                name: "a".into(),
                actions: all
            }]
        );
        assert_eq!(parse_scopes(["registry:catalog:*"]), vec![Scope::Catalog]);
        assert_eq!(
            parse_scopes(["repository:a:pull repository:b:push", "repository:a:push"]),
            vec![
                Scope::Repository {
                    name: "a".into(),
                    actions: pull_push
                },
                Scope::Repository {
                    name: "b".into(),
                    actions: ActionSet::of(&[Action::Push])
                },
            ]
        );
    }

    #[test]
    fn invalid_scopes_are_ignored() {
        let bad = [
            "",
            "repository",
            "repository:a",
            "repository:a:",
            "repository:a:frobnicate",
            "repository:Bad:pull",
            "repository:host:5000/name:pull",
            "registry:catalog:pull",
            "registry:other:*",
            "repository(plugin:a:pull",
            "blob:a:pull",
        ];
        for scope in bad {
            assert_eq!(parse_scopes([scope]), vec![], "{scope:?}");
        }
        assert_eq!(
            parse_scopes(["repository:a:frobnicate,pull"]),
            vec![Scope::Repository {
                name: "a".into(),
                actions: ActionSet::of(&[Action::Pull])
            }]
        );
    }

    #[test]
    fn access_scope_strings() {
        let access = Access::repository("a/b", &[Action::Pull, Action::Push]);
        assert_eq!(access.scope(), "repository:a/b:pull,push");
        assert_eq!(Access::Catalog.scope(), "registry:catalog:*");
    }
}
