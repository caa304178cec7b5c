//! End-to-end tests of the build service (issue 4, "Acceptance"): the real
//! `kiln` binary as `kiln serve` (registry, hub and a local worker on one
//! address) or as `kiln hub serve` + `kiln worker` processes + `kiln
//! registry serve`, driven by the `kiln` CLI (`container-build`,
//! `build-info --json`, `watch-logs`, `cancel`, `add-target`, ...), git,
//! skopeo and podman.
//!
//! Every test starts its own servers on free loopback ports with fresh data
//! directories, builds tiny Dockerfiles FROM the busybox-full fixture (the
//! Fedora-like flow uses the dnf-base and rpm-repo fixtures), and checks
//! what a user would: exit codes, build records, logs, and the images in
//! the registry.
//!
//! Needs root, the packages of `scripts/install-test-deps.sh`, and (once,
//! for `fedora_like_flow`) the Debian mirror to build the dnf-base fixture.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rustix::process::Signal;
use serde_json::Value;

use common::buildcmp::cached_fixture;
use common::process::{kill_group, write_file};
use common::registry::{free_port, kiln, wait_http_ready};
use common::{
    ContainerTools, KilnRegistry, Output, RegistryServer, RunExt, RunOpts, Scratch, Server,
};

/// A `container-build` that waits may pull, build and push: more than a
/// client command's default timeout when the dnf base is involved.
const BUILD_TIMEOUT: Duration = Duration::from_secs(400);
/// How long a server may take to answer after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------- harness --

/// The hub's address and the token a client presents, for the CLI and for
/// direct API calls.
#[derive(Clone)]
struct HubClient {
    url: String,
    token: Option<String>,
    /// An empty config directory: the CLI must not find a token stored
    /// by `kiln login` on this machine.
    xdg: PathBuf,
}

