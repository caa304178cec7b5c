//! End-to-end tests of `kiln registry serve` with the real clients:
//! podman, skopeo, buildah and docker, with and without authentication.
//!
//! Each test starts its own registry (and, where needed, its own private
//! podman storage or Docker daemon), so tests are independent and run in
//! parallel. They need root, the packages of `scripts/install-test-deps.sh`,
//! and nothing from the network. `KILN_E2E_PEER_REGISTRY=1` runs the
//! unauthenticated tests against docker-registry instead, to tell a kiln bug
//! from a client or test problem.

mod common;

use std::fs;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use common::registry::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, fetch_token,
    parse_www_authenticate, start_registry_under_test,
};
use common::{
    AuthConfig, BusyboxImage, ContainerTools, DockerDaemon, KilnRegistry, RegistryOptions,
    RegistryServer, RunExt, RunOpts, Scratch, sha256_digest, unique_repo,
};

/// Where the tests put the fixture: a per-test copy of the cached image.
fn fixture(scratch: &Scratch) -> Result<BusyboxImage> {
    BusyboxImage::create(&scratch.join("fixture"))
}

/// Pulls `image` with podman, runs it without network and checks it greets.
fn pull_and_run_hello(tools: &ContainerTools, image: &str, what: &str) -> Result<()> {
    tools
        .podman()
        .args(["pull", "--tls-verify=false", image])
        .run_ok()?;
    let run = tools
        .podman()
        .args(["run", "--rm", "--network", "none", image])
        .run_ok()?;
    ensure!(
        run.stdout.trim() == BusyboxImage::HELLO,
        "{what} printed {:?}, expected {:?}",
        run.stdout,
        BusyboxImage::HELLO
    );
    Ok(())
}

fn read_trimmed(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .to_owned())
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// Checks that the registry serves `reference` of `repo` as a manifest with
/// digest `digest` and media type `media_type`, and that the body hashes to
/// the digest.
fn check_manifest(
    reg: &dyn RegistryServer,
    repo: &str,
    reference: &str,
    digest: &str,
    media_type: &str,
) -> Result<()> {
    let head = reg.manifest_digest(repo, reference)?;
    ensure!(
        head == digest,
        "HEAD /v2/{repo}/manifests/{reference}: Docker-Content-Digest {head}, expected {digest}"
    );
    let r = reg.get_manifest(repo, reference)?;
    ensure!(
        r.status == 200,
        "GET manifest {repo}:{reference}: status {} ({})",
        r.status,
        r.text()
    );
    ensure!(
        sha256_digest(&r.body) == digest,
        "GET manifest {repo}:{reference}: body hashes to {}, expected {digest}",
        sha256_digest(&r.body)
    );
    ensure!(
        r.header("Docker-Content-Digest") == Some(digest),
        "GET manifest {repo}:{reference}: Docker-Content-Digest {:?}, expected {digest}",
        r.header("Docker-Content-Digest")
    );
    let ct = r.header("Content-Type").unwrap_or("");
    ensure!(
        ct == media_type,
        "GET manifest {repo}:{reference}: Content-Type {ct:?}, expected {media_type:?}"
    );
    let body = r.json()?;
    ensure!(
        body["mediaType"] == media_type,
        "manifest body mediaType {}, expected {media_type}",
        body["mediaType"]
    );
    Ok(())
}

// ---------------------------------------------------------------- podman --

