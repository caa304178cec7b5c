//! OCI building blocks shared by every kiln room: content digests, repository
//! names and tags, image references, media types, and manifest parsing with
//! the validation a registry must apply. Pure: nothing here does I/O.

pub mod digest;
pub mod manifest;
pub mod media;
pub mod name;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, Manifest, ManifestError, ManifestKind};
pub use name::{NameError, validate_repository, validate_tag};
pub use reference::{Reference, ReferenceError};
