//! The tags a build pushes, and where.
//!
//! - every build gets one unique tag: `{version}-{release}` (the NVR's, as
//!   koji/OSBS push it); a scratch build has no NVR of its own, so its unique
//!   tag is `scratch-{build id}-{YYYYMMDDhhmmss}` (OSBS: `{target}-{random}-{timestamp}`;
//!   the build id is unique already, so no randomness is needed);
//! - regular builds also get the floating `{version}` and `latest`, and the
//!   additional tags of `container.yaml`;
//! - isolated builds (hotfixes of an older release) get the unique tag only,
//!   so they never move a floating tag; scratch builds likewise.
//!
//! The repository is the `name` label, under the target's registry; a
//! registry given as `host:port/prefix` puts it under `prefix/`.

use crate::domain::time::{TimeOutOfRange, compact_stamp};
use crate::model::Nvr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildKind {
    Regular,
    Scratch,
    Isolated,
}

impl BuildKind {
    /// Scratch wins: a request with both is refused earlier (`check_flags`).
    pub fn from_flags(scratch: bool, isolated: bool) -> Self {
        match (scratch, isolated) {
            (true, _) => BuildKind::Scratch,
            (false, true) => BuildKind::Isolated,
            (false, false) => BuildKind::Regular,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TagInput<'a> {
    /// The target's registry: `host[:port]` or `host[:port]/prefix`.
    pub registry: &'a str,
    /// The `name` label.
    pub repository: &'a str,
    pub nvr: &'a Nvr,
    pub kind: BuildKind,
    pub build_id: i64,
    /// When the build was submitted (unix seconds): the scratch tag's stamp.
    pub submitted_at: i64,
    /// `tags:` of container.yaml.
    pub additional: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPlan {
    /// `host:port`
    pub registry: String,
    /// `prefix/fedora/httpd`
    pub repository: String,
    pub unique: String,
    /// Floating and additional tags, in push order, without duplicates.
    pub floating: Vec<String>,
}

impl TagPlan {
    /// Every tag, the unique one first.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.unique.as_str()).chain(self.floating.iter().map(String::as_str))
    }

    /// `host:port/repo:tag` for every tag, the unique one first.
    pub fn references(&self) -> Vec<String> {
        self.tags()
            .map(|t| format!("{}/{}:{t}", self.registry, self.repository))
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    #[error("target registry {0:?} is empty or malformed (want host[:port][/prefix])")]
    Registry(String),
    #[error("repository {repository:?}: {source}")]
    Repository {
        repository: String,
        source: kiln_oci::NameError,
    },
    #[error("tag {tag:?} ({origin}): {source}")]
    Tag {
        tag: String,
        origin: &'static str,
        source: kiln_oci::NameError,
    },
    #[error(transparent)]
    Time(#[from] TimeOutOfRange),
}

pub fn plan_tags(input: &TagInput<'_>) -> Result<TagPlan, TagError> {
    let registry_spec = input.registry.trim_end_matches('/');
    let (registry, prefix) = match registry_spec.split_once('/') {
        Some((host, prefix)) => (host, Some(prefix)),
        None => (registry_spec, None),
    };
    if registry.is_empty() || registry.contains(char::is_whitespace) {
        return Err(TagError::Registry(input.registry.to_string()));
    }
    let repository = match prefix {
        Some(p) => format!("{p}/{}", input.repository),
        None => input.repository.to_string(),
    };
    kiln_oci::validate_repository(&repository).map_err(|source| TagError::Repository {
        repository: repository.clone(),
        source,
    })?;

    let check = |tag: String, origin: &'static str| -> Result<String, TagError> {
        kiln_oci::validate_tag(&tag)
            .map(|()| tag.clone())
            .map_err(|source| TagError::Tag {
                tag,
                origin,
                source,
            })
    };
    let unique = match input.kind {
        BuildKind::Scratch => check(
            format!(
                "scratch-{}-{}",
                input.build_id,
                compact_stamp(input.submitted_at)?
            ),
            "scratch unique tag",
        )?,
        BuildKind::Regular | BuildKind::Isolated => check(
            format!("{}-{}", input.nvr.version, input.nvr.release),
            "{version}-{release}",
        )?,
    };
    let mut floating: Vec<String> = Vec::new();
    if input.kind == BuildKind::Regular {
        let candidates = [
            (input.nvr.version.clone(), "{version}"),
            ("latest".to_string(), "latest"),
        ]
        .into_iter()
        .chain(
            input
                .additional
                .iter()
                .map(|t| (t.clone(), "container.yaml tags")),
        );
        for (tag, origin) in candidates {
            let tag = check(tag, origin)?;
            if tag != unique && !floating.contains(&tag) {
                floating.push(tag);
            }
        }
    }
    Ok(TagPlan {
        registry: registry.to_string(),
        repository,
        unique,
        floating,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvr() -> Nvr {
        Nvr {
            name: "httpd-container".into(),
            version: "2.4".into(),
            release: "3".into(),
        }
    }

    fn input<'a>(nvr: &'a Nvr, kind: BuildKind, additional: &'a [String]) -> TagInput<'a> {
        TagInput {
            registry: "127.0.0.1:5000",
            repository: "fedora/httpd",
            nvr,
            kind,
            build_id: 42,
            submitted_at: 1_714_564_800,
            additional,
        }
    }

    #[test]
    fn regular_builds_get_unique_floating_and_additional_tags() {
        let n = nvr();
        let extra = vec![
            "stable".to_string(),
            "latest".to_string(),
            "2.4".to_string(),
        ];
        let plan = plan_tags(&input(&n, BuildKind::Regular, &extra)).unwrap();
        assert_eq!(plan.unique, "2.4-3");
        assert_eq!(plan.floating, ["2.4", "latest", "stable"]);
        assert_eq!(
            plan.references(),
            [
                "127.0.0.1:5000/fedora/httpd:2.4-3",
                "127.0.0.1:5000/fedora/httpd:2.4",
                "127.0.0.1:5000/fedora/httpd:latest",
                "127.0.0.1:5000/fedora/httpd:stable",
            ]
        );
    }

    #[test]
    fn isolated_builds_move_no_floating_tag() {
        let n = nvr();
        let extra = vec!["stable".to_string()];
        let plan = plan_tags(&input(&n, BuildKind::Isolated, &extra)).unwrap();
        assert_eq!(plan.tags().collect::<Vec<_>>(), ["2.4-3"]);
    }

    #[test]
    fn scratch_builds_get_a_unique_scratch_tag_only() {
        let n = nvr();
        let extra = vec!["stable".to_string()];
        let plan = plan_tags(&input(&n, BuildKind::Scratch, &extra)).unwrap();
        assert_eq!(
            plan.tags().collect::<Vec<_>>(),
            ["scratch-42-20240501120000"]
        );
    }

    #[test]
    fn registry_prefix_goes_before_the_repository() {
        let n = nvr();
        let mut i = input(&n, BuildKind::Regular, &[]);
        i.registry = "registry.example:443/builds/";
        let plan = plan_tags(&i).unwrap();
        assert_eq!(
            (plan.registry.as_str(), plan.repository.as_str()),
            ("registry.example:443", "builds/fedora/httpd")
        );
        i.registry = "";
        assert!(matches!(plan_tags(&i), Err(TagError::Registry(_))));
        i.registry = "r/Bad";
        assert!(matches!(plan_tags(&i), Err(TagError::Repository { .. })));
    }

    #[test]
    fn invalid_additional_tags_are_named() {
        let n = nvr();
        let extra = vec!["ok".to_string(), "bad tag".to_string()];
        let err = plan_tags(&input(&n, BuildKind::Regular, &extra)).unwrap_err();
        assert!(
            matches!(&err, TagError::Tag { tag, origin: "container.yaml tags", .. } if tag == "bad tag")
        );
        assert!(err.to_string().contains("bad tag"));
    }

    #[test]
    fn kind_from_flags() {
        assert_eq!(BuildKind::from_flags(false, false), BuildKind::Regular);
        assert_eq!(BuildKind::from_flags(false, true), BuildKind::Isolated);
        assert_eq!(BuildKind::from_flags(true, false), BuildKind::Scratch);
        assert_eq!(BuildKind::from_flags(true, true), BuildKind::Scratch);
    }
}