/// podman: push (in `format`), check the digest three ways, pull into fresh
/// storage, run.
fn podman_round_trip(format: &str, media_type: &str, extra_push_args: &[&str]) -> Result<()> {
    let reg = start_registry_under_test()?;
    let reg = reg.as_ref();
    let scratch = Scratch::new("podman-test")?;
    let fx = fixture(&scratch)?;
    let pusher = ContainerTools::new(&[&reg.addr()])?;
    pusher.import(&fx.oci_ref(), "localhost/fixture:latest")?;

    let repo = unique_repo(&format!("podman-{format}"));
    let dest = reg.docker_ref(&repo, "v1");
    let digestfile = scratch.join("pushed.digest");
    pusher
        .podman()
        .args([
            "push",
            "--tls-verify=false",
            "--format",
            format,
            "--digestfile",
        ])
        .arg(&digestfile)
        .args(extra_push_args)
        .args(["localhost/fixture:latest", &dest])
        .run_ok()?;
    let pushed = read_trimmed(&digestfile)?;
    ensure!(
        pushed.starts_with("sha256:"),
        "podman --digestfile wrote {pushed:?}"
    );

    // podman's digest == skopeo's == the registry's, and the manifest is the format asked for
    let inspect = json(
        &pusher
            .skopeo()
            .args(["inspect", "--tls-verify=false", &dest])
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        inspect["Digest"] == pushed.as_str(),
        "skopeo inspect Digest {}, podman pushed {pushed}",
        inspect["Digest"]
    );
    check_manifest(reg, &repo, "v1", &pushed, media_type)?;
    check_manifest(reg, &repo, &pushed, &pushed, media_type)?;
    if extra_push_args.contains(&"zstd") {
        let manifest = reg.get_manifest(&repo, &pushed)?.json()?;
        let layer_type = &manifest["layers"][0]["mediaType"];
        ensure!(
            layer_type == "application/vnd.oci.image.layer.v1.tar+zstd",
            "asked for zstd, the layer is {layer_type}"
        );
    }

    // pull into fresh storage (so every blob really comes from the registry), run
    let puller = ContainerTools::new(&[&reg.addr()])?;
    let image = reg.image(&repo, "v1");
    pull_and_run_hello(&puller, &image, "podman run")?;
    let pulled = puller.podman_inspect(&image, "{{.Digest}}")?;
    ensure!(
        pulled == pushed,
        "podman pulled digest {pulled}, pushed {pushed}"
    );

    // by digest, too
    let by_digest = format!("{}/{repo}@{pushed}", reg.addr());
    pull_and_run_hello(&puller, &by_digest, "podman run by digest")?;
    Ok(())
}

#[test]
fn podman_push_pull_run_oci() -> Result<()> {
    podman_round_trip("oci", OCI_MANIFEST, &[])
}

/// zstd-compressed OCI layers (`application/vnd.oci.image.layer.v1.tar+zstd`).
#[test]
fn podman_push_pull_run_oci_zstd() -> Result<()> {
    podman_round_trip("oci", OCI_MANIFEST, &["--compression-format", "zstd"])
}

#[test]
fn podman_push_pull_run_v2s2() -> Result<()> {
    podman_round_trip("v2s2", DOCKER_MANIFEST, &[])
}

/// A manifest list (index) pushed with `podman manifest push --all`, pulled
/// back through the list and run.
#[test]
fn podman_manifest_list_push_pull_run() -> Result<()> {
    let reg = start_registry_under_test()?;
    let reg = reg.as_ref();
    let scratch = Scratch::new("podman-list-test")?;
    let fx = fixture(&scratch)?;
    let pusher = ContainerTools::new(&[&reg.addr()])?;
    pusher.import(&fx.oci_ref(), "localhost/fixture:latest")?;
    pusher
        .podman()
        .args(["manifest", "create", "localhost/list:latest"])
        .run_ok()?;
    pusher
        .podman()
        .args([
            "manifest",
            "add",
            "localhost/list:latest",
            "containers-storage:localhost/fixture:latest",
        ])
        .run_ok()?;

    let repo = unique_repo("podman-list");
    let digestfile = scratch.join("list.digest");
    pusher
        .podman()
        .args([
            "manifest",
            "push",
            "--tls-verify=false",
            "--all",
            "--digestfile",
        ])
        .arg(&digestfile)
        .args(["localhost/list:latest", &reg.docker_ref(&repo, "v1")])
        .run_ok()?;
    let list_digest = read_trimmed(&digestfile)?;

    let r = reg.get_manifest(&repo, "v1")?;
    ensure!(
        r.status == 200,
        "GET the list: status {} ({})",
        r.status,
        r.text()
    );
    ensure!(
        sha256_digest(&r.body) == list_digest,
        "the list's body hashes to {}, podman pushed {list_digest}",
        sha256_digest(&r.body)
    );
    ensure!(
        r.header("Docker-Content-Digest") == Some(list_digest.as_str()),
        "the list's Docker-Content-Digest {:?}, podman pushed {list_digest}",
        r.header("Docker-Content-Digest")
    );
    let ct = r.header("Content-Type").unwrap_or("").to_owned();
    ensure!(
        ct == OCI_INDEX || ct == DOCKER_MANIFEST_LIST,
        "the list's Content-Type is {ct:?}"
    );
    let index = r.json()?;
    ensure!(
        index["mediaType"] == ct.as_str(),
        "the list's mediaType {}",
        index["mediaType"]
    );
    let members = index["manifests"]
        .as_array()
        .context("list without manifests")?;
    ensure!(members.len() == 1, "expected 1 image in the list: {index}");
    let member = members[0]["digest"]
        .as_str()
        .context("member without digest")?;
    let served = reg.manifest_digest(&repo, member)?;
    ensure!(served == member, "member {member} served as {served}");

    let puller = ContainerTools::new(&[&reg.addr()])?;
    let image = reg.image(&repo, "v1");
    pull_and_run_hello(&puller, &image, "podman run (through the list)")?;
    Ok(())
}

