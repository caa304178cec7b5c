//! What one sandboxed command needs: the JSON document the caller hands the helper.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::caps;

/// PATH used when the spec's environment has none (the one Docker and BuildKit use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The root filesystem of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootFs {
    /// An overlay of read-only layers (topmost first) under a writable upper directory:
    /// the upper directory is the RUN step's layer.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// A fully prepared root directory, bind-mounted (the copying fallback when overlayfs
    /// is unavailable).
    Dir(PathBuf),
}

/// Network of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network namespace.
    Host,
    /// A network namespace of its own holding only `lo` (brought up).
    #[default]
    None,
}

/// An extra mount, applied in order after the standard ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Mount {
    /// Bind mount of a host path (recursive).
    Bind {
        source: PathBuf,
        target: String,
        #[serde(default)]
        readonly: bool,
    },
    /// A directory of another image root given by its layer directories (topmost
    /// first): the layers are stacked by overlay inside the sandbox (writes, when not
    /// read-only, go to a throwaway tmpfs) and `source` inside that root is bind-mounted
    /// on `target` (`RUN --mount=type=bind,from=stage`).
    Layers {
        lowers: Vec<PathBuf>,
        #[serde(default)]
        source: String,
        target: String,
        #[serde(default)]
        readonly: bool,
    },
    /// A fresh tmpfs; `size` in bytes, `mode` defaults to 1777 like Docker's `--tmpfs`.
    Tmpfs {
        target: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        mode: Option<u32>,
    },
    /// A host socket (an ssh agent's) bound on `target`. Unlike the other mounts, the
    /// directories created on the way to `target` are removed after the run too, as
    /// BuildKit does for its ssh sockets: nothing of it is left in the layer.
    Socket { source: PathBuf, target: String },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::Layers { target, .. }
            | Mount::Socket { target, .. } => target,
        }
    }
}

/// Everything the helper needs to run one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: RootFs,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// argv; `args[0]` is looked up in the PATH of `env` when it holds no `/`.
    pub args: Vec<String>,
    /// `KEY=value` entries; the command sees exactly these (plus PATH and HOME defaults).
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute working directory inside the root; created when missing.
    pub cwd: String,
    /// A Dockerfile `USER` value: "", "root", "1000", "app", "app:staff", "1000:1000".
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub network: Network,
    /// Content of `/etc/hosts` inside the sandbox.
    #[serde(default)]
    pub hosts: String,
    /// Content of `/etc/resolv.conf` inside the sandbox.
    #[serde(default)]
    pub resolv_conf: String,
    /// Capability names (`CAP_CHOWN` or `CHOWN`, `ALL`); `None` = Docker's default set.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
}

impl SandboxSpec {
    /// A spec with Docker-like defaults: cwd `/`, user root, hostname `kiln`, no network,
    /// `/etc/hosts` naming localhost and the hostname, empty resolv.conf.
    pub fn new(rootfs: RootFs, args: Vec<String>) -> Self {
        let hostname = "kiln".to_owned();
        SandboxSpec {
            rootfs,
            mounts: Vec::new(),
            args,
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: String::new(),
            hosts: default_hosts(&hostname),
            hostname,
            network: Network::None,
            resolv_conf: String::new(),
            capabilities: None,
        }
    }

    /// Checks what the helper would otherwise only discover halfway through its setup.
    pub fn validate(&self) -> Result<(), String> {
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err("no command given (args is empty)".to_owned());
        }
        if let Some(arg) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(format!("argument {arg:?} contains a NUL byte"));
        }
        if let Some(var) = self
            .env
            .iter()
            .find(|e| !e.contains('=') || e.contains('\0'))
        {
            return Err(format!(
                "environment entry {var:?} is not KEY=value (or contains NUL)"
            ));
        }
        if !self.cwd.starts_with('/') {
            return Err(format!(
                "working directory {:?} is not an absolute path",
                self.cwd
            ));
        }
        if self.hostname.len() > 64 {
            return Err(format!(
                "hostname {:?} is longer than 64 bytes",
                self.hostname
            ));
        }
        for mount in &self.mounts {
            let target = mount.target();
            if !target.starts_with('/') || target.trim_matches('/').is_empty() {
                return Err(format!(
                    "mount target {target:?} must be an absolute path other than /"
                ));
            }
            if let Mount::Bind { source, .. } | Mount::Socket { source, .. } = mount
                && !source.is_absolute()
            {
                return Err(format!(
                    "bind mount source {} is not an absolute path",
                    source.display()
                ));
            }
        }
        if let RootFs::Overlay { lowers, .. } = &self.rootfs
            && lowers.is_empty()
        {
            return Err("overlay root filesystem without lower layers".to_owned());
        }
        caps::mask(self.capabilities.as_deref())?;
        Ok(())
    }
}

/// `/etc/hosts` content Docker writes for a container: localhost on both families and the
/// hostname on the loopback address.
pub fn default_hosts(hostname: &str) -> String {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !hostname.is_empty() && hostname != "localhost" {
        hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    hosts
}

/// The host's `/etc/resolv.conf`, the default for a sandbox on the host network.
pub fn host_resolv_conf() -> std::io::Result<String> {
    std::fs::read_to_string("/etc/resolv.conf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec::new(RootFs::Dir("/r".into()), vec!["true".into()])
    }

    #[test]
    fn json_round_trip() {
        let mut s = spec();
        s.mounts.push(Mount::Tmpfs {
            target: "/t".into(),
            size: Some(1 << 20),
            mode: None,
        });
        s.rootfs = RootFs::Overlay {
            lowers: vec!["/a".into(), "/b".into()],
            upper: "/u".into(),
            work: "/w".into(),
        };
        s.mounts.push(Mount::Socket {
            source: "/tmp/agent.sock".into(),
            target: "/run/buildkit/ssh_agent.0".into(),
        });
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), s);
    }

    #[test]
    fn validate_rejects_bad_specs() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.args.clear();
        assert!(s.validate().unwrap_err().contains("no command"));
        let mut s = spec();
        s.cwd = "rel".into();
        assert!(s.validate().unwrap_err().contains("\"rel\""));
        let mut s = spec();
        s.env = vec!["NOEQUALS".into()];
        assert!(s.validate().unwrap_err().contains("NOEQUALS"));
        let mut s = spec();
        s.mounts.push(Mount::Tmpfs {
            target: "/".into(),
            size: None,
            mode: None,
        });
        assert!(s.validate().is_err());
        let mut s = spec();
        s.capabilities = Some(vec!["CAP_NOPE".into()]);
        assert!(s.validate().unwrap_err().contains("CAP_NOPE"));
    }

    #[test]
    fn default_hosts_names_hostname() {
        let hosts = default_hosts("box");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("::1\tlocalhost"));
        assert!(hosts.contains("\tbox\n"));
    }
}
