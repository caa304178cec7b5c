//! `WWW-Authenticate` challenges and token scopes (Docker token auth).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        /// The scope the server said it needs, if it said.
        scope: Option<String>,
        error: Option<String>,
    },
    Basic,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` value; `None` for
    /// schemes we do not speak or a Bearer challenge without a realm.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.remove("realm").filter(|r| !r.is_empty())?,
            service: params.remove("service"),
            scope: params.remove("scope"),
            error: params.remove("error"),
        })
    }
}

/// `key=value, key="quoted \" value"` pairs; keys lowercased.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        out.insert(key, value);
    }
}

/// One token scope, e.g. `repository:app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Scope {
    /// `repository:app`, `registry:catalog`.
    resource: String,
    actions: BTreeSet<String>,
}

impl Scope {
    pub(crate) fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource: format!("repository:{name}"),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// Parses a space-separated scope list as challenges carry it.
    pub(crate) fn parse_list(s: &str) -> Vec<Scope> {
        s.split_whitespace()
            .filter_map(|one| {
                let (resource, actions) = one.rsplit_once(':')?;
                Some(Scope {
                    resource: resource.to_owned(),
                    actions: actions.split(',').map(str::to_owned).collect(),
                })
            })
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.resource)?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a)?;
        }
        Ok(())
    }
}

/// A set of scopes, merged per resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Scopes(BTreeMap<String, BTreeSet<String>>);

impl Scopes {
    pub(crate) fn new(scopes: impl IntoIterator<Item = Scope>) -> Scopes {
        let mut s = Scopes::default();
        s.extend(scopes);
        s
    }

    pub(crate) fn extend(&mut self, scopes: impl IntoIterator<Item = Scope>) {
        for scope in scopes {
            self.0
                .entry(scope.resource)
                .or_default()
                .extend(scope.actions);
        }
    }

    /// Whether a token asked for `self` was also asked for everything in
    /// `other`.
    pub(crate) fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|(resource, actions)| {
            self.0
                .get(resource)
                .is_some_and(|have| actions.is_subset(have))
        })
    }

    pub(crate) fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(resource, actions)| {
                Scope {
                    resource: resource.clone(),
                    actions: actions.clone(),
                }
                .to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: None,
            })
        );
        let c = Challenge::parse(
            r#"bearer realm="http://h/token", error="insufficient_scope", scope="repository:a\"b:pull""#,
        );
        let Some(Challenge::Bearer { scope, error, .. }) = c else {
            panic!("{c:?}")
        };
        assert_eq!(scope.as_deref(), Some("repository:a\"b:pull"));
        assert_eq!(error.as_deref(), Some("insufficient_scope"));
        // Unquoted values too.
        let c = Challenge::parse("Bearer realm=http://h/t,service=s");
        assert!(matches!(c, Some(Challenge::Bearer { service: Some(s), .. }) if s == "s"));
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Digest realm=x"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse(""), None);
    }

    #[test]
    fn scopes_merge_and_cover() {
        let push = Scopes::new([Scope::repository("a", &["push", "pull"])]);
        let pull = Scopes::new([Scope::repository("a", &["pull"])]);
        assert!(push.covers(&pull));
        assert!(!pull.covers(&push));
        let mut mount = push.clone();
        mount.extend(Scope::parse_list("repository:b:pull registry:catalog:*"));
        assert_eq!(
            mount.to_strings(),
            [
                "registry:catalog:*",
                "repository:a:pull,push",
                "repository:b:pull"
            ]
        );
        assert!(!push.covers(&mount));
        assert!(mount.covers(&push));
    }
}