// ---------------------------------------------------------------- skopeo --

#[test]
fn skopeo_copy_inspect_list_tags_delete() -> Result<()> {
    let reg = start_registry_under_test()?;
    let reg = reg.as_ref();
    let scratch = Scratch::new("skopeo-test")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;
    let repo = unique_repo("skopeo");

    // oci-layout → kiln, under two tags: skopeo copies an OCI image unchanged,
    // so the digest is the fixture's own
    let digestfile = scratch.join("pushed.digest");
    tools
        .skopeo()
        .args(["copy", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digestfile)
        .args([&fx.oci_ref(), &reg.docker_ref(&repo, "v1")])
        .run_ok()?;
    let pushed = read_trimmed(&digestfile)?;
    ensure!(
        pushed == fx.digest,
        "skopeo pushed {pushed}, the fixture's digest is {}",
        fx.digest
    );
    tools
        .skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            &fx.oci_ref(),
            &reg.docker_ref(&repo, "v2"),
        ])
        .run_ok()?;
    check_manifest(reg, &repo, "v1", &fx.digest, OCI_MANIFEST)?;
    let served = reg.get_manifest(&repo, "v2")?.body;
    ensure!(
        served == fx.manifest()?,
        "the registry changed the manifest bytes"
    );

    // inspect: digest, tags, config, raw manifest
    let src = reg.docker_ref(&repo, "v1");
    let inspect = json(
        &tools
            .skopeo()
            .args(["inspect", "--tls-verify=false", &src])
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        inspect["Digest"] == fx.digest.as_str(),
        "skopeo inspect Digest {}",
        inspect["Digest"]
    );
    ensure!(
        inspect["Os"] == "linux",
        "skopeo inspect Os {}",
        inspect["Os"]
    );
    let mut repo_tags: Vec<&str> = inspect["RepoTags"]
        .as_array()
        .context("skopeo inspect: no RepoTags")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    repo_tags.sort_unstable();
    ensure!(
        repo_tags == ["v1", "v2"],
        "skopeo inspect RepoTags {repo_tags:?}"
    );
    let raw = tools
        .skopeo()
        .args(["inspect", "--tls-verify=false", "--raw", &src])
        .run_ok()?;
    ensure!(
        raw.stdout.as_bytes() == fx.manifest()?,
        "skopeo inspect --raw differs from the pushed manifest"
    );
    let config = tools
        .skopeo()
        .args(["inspect", "--tls-verify=false", "--config", "--raw", &src])
        .run_ok()?;
    let manifest = json(&String::from_utf8_lossy(&fx.manifest()?))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("manifest without config")?;
    ensure!(
        config.stdout.as_bytes() == fx.blob(config_digest)?,
        "skopeo inspect --config --raw differs from the pushed config"
    );

    // list-tags
    let tags = json(
        &tools
            .skopeo()
            .args([
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{}/{repo}", reg.addr()),
            ])
            .run_ok()?
            .stdout,
    )?;
    let mut tag_list: Vec<&str> = tags["Tags"]
        .as_array()
        .context("list-tags: no Tags")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tag_list.sort_unstable();
    ensure!(tag_list == ["v1", "v2"], "skopeo list-tags {tag_list:?}");
    ensure!(
        reg.tags(&repo)? == ["v1", "v2"],
        "GET tags/list {:?}",
        reg.tags(&repo)?
    );

    // kiln → oci dir: same digest, byte-identical blobs
    let out = scratch.join("copied-oci");
    tools
        .skopeo()
        .args([
            "copy",
            "--src-tls-verify=false",
            &src,
            &format!("oci:{}:copied", out.display()),
        ])
        .run_ok()?;
    let copied = common::fixtures::oci_layout_digest(&out, "copied")?;
    ensure!(
        copied == fx.digest,
        "copied back as {copied}, pushed {}",
        fx.digest
    );
    let mut blobs = vec![config_digest.to_owned(), fx.digest.clone()];
    for l in manifest["layers"]
        .as_array()
        .context("manifest without layers")?
    {
        blobs.push(
            l["digest"]
                .as_str()
                .context("layer without digest")?
                .to_owned(),
        );
    }
    for d in &blobs {
        let hex = d.trim_start_matches("sha256:");
        let got = fs::read(out.join("blobs/sha256").join(hex))
            .with_context(|| format!("copied blob {d}"))?;
        ensure!(got == fx.blob(d)?, "blob {d} changed on the round trip");
    }

    // a Docker v2s2 image keeps its digest too
    let repo_v2 = unique_repo("skopeo-v2s2");
    let (v2_manifest, v2_digest) = fx.v2s2_manifest()?;
    tools
        .skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            &fx.v2s2_ref(),
            &reg.docker_ref(&repo_v2, "v1"),
        ])
        .run_ok()?;
    check_manifest(reg, &repo_v2, "v1", &v2_digest, DOCKER_MANIFEST)?;
    ensure!(
        reg.get_manifest(&repo_v2, "v1")?.body == v2_manifest,
        "v2s2 manifest bytes changed"
    );

    // delete: the manifest is gone, by digest and by the tag that named it
    tools
        .skopeo()
        .args(["delete", "--tls-verify=false", &src])
        .run_ok()?;
    let r = reg.head_manifest(&repo, &fx.digest)?;
    ensure!(
        r.status == 404,
        "HEAD manifest by digest after delete: status {}, expected 404",
        r.status
    );
    let r = reg.get_manifest(&repo, &fx.digest)?;
    ensure!(
        r.status == 404,
        "GET manifest by digest after delete: status {}, expected 404",
        r.status
    );
    let r = reg.get_manifest(&repo, "v1")?;
    ensure!(
        r.status == 404,
        "GET manifest by deleted tag v1: status {}, expected 404",
        r.status
    );
    tools
        .skopeo()
        .args(["inspect", "--tls-verify=false", &src])
        .run()?
        .fail_with_any(&["manifest unknown", "not found", "404"])?;
    // the other repository is untouched
    check_manifest(reg, &repo_v2, "v1", &v2_digest, DOCKER_MANIFEST)?;
    Ok(())
}

