//! The JSON the hub's REST API speaks, shared by the server, the workers and
//! the command line. Every CLI command is one of these requests.

use serde::{Deserialize, Serialize};

use crate::model::{Build, Package};

/// `POST /api/v1/builds`: `kiln container-build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitBuild {
    /// `GIT_URL#REF` (REF defaults to the remote's HEAD).
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub scratch: bool,
    #[serde(default)]
    pub isolated: bool,
    /// With `isolated`: the release to build.
    #[serde(default)]
    pub release: Option<String>,
}

/// `GET /api/v1/builds` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFilter {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `POST /api/v1/tasks/claim`: a worker asks for work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub worker: String,
}

/// What a worker gets: the task, the build to make and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: i64,
    /// Seconds the claim holds without a heartbeat.
    pub lease_secs: u64,
    pub build: Build,
    pub target: crate::model::Target,
}

/// `POST /api/v1/tasks/{id}/prepared`: the worker read the Dockerfile; the
/// hub checks it (labels, parent policy, NVR) and answers with the NVR and
/// the tags to push, or refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub worker: String,
    pub commit: String,
    /// Labels of the final stage (after ARG expansion).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The final stage's FROM; None for scratch.
    pub parent: Option<String>,
    /// container.yaml as found in the repository.
    #[serde(default)]
    pub container_yaml: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedAnswer {
    pub nvr: crate::model::Nvr,
    /// Labels to add to the image (release when bumped, build-date, vcs-*).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Full references to push, the unique one first.
    pub tags: Vec<String>,
}

/// `POST /api/v1/tasks/{id}/heartbeat` and log appends identify the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker: String,
}

/// `POST /api/v1/tasks/{id}/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub worker: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub image_size: i64,
    pub layers: Vec<String>,
    pub parent_digest: Option<String>,
    pub tags: Vec<String>,
    pub packages: Vec<Package>,
}

/// `POST /api/v1/tasks/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub worker: String,
    pub reason: String,
    /// The commit checked out, when the failure came after the checkout.
    #[serde(default)]
    pub commit: Option<String>,
}

/// The error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}
