//! The registry service: what blobs, manifests, tags and referrers mean,
//! independent of HTTP. Write order makes every object visible only once
//! what it points to is durable: blob → revision → tag.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use kiln_oci::{Descriptor, Digest, Manifest, validate_repository, validate_tag};
use serde::{Deserialize, Serialize};

use crate::config::{Config, StorageConfig};
use crate::error::{ErrorCode, RegistryError};
use crate::metrics::Metrics;
use crate::storage::keys::{self, RepoKey};
use crate::storage::{BlobStream, Storage, StorageError};
use crate::uploads::{Finished, UploadError, Uploads};

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        RegistryError::internal("storage", e)
    }
}

impl From<UploadError> for RegistryError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Unknown(_) => {
                RegistryError::new(ErrorCode::BlobUploadUnknown, e.to_string())
            }
            UploadError::OutOfOrder { .. } => {
                RegistryError::new(ErrorCode::RangeInvalid, e.to_string())
            }
            UploadError::Incomplete { .. } => {
                RegistryError::new(ErrorCode::BlobUploadInvalid, e.to_string())
            }
            UploadError::DigestMismatch { .. } => {
                RegistryError::new(ErrorCode::DigestInvalid, e.to_string())
            }
            UploadError::Io { .. } | UploadError::Join(_) => RegistryError::internal("upload", e),
        }
    }
}

/// What a revision link records besides the digest in its key.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionInfo {
    media_type: String,
}

pub struct CachedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

#[derive(Default)]
struct Cache {
    tags: HashMap<String, HashMap<String, (Digest, Instant)>>,
    revisions: HashMap<String, HashSet<Digest>>,
    content: HashMap<Digest, Arc<CachedManifest>>,
    content_bytes: usize,
    entries: usize,
}

const MAX_CACHE_ENTRIES: usize = 1_000_000;

pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

pub struct Registry {
    pub storage: Storage,
    pub uploads: Uploads,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    cache: RwLock<Cache>,
    stored: tokio::sync::Mutex<Option<(Instant, (u64, u64))>>,
    repos: tokio::sync::RwLock<Option<BTreeSet<String>>>,
    /// Held shared by writes that make blobs referenced and exclusively by
    /// the sweep of an in-process garbage collection.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
}

pub fn check_name(repo: &str) -> Result<(), RegistryError> {
    validate_repository(repo).map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e.to_string()))
}

pub fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse().map_err(|e: kiln_oci::DigestError| {
        RegistryError::new(ErrorCode::DigestInvalid, e.to_string())
    })
}

fn blob_unknown(d: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUnknown,
        format!("blob {d} is not in this repository"),
    )
}

fn manifest_unknown(repo: &str, reference: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not in repository {repo}"),
    )
}

impl Registry {
    pub fn open(data_dir: &Path, config: Config) -> Result<Registry, RegistryError> {
        let storage = match &config.storage {
            StorageConfig::Filesystem => {
                Storage::filesystem(&data_dir.join("store"), config.fsync)?
            }
            StorageConfig::S3(s3) => Storage::s3(s3)?,
        };
        Self::with_storage(data_dir, config, storage)
    }

    pub fn with_storage(
        data_dir: &Path,
        config: Config,
        storage: Storage,
    ) -> Result<Registry, RegistryError> {
        let uploads = Uploads::new(data_dir.join("uploads"), config.fsync)?;
        Ok(Registry {
            storage,
            uploads,
            config,
            metrics: Arc::new(Metrics::default()),
            cache: RwLock::new(Cache::default()),
            stored: tokio::sync::Mutex::new(None),
            repos: tokio::sync::RwLock::new(None),
            gc_lock: tokio::sync::RwLock::new(()),
        })
    }

    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn tag_ttl(&self) -> Option<Duration> {
        self.config.cache.tag_ttl_secs.map(Duration::from_secs)
    }

    // ---- repositories ----

    async fn note_repo(&self, repo: &str) {
        if let Some(set) = self.repos.write().await.as_mut() {
            set.insert(repo.to_string());
        }
    }

