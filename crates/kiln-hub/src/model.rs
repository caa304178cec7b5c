//! The hub's records. Plain data with serde: the database stores them, the
//! API sends them, the domain rules decide what may change.

use serde::{Deserialize, Serialize};

/// name-version-release, unique per build (scratch builds aside).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nvr {
    pub name: String,
    pub version: String,
    pub release: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Queued,
    Building,
    Complete,
    Failed,
    Canceled,
}

/// A package found inside an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    /// RPM epoch (None when unset); Debian epochs are part of `version`.
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// Source RPM file name, or the Debian source package.
    pub source: Option<String>,
    pub license: Option<String>,
    /// Key id of the RPM signature (hex, lower case), when signed.
    pub signing_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    Rpm,
    Deb,
}

/// One build: what was asked, what it became, what is inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Build {
    pub id: i64,
    pub state: BuildState,
    /// The component (dist-git repository) built.
    pub component: String,
    /// Known once the worker has read the Dockerfile.
    pub nvr: Option<Nvr>,
    pub source_url: String,
    /// The ref as submitted (`main`, a tag, a commit).
    pub source_ref: String,
    /// The commit `source_ref` resolved to.
    pub commit: Option<String>,
    pub target: String,
    pub owner: String,
    pub scratch: bool,
    pub isolated: bool,
    /// `--isolated --release R`: the release to use.
    pub release_override: Option<String>,
    /// The FROM of the final stage, as written and as pulled.
    pub parent_ref: Option<String>,
    pub parent_digest: Option<String>,
    /// The kiln build that produced the parent image, when there is one.
    pub parent_build_id: Option<i64>,
    pub manifest_digest: Option<String>,
    pub config_digest: Option<String>,
    /// Sum of the compressed layer sizes and the config.
    pub image_size: Option<i64>,
    pub layers: Vec<String>,
    /// Full references pushed (`registry/repo:tag`).
    pub tags: Vec<String>,
    pub packages: Vec<Package>,
    /// Why it failed or was canceled.
    pub reason: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting for a worker.
    Free,
    /// A worker holds the lease.
    Claimed,
    Done,
    Failed,
    Canceled,
}

/// The unit of work a worker claims: one build attempt queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub build_id: i64,
    pub state: TaskState,
    pub worker: Option<String>,
    /// Unix seconds until which the claim holds; renewed by heartbeats.
    pub lease_until: Option<i64>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Why the task failed or was canceled.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A package repository a target injects into its builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    pub name: String,
    pub baseurl: String,
    #[serde(default)]
    pub gpgcheck: bool,
}

/// Where builds of a target may start from and where they go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    /// `registry/repo` prefixes a FROM must match (`registry.example/base/`,
    /// or a whole registry `registry.example/`).
    pub allowed_parents: Vec<String>,
    pub repos: Vec<RepoSpec>,
    /// The tag builds of this target are tagged into when they complete.
    pub dest_tag: String,
    /// The registry images are pushed to (`host:port`, or `host:port/prefix`).
    pub registry: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub git_url: String,
    pub owners: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagAction {
    Tag,
    Untag,
}

/// One change of a tag's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEvent {
    pub tag: String,
    pub build_id: i64,
    pub action: TagAction,
    pub user: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
}

/// An entry of the event log (server-sent events; a broker bridge later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub at: String,
    /// `build.state`, `tag.changed`, …
    pub kind: String,
    pub build_id: Option<i64>,
    pub payload: serde_json::Value,
}

impl std::fmt::Display for Nvr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.name, self.version, self.release)
    }
}

/// A state name that is not one of the known states (from storage or a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

impl BuildState {
    pub const ALL: [BuildState; 5] = [
        BuildState::Queued,
        BuildState::Building,
        BuildState::Complete,
        BuildState::Failed,
        BuildState::Canceled,
    ];

    /// The lower-case name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Queued => "queued",
            BuildState::Building => "building",
            BuildState::Complete => "complete",
            BuildState::Failed => "failed",
            BuildState::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BuildState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuildState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState {
                kind: "build",
                value: s.to_string(),
            })
    }
}

impl TaskState {
    pub const ALL: [TaskState; 5] = [
        TaskState::Free,
        TaskState::Claimed,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Free => "free",
            TaskState::Claimed => "claimed",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState {
                kind: "task",
                value: s.to_string(),
            })
    }
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Rpm => "rpm",
            PackageKind::Deb => "deb",
        }
    }
}

impl std::str::FromStr for PackageKind {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rpm" => Ok(PackageKind::Rpm),
            "deb" => Ok(PackageKind::Deb),
            _ => Err(UnknownState {
                kind: "package kind",
                value: s.to_string(),
            }),
        }
    }
}

impl TagAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TagAction::Tag => "tag",
            TagAction::Untag => "untag",
        }
    }
}

impl std::str::FromStr for TagAction {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tag" => Ok(TagAction::Tag),
            "untag" => Ok(TagAction::Untag),
            _ => Err(UnknownState {
                kind: "tag action",
                value: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_and_match_serde() {
        for st in BuildState::ALL {
            assert_eq!(st.as_str().parse::<BuildState>(), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        for st in TaskState::ALL {
            assert_eq!(st.as_str().parse::<TaskState>(), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert!("Queued".parse::<BuildState>().is_err());
        assert_eq!("rpm".parse::<PackageKind>(), Ok(PackageKind::Rpm));
        assert_eq!("untag".parse::<TagAction>(), Ok(TagAction::Untag));
    }

    #[test]
    fn nvr_displays_with_dashes() {
        let nvr = Nvr {
            name: "fedora-httpd".into(),
            version: "2.4".into(),
            release: "3".into(),
        };
        assert_eq!(nvr.to_string(), "fedora-httpd-2.4-3");
    }
}
