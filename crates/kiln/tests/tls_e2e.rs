//! HTTPS end to end: `kiln registry serve` and `kiln serve` with
//! `--tls-cert`/`--tls-key` (or the registry config's `[tls]`), driven by
//! real clients that verify the certificate (skopeo, podman, curl, the
//! `kiln` CLI), and the errors bad certificate or key files give.
//!
//! Each test makes a throwaway CA and a server certificate for 127.0.0.1
//! (an IP SAN) with the `openssl` CLI. Needs root (builds), and the
//! packages of `scripts/install-test-deps.sh`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use common::registry::{
    MANIFEST_ACCEPT, free_port, kiln, parse_www_authenticate, wait_https_ready,
};
use common::service::{
    BUILD_TIMEOUT, GitRepo, HubClient, READY_TIMEOUT, dockerfile, ensure_state, str_field,
};
use common::{
    AuthConfig, BusyboxImage, ContainerTools, KilnRegistry, Output, RegistryOptions,
    RegistryServer, RunExt, RunOpts, Scratch, Server, unique_repo,
};

/// A CA, a server certificate it signed for 127.0.0.1, and a key that
/// belongs to neither.
struct Pki {
    /// The CA certificate (PEM), for curl's `--cacert` and `SSL_CERT_FILE`.
    ca: PathBuf,
    /// Holds only `ca.crt`: containers/image's `--cert-dir`.
    cert_dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

impl Pki {
    fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        // One command a string: no argument here has a space.
        let openssl = |args: &str| -> Result<Output> {
            Command::new("openssl")
                .current_dir(dir)
                .args(args.split_whitespace())
                .run_ok()
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(&format!(
            "req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=kiln-test-CA \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ))?;
        openssl(&format!(
            "req -new {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
        ))?;
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1\n\
             basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\n",
        )?;
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 2 -days 2 \
             -extfile server.ext -out server.crt",
        )?;
        openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key")?;
        let cert_dir = dir.join("certs.d");
        std::fs::create_dir_all(&cert_dir)?;
        std::fs::copy(dir.join("ca.crt"), cert_dir.join("ca.crt"))?;
        Ok(Self {
            ca: dir.join("ca.crt"),
            cert_dir,
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            other_key: dir.join("other.key"),
        })
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// curl trusting only the test CA, headers on stdout (`-D -`), body dropped.
fn curl_head(pki: &Pki, url: &str, extra: &[&str]) -> Result<Output> {
    Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--max-time", "30"])
        .arg("--cacert")
        .arg(&pki.ca)
        .args(extra)
        .arg(url)
        .run()
}

/// The value of header `name` in curl's `-D -` output (last response).
fn header(out: &Output, name: &str) -> Option<String> {
    out.stdout.lines().rev().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The status code of the last response in curl's `-D -` output.
fn status(out: &Output) -> Option<u16> {
    out.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

/// A TLS registry on a free port.
fn tls_registry(pki: &Pki, config_toml: Option<String>, flags: bool) -> Result<KilnRegistry> {
    KilnRegistry::start_with(RegistryOptions {
        config_toml,
        extra_args: if flags { pki.flags() } else { Vec::new() },
        https_ca: Some(pki.ca.clone()),
        ..RegistryOptions::default()
    })
}

#[test]
fn registry_over_tls_with_verifying_clients() -> Result<()> {
    let scratch = Scratch::new("tls-registry")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let fixture = BusyboxImage::create(&scratch.join("busybox"))?;
    let reg = tls_registry(&pki, None, true)?;
    let base = reg.base_url();
    ensure!(
        reg.log()
            .contains(&format!("listening on https://{}", reg.addr())),
        "no https listening line:\n{}",
        reg.log()
    );
    // Listed nowhere as insecure: the tools verify the certificate.
    let tools = ContainerTools::new(&[])?;
    let repo = unique_repo("tls");
    let image = reg.image(&repo, "1");

    tools
        .skopeo()
        .args(["copy", "-q", "--dest-tls-verify=true", "--dest-cert-dir"])
        .arg(&pki.cert_dir)
        .arg(fixture.oci_ref())
        .arg(format!("docker://{image}"))
        .run_ok()?;
    tools
        .podman()
        .args(["pull", "-q", "--tls-verify=true", "--cert-dir"])
        .arg(&pki.cert_dir)
        .arg(&image)
        .run_ok()?;
    let pulled = tools.podman_inspect(&image, "{{.Digest}}")?;
    ensure!(
        pulled == fixture.digest,
        "podman pulled {pulled}, pushed {}",
        fixture.digest
    );

    // HTTP/2 is offered through ALPN, HTTP/1.1 still served.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl_head(
            &pki,
            &format!("{base}/v2/"),
            &[flag, "-w", "%{http_version}"],
        )?
        .ok()?;
        ensure!(status(&out) == Some(200), "{flag}: {}", out.stdout);
        ensure!(
            header(&out, "Docker-Distribution-API-Version").as_deref() == Some("registry/2.0"),
            "{flag}: no Docker-Distribution-API-Version: {}",
            out.stdout
        );
        ensure!(
            out.stdout.trim_end().ends_with(version),
            "{flag}: not HTTP/{version}: {}",
            out.stdout
        );
    }
    let out = curl_head(
        &pki,
        &format!("{base}/v2/{repo}/manifests/1"),
        &["-I", "-H", &format!("Accept: {MANIFEST_ACCEPT}")],
    )?
    .ok()?;
    ensure!(
        header(&out, "Docker-Content-Digest").as_deref() == Some(fixture.digest.as_str()),
        "{}",
        out.stdout
    );

    // Without the CA the certificate is refused, by Go and by curl.
    tools
        .skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("docker://{image}"))
        .run()?
        .fail_with_any(&["certificate signed by unknown authority", "x509"])?;
    Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .arg(format!("{base}/v2/"))
        .run()?
        .fail_with_any(&["SSL certificate problem", "certificate"])?;

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "30"])
        .arg(format!("http://{}/v2/", reg.addr()))
        .run()?
        .fail()?;
    ensure!(
        !plain.stdout.contains("registry/2.0"),
        "plain HTTP was answered: {}",
        plain.stdout
    );

