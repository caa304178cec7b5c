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

use anyhow::{Context, Result, ensure};
use rustix::process::Signal;
use serde_json::Value;

use common::buildcmp::cached_fixture;
use common::process::kill_group;
use common::registry::kiln;
use common::service::{
    GitRepo, HubClient, KilnServe, created_id, dockerfile, ensure_state, nvr_text, pull_and_run,
    push_fixture, registry_digests, serve_rpm_repo, start_listening, str_field,
};
use common::{ContainerTools, KilnRegistry, RegistryServer, RunExt, Scratch, Server};

// ------------------------------------------------------------- harness --

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
