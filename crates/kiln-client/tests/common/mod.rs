//! Real registries for the tests (kiln's own in-process, Debian's
//! docker-registry as a child process) and image-building helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_client::{Client, Repo};
use kiln_oci::{Descriptor, Digest, Reference, media};
use tempfile::TempDir;

/// kiln's registry on a free loopback port, stopped on drop.
pub struct KilnRegistry {
    pub host: String,
    _data: TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl KilnRegistry {
    /// `config`: registry TOML ("" for defaults: filesystem, no auth).
    pub async fn start(config: &str) -> KilnRegistry {
        let data = tempfile::tempdir().unwrap();
        let config = kiln_registry::Config::parse(config).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = kiln_registry::Server::bind(addr, data.path(), config)
            .await
            .unwrap();
        let host = server.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = server
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        });
        KilnRegistry {
            host,
            _data: data,
            shutdown: Some(tx),
        }
    }

    /// With token auth: `alice` may pull and push `kiln/**`, `bob` only pull.
    pub async fn start_with_auth() -> KilnRegistry {
        let alice = kiln_registry::auth::hash_password("alice-pw").unwrap();
        let bob = kiln_registry::auth::hash_password("bob-pw").unwrap();
        let config = format!(
            r#"
            [auth]
            anonymous_pull = false
            [[auth.users]]
            name = "alice"
            password_hash = "{alice}"
            [[auth.users]]
            name = "bob"
            password_hash = "{bob}"
            [[auth.grants]]
            users = ["alice"]
            repositories = ["kiln/**"]
            actions = ["pull", "push"]
            [[auth.grants]]
            users = ["bob"]
            repositories = ["kiln/**"]
            actions = ["pull"]
            "#
        );
        Self::start(&config).await
    }

    pub fn repo(&self, name: &str) -> Repo {
        Repo::new(self.host.clone(), name)
    }
}

impl Drop for KilnRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Debian's `docker-registry` (CNCF distribution) on a free loopback port.
pub struct DockerRegistry {
    pub host: String,
    child: Child,
    _dir: TempDir,
}

impl DockerRegistry {
    pub const BINARY: &str = "/usr/bin/docker-registry";

    /// `None` (with the reason printed) when the binary is not installed.
    pub async fn start() -> Option<DockerRegistry> {
        if !Path::new(Self::BINARY).exists() {
            eprintln!(
                "SKIP: {} not found (apt-get install docker-registry)",
                Self::BINARY
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.path().join("store").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(Self::BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let r = DockerRegistry {
            host,
            child,
            _dir: dir,
        };
        r.wait_ready().await;
        Some(r)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(&self.host).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not listen on {} in 20 s", self.host);
    }

    pub fn repo(&self, name: &str) -> Repo {
        Repo::new(self.host.clone(), name)
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Bytes that differ per call (xorshift seeded from the clock and a counter).
pub fn random_bytes(len: usize) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = (nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::sha256_of(data),
        size: data.len() as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
        platform: None,
    }
}

pub fn config_json(os: &str, arch: &str) -> Bytes {
    let salt = Digest::sha256_of(&random_bytes(16));
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": os,
            "config": {"Env": [format!("SALT={salt}")]},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap(),
    )
}

pub fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": config,
            "layers": layers,
        }))
        .unwrap(),
    )
}

pub fn oci_index(entries: &[(Descriptor, &str, &str)]) -> Bytes {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(d, os, arch)| {
            let mut v = serde_json::to_value(d).unwrap();
            v["platform"] = serde_json::json!({"os": os, "architecture": arch});
            v
        })
        .collect();
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap(),
    )
}

/// A pushed single-platform image.
pub struct Pushed {
    pub manifest_digest: Digest,
    pub manifest: Bytes,
    pub config: Descriptor,
    /// Each layer with the file it was pushed from.
    pub layers: Vec<(Descriptor, PathBuf)>,
}

/// Pushes an image with one layer per size in `layer_sizes` (files in
/// `dir`), a config for `os/arch`, and the manifest under `reference`.
pub async fn push_image(
    client: &Client,
    reference: &Reference,
    os: &str,
    arch: &str,
    layer_sizes: &[usize],
    dir: &Path,
) -> Pushed {
    let repo = Repo::from(reference);
    let mut layers = Vec::new();
    for size in layer_sizes {
        let data = random_bytes(*size);
        let desc = descriptor(media::OCI_LAYER_GZIP, &data);
        let path = dir.join(desc.digest.hex());
        std::fs::write(&path, &data).unwrap();
        client
            .push_blob_file(&repo, &desc.digest, &path, &|_| {})
            .await
            .unwrap();
        layers.push((desc, path));
    }
    let config_bytes = config_json(os, arch);
    let config = descriptor(media::OCI_CONFIG, &config_bytes);
    let pushed = client.push_blob_bytes(&repo, config_bytes).await.unwrap();
    assert_eq!(pushed, config.digest);
    let descs: Vec<_> = layers.iter().map(|(d, _)| d.clone()).collect();
    let manifest = oci_manifest(&config, &descs);
    let manifest_digest = client
        .put_manifest(reference, media::OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(manifest_digest, Digest::sha256_of(&manifest));
    Pushed {
        manifest_digest,
        manifest,
        config,
        layers,
    }
}

/// Downloads every layer of `image` into `dir` and checks the files.
pub async fn fetch_and_compare(client: &Client, repo: &Repo, pushed: &Pushed, dir: &Path) {
    for (desc, source) in &pushed.layers {
        let dest = dir.join(format!("got-{}", desc.digest.hex()));
        client.fetch_blob(repo, desc, &dest, &|_| {}).await.unwrap();
        assert!(
            std::fs::read(&dest).unwrap() == std::fs::read(source).unwrap(),
            "downloaded {} differs from what was pushed",
            desc.digest
        );
        let partial = dest.with_file_name(format!("got-{}.partial", desc.digest.hex()));
        assert!(!partial.exists());
    }
}