impl HubClient {
    fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// `kiln --hub URL [--token T]` (arguments follow).
    fn kiln(&self) -> Command {
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
    fn submit(&self, dir: &Path, target: &str, source: Option<&str>) -> Result<i64> {
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
    fn build_and_wait(&self, dir: &Path, target: &str, source: Option<&str>) -> Result<Output> {
        let mut c = self.kiln();
        c.current_dir(dir)
            .args(["container-build", "--target", target]);
        if let Some(s) = source {
            c.arg(s);
        }
        c.run_opts(RunOpts::timeout(BUILD_TIMEOUT))
    }

    /// `kiln build-info ID|NVR --json`.
    fn build_info(&self, build: &str) -> Result<Value> {
        let out = self.kiln().args(["build-info", build, "--json"]).run_ok()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("build-info --json printed no JSON: {}", out.stdout))
    }

    /// `kiln watch-logs ID` (whatever the exit status).
    fn watch_logs(&self, id: i64) -> Result<Output> {
        self.kiln()
            .args(["watch-logs", &id.to_string()])
            .run_opts(RunOpts::timeout(BUILD_TIMEOUT))
    }

    fn get(&self, path: &str) -> Result<common::http::Response> {
        let mut r = common::http::get(&format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer(t);
        }
        r.send()
    }

    /// The build record straight from the API (no CLI), for polling.
    fn build_record(&self, id: i64) -> Result<Value> {
        let r = self.get(&format!("/api/v1/builds/{id}"))?;
        ensure!(r.status == 200, "GET build {id}: {} {}", r.status, r.text());
        r.json()
    }

    /// The build's whole log so far.
    fn log(&self, id: i64) -> Result<String> {
        let r = self.get(&format!("/api/v1/builds/{id}/log"))?;
        ensure!(r.status == 200, "GET log {id}: {} {}", r.status, r.text());
        Ok(r.text())
    }

    /// Polls the build until `done(record)`; the hub may be down for a
    /// while (restart tests), which only counts against `timeout`.
    fn wait_build(
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

    fn wait_terminal(&self, id: i64, timeout: Duration) -> Result<Value> {
        self.wait_build(id, timeout, "finished", |b| {
            matches!(
                b["state"].as_str(),
                Some("complete" | "failed" | "canceled")
            )
        })
    }

    /// Waits until the build's log has a line that is exactly `line`
    /// (a RUN step's output, not the step's echo of its command).
    fn wait_log_line(&self, id: i64, line: &str, timeout: Duration) -> Result<()> {
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
fn start_listening(
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
struct KilnServe {
    /// Owned so that it stops (and prints its log) when the test ends.
    _server: Server,
    port: u16,
    client: HubClient,
    tools: ContainerTools,
    // last: the server must stop before its directory goes
    scratch: Scratch,
}

impl KilnServe {
    fn start(label: &str, extra: &[&str]) -> Result<Self> {
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

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a cached fixture's OCI layout (tag `latest`) into kiln's
    /// registry as `repo:latest`; returns `127.0.0.1:PORT/repo:latest`.
    fn push_fixture(&self, script: &str, repo: &str) -> Result<String> {
        push_fixture(&self.tools, &self.addr(), script, repo)
    }
}

/// Pushes the fixture made by `script` to `addr/repo:latest` with skopeo.
fn push_fixture(tools: &ContainerTools, addr: &str, script: &str, repo: &str) -> Result<String> {
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

/// `kiln hub serve` alone, `kiln registry serve` as the targets' registry,
/// and `kiln worker` processes started by the test.
struct HubService {
    hub: Server,
    port: u16,
    data: PathBuf,
    hub_args: Vec<String>,
    client: HubClient,
    registry: KilnRegistry,
    tools: ContainerTools,
    restarts: u32,
    // last: the servers must stop before their directories go
    scratch: Scratch,
}

impl HubService {
    fn start(label: &str, hub_args: &[&str]) -> Result<Self> {
        let scratch = Scratch::new(&format!("hub-{label}"))?;
        let data = scratch.mkdir("data")?;
        let hub_args: Vec<String> = hub_args.iter().map(|s| (*s).to_owned()).collect();
        let (hub, port) = start_listening("kiln hub", &scratch, None, |_| {
            hub_command(&data, &hub_args)
        })?;
        let registry = KilnRegistry::start()?;
        let tools = ContainerTools::new(&[&registry.addr()])?;
        let client = HubClient {
            url: format!("http://127.0.0.1:{port}"),
            token: None,
            xdg: scratch.mkdir("xdg")?,
        };
        Ok(Self {
            hub,
            port,
            data,
            hub_args,
            client,
            registry,
            tools,
            restarts: 0,
            scratch,
        })
    }

    /// The admin token `--auth` wrote at first start.
    fn admin_token(&self) -> Result<String> {
        let p = self.data.join("hub/admin.token");
        Ok(fs::read_to_string(&p)
            .with_context(|| format!("read {}", p.display()))?
            .trim()
            .to_owned())
    }

    /// Stops the hub (SIGTERM, SIGKILL after a while) and starts it again
    /// on the same port and data directory.
    fn restart_hub(&mut self) -> Result<()> {
        self.hub.stop();
        self.restarts += 1;
        let (data, args) = (self.data.clone(), self.hub_args.clone());
        let (hub, _) = start_listening(
            &format!("kiln hub (restart {})", self.restarts),
            &self.scratch,
            Some(self.port),
            |_| hub_command(&data, &args),
        )?;
        self.hub = hub;
        Ok(())
    }

    /// `kiln [--token T] worker --data-dir DIR --name NAME` as a process.
    fn start_worker(&self, name: &str, token: Option<&str>) -> Result<Server> {
        let dir = self.scratch.mkdir(format!("worker-{name}"))?;
        let mut c = kiln();
        c.env("XDG_CONFIG_HOME", &self.client.xdg)
            .arg("--hub")
            .arg(&self.client.url);
        if let Some(t) = token {
            c.arg("--token").arg(t);
        }
        c.args(["worker", "--name", name, "--data-dir"]).arg(&dir);
        if std::env::var_os("KILN_LOG").is_none() {
            c.env("KILN_LOG", "info");
        }
        Server::spawn(
            &format!("kiln worker {name}"),
            &mut c,
            &self.scratch.join(format!("worker-{name}.log")),
        )
    }

    /// `kiln add-target NAME --registry <the registry> --dest-tag NAME-candidate`,
    /// then the busybox base pushed there as `base/busybox:latest`;
    /// returns the base image reference.
    fn add_target_with_base(&self, client: &HubClient, name: &str) -> Result<String> {
        client
            .kiln()
            .args(["add-target", name, "--registry", &self.registry.addr()])
            .args(["--dest-tag", &format!("{name}-candidate")])
            .run_ok()?;
        push_fixture(
            &self.tools,
            &self.registry.addr(),
            "busybox-full-image.sh",
            "base/busybox",
        )
    }
}

fn hub_command(data: &Path, args: &[String]) -> Command {
    let mut c = kiln();
    c.args(["hub", "serve", "--data-dir"]).arg(data).args(args);
    c
}

/// A git repository made with the git CLI, one commit per [`GitRepo::commit`].
struct GitRepo {
    dir: PathBuf,
}

impl GitRepo {
    /// `git init` in `dir` (branch `main`) with `files` committed.
    fn create(dir: &Path, files: &[(&str, &str)]) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let repo = Self {
            dir: dir.to_owned(),
        };
        repo.git(&["-c", "init.defaultBranch=main", "init", "-q"])?;
        repo.commit(files, "initial")?;
        Ok(repo)
    }

    fn git(&self, args: &[&str]) -> Result<Output> {
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
    fn commit(&self, files: &[(&str, &str)], message: &str) -> Result<String> {
        for (name, text) in files {
            write_file(&self.dir.join(name), text)?;
        }
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "-m", message])?;
        self.head()
    }

    fn head(&self) -> Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.stdout.trim().to_owned())
    }

    /// `file:///path#REF`.
    fn source(&self, git_ref: &str) -> String {
        format!("file://{}#{git_ref}", self.dir.display())
    }
}

/// A Dockerfile FROM `base` with the labels an NVR needs (`release` only
/// when given) and `body` after them.
fn dockerfile(
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
fn created_id(out: &Output) -> Result<i64> {
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

fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("build record without string {key:?}: {v:#}"))
}

fn nvr_text(b: &Value) -> Result<String> {
    let n = &b["nvr"];
    Ok(format!(
        "{}-{}-{}",
        str_field(n, "name")?,
        str_field(n, "version")?,
        str_field(n, "release")?
    ))
}

fn ensure_state(b: &Value, want: &str) -> Result<()> {
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
fn registry_digests(tools: &ContainerTools, image: &str) -> Result<(String, String)> {
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
fn pull_and_run(tools: &ContainerTools, image: &str, args: &[&str]) -> Result<Output> {
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

/// Processes whose command line is exactly `argv` (e.g. a RUN step's
/// `sleep 67` that should have been stopped).
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

// ---------------------------------------------------------------- tests --

/// The README's first command on an empty data directory: a dist-git
/// build from inside a checkout, the image pullable and runnable at once,
/// and a build record that says what was built from what.
#[test]
fn end_to_end_from_an_empty_data_directory() -> Result<()> {
    let svc = KilnServe::start("e2e", &[])?;
    let base = svc.push_fixture("busybox-full-image.sh", "base/busybox")?;
    let repo = GitRepo::create(
        &svc.scratch.join("hello-container"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "hello-container",
                "kiln/hello",
                "1.0",
                None,
                "RUN echo hello from the service > /hello\nCMD [\"cat\", \"/hello\"]\n",
            ),
        )],
    )?;
    let head = repo.head()?;

    let out = svc
        .client
        .build_and_wait(&repo.dir, "default", None)?
        .ok()?;
    let id = created_id(&out)?;
    // The release is the next free one for hello-container-1.0.
    let image = format!("{}/kiln/hello:1.0-1", svc.addr());
    ensure!(
        out.stdout.lines().next() == Some("hello-container-1.0-1"),
        "container-build printed {:?}, expected the NVR first",
        out.stdout
    );

    let run = pull_and_run(&svc.tools, &image, &[])?;
    ensure!(
        run.stdout.trim() == "hello from the service",
        "{image} printed {:?}",
        run.stdout
    );

    let b = svc.client.build_info("hello-container-1.0-1")?;
    ensure_state(&b, "complete")?;
    ensure!(
        b["id"] == id,
        "build-info by NVR gave build {} not {id}",
        b["id"]
    );
    ensure!(nvr_text(&b)? == "hello-container-1.0-1", "nvr {}", b["nvr"]);
    ensure!(
        str_field(&b, "commit")? == head,
        "commit {} != HEAD {head}",
        b["commit"]
    );
    ensure!(
        str_field(&b, "source_url")? == format!("file://{}", repo.dir.display()),
        "source_url {}",
        b["source_url"]
    );
    ensure!(
        str_field(&b, "parent_ref")? == base,
        "parent_ref {}",
        b["parent_ref"]
    );
    let (base_digest, _) = registry_digests(&svc.tools, &base)?;
    ensure!(
        str_field(&b, "parent_digest")? == base_digest,
        "parent_digest {} != {base_digest} (skopeo inspect {base})",
        b["parent_digest"]
    );
    ensure!(
        b["parent_build_id"].is_null(),
        "the fixture base is no kiln build: {}",
        b["parent_build_id"]
    );
    let (digest, config) = registry_digests(&svc.tools, &image)?;
    ensure!(
        str_field(&b, "manifest_digest")? == digest,
        "manifest_digest {} != {digest} (skopeo inspect {image})",
        b["manifest_digest"]
    );
    ensure!(
        str_field(&b, "config_digest")? == config,
        "config_digest {} != {config}",
        b["config_digest"]
    );
    let tags: Vec<&str> = b["tags"]
        .as_array()
        .context("tags")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["1.0-1", "1.0", "latest"] {
        let want = format!("{}/kiln/hello:{t}", svc.addr());
        ensure!(tags.contains(&want.as_str()), "tags {tags:?} lack {want}");
        let (d, _) = registry_digests(&svc.tools, &want)?;
        ensure!(d == digest, "{want} is {d}, not the build's {digest}");
    }
    ensure!(b["packages"].is_array(), "no packages list: {b:#}");
    ensure!(
        b["layers"].as_array().is_some_and(|l| !l.is_empty()),
        "no layers: {b:#}"
    );

    // The plain-text form names the same things.
    let text = svc
        .client
        .kiln()
        .args(["build-info", &id.to_string()])
        .run_ok()?
        .stdout;
    for want in ["hello-container-1.0-1", &head, &digest, "complete"] {
        ensure!(text.contains(want), "build-info lacks {want:?}:\n{text}");
    }
    Ok(())
}

/// B built FROM A's image in kiln's registry records A as its parent build.
#[test]
fn layered_build_records_its_parent_build() -> Result<()> {
    let svc = KilnServe::start("layered", &[])?;
    let base = svc.push_fixture("busybox-full-image.sh", "base/busybox")?;
    let a = GitRepo::create(
        &svc.scratch.join("layer-a"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "layer-a",
                "kiln/layer-a",
                "2.0",
                None,
                "RUN echo from A > /from-a\n",
            ),
        )],
    )?;
    let out_a = svc.client.build_and_wait(&a.dir, "default", None)?.ok()?;
    let a_id = created_id(&out_a)?;
    let a_info = svc.client.build_info(&a_id.to_string())?;
    ensure_state(&a_info, "complete")?;

    let parent = format!("{}/kiln/layer-a:2.0", svc.addr());
    let b = GitRepo::create(
        &svc.scratch.join("layer-b"),
        &[(
            "Dockerfile",
            // The RUN fails unless B really starts from A's filesystem.
            &dockerfile(
                &parent,
                "layer-b",
                "kiln/layer-b",
                "1.0",
                None,
                "RUN cat /from-a > /b-saw\n",
            ),
        )],
    )?;
    let out_b = svc.client.build_and_wait(&b.dir, "default", None)?.ok()?;
    let b_info = svc.client.build_info(&created_id(&out_b)?.to_string())?;
    ensure_state(&b_info, "complete")?;
    ensure!(
        str_field(&b_info, "parent_ref")? == parent,
        "parent_ref {}",
        b_info["parent_ref"]
    );
    ensure!(
        b_info["parent_digest"] == a_info["manifest_digest"],
        "B's parent_digest {} is not A's manifest {}",
        b_info["parent_digest"],
        a_info["manifest_digest"]
    );
    ensure!(
        b_info["parent_build_id"] == a_id,
        "B's parent_build_id is {} (expected A's id {a_id}): {b_info:#}",
        b_info["parent_build_id"]
    );
    Ok(())
}

/// The RPM fixture repository served over HTTP on 127.0.0.1.
fn serve_rpm_repo(dir: &Path, log: &Path) -> Result<(Server, u16)> {
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

/// A Fedora-like target: the base holds dnf and rpm, the target injects a
/// loopback package repository; the build's package list has the installed
/// RPM with its exact NEVRA, and the injected .repo file is not in the image.
#[test]
fn fedora_like_flow() -> Result<()> {
    let svc = KilnServe::start("fedora", &[])?;
    let base = svc.push_fixture("dnf-base-image.sh", "base/dnf-base")?;
    let rpms = cached_fixture("rpm-repo.sh")?.join("repo");
    let (_http, rpm_port) = serve_rpm_repo(&rpms, &svc.scratch.join("rpm-http.log"))?;
    svc.client
        .kiln()
        .args(["add-target", "fedora", "--registry", &svc.addr()])
        .args(["--dest-tag", "fedora-candidate"])
        .arg(format!("--repo=kiln-test=http://127.0.0.1:{rpm_port}/"))
        .run_ok()?;

    let repo = GitRepo::create(
        &svc.scratch.join("hello-rpm"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "hello-rpm-container",
                "kiln/hello-rpm",
                "1.0",
                None,
                "RUN dnf -y install kiln-hello && kiln-hello\nCMD [\"kiln-hello\"]\n",
            ),
        )],
    )?;
    let out = svc.client.build_and_wait(&repo.dir, "fedora", None)?.ok()?;
    let b = svc.client.build_info(&created_id(&out)?.to_string())?;
    ensure_state(&b, "complete")?;

    let rpm_file = rpms.join("kiln-hello-1.0-1.noarch.rpm");
    let qf = Command::new("rpm")
        .args([
            "-qp",
            "--qf",
            "%{NAME} %{EPOCHNUM} %{VERSION} %{RELEASE} %{ARCH}",
        ])
        .arg(&rpm_file)
        .run_ok()?;
    let want: Vec<&str> = qf.stdout.split_whitespace().collect();
    ensure!(want.len() == 5, "rpm -qp printed {:?}", qf.stdout);
    let packages = b["packages"].as_array().context("no packages")?;
    let found = packages
        .iter()
        .find(|p| p["name"] == "kiln-hello")
        .with_context(|| {
            format!(
                "kiln-hello is not in the build's {} packages: {b:#}",
                packages.len()
            )
        })?;
    // An unset epoch is recorded as null; rpm's EPOCHNUM prints 0 for it.
    let epoch = found["epoch"].as_u64().unwrap_or(0).to_string();
    let got = [
        str_field(found, "name")?,
        epoch.as_str(),
        str_field(found, "version")?,
        str_field(found, "release")?,
        str_field(found, "arch")?,
    ];
    ensure!(
        got[..] == want[..],
        "kiln-hello recorded as {got:?}, rpm -qp says {want:?}"
    );
    ensure!(found["kind"] == "rpm", "kiln-hello kind {}", found["kind"]);
    ensure!(
        packages.iter().any(|p| p["name"] == "kiln-data"),
        "kiln-hello's dependency kiln-data is not recorded"
    );

    let image = format!("{}/kiln/hello-rpm:1.0-1", svc.addr());
    let run = pull_and_run(&svc.tools, &image, &[])?;
    ensure!(
        run.stdout.trim() == "hello from kiln-hello",
        "{image} printed {:?}",
        run.stdout
    );
    let ls = svc
        .tools
        .podman()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "ls",
            "-a",
            "/etc/yum.repos.d",
        ])
        .run_ok()?;
    ensure!(
        !ls.stdout.contains("kiln-test"),
        "the injected repository is left in the image: /etc/yum.repos.d holds {:?}",
        ls.stdout
    );
    Ok(())
}

