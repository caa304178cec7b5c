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
    /// Build without the layer cache (automatic rebuilds: a cached
    /// `dnf install` step would keep the old package).
    #[serde(default)]
    pub no_cache: bool,
    /// The reference (`registry/repo@sha256:…`) the final stage's FROM is
    /// pinned to: an automatic rebuild builds on its new parent's digest.
    #[serde(default)]
    pub parent_pin: Option<String>,
    /// `autorebuild` of the build's container.yaml (None: not set, on).
    #[serde(default)]
    pub autorebuild: Option<bool>,
    /// The automatic rebuild this build is an attempt of.
    #[serde(default)]
    pub rebuild_item_id: Option<i64>,
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
    /// The latest images on `dest_tag` are rebuilt when a package in them or
    /// their parent image is updated; the watcher polls `repos`.
    #[serde(default)]
    pub autorebuild: bool,
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

/// A tag and whether its latest images take automatic rebuilds (a tag
/// also takes them when it is the destination of a target that does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagInfo {
    pub name: String,
    pub autorebuild: bool,
}

/// What started a rebuild event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildTrigger {
    /// Updated packages, through the API or the CLI.
    PackageUpdate,
    /// Updated packages found by the repository watcher.
    RepoWatch,
    /// A new build of a parent image, submitted by hand.
    ParentBuild,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildEventState {
    /// Not planned yet (or waiting for images another event is building).
    Pending,
    /// Planned; rebuilds under way.
    Running,
    /// Every planned rebuild completed.
    Complete,
    /// Some rebuild failed or was held back (the items say which and why).
    Failed,
    /// No image holds an older version of any updated package.
    NoEffect,
}

/// One package-update or parent-build event and what kiln did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildEvent {
    pub id: i64,
    pub trigger: RebuildTrigger,
    pub state: RebuildEventState,
    /// Updated packages as `name-[E:]V-R.arch`.
    pub updates: Vec<String>,
    /// The repository the updates came from, when known.
    pub repo: Option<String>,
    /// For a parent build: the new build and the build it replaces.
    pub trigger_build_id: Option<i64>,
    pub replaced_build_id: Option<i64>,
    pub submitter: String,
    /// A summary (why it is pending, what failed, what had no effect).
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildItemState {
    /// Waits for its parent's rebuild (or its turn).
    Waiting,
    /// A rebuild build is queued or running.
    Building,
    Complete,
    /// Its rebuild failed after the allowed attempts.
    Failed,
    /// Not rebuilt because its parent's rebuild failed or was held.
    Held,
    /// Reached by the plan but not rebuilt (autorebuild off, a parent loop).
    Skipped,
    /// Rebuilt by another event's item (`coalesced_into`) instead.
    Coalesced,
}

/// One image of a rebuild event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildItem {
    pub id: i64,
    pub event_id: i64,
    /// The latest build of the image when the event was planned.
    pub original_build_id: i64,
    /// The image's name: its NVR's name (the component label), which
    /// identifies an image across its builds.
    pub repository: String,
    /// Batch: 0 for images whose parent is not rebuilt by this event.
    pub depth: u32,
    /// The item of the parent image, whose new build this one is built on.
    pub parent_item_id: Option<i64>,
    /// Why it is rebuilt, as sentences.
    pub reasons: Vec<String>,
    /// Updates the new image must hold (`name-[E:]V-R.arch`): checked when
    /// the rebuild completes.
    pub expect: Vec<String>,
    pub state: RebuildItemState,
    /// The latest rebuild build (one per attempt).
    pub build_id: Option<i64>,
    pub attempts: u32,
    pub coalesced_into: Option<i64>,
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
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

/// The names of an enum's variants as the API and the database spell them:
/// `ALL`, `as_str`, `Display` and `FromStr` (which reports an
/// [`UnknownState`] of `kind`).
macro_rules! named_enum {
    ($ty:ident, $kind:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownState {
                        kind: $kind,
                        value: s.to_string(),
                    })
            }
        }
    };
}

named_enum!(BuildState, "build", [
    Queued => "queued",
    Building => "building",
    Complete => "complete",
    Failed => "failed",
    Canceled => "canceled",
]);

named_enum!(TaskState, "task", [
    Free => "free",
    Claimed => "claimed",
    Done => "done",
    Failed => "failed",
    Canceled => "canceled",
]);

named_enum!(PackageKind, "package kind", [Rpm => "rpm", Deb => "deb"]);

named_enum!(TagAction, "tag action", [Tag => "tag", Untag => "untag"]);

named_enum!(RebuildTrigger, "rebuild trigger", [
    PackageUpdate => "package-update",
    RepoWatch => "repo-watch",
    ParentBuild => "parent-build",
]);

named_enum!(RebuildEventState, "rebuild event", [
    Pending => "pending",
    Running => "running",
    Complete => "complete",
    Failed => "failed",
    NoEffect => "no-effect",
]);

named_enum!(RebuildItemState, "rebuild item", [
    Waiting => "waiting",
    Building => "building",
    Complete => "complete",
    Failed => "failed",
    Held => "held",
    Skipped => "skipped",
    Coalesced => "coalesced",
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_and_match_serde() {
        fn round_trip<T, const N: usize>(all: [T; N])
        where
            T: Copy + std::fmt::Debug + PartialEq + Serialize + std::str::FromStr + ToString,
            T::Err: std::fmt::Debug,
        {
            for st in all {
                assert_eq!(st.to_string().parse::<T>().unwrap(), st);
                assert_eq!(serde_json::to_value(st).unwrap(), st.to_string());
            }
        }
        round_trip(BuildState::ALL);
        round_trip(TaskState::ALL);
        round_trip(PackageKind::ALL);
        round_trip(TagAction::ALL);
        round_trip(RebuildTrigger::ALL);
        round_trip(RebuildEventState::ALL);
        round_trip(RebuildItemState::ALL);
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
