//! The build service: builds, tasks, NVRs, targets, tags, events.
//!
//! - [`model`]: the records (koji's data model, kept simple) — shared by the
//!   domain rules, the database and the API.
//! - [`domain`]: pure rules — NVRs from labels, release bump, tags to push,
//!   the build state machine, target policy, `container.yaml`, permissions,
//!   automatic labels.
//! - [`api`]: the REST API (`/api/v1/…`): protocol types, the axum server,
//!   build logs, the OpenAPI document, the lease reaper.
//! - [`db`]: the database ([`db::Db`]), SQLite or PostgreSQL through one code
//!   path. `Db::open(url)` migrates and returns a cloneable handle; builds
//!   (`create_build`, `get_build[_by_nvr]`, `list_builds`, `assign_nvr`,
//!   `set_commit`, `set_parent`, `complete_build`, `fail_build`,
//!   `cancel_build`, `builds_with_package`), tasks with leases (`claim_task`,
//!   `heartbeat`, `reap_expired`, `enqueue_task`), tags (`tag_build`,
//!   `untag_build`, `list_tagged`, `tag_history`), catalog (`put_/get_/list_/
//!   delete_component|target`), users and hashed tokens (`create_token`,
//!   `user_for_token`), and the event log (`events_since`). Errors are
//!   [`db::DbError`] (`DuplicateNvr`, `State`, `LeaseNotHeld`, `NotFound`, …).

pub mod api;
pub mod client;
pub mod db;
pub mod domain;
pub mod model;
pub mod rebuild;
pub mod repowatch;
