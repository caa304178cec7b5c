//! Against kiln's own registry, in-process on a loopback port: auth off,
//! and Docker token auth on.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{KilnRegistry, descriptor, fetch_and_compare, oci_index, push_image, random_bytes};
use kiln_client::{Client, ClientOptions, Credentials, Error, Login, Platform};
use kiln_oci::{Digest, ManifestKind, Reference, media};

const MIB: usize = 1 << 20;

fn anonymous() -> Client {
    Client::new(ClientOptions::default()).unwrap()
}

fn client_as(host: &str, user: &str, password: &str) -> Client {
    Client::new(ClientOptions {
        credentials: Credentials::new().with(host, Login::new(user, password)),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn reference(host: &str, rest: &str) -> Reference {
    format!("{host}/{rest}").parse().unwrap()
}

#[tokio::test]
async fn push_mount_resolve_and_fetch_without_auth() {
    let reg = KilnRegistry::start("").await;
    let client = anonymous();
    let dir = tempfile::tempdir().unwrap();
    let app = reg.repo("kiln/app");

    // A 20 MiB blob from a file, with progress reported up to its size.
    let big = random_bytes(20 * MIB);
    let big_desc = descriptor(media::OCI_LAYER_GZIP, &big);
    let big_path = dir.path().join("big");
    std::fs::write(&big_path, &big).unwrap();
    let last = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    client
        .push_blob_file(&app, &big_desc.digest, &big_path, &|n| {
            assert!(n >= last.load(Ordering::Relaxed), "progress went backwards");
            last.store(n, Ordering::Relaxed);
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert_eq!(last.load(Ordering::Relaxed), big.len() as u64);
    assert!(calls.load(Ordering::Relaxed) > 1);
    assert_eq!(
        client.blob_exists(&app, &big_desc.digest).await.unwrap(),
        Some(big.len() as u64)
    );

    // A small blob from memory.
    let small = random_bytes(100);
    let small_digest = client
        .push_blob_bytes(&app, small.clone().into())
        .await
        .unwrap();
    assert_eq!(small_digest, Digest::sha256_of(&small));
    assert_eq!(
        client.blob_exists(&app, &small_digest).await.unwrap(),
        Some(100)
    );
    let unknown = Digest::sha256_of(b"never pushed");
    assert_eq!(client.blob_exists(&app, &unknown).await.unwrap(), None);

    // Mounting into another repository: a known blob is linked, an
    // unknown one is not (and the upload the registry opened is cancelled).
    let other = reg.repo("kiln/other");
    assert_eq!(
        client.blob_exists(&other, &big_desc.digest).await.unwrap(),
        None
    );
    assert!(
        client
            .mount_blob(&other, &big_desc.digest, "kiln/app")
            .await
            .unwrap()
    );
    assert_eq!(
        client.blob_exists(&other, &big_desc.digest).await.unwrap(),
        Some(big.len() as u64)
    );
    assert!(
        !client
            .mount_blob(&other, &unknown, "kiln/app")
            .await
            .unwrap()
    );

    // A whole image by tag, resolved by tag and by digest.
    let tagged = reference(&reg.host, "kiln/app:v1");
    let pushed = push_image(
        &client,
        &tagged,
        "linux",
        "amd64",
        &[3 * MIB, 10],
        dir.path(),
    )
    .await;
    let host = Platform::new("linux", "amd64", None);
    let by_tag = client.resolve_image(&tagged, &host).await.unwrap();
    assert_eq!(by_tag.manifest_digest, pushed.manifest_digest);
    assert_eq!(by_tag.manifest_bytes, pushed.manifest);
    assert_eq!(by_tag.manifest.kind, ManifestKind::OciManifest);
    assert_eq!(by_tag.media_type, media::OCI_MANIFEST);
    assert_eq!(by_tag.config_digest, pushed.config.digest);
    assert_eq!(
        Digest::sha256_of(&by_tag.config_bytes),
        pushed.config.digest
    );
    assert_eq!(by_tag.index_digest, None);
    let layer_digests: Vec<_> = by_tag.layers.iter().map(|l| l.digest.clone()).collect();
    let pushed_digests: Vec<_> = pushed
        .layers
        .iter()
        .map(|(l, _)| l.digest.clone())
        .collect();
    assert_eq!(layer_digests, pushed_digests);

    let pinned = by_tag.pinned();
    assert_eq!(pinned.tag, None);
    let by_digest = client.resolve_image(&pinned, &host).await.unwrap();
    assert_eq!(by_digest.manifest_digest, pushed.manifest_digest);
    assert_eq!(by_digest.config_bytes, by_tag.config_bytes);

    fetch_and_compare(&client, &app, &pushed, dir.path()).await;

    // A manifest pushed by digest only.
    let by_digest_ref = reference(&reg.host, &format!("kiln/app@{}", pushed.manifest_digest));
    let again = client
        .put_manifest(&by_digest_ref, media::OCI_MANIFEST, pushed.manifest.clone())
        .await
        .unwrap();
    assert_eq!(again, pushed.manifest_digest);
    let wrong_digest = reference(&reg.host, &format!("kiln/app@{}", Digest::sha256_of(b"x")));
    let err = client
        .put_manifest(&wrong_digest, media::OCI_MANIFEST, pushed.manifest.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    // A manifest whose config was never pushed: the registry's error codes
    // come through.
    let orphan = common::oci_manifest(&descriptor(media::OCI_CONFIG, b"{\"x\":1}"), &[]);
    let err = client
        .put_manifest(
            &reference(&reg.host, "kiln/app:orphan"),
            media::OCI_MANIFEST,
            orphan,
        )
        .await
        .unwrap_err();
    match &err {
        Error::Status { status, errors, .. } => {
            assert_eq!(*status, 400, "{err}");
            assert!(
                errors.iter().any(|e| e.code == "MANIFEST_BLOB_UNKNOWN"),
                "{err}"
            );
        }
        other => panic!("expected Status, got {other}"),
    }

    // Things that are not there.
    let err = client
        .get_manifest(
            &reference(&reg.host, "kiln/app:nope"),
            &media::MANIFEST_TYPES,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { what, .. } if what.contains("kiln/app:nope")),
        "{err}"
    );
    let missing = descriptor(media::OCI_LAYER_GZIP, b"not pushed");
    let dest = dir.path().join("missing");
    let err = client
        .fetch_blob(&app, &missing, &dest, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(!dest.exists());
}

#[tokio::test]
async fn index_resolves_to_the_requested_platform() {
    let reg = KilnRegistry::start("").await;
    let client = anonymous();
    let dir = tempfile::tempdir().unwrap();
    let amd = push_image(
        &client,
        &reference(&reg.host, "kiln/multi:amd64"),
        "linux",
        "amd64",
        &[1000],
        dir.path(),
    )
    .await;
    let arm = push_image(
        &client,
        &reference(&reg.host, "kiln/multi:arm64"),
        "linux",
        "arm64",
        &[2000],
        dir.path(),
    )
    .await;
    let index = oci_index(&[
        (
            descriptor(media::OCI_MANIFEST, &amd.manifest),
            "linux",
            "amd64",
        ),
        (
            descriptor(media::OCI_MANIFEST, &arm.manifest),
            "linux",
            "arm64",
        ),
    ]);
    let index_ref = reference(&reg.host, "kiln/multi:latest");
    let index_digest = client
        .put_manifest(&index_ref, media::OCI_INDEX, index.clone())
        .await
        .unwrap();

    let fetched = client
        .get_manifest(&index_ref, &media::MANIFEST_TYPES)
        .await
        .unwrap();
    assert_eq!(fetched.media_type, media::OCI_INDEX);
    assert_eq!(fetched.digest, index_digest);
    assert_eq!(fetched.bytes, index);

    let got = client
        .resolve_image(&index_ref, &"linux/arm64".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(got.manifest_digest, arm.manifest_digest);
    assert_eq!(got.index_digest, Some(index_digest.clone()));
    assert_eq!(got.config_digest, arm.config.digest);
    let got = client
        .resolve_image(&index_ref, &"linux/amd64".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(got.manifest_digest, amd.manifest_digest);
    fetch_and_compare(&client, &reg.repo("kiln/multi"), &amd, dir.path()).await;

    let err = client
        .resolve_image(&index_ref, &"linux/s390x".parse().unwrap())
        .await
        .unwrap_err();
    match &err {
        Error::NoMatchingPlatform {
            wanted, available, ..
        } => {
            assert_eq!(wanted, "linux/s390x");
            assert_eq!(available, &["linux/amd64", "linux/arm64"]);
        }
        other => panic!("expected NoMatchingPlatform, got {other}"),
    }
    assert!(err.to_string().contains("linux/arm64"), "{err}");
}

#[tokio::test]
async fn token_auth_users_and_refusals() {
    let reg = KilnRegistry::start_with_auth().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = client_as(&reg.host, "alice", "alice-pw");
    let tagged = reference(&reg.host, "kiln/app:v1");
    let pushed = push_image(
        &alice,
        &tagged,
        "linux",
        "amd64",
        &[20 * MIB, 500],
        dir.path(),
    )
    .await;
    let app = reg.repo("kiln/app");
    let (layer, _) = &pushed.layers[0];
    assert_eq!(
        alice.blob_exists(&app, &layer.digest).await.unwrap(),
        Some(20 * MIB as u64)
    );
    // Mounting needs a token for two repositories.
    let copy = reg.repo("kiln/copy");
    assert!(
        alice
            .mount_blob(&copy, &layer.digest, "kiln/app")
            .await
            .unwrap()
    );
    assert!(
        alice
            .blob_exists(&copy, &layer.digest)
            .await
            .unwrap()
            .is_some()
    );

    // bob may pull...
    let bob = client_as(&reg.host, "bob", "bob-pw");
    let image = bob
        .resolve_image(&tagged, &Platform::new("linux", "amd64", None))
        .await
        .unwrap();
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    fetch_and_compare(&bob, &app, &pushed, dir.path()).await;
    // ...but not push.
    let err = bob
        .push_blob_bytes(&app, random_bytes(10).into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied { repository, .. } if repository == "kiln/app"),
        "{err}"
    );
    let err = bob
        .put_manifest(
            &reference(&reg.host, "kiln/app:bob"),
            media::OCI_MANIFEST,
            pushed.manifest.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");

    // Wrong password, and no credentials at all.
    let mallory = client_as(&reg.host, "alice", "wrong");
    let err = mallory
        .get_manifest(&tagged, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    match &err {
        Error::Unauthorized {
            registry,
            repository,
            had_credentials,
            ..
        } => {
            assert_eq!(registry, &reg.host);
            assert_eq!(repository, "kiln/app");
            assert!(had_credentials);
        }
        other => panic!("expected Unauthorized, got {other}"),
    }
    let err = anonymous()
        .get_manifest(&tagged, &media::MANIFEST_TYPES)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                had_credentials: false,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn credentials_from_an_auth_file() {
    let reg = KilnRegistry::start_with_auth().await;
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:alice-pw");
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host),
    )
    .unwrap();
    let client = Client::new(ClientOptions {
        credentials: Credentials::load_file(&auth_file).unwrap(),
        ..ClientOptions::default()
    })
    .unwrap();
    let pushed = push_image(
        &client,
        &reference(&reg.host, "kiln/file:1"),
        "linux",
        "amd64",
        &[10],
        dir.path(),
    )
    .await;
    fetch_and_compare(&client, &reg.repo("kiln/file"), &pushed, dir.path()).await;
}

#[tokio::test]
async fn insecure_registry_falls_back_from_https_to_http() {
    let reg = KilnRegistry::start("").await;
    let client = Client::new(ClientOptions {
        insecure_registries: vec![reg.host.clone()],
        ..ClientOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The registry speaks plain HTTP only: the TLS handshake fails first.
    let pushed = push_image(
        &client,
        &reference(&reg.host, "kiln/insecure:1"),
        "linux",
        "amd64",
        &[10],
        dir.path(),
    )
    .await;
    let seen = Mutex::new(Vec::new());
    let (layer, _) = &pushed.layers[0];
    client
        .fetch_blob(
            &reg.repo("kiln/insecure"),
            layer,
            &dir.path().join("l"),
            &|n| seen.lock().unwrap().push(n),
        )
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().last(), Some(&10));
}