// ------------------------------------------------------------- failures --

/// A RUN that fails: exit 1, state failed, the log names the step and why.
#[test]
fn broken_dockerfile_fails_and_the_log_says_why() -> Result<()> {
    let svc = KilnServe::start("broken", &[])?;
    let base = svc.push_fixture("busybox-full-image.sh", "base/busybox")?;
    let repo = GitRepo::create(
        &svc.scratch.join("broken"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "broken",
                "kiln/broken",
                "1.0",
                None,
                "RUN echo about to fail && false\n",
            ),
        )],
    )?;
    let out = svc.client.build_and_wait(&repo.dir, "default", None)?;
    ensure!(
        out.status.code() == Some(1),
        "container-build exited {}: {out:?}",
        out.status
    );
    let id = created_id(&out)?;
    let b = svc.client.build_info(&id.to_string())?;
    ensure_state(&b, "failed")?;
    ensure!(
        str_field(&b, "reason")?.contains("exit code 1"),
        "reason {}",
        b["reason"]
    );

    let log = svc.client.watch_logs(id)?;
    ensure!(
        log.status.code() == Some(1),
        "watch-logs of a failed build exited {}",
        log.status
    );
    let text = log.combined();
    ensure!(
        text.lines().any(|l| l.trim() == "about to fail"),
        "the log lacks the RUN's own output:\n{text}"
    );
    ensure!(
        text.contains("Dockerfile:3") && text.contains("false") && text.contains("exit code 1"),
        "the log does not say which step failed and how:\n{text}"
    );

    // A Dockerfile that does not parse fails too, saying where.
    let head = repo.commit(
        &[(
            "Dockerfile",
            &format!(
                "{}\nNOSUCHINSTRUCTION x\n",
                dockerfile(&base, "broken", "kiln/broken", "1.0", None, "")
            ),
        )],
        "syntax error",
    )?;
    let out = svc.client.build_and_wait(&repo.dir, "default", None)?;
    ensure!(
        out.status.code() == Some(1),
        "container-build exited {}: {out:?}",
        out.status
    );
    let b = svc.client.build_info(&created_id(&out)?.to_string())?;
    ensure_state(&b, "failed")?;
    ensure!(b["commit"] == head, "commit {}", b["commit"]);
    let reason = str_field(&b, "reason")?.to_lowercase();
    ensure!(
        reason.contains("nosuchinstruction"),
        "reason {reason:?} does not name the bad instruction"
    );
    Ok(())
}

