//! The identity of an image from its Dockerfile labels, read the way
//! atomic-reactor reads it for koji: the NVR's name is the koji package name
//! (`com.redhat.component`), while the `name` label is the image repository
//! (`fedora/httpd`) the result is pushed to.

use std::collections::BTreeMap;

use crate::model::Nvr;

/// Labels tried for each part, current name first, then the legacy spellings
/// OSBS still accepts.
pub const COMPONENT_LABELS: &[&str] = &["com.redhat.component", "component", "BZComponent"];
pub const NAME_LABELS: &[&str] = &["name", "Name"];
pub const VERSION_LABELS: &[&str] = &["version", "Version"];
pub const RELEASE_LABELS: &[&str] = &["release", "Release"];

/// What the labels say about the image, before a release is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIdentity {
    /// The koji package name: the N of the NVR.
    pub component: String,
    /// The image repository (`name` label), e.g. `fedora/httpd`.
    pub repository: String,
    pub version: String,
    /// `None` when the Dockerfile sets no release: the hub picks the next free one.
    pub release: Option<String>,
}

impl ImageIdentity {
    pub fn nvr(&self, release: &str) -> Nvr {
        Nvr {
            name: self.component.clone(),
            version: self.version.clone(),
            release: release.to_string(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("the Dockerfile lacks required label(s): {}", .missing.join("; "))]
    Missing { missing: Vec<String> },
    #[error("label {label}={value:?}: {reason}")]
    Invalid {
        label: String,
        value: String,
        reason: String,
    },
}

/// The first non-empty value among `names`, with the label it came from.
fn find<'a>(
    labels: &'a BTreeMap<String, String>,
    names: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|n| {
        labels
            .get(*n)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(|v| (*n, v))
    })
}

fn describe(names: &[&str]) -> String {
    match names {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (or {})", rest.join(", ")),
        [] => String::new(),
    }
}

/// Reads and validates the NVR labels of the final stage. Every missing
/// required label is listed at once, so one edit fixes the Dockerfile.
pub fn identity_from_labels(
    labels: &BTreeMap<String, String>,
) -> Result<ImageIdentity, LabelError> {
    let component = find(labels, COMPONENT_LABELS);
    let name = find(labels, NAME_LABELS);
    let version = find(labels, VERSION_LABELS);
    let release = find(labels, RELEASE_LABELS);

    let mut missing = Vec::new();
    for (found, names) in [
        (component.is_some(), COMPONENT_LABELS),
        (name.is_some(), NAME_LABELS),
        (version.is_some(), VERSION_LABELS),
    ] {
        if !found {
            missing.push(describe(names));
        }
    }
    let (Some(component), Some(name), Some(version)) = (component, name, version) else {
        return Err(LabelError::Missing { missing });
    };

    validate_nvr_name(component.1).map_err(|reason| invalid(component, reason))?;
    kiln_oci::validate_repository(name.1).map_err(|e| invalid(name, e.to_string()))?;
    validate_version_or_release(version.1).map_err(|reason| invalid(version, reason))?;
    if let Some(r) = release {
        validate_version_or_release(r.1).map_err(|reason| invalid(r, reason))?;
    }
    Ok(ImageIdentity {
        component: component.1.to_string(),
        repository: name.1.to_string(),
        version: version.1.to_string(),
        release: release.map(|r| r.1.to_string()),
    })
}

