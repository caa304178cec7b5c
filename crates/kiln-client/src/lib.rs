//! OCI registry client: pull and push with token/basic auth, every blob
//! verified against its digest.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_client::Error> {
//! use kiln_client::{Client, ClientOptions, Credentials, Platform};
//! let client = Client::new(ClientOptions {
//!     credentials: Credentials::from_auth_files()?,
//!     ..ClientOptions::default()
//! })?;
//! let reference = "127.0.0.1:5000/app:1.0".parse().expect("reference");
//! let image = client.resolve_image(&reference, &Platform::host()).await?;
//! for layer in &image.layers {
//!     let dest = std::path::Path::new("/tmp").join(layer.digest.hex());
//!     client.fetch_blob(&(&reference).into(), layer, &dest, &|_| {}).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Reaching a registry
//! On first use of a registry the client pings `/v2/` to settle the scheme
//! and learn how the registry wants to be authenticated:
//! - loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`): HTTPS with
//!   certificates checked, then plain HTTP if the HTTPS connection fails;
//! - hosts in [`ClientOptions::insecure_registries`], and every host when
//!   [`ClientOptions::tls_verify`] is off: HTTPS accepting any certificate,
//!   then plain HTTP if the HTTPS connection fails (containers/image's
//!   `--tls-verify=false`, dockerd's insecure registries);
//! - everything else: HTTPS with certificates checked against the system
//!   store (`rustls-platform-verifier`, which reads `/etc/ssl/certs` on
//!   Linux). TLS is rustls on the `ring` provider: no OpenSSL, no aws-lc C
//!   build.
//!
//! `docker.io` is reached at `registry-1.docker.io`.
//!
//! # Authentication
//! Docker token auth: a `401` with `WWW-Authenticate: Bearer realm=…`
//! sends the client to the realm for a token for the scopes the operation
//! needs (`repository:NAME:pull`, `pull,push`, plus `repository:FROM:pull`
//! for mounts), with Basic credentials when [`Credentials`] has some for
//! the registry. Tokens are cached per registry and scope set until they
//! expire; a token asked for more scopes serves requests needing fewer.
//! `Basic` challenges get the credentials directly. One `401` is answered
//! by authenticating again; a second is [`Error::Unauthorized`]. `403` and
//! `DENIED` are [`Error::Denied`]. Credentials come from the caller and
//! from the podman/docker auth files ([`Credentials::from_auth_files`]);
//! credential helpers are not supported.
//!
//! # Integrity
//! Manifests are hashed and checked against the digest asked for or the
//! `Docker-Content-Digest` the registry announces; configs and layers
//! against their descriptors (size and digest). Blobs are streamed to
//! `DEST.partial`, hashed while written, fsynced and renamed; on any
//! failure nothing is left at `DEST` or `DEST.partial`. Blob redirects (to
//! object storage) are followed without our `Authorization` header.
//!
//! # Pushing
//! Uploads follow skopeo's default: `POST`, one streamed `PATCH`, `PUT
//! ?digest=`. Small blobs go in the closing `PUT`. Manifests are `PUT` by
//! tag (or digest).

mod challenge;
mod client;
mod credentials;
mod download;
mod error;
mod partial;
mod platform;
mod pull;
mod push;
mod transport;

pub use client::{Client, ClientOptions, Repo};
pub use credentials::{AuthFileEnv, Credentials, Login};
pub use download::Downloaded;
pub use error::{Error, RegistryErrorCode, Result};
pub use platform::{Platform, PlatformError, oci_arch};
pub use pull::{FetchedManifest, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, ResolvedImage};
