//! Registries under test: kiln's own (`kiln registry serve`, the real
//! binary) and the CNCF Distribution registry (`docker-registry`, the peer
//! to compare with).

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::http;
use super::process::{RunExt, RunOpts, Server, wait_until, write_file};
use super::scratch::Scratch;

/// Every manifest media type a registry client accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// How long a registry may take to answer `/v2/` after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the `kiln` binary Cargo built for these tests.
pub fn kiln_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

/// A `kiln` command with a quiet, predictable environment.
pub fn kiln() -> Command {
    let mut c = Command::new(kiln_bin());
    c.env("NO_COLOR", "1")
        .env_remove("KILN_DATA_DIR")
        .env_remove("KILN_CONFIG");
    c
}

/// A free TCP port on 127.0.0.1 (free now; a race with another process is
/// possible, which is why starting a server retries).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// What every registry under test offers.
pub trait RegistryServer {
    /// `127.0.0.1:PORT`: the registry part of image references.
    fn addr(&self) -> String;

    /// `http://127.0.0.1:PORT{path}`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `127.0.0.1:PORT/{repo}:{tag}`.
    fn image(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr())
    }

    /// `docker://127.0.0.1:PORT/{repo}:{tag}` (skopeo, podman, buildah).
    fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}", self.image(repo, tag))
    }

    /// `HEAD /v2/{repo}/manifests/{reference}` accepting every manifest type.
    fn head_manifest(&self, repo: &str, reference: &str) -> Result<http::Response> {
        http::head(&self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Accept", MANIFEST_ACCEPT)
            .send()
    }

    /// `GET /v2/{repo}/manifests/{reference}` accepting every manifest type.
    fn get_manifest(&self, repo: &str, reference: &str) -> Result<http::Response> {
        http::get(&self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Accept", MANIFEST_ACCEPT)
            .send()
    }

    /// The `Docker-Content-Digest` of a manifest (HEAD), failing on non-200.
    fn manifest_digest(&self, repo: &str, reference: &str) -> Result<String> {
        let r = self.head_manifest(repo, reference)?;
        if r.status != 200 {
            bail!(
                "HEAD /v2/{repo}/manifests/{reference}: status {} (expected 200)",
                r.status
            );
        }
        r.header("Docker-Content-Digest")
            .map(str::to_owned)
            .with_context(|| {
                format!("HEAD /v2/{repo}/manifests/{reference}: no Docker-Content-Digest header")
            })
    }

    /// `GET /v2/{repo}/tags/list`, sorted.
    fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let r = http::get(&self.url(&format!("/v2/{repo}/tags/list"))).send()?;
        if r.status != 200 {
            bail!(
                "GET /v2/{repo}/tags/list: status {}: {}",
                r.status,
                r.text()
            );
        }
        let v = r.json()?;
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }
}

/// Options for [`KilnRegistry::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Contents of the `--config` TOML file (none: no `--config`).
    pub config_toml: Option<String>,
    /// Data directory to use (default: a fresh one in the registry's scratch dir).
    pub data_dir: Option<PathBuf>,
    /// Extra arguments after `kiln registry serve ...`.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The registry serves HTTPS (`--tls-*` in `extra_args`, or `[tls]` in
    /// the config) with a certificate this CA (PEM) signed: readiness is
    /// checked over https trusting it.
    pub https_ca: Option<PathBuf>,
}

impl RegistryOptions {
    pub fn with_config(toml: impl Into<String>) -> Self {
        Self {
            config_toml: Some(toml.into()),
            ..Self::default()
        }
    }
}

/// `kiln registry serve` on 127.0.0.1 with its own data directory; stopped
/// when dropped (its log is printed if the test is failing).
pub struct KilnRegistry {
    server: Server,
    port: u16,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    opts: RegistryOptions,
    // last: the server must stop before its directory goes
    scratch: Scratch,
}

impl KilnRegistry {
    /// A registry with default settings (no auth).
    pub fn start() -> Result<Self> {
        Self::start_with(RegistryOptions::default())
    }

