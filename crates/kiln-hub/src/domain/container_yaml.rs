//! `container.yaml`: the subset of OSBS's format kiln reads.
//!
//! - `tags: [a, b]`: additional tags for regular builds;
//! - `platforms: {only: [...], not: [...]}`, each a list or a single string;
//! - `autorebuild: true|false`: whether the image takes automatic rebuilds
//!   when its tag does (unset: it does);
//! - everything else (`compose:`, `image_build_method:`, `remote_source:`, …)
//!   is tolerated and ignored, so files written for OSBS load unchanged.
//!
//! YAML is read with `yaml_serde`, the serde-yaml fork maintained by the YAML
//! organisation (pure Rust parser): `serde_yaml` is archived, `serde_yml` is
//! unmaintained with unsoundness advisories, `serde_norway` has had no release
//! since 2024, and `yaml-rust2` has no serde support.

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerYaml {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub platforms: Platforms,
    #[serde(default)]
    pub autorebuild: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Platforms {
    #[serde(default, deserialize_with = "one_or_many")]
    pub only: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub not: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Nothing(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Nothing(()) => Vec::new(),
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContainerYamlError {
    #[error("container.yaml: {0}")]
    Syntax(String),
    #[error("container.yaml: tag {tag:?}: {source}")]
    Tag {
        tag: String,
        source: kiln_oci::NameError,
    },
}

impl ContainerYaml {
    /// Parses the file's text; an empty file (or one holding only comments)
    /// is the default.
    pub fn parse(text: &str) -> Result<Self, ContainerYamlError> {
        let doc: Option<ContainerYaml> =
            yaml_serde::from_str(text).map_err(|e| ContainerYamlError::Syntax(e.to_string()))?;
        let doc = doc.unwrap_or_default();
        for tag in &doc.tags {
            kiln_oci::validate_tag(tag).map_err(|source| ContainerYamlError::Tag {
                tag: tag.clone(),
                source,
            })?;
        }
        Ok(doc)
    }
}

impl Platforms {
    /// The platforms to build among those the service offers: `only` narrows
    /// (when given), `not` removes. Order follows `available`.
    pub fn select<'a>(&self, available: &'a [String]) -> Vec<&'a str> {
        available
            .iter()
            .filter(|p| self.only.is_empty() || self.only.contains(p))
            .filter(|p| !self.not.contains(p))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tags_and_platforms_ignoring_the_rest() {
        let y = ContainerYaml::parse(
            "compose:\n  packages: [a]\n  pulp_repos: true\ntags:\n  - stable\n  - \"2\"\nplatforms:\n  only: [x86_64, aarch64]\n  not: aarch64\nimage_build_method: imagebuilder\n",
        )
        .unwrap();
        assert_eq!(y.tags, ["stable", "2"]);
        assert_eq!(y.platforms.only, ["x86_64", "aarch64"]);
        assert_eq!(y.platforms.not, ["aarch64"]);
        assert_eq!(y.autorebuild, None);
    }

    #[test]
    fn autorebuild_is_a_boolean() {
        let on = ContainerYaml::parse("autorebuild: true\n").unwrap();
        assert_eq!(on.autorebuild, Some(true));
        let off = ContainerYaml::parse("autorebuild: false\n").unwrap();
        assert_eq!(off.autorebuild, Some(false));
        let err = ContainerYaml::parse("autorebuild: sometimes\n").unwrap_err();
        assert!(err.to_string().contains("autorebuild"), "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_the_default() {
        assert_eq!(ContainerYaml::parse("").unwrap(), ContainerYaml::default());
        assert_eq!(
            ContainerYaml::parse("# nothing\n").unwrap(),
            ContainerYaml::default()
        );
        assert_eq!(
            ContainerYaml::parse("platforms:\n  only:\n").unwrap(),
            ContainerYaml::default()
        );
    }

    #[test]
    fn errors_say_where() {
        let err = ContainerYaml::parse("tags: [a\n").unwrap_err();
        assert!(
            matches!(&err, ContainerYamlError::Syntax(m) if m.contains("line")),
            "{err}"
        );
        let err = ContainerYaml::parse("tags: {a: b}\n").unwrap_err();
        assert!(err.to_string().starts_with("container.yaml:"), "{err}");
        let err = ContainerYaml::parse("tags: [\"no spaces\"]\n").unwrap_err();
        assert!(matches!(err, ContainerYamlError::Tag { .. }));
    }

    #[test]
    fn platform_selection() {
        let available: Vec<String> = ["x86_64", "aarch64", "s390x"].map(String::from).to_vec();
        assert_eq!(
            Platforms::default().select(&available),
            ["x86_64", "aarch64", "s390x"]
        );
        let p = Platforms {
            only: vec!["s390x".into(), "x86_64".into(), "ppc64le".into()],
            not: vec!["s390x".into()],
        };
        assert_eq!(p.select(&available), ["x86_64"]);
        let p = Platforms {
            only: vec![],
            not: vec!["aarch64".into()],
        };
        assert_eq!(p.select(&available), ["x86_64", "s390x"]);
    }
}
