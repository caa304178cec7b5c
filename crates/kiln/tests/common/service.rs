//! The build service under test: `kiln serve` (registry, hub and local
//! workers on one address), a client for its CLI and API, git repositories
//! to build from, and the checks the service tests share (build records,
//! images in the registry, RPM repositories served over HTTP).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::buildcmp::cached_fixture;
use super::containers::ContainerTools;
use super::http;
use super::process::{Output, RunExt, RunOpts, Server, write_file};
use super::registry::{free_port, kiln, wait_http_ready};
use super::scratch::Scratch;

/// A `container-build` that waits may pull, build and push: more than a
/// client command's default timeout when the dnf base is involved.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(400);
/// How long a server may take to answer after start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------- harness --

/// The hub's address and the token a client presents, for the CLI and for
/// direct API calls.
#[derive(Clone)]
pub struct HubClient {
    pub url: String,
    pub token: Option<String>,
    /// An empty config directory: the CLI must not find a token stored
    /// by `kiln login` on this machine.
    pub xdg: PathBuf,
}

impl HubClient {
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// `kiln --hub URL [--token T]` (arguments follow).
    pub fn kiln(&self) -> Command {
        let mut c = kiln();
        c.env("XDG_CONFIG_HOME", &self.xdg)
            .env_remove("KILN_HUB")
            .env_remove("KILN_TOKEN")
            .arg("--hub")
            .arg(&self.url);
        if let Some(t) = &self.token {
            c.arg("--token").arg(t);
        }
        c
    }

    /// `kiln container-build --target T --nowait [SOURCE]` run in `dir`;
    /// returns the build id it prints.
    pub fn submit(&self, dir: &Path, target: &str, source: Option<&str>) -> Result<i64> {
        let mut c = self.kiln();
        c.current_dir(dir)
            .args(["container-build", "--target", target, "--nowait"]);
        if let Some(s) = source {
            c.arg(s);
        }
        let out = c.run_ok()?;
        out.last_line()
            .parse()
            .with_context(|| format!("container-build --nowait printed no build id: {out:?}"))
    }

    /// `kiln container-build --target T [SOURCE]` in `dir`, waiting for the
    /// end (whatever the exit status).
    pub fn build_and_wait(&self, dir: &Path, target: &str, source: Option<&str>) -> Result<Output> {
        let mut c = self.kiln();
        c.current_dir(dir)
            .args(["container-build", "--target", target]);
        if let Some(s) = source {
            c.arg(s);
        }
        c.run_opts(RunOpts::timeout(BUILD_TIMEOUT))
    }

