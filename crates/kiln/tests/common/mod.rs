//! Shared harness for kiln's end-to-end tests.
//!
//! Tests start the real `kiln` binary (`env!("CARGO_BIN_EXE_kiln")`) on a
//! free loopback port with a temporary data directory, and drive it with
//! the real clients (podman, buildah, skopeo, docker) through
//! `std::process::Command`. Everything a test starts is owned by a value that
//! stops it when dropped; every directory is a [`Scratch`] that unmounts and
//! deletes itself.
//!
//! - [`process`]: run commands with timeouts ([`RunExt`]), own servers ([`Server`])
//! - [`scratch`]: temp dirs that survive container tools' leftover mounts
//! - [`http`]: a tiny HTTP/1.1 client for checking what the clients hide
//! - [`registry`]: `kiln registry serve` ([`KilnRegistry`]), the peer
//!   `docker-registry` ([`DistributionRegistry`]), auth config ([`AuthConfig`])
//! - [`containers`]: podman/buildah/skopeo with private storage and config
//! - [`docker`]: a private dockerd started by hand
//! - [`fixtures`]: scripted, cached fixtures (`scripts/fixtures/*.sh`)
//! - [`service`]: the build service (`kiln serve`), its CLI and API, git
//!   repositories to build from
//!
//! Environment knobs: `KILN_TEST_KEEP=1` keeps temp dirs;
//! `KILN_E2E_PEER_REGISTRY=1` runs the client tests against docker-registry.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code, unused_imports)]

pub mod buildcmp;
pub mod containers;
pub mod docker;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod registry;
pub mod rootfs;
pub mod scratch;
pub mod service;

pub use containers::ContainerTools;
pub use docker::DockerDaemon;
pub use fixtures::{BusyboxImage, sha256_digest};
pub use process::{Output, RunExt, RunOpts, Server};
pub use registry::{
    AuthConfig, DistributionRegistry, KilnRegistry, RegistryOptions, RegistryServer,
};
pub use scratch::Scratch;

use std::sync::atomic::{AtomicU32, Ordering};

/// A repository name unique within this test process and across runs
/// (`e2e/{label}-{pid}-{n}`), so tests never see each other's images even
/// when they share a registry.
pub fn unique_repo(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("e2e/{label}-{}-{n}", std::process::id())
}
