//! Workers: fetch dist-git, prepare the build, run the builder, collect content, push, report.
//!
//! - [`distgit`]: `GIT_URL#REF` → a commit → a plain checkout (gix).
//! - [`prepare`]: a checked-out dist-git tree → what the build needs
//!   (labels, parent image, the generated Dockerfile, `.repo` files), as
//!   atomic-reactor's pre-build plugins do.

pub mod distgit;
pub mod hubapi;
pub mod logship;
pub mod prepare;
pub mod worker;