/// `GIT_URL#nosuch`: the build fails saying the ref is not found.
#[test]
fn unknown_ref_fails() -> Result<()> {
    let svc = KilnServe::start("badref", &[])?;
    let repo = GitRepo::create(
        &svc.scratch.join("badref"),
        &[(
            "Dockerfile",
            &dockerfile(
                "127.0.0.1:1/none:1",
                "badref",
                "kiln/badref",
                "1.0",
                None,
                "",
            ),
        )],
    )?;
    let out =
        svc.client
            .build_and_wait(svc.scratch.path(), "default", Some(&repo.source("nosuch")))?;
    ensure!(
        out.status.code() == Some(1),
        "container-build exited {}: {out:?}",
        out.status
    );
    let b = svc.client.build_info(&created_id(&out)?.to_string())?;
    ensure_state(&b, "failed")?;
    let reason = str_field(&b, "reason")?;
    ensure!(
        reason.contains("ref \"nosuch\" not found"),
        "reason {reason:?}"
    );
    ensure!(
        out.stderr.contains("ref \"nosuch\" not found"),
        "container-build did not say why:\n{}",
        out.stderr
    );
    Ok(())
}

/// A fixed release built twice: the second build fails naming the NVR.
#[test]
fn duplicate_nvr_is_refused() -> Result<()> {
    let svc = KilnServe::start("dup", &[])?;
    let base = svc.push_fixture("busybox-full-image.sh", "base/busybox")?;
    let repo = GitRepo::create(
        &svc.scratch.join("dup"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "dup-container",
                "kiln/dup",
                "3.1",
                Some("5"),
                "RUN echo once > /once\n",
            ),
        )],
    )?;
    let first = svc
        .client
        .build_and_wait(&repo.dir, "default", None)?
        .ok()?;
    let first_id = created_id(&first)?;
    let second = svc.client.build_and_wait(&repo.dir, "default", None)?;
    ensure!(
        second.status.code() == Some(1),
        "second build exited {}: {second:?}",
        second.status
    );
    let second_id = created_id(&second)?;
    ensure!(second_id != first_id, "the same build id twice");
    let b = svc.client.build_info(&second_id.to_string())?;
    ensure_state(&b, "failed")?;
    let reason = str_field(&b, "reason")?;
    ensure!(
        reason.contains("dup-container-3.1-5") && reason.contains("already exists"),
        "reason {reason:?} does not name the NVR"
    );
    // The first build still owns the NVR.
    let owner = svc.client.build_info("dup-container-3.1-5")?;
    ensure!(
        owner["id"] == first_id,
        "the NVR now names build {}",
        owner["id"]
    );
    ensure_state(&owner, "complete")?;
    Ok(())
}

