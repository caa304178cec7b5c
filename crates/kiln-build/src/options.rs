//! What a build is asked to do: the `kiln build` flags as data.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