// --------------------------------------------------------------- buildah --

#[test]
fn buildah_build_push_pull() -> Result<()> {
    let reg = start_registry_under_test()?;
    let reg = reg.as_ref();
    let scratch = Scratch::new("buildah-test")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;

    // a new image on top of the fixture: one more layer, another CMD
    let ctr = tools
        .buildah()
        .args(["from", &fx.oci_ref()])
        .run_ok()?
        .last_line()
        .to_owned();
    ensure!(!ctr.is_empty(), "buildah from printed no container name");
    let message = scratch.join("message");
    fs::write(&message, "built by buildah\n")?;
    // 16 MiB that do not compress: a layer large enough to stream in chunks
    let random = scratch.join("random.bin");
    let mut data = vec![0u8; 16 << 20];
    fs::File::open("/dev/urandom")?.read_exact(&mut data)?;
    fs::write(&random, &data)?;
    let random_sha = sha256_digest(&data);
    let random_hex = random_sha.trim_start_matches("sha256:").to_owned();
    drop(data);
    for (src, dst) in [
        (&message, "/etc/kiln-message"),
        (&random, "/data/random.bin"),
    ] {
        tools
            .buildah()
            .arg("copy")
            .arg(&ctr)
            .arg(src)
            .arg(dst)
            .run_ok()?;
    }
    tools
        .buildah()
        .args([
            "config",
            "--cmd",
            r#"["/bin/sh","-c","cat /etc/kiln-message; busybox sha256sum /data/random.bin"]"#,
            &ctr,
        ])
        .run_ok()?;
    tools
        .buildah()
        .args(["commit", &ctr, "localhost/buildah-built:latest"])
        .run_ok()?;

    let repo = unique_repo("buildah");
    let digestfile = scratch.join("pushed.digest");
    tools
        .buildah()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile)
        .args([
            "localhost/buildah-built:latest",
            &reg.docker_ref(&repo, "v1"),
        ])
        .run_ok()?;
    let pushed = read_trimmed(&digestfile)?;
    check_manifest(reg, &repo, "v1", &pushed, OCI_MANIFEST)?;
    let manifest = reg.get_manifest(&repo, "v1")?.json()?;
    let layers = manifest["layers"].as_array().map_or(0, Vec::len);
    ensure!(
        layers == 2,
        "expected 2 layers (fixture + buildah's copies), manifest has {layers}: {manifest}"
    );

    // pull back with buildah into fresh storage, run with podman
    let puller = ContainerTools::new(&[&reg.addr()])?;
    let image = reg.image(&repo, "v1");
    puller
        .buildah()
        .args(["pull", "--tls-verify=false", &image])
        .run_ok()?;
    let pulled = puller.podman_inspect(&image, "{{.Digest}}")?;
    ensure!(
        pulled == pushed,
        "buildah pulled digest {pulled}, pushed {pushed}"
    );
    let run = puller
        .podman()
        .args(["run", "--rm", "--network", "none", &image])
        .run_ok()?;
    let expected = format!("built by buildah\n{random_hex}  /data/random.bin");
    ensure!(
        run.stdout.trim() == expected,
        "podman run printed {:?}, expected {expected:?}",
        run.stdout
    );
    Ok(())
}

