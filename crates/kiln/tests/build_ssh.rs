//! End-to-end `RUN --mount=type=ssh` with the real `kiln build`: a real
//! `ssh-agent` forwarded with `--ssh`, key files served by kiln's own agent,
//! the socket's place, owner and mode in the sandbox, `SSH_AUTH_SOCK`, what
//! is left in the image (nothing), required agents that are missing, and
//! the build cache.
//!
//! The busybox base has no ssh client, and busybox's `nc` speaks no Unix
//! sockets: the RUN steps use the host's `ssh-add` with the libraries it
//! loads, bind-mounted from the build context and started through the
//! host's dynamic loader. Needs root and openssh-client
//! (`scripts/install-test-deps.sh`).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use common::buildcmp::{BuildEnv, FetchedImage};
use common::process::{Output, RunOpts, write_file};
use common::registry::kiln_bin;
use common::rootfs::Kind;
use common::{RegistryServer, RunExt, Scratch, Server, unique_repo};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// How a RUN step starts the host's ssh-add bundled by [`ssh_add_bundle`].
const SSH_ADD: &str = "/tools/ld.so --library-path /tools /tools/ssh-add";

/// A registry with the busybox-full base, and a short scratch directory
/// (agent sockets live there).
struct World {
    env: BuildEnv,
    base: String,
    short: Scratch,
}

impl World {
    fn start() -> Result<Self> {
        let env = BuildEnv::start()?;
        let base = env.push_busybox_base()?;
        Ok(Self {
            env,
            base,
            short: Scratch::new_short("ssh")?,
        })
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        self.env.scratch.mkdir(name)
    }
}

/// A real `ssh-agent` in the foreground, stopped when dropped.
struct Agent {
    socket: PathBuf,
    _server: Server,
}

impl Agent {
    fn start(socket: &Path, log: &Path) -> Result<Self> {
        let server = Server::spawn(
            "ssh-agent",
            Command::new("ssh-agent").arg("-D").arg("-a").arg(socket),
            log,
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            ensure!(
                Instant::now() < deadline,
                "ssh-agent made no socket at {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            socket: socket.to_owned(),
            _server: server,
        })
    }

    fn add(&self, key: &Path) -> Result<()> {
        Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .run_ok()?;
        Ok(())
    }
}

/// `ssh-keygen -t TYPE -N ''` into `dir/name`; returns the private key's
/// path and the key's `SHA256:` fingerprint.
fn keygen(dir: &Path, name: &str, kind: &str) -> Result<(PathBuf, String)> {
    let key = dir.join(name);
    Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C"])
        .arg(format!("{name}@kiln-e2e"))
        .arg("-f")
        .arg(&key)
        .run_ok()?;
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .run_ok()?;
    let fingerprint = out
        .stdout
        .split_whitespace()
        .nth(1)
        .filter(|f| f.starts_with("SHA256:"))
        .with_context(|| format!("no fingerprint in {:?}", out.stdout))?
        .to_owned();
    Ok((key, fingerprint))
}

/// Copies the host's ssh-add, the libraries it loads and the dynamic loader
/// (as `ld.so`) into `dest`.
fn ssh_add_bundle(dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let ssh_add = PathBuf::from("/usr/bin/ssh-add");
    let ldd = Command::new("ldd").arg(&ssh_add).run_ok()?;
    let mut loader = None;
    for line in ldd.stdout.lines() {
        let line = line.trim();
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let path = Path::new(path);
        let name = path.file_name().context("library without a name")?;
        fs::copy(path, dest.join(name)).with_context(|| format!("copy {}", path.display()))?;
        if !line.contains(" => ") {
            loader = Some(path.to_owned());
        }
    }
    let loader = loader.with_context(|| format!("no loader in `ldd ssh-add`:\n{}", ldd.stdout))?;
    fs::copy(&loader, dest.join("ld.so"))?;
    fs::copy(&ssh_add, dest.join("ssh-add"))?;
    Ok(())
}

/// A build context: `Dockerfile`, the ssh-add bundle in `tools/`, and
/// `files`.
fn context(dir: &Path, dockerfile: &str, files: &[(&str, &Path)]) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    write_file(&dir.join("Dockerfile"), dockerfile)?;
    ssh_add_bundle(&dir.join("tools"))?;
    for (rel, src) in files {
        fs::copy(src, dir.join(rel)).with_context(|| format!("copy {}", src.display()))?;
    }
    Ok(dir.to_owned())
}