    /// Every repository holding at least one blob link or manifest, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        if let Some(set) = self.repos.read().await.as_ref() {
            return Ok(set.iter().cloned().collect());
        }
        let mut set = BTreeSet::new();
        let mut entries = self.storage.list(keys::REPOSITORIES);
        while let Some(e) = entries.try_next().await? {
            if let Some(k) = keys::parse_repo_key(&e.key) {
                let repo = match k {
                    RepoKey::Layer { repo, .. }
                    | RepoKey::Revision { repo, .. }
                    | RepoKey::Tag { repo, .. }
                    | RepoKey::Referrer { repo, .. } => repo,
                };
                if !set.contains(repo) {
                    set.insert(repo.to_string());
                }
            }
        }
        let out = set.iter().cloned().collect();
        *self.repos.write().await = Some(set);
        Ok(out)
    }

    async fn repo_exists(&self, repo: &str) -> Result<bool, RegistryError> {
        if let Some(set) = self.repos.read().await.as_ref() {
            return Ok(set.contains(repo));
        }
        Ok(self
            .catalog()
            .await?
            .binary_search_by(|r| r.as_str().cmp(repo))
            .is_ok())
    }

    // ---- blobs ----

    /// The blob's size if `repo` may see it (linked as a layer or a manifest).
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64, RegistryError> {
        check_name(repo)?;
        if self
            .storage
            .head(&keys::layer_link(repo, digest))
            .await?
            .is_none()
            && self
                .storage
                .head(&keys::revision(repo, digest))
                .await?
                .is_none()
        {
            return Err(blob_unknown(digest));
        }
        match self.storage.head(&keys::blob(digest)).await? {
            Some(e) => Ok(e.size),
            None => Err(blob_unknown(digest)),
        }
    }

    /// Streams a blob whose visibility the caller has just checked with
    /// [`Registry::blob_size`] (which also gave the size the range needs), so
    /// a GET looks up the links once.
    pub(crate) async fn blob_read_checked(
        &self,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<BlobStream, RegistryError> {
        self.storage
            .read(&keys::blob(digest), range)
            .await?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// Unlinks the blob from `repo`; the bytes go when no repository
    /// references them (garbage collection).
    pub async fn blob_delete(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        let link = keys::layer_link(repo, digest);
        check_name(repo)?;
        if self.storage.head(&link).await?.is_none() {
            return Err(blob_unknown(digest));
        }
        self.storage.delete(&link).await?;
        Ok(())
    }

    async fn link_blob(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        self.storage
            .put(
                &keys::layer_link(repo, digest),
                Bytes::from(digest.to_string()),
            )
            .await?;
        self.note_repo(repo).await;
        Ok(())
    }

    /// Links an existing blob into `repo`: from `from` when given (the blob
    /// must be visible there), else from anywhere it is stored. False when it
    /// cannot be mounted, and the client should upload instead.
    pub async fn mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<bool, RegistryError> {
        check_name(repo)?;
        let visible = match from {
            Some(from) => {
                validate_repository(from).is_ok() && self.blob_size(from, digest).await.is_ok()
            }
            None => self.storage.head(&keys::blob(digest)).await?.is_some(),
        };
        if !visible {
            return Ok(false);
        }
        let _guard = self.gc_lock.read().await;
        self.link_blob(repo, digest).await?;
        Ok(true)
    }

    /// Stores a verified upload as a blob (once across repositories) and
    /// links it into `repo`.
    pub async fn commit_upload(&self, repo: &str, finished: Finished) -> Result<(), RegistryError> {
        let key = keys::blob(&finished.digest);
        let _guard = self.gc_lock.read().await;
        if self
            .storage
            .head(&key)
            .await?
            .is_none_or(|e| e.size != finished.size)
        {
            self.storage
                .commit_file(finished.staged.clone(), &key)
                .await?;
        }
        let digest = finished.digest.clone();
        finished.cleanup().await;
        self.link_blob(repo, &digest).await
    }

    // ---- manifests ----

    async fn resolve(&self, repo: &str, reference: &str) -> Result<Digest, RegistryError> {
        if reference.contains(':') {
            let d = parse_digest(reference)?;
            if self
                .cache_read()
                .revisions
                .get(repo)
                .is_some_and(|s| s.contains(&d))
            {
                return Ok(d);
            }
            if self
                .storage
                .head(&keys::revision(repo, &d))
                .await?
                .is_none()
            {
                return Err(manifest_unknown(repo, reference));
            }
            self.cache_revision(repo, &d);
            return Ok(d);
        }
        validate_tag(reference)
            .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
        let ttl = self.tag_ttl();
        if let Some((d, at)) = self
            .cache_read()
            .tags
            .get(repo)
            .and_then(|t| t.get(reference))
            && ttl.is_none_or(|ttl| at.elapsed() < ttl)
        {
            return Ok(d.clone());
        }
        let raw = self
            .storage
            .get(&keys::tag(repo, reference))
            .await?
            .ok_or_else(|| manifest_unknown(repo, reference))?;
        let d = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.trim().parse::<Digest>().ok())
            .ok_or_else(|| {
                RegistryError::internal("tag link", format!("{repo}:{reference} holds no digest"))
            })?;
        self.cache_tag(repo, reference, &d);
        Ok(d)
    }

    fn cache_tag(&self, repo: &str, tag: &str, d: &Digest) {
        let mut c = self.cache_write();
        Self::make_room(&mut c);
        c.entries += 1;
        c.tags
            .entry(repo.to_string())
            .or_default()
            .insert(tag.to_string(), (d.clone(), Instant::now()));
    }

    fn cache_revision(&self, repo: &str, d: &Digest) {
        let mut c = self.cache_write();
        Self::make_room(&mut c);
        c.entries += 1;
        c.revisions
            .entry(repo.to_string())
            .or_default()
            .insert(d.clone());
    }

    fn make_room(c: &mut Cache) {
        if c.entries >= MAX_CACHE_ENTRIES {
            c.tags.clear();
            c.revisions.clear();
            c.entries = 0;
        }
    }

    fn cache_content(&self, m: Arc<CachedManifest>) {
        let limit = self.config.cache.manifest_bytes;
        if m.body.len() > limit {
            return;
        }
        let mut c = self.cache_write();
        while c.content_bytes + m.body.len() > limit {
            let Some(k) = c.content.keys().next().cloned() else {
                break;
            };
            if let Some(old) = c.content.remove(&k) {
                c.content_bytes -= old.body.len();
            }
        }
        c.content_bytes += m.body.len();
        if let Some(old) = c.content.insert(m.digest.clone(), m) {
            c.content_bytes -= old.body.len();
        }
    }

    /// The manifest `reference` (a tag or a digest) of `repo`.
    pub async fn manifest_get(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Arc<CachedManifest>, RegistryError> {
        check_name(repo)?;
        let digest = self.resolve(repo, reference).await?;
        if let Some(m) = self.cache_read().content.get(&digest) {
            return Ok(m.clone());
        }
        let info = self
            .storage
            .get(&keys::revision(repo, &digest))
            .await?
            .ok_or_else(|| manifest_unknown(repo, reference))?;
        let info: RevisionInfo = serde_json::from_slice(&info)
            .map_err(|e| RegistryError::internal("revision link", e))?;
        let body = self
            .storage
            .get(&keys::blob(&digest))
            .await?
            .ok_or_else(|| {
                RegistryError::internal("manifest", format!("content of {digest} is missing"))
            })?;
        if Digest::of(digest.algorithm(), &body) != digest {
            return Err(RegistryError::internal(
                "manifest",
                format!("stored content of {digest} does not match its digest"),
            ));
        }
        let m = Arc::new(CachedManifest {
            digest,
            media_type: info.media_type,
            body,
        });
        self.cache_content(m.clone());
        Ok(m)
    }

    pub async fn manifest_put(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest, RegistryError> {
        check_name(repo)?;
        let manifest = Manifest::parse(&body, content_type)
            .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
        let (digest, tag) = if reference.contains(':') {
            let want = parse_digest(reference)?;
            let got = Digest::of(want.algorithm(), &body);
            if got != want {
                return Err(RegistryError::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest content has digest {got}, not {want}"),
                ));
            }
            (want, None)
        } else {
            validate_tag(reference)
                .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
            (Digest::sha256_of(&body), Some(reference))
        };
        let _guard = self.gc_lock.read().await;
        self.check_references(repo, &manifest).await?;
        let media_type = manifest.kind.media_type().to_string();
        if self
            .storage
            .head(&keys::blob(&digest))
            .await?
            .is_none_or(|e| e.size != body.len() as u64)
        {
            self.storage.put(&keys::blob(&digest), body.clone()).await?;
        }
        let info = serde_json::to_vec(&RevisionInfo {
            media_type: media_type.clone(),
        })
        .unwrap_or_default();
        self.storage
            .put(&keys::revision(repo, &digest), Bytes::from(info))
            .await?;
        if let Some(tag) = tag {
            self.storage
                .put(&keys::tag(repo, tag), Bytes::from(digest.to_string()))
                .await?;
            self.cache_tag(repo, tag, &digest);
        }
        if let Some(subject) = &manifest.subject {
            let d = Descriptor {
                media_type: media_type.clone(),
                digest: digest.clone(),
                size: body.len() as i64,
                urls: None,
                annotations: manifest.annotations.clone(),
                artifact_type: manifest.effective_artifact_type(),
                platform: None,
            };
            let json = serde_json::to_vec(&d).unwrap_or_default();
            self.storage
                .put(
                    &keys::referrer(repo, &subject.digest, &digest),
                    Bytes::from(json),
                )
                .await?;
        }
        self.note_repo(repo).await;
        self.cache_revision(repo, &digest);
        self.cache_content(Arc::new(CachedManifest {
            digest: digest.clone(),
            media_type,
            body,
        }));
        Ok(PutManifest {
            digest,
            subject: manifest.subject.map(|s| s.digest),
        })
    }

    /// Every blob a manifest needs must be in the repository, and every
    /// manifest an index lists. A stale link (older than half the GC grace
    /// period) is rewritten so an out-of-process collector sees it in use.
    async fn check_references(&self, repo: &str, m: &Manifest) -> Result<(), RegistryError> {
        let refresh = Duration::from_secs(self.config.gc.grace_secs / 2);
        for d in m.required_blobs() {
            let missing = || {
                RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!(
                        "blob {} ({}) is not in repository {repo}; push it first",
                        d.digest, d.media_type
                    ),
                )
            };
            let link = self
                .storage
                .head(&keys::layer_link(repo, &d.digest))
                .await?;
            let Some(link) = link else {
                // A config may have been pushed as a manifest-typed blob.
                if self
                    .storage
                    .head(&keys::revision(repo, &d.digest))
                    .await?
                    .is_some()
                {
                    continue;
                }
                return Err(missing());
            };
            if self.storage.head(&keys::blob(&d.digest)).await?.is_none() {
                return Err(missing());
            }
            if SystemTime::now()
                .duration_since(link.modified)
                .unwrap_or_default()
                > refresh
            {
                self.link_blob(repo, &d.digest).await?;
            }
        }
        for d in &m.manifests {
            if self
                .storage
                .head(&keys::revision(repo, &d.digest))
                .await?
                .is_none()
            {
                return Err(RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!(
                        "manifest {} listed in the index is not in repository {repo}; push it first",
                        d.digest
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Deletes a tag, or a manifest by digest together with the tags that
    /// point to it and its entry in its subject's referrers.
    pub async fn manifest_delete(&self, repo: &str, reference: &str) -> Result<(), RegistryError> {
        check_name(repo)?;
        if !reference.contains(':') {
            validate_tag(reference)
                .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?;
            let key = keys::tag(repo, reference);
            if self.storage.head(&key).await?.is_none() {
                return Err(manifest_unknown(repo, reference));
            }
            self.storage.delete(&key).await?;
            if let Some(t) = self.cache_write().tags.get_mut(repo) {
                t.remove(reference);
            }
            return Ok(());
        }
        let digest = parse_digest(reference)?;
        let m = self.manifest_get(repo, reference).await?;
        for tag in self.storage.list_names(&keys::tags_dir(repo)).await? {
            let key = keys::tag(repo, &tag);
            if let Some(raw) = self.storage.get(&key).await?
                && raw.trim_ascii() == digest.to_string().as_bytes()
            {
                self.storage.delete(&key).await?;
            }
        }
        if let Ok(parsed) = Manifest::parse(&m.body, Some(&m.media_type))
            && let Some(subject) = parsed.subject
        {
            self.storage
                .delete(&keys::referrer(repo, &subject.digest, &digest))
                .await?;
        }
        self.storage.delete(&keys::revision(repo, &digest)).await?;
        let mut c = self.cache_write();
        if let Some(t) = c.tags.get_mut(repo) {
            t.retain(|_, (d, _)| *d != digest);
        }
        if let Some(r) = c.revisions.get_mut(repo) {
            r.remove(&digest);
        }
        Ok(())
    }

    /// The repository's tags in lexical order.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        check_name(repo)?;
        let mut tags = self.storage.list_names(&keys::tags_dir(repo)).await?;
        tags.retain(|t| validate_tag(t).is_ok());
        if tags.is_empty() && !self.repo_exists(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known"),
            ));
        }
        tags.sort();
        Ok(tags)
    }

    /// Descriptors of the manifests whose subject is `subject`, optionally
    /// only those of one artifact type.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        check_name(repo)?;
        let dir = keys::referrers_dir(repo, subject);
        let mut out = Vec::new();
        for name in self.storage.list_names(&dir).await? {
            let Some(raw) = self.storage.get(&format!("{dir}{name}")).await? else {
                continue;
            };
            let Ok(d) = serde_json::from_slice::<Descriptor>(&raw) else {
                continue;
            };
            if artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Blobs and bytes in storage, counted at most once a minute.
    pub async fn stored_totals(&self) -> Option<(u64, u64)> {
        let mut cached = self.stored.lock().await;
        if let Some((at, totals)) = *cached
            && at.elapsed() < Duration::from_secs(60)
        {
            return Some(totals);
        }
        let totals = self
            .storage
            .list(keys::BLOBS)
            .try_fold(
                (0u64, 0u64),
                |(n, b), e| async move { Ok((n + 1, b + e.size)) },
            )
            .await
            .ok()?;
        *cached = Some((Instant::now(), totals));
        Some(totals)
    }

    /// Forgets cached state (after an out-of-band change such as GC).
    pub fn clear_cache(&self) {
        *self.cache_write() = Cache::default();
    }
}