// ---------------------------------------------------------------- docker --

/// Parses `TAG: digest: sha256:... size: N` from `docker push` output.
fn docker_push_digest(stdout: &str) -> Result<String> {
    stdout
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("no digest in docker push output:\n{stdout}"))
}

/// Parses `Digest: sha256:...` from `docker pull` output.
fn docker_pull_digest(stdout: &str) -> Result<String> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Digest: "))
        .map(|d| d.trim().to_owned())
        .with_context(|| format!("no digest in docker pull output:\n{stdout}"))
}

#[test]
fn docker_push_pull_run() -> Result<()> {
    let reg = start_registry_under_test()?;
    let reg = reg.as_ref();
    let scratch = Scratch::new("docker-test")?;
    let fx = fixture(&scratch)?;
    let docker = DockerDaemon::start()?;

    docker
        .docker()
        .arg("load")
        .arg("-i")
        .arg(&fx.docker_archive)
        .run_ok()?;
    let repo = unique_repo("docker");
    let image = reg.image(&repo, "v1");
    docker
        .docker()
        .args(["tag", BusyboxImage::ARCHIVE_TAG, &image])
        .run_ok()?;
    let push = docker.docker().args(["push", &image]).run_ok()?;
    let pushed = docker_push_digest(&push.stdout)?;
    check_manifest(reg, &repo, "v1", &pushed, DOCKER_MANIFEST)?;

    // remove locally, pull back, run
    docker
        .docker()
        .args(["rmi", &image, BusyboxImage::ARCHIVE_TAG])
        .run_ok()?;
    let pull = docker.docker().args(["pull", &image]).run_ok()?;
    let pulled = docker_pull_digest(&pull.stdout)?;
    ensure!(pulled == pushed, "docker pulled {pulled}, pushed {pushed}");
    let run = docker
        .docker()
        .args(["run", "--rm", "--network", "host", &image])
        .run_ok()?;
    ensure!(
        run.stdout.trim() == BusyboxImage::HELLO,
        "docker run printed {:?}",
        run.stdout
    );

    // docker pulls and runs an OCI image another client pushed
    let tools = ContainerTools::new(&[&reg.addr()])?;
    let repo_oci = unique_repo("docker-oci");
    tools
        .skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            &fx.oci_ref(),
            &reg.docker_ref(&repo_oci, "v1"),
        ])
        .run_ok()?;
    let by_digest = format!("{}/{repo_oci}@{}", reg.addr(), fx.digest);
    let pull = docker.docker().args(["pull", &by_digest]).run_ok()?;
    ensure!(
        pull.combined().contains(&fx.digest),
        "docker pull by digest: output does not mention {}",
        fx.digest
    );
    let run = docker
        .docker()
        .args(["run", "--rm", "--network", "host", &by_digest])
        .run_ok()?;
    ensure!(
        run.stdout.trim() == BusyboxImage::HELLO,
        "docker run (OCI image) printed {:?}",
        run.stdout
    );
    Ok(())
}

// ------------------------------------------------------------------ auth --

const USER: &str = "alice";
const PASSWORD: &str = "kiln-e2e Pa55word";
const READER: &str = "bob";
const READER_PASSWORD: &str = "bob-reads-only";

/// What clients print when the registry turns them away.
const AUTH_ERRORS: &[&str] = &[
    "unauthorized",
    "authentication required",
    "denied",
    "no basic auth credentials",
    "invalid username/password",
    "401",
    "403",
];

/// A registry with auth on: alice may do everything, bob may only pull,
/// anonymous users nothing.
fn start_auth_registry() -> Result<KilnRegistry> {
    let config = AuthConfig::single_admin(USER, PASSWORD)
        .user(READER, READER_PASSWORD)
        .grant(&[READER], &["**"], &["pull"])
        .to_toml()?;
    KilnRegistry::start_with(RegistryOptions::with_config(config))
}