/// With auth on, alice (not an owner of a component bob owns) cannot build
/// it; bob can.
#[test]
fn user_who_does_not_own_the_component_is_refused() -> Result<()> {
    let svc = HubService::start("owners", &["--auth"])?;
    let admin_token = svc.admin_token()?;
    let admin = svc.client.with_token(&admin_token);
    let _worker = svc.start_worker("w1", Some(&admin_token))?;
    let base = svc.add_target_with_base(&admin, "t")?;

    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let r = common::http::request("POST", &format!("{}/api/v1/tokens", admin.url))
            .bearer(&admin_token)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"user": user, "description": "service_e2e"}).to_string())
            .send()?;
        ensure!(
            (200..300).contains(&r.status),
            "POST /api/v1/tokens for {user}: {} {}",
            r.status,
            r.text()
        );
        tokens.push(str_field(&r.json()?, "token")?.to_owned());
    }
    let alice = svc.client.with_token(&tokens[0]);
    let bob = svc.client.with_token(&tokens[1]);
    let who = alice.kiln().arg("whoami").run_ok()?;
    ensure!(
        who.stdout.trim() == "alice",
        "whoami with alice's token: {:?}",
        who.stdout
    );
    // Without a token nothing is allowed.
    svc.client.kiln().arg("whoami").run_fail()?;

    let repo = GitRepo::create(
        &svc.scratch.join("bobs-image"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "bobs-image",
                "kiln/bobs-image",
                "1.0",
                None,
                "RUN echo bob > /bob\n",
            ),
        )],
    )?;
    admin
        .kiln()
        .args(["add-component", "bobs-image", "--git-url"])
        .arg(format!("file://{}", repo.dir.display()))
        .args(["--owner", "bob"])
        .run_ok()?;

    let out = alice.build_and_wait(&repo.dir, "t", None)?;
    ensure!(
        out.status.code() == Some(1),
        "alice's build exited {}: {out:?}",
        out.status
    );
    let id = created_id(&out)?;
    let b = admin.build_info(&id.to_string())?;
    ensure_state(&b, "failed")?;
    let reason = str_field(&b, "reason")?;
    ensure!(
        reason.contains("alice") && reason.contains("bobs-image"),
        "reason {reason:?} does not say alice may not build bobs-image"
    );
    ensure!(
        svc.registry
            .tags("kiln/bobs-image")
            .map(|t| t.is_empty())
            .unwrap_or(true),
        "alice's refused build pushed an image"
    );

    // The owner can: the refusal was about alice, not the set-up.
    let out = bob.build_and_wait(&repo.dir, "t", None)?.ok()?;
    let b = bob.build_info(&created_id(&out)?.to_string())?;
    ensure_state(&b, "complete")?;
    ensure!(b["owner"] == "bob", "owner {}", b["owner"]);
    Ok(())
}

