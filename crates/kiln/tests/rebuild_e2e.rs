//! End-to-end test of automatic cascading rebuilds (issue 5, "Acceptance"):
//! the real `kiln serve` with two workers and the package repository watcher
//! polling every second, real RPMs in a repository made with createrepo_c
//! and served over HTTP, `dnf install` inside the builds, and podman to look
//! inside the rebuilt images.
//!
//! The lineage is the one crates/kiln-hub/tests/rebuild.rs checks rule by
//! rule with a scripted worker: B (FROM the dnf base) installs kiln-foo, L1
//! (FROM B) installs kiln-bar, L2 (FROM L1) installs nothing, U (FROM the
//! dnf base) installs nothing either. Publishing kiln-foo-1.1 in the
//! repository, with no API call, must rebuild B, then L1 on the new B, then
//! L2 on the new L1, and leave U alone; publishing kiln-bar-1.1 must rebuild
//! L1 and L2 only.
//!
//! Needs root, podman, createrepo_c, rpmbuild (the rebuild-rpms fixture)
//! and, once, the Debian mirror to build the dnf-base fixture. Nine builds,
//! five of them running dnf: a minute or two.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use common::buildcmp::cached_fixture;
use common::service::{
    GitRepo, KilnServe, created_id, dockerfile, ensure_state, nvr_text, pull_and_run,
    serve_rpm_repo, str_field,
};
use common::{RunExt, Server};

const TARGET: &str = "fedora";
const DEST_TAG: &str = "fedora-candidate";
/// The watcher polls every second; a published package that is not
/// noticed within this long never will be.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole cascade: up to three builds one after the other, two of them
/// running dnf without the layer cache, each pulling and pushing (about
/// ten seconds here). Kept below nextest's limit for the whole test (five
/// minutes, .config/nextest.toml), so that a stuck cascade is reported
/// with its event and logs instead of killed silently.
const CASCADE_TIMEOUT: Duration = Duration::from_secs(180);
/// Lines of a build's log an error report shows.
const LOG_TAIL_LINES: usize = 150;

/// The images, parents before children.
const IMAGES: [&str; 4] = ["b", "l1", "l2", "u"];

/// The image each image is built FROM, when it is one of ours.
fn parent_of(image: &str) -> Option<&'static str> {
    match image {
        "l1" => Some("b"),
        "l2" => Some("l1"),
        _ => None,
    }
}

/// The package repository the target injects into builds and the watcher
/// polls: a directory of RPMs indexed by createrepo_c, served over HTTP.
struct PackageRepo {
    dir: PathBuf,
    /// Every version of every package (the rebuild-rpms fixture).
    rpms: PathBuf,
    port: u16,
    _http: Server,
}

impl PackageRepo {
    /// A repository in `dir` holding `packages` (fixture file names
    /// without `.rpm`).
    fn create(dir: &Path, log: &Path, packages: &[&str]) -> Result<Self> {
        let rpms = cached_fixture("rebuild-rpms.sh")?.join("rpms");
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        for p in packages {
            copy_rpm(&rpms, dir, p)?;
        }
        Command::new("createrepo_c").arg("-q").arg(dir).run_ok()?;
        let (http, port) = serve_rpm_repo(dir, log)?;
        Ok(Self {
            dir: dir.to_owned(),
            rpms,
            port,
            _http: http,
        })
    }