#[test]
fn auth_challenge_and_token_endpoint() -> Result<()> {
    let reg = start_auth_registry()?;
    let repo = unique_repo("auth-proto");

    let r = common::http::get(&reg.url("/v2/")).send()?;
    ensure!(
        r.status == 401,
        "GET /v2/ without credentials: status {}, expected 401",
        r.status
    );
    let challenge = r
        .header("WWW-Authenticate")
        .context("401 without WWW-Authenticate")?;
    let params = parse_www_authenticate(challenge)?;
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    ensure!(
        param("realm") == Some(reg.url("/token").as_str()),
        "realm {:?}, expected {}",
        param("realm"),
        reg.url("/token")
    );
    ensure!(
        param("service") == Some("kiln"),
        "service {:?}",
        param("service")
    );

    // a repository request names the scope it needs
    let r = common::http::get(&reg.url(&format!("/v2/{repo}/tags/list"))).send()?;
    ensure!(
        r.status == 401,
        "GET tags/list anonymously: status {}, expected 401",
        r.status
    );
    let challenge = r
        .header("WWW-Authenticate")
        .context("401 without WWW-Authenticate")?;
    let params = parse_www_authenticate(challenge)?;
    let scope = params
        .iter()
        .find(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone());
    ensure!(
        scope.as_deref() == Some(&format!("repository:{repo}:pull")),
        "scope {scope:?} in {challenge}"
    );

    let realm = reg.url("/token");
    let scope = format!("repository:{repo}:pull,push");
    let bad = fetch_token(&realm, "kiln", &scope, Some((USER, "wrong password")))?;
    ensure!(
        bad.status == 401,
        "token with a wrong password: status {}, expected 401",
        bad.status
    );
    let good = fetch_token(&realm, "kiln", &scope, Some((USER, PASSWORD)))?;
    ensure!(
        good.status == 200,
        "token for alice: status {} ({})",
        good.status,
        good.text()
    );
    let body = good.json()?;
    let token = body["token"]
        .as_str()
        .or_else(|| body["access_token"].as_str())
        .with_context(|| format!("no token in {body}"))?;
    let r = common::http::get(&reg.url("/v2/")).bearer(token).send()?;
    ensure!(
        r.status == 200,
        "GET /v2/ with alice's token: status {}",
        r.status
    );
    let r = common::http::get(&reg.url(&format!("/v2/{repo}/tags/list")))
        .bearer(token)
        .send()?;
    ensure!(
        r.status == 404 || r.status == 200,
        "GET tags/list of an empty repo with a token: status {} (expected 404 NAME_UNKNOWN or 200)",
        r.status
    );
    Ok(())
}

#[test]
fn auth_podman_login_push_pull() -> Result<()> {
    let reg = start_auth_registry()?;
    let scratch = Scratch::new("auth-podman")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;
    tools.import(&fx.oci_ref(), "localhost/fixture:latest")?;
    let repo = unique_repo("auth-podman");
    let dest = reg.docker_ref(&repo, "v1");

    // no login: push refused
    tools
        .podman()
        .args([
            "push",
            "--tls-verify=false",
            "localhost/fixture:latest",
            &dest,
        ])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    // wrong password: login refused
    tools
        .podman()
        .args([
            "login",
            "--tls-verify=false",
            "--username",
            USER,
            "--password-stdin",
            &reg.addr(),
        ])
        .run_opts(RunOpts::stdin("not the password"))?
        .fail_with_any(AUTH_ERRORS)?;
    // login, push
    tools
        .podman()
        .args([
            "login",
            "--tls-verify=false",
            "--username",
            USER,
            "--password-stdin",
            &reg.addr(),
        ])
        .run_opts(RunOpts::stdin(PASSWORD))?
        .ok()?;
    let digestfile = scratch.join("pushed.digest");
    tools
        .podman()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile)
        .args(["localhost/fixture:latest", &dest])
        .run_ok()?;
    let pushed = read_trimmed(&digestfile)?;
    // skopeo uses the same auth file
    let inspect = json(
        &tools
            .skopeo()
            .args(["inspect", "--tls-verify=false", &dest])
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        inspect["Digest"] == pushed.as_str(),
        "skopeo inspect Digest {}",
        inspect["Digest"]
    );
    // the same image into a second repository: podman mounts the blobs from
    // the first (a token for two repositories' scopes)
    let repo2 = unique_repo("auth-podman-second");
    let digestfile2 = scratch.join("pushed2.digest");
    tools
        .podman()
        .args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile2)
        .args(["localhost/fixture:latest", &reg.docker_ref(&repo2, "v1")])
        .run_ok()?;
    ensure!(
        read_trimmed(&digestfile2)? == pushed,
        "the second push has another digest"
    );

    // another user's storage: anonymous pull refused, then login and pull
    let puller = ContainerTools::new(&[&reg.addr()])?;
    let image = reg.image(&repo, "v1");
    puller
        .podman()
        .args(["pull", "--tls-verify=false", &image])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    puller
        .podman()
        .args([
            "login",
            "--tls-verify=false",
            "--username",
            READER,
            "--password-stdin",
            &reg.addr(),
        ])
        .run_opts(RunOpts::stdin(READER_PASSWORD))?
        .ok()?;
    pull_and_run_hello(&puller, &image, "podman run")?;
    let pulled = puller.podman_inspect(&image, "{{.Digest}}")?;
    ensure!(pulled == pushed, "pulled {pulled}, pushed {pushed}");
    // bob may pull but not push
    puller
        .podman()
        .args(["tag", &image, "localhost/bob:latest"])
        .run_ok()?;
    puller
        .podman()
        .args([
            "push",
            "--tls-verify=false",
            "localhost/bob:latest",
            &reg.docker_ref(&repo, "bob"),
        ])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    Ok(())
}