/// `kiln build --root ROOT ARGS... CONTEXT`, with no SSH_AUTH_SOCK but the
/// one `agent` gives; the output whatever the exit status.
fn kiln_build(root: &Path, ctx: &Path, args: &[&str], agent: Option<&Path>) -> Result<Output> {
    let mut cmd = Command::new(kiln_bin());
    cmd.env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILD_ROOT")
        .env_remove("SSH_AUTH_SOCK");
    if let Some(sock) = agent {
        cmd.env("SSH_AUTH_SOCK", sock);
    }
    cmd.arg("build")
        .arg("--root")
        .arg(root)
        .args(args)
        .arg(ctx)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))
}

/// The content of `path` in a fetched image's root, trimmed.
fn read(rootfs: &Path, path: &str) -> Result<String> {
    let p = rootfs.join(path.trim_start_matches('/'));
    Ok(fs::read_to_string(&p)
        .with_context(|| format!("{path} is not in the image"))?
        .trim()
        .to_owned())
}

/// Fails if anything of the ssh mounts or the tools bundle is in the image.
fn ensure_nothing_left(fetched: &FetchedImage, extra: &[&str]) -> Result<()> {
    for path in ["/run", "/run/buildkit", "/tools"].iter().chain(extra) {
        ensure!(
            fetched.snapshot.get(path).is_none(),
            "{path} is in the image"
        );
    }
    let sockets: Vec<&String> = fetched
        .snapshot
        .entries
        .iter()
        .filter(|(_, e)| e.kind == Kind::Socket)
        .map(|(p, _)| p)
        .collect();
    ensure!(sockets.is_empty(), "sockets in the image: {sockets:?}");
    Ok(())
}

/// The `[N/M] INSTRUCTION` lines of a build's stderr, each with whether
/// `--> Using cache` followed it.
fn cached_steps(stderr: &str) -> Vec<(String, bool)> {
    let mut steps: Vec<(String, bool)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((counter, instruction)) = rest.split_once("] ")
            && counter.contains('/')
            && counter.chars().all(|c| c.is_ascii_digit() || c == '/')
        {
            steps.push((instruction.to_owned(), false));
        } else if line == "--> Using cache"
            && let Some(last) = steps.last_mut()
        {
            last.1 = true;
        }
    }
    steps
}

fn run_step_cached(out: &Output, marker: &str) -> Result<bool> {
    let steps = cached_steps(&out.stderr);
    match steps.iter().find(|(i, _)| i.contains(marker)) {
        Some((_, cached)) => Ok(*cached),
        None => bail!("no step with {marker:?} in:\n{}", out.stderr),
    }
}

