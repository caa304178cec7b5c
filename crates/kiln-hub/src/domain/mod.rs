//! Pure rules of the build service: no I/O, no clock, no database. The
//! database layer and the API call these to decide; they are tested here
//! exhaustively.
//!
//! - [`nvr`]: image identity (NVR, repository) from Dockerfile labels
//! - [`release`]: release choice and bump, build flag rules
//! - [`tags`]: the tags a build pushes
//! - [`state`]: the build state machine
//! - [`policy`]: allowed parent images of a target
//! - [`container_yaml`]: OSBS's `container.yaml` subset
//! - [`permissions`]: who may build, tag, cancel, administer
//! - [`labels`]: automatic labels added before the build
//! - [`time`]: RFC 3339 and tag stamps from unix seconds
//! - [`rpmver`]: RPM version comparison, NEVRA, version constraints
//! - [`planner`]: which images to rebuild for updated packages, in batches
//! - [`cascade`]: a plan's items, coalescing, and each rebuild's next step

pub mod cascade;
pub mod container_yaml;
pub mod labels;
pub mod nvr;
pub mod permissions;
pub mod planner;
pub mod policy;
pub mod release;
pub mod rpmver;
pub mod state;
pub mod tags;
pub mod time;