#[test]
fn auth_skopeo_creds() -> Result<()> {
    let reg = start_auth_registry()?;
    let scratch = Scratch::new("auth-skopeo")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;
    let repo = unique_repo("auth-skopeo");
    let dest = reg.docker_ref(&repo, "v1");
    let creds = format!("{USER}:{PASSWORD}");

    let copy = |extra: &[&str]| {
        let mut c = tools.skopeo();
        c.args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .args([&fx.oci_ref(), &dest]);
        c
    };
    copy(&[]).run()?.fail_with_any(AUTH_ERRORS)?;
    copy(&["--dest-creds", &format!("{USER}:wrong")])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    copy(&["--dest-creds", &format!("{READER}:{READER_PASSWORD}")])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    copy(&["--dest-creds", &creds]).run_ok()?;

    let inspect = |extra: &[&str]| {
        let mut c = tools.skopeo();
        c.args(["inspect", "--tls-verify=false"])
            .args(extra)
            .arg(&dest);
        c
    };
    inspect(&[]).run()?.fail_with_any(AUTH_ERRORS)?;
    let info = json(&inspect(&["--creds", &creds]).run_ok()?.stdout)?;
    ensure!(
        info["Digest"] == fx.digest.as_str(),
        "inspect Digest {}",
        info["Digest"]
    );
    let info = json(
        &inspect(&["--creds", &format!("{READER}:{READER_PASSWORD}")])
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        info["Digest"] == fx.digest.as_str(),
        "inspect as reader: Digest {}",
        info["Digest"]
    );

    let tags = json(
        &tools
            .skopeo()
            .args(["list-tags", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{}/{repo}", reg.addr()))
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        tags["Tags"] == serde_json::json!(["v1"]),
        "list-tags {}",
        tags["Tags"]
    );

    let out = scratch.join("copied");
    tools
        .skopeo()
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &dest,
        ])
        .arg(format!("oci:{}:copied", out.display()))
        .run_ok()?;
    let copied = common::fixtures::oci_layout_digest(&out, "copied")?;
    ensure!(
        copied == fx.digest,
        "copied back {copied}, expected {}",
        fx.digest
    );

    // the reader may not delete; alice may
    let delete = |who: &str| {
        let mut c = tools.skopeo();
        c.args(["delete", "--tls-verify=false", "--creds", who, &dest]);
        c
    };
    delete(&format!("{READER}:{READER_PASSWORD}"))
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    delete(&creds).run_ok()?;
    inspect(&["--creds", &creds]).run()?.fail_with_any(&[
        "manifest unknown",
        "not found",
        "404",
    ])?;
    Ok(())
}

