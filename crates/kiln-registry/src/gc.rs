//! Garbage collection: mark every blob a manifest references (and every blob
//! linked recently), then sweep the rest. The sweep runs under the registry's
//! GC lock, after a second mark of what was written meanwhile, so an
//! in-process collection never races a push; a separate `kiln registry gc`
//! process relies on the grace period instead (links are refreshed by every
//! manifest push that uses them).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use kiln_oci::{Digest, Manifest};
use serde::Serialize;

use crate::error::RegistryError;
use crate::registry::Registry;
use crate::storage::keys::{self, RepoKey};

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub grace: Duration,
    pub upload_ttl: Duration,
    pub dry_run: bool,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_kept: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub links_deleted: u64,
    pub uploads_deleted: u64,
}

#[derive(Default)]
struct Marks {
    live: HashSet<Digest>,
    links: HashMap<Digest, Vec<String>>,
}

fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

/// Marks from every key under `repositories/` modified at or after `since`
/// (all of them when `since` is None).
async fn mark(
    reg: &Registry,
    marks: &mut Marks,
    grace: Duration,
    since: Option<SystemTime>,
) -> Result<(), RegistryError> {
    let mut entries = reg.storage.list(keys::REPOSITORIES);
    while let Some(e) = entries.try_next().await? {
        if since.is_some_and(|s| e.modified < s) {
            continue;
        }
        match keys::parse_repo_key(&e.key) {
            Some(RepoKey::Revision { digest, .. }) => {
                if let Some(body) = reg.storage.get(&keys::blob(&digest)).await?
                    && let Ok(m) = Manifest::parse(&body, None)
                {
                    for d in m.config.iter().chain(&m.layers).chain(&m.manifests) {
                        marks.live.insert(d.digest.clone());
                    }
                }
                marks.live.insert(digest);
            }
            Some(RepoKey::Layer { digest, .. }) => {
                if age(e.modified) < grace || since.is_some() {
                    marks.live.insert(digest.clone());
                }
                marks.links.entry(digest).or_default().push(e.key);
            }
            _ => {}
        }
    }
    Ok(())
}

pub async fn collect(reg: &Registry, opts: &GcOptions) -> Result<GcReport, RegistryError> {
    let started = SystemTime::now() - Duration::from_secs(2);
    let mut marks = Marks::default();
    mark(reg, &mut marks, opts.grace, None).await?;

    let _exclusive = reg.gc_lock.write().await;
    mark(reg, &mut marks, opts.grace, Some(started)).await?;
    let mut report = GcReport::default();
    let blobs: Vec<_> = reg.storage.list(keys::BLOBS).try_collect().await?;
    for blob in blobs {
        let Some(digest) = keys::parse_blob_key(&blob.key) else {
            continue;
        };
        if marks.live.contains(&digest) || age(blob.modified) < opts.grace {
            report.blobs_kept += 1;
            continue;
        }
        report.blobs_deleted += 1;
        report.bytes_freed += blob.size;
        let links = marks.links.remove(&digest).unwrap_or_default();
        report.links_deleted += links.len() as u64;
        if opts.dry_run {
            continue;
        }
        // Links first: a blob must never be visible without its content.
        for link in links {
            reg.storage.delete(&link).await?;
        }
        reg.storage.delete(&blob.key).await?;
        tracing::info!(%digest, size = blob.size, "gc: deleted blob");
    }
    report.uploads_deleted = reg.uploads.sweep(opts.upload_ttl, opts.dry_run).await? as u64;
    Ok(report)
}
