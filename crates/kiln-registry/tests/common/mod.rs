//! A registry on a free port, on the local filesystem or on S3 (s3s-fs
//! serving a directory in-process, with signature checks), plus a few
//! client helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use kiln_oci::{Digest, media};
use kiln_registry::{Config, Server};
use reqwest::{Client, Response, StatusCode};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Fs,
    S3,
}

pub struct TestRegistry {
    pub base: String,
    pub client: Client,
    pub data: TempDir,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _s3: Option<(TempDir, tokio::task::JoinHandle<()>)>,
    s3_toml: String,
    config: Config,
}

async fn start_s3() -> (String, TempDir, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("kiln")).expect("bucket dir");
    let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single("AKTEST", "SECRETTEST"));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind s3");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), dir, task)
}

impl TestRegistry {
    pub async fn start(backend: Backend) -> TestRegistry {
        Self::start_with(backend, "").await
    }

    /// `extra`: TOML appended to the backend's storage section.
    pub async fn start_with(backend: Backend, extra: &str) -> TestRegistry {
        let data = tempfile::tempdir().expect("tempdir");
        let (s3_toml, s3) = match backend {
            Backend::Fs => (String::new(), None),
            Backend::S3 => {
                let (endpoint, dir, task) = start_s3().await;
                let t = format!(
                    "[storage]\nkind = \"s3\"\nbucket = \"kiln\"\nendpoint = \"{endpoint}\"\nallow_http = true\naccess_key_id = \"AKTEST\"\nsecret_access_key = \"SECRETTEST\"\n"
                );
                (t, Some((dir, task)))
            }
        };
        let toml = format!("{extra}\n{s3_toml}");
        let config = Config::parse(&toml).expect("config");
        let mut r = TestRegistry {
            base: String::new(),
            client: Client::new(),
            data,
            addr: "127.0.0.1:0".parse().expect("addr"),
            shutdown: None,
            task: None,
            _s3: s3,
            s3_toml,
            config,
        };
        r.boot().await;
        r
    }

    async fn boot(&mut self) {
        let server = Server::bind(self.addr, self.data.path(), self.config.clone())
            .await
            .expect("bind");
        self.addr = server.local_addr().expect("addr");
        self.base = format!("http://{}", self.addr);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = server
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        }));
    }

    /// Stops the server (dropping in-memory state) and starts a new one on
    /// the same data and port.
    pub async fn restart(&mut self) {
        if let Some(t) = self.shutdown.take() {
            let _ = t.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // Pooled connections went with the old server.
        self.client = Client::new();
        self.boot().await;
    }

    /// The `[storage]` section reaching this registry's S3 bucket ("" on
    /// the filesystem backend).
    pub fn s3_toml(&self) -> String {
        self.s3_toml.clone()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.client.head(self.url(path)).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post(&self, path: &str) -> Response {
        self.client.post(self.url(path)).send().await.expect("POST")
    }

    /// Resolves a `Location` header against the registry.
    pub fn location(&self, resp: &Response) -> String {
        let loc = resp
            .headers()
            .get("location")
            .expect("Location header")
            .to_str()
            .expect("ascii");
        if loc.starts_with("http") {
            loc.to_string()
        } else {
            self.url(loc)
        }
    }

    /// Uploads a blob monolithically (POST then PUT).
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let loc = self.location(&r);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .client
            .put(format!("{loc}{sep}digest={d}"))
            .body(data.to_vec())
            .send()
            .await
            .expect("put");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("put manifest")
    }

    /// Pushes a config and one layer and an OCI manifest tagged `tag`;
    /// returns the manifest bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Bytes, Digest) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            Digest::sha256_of(layer)
        );
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, layer).await;
        let m = image_manifest(
            media::OCI_MANIFEST,
            &cd,
            config.len(),
            &[(ld, layer.len())],
            None,
        );
        let r = self.put_manifest(repo, tag, media::OCI_MANIFEST, &m).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
        let d = Digest::sha256_of(&m);
        (Bytes::from(m), d)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn image_manifest(
    media_type: &str,
    config: &Digest,
    config_size: usize,
    layers: &[(Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let (config_type, layer_type) = if media_type == media::DOCKER_MANIFEST {
        (media::DOCKER_CONFIG, media::DOCKER_LAYER_GZIP)
    } else {
        (media::OCI_CONFIG, media::OCI_LAYER_GZIP)
    };
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, s)| serde_json::json!({"mediaType": layer_type, "digest": d.to_string(), "size": s}))
        .collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": config.to_string(), "size": config_size},
        "layers": layers,
    });
    if let Some((d, s)) = subject {
        m["subject"] = serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": d.to_string(), "size": s});
    }
    serde_json::to_vec(&m).expect("json")
}

/// The `code` of the first error in a spec error body.
pub async fn error_code(r: Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_string()
}

/// Generates one `#[tokio::test]` per backend for an `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn filesystem() {
                    super::$name($crate::common::Backend::Fs).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    super::$name($crate::common::Backend::S3).await
                }
            }
        )*
    };
}