    // The refused handshakes left the server serving.
    let out = curl_head(&pki, &format!("{base}/v2/"), &[])?.ok()?;
    ensure!(status(&out) == Some(200), "{}", out.stdout);
    Ok(())
}

/// `[tls]` in the config file, with token auth: the challenge's realm is
/// https and podman logs in and pushes through it.
#[test]
fn token_auth_over_tls_has_an_https_realm() -> Result<()> {
    let scratch = Scratch::new("tls-auth")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let fixture = BusyboxImage::create(&scratch.join("busybox"))?;
    let config = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n\n{}",
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        AuthConfig::single_admin("alice", "wonderland").to_toml()?
    );
    let reg = tls_registry(&pki, Some(config), false)?;

    let out = curl_head(&pki, &format!("{}/v2/", reg.base_url()), &[])?.ok()?;
    ensure!(status(&out) == Some(401), "{}", out.stdout);
    let challenge = header(&out, "WWW-Authenticate").context("no WWW-Authenticate")?;
    let params = parse_www_authenticate(&challenge)?;
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.as_str());
    let want = format!("https://{}/token", reg.addr());
    ensure!(realm == Some(want.as_str()), "realm {realm:?}, want {want}");

    let tools = ContainerTools::new(&[])?;
    tools
        .podman()
        .args(["login", "--tls-verify=true", "--cert-dir"])
        .arg(&pki.cert_dir)
        .args(["-u", "alice", "--password-stdin"])
        .arg(reg.addr())
        .run_opts(RunOpts::stdin("wonderland"))?
        .ok()?;
    // The stored credentials go through the realm's token flow over https.
    let image = reg.image(&unique_repo("tls-auth"), "1");
    tools
        .skopeo()
        .args(["copy", "-q", "--dest-tls-verify=true", "--dest-cert-dir"])
        .arg(&pki.cert_dir)
        .arg(fixture.oci_ref())
        .arg(format!("docker://{image}"))
        .run_ok()?;
    tools
        .podman()
        .args(["login", "--tls-verify=true", "--cert-dir"])
        .arg(&pki.cert_dir)
        .args(["-u", "alice", "--password-stdin"])
        .arg(reg.addr())
        .run_opts(RunOpts::stdin("not the password"))?
        .fail()?;
    Ok(())
}