#[test]
fn forwarded_agent_is_usable_in_run_and_leaves_nothing() -> Result<()> {
    let w = World::start()?;
    let keys = w.dir("keys")?;
    let (key, fingerprint) = keygen(&keys, "forwarded", "ed25519")?;
    let agent = Agent::start(
        &w.short.join("agent.sock"),
        &w.env.scratch.join("agent.log"),
    )?;
    agent.add(&key)?;

    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {base}\n\
             RUN --mount=type=ssh --mount=type=bind,source=tools,target=/tools \
                 test -S /run/buildkit/ssh_agent.0 \
                 && echo \"$SSH_AUTH_SOCK\" > /default-env \
                 && stat -c '%u:%g %a' /run/buildkit/ssh_agent.0 > /default-stat \
                 && {SSH_ADD} -l > /default-keys\n\
             RUN --mount=type=ssh,id=other,target=/tmp/other.sock,uid=1000,gid=1000,mode=0660 \
                 --mount=type=ssh,id=default \
                 --mount=type=bind,source=tools,target=/tools \
                 test -S /tmp/other.sock && test -S /run/buildkit/ssh_agent.1 \
                 && echo \"$SSH_AUTH_SOCK\" > /other-env \
                 && stat -c '%u:%g %a' /tmp/other.sock > /other-stat \
                 && SSH_AUTH_SOCK=/run/buildkit/ssh_agent.1 {SSH_ADD} -l > /second-keys\n\
             RUN --mount=type=ssh,id=absent echo \"${{SSH_AUTH_SOCK:-unset}}\" > /absent-env \
                 && if test -e /run/buildkit/ssh_agent.0; then echo there; else echo none; fi > /absent\n\
             RUN echo \"${{SSH_AUTH_SOCK:-unset}}\" > /after-env\n",
            base = w.base
        ),
        &[],
    )?;
    let image = w.env.registry.image(&unique_repo("ssh-forward"), "latest");
    kiln_build(
        &w.dir("root")?,
        &ctx,
        &[
            "--ssh",
            "default",
            "--ssh",
            &format!("other={}", agent.socket.display()),
            "-t",
            &image,
            "--push",
            "--tls-verify=false",
        ],
        Some(&agent.socket),
    )?
    .ok()?;

    let fetched = w.env.fetch(&image)?;
    let root = &fetched.rootfs;
    // The agent answered REQUEST_IDENTITIES with its one key.
    let listed = read(root, "/default-keys")?;
    ensure!(
        listed.lines().count() == 1 && listed.contains(&fingerprint),
        "ssh-add -l in the RUN listed {listed:?}, expected {fingerprint}"
    );
    ensure!(read(root, "/default-env")? == "/run/buildkit/ssh_agent.0");
    ensure!(read(root, "/default-stat")? == "0:0 600");
    // The first ssh mount's target is SSH_AUTH_SOCK, default or not, and
    // the default target counts the RUN's ssh mounts.
    ensure!(read(root, "/other-env")? == "/tmp/other.sock");
    ensure!(read(root, "/other-stat")? == "1000:1000 660");
    ensure!(read(root, "/second-keys")?.contains(&fingerprint));
    // An optional agent that was not given: the RUN runs without a socket
    // (SSH_AUTH_SOCK is set all the same, as BuildKit does).
    ensure!(read(root, "/absent")? == "none");
    ensure!(read(root, "/absent-env")? == "/run/buildkit/ssh_agent.0");
    ensure!(read(root, "/after-env")? == "unset");
    ensure!(
        !fetched.container_config()["Env"]
            .to_string()
            .contains("SSH_AUTH_SOCK"),
        "SSH_AUTH_SOCK in the image config: {}",
        fetched.container_config()
    );
    ensure_nothing_left(&fetched, &["/tmp/other.sock"])?;
    Ok(())
}