#[test]
fn auth_docker_login_push_pull() -> Result<()> {
    let reg = start_auth_registry()?;
    let scratch = Scratch::new("auth-docker")?;
    let fx = fixture(&scratch)?;
    let docker = DockerDaemon::start()?;
    docker
        .docker()
        .arg("load")
        .arg("-i")
        .arg(&fx.docker_archive)
        .run_ok()?;
    let repo = unique_repo("auth-docker");
    let image = reg.image(&repo, "v1");
    docker
        .docker()
        .args(["tag", BusyboxImage::ARCHIVE_TAG, &image])
        .run_ok()?;

    // Refused at once: docker retries an upload 5 times over ~50 s unless the
    // refusal tells it not to (`error="insufficient_scope"` in the challenge,
    // or an error body that is more than the bare UNAUTHORIZED code).
    let anonymous = docker
        .docker()
        .args(["push", &image])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    ensure!(
        anonymous.elapsed < Duration::from_secs(30),
        "docker push without login took {:?} to fail: docker retried the upload, so the \
         registry's refusal looked transient to it (see the push output above)",
        anonymous.elapsed
    );
    docker
        .docker()
        .args(["login", "--username", USER, "--password-stdin", &reg.addr()])
        .run_opts(RunOpts::stdin("not the password"))?
        .fail_with_any(AUTH_ERRORS)?;
    docker
        .docker()
        .args(["login", "--username", USER, "--password-stdin", &reg.addr()])
        .run_opts(RunOpts::stdin(PASSWORD))?
        .ok()?;
    let push = docker.docker().args(["push", &image]).run_ok()?;
    let pushed = docker_push_digest(&push.stdout)?;
    // the same image into a second repository: docker mounts the layer from
    // the first (a token for two repositories' scopes)
    let image2 = reg.image(&unique_repo("auth-docker-second"), "v1");
    docker
        .docker()
        .args(["tag", BusyboxImage::ARCHIVE_TAG, &image2])
        .run_ok()?;
    let push2 = docker.docker().args(["push", &image2]).run_ok()?;
    ensure!(
        docker_push_digest(&push2.stdout)? == pushed,
        "the second push has another digest"
    );
    ensure!(
        push2.stdout.contains("Mounted from"),
        "docker did not mount the layer from the first repository:\n{}",
        push2.stdout
    );

    docker
        .docker()
        .args(["rmi", &image, &image2, BusyboxImage::ARCHIVE_TAG])
        .run_ok()?;
    let pull = docker.docker().args(["pull", &image]).run_ok()?;
    ensure!(
        docker_pull_digest(&pull.stdout)? == pushed,
        "docker pulled another digest than it pushed"
    );
    let run = docker
        .docker()
        .args(["run", "--rm", "--network", "host", &image])
        .run_ok()?;
    ensure!(
        run.stdout.trim() == BusyboxImage::HELLO,
        "docker run printed {:?}",
        run.stdout
    );

    // logged out: anonymous pull is off
    docker.docker().args(["logout", &reg.addr()]).run_ok()?;
    docker.docker().args(["rmi", &image]).run_ok()?;
    docker
        .docker()
        .args(["pull", &image])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    Ok(())
}

#[test]
fn images_survive_a_registry_restart() -> Result<()> {
    let mut reg = KilnRegistry::start()?;
    let scratch = Scratch::new("restart-test")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;
    let repo = unique_repo("restart");
    tools
        .skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            &fx.oci_ref(),
            &reg.docker_ref(&repo, "v1"),
        ])
        .run_ok()?;
    reg.restart()?;
    check_manifest(&reg, &repo, "v1", &fx.digest, OCI_MANIFEST)?;
    ensure!(
        reg.tags(&repo)? == ["v1"],
        "tags after restart: {:?}",
        reg.tags(&repo)?
    );
    let image = reg.image(&repo, "v1");
    pull_and_run_hello(&tools, &image, "podman run after restart")?;
    Ok(())
}

#[test]
fn auth_anonymous_pull() -> Result<()> {
    let config = AuthConfig::single_admin(USER, PASSWORD)
        .anonymous_pull(true)
        .to_toml()?;
    let reg = KilnRegistry::start_with(RegistryOptions::with_config(config))?;
    let scratch = Scratch::new("auth-anon")?;
    let fx = fixture(&scratch)?;
    let tools = ContainerTools::new(&[&reg.addr()])?;
    let repo = unique_repo("auth-anon");
    let dest = reg.docker_ref(&repo, "v1");
    let copy = |extra: &[&str]| {
        let mut c = tools.skopeo();
        c.args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .args([&fx.oci_ref(), &dest]);
        c
    };
    // anonymous users may pull, never push
    copy(&[]).run()?.fail_with_any(AUTH_ERRORS)?;
    copy(&["--dest-creds", &format!("{USER}:{PASSWORD}")]).run_ok()?;
    let info = json(
        &tools
            .skopeo()
            .args(["inspect", "--tls-verify=false", &dest])
            .run_ok()?
            .stdout,
    )?;
    ensure!(
        info["Digest"] == fx.digest.as_str(),
        "anonymous inspect: Digest {}",
        info["Digest"]
    );
    let image = reg.image(&repo, "v1");
    pull_and_run_hello(&tools, &image, "podman run")?;
    tools
        .skopeo()
        .args(["delete", "--tls-verify=false", &dest])
        .run()?
        .fail_with_any(AUTH_ERRORS)?;
    Ok(())
}
