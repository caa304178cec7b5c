//! Against Debian's docker-registry (the CNCF distribution registry), run
//! as a child process on a loopback port, anonymous.
#![allow(clippy::unwrap_used)]

mod common;

use common::{DockerRegistry, descriptor, fetch_and_compare, push_image};
use kiln_client::{Client, ClientOptions, Platform};
use kiln_oci::{Reference, media};

#[tokio::test]
async fn push_and_pull_round_trip() {
    let Some(reg) = DockerRegistry::start().await else {
        return;
    };
    let client = Client::new(ClientOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tagged: Reference = format!("{}/kiln/app:1.0", reg.host).parse().unwrap();
    let pushed = push_image(
        &client,
        &tagged,
        "linux",
        "amd64",
        &[5 << 20, 1],
        dir.path(),
    )
    .await;

    let image = client
        .resolve_image(&tagged, &Platform::new("linux", "amd64", None))
        .await
        .unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    assert_eq!(image.manifest_bytes, pushed.manifest);
    assert_eq!(image.media_type, media::OCI_MANIFEST);
    assert_eq!(image.config_digest, pushed.config.digest);
    let app = reg.repo("kiln/app");
    fetch_and_compare(&client, &app, &pushed, dir.path()).await;

    let (layer, _) = &pushed.layers[0];
    assert_eq!(
        client.blob_exists(&app, &layer.digest).await.unwrap(),
        Some(5 << 20)
    );
    let other = reg.repo("kiln/other");
    assert!(
        client
            .mount_blob(&other, &layer.digest, "kiln/app")
            .await
            .unwrap()
    );
    let unknown = descriptor(media::OCI_LAYER_GZIP, b"never pushed");
    assert!(
        !client
            .mount_blob(&other, &unknown.digest, "kiln/app")
            .await
            .unwrap()
    );
    assert_eq!(
        client.blob_exists(&other, &unknown.digest).await.unwrap(),
        None
    );
}
