//! What a build is asked to do: the `kiln build` flags as data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_oci::{Digest, Reference};

use crate::image::Format;
use crate::output::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network (buildah's and BuildKit's default for RUN).
    #[default]
    Host,
    None,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" | "default" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => Err(format!("unknown network mode {other:?}: use host or none")),
        }
    }
}

/// Layer compression (`--compression`): the layer engine's own choice.
pub use kiln_layer::Compression;

/// When to ask the registry for a base image again (buildah's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Use the local copy when there is one.
    #[default]
    Missing,
    /// Resolve the reference at the registry on every build.
    Always,
    /// Never contact a registry for base images.
    Never,
}

/// `--secret id=ID,src=PATH` (also `type=file`, `source=`, `env=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    pub id: String,
    pub source: SecretFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    File(PathBuf),
    Env(String),
}

impl std::str::FromStr for SecretSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = None;
        let mut source = None;
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("secret {s:?}: expected key=value, found {part:?}"))?;
            match k {
                "id" => id = Some(v.to_string()),
                "src" | "source" => source = Some(SecretFrom::File(v.into())),
                "env" => source = Some(SecretFrom::Env(v.to_string())),
                "type" if v == "file" || v == "env" => {}
                _ => return Err(format!("secret {s:?}: unknown key {k:?}")),
            }
        }
        let id = id.ok_or_else(|| format!("secret {s:?}: id= is required"))?;
        let source = source.unwrap_or_else(|| SecretFrom::Env(id.clone()));
        Ok(SecretSource { id, source })
    }
}

/// `--ssh ID[=SOCKET|KEY[,KEY...]]`, as `docker buildx build --ssh` and
/// buildah take it. `paths` empty (`ID` or `ID=`) means the caller's `$SSH_AUTH_SOCK`
/// (resolved by the caller, which owns the environment); a socket forwards
/// that agent, key files are served by kiln's own agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSource {
    pub id: String,
    pub paths: Vec<PathBuf>,
}

impl std::str::FromStr for SshSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, paths) = match s.split_once('=') {
            Some((id, paths)) => (id, paths.split(',').map(PathBuf::from).collect()),
            None => (s, Vec::new()),
        };
        if id.is_empty() {
            return Err(format!("ssh {s:?}: expected ID[=SOCKET|KEY[,KEY...]]"));
        }
        // `ID=` is `ID` (buildx reads both as "use $SSH_AUTH_SOCK").
        let paths: Vec<PathBuf> = if paths.len() == 1 && paths[0].as_os_str().is_empty() {
            Vec::new()
        } else {
            paths
        };
        if paths.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(format!("ssh {s:?}: empty path after '=' or ','"));
        }
        Ok(SshSource {
            id: id.to_string(),
            paths,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile; `CONTEXT/Dockerfile` (or `Containerfile`) when unset.
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub network: Network,
    pub no_cache: bool,
    pub pull: PullPolicy,
    pub format: Format,
    pub compression: Compression,
    pub secrets: Vec<SecretSource>,
    /// Agents for `RUN --mount=type=ssh` (`--ssh`), each id once.
    pub ssh: Vec<SshSource>,
    pub push: bool,
    pub tls_verify: bool,
    pub outputs: Vec<Output>,
    /// The builder's store (layers, blobs, cache).
    pub root: PathBuf,
    /// Clamp timestamps and fix `created` for reproducible images.
    pub source_date_epoch: Option<i64>,
    /// How to start the helper process that runs sandboxes and file
    /// operations: a program and the arguments that select its helper mode.
    pub helper: HelperCommand,
    /// Host files or directories bind-mounted into every RUN step and never
    /// part of a layer (`-v HOST:CONTAINER[:ro|rw]`, as buildah's; the build
    /// service injects package repositories this way).
    pub run_mounts: Vec<RunMount>,
    /// Base images replaced by other references (BuildKit's
    /// `--build-context NAME=docker-image://REF`): the image name as written
    /// in FROM, `COPY --from=` or `RUN --mount=from=` (after ARG expansion)
    /// → the reference pulled in its place. The build service rebuilds a
    /// child against its parent's new digest this way, without editing the
    /// Dockerfile; the parent recorded for the image stays the name as
    /// written.
    pub base_pins: BTreeMap<String, String>,
}

/// The pin of `pins` for the image `name`, as (key, reference to pull): a
/// key equal to `name` wins; otherwise a key naming the same image once both
/// are parsed (`busybox` = `docker.io/library/busybox:latest`), the first in
/// key order.
pub fn pinned_base<'a>(
    pins: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<(&'a str, &'a str)> {
    if let Some((key, pin)) = pins.get_key_value(name) {
        return Some((key, pin));
    }
    let wanted = normalized(name)?;
    pins.iter()
        .find(|(key, _)| normalized(key).as_ref() == Some(&wanted))
        .map(|(key, pin)| (key.as_str(), pin.as_str()))
}

/// What identifies an image reference: Docker Hub's short forms expanded,
/// and a missing tag meaning `latest` unless a digest is given.
fn normalized(reference: &str) -> Option<(String, String, Option<String>, Option<Digest>)> {
    let r: Reference = reference.parse().ok()?;
    let tag = match (r.tag, &r.digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag,
    };
    Some((r.registry, r.repository, tag, r.digest))
}

/// `-v HOST:CONTAINER[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub source: PathBuf,
    pub target: String,
    pub readonly: bool,
}

