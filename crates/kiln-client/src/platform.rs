//! Platforms (`os/arch[/variant]`) and choosing an index entry for one.
//!
//! kiln-oci keeps an index descriptor's `platform` as raw JSON; the few
//! fields matching needs are read here.

use std::fmt;
use std::str::FromStr;

use kiln_oci::Descriptor;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform this process runs on, in OCI's names (`linux/amd64` on
    /// x86-64 Linux).
    pub fn host() -> Platform {
        let (arch, variant) = oci_arch(std::env::consts::ARCH);
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Reads the `platform` object of an index descriptor.
    pub fn of_descriptor(d: &Descriptor) -> Option<Platform> {
        let p = d.platform.as_ref()?;
        let field = |name: &str| p.get(name).and_then(|v| v.as_str());
        Some(Platform {
            os: field("os")?.to_owned(),
            architecture: field("architecture")?.to_owned(),
            variant: field("variant")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        })
    }

    /// The variant, with the architecture's default filled in so that
    /// `arm64` and `arm64/v8` compare equal (as containerd's matcher does).
    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            (_, Some(v)) => Some(v),
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, None) => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("platform {0:?} is not of the form os/arch[/variant]")]
pub struct PlatformError(String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.to_owned()));
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

/// Rust's `std::env::consts::ARCH` → OCI (Go) architecture and variant.
pub fn oci_arch(rust_arch: &str) -> (&str, Option<&'static str>) {
    match rust_arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        "loongarch64" => ("loong64", None),
        // s390x, riscv64, mips64 (big endian) are spelled the same.
        other => (other, None),
    }
}

/// The index entry for `wanted`: same os and architecture; the variant must
/// match when one is wanted, else an entry without one is preferred.
pub fn choose<'a>(manifests: &'a [Descriptor], wanted: &Platform) -> Option<&'a Descriptor> {
    let candidates = manifests.iter().filter_map(|d| {
        let p = Platform::of_descriptor(d)?;
        (p.os == wanted.os && p.architecture == wanted.architecture).then_some((d, p))
    });
    let mut fallback = None;
    for (d, p) in candidates {
        if wanted.variant.is_some() {
            if p.normalized_variant() == wanted.normalized_variant() {
                return Some(d);
            }
        } else if p.variant.is_none() || p.normalized_variant() == wanted.normalized_variant() {
            return Some(d);
        } else if fallback.is_none() {
            fallback = Some(d);
        }
    }
    fallback
}

/// What an index offers, for error messages.
pub fn available(manifests: &[Descriptor]) -> Vec<String> {
    manifests
        .iter()
        .map(|d| match Platform::of_descriptor(d) {
            Some(p) => p.to_string(),
            None => format!("{} (no platform)", d.digest),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::{Digest, media};

    fn desc(n: u8, platform: Option<serde_json::Value>) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: Digest::sha256_of(&[n]),
            size: 1,
            urls: None,
            annotations: None,
            artifact_type: None,
            platform,
        }
    }

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Option<serde_json::Value> {
        let mut v = serde_json::json!({"os": os, "architecture": arch});
        if let Some(variant) = variant {
            v["variant"] = variant.into();
        }
        Some(v)
    }

    #[test]
    fn parses_and_prints() {
        let x: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(x, Platform::new("linux", "arm64", Some("v8")));
        assert_eq!(x.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn host_uses_oci_names() {
        assert_eq!(oci_arch("x86_64"), ("amd64", None));
        assert_eq!(oci_arch("aarch64"), ("arm64", None));
        assert_eq!(oci_arch("s390x"), ("s390x", None));
        let h = Platform::host();
        assert_eq!(h.os, std::env::consts::OS);
        assert_ne!(h.architecture, "x86_64");
    }

    #[test]
    fn chooses_by_os_arch_and_variant() {
        let index = vec![
            desc(0, None),
            desc(1, p("unknown", "unknown", None)),
            desc(2, p("linux", "arm", Some("v6"))),
            desc(3, p("linux", "arm", Some("v7"))),
            desc(4, p("linux", "arm64", None)),
            desc(5, p("linux", "amd64", None)),
        ];
        let pick = |s: &str| choose(&index, &s.parse().unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(index[5].digest.clone()));
        assert_eq!(pick("linux/arm64/v8"), Some(index[4].digest.clone()));
        assert_eq!(pick("linux/arm64"), Some(index[4].digest.clone()));
        assert_eq!(pick("linux/arm/v6"), Some(index[2].digest.clone()));
        assert_eq!(pick("linux/arm"), Some(index[3].digest.clone()));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("windows/amd64"), None);
        let listed = available(&index);
        assert!(listed.contains(&"linux/arm/v7".to_owned()));
        assert!(listed[0].ends_with("(no platform)"));
    }

    #[test]
    fn without_a_wanted_variant_any_variant_will_do() {
        let index = vec![desc(0, p("linux", "amd64", Some("v3")))];
        assert!(choose(&index, &"linux/amd64".parse().unwrap()).is_some());
        assert!(choose(&index, &"linux/amd64/v2".parse().unwrap()).is_none());
    }
}
