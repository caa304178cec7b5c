//! Base images: resolved at a registry (or found in the store when the pull
//! policy allows), every blob fetched once, verified, and unpacked once into
//! a layer directory.

use kiln_client::{Client, Platform, Repo, ResolvedImage};
use kiln_oci::{Descriptor, Digest, Reference};
use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::image::ImageConfig;
use crate::layers;
use crate::options::PullPolicy;
use crate::progress::Progress;
use crate::store::{LayerInfo, Store};

/// A base image ready to build on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseImage {
    /// `registry/repo:tag` as asked for, normalised.
    pub reference: String,
    pub registry: String,
    pub repository: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Bottom layer first; blob descriptors as the registry serves them.
    pub layers: Vec<LayerInfo>,
}

impl BaseImage {
    pub fn config(&self, store: &Store) -> Result<ImageConfig, BuildError> {
        let data = store.read_blob(&self.config_digest)?;
        serde_json::from_slice(&data).map_err(|e| BuildError::BadImageConfig {
            reference: self.reference.clone(),
            message: e.to_string(),
        })
    }
}

pub async fn base_image(
    client: &Client,
    store: &Store,
    name: &str,
    policy: PullPolicy,
    platform: &Platform,
    progress: &Progress,
) -> Result<BaseImage, BuildError> {
    let reference: Reference =
        name.parse()
            .map_err(|e: kiln_oci::ReferenceError| BuildError::BadReference {
                reference: name.to_string(),
                message: e.to_string(),
            })?;
    let key = local_key(&reference, platform);
    let local: Option<BaseImage> = store.image_get(&key);
    if let Some(img) = local.filter(|i| complete(store, i))
        && (policy != PullPolicy::Always || reference.digest.is_some())
    {
        return Ok(img);
    }
    if policy == PullPolicy::Never {
        return Err(BuildError::ImageNotLocal(name.to_string()));
    }
    progress.line(&format!("Resolving {name}"));
    let resolved = client
        .resolve_image(&reference, platform)
        .await
        .map_err(|e| BuildError::Pull {
            reference: name.to_string(),
            error: e,
        })?;
    let img = fetch(client, store, &reference, &resolved, name, progress).await?;
    store.image_put(&key, &img)?;
    Ok(img)
}

fn complete(store: &Store, img: &BaseImage) -> bool {
    store.has_blob(&img.config_digest)
        && img
            .layers
            .iter()
            .all(|l| store.has_blob(&l.digest) && store.has_layer_dir(&l.diff_id))
}

async fn fetch(
    client: &Client,
    store: &Store,
    reference: &Reference,
    resolved: &ResolvedImage,
    name: &str,
    progress: &Progress,
) -> Result<BaseImage, BuildError> {
    let config_digest = store.put_blob(&resolved.config_bytes)?;
    let config: ImageConfig =
        serde_json::from_slice(&resolved.config_bytes).map_err(|e| BuildError::BadImageConfig {
            reference: name.to_string(),
            message: e.to_string(),
        })?;
    let layer_descs: Vec<&Descriptor> = resolved.layers.iter().collect();
    if layer_descs.len() != config.rootfs.diff_ids.len() {
        return Err(BuildError::BadImageConfig {
            reference: name.to_string(),
            message: format!(
                "{} layers in the manifest but {} diff_ids in the config",
                layer_descs.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let repo = Repo::from(reference);
    let mut layers = Vec::new();
    for (desc, diff_id) in layer_descs.into_iter().zip(&config.rootfs.diff_ids) {
        if !store.has_blob(&desc.digest) {
            let scratch = store.scratch("pull")?;
            let tmp = scratch.path().join("blob");
            progress.line(&format!(
                "Copying blob {} ({})",
                short(&desc.digest),
                human_size(u64::try_from(desc.size).unwrap_or(0))
            ));
            let size = u64::try_from(desc.size).unwrap_or(0);
            let report = progress.transfer(format!("  {}", short(&desc.digest)), size);
            client
                .fetch_blob(&repo, desc, &tmp, &report)
                .await
                .map_err(|e| BuildError::Pull {
                    reference: name.to_string(),
                    error: e,
                })?;
            store.commit_blob_file(&tmp, &desc.digest)?;
        }
        let store2 = store.clone();
        let (d2, id2) = (desc.clone(), diff_id.clone());
        tokio::task::spawn_blocking(move || layers::unpack_blob(&store2, &d2, &id2))
            .await
            .map_err(|e| BuildError::Internal(e.to_string()))??;
        let info = LayerInfo {
            digest: desc.digest.clone(),
            diff_id: diff_id.clone(),
            size: u64::try_from(desc.size).unwrap_or(0),
            media_type: desc.media_type.clone(),
        };
        store.put_layer_info(&info)?;
        layers.push(info);
    }
    Ok(BaseImage {
        reference: name.to_string(),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        config_digest,
        layers,
    })
}

pub fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Remembers a built image under `tag` so that a later `FROM tag` (pull
/// policy "missing") uses it without a registry.
pub fn record_local(
    store: &Store,
    tag: &str,
    result: &crate::BuildResult,
) -> Result<(), BuildError> {
    let reference: Reference =
        tag.parse()
            .map_err(|e: kiln_oci::ReferenceError| BuildError::BadReference {
                reference: tag.to_string(),
                message: e.to_string(),
            })?;
    let key = local_key(&reference, &Platform::host());
    let img = BaseImage {
        reference: tag.to_string(),
        registry: reference.registry.clone(),
        repository: reference.repository.clone(),
        manifest_digest: result.manifest_digest.clone(),
        config_digest: result.config_digest.clone(),
        layers: result.layers.clone(),
    };
    store.image_put(&key, &img)
}

/// The store's name of an image reference on a platform.
fn local_key(reference: &Reference, platform: &Platform) -> String {
    format!(
        "{}/{}:{}@{}",
        reference.registry,
        reference.repository,
        reference.manifest_ref(),
        platform
    )
}