    pub fn start_with(opts: RegistryOptions) -> Result<Self> {
        let scratch = Scratch::new("registry")?;
        let data_dir = match &opts.data_dir {
            Some(d) => d.clone(),
            None => scratch.mkdir("data")?,
        };
        let config_path = match &opts.config_toml {
            Some(toml) => {
                let p = scratch.join("registry.toml");
                write_file(&p, toml)?;
                Some(p)
            }
            None => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = scratch.join(format!("registry-{attempt}.log"));
            let mut server = spawn_kiln(port, &data_dir, config_path.as_deref(), &opts, &log)?;
            match wait_kiln_ready(&mut server, port, &opts) {
                Ok(()) => {
                    return Ok(Self {
                        server,
                        port,
                        data_dir,
                        config_path,
                        opts,
                        scratch,
                    });
                }
                Err(e) if attempt < 3 && server.log().to_lowercase().contains("in use") => {
                    eprintln!("port {port} was taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the server and starts it again on the same port and data dir.
    pub fn restart(&mut self) -> Result<()> {
        self.server.stop();
        let log = self
            .scratch
            .join(format!("registry-restart-{}.log", std::process::id()));
        self.server = spawn_kiln(
            self.port,
            &self.data_dir,
            self.config_path.as_deref(),
            &self.opts,
            &log,
        )?;
        wait_kiln_ready(&mut self.server, self.port, &self.opts)
    }

    /// `http://127.0.0.1:PORT`, or `https://` when [`RegistryOptions::https_ca`] is set.
    pub fn base_url(&self) -> String {
        let scheme = if self.opts.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Everything the registry logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

impl RegistryServer for KilnRegistry {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn spawn_kiln(
    port: u16,
    data_dir: &Path,
    config: Option<&Path>,
    opts: &RegistryOptions,
    log: &Path,
) -> Result<Server> {
    let mut cmd = kiln();
    cmd.args(["registry", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(&opts.extra_args);
    // KILN_LOG is the binary's log filter; keep a caller's setting.
    if std::env::var_os("KILN_LOG").is_none() {
        cmd.env("KILN_LOG", "info");
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    Server::spawn("kiln registry", &mut cmd, log)
}

fn wait_kiln_ready(server: &mut Server, port: u16, opts: &RegistryOptions) -> Result<()> {
    match &opts.https_ca {
        Some(ca) => {
            let url = format!("https://127.0.0.1:{port}/v2/");
            wait_https_ready(server, &url, ca, READY_TIMEOUT, |status| {
                status == 200 || status == 401
            })
        }
        None => wait_registry_ready(server, port),
    }
}

/// Waits until `GET /v2/` answers 200 or 401.
fn wait_registry_ready(server: &mut Server, port: u16) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}/v2/");
    wait_http_ready(server, &url, READY_TIMEOUT, |status| {
        status == 200 || status == 401
    })
}

/// Waits until `GET url` answers with a status `ready` accepts, failing
/// early (with the server's log) if the server exits. For any HTTP server a
/// test starts (`kiln serve`, a hub, a fake upstream ...).
pub fn wait_http_ready(
    server: &mut Server,
    url: &str,
    timeout: Duration,
    ready: impl Fn(u16) -> bool,
) -> Result<()> {
    wait_until(server, timeout, &format!("answering GET {url}"), || {
        let r = http::get(url).send()?;
        Ok(ready(r.status))
    })
}

/// [`wait_http_ready`] over HTTPS: curl, trusting only the CA in `ca`.
pub fn wait_https_ready(
    server: &mut Server,
    url: &str,
    ca: &Path,
    timeout: Duration,
    ready: impl Fn(u16) -> bool,
) -> Result<()> {
    wait_until(server, timeout, &format!("answering GET {url}"), || {
        Ok(ready(https_status(url, ca)?))
    })
}

/// The status of `GET url` (curl trusting only `ca`). Not logged: it is
/// polled.
pub fn https_status(url: &str, ca: &Path) -> Result<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .context("running curl (run scripts/install-test-deps.sh)")?;
    if !out.status.success() {
        bail!(
            "curl {url}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let code = String::from_utf8_lossy(&out.stdout);
    code.trim()
        .parse()
        .with_context(|| format!("curl printed {code:?}, not a status code"))
}

/// The CNCF Distribution registry (`docker-registry` from Debian), without
/// auth and with deletes enabled: the peer kiln is compared with.
pub struct DistributionRegistry {
    server: Server,
    port: u16,
    scratch: Scratch,
}

impl DistributionRegistry {
    pub fn start() -> Result<Self> {
        let scratch = Scratch::new("distribution")?;
        let data = scratch.mkdir("data")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let config = scratch.join(format!("config-{attempt}.yml"));
            write_file(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                     delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    data.display()
                ),
            )?;
            let log = scratch.join(format!("distribution-{attempt}.log"));
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&config);
            let mut server = Server::spawn("docker-registry", &mut cmd, &log)?;
            match wait_registry_ready(&mut server, port) {
                Ok(()) => {
                    return Ok(Self {
                        server,
                        port,
                        scratch,
                    });
                }
                Err(e) if attempt < 3 && server.log().contains("in use") => {
                    eprintln!("port {port} was taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

impl RegistryServer for DistributionRegistry {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The registry the client tests run against: kiln's, unless
/// `KILN_E2E_PEER_REGISTRY=1` asks for the Distribution registry instead
/// (to tell a kiln bug from a test or client problem).
pub fn start_registry_under_test() -> Result<Box<dyn RegistryServer>> {
    if std::env::var("KILN_E2E_PEER_REGISTRY").is_ok_and(|v| v == "1") {
        eprintln!("KILN_E2E_PEER_REGISTRY=1: testing docker-registry instead of kiln");
        Ok(Box::new(DistributionRegistry::start()?))
    } else {
        Ok(Box::new(KilnRegistry::start()?))
    }
}

/// `echo -n PASSWORD | kiln registry hash-password`: a PHC argon2id string.
pub fn hash_password(password: &str) -> Result<String> {
    let out = kiln()
        .args(["registry", "hash-password"])
        .run_opts(RunOpts::stdin(password.as_bytes()))?
        .ok()?;
    let hash = out.last_line().to_owned();
    if !hash.starts_with("$argon2") {
        bail!("kiln registry hash-password printed {hash:?}, expected a PHC argon2 string");
    }
    Ok(hash)
}

/// One `[[auth.grants]]` entry.
#[derive(Debug, Clone)]
pub struct Grant {
    pub users: Vec<String>,
    pub repositories: Vec<String>,
    pub actions: Vec<String>,
}

/// Builds the `[auth]` section of a registry config, hashing passwords with
/// the real `kiln registry hash-password`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub service: String,
    pub anonymous_pull: bool,
    pub users: Vec<(String, String)>,
    pub grants: Vec<Grant>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            service: "kiln".to_owned(),
            anonymous_pull: false,
            users: Vec::new(),
            grants: Vec::new(),
        }
    }
}

impl AuthConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// The common case: one user allowed everything everywhere.
    pub fn single_admin(user: &str, password: &str) -> Self {
        Self::new()
            .user(user, password)
            .grant(&[user], &["**"], &["pull", "push", "delete"])
    }

    pub fn anonymous_pull(mut self, allowed: bool) -> Self {
        self.anonymous_pull = allowed;
        self
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    pub fn grant(mut self, users: &[&str], repositories: &[&str], actions: &[&str]) -> Self {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        self.grants.push(Grant {
            users: own(users),
            repositories: own(repositories),
            actions: own(actions),
        });
        self
    }

    /// The TOML text (passwords hashed now).
    pub fn to_toml(&self) -> Result<String> {
        let mut t = String::new();
        writeln!(t, "[auth]")?;
        writeln!(t, "service = {}", toml_str(&self.service))?;
        writeln!(t, "anonymous_pull = {}", self.anonymous_pull)?;
        // argon2 is slow in debug builds: hash all passwords at once
        let hashes: Vec<Result<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .users
                .iter()
                .map(|(_, password)| s.spawn(move || hash_password(password)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("hashing thread panicked")))
                })
                .collect()
        });
        for ((name, _), hash) in self.users.iter().zip(hashes) {
            writeln!(t, "\n[[auth.users]]")?;
            writeln!(t, "name = {}", toml_str(name))?;
            writeln!(t, "password_hash = {}", toml_str(&hash?))?;
        }
        for g in &self.grants {
            writeln!(t, "\n[[auth.grants]]")?;
            writeln!(t, "users = {}", toml_list(&g.users))?;
            writeln!(t, "repositories = {}", toml_list(&g.repositories))?;
            writeln!(t, "actions = {}", toml_list(&g.actions))?;
        }
        Ok(t)
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The Docker token flow by hand: returns the bearer token that
/// `GET realm?service=..&scope=..` hands out for `user:password`
/// (or anonymously when `creds` is None).
pub fn fetch_token(
    realm: &str,
    service: &str,
    scope: &str,
    creds: Option<(&str, &str)>,
) -> Result<http::Response> {
    let url = format!(
        "{realm}?service={}&scope={}",
        http::query_escape(service),
        http::query_escape(scope)
    );
    let mut req = http::get(&url);
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, p);
    }
    req.send()
}

/// Parses `Bearer realm="..",service="..",scope=".."` into key/value pairs.
pub fn parse_www_authenticate(header: &str) -> Result<Vec<(String, String)>> {
    let rest = header
        .strip_prefix("Bearer ")
        .with_context(|| format!("not a Bearer challenge: {header:?}"))?;
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s
            .split_once('=')
            .with_context(|| format!("bad challenge {header:?}"))?;
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .with_context(|| format!("unterminated quote in {header:?}"))?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        s = after.trim_start_matches(',').trim();
    }
    Ok(out)
}
