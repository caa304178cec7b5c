//! kiln's OCI Distribution v1.1 registry: HTTP routes → registry service →
//! storage (object_store: local filesystem by default, S3 at scale).

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod storage;
pub mod tls;
pub mod uploads;

pub use config::{Config, StorageConfig, TlsConfig};
pub use error::{ErrorCode, RegistryError};
pub use registry::Registry;
pub use server::{Server, ServerError};