    fn baseurl(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Adds `package` and indexes the repository again, as a distribution
    /// publishing an update does.
    fn publish(&self, package: &str) -> Result<()> {
        copy_rpm(&self.rpms, &self.dir, package)?;
        Command::new("createrepo_c")
            .args(["-q", "--update"])
            .arg(&self.dir)
            .run_ok()?;
        Ok(())
    }
}

fn copy_rpm(from: &Path, to: &Path, package: &str) -> Result<()> {
    let file = format!("{package}.rpm");
    fs::copy(from.join(&file), to.join(&file))
        .with_context(|| format!("copy {file} from {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// `kiln serve` with the target that takes automatic rebuilds, and the
/// package repository it watches.
struct Service {
    svc: KilnServe,
    repo: PackageRepo,
    started: Instant,
}

impl Service {
    fn addr(&self) -> String {
        self.svc.addr()
    }

    fn progress(&self, what: &str) {
        eprintln!("[{:>6.1?}] {what}", self.started.elapsed());
    }

    /// `registry/kiln/IMAGE`: the repository an image is pushed to.
    fn image_repo(&self, image: &str) -> String {
        format!("{}/kiln/{image}", self.addr())
    }

    /// The Dockerfile of `image`.
    fn dockerfile(&self, image: &str, base: &str) -> String {
        let (from, body) = match image {
            "b" => (
                base.to_owned(),
                "RUN dnf -y install kiln-foo && dnf clean all\n",
            ),
            "l1" => (
                format!("{}:latest", self.image_repo("b")),
                "RUN dnf -y install kiln-bar && dnf clean all\n",
            ),
            "l2" => (
                format!("{}:latest", self.image_repo("l1")),
                "RUN echo l2 > /etc/l2-marker\n",
            ),
            _ => (base.to_owned(), "RUN echo u > /etc/u-marker\n"),
        };
        dockerfile(&from, image, &format!("kiln/{image}"), "1.0", None, body)
    }

    /// Builds what `repo` holds by hand and waits for it to complete.
    fn build(&self, repo: &GitRepo) -> Result<Value> {
        let out = self.svc.client.build_and_wait(&repo.dir, TARGET, None)?;
        let id = created_id(&out)?;
        let b = self.svc.client.build_record(id)?;
        if b["state"] != "complete" {
            bail!(
                "build {id} of {} is {} ({}); container-build said:\n{}\nlog:\n{}",
                repo.dir.display(),
                b["state"],
                b["reason"],
                out.combined(),
                self.log_tail(id)
            );
        }
        Ok(b)
    }

    fn log_tail(&self, id: i64) -> String {
        match self.svc.client.log(id) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(no log: {e:#})"),
        }
    }

    fn events(&self) -> Result<Vec<Value>> {
        let v = self.svc.client.get_json("/api/v1/rebuild-events")?;
        v.as_array()
            .cloned()
            .with_context(|| format!("rebuild events are no list: {v}"))
    }

    fn event(&self, id: i64) -> Result<Value> {
        self.svc
            .client
            .get_json(&format!("/api/v1/rebuild-events/{id}"))
    }

    /// Waits for the watcher's event announcing `update`; returns its id.
    fn wait_for_event(&self, update: &str) -> Result<i64> {
        let deadline = Instant::now() + NOTICE_TIMEOUT;
        loop {
            let events = self.events()?;
            let found = events.iter().find(|e| {
                e["updates"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|p| p == update))
            });
            if let Some(ev) = found {
                ensure!(
                    ev["trigger"] == "repo-watch",
                    "the event announcing {update} did not come from the repository watcher: {ev:#}"
                );
                let id = ev["id"]
                    .as_i64()
                    .with_context(|| format!("event id: {ev}"))?;
                self.progress(&format!("rebuild event {id} announces {update}"));
                return Ok(id);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no rebuild event announces {update} {NOTICE_TIMEOUT:?} after it was \
                     published at {}; events: {events:#?}",
                    self.repo.baseurl()
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until event `id` is neither pending nor running; returns
    /// `{"event", "items"}`.
    fn wait_event_end(&self, id: i64) -> Result<Value> {
        let deadline = Instant::now() + CASCADE_TIMEOUT;
        let mut seen = String::new();
        loop {
            let info = self.event(id)?;
            let now = item_states(&info);
            if now != seen {
                self.progress(&format!(
                    "event {id} {}: {now}",
                    info["event"]["state"].as_str().unwrap_or("?")
                ));
                seen = now;
            }
            if !matches!(info["event"]["state"].as_str(), Some("pending" | "running")) {
                return Ok(info);
            }
            if Instant::now() >= deadline {
                bail!(
                    "rebuild event {id} has not ended within {CASCADE_TIMEOUT:?}\n{}",
                    self.report(&info)
                );
            }
            thread::sleep(Duration::from_secs(1));
        }
    }

    /// The event as JSON and the logs of the builds that did not
    /// complete (its items' latest attempts, and every failed build, which
    /// covers attempts that were retried): what a failed check needs to be
    /// understood.
    fn report(&self, info: &Value) -> String {
        let mut out = format!(
            "rebuild event:\n{}",
            serde_json::to_string_pretty(info).unwrap_or_default()
        );
        let mut shown = BTreeSet::new();
        for it in info["items"].as_array().into_iter().flatten() {
            let Some(id) = it["build_id"].as_i64() else {
                continue;
            };
            let state = self
                .svc
                .client
                .build_record(id)
                .map(|b| b["state"].as_str().unwrap_or("?").to_owned())
                .unwrap_or_else(|e| format!("unknown ({e:#})"));
            if state != "complete" {
                shown.insert(id);
                out.push_str(&format!(
                    "\n\n--- build {id} ({}) is {state}; its log ends:\n{}",
                    it["repository"],
                    self.log_tail(id)
                ));
            }
        }
        match self.svc.client.get_json("/api/v1/builds?state=failed") {
            Ok(failed) => {
                for b in failed.as_array().into_iter().flatten() {
                    let Some(id) = b["id"].as_i64().filter(|id| shown.insert(*id)) else {
                        continue;
                    };
                    out.push_str(&format!(
                        "\n\n--- build {id} ({}) failed: {}; its log ends:\n{}",
                        b["nvr"],
                        b["reason"],
                        self.log_tail(id)
                    ));
                }
            }
            Err(e) => out.push_str(&format!("\n\n(failed builds unknown: {e:#})")),
        }
        out
    }

    /// The builds on the destination tag, most recently tagged first.
    fn tagged(&self) -> Result<Vec<Value>> {
        let v = self
            .svc
            .client
            .get_json(&format!("/api/v1/tags/{DEST_TAG}/builds"))?;
        v.as_array()
            .cloned()
            .with_context(|| format!("tagged builds are no list: {v}"))
    }

    /// The latest build of `image` on the destination tag.
    fn latest_tagged(&self, image: &str) -> Result<Value> {
        self.tagged()?
            .into_iter()
            .filter(|b| b["nvr"]["name"] == image)
            .max_by_key(|b| b["id"].as_i64())
            .with_context(|| format!("no build of {image} on {DEST_TAG}"))
    }

    /// `rpm -q PACKAGE` inside the image of build `b`, pulled by its NVR tag.
    fn rpm_q(&self, b: &Value, package: &str) -> Result<String> {
        let image = format!(
            "{}:{}-{}",
            self.image_repo(str_field(&b["nvr"], "name")?),
            str_field(&b["nvr"], "version")?,
            str_field(&b["nvr"], "release")?
        );
        ensure!(
            b["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == image.as_str())),
            "build {} was not pushed as {image}: tags {}",
            b["id"],
            b["tags"]
        );
        let out = pull_and_run(&self.svc.tools, &image, &["rpm", "-q", package])?;
        Ok(out.stdout.trim().to_owned())
    }
}

/// `repository=state(build)` of each item, for progress lines.
fn item_states(info: &Value) -> String {
    info["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|it| {
            format!(
                "{}={}({})",
                it["repository"].as_str().unwrap_or("?"),
                it["state"].as_str().unwrap_or("?"),
                it["build_id"]
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `version-release` of package `name` in a build's package list.
fn package_vr(b: &Value, name: &str) -> Option<String> {
    let p = b["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?;
    Some(format!(
        "{}-{}",
        p["version"].as_str().unwrap_or("?"),
        p["release"].as_str().unwrap_or("?")
    ))
}

fn id_of(b: &Value) -> Result<i64> {
    b["id"]
        .as_i64()
        .with_context(|| format!("build without id: {b}"))
}

fn release_number(b: &Value) -> Result<u64> {
    let r = str_field(&b["nvr"], "release")?;
    r.parse()
        .with_context(|| format!("build {}: release {r:?} is no number", b["id"]))
}

/// What one event must have done: rebuilt exactly `images`, each
/// from its `before` build, so that it holds `package` at `vr`.
struct Expected<'a> {
    update: &'a str,
    images: &'a [&'a str],
    package: &'a str,
    vr: &'a str,
    before: &'a BTreeMap<&'static str, Value>,
}

/// Checks a finished event against `want`; returns the new builds by image.
fn check_event(
    s: &Service,
    info: &Value,
    want: &Expected,
) -> Result<BTreeMap<&'static str, Value>> {
    let ev = &info["event"];
    ensure!(ev["state"] == "complete", "event state {}", ev["state"]);
    ensure!(
        ev["trigger"] == "repo-watch",
        "event trigger {}",
        ev["trigger"]
    );
    ensure!(
        ev["updates"] == json!([want.update]),
        "event updates {} (expected exactly {})",
        ev["updates"],
        want.update
    );
    let items = info["items"].as_array().context("event without items")?;
    let repos: Vec<&str> = items
        .iter()
        .filter_map(|it| it["repository"].as_str())
        .collect();
    let want_repos: BTreeSet<&str> = want.images.iter().copied().collect();
    ensure!(
        repos.len() == want.images.len()
            && repos.iter().copied().collect::<BTreeSet<_>>() == want_repos,
        "the event's items are {repos:?}, expected exactly {:?}",
        want.images
    );

    let mut new: BTreeMap<&'static str, Value> = BTreeMap::new();
    for &image in IMAGES.iter().filter(|i| want.images.contains(i)) {
        let it = items
            .iter()
            .find(|it| it["repository"] == image)
            .context("item vanished")?;
        let before = &want.before[image];
        ensure!(it["state"] == "complete", "item {image}: {it:#}");
        ensure!(
            it["original_build_id"] == before["id"],
            "item {image} rebuilds build {}, not the latest one {}",
            it["original_build_id"],
            before["id"]
        );
        let id = it["build_id"]
            .as_i64()
            .with_context(|| format!("item {image} has no build: {it:#}"))?;
        let b = s.svc.client.build_record(id)?;
        ensure_state(&b, "complete")?;
        ensure!(
            it["build_state"] == "complete",
            "item {image}: build_state {}",
            it["build_state"]
        );
        ensure!(
            b["nvr"]["name"] == before["nvr"]["name"]
                && b["nvr"]["version"] == before["nvr"]["version"],
            "build {id} of {image} is {}, not a new release of {}",
            b["nvr"],
            before["nvr"]
        );
        ensure!(
            release_number(&b)? > release_number(before)?,
            "build {id} of {image}: release {} is not above the original's {}",
            b["nvr"]["release"],
            before["nvr"]["release"]
        );
        ensure!(
            it["build_nvr"] == format!("{image}-1.0-{}", release_number(&b)?),
            "item {image}: build_nvr {}",
            it["build_nvr"]
        );
        ensure!(
            b["commit"] == before["commit"] && b["source_url"] == before["source_url"],
            "build {id} of {image} built {} {}, the original {} {}",
            b["source_url"],
            b["commit"],
            before["source_url"],
            before["commit"]
        );
        ensure!(
            b["no_cache"] == true,
            "the rebuild {id} of {image} used the layer cache"
        );
        ensure!(
            b["rebuild_item_id"] == it["id"],
            "build {id} names rebuild item {}, not {}",
            b["rebuild_item_id"],
            it["id"]
        );
        let got = package_vr(&b, want.package);
        ensure!(
            got.as_deref() == Some(want.vr),
            "build {id} of {image} holds {} {got:?}, expected {}; packages: {}",
            want.package,
            want.vr,
            b["packages"]
        );
        // Every image rebuilt holds the old version, its own or its parent's.
        let reasons = it["reasons"].to_string();
        ensure!(
            reasons.contains(&format!("directly affected by {}", want.update)),
            "item {image}: reasons {reasons}"
        );
        if let Some(p) = parent_of(image).filter(|p| want.images.contains(p)) {
            ensure!(
                reasons.contains(&format!("parent {p} rebuilt")),
                "item {image}: reasons {reasons}"
            );
        }
        new.insert(image, b);
    }

    // Children are built after, and on, their parents' new builds.
    for &image in want.images {
        let b = &new[image];
        match parent_of(image) {
            Some(p) if want.images.contains(&p) => {
                let parent = &new[p];
                ensure!(
                    b["parent_build_id"] == parent["id"],
                    "the new {image} (build {}) was built on build {}, not the new {p} {}",
                    b["id"],
                    b["parent_build_id"],
                    parent["id"]
                );
                ensure!(
                    id_of(b)? > id_of(parent)?,
                    "the new {image} (build {}) was created before the new {p} (build {})",
                    b["id"],
                    parent["id"]
                );
                let started = str_field(b, "started_at")?;
                let parent_done = str_field(parent, "completed_at")?;
                // RFC 3339 UTC with whole seconds: ordered as text.
                ensure!(
                    started >= parent_done,
                    "the new {image} started at {started}, before the new {p} completed at {parent_done}"
                );
                let pin = format!(
                    "{}@{}",
                    s.image_repo(p),
                    str_field(parent, "manifest_digest")?
                );
                ensure!(
                    b["parent_pin"] == pin.as_str(),
                    "the new {image}'s FROM is pinned to {}, not {pin}",
                    b["parent_pin"]
                );
                ensure!(
                    b["parent_digest"] == parent["manifest_digest"],
                    "the new {image} was built on {}, not {}",
                    b["parent_digest"],
                    parent["manifest_digest"]
                );
                let line = format!("FROM {}:latest pinned to {pin}", s.image_repo(p));
                let log = s.svc.client.log(id_of(b)?)?;
                ensure!(
                    log.contains(&line),
                    "the log of build {} lacks {line:?}:\n{log}",
                    b["id"]
                );
            }
            _ => {
                ensure!(
                    b["parent_build_id"] == want.before[image]["parent_build_id"],
                    "the new {image} (build {}) was built on build {}, the original on {}",
                    b["id"],
                    b["parent_build_id"],
                    want.before[image]["parent_build_id"]
                );
            }
        }
    }
    Ok(new)
}

/// Publishes `package` and waits for the cascade it starts; checks it
/// against `want` and returns the new builds.
fn cascade(
    s: &Service,
    package_file: &str,
    want: &Expected,
) -> Result<BTreeMap<&'static str, Value>> {
    s.repo.publish(package_file)?;
    s.progress(&format!("published {package_file}"));
    let id = s.wait_for_event(want.update)?;
    let info = s.wait_event_end(id)?;
    s.progress(&format!(
        "event {id} ended {}: {}",
        info["event"]["state"], info["event"]["message"]
    ));
    // The failed check first, then what it was checked against.
    check_event(s, &info, want)
        .map_err(|e| anyhow!("rebuild event {id}: {e:#}\n\n{}", s.report(&info)))
}

/// The acceptance scenario of automatic rebuilds with real packages.
#[test]
fn a_published_package_rebuilds_the_images_that_hold_it_in_order() -> Result<()> {
    let svc = KilnServe::start("rebuild", &["--workers", "2", "--repo-poll-secs", "1"])?;
    let started = Instant::now();
    let base = svc.push_fixture("dnf-base-image.sh", "base/dnf-base")?;
    let repo = PackageRepo::create(
        &svc.scratch.join("repo"),
        &svc.scratch.join("repo-http.log"),
        &["kiln-foo-1.0-1.noarch", "kiln-bar-1.0-1.noarch"],
    )?;
    let s = Service { svc, repo, started };
    let target = json!({
        "name": TARGET,
        "allowed_parents": [],
        "repos": [{"name": "kiln-test", "baseurl": s.repo.baseurl(), "gpgcheck": false}],
        "dest_tag": DEST_TAG,
        "registry": s.addr(),
        "autorebuild": true,
    });
    s.svc
        .client
        .put_json(&format!("/api/v1/targets/{TARGET}"), &target)?;
    let targets = s.svc.client.get_json("/api/v1/targets")?;
    ensure!(
        targets.as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["name"] == TARGET && t["autorebuild"] == true)),
        "target {TARGET} does not take automatic rebuilds: {targets:#}"
    );

    // The images, each built by hand, parents first.
    let mut original: BTreeMap<&'static str, Value> = BTreeMap::new();
    for image in IMAGES {
        let git = GitRepo::create(
            &s.svc.scratch.join(image),
            &[("Dockerfile", &s.dockerfile(image, &base))],
        )?;
        let b = s.build(&git)?;
        s.progress(&format!("built {image}: build {}", b["id"]));
        original.insert(image, b);
    }
    for image in ["b", "l1", "l2"] {
        let got = package_vr(&original[image], "kiln-foo");
        ensure!(
            got.as_deref() == Some("1.0-1"),
            "{image} holds kiln-foo {got:?}, expected 1.0-1: {}",
            original[image]["packages"]
        );
    }
    ensure!(
        package_vr(&original["u"], "kiln-foo").is_none(),
        "u holds kiln-foo: {}",
        original["u"]["packages"]
    );
    for (child, parent) in [("l1", "b"), ("l2", "l1")] {
        ensure!(
            original[child]["parent_build_id"] == original[parent]["id"],
            "{child}'s parent_build_id is {}, not {parent}'s build {}",
            original[child]["parent_build_id"],
            original[parent]["id"]
        );
    }
    ensure!(
        s.events()?.is_empty(),
        "rebuild events before any package was published: {:#?}",
        s.events()?
    );

    // kiln-foo-1.1 reaches B, L1 and L2, not U.
    let foo = cascade(
        &s,
        "kiln-foo-1.1-1.noarch",
        &Expected {
            update: "kiln-foo-1.1-1.noarch",
            images: &["b", "l1", "l2"],
            package: "kiln-foo",
            vr: "1.1-1",
            before: &original,
        },
    )?;
    let u = s.latest_tagged("u")?;
    ensure!(
        u["id"] == original["u"]["id"],
        "u's latest build is {} ({}), not the original {}",
        u["id"],
        u["nvr"],
        original["u"]["id"]
    );
    for image in ["b", "l1", "l2"] {
        let latest = s.latest_tagged(image)?;
        ensure!(
            latest["id"] == foo[image]["id"],
            "{image}'s latest build on {DEST_TAG} is {}, not the rebuild {}",
            latest["id"],
            foo[image]["id"]
        );
        let q = s.rpm_q(&foo[image], "kiln-foo")?;
        ensure!(
            q == "kiln-foo-1.1-1.noarch",
            "rpm -q kiln-foo in the new {image} printed {q:?}"
        );
    }
    s.progress("kiln-foo-1.1 is in the rebuilt b, l1 and l2");

    // kiln-bar-1.1 reaches L1 and L2 only.
    let mut latest = original.clone();
    latest.extend(foo.clone());
    let bar = cascade(
        &s,
        "kiln-bar-1.1-1.noarch",
        &Expected {
            update: "kiln-bar-1.1-1.noarch",
            images: &["l1", "l2"],
            package: "kiln-bar",
            vr: "1.1-1",
            before: &latest,
        },
    )?;
    for image in ["b", "u"] {
        let now = s.latest_tagged(image)?;
        ensure!(
            now["id"] == latest[image]["id"],
            "{image}'s latest build is {} ({}), not {} from before kiln-bar-1.1",
            now["id"],
            now["nvr"],
            latest[image]["id"]
        );
    }
    ensure!(
        package_vr(&bar["l2"], "kiln-foo").as_deref() == Some("1.1-1"),
        "the newest l2 lost kiln-foo-1.1: {}",
        bar["l2"]["packages"]
    );
    let q = s.rpm_q(&bar["l2"], "kiln-bar")?;
    ensure!(
        q == "kiln-bar-1.1-1.noarch",
        "rpm -q kiln-bar in the newest l2 printed {q:?}"
    );

    // Nothing else happened: two events, nine builds.
    let events = s.events()?;
    ensure!(
        events.len() == 2
            && events
                .iter()
                .all(|e| e["trigger"] == "repo-watch" && e["state"] == "complete"),
        "expected the two repo-watch events only: {events:#?}"
    );
    let builds = s.svc.client.get_json("/api/v1/builds?limit=1000")?;
    let builds = builds.as_array().context("builds are no list")?;
    ensure!(
        builds.len() == IMAGES.len() + 3 + 2,
        "{} builds, expected 4 by hand and 5 rebuilds: {:#?}",
        builds.len(),
        builds
            .iter()
            .map(|b| format!("{} {} {}", b["id"], b["nvr"], b["state"]))
            .collect::<Vec<_>>()
    );

    // The same story through the command line.
    let cli = |args: &[&str]| s.svc.client.kiln().args(args).run_ok();
    let held = cli(&["images-with", "kiln-foo", "--json"])?;
    let held: Vec<Value> = serde_json::from_str(&held.stdout).context("images-with --json")?;
    let mut holders: Vec<String> = held
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["nvr"].as_str().unwrap_or("?"),
                m["package"].as_str().unwrap_or("?")
            )
        })
        .collect();
    holders.sort();
    ensure!(
        holders.len() == 3 && holders.iter().all(|h| h.ends_with("kiln-foo-1.1-1.noarch")),
        "kiln images-with kiln-foo: {holders:?}"
    );
    let old = cli(&["images-with", "kiln-foo<1.1"])?;
    ensure!(
        old.stdout.trim().is_empty(),
        "no latest image should hold kiln-foo<1.1: {}",
        old.stdout
    );
    let listed = cli(&["events"])?;
    for e in &events {
        let id = e["id"].to_string();
        ensure!(
            listed.stdout.contains(&id),
            "kiln events lacks event {id}: {}",
            listed.stdout
        );
    }
    let last = events[0]["id"].to_string();
    let info = cli(&["event-info", &last])?;
    ensure!(
        info.stdout.contains("kiln-bar-1.1-1.noarch") && info.stdout.contains("l2"),
        "kiln event-info {last}: {}",
        info.stdout
    );
    let l1 = nvr_text(&bar["l1"])?;
    let tree = cli(&["lineage", &l1])?;
    ensure!(
        tree.stdout.contains(&nvr_text(&bar["l2"])?) && tree.stdout.contains(&nvr_text(&foo["b"])?),
        "kiln lineage {l1} shows neither its parent nor its child: {}",
        tree.stdout
    );
    s.progress("done");
    Ok(())
}