/// `kiln cancel` of a running build: canceled at once, the RUN stopped, and
/// the worker takes the next build.
#[test]
fn cancel_stops_a_running_build_and_frees_the_worker() -> Result<()> {
    let svc = KilnServe::start("cancel", &[])?;
    let base = svc.push_fixture("busybox-full-image.sh", "base/busybox")?;
    let repo = GitRepo::create(
        &svc.scratch.join("slow"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "slow",
                "kiln/slow",
                "1.0",
                None,
                "RUN echo sleeping-now && sleep 67\n",
            ),
        )],
    )?;
    let id = svc.client.submit(&repo.dir, "default", None)?;
    svc.client
        .wait_log_line(id, "sleeping-now", Duration::from_secs(60))?;
    ensure!(
        !processes_running(&["sleep", "67"]).is_empty(),
        "the RUN's sleep is not running although its log says it started"
    );

    let start = Instant::now();
    let out = svc
        .client
        .kiln()
        .args(["cancel", &id.to_string()])
        .run_ok()?;
    ensure!(
        out.stdout.trim() == format!("build {id} canceled"),
        "cancel printed {:?}",
        out.stdout
    );
    let b = svc.client.build_info(&id.to_string())?;
    ensure_state(&b, "canceled")?;
    ensure!(
        start.elapsed() < Duration::from_secs(5),
        "canceling took {:?}",
        start.elapsed()
    );
    let log = svc.client.watch_logs(id)?;
    ensure!(
        log.status.code() == Some(1),
        "watch-logs of a canceled build exited {}",
        log.status
    );
    ensure!(
        log.combined().contains("canceled"),
        "the log does not say it was canceled:\n{}",
        log.combined()
    );

    // The RUN stops within seconds (the worker learns of the cancel at its
    // next heartbeat, at most 3 s away), and the same worker (there is one)
    // builds the next one.
    let stop_limit = Duration::from_secs(15);
    while !processes_running(&["sleep", "67"]).is_empty() {
        ensure!(
            start.elapsed() < stop_limit,
            "the canceled build's RUN (sleep 67) still runs {:?} after the cancel",
            start.elapsed()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the canceled RUN stopped {:?} after the cancel",
        start.elapsed()
    );
    let next = GitRepo::create(
        &svc.scratch.join("next"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "next",
                "kiln/next",
                "1.0",
                None,
                "RUN echo next > /next\n",
            ),
        )],
    )?;
    let next_id = svc.client.submit(&next.dir, "default", None)?;
    let n = svc.client.wait_terminal(next_id, Duration::from_secs(60))?;
    ensure_state(&n, "complete")?;
    eprintln!(
        "the build after the cancel completed {:?} after the cancel",
        start.elapsed()
    );
    Ok(())
}

