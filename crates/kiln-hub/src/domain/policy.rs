//! Target policy: where a build may start from.
//!
//! A FROM is allowed iff it is `scratch`, or its `registry/repository`
//! (normalised as a pull would: `busybox` is `docker.io/library/busybox`)
//! equals one of the target's `allowed_parents` prefixes or continues it at a
//! `/` — so `registry.example/base` allows `registry.example/base/fedora`
//! but not `registry.example/basement`. Tags and digests do not matter.
//! Prefixes are taken literally (write `docker.io/library`, not `library`).
//! Registry host names compare case-insensitively.
//!
//! Callers pass external image references only: a FROM naming an earlier
//! stage is resolved by the Dockerfile layer, not here.

use kiln_oci::{Reference, ReferenceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    Scratch,
    Image(Reference),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("FROM {from:?}: {source}")]
    Unparsable {
        from: String,
        source: ReferenceError,
    },
    #[error(
        "FROM {from:?} ({resolved}) is not allowed by target {target:?}; allowed parents: {}",
        if .allowed.is_empty() { "none".to_string() } else { .allowed.join(", ") }
    )]
    NotAllowed {
        from: String,
        resolved: String,
        target: String,
        allowed: Vec<String>,
    },
}

fn split_registry(path: &str) -> (String, &str) {
    match path.split_once('/') {
        Some((reg, rest)) => (reg.to_ascii_lowercase(), rest),
        None => (path.to_ascii_lowercase(), ""),
    }
}

fn prefix_matches(prefix: &str, registry: &str, repository: &str) -> bool {
    let prefix = prefix.trim().trim_end_matches('/');
    if prefix.is_empty() {
        return false;
    }
    let (p_registry, p_repo) = split_registry(prefix);
    if p_registry != registry {
        return false;
    }
    p_repo.is_empty()
        || repository == p_repo
        || repository
            .strip_prefix(p_repo)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks one FROM against the target `target` with prefixes `allowed`.
pub fn check_parent(from: &str, target: &str, allowed: &[String]) -> Result<Parent, PolicyError> {
    let from = from.trim();
    if from == "scratch" {
        return Ok(Parent::Scratch);
    }
    let reference: Reference = from.parse().map_err(|source| PolicyError::Unparsable {
        from: from.to_string(),
        source,
    })?;
    let registry = reference.registry.to_ascii_lowercase();
    if allowed
        .iter()
        .any(|p| prefix_matches(p, &registry, &reference.repository))
    {
        Ok(Parent::Image(reference))
    } else {
        Err(PolicyError::NotAllowed {
            from: from.to_string(),
            resolved: format!("{}/{}", reference.registry, reference.repository),
            target: target.to_string(),
            allowed: allowed.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec![
            "registry.example/base/".to_string(),
            "127.0.0.1:5000".to_string(),
            "docker.io/library/busybox".to_string(),
        ]
    }

    fn ok(from: &str) -> bool {
        check_parent(from, "t", &allowed()).is_ok()
    }

    #[test]
    fn scratch_is_always_allowed() {
        assert_eq!(check_parent("scratch", "t", &[]), Ok(Parent::Scratch));
    }

    #[test]
    fn prefixes_match_at_path_boundaries() {
        assert!(ok("registry.example/base/fedora:40"));
        assert!(ok(&format!(
            "registry.example/base/fedora/minimal@sha256:{}",
            "a".repeat(64)
        )));
        assert!(!ok("registry.example/basement/fedora"));
        assert!(!ok("registry.example/other"));
        assert!(!ok("registry.example.evil/base/fedora"));
        // a whole registry
        assert!(ok("127.0.0.1:5000/anything/at/all:tag"));
        assert!(!ok("127.0.0.1:5001/x"));
        // a single repository
        assert!(ok("busybox"));
        assert!(ok("docker.io/library/busybox:1.36"));
        assert!(!ok("busybox2"));
        assert!(!ok("docker.io/library/alpine"));
    }

    #[test]
    fn registry_names_compare_case_insensitively() {
        let allowed = vec!["Registry.Example/base".to_string()];
        assert!(check_parent("registry.example/base/x", "t", &allowed).is_ok());
    }

    #[test]
    fn refusals_name_the_target_and_its_prefixes() {
        let err = check_parent("quay.io/evil/image", "f40", &allowed()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("quay.io/evil/image")
                && msg.contains("f40")
                && msg.contains("registry.example/base/"),
            "{msg}"
        );
        let err = check_parent("x", "f40", &[]).unwrap_err();
        assert!(err.to_string().contains("none"));
        assert!(matches!(
            check_parent("Bad//Ref", "t", &allowed()),
            Err(PolicyError::Unparsable { .. })
        ));
        // an empty prefix allows nothing, rather than everything
        assert!(check_parent("x", "t", &[" ".to_string()]).is_err());
    }
}
