//! Parsing and validating image manifests and indexes (OCI and Docker v2
//! schema 2) the way a registry must before it accepts one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// The union of the fields of the four manifest kinds: which ones must be
/// present is checked by [`Manifest::parse`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl ManifestKind {
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => media::OCI_MANIFEST,
            ManifestKind::OciIndex => media::OCI_INDEX,
            ManifestKind::DockerManifest => media::DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => media::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn from_media_type(mt: &str) -> Option<ManifestKind> {
        match mt {
            media::OCI_MANIFEST => Some(ManifestKind::OciManifest),
            media::OCI_INDEX => Some(ManifestKind::OciIndex),
            media::DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            media::DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest schemaVersion must be 2, found {0:?}")]
    SchemaVersion(Option<i64>),
    #[error(
        "manifest media type is unknown: neither the mediaType field nor the Content-Type header names a supported manifest type (got {0:?})"
    )]
    UnknownMediaType(String),
    #[error("manifest mediaType field {field:?} does not match the Content-Type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("{kind} requires the field {field:?}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("{kind} must not have the field {field:?}")]
    UnexpectedField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("descriptor {digest} has a negative size")]
    NegativeSize { digest: Digest },
}

/// A parsed, validated manifest or index.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parses `body`, using `content_type` (the request's header, if any) when
    /// the body does not name its own media type.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion(raw.schema_version));
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        let kind = match (&raw.media_type, header) {
            (Some(field), Some(header))
                if field != header && ManifestKind::from_media_type(header).is_some() =>
            {
                return Err(ManifestError::MediaTypeMismatch {
                    field: field.clone(),
                    header: header.to_string(),
                });
            }
            (Some(field), _) => ManifestKind::from_media_type(field),
            (None, Some(header)) => ManifestKind::from_media_type(header),
            // OCI lets the field be absent; the shape decides.
            (None, None) => Some(if raw.manifests.is_some() {
                ManifestKind::OciIndex
            } else {
                ManifestKind::OciManifest
            }),
        };
        let kind = kind.ok_or_else(|| {
            ManifestError::UnknownMediaType(
                raw.media_type
                    .clone()
                    .or(header.map(str::to_string))
                    .unwrap_or_default(),
            )
        })?;
        let name = match kind {
            ManifestKind::OciManifest => "an OCI image manifest",
            ManifestKind::OciIndex => "an OCI image index",
            ManifestKind::DockerManifest => "a Docker v2 schema 2 manifest",
            ManifestKind::DockerManifestList => "a Docker manifest list",
        };
        if kind.is_index() {
            if raw.manifests.is_none() {
                return Err(ManifestError::MissingField {
                    kind: name,
                    field: "manifests",
                });
            }
            if raw.config.is_some() {
                return Err(ManifestError::UnexpectedField {
                    kind: name,
                    field: "config",
                });
            }
        } else {
            if raw.config.is_none() {
                return Err(ManifestError::MissingField {
                    kind: name,
                    field: "config",
                });
            }
            if raw.layers.is_none() {
                return Err(ManifestError::MissingField {
                    kind: name,
                    field: "layers",
                });
            }
            if raw.manifests.is_some() {
                return Err(ManifestError::UnexpectedField {
                    kind: name,
                    field: "manifests",
                });
            }
        }
        let m = Manifest {
            kind,
            artifact_type: raw.artifact_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            annotations: raw.annotations,
        };
        for d in m
            .config
            .iter()
            .chain(&m.layers)
            .chain(&m.manifests)
            .chain(&m.subject)
        {
            if d.size < 0 {
                return Err(ManifestError::NegativeSize {
                    digest: d.digest.clone(),
                });
            }
        }
        Ok(m)
    }

    /// Blobs that must already be in the repository: the config and the
    /// layers that are not foreign (layers with `urls` live elsewhere).
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty())),
        )
    }

    /// The artifact type a referrers listing reports for this manifest.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| match self.kind {
            ManifestKind::OciManifest => self.config.as_ref().map(|c| c.media_type.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn oci_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":3}},{{"mediaType":"{}","digest":"{}","size":3,"urls":["http://x"]}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            d(1),
            media::OCI_LAYER_GZIP,
            d(2),
            media::DOCKER_FOREIGN_LAYER,
            d(3)
        );
        let m = Manifest::parse(body.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some(media::OCI_CONFIG)
        );
    }

    #[test]
    fn media_type_from_header_when_field_absent() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5}}]}}"#,
            media::OCI_MANIFEST,
            d(4)
        );
        let m = Manifest::parse(body.as_bytes(), Some(media::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.kind, ManifestKind::DockerManifestList);
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.kind, ManifestKind::OciIndex);
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            Manifest::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(Some(1)))
        ));
        assert!(matches!(
            Manifest::parse(
                br#"{"schemaVersion":2,"mediaType":"text/plain","layers":[]}"#,
                None
            ),
            Err(ManifestError::UnknownMediaType(_))
        ));
        let mismatch = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::OCI_INDEX
        );
        assert!(matches!(
            Manifest::parse(mismatch.as_bytes(), Some(media::OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_config = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#,
            media::OCI_MANIFEST
        );
        assert!(matches!(
            Manifest::parse(no_config.as_bytes(), None),
            Err(ManifestError::MissingField {
                field: "config",
                ..
            })
        ));
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"sha256:zz","size":1}},"layers":[]}}"#,
            media::OCI_MANIFEST
        );
        assert!(matches!(
            Manifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
    }
}