// ------------------------------------------------------ workers and hub --

/// A worker SIGKILLed mid-RUN: its lease lapses, the build is queued again
/// and another worker completes it; the log says what happened.
#[test]
fn worker_killed_mid_build_is_retried() -> Result<()> {
    let svc = HubService::start("killed", &["--lease-secs", "3"])?;
    let base = svc.add_target_with_base(&svc.client, "t")?;
    let mut worker_a = svc.start_worker("worker-a", None)?;
    let repo = GitRepo::create(
        &svc.scratch.join("killme"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "killme",
                "kiln/killme",
                "1.0",
                None,
                "RUN echo run-started && sleep 8\n",
            ),
        )],
    )?;
    let id = svc.client.submit(&repo.dir, "t", None)?;
    svc.client
        .wait_log_line(id, "run-started", Duration::from_secs(60))?;

    let pgid = worker_a.pid().context("worker A has no pid")?;
    kill_group(pgid, Signal::KILL);
    worker_a.stop();
    let _worker_b = svc.start_worker("worker-b", None)?;

    let b = svc.client.wait_terminal(id, Duration::from_secs(120))?;
    let log = svc.client.log(id)?;
    ensure_state(&b, "complete").with_context(|| format!("log:\n{log}"))?;
    ensure!(
        log.contains("heartbeat"),
        "the log does not mention the lost heartbeat:\n{log}"
    );
    ensure!(
        log.contains("attempt 2"),
        "the log shows no second attempt:\n{log}"
    );
    ensure!(
        log.contains("worker-b"),
        "the log does not say worker-b took over:\n{log}"
    );
    let digest = svc.registry.manifest_digest("kiln/killme", "1.0-1")?;
    ensure!(
        b["manifest_digest"] == digest.as_str(),
        "the record's manifest {} is not the registry's {digest}",
        b["manifest_digest"]
    );
    Ok(())
}

