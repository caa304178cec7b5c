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
    /// Build without the layer cache.
    #[serde(default)]
    pub no_cache: bool,
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
/// hub checks it (labels, parent policy, NVR) and answers with the NVR, the
/// tags to push and the updates a rebuild must hold, or refuses.
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
    /// For an automatic rebuild, the updates the image must hold
    /// (`name-[E:]V-R.arch`, its rebuild item's `expect`): the worker
    /// checks them before it pushes any tag. Empty otherwise, and from a
    /// hub that predates the field.
    #[serde(default)]
    pub expect: Vec<String>,
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

/// `POST /api/v1/package-updates`: `kiln package-update NEVRA… [--repo R]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUpdate {
    /// `name-[E:]V-R.arch`, e.g. `openssl-1:3.0.9-2.fc40.x86_64`.
    pub packages: Vec<String>,
    #[serde(default)]
    pub repo: Option<String>,
}

/// The event a package update became; `duplicate` when the same updates
/// were reported before (the earlier event, unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageUpdateAnswer {
    pub event: crate::model::RebuildEvent,
    pub duplicate: bool,
}

/// `POST /api/v1/rebuild-plan`: what updated packages would rebuild
/// (`kiln rebuild-plan`, a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildPlanRequest {
    pub packages: Vec<String>,
}

/// A plan as the API shows it: batches in build order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub batches: Vec<Vec<PlannedImage>>,
    pub skipped: Vec<PlannedImage>,
    /// Updates no image holds an older version of.
    pub no_effect: Vec<String>,
    /// Loops found in the parent records (build ids).
    pub cycles: Vec<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedImage {
    pub build_id: i64,
    pub nvr: Option<String>,
    pub repository: String,
    pub tags: Vec<String>,
    pub parent_build_id: Option<i64>,
    pub depth: usize,
    pub reasons: Vec<String>,
    /// Why it is not rebuilt (skipped images only).
    #[serde(default)]
    pub skipped: Option<String>,
}

/// `GET /api/v1/rebuild-events/{id}`: `kiln event-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildEventInfo {
    pub event: crate::model::RebuildEvent,
    pub items: Vec<RebuildItemInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildItemInfo {
    #[serde(flatten)]
    pub item: crate::model::RebuildItem,
    pub original_nvr: Option<String>,
    /// The NVR and state of the item's (latest) rebuild build.
    pub build_nvr: Option<String>,
    pub build_state: Option<crate::model::BuildState>,
}

/// `GET /api/v1/images?package=QUERY[&tag=T][&all=true]`: `kiln images-with`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesQuery {
    /// `NAME` or `NAME<OP>[E:]V[-R]` with OP one of `<`, `<=`, `=`, `>=`, `>`.
    pub package: String,
    /// Only the latest images on this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Every complete build, not only the latest on each tag.
    #[serde(default)]
    pub all: Option<bool>,
    /// Match the name of the source package the binary packages were built
    /// from (`openssl` finds openssl-libs too), not the binary name.
    #[serde(default)]
    pub source: Option<bool>,
}

/// An image holding a package that answers an [`ImagesQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMatch {
    pub build_id: i64,
    pub nvr: String,
    /// Tags on which the build is the latest of its name (empty with `all`
    /// for builds that are not).
    pub tags: Vec<String>,
    /// The installed package, `name-[E:]V-R.arch`.
    pub package: String,
}

/// A build in a lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub id: i64,
    pub nvr: Option<String>,
    pub state: crate::model::BuildState,
    pub parent_build_id: Option<i64>,
    pub manifest_digest: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageNode {
    pub build: BuildSummary,
    pub children: Vec<LineageNode>,
}

/// `GET /api/v1/builds/{id}/lineage`: `kiln lineage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub build: BuildSummary,
    /// Parent first, then its parent, up to a base image.
    pub ancestors: Vec<BuildSummary>,
    /// The builds made FROM this one, and theirs, as a tree.
    pub children: Vec<LineageNode>,
}

/// `PUT /api/v1/tags/{tag}`: `kiln edit-tag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSettings {
    pub autorebuild: bool,
}

/// `GET /api/v1/rebuild-events` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildEventFilter {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}