impl std::str::FromStr for RunMount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, readonly) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            _ => return Err(format!("volume {s:?}: expected HOST:CONTAINER[:ro|rw]")),
        };
        if !source.starts_with('/') || !target.starts_with('/') {
            return Err(format!("volume {s:?}: both paths must be absolute"));
        }
        Ok(RunMount {
            source: source.into(),
            target: target.to_string(),
            readonly,
        })
    }
}

#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_like_buildah() {
        let v: RunMount = "/h/repo:/etc/yum.repos.d/x.repo:ro".parse().unwrap();
        assert_eq!(v.source, PathBuf::from("/h/repo"));
        assert_eq!(v.target, "/etc/yum.repos.d/x.repo");
        assert!(v.readonly);
        assert!(!"/a:/b".parse::<RunMount>().unwrap().readonly);
        assert!("a:/b".parse::<RunMount>().is_err());
        assert!("/a:/b:zz".parse::<RunMount>().is_err());
    }

    fn pin<'a>(pins: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
        pinned_base(pins, name).map(|(_, pin)| pin)
    }

    fn pins(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pins_match_the_name_as_written() {
        let p = pins(&[(
            "127.0.0.1:8080/base/foo:latest",
            "127.0.0.1:8080/base/foo@sha256:aa",
        )]);
        assert_eq!(
            pin(&p, "127.0.0.1:8080/base/foo:latest"),
            Some("127.0.0.1:8080/base/foo@sha256:aa")
        );
        assert_eq!(pin(&p, "127.0.0.1:8080/base/foo:1.0"), None);
        assert_eq!(pin(&p, "127.0.0.1:8080/base/bar:latest"), None);
        assert_eq!(pin(&p, "127.0.0.1:8081/base/foo:latest"), None);
        assert_eq!(pin(&BTreeMap::new(), "busybox"), None);
    }

    #[test]
    fn pins_match_other_spellings_of_the_same_image() {
        let p = pins(&[("docker.io/library/busybox:latest", "pinned-busybox")]);
        for name in [
            "busybox",
            "busybox:latest",
            "docker.io/busybox",
            "library/busybox",
        ] {
            assert_eq!(pin(&p, name), Some("pinned-busybox"), "{name}");
        }
        assert_eq!(pin(&p, "busybox:1.36"), None);
        assert_eq!(pin(&p, "quay.io/busybox"), None);
        let d = Digest::sha256_of(b"x");
        let by_digest = format!("busybox@{d}");
        assert_eq!(pin(&p, &by_digest), None);
        let p = pins(&[(&format!("docker.io/library/busybox@{d}"), "other")]);
        assert_eq!(pin(&p, &by_digest), Some("other"));
        let p = pins(&[("localhost/x", "a")]);
        assert_eq!(pin(&p, "localhost/x:latest"), Some("a"));
    }

    #[test]
    fn exact_pins_win_and_unparsable_names_match_only_exactly() {
        let p = pins(&[("busybox", "short"), ("docker.io/library/busybox", "long")]);
        assert_eq!(pin(&p, "busybox"), Some("short"));
        assert_eq!(pin(&p, "docker.io/library/busybox"), Some("long"));
        // Neither key is spelt this way: the first in key order.
        assert_eq!(
            pinned_base(&p, "busybox:latest"),
            Some(("busybox", "short"))
        );
        let p = pins(&[("Not A Reference", "x")]);
        assert_eq!(pin(&p, "Not A Reference"), Some("x"));
        assert_eq!(pin(&p, "not a reference"), None);
    }

    #[test]
    fn ssh_values_parse_like_buildx() {
        let s: SshSource = "default".parse().unwrap();
        assert_eq!((s.id.as_str(), s.paths.len()), ("default", 0));
        let s: SshSource = "default=/run/user/0/agent.sock".parse().unwrap();
        assert_eq!(s.paths, vec![PathBuf::from("/run/user/0/agent.sock")]);
        let s: SshSource = "git=/k/id_ed25519,/k/id_rsa".parse().unwrap();
        assert_eq!(s.id, "git");
        assert_eq!(
            s.paths,
            vec![PathBuf::from("/k/id_ed25519"), PathBuf::from("/k/id_rsa")]
        );
        // A relative path is the caller's to resolve, as buildx does.
        let s: SshSource = "k=id_rsa".parse().unwrap();
        assert_eq!(s.paths, vec![PathBuf::from("id_rsa")]);
        assert!("a=".parse::<SshSource>().unwrap().paths.is_empty());
        for bad in ["", "=/x", "a=/x,", "a=,/x"] {
            assert!(bad.parse::<SshSource>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_parse_like_buildah() {
        let s: SecretSource = "id=tok,src=/tmp/t".parse().unwrap();
        assert_eq!(s.id, "tok");
        assert_eq!(s.source, SecretFrom::File("/tmp/t".into()));
        let e: SecretSource = "id=TOKEN".parse().unwrap();
        assert_eq!(e.source, SecretFrom::Env("TOKEN".into()));
        assert!("src=/x".parse::<SecretSource>().is_err());
        assert!("id=a,bogus=1".parse::<SecretSource>().is_err());
    }
}