fn invalid((label, value): (&str, &str), reason: String) -> LabelError {
    LabelError::Invalid {
        label: label.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// koji package names: letters, digits and `._+-`, starting with a letter or
/// digit. Dashes are allowed here (koji splits an NVR from the right).
pub fn validate_nvr_name(name: &str) -> Result<(), String> {
    if name.len() > 200 {
        return Err("longer than 200 characters".into());
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok {
        return Err("must start with a letter or digit".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits and ._+- are)"
        ));
    }
    Ok(())
}

/// Versions and releases: no `-` (koji splits the NVR on it), and only
/// characters an OCI tag accepts, since `{version}-{release}` is pushed as a tag.
pub fn validate_version_or_release(value: &str) -> Result<(), String> {
    if value.contains('-') {
        return Err("must not contain '-' (koji splits name-version-release on it)".into());
    }
    if value.len() > 63 {
        return Err(
            "longer than 63 characters (the {version}-{release} tag must fit in 128)".into(),
        );
    }
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok {
        return Err("must start with a letter or digit".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_')))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits, '.' and '_' are: it becomes part of an image tag)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_component_name_version_release() {
        let id = identity_from_labels(&labels(&[
            ("com.redhat.component", "httpd-container"),
            ("name", "fedora/httpd"),
            ("version", "2.4"),
            ("release", "3.fc40"),
        ]))
        .unwrap();
        assert_eq!(id.component, "httpd-container");
        assert_eq!(id.repository, "fedora/httpd");
        assert_eq!(id.release.as_deref(), Some("3.fc40"));
        assert_eq!(id.nvr("3.fc40").to_string(), "httpd-container-2.4-3.fc40");
    }

    #[test]
    fn component_label_falls_back_and_prefers_the_current_name() {
        let id = identity_from_labels(&labels(&[
            ("component", "old"),
            ("name", "x"),
            ("version", "1"),
        ]))
        .unwrap();
        assert_eq!(id.component, "old");
        assert_eq!(id.release, None);
        let id = identity_from_labels(&labels(&[
            ("component", "old"),
            ("com.redhat.component", "new"),
            ("BZComponent", "legacy"),
            ("Name", "x"),
            ("Version", "1"),
        ]))
        .unwrap();
        assert_eq!(id.component, "new");
    }

    #[test]
    fn lists_every_missing_label() {
        let err = identity_from_labels(&labels(&[("version", "1")])).unwrap_err();
        let LabelError::Missing { missing } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(missing.len(), 2);
        assert!(missing[0].starts_with("com.redhat.component (or component"));
        assert_eq!(missing[1], "name (or Name)");
        assert!(err.to_string().contains("com.redhat.component"));
    }

    #[test]
    fn empty_labels_count_as_missing() {
        let err = identity_from_labels(&labels(&[
            ("com.redhat.component", "c"),
            ("name", "x"),
            ("version", "  "),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            LabelError::Missing {
                missing: vec!["version (or Version)".into()]
            }
        );
    }

    #[test]
    fn rejects_dashes_in_version_and_release() {
        for (label, value) in [("version", "1-2"), ("release", "1-1")] {
            let mut l = labels(&[
                ("com.redhat.component", "c"),
                ("name", "x"),
                ("version", "1"),
            ]);
            l.insert(label.into(), value.into());
            match identity_from_labels(&l) {
                Err(LabelError::Invalid {
                    label: got, reason, ..
                }) => {
                    assert_eq!(got, label);
                    assert!(reason.contains("'-'"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rejects_bad_names_and_repositories() {
        for (label, value) in [
            ("com.redhat.component", "-lead"),
            ("com.redhat.component", "a b"),
            ("com.redhat.component", "a/b"),
            ("name", "Fedora/HTTPD"),
            ("name", "a//b"),
            ("version", "1+2"),
            ("version", ".1"),
            ("version", &"9".repeat(64)),
        ] {
            let mut l = labels(&[
                ("com.redhat.component", "c"),
                ("name", "x"),
                ("version", "1"),
            ]);
            l.insert(label.into(), value.into());
            let err = identity_from_labels(&l).unwrap_err();
            assert!(
                matches!(&err, LabelError::Invalid { label: got, .. } if got == label),
                "{label}={value}: {err:?}"
            );
        }
    }

    #[test]
    fn name_rules() {
        assert!(validate_nvr_name("python3-django_2.x+extra").is_ok());
        assert!(validate_nvr_name("").is_err());
        assert!(validate_nvr_name(&"a".repeat(201)).is_err());
        assert!(validate_version_or_release("1.0_beta").is_ok());
        assert!(validate_version_or_release("").is_err());
    }
}