#[test]
fn key_files_are_served_by_kiln() -> Result<()> {
    let w = World::start()?;
    let keys = w.dir("keys")?;
    let (ed, ed_fp) = keygen(&keys, "ed", "ed25519")?;
    let (ed2, ed2_fp) = keygen(&keys, "ed2", "ed25519")?;
    let ctx = context(
        &w.dir("ctx")?,
        &format!(
            "FROM {base}\n\
             RUN --mount=type=ssh,id=keys --mount=type=bind,source=tools,target=/tools \
                 --mount=type=bind,source=ed.pub,target=/ed.pub \
                 --mount=type=bind,source=ed2.pub,target=/ed2.pub \
                 {SSH_ADD} -l > /keys \
                 && {SSH_ADD} -T /ed.pub && {SSH_ADD} -T /ed2.pub && echo signed > /signed\n",
            base = w.base
        ),
        &[
            ("ed.pub", &ed.with_extension("pub")),
            ("ed2.pub", &ed2.with_extension("pub")),
        ],
    )?;
    let image = w.env.registry.image(&unique_repo("ssh-keys"), "latest");
    let keys_arg = format!("keys={},{}", ed.display(), ed2.display());
    kiln_build(
        &w.dir("root")?,
        &ctx,
        &[
            "--ssh",
            &keys_arg,
            "-t",
            &image,
            "--push",
            "--tls-verify=false",
        ],
        None,
    )?
    .ok()?;
    let fetched = w.env.fetch(&image)?;
    let listed = read(&fetched.rootfs, "/keys")?;
    ensure!(
        listed.lines().count() == 2 && listed.contains(&ed_fp) && listed.contains(&ed2_fp),
        "ssh-add -l listed {listed:?}, expected {ed_fp} and {ed2_fp}"
    );
    // ssh-add -T signs with each key through the socket and verifies.
    ensure!(read(&fetched.rootfs, "/signed")? == "signed");
    ensure_nothing_left(&fetched, &["/ed.pub", "/ed2.pub"])?;

    // A passphrase-protected key is refused before any step runs.
    let locked = keys.join("locked");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&locked)
        .run_ok()?;
    let out = kiln_build(
        &w.dir("root-locked")?,
        &ctx,
        &["--ssh", &format!("keys={}", locked.display())],
        None,
    )?
    .fail()?;
    ensure!(
        out.stderr.contains("--ssh keys: ") && out.stderr.contains("passphrase-protected"),
        "{}",
        out.stderr
    );

    // So is an RSA key file: kiln's agent signs with ed25519 only (constant
    // time); RSA keys go through a real agent's socket.
    let (rsa, _) = keygen(&keys, "rsa", "rsa")?;
    let out = kiln_build(
        &w.dir("root-rsa")?,
        &ctx,
        &["--ssh", &format!("keys={}", rsa.display())],
        None,
    )?
    .fail()?;
    ensure!(
        out.stderr.contains("--ssh keys: ") && out.stderr.contains("ssh-agent"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn required_agents_and_the_cache_key() -> Result<()> {
    let w = World::start()?;
    let keys = w.dir("keys")?;
    let (key, _) = keygen(&keys, "cache", "ed25519")?;

    // Required, not given: the id and the line are named.
    let ctx = w.dir("ctx-required")?;
    write_file(
        &ctx.join("Dockerfile"),
        format!(
            "FROM {}\nRUN true\nRUN --mount=type=ssh,id=deploy,required printf RAN%s OK\n",
            w.base
        ),
    )?;
    let df = ctx.join("Dockerfile").display().to_string();
    let agent = Agent::start(&w.short.join("a.sock"), &w.env.scratch.join("a.log"))?;
    agent.add(&key)?;
    let out = kiln_build(&w.dir("root-required")?, &ctx, &[], Some(&agent.socket))?.fail()?;
    for needle in [
        format!("{df}:3:"),
        "ssh agent \"deploy\" is required but was not given".to_string(),
    ] {
        ensure!(
            out.stderr.contains(&needle),
            "stderr lacks {needle:?}:\n{}",
            out.stderr
        );
    }
    ensure!(
        !out.stderr.contains("RANOK"),
        "the RUN ran:\n{}",
        out.stderr
    );
    // --ssh for another id does not help, `default` taking $SSH_AUTH_SOCK
    // neither.
    kiln_build(
        &w.dir("root-required2")?,
        &ctx,
        &["--ssh", "default"],
        Some(&agent.socket),
    )?
    .fail()?;

    // The agent's socket path is not part of the step's cache key; the
    // mount's target is.
    let ctx = w.dir("ctx-cache")?;
    let step = |target: &str| {
        format!(
            "FROM {}\nRUN --mount=type=ssh{target} test -S \"$SSH_AUTH_SOCK\" && echo ok > /ok\n",
            w.base
        )
    };
    write_file(&ctx.join("Dockerfile"), step(""))?;
    let root = w.dir("root-cache")?;
    let first = kiln_build(&root, &ctx, &["--ssh", "default"], Some(&agent.socket))?.ok()?;
    ensure!(!run_step_cached(&first, "--mount=type=ssh")?);
    let other = Agent::start(&w.short.join("b.sock"), &w.env.scratch.join("b.log"))?;
    let again = kiln_build(
        &root,
        &ctx,
        &["--ssh", &format!("default={}", other.socket.display())],
        None,
    )?
    .ok()?;
    ensure!(
        run_step_cached(&again, "--mount=type=ssh")?,
        "another agent socket missed the cache:\n{}",
        again.stderr
    );
    write_file(&ctx.join("Dockerfile"), step(",target=/tmp/a.sock"))?;
    let moved = kiln_build(&root, &ctx, &["--ssh", "default"], Some(&other.socket))?.ok()?;
    ensure!(
        !run_step_cached(&moved, "--mount=type=ssh")?,
        "another target hit the cache:\n{}",
        moved.stderr
    );
    Ok(())
}
