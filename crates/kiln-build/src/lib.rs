//! The builder: Dockerfile and context in, OCI image out.
//!
//! - [`store`]: the local content store (blobs, layer directories, cache).
//! - [`executor`]: stages and instructions, the build cache, image config.
//! - [`run`]: RUN in the sandbox (`kiln-sandbox`); [`fileop`]: COPY/ADD/WORKDIR
//!   in the file helper (`kiln-fileops`); both are helper processes.
//! - [`layers`]: upper directory → layer blob, blob → layer directory.
//! - [`pull`], [`push`], [`download`]: registries and URLs (`kiln-client`).
//! - [`output`]: OCI layout directories and archives.
//! - [`ssh`], [`sshagent`]: `RUN --mount=type=ssh` (`--ssh`): forwarded
//!   agents and kiln's own agent for key files.
//!
//! [`build`] runs a whole build with [`BuildOptions`].

pub mod cachekey;
pub mod download;
pub mod error;
pub mod executor;
pub mod fileop;
pub mod image;
pub mod layers;
pub mod options;
pub mod output;
pub mod prepare;
pub mod progress;
pub mod pull;
pub mod push;
pub mod run;
pub mod semantics;
pub mod ssh;
pub mod sshagent;
pub mod store;

pub use error::BuildError;
pub use executor::{BaseRef, BuildResult, Executor};
pub use options::{
    BuildOptions, Compression, HelperCommand, Network, PullPolicy, RunMount, SecretSource,
    SshSource, pinned_base,
};
pub use progress::Progress;

/// Builds, then pushes to every tag (with `push`), records the image under
/// its tags in the local store, and writes the outputs.
pub async fn build(opts: BuildOptions, progress: Progress) -> Result<BuildResult, BuildError> {
    let push_tags = if opts.push {
        opts.tags.clone()
    } else {
        Vec::new()
    };
    let outputs = opts.outputs.clone();
    let tags = opts.tags.clone();
    let executor = Executor::new(opts, progress.clone())?;
    let client = executor.client.clone();
    let store = executor.store.clone();
    let result = executor.build().await?;
    for tag in &tags {
        pull::record_local(&store, tag, &result)?;
    }
    for tag in &push_tags {
        push::push(&client, &store, &result, tag, &progress).await?;
    }
    for out in &outputs {
        let mut blobs = Vec::new();
        let manifest: kiln_oci::Manifest =
            kiln_oci::Manifest::parse(&result.manifest, Some(result.format.manifest_media_type()))
                .map_err(|e| BuildError::Internal(e.to_string()))?;
        let desc = kiln_oci::Descriptor {
            media_type: result.format.manifest_media_type().to_string(),
            digest: result.manifest_digest.clone(),
            size: result.manifest.len() as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
            platform: None,
        };
        let all: Vec<kiln_oci::Descriptor> = manifest.required_blobs().cloned().collect();
        blobs.extend(all.iter());
        let ref_name = tags.first().map(|t| t.rsplit(':').next().unwrap_or(t));
        output::write(
            &store,
            &output::ImageBlobs {
                manifest: &desc,
                blobs,
                ref_name,
            },
            out,
        )?;
        progress.line(&format!("Wrote {out:?}"));
    }
    Ok(result)
}

/// Pushes an image that [`build`] made (without `push`) to every tag in
/// `tags`, from the store at `opts.root`, with the registry client a build
/// with these options uses: so a caller can check the image before any tag
/// moves.
pub async fn push_image(
    opts: &BuildOptions,
    result: &BuildResult,
    tags: &[String],
    progress: Progress,
) -> Result<(), BuildError> {
    let store = store::Store::open(&opts.root)?;
    let client = executor::registry_client(opts, &progress)?;
    for tag in tags {
        push::push(&client, &store, result, tag, &progress).await?;
    }
    Ok(())
}

/// Writes the parts of a built image's root filesystem (its layers, from
/// the store at `store_root`) that lie under `dirs` into `dest`, with the
/// directories and symlinks leading there; all of it when `dirs` is empty.
/// The build service scans the package databases this way without
/// unpacking the whole image.
pub fn materialize_image(
    store_root: &std::path::Path,
    layers: &[store::LayerInfo],
    dest: &std::path::Path,
    dirs: &[&str],
) -> Result<(), BuildError> {
    let store = store::Store::open(store_root)?;
    let lowers: Vec<std::path::PathBuf> = layers
        .iter()
        .rev()
        .map(|l| store.layer_dir(&l.diff_id))
        .collect();
    if dirs.is_empty() {
        layers::materialize(&lowers, dest)
    } else {
        layers::materialize_filtered(&lowers, dest, &|p| layers::on_the_way_to(p, dirs))
    }
}