    /// `kiln build-info ID|NVR --json`.
    pub fn build_info(&self, build: &str) -> Result<Value> {
        let out = self.kiln().args(["build-info", build, "--json"]).run_ok()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("build-info --json printed no JSON: {}", out.stdout))
    }

    /// `kiln watch-logs ID` (whatever the exit status).
    pub fn watch_logs(&self, id: i64) -> Result<Output> {
        self.kiln()
            .args(["watch-logs", &id.to_string()])
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))
    }

    pub fn get(&self, path: &str) -> Result<http::Response> {
        let mut r = http::get(&format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer(t);
        }
        r.send()
    }

    /// `GET path` that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let r = self.get(path)?;
        ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.text());
        r.json()
    }

    /// `PUT path` with a JSON body; the answer must be a 2xx with JSON.
    pub fn put_json(&self, path: &str, body: &Value) -> Result<Value> {
        let mut r = http::request("PUT", &format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(t) = &self.token {
            r = r.bearer(t);
        }
        let r = r.send()?;
        ensure!(
            (200..300).contains(&r.status),
            "PUT {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// The build record straight from the API (no CLI), for polling.
    pub fn build_record(&self, id: i64) -> Result<Value> {
        let r = self.get(&format!("/api/v1/builds/{id}"))?;
        ensure!(r.status == 200, "GET build {id}: {} {}", r.status, r.text());
        r.json()
    }

    /// The build's whole log so far.
    pub fn log(&self, id: i64) -> Result<String> {
        let r = self.get(&format!("/api/v1/builds/{id}/log"))?;
        ensure!(r.status == 200, "GET log {id}: {} {}", r.status, r.text());
        Ok(r.text())
    }

    /// Polls the build until `done(record)`; the hub may be down for a
    /// while (restart tests), which only counts against `timeout`.
    pub fn wait_build(
        &self,
        id: i64,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.build_record(id) {
                Ok(b) if done(&b) => return Ok(b),
                other => other,
            };
            if Instant::now() >= deadline {
                let log = self.log(id).unwrap_or_else(|e| format!("(no log: {e:#})"));
                bail!(
                    "build {id} not {what} within {timeout:?}; last record: {}\nlog:\n{log}",
                    match &last {
                        Ok(b) => b.to_string(),
                        Err(e) => format!("{e:#}"),
                    }
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn wait_terminal(&self, id: i64, timeout: Duration) -> Result<Value> {
        self.wait_build(id, timeout, "finished", |b| {
            matches!(
                b["state"].as_str(),
                Some("complete" | "failed" | "canceled")
            )
        })
    }

    /// Waits until the build's log has a line that is exactly `line`
    /// (a RUN step's output, not the step's echo of its command).
    pub fn wait_log_line(&self, id: i64, line: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log(id).unwrap_or_default();
            if log.lines().any(|l| l.trim() == line) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("build {id}'s log has no line {line:?} within {timeout:?}:\n{log}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Starts `cmd` (completed with `--listen 127.0.0.1:PORT`) on a free port
/// and waits for the hub API to answer; retries when the port was taken.
pub fn start_listening(
    name: &str,
    scratch: &Scratch,
    port: Option<u16>,
    mut cmd: impl FnMut(u16) -> Command,
) -> Result<(Server, u16)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let log = scratch.join(format!("{}-{port}-{attempt}.log", name.replace(' ', "-")));
        let mut c = cmd(port);
        c.arg("--listen").arg(format!("127.0.0.1:{port}"));
        if std::env::var_os("KILN_LOG").is_none() {
            c.env("KILN_LOG", "info");
        }
        let mut server = Server::spawn(name, &mut c, &log)?;
        let url = format!("http://127.0.0.1:{port}/api/v1/targets");
        match wait_http_ready(&mut server, &url, READY_TIMEOUT, |s| s == 200 || s == 401) {
            Ok(()) => return Ok((server, port)),
            Err(e) if attempt < 5 && server.log().to_lowercase().contains("in use") => {
                eprintln!("port {port} was taken, retrying: {e:#}");
                // The same port again is useless unless it frees up.
                thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `kiln serve`: registry, hub and local workers on one address.
pub struct KilnServe {
    /// Owned so that it stops (and prints its log) when the test ends.
    _server: Server,
    pub port: u16,
    pub client: HubClient,
    pub tools: ContainerTools,
    // last: the server must stop before its directory goes
    pub scratch: Scratch,
}

impl KilnServe {
    pub fn start(label: &str, extra: &[&str]) -> Result<Self> {
        let scratch = Scratch::new(&format!("serve-{label}"))?;
        let data = scratch.mkdir("data")?;
        let (server, port) = start_listening("kiln serve", &scratch, None, |_| {
            let mut c = kiln();
            c.arg("serve").arg("--data-dir").arg(&data).args(extra);
            c
        })?;
        let addr = format!("127.0.0.1:{port}");
        let tools = ContainerTools::new(&[&addr])?;
        let client = HubClient {
            url: format!("http://{addr}"),
            token: None,
            xdg: scratch.mkdir("xdg")?,
        };
        Ok(Self {
            _server: server,
            port,
            client,
            tools,
            scratch,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a cached fixture's OCI layout (tag `latest`) into kiln's
    /// registry as `repo:latest`; returns `127.0.0.1:PORT/repo:latest`.
    pub fn push_fixture(&self, script: &str, repo: &str) -> Result<String> {
        push_fixture(&self.tools, &self.addr(), script, repo)
    }
}

/// Pushes the fixture made by `script` to `addr/repo:latest` with skopeo.
pub fn push_fixture(
    tools: &ContainerTools,
    addr: &str,
    script: &str,
    repo: &str,
) -> Result<String> {
    let fx = cached_fixture(script)?;
    let image = format!("{addr}/{repo}:latest");
    tools
        .skopeo()
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fx.join("oci").display()))
        .arg(format!("docker://{image}"))
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    Ok(image)
}

/// A git repository made with the git CLI, one commit per [`GitRepo::commit`].
pub struct GitRepo {
    pub dir: PathBuf,
}

impl GitRepo {
    /// `git init` in `dir` (branch `main`) with `files` committed.
    pub fn create(dir: &Path, files: &[(&str, &str)]) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let repo = Self {
            dir: dir.to_owned(),
        };
        repo.git(&["-c", "init.defaultBranch=main", "init", "-q"])?;
        repo.commit(files, "initial")?;
        Ok(repo)
    }

    pub fn git(&self, args: &[&str]) -> Result<Output> {
        Command::new("git")
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Kiln Test")
            .env("GIT_AUTHOR_EMAIL", "test@kiln.invalid")
            .env("GIT_COMMITTER_NAME", "Kiln Test")
            .env("GIT_COMMITTER_EMAIL", "test@kiln.invalid")
            .args(args)
            .run_ok()
    }

    /// Writes `files` and commits them; returns the new HEAD.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> Result<String> {
        for (name, text) in files {
            write_file(&self.dir.join(name), text)?;
        }
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", message])?;
        self.head()
    }

    pub fn head(&self) -> Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.stdout.trim().to_owned())
    }

    /// `file:///path#REF`.
    pub fn source(&self, git_ref: &str) -> String {
        format!("file://{}#{git_ref}", self.dir.display())
    }
}

/// A Dockerfile FROM `base` with the labels an NVR needs (`release` only
/// when given) and `body` after them.
pub fn dockerfile(
    base: &str,
    component: &str,
    name: &str,
    version: &str,
    release: Option<&str>,
    body: &str,
) -> String {
    let release = release
        .map(|r| format!(" release=\"{r}\""))
        .unwrap_or_default();
    format!(
        "FROM {base}\n\
         LABEL com.redhat.component=\"{component}\" name=\"{name}\" version=\"{version}\"{release}\n\
         {body}"
    )
}

/// The build id `container-build` (waiting form) announced on stderr.
pub fn created_id(out: &Output) -> Result<i64> {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("Created build "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .with_context(|| {
            format!(
                "no `Created build N` in container-build's stderr:\n{}",
                out.stderr
            )
        })
}

pub fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("build record without string {key:?}: {v:#}"))
}

pub fn nvr_text(b: &Value) -> Result<String> {
    let n = &b["nvr"];
    Ok(format!(
        "{}-{}-{}",
        str_field(n, "name")?,
        str_field(n, "version")?,
        str_field(n, "release")?
    ))
}

pub fn ensure_state(b: &Value, want: &str) -> Result<()> {
    ensure!(
        b["state"] == want,
        "build {} is {} (expected {want}); reason: {}",
        b["id"],
        b["state"],
        b["reason"]
    );
    Ok(())
}

/// `skopeo inspect` of an image in a plain-http registry: (manifest digest,
/// config digest).
pub fn registry_digests(tools: &ContainerTools, image: &str) -> Result<(String, String)> {
    let out = tools
        .skopeo()
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .run_ok()?;
    let v: Value = serde_json::from_str(&out.stdout)?;
    let digest = str_field(&v, "Digest")?.to_owned();
    let raw = tools
        .skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .run_ok()?;
    let m: Value = serde_json::from_str(&raw.stdout)?;
    let config = m["config"]["digest"]
        .as_str()
        .with_context(|| format!("manifest of {image} without config digest: {m}"))?
        .to_owned();
    Ok((digest, config))
}

/// `podman pull` (plain http) then `podman run --rm --network none IMAGE ARGS`.
pub fn pull_and_run(tools: &ContainerTools, image: &str, args: &[&str]) -> Result<Output> {
    tools
        .podman()
        .args(["pull", "-q", "--tls-verify=false", image])
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    tools
        .podman()
        .args(["run", "--rm", "--network", "none", image])
        .args(args)
        .run_ok()
}

/// The RPM fixture repository served over HTTP on 127.0.0.1.
pub fn serve_rpm_repo(dir: &Path, log: &Path) -> Result<(Server, u16)> {
    let port = free_port()?;
    let mut server = Server::spawn(
        "rpm repo http",
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string()),
        log,
    )?;
    let url = format!("http://127.0.0.1:{port}/repodata/repomd.xml");
    wait_http_ready(&mut server, &url, READY_TIMEOUT, |s| s == 200)?;
    Ok((server, port))
}
