//! Turning a rebuild plan into work, and moving each image's rebuild along.
//!
//! Rules:
//!
//! - Admission: an event's plan becomes items (one per image reached). An
//!   image another event is *waiting* to rebuild is not rebuilt twice: the
//!   reasons and expectations are added to that item and this event's item
//!   is `coalesced` into it. An image another event is *building* right now
//!   defers the whole event: the running build may predate the update, so
//!   the event is planned again once that build is done, against the new
//!   latest images.
//! - Progress: an item starts when it has no parent item or its parent item
//!   completed; it is held when its parent item failed or was held; a failed
//!   build is retried until the attempts run out; a canceled build is not
//!   retried (someone stopped it on purpose).
//! - An event ends when all its items have; it failed when any item failed
//!   or was held.

use std::collections::HashMap;

use super::planner::{Plan, RebuildReason};
use crate::model::{BuildState, RebuildEventState, RebuildItem, RebuildItemState};

/// An item of another event that is not finished, by image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveItem {
    pub item_id: i64,
    pub event_id: i64,
    pub state: RebuildItemState,
    pub build_id: Option<i64>,
}

/// Which item a new item waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentLink {
    None,
    /// Another new item of the same admission (index into `new_items`).
    New(usize),
    /// An item of another event that this image's parent was coalesced into.
    Existing(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub original_build_id: i64,
    pub repository: String,
    pub depth: u32,
    pub parent: ParentLink,
    pub reasons: Vec<String>,
    pub expect: Vec<String>,
    /// Waiting, Skipped or Coalesced.
    pub state: RebuildItemState,
    pub coalesced_into: Option<i64>,
    pub message: Option<String>,
}

/// Reasons and expectations added to another event's waiting item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coalesce {
    pub item_id: i64,
    pub reasons: Vec<String>,
    pub expect: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Plan again later; the message says what it waits for.
    Defer { message: String },
    Admit {
        new_items: Vec<NewItem>,
        coalesce: Vec<Coalesce>,
        /// The event's state right after admission, and a summary.
        state: RebuildEventState,
        message: String,
    },
}

