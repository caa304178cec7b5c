//! Image references: `[registry/]name[:tag][@digest]`, with Docker Hub's
//! defaults for short names.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, validate_repository, validate_tag};

pub const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {reference:?}: {source}")]
    Name {
        reference: String,
        source: NameError,
    },
    #[error("image reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// The tag or digest to ask a registry for; `latest` when neither is given.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = d.parse().map_err(|source| ReferenceError::Digest {
                    reference: s.to_string(),
                    source,
                })?;
                (r, Some(d))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let (registry, repository) = match path.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), path.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let name_err = |source| ReferenceError::Name {
            reference: s.to_string(),
            source,
        };
        validate_repository(&repository).map_err(name_err)?;
        if let Some(t) = &tag {
            validate_tag(t).map_err(name_err)?;
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", None)
        );
        let r: Reference = "127.0.0.1:5000/a/b:1.0".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("1.0"))
        );
        let d = Digest::sha256_of(b"x");
        let r: Reference = format!("localhost/x@{d}").parse().unwrap();
        assert_eq!(r.digest, Some(d.clone()));
        assert_eq!(r.manifest_ref(), d.to_string());
        assert_eq!(r.to_string(), format!("localhost/x@{d}"));
    }

    #[test]
    fn rejects_bad_references() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert!("localhost/UPPER".parse::<Reference>().is_err());
        assert!("localhost/x:bad/tag".parse::<Reference>().is_err());
        assert!("x@sha256:00".parse::<Reference>().is_err());
    }
}