/// The hub stopped while one build runs and another waits, then started
/// again on the same data directory and port: both builds complete.
#[test]
fn hub_restart_loses_nothing() -> Result<()> {
    let mut svc = HubService::start("restart", &[])?;
    let base = svc.add_target_with_base(&svc.client, "t")?;
    let _worker = svc.start_worker("w1", None)?;
    let slow = GitRepo::create(
        &svc.scratch.join("slow"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "slow",
                "kiln/slow",
                "1.0",
                None,
                "RUN echo slow-started && sleep 5\n",
            ),
        )],
    )?;
    let quick = GitRepo::create(
        &svc.scratch.join("quick"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "quick",
                "kiln/quick",
                "1.0",
                None,
                "RUN echo quick > /quick\n",
            ),
        )],
    )?;
    let slow_id = svc.client.submit(&slow.dir, "t", None)?;
    let quick_id = svc.client.submit(&quick.dir, "t", None)?;
    svc.client
        .wait_log_line(slow_id, "slow-started", Duration::from_secs(60))?;
    let q = svc.client.build_record(quick_id)?;
    ensure_state(&q, "queued")?;

    svc.restart_hub()?;

    for (id, repo) in [(slow_id, "kiln/slow"), (quick_id, "kiln/quick")] {
        let b = svc.client.wait_terminal(id, Duration::from_secs(180))?;
        ensure_state(&b, "complete").with_context(|| svc.client.log(id).unwrap_or_default())?;
        let digest = svc.registry.manifest_digest(repo, "1.0-1")?;
        ensure!(b["manifest_digest"] == digest.as_str(), "build {id}: {b:#}");
    }
    let log = svc.client.log(slow_id)?;
    ensure!(
        log.lines().any(|l| l.trim() == "slow-started"),
        "the log before the restart is lost:\n{log}"
    );
    Ok(())
}
