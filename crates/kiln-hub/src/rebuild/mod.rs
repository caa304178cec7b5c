//! Automatic rebuilds at work: the coordinator that plans events and moves
//! their items along, the hook that turns a new build of a parent image into
//! an event, and the package repository watcher.
//!
//! The coordinator keeps no state of its own: each pass reads the pending
//! and running events and the unfinished items from the database and does
//! the next step of each (the rules are in [`crate::domain::cascade`]). A
//! hub restarted in the middle of a cascade therefore carries on where it
//! stopped. Passes run when something happened (a new event, a build that
//! finished: [`Hub::wake`]) and every second anyway.

mod watcher;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

pub use watcher::spawn_repo_watcher;

use crate::api::server::Hub;
use crate::db::{DbError, NewBuild, NewRebuildEvent};
use crate::domain::cascade::{self, ActiveItem, Admission, BuildOutcome, Step};
use crate::domain::planner::{GraphError, ImageGraph, Plan, missing_updates_reason};
use crate::domain::rpmver::{Nevra, RpmVersionError};
use crate::model::{
    Build, BuildState, Package, RebuildEvent, RebuildEventState, RebuildItem, RebuildItemState,
    RebuildTrigger,
};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("rebuild event {event}: stored update {update:?}: {source}")]
    Update {
        event: i64,
        update: String,
        source: RpmVersionError,
    },
}

/// Passes that changed something run again at once, up to this many.
const MAX_PASSES: usize = 32;

