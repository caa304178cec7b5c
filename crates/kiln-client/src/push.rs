//! Pushing: blob existence checks, cross-repository mounts, uploads and
//! manifests.
//!
//! Uploads follow containers/image (skopeo, podman, buildah): `POST` opens
//! the session, one streamed `PATCH` sends the whole blob, `PUT ?digest=`
//! closes it. Every `Location` is resolved against the URL it came from.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kiln_oci::{Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use crate::challenge::Scope;
use crate::client::{Call, Client, Endpoint, Repo, location, pull_scope, push_scope};
use crate::error::{Error, Result};
use crate::pull::{blob_url, header_str};

const OCTET_STREAM: &str = "application/octet-stream";
const READ_CHUNK: usize = 1 << 20;

impl Client {
    /// The blob's size if the repository has it (`HEAD`), `None` if not.
    pub async fn blob_exists(&self, repo: &Repo, digest: &Digest) -> Result<Option<u64>> {
        let ep = self.endpoint(&repo.registry).await?;
        let url = blob_url(&ep, repo, digest)?;
        let call = Call::new(
            Method::HEAD,
            url.clone(),
            &repo.name,
            pull_scope(&repo.name),
        );
        let resp = self.execute(&ep, &call).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                header_str(&resp, CONTENT_LENGTH.as_str())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => {
                let what = format!("blob {digest} in {}", repo.name);
                Err(self
                    .status_error(&ep, "HEAD", &url, resp, &repo.name, &what)
                    .await)
            }
        }
    }

    /// Asks the registry to link a blob of `from` (same registry) into
    /// `repo` without uploading it. `false` when it would not (it opened an
    /// upload instead, which is cancelled): push the blob then.
    pub async fn mount_blob(&self, repo: &Repo, digest: &Digest, from: &str) -> Result<bool> {
        let ep = self.endpoint(&repo.registry).await?;
        let mut url = ep.url(&format!("/v2/{}/blobs/uploads/", repo.name))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let mut scopes = push_scope(&repo.name);
        scopes.extend([Scope::repository(from, &["pull"])]);
        let empty = || Ok(reqwest::Body::from(Vec::new()));
        let call = Call::new(Method::POST, url.clone(), &repo.name, scopes).body(&empty);
        let resp = self.execute(&ep, &call).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(upload) = location(&ep, &resp) {
                    self.cancel_upload(&ep, repo, upload).await;
                }
                Ok(false)
            }
            _ => Err(self
                .status_error(&ep, "POST", &url, resp, &repo.name, "upload")
                .await),
        }
    }

    /// Best effort: an abandoned session would otherwise linger until the
    /// registry's upload TTL.
    async fn cancel_upload(&self, ep: &Endpoint, repo: &Repo, url: Url) {
        let call = Call::new(Method::DELETE, url, &repo.name, push_scope(&repo.name));
        if let Err(e) = self.execute(ep, &call).await {
            tracing::debug!(%e, "cancelling an upload failed");
        }
    }

    /// Uploads the file at `path` as blob `digest` (the registry checks the
    /// digest). `progress` gets the bytes sent so far.
    pub async fn push_blob_file(
        &self,
        repo: &Repo,
        digest: &Digest,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(path, e))?
            .len();
        let ep = self.endpoint(&repo.registry).await?;
        let upload = self.start_upload(&ep, repo).await?;

        let (sent_tx, mut sent_rx) = watch::channel(0u64);
        let sent_tx = Arc::new(sent_tx);
        let body = || {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let sent = sent_tx.clone();
            sent.send_replace(0);
            let mut total = 0u64;
            let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(file), READ_CHUNK)
                .inspect(move |chunk| {
                    if let Ok(c) = chunk {
                        total += c.len() as u64;
                        sent.send_replace(total);
                    }
                });
            Ok(reqwest::Body::wrap_stream(stream))
        };
        let call = Call::new(
            Method::PATCH,
            upload.clone(),
            &repo.name,
            push_scope(&repo.name),
        )
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, size.to_string())
        .body(&body);
        let patch = self.execute(&ep, &call);
        tokio::pin!(patch);
        // Report progress from this task while the body streams.
        let resp = loop {
            tokio::select! {
                r = &mut patch => break r?,
                Ok(()) = sent_rx.changed() => progress(*sent_rx.borrow_and_update()),
            }
        };
        progress(*sent_rx.borrow());
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error(&ep, "PATCH", &upload, resp, &repo.name, "upload")
                .await);
        }
        let next = location(&ep, &resp)?;
        self.finish_upload(&ep, repo, next, digest, None).await
    }

    /// Uploads a small blob (a config) from memory in one `PUT`; returns
    /// its sha256 digest.
    pub async fn push_blob_bytes(&self, repo: &Repo, data: Bytes) -> Result<Digest> {
        let digest = Digest::sha256_of(&data);
        let ep = self.endpoint(&repo.registry).await?;
        let upload = self.start_upload(&ep, repo).await?;
        self.finish_upload(&ep, repo, upload, &digest, Some(data))
            .await?;
        Ok(digest)
    }

    async fn start_upload(&self, ep: &Endpoint, repo: &Repo) -> Result<Url> {
        let url = ep.url(&format!("/v2/{}/blobs/uploads/", repo.name))?;
        let empty = || Ok(reqwest::Body::from(Vec::new()));
        let call = Call::new(
            Method::POST,
            url.clone(),
            &repo.name,
            push_scope(&repo.name),
        )
        .body(&empty);
        let resp = self.execute(ep, &call).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error(ep, "POST", &url, resp, &repo.name, "upload")
                .await);
        }
        location(ep, &resp)
    }

    /// `PUT upload?digest=…` with the last (or only) part of the content.
    async fn finish_upload(
        &self,
        ep: &Endpoint,
        repo: &Repo,
        mut url: Url,
        digest: &Digest,
        data: Option<Bytes>,
    ) -> Result<()> {
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let data = data.unwrap_or_default();
        let body = || Ok(reqwest::Body::from(data.clone()));
        let call = Call::new(Method::PUT, url.clone(), &repo.name, push_scope(&repo.name))
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(&body);
        let resp = self.execute(ep, &call).await?;
        if resp.status() != StatusCode::CREATED {
            let what = format!("upload of {digest}");
            return Err(self
                .status_error(ep, "PUT", &url, resp, &repo.name, &what)
                .await);
        }
        Ok(())
    }

    /// Stores a manifest under the reference's tag (or, without one, its
    /// digest, which must then match the bytes). Returns the digest of
    /// `bytes`, checked against the registry's `Docker-Content-Digest`.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest> {
        let repo = Repo::from(reference);
        let algorithm = reference
            .digest
            .as_ref()
            .map_or(kiln_oci::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        let target = match (&reference.tag, &reference.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        let ep = self.endpoint(&repo.registry).await?;
        let url = ep.url(&format!("/v2/{}/manifests/{target}", repo.name))?;
        if let Some(expected) = &reference.digest
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
                url: url.to_string(),
            });
        }
        let body = || Ok(reqwest::Body::from(bytes.clone()));
        let call = Call::new(Method::PUT, url.clone(), &repo.name, push_scope(&repo.name))
            .header(CONTENT_TYPE, media_type)
            .body(&body);
        let resp = self.execute(&ep, &call).await?;
        if resp.status() != StatusCode::CREATED {
            let what = format!("manifest {reference}");
            return Err(self
                .status_error(&ep, "PUT", &url, resp, &repo.name, &what)
                .await);
        }
        if let Some(announced) = header_str(&resp, "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok())
            .filter(|d| d.algorithm() == digest.algorithm())
            && announced != digest
        {
            return Err(Error::DigestMismatch {
                expected: digest,
                actual: announced,
                url: url.to_string(),
            });
        }
        Ok(digest)
    }
}