/// The updates an image must hold once rebuilt: those it is directly
/// affected by, as `name-[E:]V-R.arch`.
fn expectations(reasons: &[RebuildReason]) -> Vec<String> {
    let mut out: Vec<String> = reasons
        .iter()
        .filter_map(|r| match r {
            RebuildReason::DirectlyAffected { update, .. } => Some(update.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn sentences(reasons: &[RebuildReason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}

/// Decides what an event's plan becomes, given the unfinished items of
/// other events by repository.
pub fn admit(plan: &Plan, active: &HashMap<String, ActiveItem>) -> Admission {
    for r in plan.rebuilds() {
        if let Some(a) = active.get(&r.repository)
            && a.state == RebuildItemState::Building
        {
            return Admission::Defer {
                message: format!(
                    "waiting for event {}'s rebuild of {}{} to finish",
                    a.event_id,
                    r.repository,
                    a.build_id
                        .map(|b| format!(" (build {b})"))
                        .unwrap_or_default()
                ),
            };
        }
    }

    let mut new_items: Vec<NewItem> = Vec::new();
    let mut coalesce: Vec<Coalesce> = Vec::new();
    // Build id of the planned image → where its rebuild is tracked.
    let mut tracked: HashMap<i64, ParentLink> = HashMap::new();
    let (mut waiting, mut coalesced) = (0usize, 0usize);
    for r in plan.rebuilds() {
        let reasons = sentences(&r.reasons);
        let expect = expectations(&r.reasons);
        if let Some(a) = active.get(&r.repository) {
            coalesce.push(Coalesce {
                item_id: a.item_id,
                reasons: reasons.clone(),
                expect: expect.clone(),
            });
            tracked.insert(r.build_id, ParentLink::Existing(a.item_id));
            coalesced += 1;
            new_items.push(NewItem {
                original_build_id: r.build_id,
                repository: r.repository.clone(),
                depth: u32::try_from(r.depth).unwrap_or(u32::MAX),
                parent: ParentLink::None,
                reasons,
                expect,
                state: RebuildItemState::Coalesced,
                coalesced_into: Some(a.item_id),
                message: Some(format!(
                    "rebuilt once, by event {} (item {})",
                    a.event_id, a.item_id
                )),
            });
            continue;
        }
        let parent = r
            .parent_build_id
            .and_then(|p| tracked.get(&p).copied())
            .unwrap_or(ParentLink::None);
        tracked.insert(r.build_id, ParentLink::New(new_items.len()));
        waiting += 1;
        new_items.push(NewItem {
            original_build_id: r.build_id,
            repository: r.repository.clone(),
            depth: u32::try_from(r.depth).unwrap_or(u32::MAX),
            parent,
            reasons,
            expect,
            state: RebuildItemState::Waiting,
            coalesced_into: None,
            message: None,
        });
    }
    for s in &plan.skipped {
        new_items.push(NewItem {
            original_build_id: s.build_id,
            repository: s.repository.clone(),
            depth: 0,
            parent: ParentLink::None,
            reasons: sentences(&s.reasons),
            expect: Vec::new(),
            state: RebuildItemState::Skipped,
            coalesced_into: None,
            message: Some(s.skipped.to_string()),
        });
    }

    let no_effect: Vec<String> = plan.no_effect.iter().map(ToString::to_string).collect();
    let mut parts = Vec::new();
    if waiting > 0 {
        parts.push(format!(
            "{waiting} image(s) to rebuild in {} batch(es)",
            plan.batches.len()
        ));
    }
    if coalesced > 0 {
        parts.push(format!("{coalesced} image(s) rebuilt by an earlier event"));
    }
    if !plan.skipped.is_empty() {
        parts.push(format!("{} image(s) skipped", plan.skipped.len()));
    }
    if !no_effect.is_empty() {
        parts.push(format!(
            "no image holds an older version of {}",
            no_effect.join(", ")
        ));
    }
    let state = if waiting + coalesced > 0 {
        RebuildEventState::Running
    } else if plan.skipped.is_empty() {
        RebuildEventState::NoEffect
    } else {
        RebuildEventState::Complete
    };
    if parts.is_empty() {
        parts.push("no image takes automatic rebuilds".to_string());
    }
    Admission::Admit {
        new_items,
        coalesce,
        state,
        message: parts.join("; "),
    }
}

/// What to do next with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Wait,
    /// Submit its (first) rebuild.
    Start,
    /// Its parent's rebuild failed or was held.
    Hold(String),
    /// Its rebuild completed.
    Done,
    /// Its rebuild failed; submit another attempt.
    Retry,
    Fail(String),
}

/// The state of an item's current build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub state: BuildState,
    pub reason: Option<String>,
}

pub fn step(
    item: &RebuildItem,
    parent: Option<&RebuildItem>,
    build: Option<&BuildOutcome>,
    max_attempts: u32,
) -> Step {
    match item.state {
        RebuildItemState::Waiting => match parent {
            None => Step::Start,
            Some(p) => match p.state {
                RebuildItemState::Complete => Step::Start,
                RebuildItemState::Failed | RebuildItemState::Held => Step::Hold(format!(
                    "parent {} was not rebuilt (event {} item {}: {})",
                    p.repository,
                    p.event_id,
                    p.id,
                    p.message.as_deref().unwrap_or(p.state.as_str())
                )),
                _ => Step::Wait,
            },
        },
        RebuildItemState::Building => match build {
            None => Step::Retry,
            Some(b) => match b.state {
                BuildState::Queued | BuildState::Building => Step::Wait,
                BuildState::Complete => Step::Done,
                BuildState::Canceled => Step::Fail(format!(
                    "build {} was canceled{}",
                    item.build_id.unwrap_or_default(),
                    b.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )),
                BuildState::Failed if item.attempts < max_attempts => Step::Retry,
                BuildState::Failed => Step::Fail(format!(
                    "rebuild failed {} time(s); last: build {}: {}",
                    item.attempts,
                    item.build_id.unwrap_or_default(),
                    b.reason.as_deref().unwrap_or("no reason given")
                )),
            },
        },
        _ => Step::Wait,
    }
}

/// Whether the item no longer changes.
pub fn is_final(state: RebuildItemState) -> bool {
    matches!(
        state,
        RebuildItemState::Complete
            | RebuildItemState::Failed
            | RebuildItemState::Held
            | RebuildItemState::Skipped
    )
}

/// The event's end state and summary once every item is final.
pub fn outcome(items: &[RebuildItem]) -> Option<(RebuildEventState, String)> {
    if items.iter().any(|i| !is_final(i.state)) {
        return None;
    }
    let count = |s: RebuildItemState| items.iter().filter(|i| i.state == s).count();
    let (complete, failed, held, skipped) = (
        count(RebuildItemState::Complete),
        count(RebuildItemState::Failed),
        count(RebuildItemState::Held),
        count(RebuildItemState::Skipped),
    );
    let mut parts = vec![format!("{complete} rebuilt")];
    for (n, what) in [
        (failed, "failed"),
        (held, "held back"),
        (skipped, "skipped"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let state = if failed + held > 0 {
        RebuildEventState::Failed
    } else {
        RebuildEventState::Complete
    };
    Some((state, parts.join(", ")))
}

/// `registry/repo@digest`: the child's FROM (as written) pinned to the new
/// parent's manifest. None when the FROM does not parse.
pub fn pinned_parent(parent_ref: &str, manifest_digest: &str) -> Option<String> {
    let r: kiln_oci::Reference = parent_ref.parse().ok()?;
    Some(format!("{}/{}@{manifest_digest}", r.registry, r.repository))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::planner::{ImageGraph, ImageNode};
    use crate::domain::rpmver::Nevra;
    use crate::model::{Package, PackageKind};

    fn rpm(name: &str, version: &str) -> Package {
        Package {
            kind: PackageKind::Rpm,
            name: name.into(),
            epoch: None,
            version: version.into(),
            release: "1".into(),
            arch: "noarch".into(),
            source: Some(format!("{name}-{version}-1.src.rpm")),
            license: None,
            signing_key: None,
        }
    }

    fn node(id: i64, repo: &str, parent: Option<i64>, packages: Vec<Package>) -> ImageNode {
        ImageNode {
            build_id: id,
            component: repo.into(),
            repository: repo.into(),
            tag: "t".into(),
            packages,
            parent_build_id: parent,
            autorebuild: true,
        }
    }

    /// B (foo) ← L1 (bar) ← L2; U unrelated.
    fn graph() -> ImageGraph {
        ImageGraph::new([
            node(1, "b", None, vec![rpm("foo", "1.0")]),
            node(2, "l1", Some(1), vec![rpm("foo", "1.0"), rpm("bar", "1.0")]),
            node(3, "l2", Some(2), vec![rpm("foo", "1.0"), rpm("bar", "1.0")]),
            node(4, "u", None, vec![rpm("baz", "1.0")]),
        ])
        .unwrap()
    }

    fn update(s: &str) -> Vec<Nevra> {
        vec![Nevra::parse(s).unwrap()]
    }

    fn item(id: i64, state: RebuildItemState) -> RebuildItem {
        RebuildItem {
            id,
            event_id: 1,
            original_build_id: id,
            repository: format!("r{id}"),
            depth: 0,
            parent_item_id: None,
            reasons: vec![],
            expect: vec![],
            state,
            build_id: Some(100 + id),
            attempts: 1,
            coalesced_into: None,
            message: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_fresh_plan_becomes_waiting_items_linked_to_their_parents() {
        let plan = graph().plan(&update("foo-1.1-1.noarch"));
        let Admission::Admit {
            new_items, state, ..
        } = admit(&plan, &HashMap::new())
        else {
            panic!("deferred")
        };
        assert_eq!(state, RebuildEventState::Running);
        let repos: Vec<&str> = new_items.iter().map(|i| i.repository.as_str()).collect();
        assert_eq!(repos, ["b", "l1", "l2"]);
        assert_eq!(new_items[0].parent, ParentLink::None);
        assert_eq!(new_items[1].parent, ParentLink::New(0));
        assert_eq!(new_items[2].parent, ParentLink::New(1));
        assert_eq!(new_items[0].expect, ["foo-1.1-1.noarch"]);
        assert!(
            new_items
                .iter()
                .all(|i| i.state == RebuildItemState::Waiting)
        );
    }

    #[test]
    fn images_waiting_in_another_event_are_coalesced_not_rebuilt_twice() {
        let plan = graph().plan(&update("bar-1.1-1.noarch"));
        let active: HashMap<String, ActiveItem> = [("l1", 11), ("l2", 12)]
            .into_iter()
            .map(|(r, id)| {
                (
                    r.to_string(),
                    ActiveItem {
                        item_id: id,
                        event_id: 7,
                        state: RebuildItemState::Waiting,
                        build_id: None,
                    },
                )
            })
            .collect();
        let Admission::Admit {
            new_items,
            coalesce,
            state,
            message,
        } = admit(&plan, &active)
        else {
            panic!("deferred")
        };
        assert_eq!(state, RebuildEventState::Running);
        assert!(
            new_items
                .iter()
                .all(|i| i.state == RebuildItemState::Coalesced)
        );
        assert_eq!(coalesce.len(), 2);
        assert_eq!(coalesce[0].item_id, 11);
        assert_eq!(coalesce[0].expect, ["bar-1.1-1.noarch"]);
        assert!(message.contains("rebuilt by an earlier event"), "{message}");
    }

    #[test]
    fn an_image_being_built_by_another_event_defers() {
        let plan = graph().plan(&update("bar-1.1-1.noarch"));
        let active = HashMap::from([(
            "l1".to_string(),
            ActiveItem {
                item_id: 11,
                event_id: 7,
                state: RebuildItemState::Building,
                build_id: Some(40),
            },
        )]);
        let Admission::Defer { message } = admit(&plan, &active) else {
            panic!("admitted")
        };
        assert!(
            message.contains("event 7") && message.contains("build 40"),
            "{message}"
        );
    }

    #[test]
    fn unknown_packages_have_no_effect() {
        let plan = graph().plan(&update("nothere-2-1.x86_64"));
        let Admission::Admit {
            new_items,
            state,
            message,
            ..
        } = admit(&plan, &HashMap::new())
        else {
            panic!("deferred")
        };
        assert!(new_items.is_empty());
        assert_eq!(state, RebuildEventState::NoEffect);
        assert!(message.contains("nothere-2-1.x86_64"), "{message}");
    }

    #[test]
    fn items_progress_after_their_parents() {
        let waiting = item(2, RebuildItemState::Waiting);
        assert_eq!(step(&waiting, None, None, 3), Step::Start);
        let parent = item(1, RebuildItemState::Building);
        assert_eq!(step(&waiting, Some(&parent), None, 3), Step::Wait);
        let parent = item(1, RebuildItemState::Complete);
        assert_eq!(step(&waiting, Some(&parent), None, 3), Step::Start);
        let mut parent = item(1, RebuildItemState::Failed);
        parent.message = Some("dnf failed".into());
        let Step::Hold(why) = step(&waiting, Some(&parent), None, 3) else {
            panic!()
        };
        assert!(why.contains("r1") && why.contains("dnf failed"), "{why}");
    }

    #[test]
    fn failed_builds_are_retried_until_the_attempts_run_out() {
        let mut building = item(2, RebuildItemState::Building);
        let failed = BuildOutcome {
            state: BuildState::Failed,
            reason: Some("exit 1".into()),
        };
        assert_eq!(step(&building, None, Some(&failed), 2), Step::Retry);
        building.attempts = 2;
        let Step::Fail(why) = step(&building, None, Some(&failed), 2) else {
            panic!()
        };
        assert!(why.contains("2 time(s)") && why.contains("exit 1"), "{why}");
        let canceled = BuildOutcome {
            state: BuildState::Canceled,
            reason: None,
        };
        building.attempts = 1;
        assert!(matches!(
            step(&building, None, Some(&canceled), 3),
            Step::Fail(_)
        ));
        let done = BuildOutcome {
            state: BuildState::Complete,
            reason: None,
        };
        assert_eq!(step(&building, None, Some(&done), 3), Step::Done);
    }

    #[test]
    fn events_end_when_every_item_has() {
        let mut items = vec![
            item(1, RebuildItemState::Complete),
            item(2, RebuildItemState::Building),
        ];
        assert_eq!(outcome(&items), None);
        items[1].state = RebuildItemState::Held;
        let (state, message) = outcome(&items).unwrap();
        assert_eq!(state, RebuildEventState::Failed);
        assert_eq!(message, "1 rebuilt, 1 held back");
        items[1].state = RebuildItemState::Skipped;
        assert_eq!(outcome(&items).unwrap().0, RebuildEventState::Complete);
    }

    #[test]
    fn parents_are_pinned_by_digest() {
        assert_eq!(
            pinned_parent("127.0.0.1:8080/base/foo:latest", "sha256:ab").as_deref(),
            Some("127.0.0.1:8080/base/foo@sha256:ab")
        );
        assert_eq!(
            pinned_parent("fedora:40", "sha256:ab").as_deref(),
            Some("docker.io/library/fedora@sha256:ab")
        );
    }
}