/// Runs the coordinator forever.
pub fn spawn_rebuilder(hub: Arc<Hub>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for _ in 0..MAX_PASSES {
                match pass(&hub).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "automatic rebuilds");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = hub.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

/// One pass over pending events, unfinished items and running events;
/// true when something changed.
pub async fn pass(hub: &Hub) -> Result<bool, RebuildError> {
    let mut changed = false;
    for ev in hub.db.rebuild_events_in(RebuildEventState::Pending).await? {
        changed |= admit_event(hub, &ev).await?;
    }
    changed |= advance_items(hub).await?;
    for ev in hub.db.rebuild_events_in(RebuildEventState::Running).await? {
        let items = hub.db.rebuild_items(ev.id).await?;
        if let Some((state, message)) = cascade::outcome(&items) {
            changed |= hub.db.finish_rebuild_event(ev.id, state, &message).await?;
        }
    }
    Ok(changed)
}

/// Parses an event's stored updates.
fn updates_of(ev: &RebuildEvent) -> Result<Vec<Nevra>, RebuildError> {
    ev.updates
        .iter()
        .map(|u| {
            Nevra::parse(u).map_err(|source| RebuildError::Update {
                event: ev.id,
                update: u.clone(),
                source,
            })
        })
        .collect()
}

/// The plan of an event against the images as they are now.
pub async fn plan_event(hub: &Hub, ev: &RebuildEvent) -> Result<Plan, RebuildError> {
    match (ev.trigger, ev.trigger_build_id, ev.replaced_build_id) {
        (RebuildTrigger::ParentBuild, Some(new), Some(old)) => {
            let graph = ImageGraph::new(hub.db.autorebuild_images(&[]).await?)?;
            let repository = hub
                .db
                .get_build(new)
                .await?
                .nvr
                .map(|n| n.name)
                .unwrap_or_default();
            Ok(graph.plan_below(old, new, &repository))
        }
        _ => plan_updates(hub, &updates_of(ev)?).await,
    }
}

/// The plan for updated packages (also the dry run).
pub async fn plan_updates(hub: &Hub, updates: &[Nevra]) -> Result<Plan, RebuildError> {
    let mut names: Vec<String> = updates.iter().map(|u| u.name.clone()).collect();
    names.sort();
    names.dedup();
    let graph = ImageGraph::new(hub.db.autorebuild_images(&names).await?)?;
    Ok(graph.plan(updates))
}

async fn admit_event(hub: &Hub, ev: &RebuildEvent) -> Result<bool, RebuildError> {
    let plan = plan_event(hub, ev).await?;
    let active: HashMap<String, ActiveItem> = hub
        .db
        .unfinished_rebuild_items()
        .await?
        .into_iter()
        .filter(|i| {
            i.event_id != ev.id
                && matches!(
                    i.state,
                    RebuildItemState::Waiting | RebuildItemState::Building
                )
        })
        .map(|i| {
            (
                i.repository.clone(),
                ActiveItem {
                    item_id: i.id,
                    event_id: i.event_id,
                    state: i.state,
                    build_id: i.build_id,
                },
            )
        })
        .collect();
    match cascade::admit(&plan, &active) {
        Admission::Defer { message } => {
            hub.db.set_rebuild_event_message(ev.id, &message).await?;
            Ok(false)
        }
        Admission::Admit {
            new_items,
            coalesce,
            state,
            message,
        } => {
            let done = hub
                .db
                .admit_rebuild_event(ev.id, &new_items, &coalesce, state, &message)
                .await?;
            if done {
                tracing::info!(event = ev.id, "rebuild event planned: {message}");
            }
            Ok(done)
        }
    }
}

async fn advance_items(hub: &Hub) -> Result<bool, RebuildError> {
    let items = hub.db.unfinished_rebuild_items().await?;
    let mut parents: HashMap<i64, RebuildItem> = HashMap::new();
    let mut changed = false;
    for it in &items {
        let parent = match it.parent_item_id {
            Some(p) => match parents.get(&p) {
                Some(found) => Some(found.clone()),
                None => {
                    let found = hub.db.get_rebuild_item(p).await?;
                    parents.insert(p, found.clone());
                    Some(found)
                }
            },
            None => None,
        };
        // Read every second for every building item: without packages.
        let current = match (it.state, it.build_id) {
            (RebuildItemState::Building, Some(b)) => Some(hub.db.get_build_record(b).await?),
            _ => None,
        };
        let outcome = current.as_ref().map(|b| BuildOutcome {
            state: b.state,
            reason: b.reason.clone(),
        });
        let step = cascade::step(
            it,
            parent.as_ref(),
            outcome.as_ref(),
            hub.config.rebuild_attempts,
        );
        changed |= match step {
            Step::Wait => false,
            Step::Start | Step::Retry => submit(hub, it, parent.as_ref()).await?,
            Step::Hold(why) => {
                hub.db
                    .finish_rebuild_item(it.id, RebuildItemState::Held, Some(&why))
                    .await?
            }
            Step::Fail(why) => {
                hub.db
                    .finish_rebuild_item(it.id, RebuildItemState::Failed, Some(&why))
                    .await?
            }
            Step::Done => {
                let nvr = current.and_then(|b| b.nvr).map(|n| n.to_string());
                let message = format!(
                    "rebuilt as {} (build {})",
                    nvr.unwrap_or_default(),
                    it.build_id.unwrap_or_default()
                );
                hub.db
                    .finish_rebuild_item(it.id, RebuildItemState::Complete, Some(&message))
                    .await?
            }
        };
    }
    Ok(changed)
}

/// The new build of an item's parent image, when its rebuild should be
/// built on one: the parent item's build, or the build by hand that
/// started a parent-build event.
async fn new_parent(
    hub: &Hub,
    it: &RebuildItem,
    parent: Option<&RebuildItem>,
    original: &Build,
) -> Result<Option<Build>, RebuildError> {
    if let Some(p) = parent {
        return match p.build_id {
            Some(b) => Ok(Some(hub.db.get_build(b).await?)),
            None => Ok(None),
        };
    }
    let ev = hub.db.get_rebuild_event(it.event_id).await?;
    match (ev.trigger, ev.trigger_build_id, ev.replaced_build_id) {
        (RebuildTrigger::ParentBuild, Some(new), Some(old))
            if original.parent_build_id == Some(old) =>
        {
            Ok(Some(hub.db.get_build(new).await?))
        }
        _ => Ok(None),
    }
}

/// Submits an item's next attempt: an ordinary build of the same commit,
/// without the cache, its FROM pinned to the new parent's digest.
async fn submit(
    hub: &Hub,
    it: &RebuildItem,
    parent: Option<&RebuildItem>,
) -> Result<bool, RebuildError> {
    let original = hub.db.get_build(it.original_build_id).await?;
    let new_parent = new_parent(hub, it, parent, &original).await?;
    let pin = match (&original.parent_ref, &new_parent) {
        (Some(from), Some(p)) => match &p.manifest_digest {
            Some(d) => cascade::pinned_parent(from, d),
            None => None,
        },
        _ => None,
    };
    let request = rebuild_request(&original, it.id, pin.clone(), hub.config.max_attempts);
    let started = match hub
        .db
        .start_rebuild_item(it.id, it.state, it.build_id, &request)
        .await
    {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(false),
        // The target or component is gone: this image cannot be rebuilt.
        Err(e @ DbError::NotFound { .. }) => {
            let why = format!("cannot submit the rebuild: {e}");
            return Ok(hub
                .db
                .finish_rebuild_item(it.id, RebuildItemState::Failed, Some(&why))
                .await?);
        }
        Err(e) => return Err(e.into()),
    };
    let mut log = format!(
        "Automatic rebuild of {} (build {}) for rebuild event {}, attempt {}\n",
        it.repository,
        original.id,
        it.event_id,
        it.attempts + 1
    );
    for r in &it.reasons {
        log.push_str(&format!("  because {r}\n"));
    }
    if let Some(pin) = &pin {
        log.push_str(&format!(
            "  FROM {} pinned to {pin}\n",
            original.parent_ref.as_deref().unwrap_or_default()
        ));
    }
    let _ = hub.logs.append(started.id, log.as_bytes());
    tracing::info!(
        item = it.id,
        event = it.event_id,
        build = started.id,
        "automatic rebuild of {} submitted",
        it.repository
    );
    Ok(true)
}

/// The build an item's attempt is: an ordinary build of the original's
/// commit, new release, no cache, its FROM pinned when `parent_pin` is set.
pub fn rebuild_request(
    original: &Build,
    item_id: i64,
    parent_pin: Option<String>,
    max_attempts: u32,
) -> NewBuild {
    NewBuild {
        component: original.component.clone(),
        source_url: original.source_url.clone(),
        source_ref: original
            .commit
            .clone()
            .unwrap_or_else(|| original.source_ref.clone()),
        target: original.target.clone(),
        owner: original.owner.clone(),
        scratch: false,
        isolated: false,
        release_override: None,
        max_attempts,
        no_cache: true,
        parent_pin,
        rebuild_item_id: Some(item_id),
    }
}

/// The post-check of a rebuild: the updates the new image still holds an
/// older version of, as a failure reason. None when the build is not a
/// rebuild or holds them all. The worker runs the same check before it
/// pushes; this one stays for workers that do not.
pub async fn missing_updates(
    hub: &Hub,
    build: &Build,
    packages: &[Package],
) -> Result<Option<String>, RebuildError> {
    let Some(item_id) = build.rebuild_item_id else {
        return Ok(None);
    };
    let it = hub.db.get_rebuild_item(item_id).await?;
    Ok(missing_updates_reason(packages, &it.expect))
}

/// After a build by hand completed: when it replaced the latest build of a
/// parent image on a tag that takes rebuilds, its children are rebuilt on
/// it (a parent-build event).
pub async fn parent_built(hub: &Hub, build: &Build) -> Result<Option<RebuildEvent>, RebuildError> {
    if build.state != BuildState::Complete
        || build.scratch
        || build.isolated
        || build.rebuild_item_id.is_some()
    {
        return Ok(None);
    }
    let Some((old, tag)) = hub.db.replaced_build(build).await? else {
        return Ok(None);
    };
    if !hub.db.autorebuild_tags().await?.contains(&tag) || hub.db.children_of(old).await?.is_empty()
    {
        return Ok(None);
    }
    let (ev, created) = hub
        .db
        .create_rebuild_event(&NewRebuildEvent {
            trigger: RebuildTrigger::ParentBuild,
            updates: Vec::new(),
            repo: None,
            trigger_build_id: Some(build.id),
            replaced_build_id: Some(old),
            submitter: build.owner.clone(),
            dedup_key: format!("parent-build:{}", build.id),
        })
        .await?;
    if created {
        hub.wake.notify_one();
    }
    Ok(Some(ev))
}

/// The key that makes the same set of updates one event.
pub fn updates_key(updates: &[Nevra]) -> String {
    let mut list: Vec<String> = updates.iter().map(ToString::to_string).collect();
    list.sort();
    list.dedup();
    let digest = sha2::Sha256::digest(list.join("\n").as_bytes());
    format!("packages:{}", hex::encode(digest))
}