/// `kiln serve` with a certificate: the CLI reaches the hub over https
/// trusting the CA through `SSL_CERT_FILE`, `kiln build --push` and a
/// hub build (its local worker) push to the registry over https.
#[test]
fn kiln_serve_over_tls() -> Result<()> {
    let scratch = Scratch::new("tls-serve")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let data = scratch.join("data").display().to_string();
    let (server, port) = start_tls_server(
        &scratch,
        &pki,
        &["serve", "--data-dir", &data],
        "/api/v1/targets",
    )?;
    let addr = format!("127.0.0.1:{port}");
    ensure!(
        server
            .log()
            .contains(&format!("kiln listening on https://{addr}")),
        "no https listening line:\n{}",
        server.log()
    );
    let client = HubClient {
        url: format!("https://{addr}"),
        token: None,
        xdg: scratch.mkdir("xdg")?,
    };
    let trusting = |mut c: Command| {
        c.env("SSL_CERT_FILE", &pki.ca);
        c
    };
    let untrusting = |mut c: Command| {
        c.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        c
    };

    trusting(client.kiln()).arg("list-builds").run_ok()?;
    untrusting(client.kiln())
        .arg("list-builds")
        .run()?
        .fail_with_any(&["UnknownIssuer", "certificate"])?;
    let out = curl_head(&pki, &format!("https://{addr}/v2/"), &[])?.ok()?;
    ensure!(
        header(&out, "Docker-Distribution-API-Version").as_deref() == Some("registry/2.0"),
        "{}",
        out.stdout
    );

    // kiln's registry client tries HTTPS first on loopback too.
    let tls_host = addr.clone();
    let ctx = scratch.mkdir("ctx")?;
    std::fs::write(ctx.join("hello.txt"), "hello over tls\n")?;
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n")?;
    let root = scratch.mkdir("build-root")?;
    let build = |image: &str| {
        let mut c = kiln();
        c.args(["build", "-q", "--push", "-t", image, "--root"])
            .arg(&root)
            .arg(&ctx);
        c
    };
    let pushed = trusting(build(&format!("{tls_host}/tls/built:1")))
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    let digest = pushed.last_line().to_owned();
    let out = curl_head(
        &pki,
        &format!("https://{addr}/v2/tls/built/manifests/1"),
        &["-I", "-H", &format!("Accept: {MANIFEST_ACCEPT}")],
    )?
    .ok()?;
    ensure!(
        header(&out, "Docker-Content-Digest").as_deref() == Some(digest.as_str()),
        "pushed {digest}: {}",
        out.stdout
    );
    untrusting(build(&format!("{tls_host}/tls/built:2")))
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .fail_with_any(&["UnknownIssuer", "certificate"])?;

    // A hub build: the local worker claims it, pulls its base and pushes
    // the image over https.
    let tools = ContainerTools::new(&[])?;
    let base = format!("{tls_host}/base/busybox:latest");
    let fixture = BusyboxImage::create(&scratch.join("busybox"))?;
    tools
        .skopeo()
        .args(["copy", "-q", "--dest-cert-dir"])
        .arg(&pki.cert_dir)
        .arg(fixture.oci_ref())
        .arg(format!("docker://{addr}/base/busybox:latest"))
        .run_ok()?;
    trusting(client.kiln())
        .args(["add-target", "tls", "--registry", &tls_host])
        .args(["--dest-tag", "tls-candidate"])
        .run_ok()?;
    let repo = GitRepo::create(
        &scratch.join("hello-tls"),
        &[(
            "Dockerfile",
            &dockerfile(
                &base,
                "hello-tls",
                "kiln/hello-tls",
                "1.0",
                None,
                "RUN echo built behind tls > /hello\n",
            ),
        )],
    )?;
    let mut c = trusting(client.kiln());
    c.current_dir(&repo.dir)
        .args(["container-build", "--target", "tls"]);
    c.run_opts(RunOpts::timeout(BUILD_TIMEOUT))?.ok()?;
    let out = trusting(client.kiln())
        .args(["build-info", "hello-tls-1.0-1", "--json"])
        .run_ok()?;
    let b: serde_json::Value = serde_json::from_str(&out.stdout)?;
    ensure_state(&b, "complete")?;
    let out = curl_head(
        &pki,
        &format!("https://{addr}/v2/kiln/hello-tls/manifests/1.0-1"),
        &["-I", "-H", &format!("Accept: {MANIFEST_ACCEPT}")],
    )?
    .ok()?;
    ensure!(
        header(&out, "Docker-Content-Digest").as_deref() == Some(str_field(&b, "manifest_digest")?),
        "{}",
        out.stdout
    );
    drop(server);
    Ok(())
}

