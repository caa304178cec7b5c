//! A private Docker daemon (Debian's docker.io) started by hand.
//!
//! `dockerd --iptables=false --bridge=none` with its own data root, exec root,
//! pid file, config file and socket (DESIGN.md, "Test environment"); the
//! daemon manages its own containerd under the exec root. Containers must run
//! with `--network host`. Registries on loopback are plain-http by default
//! for docker, so no `insecure-registries` setting is needed.
//!
//! Each [`DockerDaemon`] is independent (start-up takes about a second); it
//! is stopped, and its mounts removed, when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::http;
use super::process::{Server, wait_until, write_file};
use super::scratch::Scratch;

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct DockerDaemon {
    server: Server,
    socket: PathBuf,
    config_dir: PathBuf,
    // last: the daemon must stop before its directories go
    scratch: Scratch,
}

/// The docker CLI to use: Debian's (matches the daemon's API version) when
/// present, else whatever `docker` is on PATH.
pub fn docker_cli() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.exists() {
        debian.to_owned()
    } else {
        PathBuf::from("docker")
    }
}

impl DockerDaemon {
    pub fn start() -> Result<Self> {
        Self::start_with_config("{}")
    }

    /// Starts dockerd with `daemon_json` as its `--config-file`.
    pub fn start_with_config(daemon_json: &str) -> Result<Self> {
        let Some(dockerd) = which("dockerd") else {
            bail!("dockerd not found: install docker.io (scripts/install-test-deps.sh)");
        };
        // Unix socket paths (ours and containerd's below the exec root) must
        // stay short: use /tmp whatever $TMPDIR says.
        let scratch = Scratch::new_short("docker")?;
        let data_root = scratch.mkdir("data")?;
        let exec_root = scratch.mkdir("x")?;
        let config_dir = scratch.mkdir("client")?;
        let socket = scratch.join("docker.sock");
        let pidfile = scratch.join("docker.pid");
        let daemon_config = scratch.join("daemon.json");
        write_file(&daemon_config, daemon_json)?;
        write_file(&config_dir.join("config.json"), "{}\n")?;

        let mut cmd = Command::new(dockerd);
        cmd.args([
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
        ])
        .arg("--data-root")
        .arg(&data_root)
        .arg("--exec-root")
        .arg(&exec_root)
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config-file")
        .arg(&daemon_config)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .env("PATH", path_with_sbin())
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONFIG");
        let log = scratch.join("dockerd.log");
        let mut server = Server::spawn("dockerd", &mut cmd, &log)?;
        server.set_stop_timeout(Duration::from_secs(20));
        let sock = socket.clone();
        wait_until(&mut server, START_TIMEOUT, "answering /_ping", || {
            if !sock.exists() {
                return Ok(false);
            }
            let r = http::get("http://docker/_ping").send_unix(&sock)?;
            Ok(r.status == 200)
        })
        .context("the Docker daemon did not start (see its log above)")?;
        Ok(Self {
            server,
            socket,
            config_dir,
            scratch,
        })
    }

    /// The docker CLI talking to this daemon, with a private client config
    /// (credentials from `docker login` go there).
    pub fn docker(&self) -> Command {
        let mut c = Command::new(docker_cli());
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.config_dir)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        c
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// `$PATH` plus the sbin directories (dockerd, containerd and runc live
/// there, and a CI environment may not have them on PATH).
fn path_with_sbin() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let d = PathBuf::from(d);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&path_with_sbin())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
