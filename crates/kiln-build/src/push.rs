//! Pushing a built image: each layer is skipped when the registry has it,
//! mounted from the base image's repository when they share a registry, and
//! uploaded otherwise; then the config and the manifest under every tag.

use bytes::Bytes;
use kiln_client::{Client, Repo};
use kiln_oci::{Digest, Reference};

use crate::error::BuildError;
use crate::executor::BuildResult;
use crate::progress::Progress;
use crate::pull::{human_size, short};
use crate::store::Store;

pub async fn push(
    client: &Client,
    store: &Store,
    image: &BuildResult,
    target: &str,
    progress: &Progress,
) -> Result<Digest, BuildError> {
    let reference: Reference =
        target
            .parse()
            .map_err(|e: kiln_oci::ReferenceError| BuildError::BadReference {
                reference: target.to_string(),
                message: e.to_string(),
            })?;
    let repo = Repo::from(&reference);
    let err = |e: kiln_client::Error| BuildError::Push {
        reference: target.to_string(),
        error: e,
    };
    for layer in &image.layers {
        if client
            .blob_exists(&repo, &layer.digest)
            .await
            .map_err(err)?
            .is_some()
        {
            progress.line(&format!("Layer {} already present", short(&layer.digest)));
            continue;
        }
        if let Some((registry, base_repo)) = &image.origin
            && registry == &reference.registry
            && base_repo != &reference.repository
            && client
                .mount_blob(&repo, &layer.digest, base_repo)
                .await
                .map_err(err)?
        {
            progress.line(&format!(
                "Layer {} mounted from {base_repo}",
                short(&layer.digest)
            ));
            continue;
        }
        progress.line(&format!(
            "Copying blob {} ({})",
            short(&layer.digest),
            human_size(layer.size)
        ));
        client
            .push_blob_file(
                &repo,
                &layer.digest,
                &store.blob_path(&layer.digest),
                &|_| {},
            )
            .await
            .map_err(err)?;
    }
    let config = store.read_blob(&image.config_digest)?;
    if client
        .blob_exists(&repo, &image.config_digest)
        .await
        .map_err(err)?
        .is_none()
    {
        client
            .push_blob_bytes(&repo, Bytes::from(config))
            .await
            .map_err(err)?;
    }
    let digest = client
        .put_manifest(
            &reference,
            image.format.manifest_media_type(),
            Bytes::from(image.manifest.clone()),
        )
        .await
        .map_err(err)?;
    progress.line(&format!("Pushed {target}@{digest}"));
    Ok(digest)
}