/// `kiln ARGS --tls-* --listen 127.0.0.1:PORT` on a free port, ready when
/// `GET ready_path` answers 200 over https; the CA trusted through
/// `SSL_CERT_FILE` (a `kiln serve` worker pulls and pushes over https).
fn start_tls_server(
    scratch: &Scratch,
    pki: &Pki,
    args: &[&str],
    ready_path: &str,
) -> Result<(Server, u16)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let mut c = kiln();
        c.args(args)
            .args(pki.flags())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("SSL_CERT_FILE", &pki.ca);
        if std::env::var_os("KILN_LOG").is_none() {
            c.env("KILN_LOG", "info");
        }
        let log = scratch.join(format!("server-{attempt}.log"));
        let mut server = Server::spawn(&format!("kiln {}", args[0]), &mut c, &log)?;
        let url = format!("https://127.0.0.1:{port}{ready_path}");
        match wait_https_ready(&mut server, &url, &pki.ca, READY_TIMEOUT, |s| s == 200) {
            Ok(()) => return Ok((server, port)),
            Err(e) if attempt < 3 && server.log().to_lowercase().contains("in use") => {
                eprintln!("port {port} was taken, retrying: {e:#}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// `kiln hub serve` with a certificate: the CLI works over https.
#[test]
fn hub_serve_over_tls() -> Result<()> {
    let scratch = Scratch::new("tls-hub")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let data = scratch.join("data").display().to_string();
    let (server, port) = start_tls_server(
        &scratch,
        &pki,
        &["hub", "serve", "--data-dir", &data],
        "/api/v1/targets",
    )?;
    let url = format!("https://127.0.0.1:{port}");
    ensure!(
        server
            .log()
            .contains(&format!("kiln hub listening on {url}/api/v1/")),
        "no https listening line:\n{}",
        server.log()
    );
    let client = HubClient {
        url,
        token: None,
        xdg: scratch.mkdir("xdg")?,
    };
    client
        .kiln()
        .env("SSL_CERT_FILE", &pki.ca)
        .args(["add-target", "t1", "--registry", "registry.example:5000"])
        .args(["--dest-tag", "t1-candidate"])
        .run_ok()?;
    let out = client
        .kiln()
        .env("SSL_CERT_FILE", &pki.ca)
        .arg("list-targets")
        .run_ok()?;
    ensure!(out.stdout.contains("t1"), "{}", out.stdout);
    drop(server);
    Ok(())
}

/// Each bad input is one clear error and a non-zero exit, before anything
/// listens or is written.
#[test]
fn bad_tls_files_are_refused_before_listening() -> Result<()> {
    let scratch = Scratch::new("tls-bad")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let missing = scratch.join("missing.pem");
    let p = |p: &Path| p.display().to_string();
    let (cert, key, other, gone) = (p(&pki.cert), p(&pki.key), p(&pki.other_key), p(&missing));
    let half_config = scratch.join("half.toml");
    std::fs::write(&half_config, format!("[tls]\ncert_file = {cert:?}\n"))?;
    let half = p(&half_config);

    let registry = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["registry", "serve"].map(String::from).to_vec();
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    let with = |cmd: &[&str], args: &[&str]| -> Vec<String> {
        cmd.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };
    // (arguments, exit code, what stderr must say)
    let cases: Vec<(Vec<String>, i32, Vec<String>)> = vec![
        (
            registry(&["--tls-cert", &cert]),
            2,
            vec!["--tls-key".into()],
        ),
        (registry(&["--tls-key", &key]), 2, vec!["--tls-cert".into()]),
        (
            registry(&["--tls-cert", &cert, "--tls-key", &other]),
            1,
            vec![format!(
                "the TLS key file {other} does not match the certificate in {cert}"
            )],
        ),
        (
            registry(&["--tls-cert", &gone, "--tls-key", &key]),
            1,
            vec![format!("cannot read the TLS certificate file {gone}")],
        ),
        (
            registry(&["--tls-cert", &cert, "--tls-key", &gone]),
            1,
            vec![format!("cannot read the TLS key file {gone}")],
        ),
        (
            registry(&["--tls-cert", &key, "--tls-key", &key]),
            1,
            vec![format!(
                "the TLS certificate file {key} holds no certificate"
            )],
        ),
        (
            registry(&["--tls-cert", &cert, "--tls-key", &cert]),
            1,
            vec![format!("the TLS key file {cert} holds no private key")],
        ),
        (
            registry(&["--config", &half]),
            1,
            vec![half.clone(), "key_file".into()],
        ),
        (
            with(&["serve", "--tls-cert", &cert, "--tls-key", &other], &[]),
            1,
            vec!["does not match the certificate".into()],
        ),
        (
            with(&["serve", "--tls-key", &key], &[]),
            2,
            vec!["--tls-cert".into()],
        ),
        (
            with(
                &["hub", "serve", "--tls-cert", &cert, "--tls-key", &gone],
                &[],
            ),
            1,
            vec![format!("cannot read the TLS key file {gone}")],
        ),
    ];
    for (i, (args, code, needles)) in cases.iter().enumerate() {
        let data = scratch.join(format!("data-{i}"));
        let out = kiln()
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--data-dir")
            .arg(&data)
            .run_opts(RunOpts::timeout(Duration::from_secs(60)))?;
        ensure!(
            out.status.code() == Some(*code),
            "kiln {args:?}: exit {} (want {code}):\n{}",
            out.status,
            out.stderr
        );
        for n in needles {
            ensure!(
                out.stderr.contains(n.as_str()),
                "kiln {args:?}: stderr lacks {n:?}:\n{}",
                out.stderr
            );
        }
        ensure!(
            !out.stderr.contains("listening on") && !data.exists(),
            "kiln {args:?} got as far as starting:\n{}",
            out.stderr
        );
    }
    Ok(())
}

/// `kiln build --push` to a TLS registry on 127.0.0.1 (loopback registries
/// may speak HTTPS or plain HTTP; the client tries HTTPS first).
#[test]
fn build_push_to_a_loopback_tls_registry() -> Result<()> {
    let scratch = Scratch::new("tls-loopback-push")?;
    let pki = Pki::create(&scratch.join("pki"))?;
    let reg = tls_registry(&pki, None, true)?;
    let ctx = scratch.mkdir("ctx")?;
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n")?;
    kiln()
        .args([
            "build",
            "-q",
            "--push",
            "-t",
            &reg.image("tls/loopback", "1"),
            "--root",
        ])
        .arg(scratch.mkdir("build-root")?)
        .arg(&ctx)
        .env("SSL_CERT_FILE", &pki.ca)
        .run_opts(RunOpts::timeout(BUILD_TIMEOUT))?
        .ok()?;
    Ok(())
}
