//! Labels added to every image before the build, as atomic-reactor's
//! `add_labels_in_dockerfile` does: they record when, from what and for
//! which architecture the image was built.

use std::collections::BTreeMap;

use crate::domain::time::{TimeOutOfRange, rfc3339};

#[derive(Debug, Clone)]
pub struct AutoLabelInput<'a> {
    /// Build start, unix seconds.
    pub build_time: i64,
    /// The resolved commit.
    pub commit: &'a str,
    /// The dist-git URL; credentials in it are dropped.
    pub vcs_url: &'a str,
    /// OCI (`amd64`) or RPM (`x86_64`) spelling; recorded in RPM spelling.
    pub architecture: &'a str,
    /// The release when the hub chose it (no `release` label in the Dockerfile).
    pub release: Option<&'a str>,
}

pub fn automatic_labels(
    input: &AutoLabelInput<'_>,
) -> Result<BTreeMap<String, String>, TimeOutOfRange> {
    let mut labels = BTreeMap::new();
    labels.insert("build-date".to_string(), rfc3339(input.build_time)?);
    labels.insert("vcs-ref".to_string(), input.commit.to_string());
    labels.insert("vcs-url".to_string(), without_credentials(input.vcs_url));
    labels.insert("vcs-type".to_string(), "git".to_string());
    labels.insert(
        "architecture".to_string(),
        rpm_arch(input.architecture).to_string(),
    );
    if let Some(r) = input.release {
        labels.insert("release".to_string(), r.to_string());
    }
    Ok(labels)
}

/// The RPM name of an OCI architecture (`amd64` → `x86_64`); others unchanged.
pub fn rpm_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i686",
        "arm" => "armv7hl",
        other => other,
    }
}

/// `https://user:token@host/x` → `https://host/x`: labels are public.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_atomic_reactor_labels() {
        let labels = automatic_labels(&AutoLabelInput {
            build_time: 1_714_564_800,
            commit: "0123abcd",
            vcs_url: "https://alice:secret@git.example/rpms/httpd.git",
            architecture: "amd64",
            release: Some("4"),
        })
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("architecture", "x86_64"),
            ("build-date", "2024-05-01T12:00:00Z"),
            ("release", "4"),
            ("vcs-ref", "0123abcd"),
            ("vcs-type", "git"),
            ("vcs-url", "https://git.example/rpms/httpd.git"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, want);
    }

    #[test]
    fn release_only_when_chosen_by_the_hub() {
        let labels = automatic_labels(&AutoLabelInput {
            build_time: 0,
            commit: "c",
            vcs_url: "/srv/git/x",
            architecture: "s390x",
            release: None,
        })
        .unwrap();
        assert!(!labels.contains_key("release"));
        assert_eq!(labels["architecture"], "s390x");
        assert_eq!(labels["vcs-url"], "/srv/git/x");
    }

    #[test]
    fn credentials_are_dropped_only_from_the_authority() {
        assert_eq!(without_credentials("file:///srv/a@b"), "file:///srv/a@b");
        assert_eq!(without_credentials("http://u@h:8080"), "http://h:8080");
        assert_eq!(without_credentials("git@host:repo"), "git@host:repo");
    }
}
